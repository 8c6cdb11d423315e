//! Conversations: the paged list with filters, the detail (messages with sanitised HTML,
//! attachments by signed short-lived URL, internal comments, the CRM records), and what
//! agents do to a conversation (assign, close, reopen, move the ticket's stage, comment).

use super::{ApiError, ApiResult, ApiState, Caller, J, P, Q};
use crate::keys::conv_key;
use crate::keys::item_str as s;
use crate::records::{Conversation, Message, Ticket};
use crate::thread::Threader;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use base64::Engine;
use mailroom_core::html::RemoteImages;
use mailroom_store::Item;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(detail))
        .routes(routes!(assign))
        .routes(routes!(close))
        .routes(routes!(reopen))
        .routes(routes!(create_ticket))
        .routes(routes!(move_stage))
        .routes(routes!(add_comment))
        .routes(routes!(snooze))
        .routes(routes!(reply))
        .routes(routes!(attachment_url))
        .routes(routes!(attachment))
}

/// How many conversations one list call reads at most while filtering: a filter that
/// matches rarely returns a short page with a cursor rather than scanning everything.
const SCAN_BUDGET: usize = 2000;
/// Signed attachment URLs live this long.
const ATTACHMENT_URL_TTL_SECS: i64 = 300;

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationSummary {
    pub id: String,
    pub inbox: String,
    pub subject: String,
    /// `open` or `closed`.
    pub status: String,
    pub first_date: String,
    pub contact_email: Option<String>,
    pub company_domain: Option<String>,
    pub team: Option<String>,
    pub assignee: Option<String>,
    pub priority: Option<String>,
    pub tags: Vec<String>,
    /// Since when the customer waits for an answer (RFC 3339), if they do.
    pub waiting_since: Option<String>,
    /// SLA status: met, breached, due or paused (absent without a policy).
    pub sla: Option<String>,
    /// When the SLA target falls due (RFC 3339), while it is pending.
    pub sla_due_at: Option<String>,
    /// When we received the conversation's newest message (RFC 3339): the list's order.
    pub last_activity: Option<String>,
    /// The new text of the newest message, shortened.
    pub snippet: Option<String>,
    /// `email`, `form` or `chat`: the channel of the first message.
    pub channel: Option<String>,
    /// Snoozed until then (RFC 3339): out of the open lists until that time.
    pub snoozed_until: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationPage {
    pub items: Vec<ConversationSummary>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this inbox.
    pub inbox: Option<String>,
    /// `open` or `closed`.
    pub status: Option<String>,
    /// A user's email, or `me`.
    pub assignee: Option<String>,
    /// A team id.
    pub team: Option<String>,
    /// Only conversations nobody is assigned to.
    pub unassigned: Option<bool>,
    /// Only open conversations whose customer has waited longer than the workspace's
    /// `stale_after`.
    pub stale: Option<bool>,
    /// `email`, `form` or `chat`.
    pub channel: Option<String>,
    /// Snoozed conversations: left out unless `true` (then only those).
    pub snoozed: Option<bool>,
    /// Text in the subject, the contact's address or company domain, or the newest
    /// message's text (case-insensitive).
    pub q: Option<String>,
    /// Page size, 1 to 100 (default 25).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

fn strings(item: &Item, k: &str) -> Vec<String> {
    item.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}

fn rfc3339(t: Option<i64>) -> Option<String> {
    t.and_then(|t| chrono::DateTime::from_timestamp(t, 0)).map(|d| d.to_rfc3339())
}

/// What a list shows of a conversation, from its item alone (the report stage keeps
/// `waiting_since` and `sla` on it); a conversation written before that reads its report
/// state once.
async fn summary(
    ports: &crate::runtime::ports::Ports,
    id: &str,
    item: &Item,
) -> ApiResult<ConversationSummary> {
    let c = Conversation::from_item(item);
    let (waiting, sla) = if c.figures_v.is_some() {
        (c.waiting_since, c.sla.clone())
    } else {
        let fig = crate::reports::figures(ports, id).await?;
        (fig.as_ref().and_then(|f| f.waiting_since), fig.and_then(|f| f.sla))
    };
    Ok(ConversationSummary {
        id: id.to_string(),
        status: c.status().to_string(),
        inbox: c.inbox,
        subject: c.subject,
        first_date: c.first_date,
        contact_email: c.contact_email,
        company_domain: c.company_domain,
        team: c.team,
        assignee: c.assignee,
        priority: c.priority,
        tags: c.tags,
        waiting_since: rfc3339(waiting),
        sla_due_at: rfc3339(c.sla_due_at),
        sla,
        last_activity: c.last_activity,
        snippet: c.snippet,
        channel: c.channel,
        snoozed_until: rfc3339(c.snoozed_until),
    })
}

/// The attributes a list reads of each conversation item (see [`summary`]).
pub(crate) const SUMMARY_ATTRS: &[&str] = &[
    "parent",
    "inbox",
    "subject",
    "status",
    "first_date",
    "contact_email",
    "company_domain",
    "team",
    "assignee",
    "priority",
    "tags",
    "waiting_since",
    "sla",
    "sla_due_at",
    "figures_v",
    "last_activity",
    "snippet",
    "channel",
    "snoozed_until",
];

/// A conversation the caller may see, by any of its ids (a merged conversation's id
/// leads to the surviving one). Unknown and invisible are the same 404.
pub(crate) async fn visible_root(st: &ApiState, caller: &Caller, id: &str) -> ApiResult<(String, Item)> {
    let not_found = || ApiError::NotFound(format!("no conversation {id}"));
    if id.is_empty() || id.len() > 200 || st.ports.table.get(&conv_key(id)).await?.is_none() {
        return Err(not_found());
    }
    let root = Threader::new(&st.ports).find(id).await?;
    let inbox = s(&root.item, "inbox").unwrap_or_default();
    if !caller.can_see(&inbox) {
        return Err(not_found());
    }
    Ok((root.id, root.item))
}

/// List conversations
///
/// Newest activity first (by when we received the newest message), only in inboxes the
/// caller may see; snoozed conversations only with `snoozed=true`.
#[utoipa::path(get, path = "/conversations", tag = "conversations", params(ListParams),
    responses((status = 200, body = ConversationPage), (status = 400, body = super::Problem), (status = 401, body = super::Problem)))]
