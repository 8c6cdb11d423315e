//! Admin endpoints for mailbox connections: their health, and connecting an inbox over
//! OAuth (Gmail, Microsoft 365) or IMAP and SMTP. The services behind them
//! (`start_oauth`, `connect_imap_inbox`) also serve a user's own inbox (`super::mine`) and
//! the settings pages.

use super::{ApiError, ApiResult, ApiState, Caller, J, P};
use axum::extract::State;
use axum::response::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(list_connections))
        .routes(routes!(connect_inbox))
        .routes(routes!(connect_imap))
}

/// A mailbox connection's health, as `GET /admin/connections` lists it (the provider
/// settings are left out: they may hold a CA certificate or subscription ids).
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionHealth {
    pub inbox: String,
    /// `gmail`, `graph` or `imap`.
    pub provider: String,
    /// `connected`, `degraded` or `reconnect_required`.
    pub state: String,
    /// RFC 3339.
    pub connected_at: String,
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Seconds between the mailbox receiving the newest message of the last successful
    /// sync and Mailroom storing it.
    pub lag_seconds: Option<i64>,
    pub consecutive_failures: u32,
    /// Cursor values by folder (their shape is the provider's).
    #[schema(value_type = Object)]
    pub cursors: std::collections::BTreeMap<String, Value>,
}

