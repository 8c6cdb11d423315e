//! What an agent looks up beside conversations: who they are, the inboxes they see, the
//! users, contacts and companies with their email timeline, deals, tickets and reports.
//!
//! CRM records (contacts, companies, deals) belong to the whole workspace, as in
//! HubSpot; what they reveal about mail is filtered: a timeline shows only messages of
//! conversations in inboxes the caller may see, tickets only those of such inboxes.

use super::conversations::{TicketRecord, ticket_record};
use super::{ApiError, ApiResult, ApiState, Caller, IndexScan, J, P, Q};
use crate::keys::item_str as s;
use axum::extract::State;
use axum::response::Json;
use mailroom_core::workspace::Deal;
use mailroom_store::{Item, Query};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(my_settings, change_my_settings))
        .routes(routes!(inboxes))
        .routes(routes!(users))
        .routes(routes!(contacts))
        .routes(routes!(contact))
        .routes(routes!(companies))
        .routes(routes!(company))
        .routes(routes!(deals))
        .routes(routes!(deal))
        .routes(routes!(tickets))
        .routes(routes!(report_summary))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub email: String,
    pub name: String,
    /// `admin` or `agent`.
    pub role: String,
    pub teams: Vec<String>,
    pub inboxes: Vec<String>,
}

fn role(r: mailroom_core::workspace::Role) -> String {
    match r {
        mailroom_core::workspace::Role::Admin => "admin".into(),
        mailroom_core::workspace::Role::Agent => "agent".into(),
    }
}

/// Who am I
#[utoipa::path(get, path = "/me", tag = "directory", responses((status = 200, body = Me), (status = 401, body = super::Problem)))]
async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        inboxes: caller.visible_inboxes(),
        email: caller.email.clone(),
        name: caller.name.clone(),
        role: role(caller.role),
        teams: caller.teams.clone(),
    })
}

/// How one kind of notification reaches me.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotifyBy {
    Email,
    None,
}

impl From<mailroom_core::workspace::NotifyBy> for NotifyBy {
    fn from(n: mailroom_core::workspace::NotifyBy) -> NotifyBy {
        match n {
            mailroom_core::workspace::NotifyBy::Email => NotifyBy::Email,
            mailroom_core::workspace::NotifyBy::None => NotifyBy::None,
        }
    }
}

impl From<NotifyBy> for mailroom_core::workspace::NotifyBy {
    fn from(n: NotifyBy) -> mailroom_core::workspace::NotifyBy {
        match n {
            NotifyBy::Email => mailroom_core::workspace::NotifyBy::Email,
            NotifyBy::None => mailroom_core::workspace::NotifyBy::None,
        }
    }
}

/// My notification choices, one per kind (docs/events.md).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MyNotifications {
    pub assigned: Option<NotifyBy>,
    pub customer_reply: Option<NotifyBy>,
    pub mention: Option<NotifyBy>,
    pub sla_breach: Option<NotifyBy>,
    pub reconnect_required: Option<NotifyBy>,
    /// The daily digest email (off by default).
    pub digest: Option<bool>,
}

/// What every user may change about themselves. In a change, a field left out keeps
/// its value; `signature: null` removes the signature.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MySettings {
    pub name: Option<String>,
    /// Unavailable agents get no new conversations from round-robin or least-loaded
    /// assignment (out of office).
    pub available: Option<bool>,
    /// Added under my replies, above the inbox's signature.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub signature: Option<Option<String>>,
    pub notifications: Option<MyNotifications>,
}

/// Tells `"signature": null` (remove it) from a missing field (keep it).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn settings_of(u: &mailroom_core::workspace::User) -> MySettings {
    let n = u.notifications;
    MySettings {
        name: Some(u.name.clone()),
        available: Some(u.available),
        signature: Some(u.signature.clone()),
        notifications: Some(MyNotifications {
            assigned: Some(n.assigned.into()),
            customer_reply: Some(n.customer_reply.into()),
            mention: Some(n.mention.into()),
            sla_breach: Some(n.sla_breach.into()),
            reconnect_required: Some(n.reconnect_required.into()),
            digest: Some(n.digest),
        }),
    }
}

