//! Replay of the route stage over stored history (`crate::replay`), for admins.

use super::{ApiError, ApiResult, ApiState, Caller, J};
use crate::replay::{ReplayOptions, ReplaySummary};
use axum::extract::State;
use axum::response::Json;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new().routes(routes!(replay))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// A day (`YYYY-MM-DD`, UTC) or an RFC 3339 time: conversations whose first message
    /// is dated then or later.
    pub since: String,
    /// Only conversations of this inbox.
    #[serde(default)]
    pub inbox: Option<String>,
    /// Count what would change; change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// `route` (the default: teams, priorities, pipelines) or `log` (where each message
    /// is logged on the CRM, by today's `[logging]` settings).
    #[serde(default)]
    pub stage: Option<String>,
}

/// Replay routing or logging over history
///
/// Re-runs the route stage with today's rules over every routed conversation since a
/// date: team, priority, tags and the pipeline of open tickets follow today's decision.
/// With `"stage": "log"`, each message's logging decision is taken again with today's
/// `[logging]` settings, and its timeline entries follow.
/// A dry run answers the same counts and changes nothing; a second real run changes
/// nothing. No notification goes out; one audit entry records the run. Runs within the
/// request (a large history may outlast an API Gateway request: use the CLI there).
#[utoipa::path(post, path = "/admin/replay", tag = "admin", request_body = ReplayBody,
    responses((status = 200, body = ReplaySummary), (status = 400, body = super::Problem), (status = 403, body = super::Problem)))]
async fn replay(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    J(body): J<ReplayBody>,
) -> ApiResult<Json<ReplaySummary>> {
    super::require_admin(&caller)?;
    let since = crate::replay::parse_since(&body.since).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if let Some(i) = &body.inbox
        && !caller.ws.inboxes.iter().any(|x| x.address.eq_ignore_ascii_case(i))
    {
        return Err(ApiError::BadRequest(format!("no inbox {i}")));
    }
    let opts = ReplayOptions { since, inbox: body.inbox, dry_run: body.dry_run, by: caller.email.clone() };
    let sum = match body.stage.as_deref().unwrap_or("route") {
        "route" => crate::replay::replay(&st.ports, &caller.ws, &opts).await,
        "log" => crate::replay::replay_log(&st.ports, &caller.ws, &opts).await,
        other => return Err(ApiError::BadRequest(format!("stage {other:?}: `route` or `log`"))),
    }
    .map_err(ApiError::Internal)?;
    Ok(Json(sum))
}