/// Mailbox connections and their health
#[utoipa::path(get, path = "/admin/connections", tag = "admin", responses((status = 200, body = Vec<ConnectionHealth>)))]
async fn list_connections(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<ConnectionHealth>>> {
    super::require_admin(&caller)?;
    let rfc = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339();
    let out = crate::mailbox::connection::status(&st.ports)
        .await?
        .into_iter()
        .map(|s| {
            let c = s.connection;
            ConnectionHealth {
                inbox: c.inbox,
                provider: c.provider.as_str().to_string(),
                state: c.state.as_str().to_string(),
                connected_at: rfc(c.connected_at),
                last_success: c.last_success.map(rfc),
                last_error: c.last_error,
                last_error_at: c.last_error_at.map(rfc),
                lag_seconds: c.lag_seconds,
                consecutive_failures: c.consecutive_failures,
                cursors: s.cursors,
            }
        })
        .collect();
    Ok(Json(out))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ConnectBody {
    /// `gmail` or `graph` (Microsoft 365).
    pub provider: String,
}

/// The workspace inbox an admin connects.
fn inbox_to_connect(caller: &Caller, address: &str) -> ApiResult<mailroom_core::EmailAddress> {
    super::require_admin(caller)?;
    if !caller.ws.inboxes.iter().any(|i| i.address.eq_ignore_ascii_case(address)) {
        return Err(ApiError::NotFound(format!("no inbox {address}")));
    }
    mailroom_core::EmailAddress::parse(address).map_err(|e| ApiError::BadRequest(format!("{address}: {e}")))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectStart {
    /// Send the mailbox owner's browser here; the provider returns to `/oauth/callback`.
    pub authorize_url: String,
}

/// Start connecting an inbox to Gmail or Microsoft 365 (OAuth 2.0)
#[utoipa::path(post, path = "/admin/inboxes/{address}/connect", tag = "admin", params(("address" = String, Path, description = "Inbox address")),
    request_body = ConnectBody,
    responses((status = 200, body = ConnectStart), (status = 404, body = super::Problem), (status = 409, body = super::Problem)))]
async fn connect_inbox(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(address): P<String>,
    J(body): J<ConnectBody>,
) -> ApiResult<Json<ConnectStart>> {
    let inbox = inbox_to_connect(&caller, &address)?;
    Ok(Json(start_oauth(&st, &inbox, &body.provider).await?))
}

/// Starts the OAuth consent for `inbox` with `provider` (`gmail`, or `graph` /
/// `microsoft`), the caller's right to it checked already.
pub(crate) async fn start_oauth(
    st: &ApiState,
    inbox: &mailroom_core::EmailAddress,
    provider: &str,
) -> ApiResult<ConnectStart> {
    use crate::mailbox::connection::Provider;
    let provider = match provider {
        "gmail" => Provider::Gmail,
        "graph" | "microsoft" => Provider::Graph,
        other => return Err(ApiError::BadRequest(format!("provider {other:?}: use gmail or graph"))),
    };
    match crate::mailbox::oauth::start(&st.ports, &st.providers, provider, inbox).await {
        Ok(url) => {
            st.ports.flush()?;
            Ok(ConnectStart { authorize_url: url })
        }
        Err(e @ crate::mailbox::oauth::OAuthError::NotConfigured(..)) => {
            Err(ApiError::Conflict(e.to_string()))
        }
        Err(e) => Err(ApiError::Internal(e.into())),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImapConnectBody {
    pub host: String,
    /// Default: 993 with `tls`, 143 otherwise.
    pub port: Option<u16>,
    /// `tls` (default), `starttls` or `none` (trusted networks only).
    #[schema(value_type = Option<String>)]
    pub security: Option<crate::mailbox::imap::Security>,
    pub user: String,
    /// Checked by logging in, then sealed; never shown again.
    pub password: String,
    /// How many days back the first poll reads (default 14).
    pub backfill_days: Option<u32>,
    /// PEM certificates to trust besides the public roots (a private CA).
    pub ca_pem: Option<String>,
    /// Where replies are submitted; without it the inbox cannot send.
    pub smtp: Option<SmtpBody>,
    /// The folder sent mail is read from, when the server marks none `\Sent` (or the
    /// marked one is not where this mailbox's sent mail goes). It must exist.
    pub sent_folder: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpBody {
    pub host: String,
    /// Default: 465 with `tls`, 587 with `starttls`, 25 with `none`.
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    #[schema(value_type = Option<String>)]
    pub security: Option<crate::mailbox::imap::SmtpSecurity>,
    /// The SMTP login, when it is not the IMAP one.
    pub user: Option<String>,
    /// APPEND sent replies to the Sent folder (default true; false for servers that file
    /// submitted mail themselves, such as Gmail and Microsoft 365).
    pub append_sent: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImapConnected {
    pub inbox: String,
    pub inbox_folder: String,
    /// Absent: the server marks no folder `\Sent`, so Sent copies are not read.
    pub sent_folder: Option<String>,
    /// Same server and user as before: polling resumes where it stopped.
    pub cursors_kept: bool,
}

/// Connect an inbox over IMAP (and SMTP for replies)
///
/// Logs in first: refused credentials, an unreachable server or a certificate problem
/// answer 422 with the server's reason, and nothing is stored. Then the settings and the
/// sealed password are stored and the scheduled poll picks the inbox up. Connecting again
/// with a new password keeps the sync position when the server and user are the same.
#[utoipa::path(post, path = "/admin/inboxes/{address}/imap", tag = "admin", params(("address" = String, Path, description = "Inbox address")),
    request_body = ImapConnectBody,
    responses((status = 200, body = ImapConnected), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
async fn connect_imap(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(address): P<String>,
    J(body): J<ImapConnectBody>,
) -> ApiResult<Json<ImapConnected>> {
    Ok(Json(connect_imap_as(&st, &caller, &address, body, false).await?))
}

/// Connects an inbox over IMAP (and SMTP) for `caller` (the API and the settings pages).
pub(crate) async fn connect_imap_as(
    st: &ApiState,
    caller: &Caller,
    address: &str,
    body: ImapConnectBody,
    require_sent: bool,
) -> ApiResult<ImapConnected> {
    let inbox = inbox_to_connect(caller, address)?;
    connect_imap_inbox(st, caller, &inbox, body, require_sent).await
}

/// Connects `inbox` over IMAP (and SMTP), the caller's right to it checked already.
pub(crate) async fn connect_imap_inbox(
    st: &ApiState,
    caller: &Caller,
    inbox: &mailroom_core::EmailAddress,
    body: ImapConnectBody,
    require_sent: bool,
) -> ApiResult<ImapConnected> {
    use crate::mailbox::imap::{
        self, ImapSettings, PollError, PollOptions, Security, SmtpSecurity, SmtpSettings,
    };
    let address = inbox.key();
    if body.host.trim().is_empty() || body.user.trim().is_empty() || body.password.is_empty() {
        return Err(ApiError::Invalid("host, user and password are required".into(), vec![]));
    }
    let security = body.security.unwrap_or(Security::Tls);
    let smtp = body.smtp.map(|m| {
        let security = m.security.unwrap_or(SmtpSecurity::Starttls);
        SmtpSettings {
            host: m.host,
            port: m.port.unwrap_or(security.default_port()),
            security,
            user: m.user,
            append_sent: m.append_sent.unwrap_or(true),
        }
    });
    let settings = ImapSettings {
        host: body.host,
        port: body.port.unwrap_or(security.default_port()),
        security,
        user: body.user,
        backfill_days: body.backfill_days.unwrap_or(imap::DEFAULT_BACKFILL_DAYS),
        ca_pem: body.ca_pem,
        smtp,
        allow_private_host: caller.ws.security.allow_private_mail_hosts,
        sent_folder: body.sent_folder.filter(|s| !s.trim().is_empty()),
    };
    let opts = PollOptions { require_sent, ..PollOptions::default() };
    match imap::connect(&st.ports, inbox, settings, &body.password, &opts).await {
        Ok(c) => Ok(ImapConnected {
            inbox: c.inbox,
            inbox_folder: c.inbox_folder,
            sent_folder: c.sent_folder,
            cursors_kept: c.cursors_kept,
        }),
        // What the mail server said is for the admin to act on.
        Err(e @ (PollError::Imap(_) | PollError::Smtp(_) | PollError::SentFolder(_))) => {
            Err(ApiError::Invalid(format!("cannot connect {address} over IMAP: {e}"), vec![]))
        }
        Err(e) => Err(ApiError::Internal(e.into())),
    }
}
