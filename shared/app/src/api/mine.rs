//! Every user's own mailbox (issue 21): a rep connects the mailbox of their own address
//! as an individual inbox they own, without an admin. Its mail is theirs alone unless
//! they share it (`crate::access`); admins see that it exists and its health.
//!
//! The inbox is added to the workspace on the first connect, as `type = "individual"`,
//! `owner` the caller, logging by the workspace's `[logging]` defaults and no ticket
//! automation. An IMAP connect that the server refuses takes a just-added inbox out
//! again; an OAuth start leaves it listed as not connected until the consent returns.

use super::admin::{
    ConnectBody, ConnectStart, ImapConnectBody, ImapConnected, connect_imap_inbox, edit_as, start_oauth,
};
use super::{ApiError, ApiResult, ApiState, Caller, J};
use axum::extract::State;
use axum::response::Json;
use mailroom_core::EmailAddress;
use mailroom_core::workspace::{Inbox, InboxType, Provider, Workspace};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new().routes(routes!(connect_mine)).routes(routes!(imap_mine))
}

/// The caller's own inbox, added to the workspace when it is not there: its address,
/// and whether this call added it. 409 when the address is an inbox of someone else.
async fn own_inbox(st: &ApiState, caller: &Caller, provider: Provider) -> ApiResult<(EmailAddress, bool)> {
    let address = EmailAddress::parse(&caller.email).map_err(|e| ApiError::BadRequest(format!("{e}")))?;
    let key = address.key();
    // Whether `ws` has it as the caller's own (true), not at all (false), or as someone
    // else's (409).
    let mine = |ws: &Workspace| -> ApiResult<bool> {
        match ws.inboxes.iter().find(|i| i.address.eq_ignore_ascii_case(&key)) {
            None => Ok(false),
            Some(i)
                if i.kind == InboxType::Individual
                    && i.owner.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(&caller.email)) =>
            {
                Ok(true)
            }
            Some(_) => Err(ApiError::Conflict(format!(
                "{key} is an inbox of the workspace that is not yours: an admin connects it"
            ))),
        }
    };
    if mine(&caller.ws)? {
        return Ok((address, false));
    }
    let added = edit_as(st, caller, |ws| {
        if mine(ws)? {
            return Ok(false);
        }
        ws.inboxes.push(Inbox::new(&key, InboxType::Individual, provider, Some(caller.email.to_lowercase())));
        Ok(true)
    })
    .await?;
    Ok((address, added))
}

/// Takes the caller's just-added inbox out of the workspace again.
async fn forget(st: &ApiState, caller: &Caller, address: &EmailAddress) -> ApiResult<()> {
    edit_as(st, caller, |ws| {
        ws.inboxes.retain(|i| !i.address.eq_ignore_ascii_case(&address.key()));
        Ok(())
    })
    .await
}

/// Connect my own mailbox to Gmail or Microsoft 365
///
/// Adds the caller's address as their individual inbox when it is not one yet, and
/// answers the provider's consent page to send their browser to; the consent must be
/// given as that mailbox. Any user may; 409 when the address is someone else's inbox or
/// no OAuth client is configured.
#[utoipa::path(post, path = "/me/inbox/connect", tag = "directory", request_body = ConnectBody,
    responses((status = 200, body = ConnectStart), (status = 400, body = super::Problem), (status = 409, body = super::Problem)))]
async fn connect_mine(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    J(body): J<ConnectBody>,
) -> ApiResult<Json<ConnectStart>> {
    let provider = match body.provider.as_str() {
        "gmail" => Provider::Gmail,
        "graph" | "microsoft" => Provider::Microsoft,
        other => return Err(ApiError::BadRequest(format!("provider {other:?}: use gmail or graph"))),
    };
    let (inbox, _) = own_inbox(&st, &caller, provider).await?;
    Ok(Json(start_oauth(&st, &inbox, &body.provider).await?))
}

/// Connect my own mailbox over IMAP (and SMTP)
///
/// Adds the caller's address as their individual inbox when it is not one yet, then
/// logs in as `POST /admin/inboxes/{address}/imap` does: a refusal answers 422 with the
/// server's reason, stores nothing, and takes the just-added inbox out again.
#[utoipa::path(post, path = "/me/inbox/imap", tag = "directory", request_body = ImapConnectBody,
    responses((status = 200, body = ImapConnected), (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
async fn imap_mine(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    J(body): J<ImapConnectBody>,
) -> ApiResult<Json<ImapConnected>> {
    let (inbox, added) = own_inbox(&st, &caller, Provider::Imap).await?;
    match connect_imap_inbox(&st, &caller, &inbox, body, false).await {
        Ok(c) => Ok(Json(c)),
        Err(e) => {
            if added && let Err(again) = forget(&st, &caller, &inbox).await {
                tracing::error!(error = ?again, inbox = %inbox.key(), "a refused inbox could not be taken out again");
            }
            Err(e)
        }
    }
}
