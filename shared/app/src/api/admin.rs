//! Admin endpoints: the workspace model `mailroom apply` writes, edited a piece at a time
//! (inboxes with their members, ticket automation and signature; users; teams; routing
//! rules; pipelines and stages; SLA policies and calendars) and mailbox connections.
//!
//! Every edit is read, change, validate, apply: the same validation as `mailroom apply`
//! (a change that leaves the workspace invalid is refused with every error), and the
//! same apply (deleting an inbox archives it, deleting a user deactivates them). An edit
//! applies only on top of the version it read, so two admins never silently undo each
//! other: the later one gets 409 and retries. `PUT /admin/workspace` takes an `If-Match`
//! version for the same reason.

use super::{ApiError, ApiResult, ApiState, Caller, J, P};
use crate::workspace::{self, ApplySummary, VersionConflict};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Json;
use mailroom_core::workspace::{
    CalendarSpec, Inbox, Members, Pipeline, Rule, SlaPolicy, Team, TicketAutomation, User, Workspace,
    validate,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(get_workspace, put_workspace))
        .routes(routes!(list_inboxes))
        .routes(routes!(get_inbox, put_inbox, archive_inbox))
        .routes(routes!(put_members))
        .routes(routes!(put_signature))
        .routes(routes!(put_ticket_automation))
        .routes(routes!(list_users))
        .routes(routes!(put_user, deactivate_user))
        .routes(routes!(list_teams))
        .routes(routes!(put_team, delete_team))
        .routes(routes!(get_rules, put_rules))
        .routes(routes!(list_pipelines))
        .routes(routes!(put_pipeline, delete_pipeline))
        .routes(routes!(get_sla, put_sla))
        .routes(routes!(list_connections))
        .routes(routes!(connect_inbox))
        .routes(routes!(connect_imap))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceDoc {
    /// Pass as `If-Match` to `PUT /admin/workspace`.
    pub version: u64,
    #[schema(value_type = Object)]
    pub workspace: Workspace,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Applied {
    pub version: u64,
    pub inboxes: usize,
    pub users: usize,
    pub teams: usize,
    pub pipelines: usize,
    pub rules: usize,
    pub archived_inboxes: usize,
    pub deactivated_users: usize,
}

impl From<ApplySummary> for Applied {
    fn from(s: ApplySummary) -> Applied {
        Applied {
            version: s.version,
            inboxes: s.inboxes,
            users: s.users,
            teams: s.teams,
            pipelines: s.pipelines,
            rules: s.rules,
            archived_inboxes: s.archived_inboxes,
            deactivated_users: s.deactivated_users,
        }
    }
}

fn apply_error(e: anyhow::Error) -> ApiError {
    if let Some(c) = e.downcast_ref::<VersionConflict>() {
        return ApiError::Conflict(c.0.clone());
    }
    ApiError::Internal(e)
}

/// Validates and applies `ws` on top of `version`. An edit that would leave the caller
/// without the admin role is refused: no admin can lock themselves (and maybe everyone)
/// out through the API; `mailroom apply` remains the way to do it on purpose.
pub(super) async fn commit(
    st: &ApiState,
    caller: &Caller,
    mut ws: Workspace,
    version: u64,
) -> ApiResult<ApplySummary> {
    ws.normalize();
    let still_admin = ws.users.iter().any(|u| {
        u.email.eq_ignore_ascii_case(&caller.email) && u.role == mailroom_core::workspace::Role::Admin
    });
    if caller.is_admin() && !still_admin {
        return Err(ApiError::Invalid(
            format!("the change would take the admin role from {}, who makes it: refused", caller.email),
            vec![],
        ));
    }
    let errors = validate(&ws);
    if !errors.is_empty() {
        return Err(ApiError::Invalid(
            format!("the change leaves the workspace with {} errors; nothing was changed", errors.len()),
            errors.iter().map(ToString::to_string).collect(),
        ));
    }
    let summary = workspace::apply_expecting(&st.ports, &ws, Some(version)).await.map_err(apply_error)?;
    st.ports.flush()?;
    Ok(summary)
}

/// Read, change with `f`, validate, apply. Admins only.
pub(crate) async fn edit<T>(
    st: &ApiState,
    caller: &Caller,
    f: impl FnOnce(&mut Workspace) -> ApiResult<T>,
) -> ApiResult<T> {
    super::require_admin(caller)?;
    edit_as(st, caller, f).await
}

/// [`edit`] for a change the caller's right to was checked otherwise (a user adding
/// their own inbox, `api::mine`).
pub(crate) async fn edit_as<T>(
    st: &ApiState,
    caller: &Caller,
    f: impl FnOnce(&mut Workspace) -> ApiResult<T>,
) -> ApiResult<T> {
    let version = workspace::version(&st.ports).await?;
    let mut ws = workspace::load(&st.ports).await?.unwrap_or_default();
    let out = f(&mut ws)?;
    commit(st, caller, ws, version).await?;
    Ok(out)
}

async fn read(st: &ApiState, caller: &Caller) -> ApiResult<Workspace> {
    super::require_admin(caller)?;
    Ok(workspace::load(&st.ports).await?.unwrap_or_default())
}

/// The whole workspace model and its version
#[utoipa::path(get, path = "/admin/workspace", tag = "admin", responses((status = 200, body = WorkspaceDoc), (status = 403, body = super::Problem)))]
async fn get_workspace(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<WorkspaceDoc>> {
    let workspace = read(&st, &caller).await?;
    Ok(Json(WorkspaceDoc { version: workspace::version(&st.ports).await?, workspace }))
}

/// Replace the whole workspace model (what `mailroom apply FILE` does)
///
/// Send `If-Match: VERSION` to apply only on top of that version.
#[utoipa::path(put, path = "/admin/workspace", tag = "admin", request_body(content = Object, description = "The workspace model (docs/workspace.md), as JSON"),
    params(("If-Match" = Option<String>, Header, description = "The version the change is based on")),
    responses((status = 200, body = Applied), (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
async fn put_workspace(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    headers: HeaderMap,
    J(ws): J<Workspace>,
) -> ApiResult<Json<Applied>> {
    super::require_admin(&caller)?;
    let version = match headers.get(axum::http::header::IF_MATCH) {
        None => workspace::version(&st.ports).await?,
        Some(v) => v
            .to_str()
            .ok()
            .map(|v| v.trim().trim_matches('"'))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| ApiError::BadRequest("If-Match must be a workspace version number".into()))?,
    };
    Ok(Json(commit(&st, &caller, ws, version).await?.into()))
}

fn find_inbox<'a>(ws: &'a mut Workspace, address: &str) -> ApiResult<&'a mut Inbox> {
    ws.inboxes
        .iter_mut()
        .find(|i| i.address.eq_ignore_ascii_case(address))
        .ok_or_else(|| ApiError::NotFound(format!("no inbox {address}")))
}

/// List inboxes (all of them: admins see every inbox)
#[utoipa::path(get, path = "/admin/inboxes", tag = "admin", responses((status = 200, body = Vec<Object>)))]
async fn list_inboxes(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<Inbox>>> {
    Ok(Json(read(&st, &caller).await?.inboxes))
}

/// An inbox's configuration
#[utoipa::path(get, path = "/admin/inboxes/{address}", tag = "admin", params(("address" = String, Path, description = "Inbox address")),
    responses((status = 200, body = Object), (status = 404, body = super::Problem)))]
