//! Inbox verification ("send a test email", `crate::verify`): start a run, and read it.
//! Reading a running run moves it on (each check is short and idempotent), so the
//! settings page and an API client follow it by asking again, on AWS as locally.

use super::{ApiError, ApiResult, ApiState, Caller, P};
use crate::verify::{self, Run, Verifier};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Json;
use mailroom_core::EmailAddress;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new().routes(routes!(start)).routes(routes!(get_run))
}

/// The configured inbox an admin verifies.
fn inbox_of(caller: &Caller, address: &str) -> ApiResult<EmailAddress> {
    super::require_admin(caller)?;
    if !caller.ws.inboxes.iter().any(|i| i.address.eq_ignore_ascii_case(address)) {
        return Err(ApiError::NotFound(format!("no inbox {address}")));
    }
    EmailAddress::parse(address).map_err(|e| ApiError::BadRequest(format!("{address}: {e}")))
}

pub(crate) fn verifier(st: &ApiState) -> Verifier {
    Verifier::new(st.ports.clone(), Arc::new(st.providers.clone()))
}

/// Starts a verification run as `caller` (the API and the settings page).
pub(crate) async fn start_as(st: &ApiState, caller: &Caller, address: &str) -> ApiResult<Run> {
    let inbox = inbox_of(caller, address)?;
    verifier(st).start(&inbox, &caller.email).await.map_err(ApiError::Internal)
}

/// A run of an inbox, moved on when it is still running.
pub(crate) async fn run_as(st: &ApiState, caller: &Caller, address: &str, id: &str) -> ApiResult<Run> {
    let inbox = inbox_of(caller, address)?;
    let run = verify::get(&st.ports, &inbox, id)
        .await
        .map_err(ApiError::Internal)?
        .ok_or_else(|| ApiError::NotFound(format!("no verification run {id} of {address}")))?;
    if run.finished() {
        return Ok(run);
    }
    verifier(st).advance(run).await.map_err(ApiError::Internal)
}

/// Verify an inbox: send a test email and follow it
///
/// Sends a uniquely tagged message to the inbox and follows it through the real path
/// (received, stored and threaded, logged on a test contact, routed, ticket), then a
/// reply from the inbox and its Sent copy. Answers the run as far as it got; `GET` the
/// run to follow it. Test messages, contacts and tickets stay out of lists and reports.
#[utoipa::path(post, path = "/admin/inboxes/{address}/verify", tag = "admin", params(("address" = String, Path, description = "Inbox address")),
    responses((status = 202, body = Run), (status = 403, body = super::Problem), (status = 404, body = super::Problem)))]
async fn start(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(address): P<String>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    Ok((StatusCode::ACCEPTED, Json(start_as(&st, &caller, &address).await?)))
}

/// A verification run (moved on while it runs)
#[utoipa::path(get, path = "/admin/inboxes/{address}/verify/{run}", tag = "admin",
    params(("address" = String, Path, description = "Inbox address"), ("run" = String, Path, description = "Run id")),
    responses((status = 200, body = Run), (status = 404, body = super::Problem)))]
async fn get_run(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P((address, id)): P<(String, String)>,
) -> ApiResult<Json<Run>> {
    Ok(Json(run_as(&st, &caller, &address, &id).await?))
}
