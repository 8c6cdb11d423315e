//! Admin endpoints: the workspace model `mailroom apply` writes, edited a piece at a time
//! (inboxes with their members, ticket automation and signature; users; teams; routing
//! rules; pipelines and stages; SLA policies and calendars) and form secrets; mailbox
//! connections are in [`super::connect`].
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
use std::sync::Arc;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use super::connect::{ConnectBody, ConnectStart, ImapConnectBody, ImapConnected, SmtpBody};
pub(crate) use super::connect::{connect_imap_as, connect_imap_inbox, start_oauth};

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
        .routes(routes!(rotate_form_secret))
        .merge(super::connect::routes())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkspaceDoc {
    /// Pass as `If-Match` to `PUT /admin/workspace`.
    pub version: u64,
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
#[utoipa::path(put, path = "/admin/workspace", tag = "admin", request_body(content = Workspace, description = "The workspace model (docs/workspace.md), as JSON"),
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
#[utoipa::path(get, path = "/admin/inboxes", tag = "admin", responses((status = 200, body = Vec<Inbox>)))]
async fn list_inboxes(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<Inbox>>> {
    Ok(Json(read(&st, &caller).await?.inboxes))
}

/// An inbox's configuration
#[utoipa::path(get, path = "/admin/inboxes/{address}", tag = "admin", params(("address" = String, Path, description = "Inbox address")),
    responses((status = 200, body = Inbox), (status = 404, body = super::Problem)))]
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
    request_body(content = Inbox, description = "An inbox (docs/workspace.md); `address` is taken from the path"),
    responses((status = 200, body = Inbox), (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
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
    request_body(content = Members, description = "Who may see the inbox: users and teams"),
    responses((status = 200, body = Inbox), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
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
    request_body = SignatureBody, responses((status = 200, body = Inbox), (status = 404, body = super::Problem)))]
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
    request_body(content = TicketAutomation, description = "Whether the inbox makes tickets, in which pipeline and stage"),
    responses((status = 200, body = Inbox), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
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
#[utoipa::path(get, path = "/admin/users", tag = "admin", responses((status = 200, body = Vec<User>)))]
async fn list_users(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(read(&st, &caller).await?.users))
}

/// Create or replace a user (role, availability, signature)
#[utoipa::path(put, path = "/admin/users/{email}", tag = "admin", params(("email" = String, Path, description = "The user's address")),
    request_body(content = User, description = "A user (docs/workspace.md); `email` is taken from the path"),
    responses((status = 200, body = User), (status = 422, body = super::Problem)))]
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
#[utoipa::path(get, path = "/admin/teams", tag = "admin", responses((status = 200, body = Vec<Team>)))]
async fn list_teams(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<Team>>> {
    Ok(Json(read(&st, &caller).await?.teams))
}

/// Create or replace a team
#[utoipa::path(put, path = "/admin/teams/{id}", tag = "admin", params(("id" = String, Path, description = "Team id")),
    request_body(content = Team, description = "A team; `id` is taken from the path"),
    responses((status = 200, body = Team), (status = 422, body = super::Problem)))]
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
#[utoipa::path(get, path = "/admin/rules", tag = "admin", responses((status = 200, body = Vec<Rule>)))]
async fn get_rules(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<Rule>>> {
    Ok(Json(read(&st, &caller).await?.rules))
}

/// Replace the routing rules (ordered; validated as a whole)
#[utoipa::path(put, path = "/admin/rules", tag = "admin", request_body(content = Vec<Rule>, description = "The rules, in order (docs/workspace.md)"),
    responses((status = 200, body = Vec<Rule>), (status = 422, body = super::Problem)))]
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
#[utoipa::path(get, path = "/admin/pipelines", tag = "admin", responses((status = 200, body = Vec<Pipeline>)))]
async fn list_pipelines(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<Pipeline>>> {
    Ok(Json(read(&st, &caller).await?.pipelines))
}

/// Create or replace a pipeline with its ordered stages
#[utoipa::path(put, path = "/admin/pipelines/{id}", tag = "admin", params(("id" = String, Path, description = "Pipeline id")),
    request_body(content = Pipeline, description = "A pipeline; `id` is taken from the path"),
    responses((status = 200, body = Pipeline), (status = 422, body = super::Problem)))]
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
    pub sla_policies: Vec<SlaPolicy>,
    /// Business-hours calendars the policies refer to.
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

#[derive(Debug, Serialize, ToSchema)]
pub struct FormSecret {
    pub form: String,
    /// Shown this once: send it as `X-Mailroom-Form-Secret`, or sign the body with it
    /// (`X-Mailroom-Form-Signature`, docs/forms.md). The previous secret stops working.
    pub secret: String,
    /// Where the form posts.
    pub submit_url: String,
}

/// Make a new secret for a web form (the old one stops working at once)
#[utoipa::path(post, path = "/admin/forms/{id}/secret", tag = "admin", params(("id" = String, Path, description = "Form id ([[forms]] of the workspace)")),
    responses((status = 200, body = FormSecret), (status = 403, body = super::Problem), (status = 404, body = super::Problem)))]
async fn rotate_form_secret(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
) -> ApiResult<Json<FormSecret>> {
    super::require_admin(&caller)?;
    if caller.ws.form(&id).is_none() {
        return Err(ApiError::NotFound(format!("no form {id:?}: declare it in [[forms]] first")));
    }
    let secret = crate::forms::rotate_form_secret(&st.ports, &id).await.map_err(ApiError::Internal)?;
    let submit_url = format!("{}/forms/{id}/submissions", st.public_url.trim_end_matches('/'));
    Ok(Json(FormSecret { form: id, secret, submit_url }))
}