async fn get_inbox(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(address): P<String>,
) -> ApiResult<Json<Inbox>> {
    let mut ws = read(&st, &caller).await?;
    Ok(Json(find_inbox(&mut ws, &address)?.clone()))
}

/// Create or replace an inbox (shared or individual, provider, members, ticket automation, signature)
#[utoipa::path(put, path = "/admin/inboxes/{address}", tag = "admin", params(("address" = String, Path, description = "Inbox address")),
    request_body(content = Object, description = "An inbox (docs/workspace.md); `address` is taken from the path"),
    responses((status = 200, body = Object), (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
async fn put_inbox(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(address): P<String>,
    J(mut inbox): J<Inbox>,
) -> ApiResult<Json<Inbox>> {
    inbox.address = address.clone();
    let out = inbox.clone();
    edit(&st, &caller, move |ws| {
        match ws.inboxes.iter_mut().find(|i| i.address.eq_ignore_ascii_case(&address)) {
            Some(i) => *i = inbox,
            None => ws.inboxes.push(inbox),
        }
        Ok(())
    })
    .await?;
    Ok(Json(out))
}

/// Archive an inbox
///
/// It leaves the model; its messages stay, and it is marked archived (docs/workspace.md).
#[utoipa::path(delete, path = "/admin/inboxes/{address}", tag = "admin", params(("address" = String, Path, description = "Inbox address")),
    responses((status = 204, description = "Archived"), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
async fn archive_inbox(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(address): P<String>,
) -> ApiResult<StatusCode> {
    edit(&st, &caller, |ws| {
        find_inbox(ws, &address)?;
        ws.inboxes.retain(|i| !i.address.eq_ignore_ascii_case(&address));
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who may see an inbox: users and teams
#[utoipa::path(put, path = "/admin/inboxes/{address}/members", tag = "admin", params(("address" = String, Path, description = "Inbox address")),
    request_body(content = Object, description = "`{\"users\": [...], \"teams\": [...]}`"),
    responses((status = 200, body = Object), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
async fn put_members(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(address): P<String>,
    J(members): J<Members>,
) -> ApiResult<Json<Inbox>> {
    Ok(Json(
        edit(&st, &caller, |ws| {
            let i = find_inbox(ws, &address)?;
            i.members = members;
            Ok(i.clone())
        })
        .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SignatureBody {
    /// The shared signature added to replies from this inbox (null: none).
    pub signature: Option<String>,
}

/// Set an inbox's shared signature
#[utoipa::path(put, path = "/admin/inboxes/{address}/signature", tag = "admin", params(("address" = String, Path, description = "Inbox address")),
    request_body = SignatureBody, responses((status = 200, body = Object), (status = 404, body = super::Problem)))]
async fn put_signature(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(address): P<String>,
    J(body): J<SignatureBody>,
) -> ApiResult<Json<Inbox>> {
    if body.signature.as_ref().is_some_and(|s| s.len() > 10_000) {
        return Err(ApiError::BadRequest("a signature is at most 10000 characters".into()));
    }
    Ok(Json(
        edit(&st, &caller, |ws| {
            let i = find_inbox(ws, &address)?;
            i.signature = body.signature.filter(|s| !s.trim().is_empty());
            Ok(i.clone())
        })
        .await?,
    ))
}

/// Set an inbox's ticket automation (pipeline and initial stage)
#[utoipa::path(put, path = "/admin/inboxes/{address}/tickets", tag = "admin", params(("address" = String, Path, description = "Inbox address")),
    request_body(content = Object, description = "`{\"enabled\": true, \"pipeline\": \"support\", \"stage\": \"new\"}`"),
    responses((status = 200, body = Object), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
async fn put_ticket_automation(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(address): P<String>,
    J(tickets): J<TicketAutomation>,
) -> ApiResult<Json<Inbox>> {
    Ok(Json(
        edit(&st, &caller, |ws| {
            let i = find_inbox(ws, &address)?;
            i.tickets = tickets;
            Ok(i.clone())
        })
        .await?,
    ))
}

/// List users
#[utoipa::path(get, path = "/admin/users", tag = "admin", responses((status = 200, body = Vec<Object>)))]
async fn list_users(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(read(&st, &caller).await?.users))
}

/// Create or replace a user (role, availability, signature)
#[utoipa::path(put, path = "/admin/users/{email}", tag = "admin", params(("email" = String, Path, description = "The user's address")),
    request_body(content = Object, description = "A user (docs/workspace.md); `email` is taken from the path"),
    responses((status = 200, body = Object), (status = 422, body = super::Problem)))]
async fn put_user(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(email): P<String>,
    J(mut user): J<User>,
) -> ApiResult<Json<User>> {
    user.email = email.clone();
    let out = user.clone();
    edit(&st, &caller, move |ws| {
        match ws.users.iter_mut().find(|u| u.email.eq_ignore_ascii_case(&email)) {
            Some(u) => *u = user,
            None => ws.users.push(user),
        }
        Ok(())
    })
    .await?;
    Ok(Json(out))
}

/// Deactivate a user
///
/// They leave the model, their teams and inbox memberships (their conversations stay
/// assigned; docs/workspace.md). An admin cannot deactivate themselves.
#[utoipa::path(delete, path = "/admin/users/{email}", tag = "admin", params(("email" = String, Path, description = "The user's address")),
    responses((status = 204, description = "Deactivated"), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
async fn deactivate_user(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(email): P<String>,
) -> ApiResult<StatusCode> {
    if email.eq_ignore_ascii_case(&caller.email) {
        return Err(ApiError::Invalid("you cannot deactivate yourself".into(), vec![]));
    }
    edit(&st, &caller, |ws| {
        if !ws.users.iter().any(|u| u.email.eq_ignore_ascii_case(&email)) {
            return Err(ApiError::NotFound(format!("no user {email}")));
        }
        if let Some(i) =
            ws.inboxes.iter().find(|i| i.owner.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(&email)))
        {
            return Err(ApiError::Invalid(
                format!(
                    "{email} owns the individual inbox {}: give it another owner or archive it first",
                    i.address
                ),
                vec![],
            ));
        }
        // They leave their teams and inbox memberships with them.
        ws.users.retain(|u| !u.email.eq_ignore_ascii_case(&email));
        for t in &mut ws.teams {
            t.members.retain(|m| !m.eq_ignore_ascii_case(&email));
        }
        for i in &mut ws.inboxes {
            i.members.users.retain(|m| !m.eq_ignore_ascii_case(&email));
        }
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// List teams
#[utoipa::path(get, path = "/admin/teams", tag = "admin", responses((status = 200, body = Vec<Object>)))]
async fn list_teams(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<Team>>> {
    Ok(Json(read(&st, &caller).await?.teams))
}

/// Create or replace a team
#[utoipa::path(put, path = "/admin/teams/{id}", tag = "admin", params(("id" = String, Path, description = "Team id")),
    request_body(content = Object, description = "A team; `id` is taken from the path"),
    responses((status = 200, body = Object), (status = 422, body = super::Problem)))]
async fn put_team(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
    J(mut team): J<Team>,
) -> ApiResult<Json<Team>> {
    team.id = id.clone();
    let out = team.clone();
    edit(&st, &caller, move |ws| {
        match ws.teams.iter_mut().find(|t| t.id == id) {
            Some(t) => *t = team,
            None => ws.teams.push(team),
        }
        Ok(())
    })
    .await?;
    Ok(Json(out))
}

/// Delete a team (refused while a rule or inbox refers to it)
#[utoipa::path(delete, path = "/admin/teams/{id}", tag = "admin", params(("id" = String, Path, description = "Team id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
async fn delete_team(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
) -> ApiResult<StatusCode> {
    edit(&st, &caller, |ws| {
        if !ws.teams.iter().any(|t| t.id == id) {
            return Err(ApiError::NotFound(format!("no team {id}")));
        }
        ws.teams.retain(|t| t.id != id);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The routing rules, in evaluation order
#[utoipa::path(get, path = "/admin/rules", tag = "admin", responses((status = 200, body = Vec<Object>)))]
async fn get_rules(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<Rule>>> {
    Ok(Json(read(&st, &caller).await?.rules))
}

/// Replace the routing rules (ordered; validated as a whole)
#[utoipa::path(put, path = "/admin/rules", tag = "admin", request_body(content = Vec<Object>, description = "The rules, in order (docs/workspace.md)"),
    responses((status = 200, body = Vec<Object>), (status = 422, body = super::Problem)))]
async fn put_rules(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    J(rules): J<Vec<Rule>>,
) -> ApiResult<Json<Vec<Rule>>> {
    let out = rules.clone();
    edit(&st, &caller, move |ws| {
        ws.rules = rules;
        Ok(())
    })
    .await?;
    Ok(Json(out))
}

/// List pipelines and their stages
#[utoipa::path(get, path = "/admin/pipelines", tag = "admin", responses((status = 200, body = Vec<Object>)))]
async fn list_pipelines(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<Pipeline>>> {
    Ok(Json(read(&st, &caller).await?.pipelines))
}

/// Create or replace a pipeline with its ordered stages
#[utoipa::path(put, path = "/admin/pipelines/{id}", tag = "admin", params(("id" = String, Path, description = "Pipeline id")),
    request_body(content = Object, description = "A pipeline; `id` is taken from the path"),
    responses((status = 200, body = Object), (status = 422, body = super::Problem)))]
async fn put_pipeline(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
    J(mut pipeline): J<Pipeline>,
) -> ApiResult<Json<Pipeline>> {
    pipeline.id = id.clone();
    let out = pipeline.clone();
    edit(&st, &caller, move |ws| {
        match ws.pipelines.iter_mut().find(|p| p.id == id) {
            Some(p) => *p = pipeline,
            None => ws.pipelines.push(pipeline),
        }
        Ok(())
    })
    .await?;
    Ok(Json(out))
}

/// Delete a pipeline (refused while an inbox or rule uses it)
#[utoipa::path(delete, path = "/admin/pipelines/{id}", tag = "admin", params(("id" = String, Path, description = "Pipeline id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
async fn delete_pipeline(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
) -> ApiResult<StatusCode> {
    edit(&st, &caller, |ws| {
        if !ws.pipelines.iter().any(|p| p.id == id) {
            return Err(ApiError::NotFound(format!("no pipeline {id}")));
        }
        ws.pipelines.retain(|p| p.id != id);
        Ok(())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SlaSettings {
    /// Ordered; a conversation gets the first that matches its inbox and priority.
    #[schema(value_type = Vec<Object>)]
    pub sla_policies: Vec<SlaPolicy>,
    /// Business-hours calendars the policies refer to.
    #[schema(value_type = Vec<Object>)]
    pub calendars: Vec<CalendarSpec>,
}

/// SLA policies and business-hours calendars
#[utoipa::path(get, path = "/admin/sla", tag = "admin", responses((status = 200, body = SlaSettings)))]
async fn get_sla(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<SlaSettings>> {
    let ws = read(&st, &caller).await?;
    Ok(Json(SlaSettings { sla_policies: ws.sla_policies, calendars: ws.calendars }))
}

/// Replace the SLA policies and calendars (docs/metrics.md)
#[utoipa::path(put, path = "/admin/sla", tag = "admin", request_body = SlaSettings,
    responses((status = 200, body = SlaSettings), (status = 422, body = super::Problem)))]
async fn put_sla(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    J(body): J<SlaSettings>,
) -> ApiResult<Json<SlaSettings>> {
    edit(&st, &caller, |ws| {
        ws.sla_policies = body.sla_policies;
        ws.calendars = body.calendars;
        Ok(SlaSettings { sla_policies: ws.sla_policies.clone(), calendars: ws.calendars.clone() })
    })
    .await
    .map(Json)
}

/// Mailbox connections and their health
#[utoipa::path(get, path = "/admin/connections", tag = "admin", responses((status = 200, body = Vec<Object>)))]
async fn list_connections(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<Value>>> {
    super::require_admin(&caller)?;
    let mut out = Vec::new();
    for s in crate::mailbox::connection::status(&st.ports).await? {
        let mut v = serde_json::to_value(&s)?;
        // Settings may hold a CA certificate or subscription ids: not needed here.
        if let Some(c) = v.as_object_mut() {
            c.remove("settings");
        }
        out.push(v);
    }
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