fn me_in(ws: &mailroom_core::workspace::Workspace, email: &str) -> ApiResult<usize> {
    ws.users
        .iter()
        .position(|u| u.email.eq_ignore_ascii_case(email))
        .ok_or_else(|| ApiError::Forbidden(format!("{email} is no longer a user of this workspace")))
}

/// My settings
#[utoipa::path(get, path = "/me/settings", tag = "directory", responses((status = 200, body = MySettings), (status = 401, body = super::Problem)))]
async fn my_settings(caller: Caller) -> ApiResult<Json<MySettings>> {
    let i = me_in(&caller.ws, &caller.email)?;
    Ok(Json(settings_of(&caller.ws.users[i])))
}

/// Change my name, availability, signature or notifications
///
/// Any user may; nothing else about them (role, teams, inboxes) changes here. Applied on
/// top of the workspace version it read, like an admin edit (409 if another edit won).
#[utoipa::path(patch, path = "/me/settings", tag = "directory", request_body = MySettings,
    responses((status = 200, body = MySettings), (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
async fn change_my_settings(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    J(change): J<MySettings>,
) -> ApiResult<Json<MySettings>> {
    Ok(Json(change_my_settings_as(&st, &caller, change).await?))
}

/// Changes the caller's own settings (the API and the web notifications page).
pub(crate) async fn change_my_settings_as(
    st: &ApiState,
    caller: &Caller,
    change: MySettings,
) -> ApiResult<MySettings> {
    let version = crate::workspace::version(&st.ports).await?;
    let mut ws = crate::workspace::load(&st.ports).await?.unwrap_or_default();
    let i = me_in(&ws, &caller.email)?;
    let u = &mut ws.users[i];
    if let Some(name) = change.name {
        if name.trim().is_empty() {
            return Err(ApiError::Invalid("name must not be empty".into(), vec![]));
        }
        u.name = name;
    }
    if let Some(a) = change.available {
        u.available = a;
    }
    if let Some(sig) = change.signature {
        u.signature = sig.filter(|s| !s.trim().is_empty());
    }
    if let Some(n) = change.notifications {
        let cur = &mut u.notifications;
        if let Some(d) = n.digest {
            cur.digest = d;
        }
        for (slot, new) in [
            (&mut cur.assigned, n.assigned),
            (&mut cur.customer_reply, n.customer_reply),
            (&mut cur.mention, n.mention),
            (&mut cur.sla_breach, n.sla_breach),
            (&mut cur.reconnect_required, n.reconnect_required),
        ] {
            if let Some(v) = new {
                *slot = v.into();
            }
        }
    }
    let out = settings_of(u);
    super::admin::commit(st, caller, ws, version).await?;
    Ok(out)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboxView {
    pub address: String,
    /// `shared` or `individual`.
    #[serde(rename = "type")]
    pub kind: String,
    pub provider: String,
    pub owner: Option<String>,
    pub signature: Option<String>,
    /// Connection health: connected, degraded or reconnect_required (absent when the inbox
    /// has no connection).
    pub connection: Option<String>,
}

/// Inboxes I can see
///
/// The inboxes whose mail I see; for an admin also the individual inboxes of others
/// (their existence and health, not their mail).
#[utoipa::path(get, path = "/inboxes", tag = "directory", responses((status = 200, body = Vec<InboxView>)))]
async fn inboxes(State(st): State<Arc<ApiState>>, caller: Caller) -> ApiResult<Json<Vec<InboxView>>> {
    let conns: HashMap<String, String> = crate::mailbox::connection::list(&st.ports)
        .await?
        .into_iter()
        .map(|c| (c.inbox.to_lowercase(), c.state.as_str().to_string()))
        .collect();
    let out = caller
        .ws
        .inboxes
        .iter()
        .filter(|i| caller.knows_inbox(&i.address))
        .map(|i| InboxView {
            address: i.address.clone(),
            kind: serde_json::to_value(i.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            provider: serde_json::to_value(i.provider)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            owner: i.owner.clone(),
            signature: i.signature.clone(),
            connection: conns.get(&i.address.to_lowercase()).cloned(),
        })
        .collect();
    Ok(Json(out))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub email: String,
    pub name: String,
    pub role: String,
    pub available: bool,
    pub teams: Vec<String>,
}

/// The workspace's users (for assignment and mentions)
#[utoipa::path(get, path = "/users", tag = "directory", responses((status = 200, body = Vec<UserView>)))]
async fn users(caller: Caller) -> Json<Vec<UserView>> {
    Json(
        caller
            .ws
            .users
            .iter()
            .map(|u| UserView {
                email: u.email.clone(),
                name: u.name.clone(),
                role: role(u.role),
                available: u.available,
                teams: caller.ws.teams_of(&u.email),
            })
            .collect(),
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Text in the address, name or domain (case-insensitive).
    pub q: Option<String>,
    /// 1 to 100 (default 50).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// How many index items a record or ticket list reads at most per call.
const SCAN_BUDGET: usize = 5000;

#[derive(Debug, Serialize, ToSchema)]
pub struct RecordPage {
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Value>,
    pub next_cursor: Option<String>,
}

/// One page of a gsi1 listing, filtered by `q` over the given attributes.
async fn page(
    st: &ApiState,
    index_pk: &str,
    p: &PageParams,
    fields: &[&str],
    keep: &[&str],
) -> ApiResult<RecordPage> {
    let limit = super::page_limit(p.limit, 50)?;
    let needle = p.q.as_deref().map(str::to_lowercase).filter(|q| !q.is_empty());
    let mut scan =
        IndexScan::new(&st.ports, vec![index_pk.to_string()], p.cursor.as_deref(), false, 200, SCAN_BUDGET)?;
    let mut out = Vec::new();
    while let Some(item) = scan.next().await? {
        if needle.as_deref().is_some_and(|n| {
            !fields.iter().any(|k| s(&item, k).is_some_and(|v| v.to_lowercase().contains(n)))
        }) {
            continue;
        }
        out.push(pick(&item, keep));
        if out.len() == limit {
            break;
        }
    }
    Ok(RecordPage { next_cursor: scan.next_cursor(out.len() == limit), items: out })
}

/// Only the named attributes of an item.
fn pick(item: &Item, keep: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for k in keep {
        if let Some(v) = item.get(*k) {
            m.insert((*k).to_string(), v.clone());
        }
    }
    Value::Object(m)
}

const CONTACT_FIELDS: &[&str] = &["email", "name", "company_domain", "owner", "properties", "created_at"];
const COMPANY_FIELDS: &[&str] = &["domain", "name", "owner", "properties", "created_at"];

/// List contacts
#[utoipa::path(get, path = "/contacts", tag = "crm", params(PageParams), responses((status = 200, body = RecordPage), (status = 400, body = super::Problem)))]
async fn contacts(
    State(st): State<Arc<ApiState>>,
    _caller: Caller,
    Q(p): Q<PageParams>,
) -> ApiResult<Json<RecordPage>> {
    Ok(Json(
        page(&st, crate::keys::CONTACTS_INDEX_PK, &p, &["email", "name", "company_domain"], CONTACT_FIELDS)
            .await?,
    ))
}

/// List companies
#[utoipa::path(get, path = "/companies", tag = "crm", params(PageParams), responses((status = 200, body = RecordPage), (status = 400, body = super::Problem)))]
async fn companies(
    State(st): State<Arc<ApiState>>,
    _caller: Caller,
    Q(p): Q<PageParams>,
) -> ApiResult<Json<RecordPage>> {
    Ok(Json(page(&st, crate::keys::COMPANIES_INDEX_PK, &p, &["domain", "name"], COMPANY_FIELDS).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEntry {
    pub date: String,
    pub message_id: String,
    pub conversation: String,
    pub inbox: String,
    pub direction: Option<String>,
    pub subject: Option<String>,
    pub kind: Option<String>,
    /// `email_open` or `email_click` for tracking activity; absent for a message.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
}

/// A contact's email timeline, newest first, only in conversations the caller may see.
async fn timeline(st: &ApiState, caller: &Caller, email: &str) -> ApiResult<Vec<TimelineEntry>> {
    let items =
        st.ports.table.query_all(Query::new(format!("timeline#{}", email.to_lowercase())).backward()).await?;
    let mut inbox_of: HashMap<String, Option<String>> = HashMap::new();
    let mut out = Vec::new();
    for it in items.into_iter().take(500) {
        let Some(conv) = s(&it, "conversation") else { continue };
        if !inbox_of.contains_key(&conv) {
            let inbox = match st.ports.table.get(&crate::keys::conv_key(&conv)).await? {
                Some(_) => s(&crate::thread::Threader::new(&st.ports).find(&conv).await?.item, "inbox"),
                None => None,
            };
            inbox_of.insert(conv.clone(), inbox);
        }
        let Some(Some(inbox)) = inbox_of.get(&conv).cloned() else { continue };
        if !caller.can_see(&inbox) {
            continue;
        }
        out.push(TimelineEntry {
            date: s(&it, "sk").and_then(|sk| sk.split('#').next().map(str::to_string)).unwrap_or_default(),
            message_id: s(&it, "message_id").unwrap_or_default(),
            conversation: conv,
            inbox,
            direction: s(&it, "direction"),
            subject: s(&it, "subject"),
            kind: s(&it, "kind"),
            event: s(&it, "type"),
        });
    }
    Ok(out)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactDetail {
    #[schema(value_type = Object)]
    pub contact: Value,
    #[schema(value_type = Vec<Object>)]
    pub deals: Vec<Value>,
    pub timeline: Vec<TimelineEntry>,
}

async fn deals_of(st: &ApiState, owner: &str) -> ApiResult<Vec<Value>> {
    let mut out = Vec::new();
    for link in st.ports.table.query_all(Query::new(format!("deals#{}", owner.to_lowercase()))).await? {
        if let Some(id) = s(&link, "sk")
            && let Some(d) = st.ports.table.get(&crate::keys::deal_key(&id)).await?
        {
            out.push(super::conversations::record(d));
        }
    }
    Ok(out)
}

/// A contact with their deals and email timeline
#[utoipa::path(get, path = "/contacts/{email}", tag = "crm", params(("email" = String, Path, description = "The contact's address")),
    responses((status = 200, body = ContactDetail), (status = 404, body = super::Problem)))]
async fn contact(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(email): P<String>,
) -> ApiResult<Json<ContactDetail>> {
    let item = st
        .ports
        .table
        .get(&crate::keys::contact_key(&email))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no contact {email}")))?;
    Ok(Json(ContactDetail {
        contact: pick(&item, CONTACT_FIELDS),
        deals: deals_of(&st, &email).await?,
        timeline: timeline(&st, &caller, &email).await?,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompanyDetail {
    #[schema(value_type = Object)]
    pub company: Value,
    #[schema(value_type = Vec<Object>)]
    pub contacts: Vec<Value>,
    #[schema(value_type = Vec<Object>)]
    pub deals: Vec<Value>,
    /// The timelines of the company's contacts, newest first.
    pub timeline: Vec<TimelineEntry>,
}

/// A company with its contacts, deals and email timeline
#[utoipa::path(get, path = "/companies/{domain}", tag = "crm", params(("domain" = String, Path, description = "The company's domain")),
    responses((status = 200, body = CompanyDetail), (status = 404, body = super::Problem)))]
async fn company(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(domain): P<String>,
) -> ApiResult<Json<CompanyDetail>> {
    let domain = domain.to_lowercase();
    let item = st
        .ports
        .table
        .get(&crate::keys::company_key(&domain))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no company {domain}")))?;
    // Contacts of the company: the contacts index filtered by domain (bounded).
    let people: Vec<Item> = crate::views::crm::list_index(&st.ports, crate::keys::CONTACTS_INDEX_PK)
        .await?
        .into_iter()
        .filter(|c| s(c, "company_domain").as_deref() == Some(domain.as_str()))
        .take(200)
        .collect();
    let mut tl = Vec::new();
    for c in &people {
        if let Some(e) = s(c, "email") {
            tl.extend(timeline(&st, &caller, &e).await?);
        }
    }
    tl.sort_by(|a, b| b.date.cmp(&a.date));
    tl.truncate(500);
    Ok(Json(CompanyDetail {
        company: pick(&item, COMPANY_FIELDS),
        contacts: people.iter().map(|c| pick(c, CONTACT_FIELDS)).collect(),
        deals: deals_of(&st, &domain).await?,
        timeline: tl,
    }))
}

/// List deals
#[utoipa::path(get, path = "/deals", tag = "crm", responses((status = 200, body = Vec<Deal>)))]
async fn deals(caller: Caller) -> ApiResult<Json<Vec<Deal>>> {
    Ok(Json(caller.ws.deals.clone()))
}

/// A deal
#[utoipa::path(get, path = "/deals/{id}", tag = "crm", params(("id" = String, Path, description = "Deal id")),
    responses((status = 200, body = Deal), (status = 404, body = super::Problem)))]
async fn deal(caller: Caller, P(id): P<String>) -> ApiResult<Json<Deal>> {
    let d = caller
        .ws
        .deals
        .iter()
        .find(|d| d.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("no deal {id}")))?;
    Ok(Json(d.clone()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TicketParams {
    /// `open` or `closed`.
    pub status: Option<String>,
    pub pipeline: Option<String>,
    pub stage: Option<String>,
    /// 1 to 100 (default 50).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TicketListItem {
    #[serde(flatten)]
    pub ticket: TicketRecord,
    pub conversation: String,
    pub inbox: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TicketPage {
    pub items: Vec<TicketListItem>,
    pub next_cursor: Option<String>,
}

/// List tickets (newest first) in inboxes I can see
#[utoipa::path(get, path = "/tickets", tag = "crm", params(TicketParams), responses((status = 200, body = TicketPage), (status = 400, body = super::Problem)))]
async fn tickets(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    Q(p): Q<TicketParams>,
) -> ApiResult<Json<TicketPage>> {
    let limit = super::page_limit(p.limit, 50)?;
    let pk = crate::keys::TICKETS_INDEX_PK;
    let mut scan =
        IndexScan::new(&st.ports, vec![pk.to_string()], p.cursor.as_deref(), true, 200, SCAN_BUDGET)?;
    let mut out = Vec::new();
    while let Some(t) = scan.next().await? {
        let inbox = s(&t, "inbox").unwrap_or_default();
        let want = |k: &str, v: &Option<String>| v.as_deref().is_none_or(|v| s(&t, k).as_deref() == Some(v));
        if !caller.can_see(&inbox)
            || !want("status", &p.status)
            || !want("pipeline", &p.pipeline)
            || !want("stage", &p.stage)
        {
            continue;
        }
        out.push(TicketListItem {
            ticket: ticket_record(&t),
            conversation: s(&t, "conversation").unwrap_or_default(),
            inbox,
        });
        if out.len() == limit {
            break;
        }
    }
    Ok(Json(TicketPage { next_cursor: scan.next_cursor(out.len() == limit), items: out }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportParams {
    /// First day, YYYY-MM-DD (in the report's time zone).
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD.
    pub to: Option<String>,
    pub inbox: Option<String>,
    /// An IANA time zone (default: the workspace's reports calendar, else UTC).
    pub tz: Option<String>,
}

/// The report (docs/metrics.md), over the inboxes I can see
#[utoipa::path(get, path = "/reports/summary", tag = "reports", params(ReportParams),
    responses((status = 200, body = crate::reports::Report), (status = 400, body = super::Problem)))]
async fn report_summary(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    Q(p): Q<ReportParams>,
) -> ApiResult<Json<crate::reports::Report>> {
    let day = |name: &str, v: &Option<String>| -> ApiResult<Option<chrono::NaiveDate>> {
        match v.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(x) => chrono::NaiveDate::parse_from_str(x, "%Y-%m-%d")
                .map(Some)
                .map_err(|_| ApiError::BadRequest(format!("{name} must be a date YYYY-MM-DD, not {x:?}"))),
        }
    };
    let (from, to) = (day("from", &p.from)?, day("to", &p.to)?);
    let tz = match p.tz.as_deref().filter(|z| !z.is_empty()) {
        None => None,
        Some(z) => Some(
            z.parse::<chrono_tz::Tz>()
                .map_err(|_| ApiError::BadRequest(format!("tz must be an IANA time zone, not {z:?}")))?,
        ),
    };
    let inbox = p.inbox.filter(|i| !i.is_empty());
    let visible = if caller.is_admin() { None } else { Some(caller.visible_inboxes()) };
    let f = crate::reports::Filter { from, to, inbox, tz, visible };
    Ok(Json(crate::reports::report(&st.ports, &caller.ws, &f, st.ports.clock.now()).await?))
}