async fn list(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    Q(p): Q<ListParams>,
) -> ApiResult<Json<ConversationPage>> {
    Ok(Json(list_page(&st.ports, &caller, &p).await?))
}

/// One page of the conversations `caller` may see, filtered by `p` (the API's list, the
/// web inbox's list).
pub(crate) async fn list_page(
    ports: &crate::runtime::ports::Ports,
    caller: &Caller,
    p: &ListParams,
) -> ApiResult<ConversationPage> {
    let limit = super::page_limit(p.limit, 25)?;
    if let Some(status) = &p.status
        && status != "open"
        && status != "closed"
    {
        return Err(ApiError::BadRequest("status must be open or closed".into()));
    }
    let assignee =
        p.assignee.as_deref().map(|a| if a == "me" { caller.email.clone() } else { a.to_lowercase() });
    let needle = p.q.as_deref().map(str::to_lowercase).filter(|q| !q.is_empty());
    let now = ports.clock.now().timestamp();
    let stale_after = caller.ws.stale_after_secs();
    let mut scan = super::IndexScan::new(
        ports,
        crate::keys::conversations_index_pks(),
        p.cursor.as_deref(),
        true,
        100,
        SCAN_BUDGET,
    )?
    .project(SUMMARY_ATTRS);
    let mut out = Vec::new();
    while let Some(item) = scan.next().await? {
        let c = Conversation::from_item(&item);
        // Merged conversations live on in their root.
        if c.parent.is_some() || c.id.is_empty() {
            continue;
        }
        let (id, status) = (c.id.clone(), c.status().to_string());
        let keep = caller.can_see(&c.inbox)
            && p.inbox.as_deref().is_none_or(|i| i.eq_ignore_ascii_case(&c.inbox))
            && p.status.as_deref().is_none_or(|want| want == status)
            && assignee.as_deref().is_none_or(|a| c.assignee.as_deref() == Some(a))
            && p.team.as_deref().is_none_or(|t| c.team.as_deref() == Some(t))
            && p.unassigned.is_none_or(|u| u == c.assignee.is_none())
            && p.channel.as_deref().is_none_or(|ch| c.channel.as_deref().unwrap_or("email") == ch)
            && p.snoozed.unwrap_or(false) == c.snoozed_until.is_some_and(|t| t > now)
            && needle.as_deref().is_none_or(|n| {
                [Some(&c.subject), c.contact_email.as_ref(), c.company_domain.as_ref(), c.snippet.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|v| v.to_lowercase().contains(n))
            });
        if !keep {
            continue;
        }
        let sum = summary(ports, &id, &item).await?;
        if let Some(want) = p.stale {
            let waiting = sum
                .waiting_since
                .as_deref()
                .and_then(|w| chrono::DateTime::parse_from_rfc3339(w).ok())
                .map(|w| w.timestamp());
            let stale = status == "open" && waiting.is_some_and(|w| now - w > stale_after);
            if stale != want {
                continue;
            }
        }
        out.push(sum);
        if out.len() == limit {
            break;
        }
    }
    let next_cursor = scan.next_cursor(out.len() == limit);
    Ok(ConversationPage { items: out, next_cursor })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttachmentView {
    pub name: Option<String>,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    pub inline: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDetail {
    pub message_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// normal, auto_reply, bounce, list, ...
    pub kind: String,
    pub from: Option<String>,
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub date: Option<String>,
    /// The whole plain text.
    pub text: String,
    /// The new part of the text (without the quoted history and the signature).
    pub new_text: String,
    /// The quoted history under the new text, and the sender's signature, when found.
    pub quoted_text: Option<String>,
    pub signature: Option<String>,
    /// Sanitised HTML (no scripts, event handlers or remote-content tricks).
    pub html: Option<String>,
    pub attachments: Vec<AttachmentView>,
    /// The inboxes holding a copy.
    pub inboxes: Vec<String>,
    /// Set when the stored raw message could not be read back.
    pub error: Option<String>,
    /// Opens and clicks of a reply sent with tracking (docs/tracking.md).
    #[schema(value_type = Option<Object>)]
    pub tracking: Option<Value>,
    /// The message arrived in an inbox claiming one of our own addresses in From without
    /// proof (no DMARC pass from a trusted receiving host): a customer message, flagged.
    pub spoofed: bool,
    /// Remote images left out of `html` (ask again with `images=show` to keep them).
    pub blocked_images: usize,
    /// Email-log confirmation: where the message was logged on the CRM (contacts,
    /// company, deal, ticket), or why not. Absent until the route stage has run.
    pub log: Option<crate::records::LogEntry>,
}

pub use crate::conversations::Comment;

#[derive(Debug, Serialize, ToSchema)]
pub struct TicketRecord {
    pub id: String,
    pub pipeline: String,
    pub stage: String,
    pub status: String,
    pub owner: Option<String>,
    pub team: Option<String>,
    pub priority: Option<String>,
    pub created_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationDetail {
    #[serde(flatten)]
    pub summary: ConversationSummary,
    /// In arrival order.
    pub messages: Vec<MessageDetail>,
    /// Internal comments: never emailed.
    pub comments: Vec<Comment>,
    #[schema(value_type = Option<Object>)]
    pub contact: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub company: Option<Value>,
    #[schema(value_type = Vec<Object>)]
    pub deals: Vec<Value>,
    pub ticket: Option<TicketRecord>,
    /// What happened (opened, assigned, closed, SLA breached, ...), oldest first.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// Replies sent from Mailroom and their state (queued, sending, sent, failed with the
    /// provider's error): a failure shows here, never silently.
    #[schema(value_type = Vec<Object>)]
    pub outbox: Vec<Value>,
    /// Who a reply goes to by default; `new` lists those who were not in the conversation
    /// before the message replied to (a reply to them must name them in `to`).
    pub reply_recipients: ReplyRecipients,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplyRecipients {
    pub to: Vec<String>,
    pub new: Vec<String>,
    pub in_reply_to: Option<String>,
}

pub(crate) fn ticket_record(t: &Item) -> TicketRecord {
    let t = Ticket::from_item(t);
    TicketRecord {
        id: t.id,
        pipeline: t.pipeline,
        stage: t.stage,
        status: t.status,
        owner: t.owner,
        team: t.team,
        priority: t.priority,
        created_at: t.created_at,
    }
}

/// Strips the storage keys off an item for display.
pub(crate) fn record(mut item: Item) -> Value {
    for k in ["pk", "sk", "gsi1pk", "gsi1sk"] {
        item.remove(k);
    }
    Value::Object(item)
}

pub(crate) async fn message_detail(st: &ApiState, msg: &Item, images: RemoteImages) -> MessageDetail {
    let m = Message::from_item(msg);
    let mut d = MessageDetail {
        direction: m.direction.clone().unwrap_or_default(),
        kind: m.kind.clone().unwrap_or_default(),
        from: m.from.clone(),
        from_name: m.from_name.clone(),
        to: m.to.clone(),
        cc: m.cc.clone(),
        subject: m.subject.clone(),
        date: m.date.clone(),
        text: String::new(),
        new_text: m.preview.clone().unwrap_or_default(),
        quoted_text: None,
        signature: None,
        html: None,
        attachments: vec![],
        inboxes: m.copies.iter().map(|c| c.inbox.clone()).collect(),
        error: None,
        tracking: None,
        spoofed: m.spoofed,
        blocked_images: 0,
        log: m.log.clone(),
        message_id: m.message_id,
    };
    let Some(raw_key) = m.copies.first().and_then(|c| c.key.as_deref()) else {
        d.error = Some("no stored copy".into());
        return d;
    };
    match st.ports.blobs.get(raw_key).await {
        Ok(Some(raw)) => match mailroom_core::understand(&raw) {
            Ok(u) => {
                let m = u.message;
                d.text = m.text;
                d.new_text = m.new_text;
                d.quoted_text = m.quoted_text;
                d.signature = m.signature;
                // Our own replies carry our pixel and click links: shown without them, so
                // reading a sent message never counts as the customer's open. Only a
                // message we sent (its Message-ID signed by us) has links to restore, and
                // only links signed for it are restored; whatever comes out goes through
                // the sanitiser again.
                let ours =
                    d.direction == "outbound" && st.ports.signer.verify_message_id(&d.message_id).is_some();
                let html = match m.html {
                    Some(h) if ours => Some(crate::outbound::track::strip_trackers(
                        &st.ports.signer,
                        &st.public_url,
                        &d.message_id,
                        &h,
                    )),
                    other => other,
                };
                if let Some(h) = html {
                    let safe = mailroom_core::html::sanitize(&h, images);
                    d.html = Some(safe.html);
                    d.blocked_images = safe.blocked_images;
                }
                d.attachments = m
                    .attachments
                    .into_iter()
                    .map(|a| AttachmentView {
                        name: a.name,
                        content_type: a.content_type,
                        size: a.size,
                        sha256: a.sha256,
                        inline: a.inline,
                    })
                    .collect();
            }
            Err(e) => d.error = Some(format!("the raw message cannot be parsed: {e}")),
        },
        Ok(None) => d.error = Some(format!("the raw message {raw_key} is missing")),
        Err(e) => d.error = Some(format!("the raw message cannot be read: {e}")),
    }
    if d.direction == "outbound" {
        match crate::outbound::track::activity(&st.ports, &d.message_id).await {
            Ok(a) if a.opens + a.clicks + a.machine_opens + a.machine_clicks > 0 => {
                d.tracking = serde_json::to_value(a).ok();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), message = %d.message_id, "tracking activity unreadable")
            }
        }
    }
    d
}

/// The messages of a conversation (and of those merged into it), in arrival order.
pub(crate) async fn conversation_messages(
    ports: &crate::runtime::ports::Ports,
    root: &str,
) -> ApiResult<Vec<Item>> {
    Ok(crate::views::conversations::messages_of(ports, root).await?)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DetailParams {
    /// `block` (default): remote images are left out of the HTML, so reading a mail does
    /// not tell its sender; `show`: they are kept.
    pub images: Option<String>,
}

/// Get a conversation
#[utoipa::path(get, path = "/conversations/{id}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id"), DetailParams),
    responses((status = 200, body = ConversationDetail), (status = 404, body = super::Problem)))]
async fn detail(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
    Q(p): Q<DetailParams>,
) -> ApiResult<Json<ConversationDetail>> {
    let (root, item) = visible_root(&st, &caller, &id).await?;
    let images = match p.images.as_deref() {
        None | Some("block") => RemoteImages::Block,
        Some("show") => RemoteImages::Allow,
        Some(other) => {
            return Err(ApiError::BadRequest(format!("images must be block or show, not {other:?}")));
        }
    };
    Ok(Json(detail_of(&st, &caller, &root, &item, images).await?))
}

/// Everything shown of one conversation (the API's detail, the web inbox's view): its
/// messages (text, sanitised HTML, attachments), comments, CRM records, ticket, events,
/// outbox and default reply recipients.
pub(crate) async fn detail_of(
    st: &ApiState,
    caller: &Caller,
    root: &str,
    item: &Item,
    images: RemoteImages,
) -> ApiResult<ConversationDetail> {
    let root = root.to_string();
    let t = &st.ports.table;
    let mut messages = Vec::new();
    for m in conversation_messages(&st.ports, &root).await? {
        messages.push(message_detail(st, &m, images).await);
    }
    let comments = crate::conversations::comments(&st.ports, &root).await.map_err(command_error)?;
    let contact = match s(item, "contact_email") {
        Some(e) => t.get(&crate::keys::contact_key(&e)).await?.map(record),
        None => None,
    };
    let company = match s(item, "company_domain") {
        Some(d) => t.get(&crate::keys::company_key(&d)).await?.map(record),
        None => None,
    };
    let mut deals = Vec::new();
    for d in strings(item, "deal_ids") {
        if let Some(x) = t.get(&crate::keys::deal_key(&d)).await? {
            deals.push(record(x));
        }
    }
    let ticket = t.get(&crate::keys::ticket_key(&root)).await?.map(|x| ticket_record(&x));
    let events = crate::feed::conversation_events(&st.ports, &root).await?.into_iter().map(record).collect();
    let outbox = crate::outbound::reply::outbox(&st.ports, &root)
        .await?
        .into_iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()?;
    // An unreadable message shows as an error on that message, never as a failed request.
    let r =
        crate::outbound::reply::reply_recipients(&st.ports, &caller.ws, &root).await.unwrap_or_else(|e| {
            tracing::warn!(conversation = %root, error = %format!("{e:#}"), "no default reply recipients");
            crate::outbound::reply::Recipients::default()
        });
    Ok(ConversationDetail {
        reply_recipients: ReplyRecipients { to: r.to, new: r.new, in_reply_to: r.in_reply_to },
        summary: summary(&st.ports, &root, item).await?,
        messages,
        comments,
        contact,
        company,
        deals,
        ticket,
        events,
        outbox,
    })
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ReplyBody {
    /// The reply's plain text (the signatures are added).
    pub text: String,
    /// Optional HTML; sanitised before it is sent.
    pub html: Option<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    /// The recipients, as the agent saw and confirmed them. Left out: the conversation's
    /// `reply_recipients.to`, refused (422) when one of them is new to the conversation.
    pub to: Option<Vec<String>>,
    /// The client's id for this reply: the same id again never sends twice (also accepted
    /// as the `Idempotency-Key` header).
    pub request_id: Option<String>,
    /// Files to attach: `{"upload": id}` from `POST /uploads`, or `{"sha256": ...}` of an
    /// attachment of a message in this conversation (forwarded without uploading it).
    #[serde(default)]
    pub attachments: Vec<crate::outbound::attach::ReplyAttachment>,
}

/// Reply to the customer from the conversation's inbox
///
/// Queues the reply on the send function: threading headers, the user's and the inbox's
/// signatures, tracking when the inbox has it on, sent through the inbox's provider. The
/// same request id (body `request_id` or `Idempotency-Key`) sends once; the outbox entry
/// shows its progress and any failure.
#[utoipa::path(post, path = "/conversations/{id}/replies", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id"), ("Idempotency-Key" = Option<String>, Header, description = "The client's request id")),
    request_body = ReplyBody,
    responses((status = 202, description = "Queued (or already queued under this request id)", body = crate::outbound::reply::OutboxView),
        (status = 422, body = super::Problem),
        (status = 400, body = super::Problem), (status = 404, body = super::Problem), (status = 409, body = super::Problem)))]
async fn reply(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
    headers: HeaderMap,
    J(body): J<ReplyBody>,
) -> ApiResult<(StatusCode, Json<crate::outbound::reply::OutboxView>)> {
    use crate::outbound::reply::{ReplyRequest, SendError};
    let (root, _) = visible_root(&st, &caller, &id).await?;
    let request_id = body
        .request_id
        .clone()
        .or_else(|| headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string))
        .filter(|r| !r.trim().is_empty() && r.len() <= 200)
        .ok_or_else(|| {
            ApiError::BadRequest(
                "a reply needs a request id (1-200 characters): `request_id` or `Idempotency-Key`".into(),
            )
        })?;
    if body.text.trim().is_empty() || body.text.len() > 200_000 {
        return Err(ApiError::BadRequest("text is 1 to 200000 characters".into()));
    }
    let req = ReplyRequest {
        request_id,
        author: caller.email.clone(),
        text: body.text,
        // The agent's HTML is sanitised like incoming mail before it goes anywhere.
        html: body.html.map(|h| mailroom_core::html::sanitize(&h, RemoteImages::Allow).html),
        cc: body.cc,
        to: body.to,
        attachments: body.attachments,
    };
    let out = crate::outbound::reply::queue_reply(&st.ports, &caller.ws, &root, req, Some(&st.public_url))
        .await
        .map_err(|e| match e {
            SendError::ConversationNotFound(_) => ApiError::NotFound(format!("no conversation {id}")),
            SendError::Invalid(m) => ApiError::Invalid(m, vec![]),
            e @ SendError::Conflict { .. } => ApiError::Conflict(e.to_string()),
            SendError::Other(e) => ApiError::Internal(e),
        })?;
    st.ports.flush()?;
    Ok((StatusCode::ACCEPTED, Json(out)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AssignBody {
    /// The user to assign (a member of the inbox), or null to unassign.
    pub assignee: Option<String>,
    /// The team, when it changes.
    pub team: Option<String>,
}

/// Assign a conversation
#[utoipa::path(post, path = "/conversations/{id}/assignment", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")), request_body = AssignBody,
    responses((status = 200, body = ConversationSummary), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
async fn assign(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
    J(body): J<AssignBody>,
) -> ApiResult<Json<ConversationSummary>> {
    let (root, item) = visible_root(&st, &caller, &id).await?;
    let inbox = Conversation::from_item(&item).inbox;
    crate::conversations::assign(
        &st.ports,
        &caller,
        &root,
        &inbox,
        body.assignee.as_deref(),
        body.team.as_deref(),
    )
    .await
    .map_err(command_error)?;
    st.ports.flush()?;
    let item = st.ports.table.get(&conv_key(&root)).await?.unwrap_or(item);
    Ok(Json(summary(&st.ports, &root, &item).await?))
}

async fn set_status(
    st: &ApiState,
    caller: &Caller,
    id: &str,
    close: bool,
) -> ApiResult<Json<ConversationSummary>> {
    let (root, _) = visible_root(st, caller, id).await?;
    let now = st.ports.clock.now();
    crate::conversations::set_status(&st.ports, &caller.ws, &root, close, Some(&caller.email), now).await?;
    st.ports.flush()?;
    let item = st.ports.table.get(&conv_key(&root)).await?.unwrap_or_default();
    Ok(Json(summary(&st.ports, &root, &item).await?))
}

/// Close a conversation (and its ticket)
#[utoipa::path(post, path = "/conversations/{id}/close", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = ConversationSummary), (status = 404, body = super::Problem)))]
async fn close(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
) -> ApiResult<Json<ConversationSummary>> {
    set_status(&st, &caller, &id, true).await
}

/// Reopen a conversation (and its ticket)
#[utoipa::path(post, path = "/conversations/{id}/reopen", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")),
    responses((status = 200, body = ConversationSummary), (status = 404, body = super::Problem)))]
async fn reopen(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
) -> ApiResult<Json<ConversationSummary>> {
    set_status(&st, &caller, &id, false).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTicketBody {
    /// Default: the pipeline the routing rule or the inbox's ticket automation names, or
    /// the workspace's only pipeline.
    pub pipeline: Option<String>,
    /// Default: the pipeline's first stage.
    pub stage: Option<String>,
}

/// Create the conversation's ticket by hand
///
/// For a conversation automation left without one (an inbox without ticket automation,
/// a rule that said no ticket, mail between colleagues). One ticket per conversation: 409
/// if it has one. A ticket in a closed stage closes the conversation; one in an open
/// stage reopens a closed conversation.
#[utoipa::path(post, path = "/conversations/{id}/ticket", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")), request_body = NewTicketBody,
    responses((status = 201, body = TicketRecord), (status = 404, body = super::Problem), (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
async fn create_ticket(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
    J(body): J<NewTicketBody>,
) -> ApiResult<(StatusCode, Json<TicketRecord>)> {
    let (root, item) = visible_root(&st, &caller, &id).await?;
    let t = crate::tickets::create(
        &st.ports,
        &caller.ws,
        &root,
        &item,
        body.pipeline.as_deref(),
        body.stage.as_deref(),
        &caller.email,
    )
    .await
    .map_err(ticket_error)?;
    st.ports.flush()?;
    Ok((StatusCode::CREATED, Json(ticket_record(&t))))
}

fn command_error(e: crate::conversations::CommandError) -> ApiError {
    match e {
        crate::conversations::CommandError::Invalid(m) => ApiError::Invalid(m, vec![]),
        crate::conversations::CommandError::Other(e) => ApiError::Internal(e),
    }
}

fn ticket_error(e: crate::tickets::TicketError) -> ApiError {
    use crate::tickets::TicketError;
    match e {
        TicketError::Invalid(m) => ApiError::Invalid(m, vec![]),
        TicketError::Conflict(m) => ApiError::Conflict(m),
        TicketError::Other(e) => ApiError::Internal(e),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StageBody {
    /// A stage of the ticket's pipeline.
    pub stage: String,
}

/// Move the conversation's ticket to another stage
///
/// A closed stage closes the conversation; moving out of one reopens it.
#[utoipa::path(post, path = "/conversations/{id}/ticket/stage", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")), request_body = StageBody,
    responses((status = 200, body = TicketRecord), (status = 404, body = super::Problem), (status = 409, body = super::Problem), (status = 422, body = super::Problem)))]
async fn move_stage(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
    J(body): J<StageBody>,
) -> ApiResult<Json<TicketRecord>> {
    let (root, _) = visible_root(&st, &caller, &id).await?;
    let t = crate::tickets::move_stage(&st.ports, &caller.ws, &root, &body.stage, &caller.email)
        .await
        .map_err(ticket_error)?;
    st.ports.flush()?;
    Ok(Json(ticket_record(&t)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CommentBody {
    /// Markdown-free plain text; `@user@example.com` mentions a user.
    pub body: String,
}

/// Add an internal comment
///
/// Comments are never emailed to the customer.
#[utoipa::path(post, path = "/conversations/{id}/comments", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")), request_body = CommentBody,
    responses((status = 201, body = Comment), (status = 400, body = super::Problem), (status = 404, body = super::Problem)))]
async fn add_comment(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
    J(body): J<CommentBody>,
) -> ApiResult<(StatusCode, Json<Comment>)> {
    let (root, item) = visible_root(&st, &caller, &id).await?;
    let inbox = Conversation::from_item(&item).inbox;
    let comment = crate::conversations::add_comment(&st.ports, &caller, &root, &inbox, &body.body)
        .await
        .map_err(|e| match e {
            crate::conversations::CommandError::Invalid(m) => ApiError::BadRequest(m),
            e => command_error(e),
        })?;
    st.ports.flush()?;
    Ok((StatusCode::CREATED, Json(comment)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SnoozeBody {
    /// Until when (RFC 3339, in the future); null wakes the conversation.
    pub until: Option<String>,
}

/// Snooze a conversation until a time
///
/// A snoozed conversation leaves the open lists until then (or until its customer
/// writes again); `until: null` wakes it now.
#[utoipa::path(post, path = "/conversations/{id}/snooze", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id")), request_body = SnoozeBody,
    responses((status = 200, body = ConversationSummary), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
async fn snooze(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P(id): P<String>,
    J(body): J<SnoozeBody>,
) -> ApiResult<Json<ConversationSummary>> {
    let (root, _) = visible_root(&st, &caller, &id).await?;
    let until = match body.until.as_deref() {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| ApiError::Invalid(format!("until {t:?} is not an RFC 3339 time: {e}"), vec![]))?
                .with_timezone(&chrono::Utc),
        ),
    };
    crate::conversations::snooze(&st.ports, &caller, &root, until).await.map_err(command_error)?;
    st.ports.flush()?;
    let item = st.ports.table.get(&conv_key(&root)).await?.unwrap_or_default();
    Ok(Json(summary(&st.ports, &root, &item).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignedUrl {
    pub url: String,
    pub expires_at: String,
}

/// A short-lived signed URL for an attachment of a message in the conversation
#[utoipa::path(get, path = "/conversations/{id}/attachments/{sha256}", tag = "conversations",
    params(("id" = String, Path, description = "Conversation id"), ("sha256" = String, Path, description = "The attachment's sha256")),
    responses((status = 200, body = SignedUrl), (status = 404, body = super::Problem)))]
async fn attachment_url(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    P((id, sha)): P<(String, String)>,
) -> ApiResult<Json<SignedUrl>> {
    let (root, _) = visible_root(&st, &caller, &id).await?;
    Ok(Json(signed_attachment_url(&st, &root, &sha).await?))
}

/// A signed, short-lived download URL for attachment `sha` of conversation `root` (the
/// caller checked the conversation is visible).
pub(crate) async fn signed_attachment_url(st: &ApiState, root: &str, sha: &str) -> ApiResult<SignedUrl> {
    let not_found = || ApiError::NotFound(format!("conversation {root} has no attachment {sha}"));
    let att = conversation_messages(&st.ports, root)
        .await?
        .iter()
        .flat_map(|m| m.get("attachments").and_then(Value::as_array).cloned().unwrap_or_default())
        .find(|a| a.get("sha256").and_then(Value::as_str) == Some(sha))
        .ok_or_else(not_found)?;
    let exp = st.ports.clock.now().timestamp() + ATTACHMENT_URL_TTL_SECS;
    let key = crate::keys::attachment_key(sha);
    let name = download_name(att.get("name").and_then(Value::as_str));
    let ctype = download_type(att.get("content_type").and_then(Value::as_str));
    let ttl = std::time::Duration::from_secs(ATTACHMENT_URL_TTL_SECS.unsigned_abs());
    // On AWS the bytes come from S3 itself (a presigned URL): the API function's answer
    // is capped at 6 MB, an attachment is not. The embedded store has no such URLs, so
    // `serve` signs a link to its own /attachments route below.
    if let Some(url) = st.ports.blobs.download_url(&key, ttl, &name, ctype).await? {
        return Ok(SignedUrl { url, expires_at: rfc3339(Some(exp)).unwrap_or_default() });
    }
    let claims = json!({
        "k": key,
        "n": name,
        "t": ctype,
        "e": exp,
    });
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let sig = st.ports.signer.sign("attachment-url", &payload);
    Ok(SignedUrl {
        url: format!("{}/attachments/{payload}.{sig}", st.public_url.trim_end_matches('/')),
        expires_at: rfc3339(Some(exp)).unwrap_or_default(),
    })
}

/// The file name an attachment is downloaded under: the characters that are safe inside
/// a quoted Content-Disposition filename, whatever the sender named it.
fn download_name(name: Option<&str>) -> String {
    let n: String = name
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || " ._-()".contains(*c))
        .collect();
    if n.trim().is_empty() { "attachment".into() } else { n }
}

/// The Content-Type an attachment is served with: the sender's when it is a valid header
/// value. It is always served as a download (Content-Disposition: attachment), never
/// rendered in our origin: an HTML attachment is not a page.
fn download_type(ctype: Option<&str>) -> &str {
    match ctype {
        Some(t) if t.parse::<axum::http::HeaderValue>().is_ok() && !t.is_empty() => t,
        _ => "application/octet-stream",
    }
}

/// Download an attachment by its signed URL
///
/// The URL is the capability: no bearer token, valid for five minutes.
#[utoipa::path(get, path = "/attachments/{token}", tag = "conversations", security(()),
    params(("token" = String, Path, description = "From a signed attachment URL")),
    responses((status = 200, description = "The attachment's bytes"), (status = 403, body = super::Problem), (status = 404, body = super::Problem)))]
async fn attachment(
    State(st): State<Arc<ApiState>>,
    P(token): P<String>,
    _h: HeaderMap,
) -> ApiResult<Response> {
    let forbidden = || {
        ApiError::Forbidden("this attachment link is not valid (or has expired): ask for a new one".into())
    };
    let (payload, sig) = token.rsplit_once('.').ok_or_else(forbidden)?;
    if !st.ports.signer.verify("attachment-url", payload, sig) {
        return Err(forbidden());
    }
    let claims: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(forbidden)?;
    if claims.get("e").and_then(Value::as_i64).is_none_or(|e| e < st.ports.clock.now().timestamp()) {
        return Err(forbidden());
    }
    let key = claims.get("k").and_then(Value::as_str).ok_or_else(forbidden)?;
    let body =
        st.ports.blobs.get(key).await?.ok_or_else(|| ApiError::NotFound("the attachment is gone".into()))?;
    let name = download_name(claims.get("n").and_then(Value::as_str));
    let ctype = download_type(claims.get("t").and_then(Value::as_str));
    Ok((
        [
            (header::CONTENT_TYPE, ctype.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
            (header::CACHE_CONTROL, "private, max-age=300".to_string()),
        ],
        body,
    )
        .into_response())
}
