//! Conversations as the threading left them: for `mailroom conversations` and the tests.
//! Reads every message of every inbox (a listing, not the API's paged view).

use crate::keys;
use crate::keys::item_str as s;
use crate::records::{Conversation, Message, Ticket};
use crate::runtime::ports::Ports;
use crate::thread::RootCache;
use mailroom_store::Query;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MessageView {
    pub message_id: String,
    pub direction: String,
    pub kind: String,
    pub from: Option<String>,
    pub date: Option<String>,
    pub subject: String,
    pub inboxes: Vec<String>,
    /// `email`, `form` or `chat`.
    pub channel: String,
    /// Email-log confirmation (where it was logged, or why not).
    pub log: Option<crate::records::LogEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketView {
    pub id: String,
    pub pipeline: String,
    pub stage: String,
    pub status: String,
    pub owner: Option<String>,
    pub team: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConversationView {
    pub id: String,
    pub inbox: String,
    pub subject: String,
    pub status: String,
    pub first_date: String,
    pub contact_email: Option<String>,
    pub company_domain: Option<String>,
    pub deal_ids: Vec<String>,
    pub team: Option<String>,
    pub assignee: Option<String>,
    pub priority: Option<String>,
    pub tags: Vec<String>,
    pub ticket: Option<TicketView>,
    /// Report figures: first response, waiting, SLA status (docs/metrics.md).
    pub figures: Option<crate::reports::ConvFigures>,
    /// In arrival order, each once.
    pub message_ids: Vec<String>,
    pub messages: Vec<MessageView>,
}

/// An inbox's `n` newest recorded messages, newest first (by when we received them).
pub async fn newest(
    ports: &Ports,
    inbox: &mailroom_core::EmailAddress,
    n: u32,
) -> anyhow::Result<Vec<Message>> {
    let q = Query::new("").index("gsi1").backward();
    let pks = keys::messages_index_pks(inbox);
    let items =
        mailroom_store::table::query_shards(ports.table.as_ref(), &pks, &q, "gsi1sk", n as usize).await?;
    Ok(items.iter().map(Message::from_item).collect())
}

/// Every message recorded in `inbox`, in the order we received them (all shards of its
/// message index, merged).
pub async fn inbox_messages(
    ports: &Ports,
    inbox: &mailroom_core::EmailAddress,
) -> Result<Vec<mailroom_store::Item>, mailroom_store::StoreError> {
    let q = Query::new("").index("gsi1");
    let pks = keys::messages_index_pks(inbox);
    mailroom_store::table::query_shards(ports.table.as_ref(), &pks, &q, "gsi1sk", usize::MAX).await
}

/// The messages of conversation `root` (its own and those of the conversations merged
/// into it, as its report state lists them), in arrival order.
pub async fn messages_of(ports: &Ports, root: &str) -> anyhow::Result<Vec<mailroom_store::Item>> {
    let owner = ports.table.get(&keys::conv_owner(root)).await?;
    let ids: Vec<String> = owner
        .as_ref()
        .and_then(|o| o.get("msgs"))
        .and_then(serde_json::Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for id in ids {
        if let Some(m) = ports.table.get(&keys::message(&id)).await? {
            out.push(m);
        }
    }
    out.sort_by_key(|m| (s(m, "arrived").or_else(|| s(m, "date")), s(m, "message_id")));
    Ok(out)
}

/// Every conversation root (those merged into another left out), from the
/// conversations index.
pub async fn roots(ports: &Ports) -> anyhow::Result<Vec<mailroom_store::Item>> {
    let q = Query::new("").index("gsi1");
    let pks = keys::conversations_index_pks();
    let items =
        mailroom_store::table::query_shards(ports.table.as_ref(), &pks, &q, "gsi1sk", usize::MAX).await?;
    Ok(items.into_iter().filter(|c| c.get("parent").is_none_or(serde_json::Value::is_null)).collect())
}

/// Every conversation, oldest first.
pub async fn list(ports: &Ports) -> anyhow::Result<Vec<ConversationView>> {
    let t = &ports.table;
    let mut messages = Vec::new();
    for inbox in t.query_all(Query::new(keys::INBOXES_INDEX_PK).index("gsi1")).await? {
        let Some(addr) = s(&inbox, "address").and_then(|a| mailroom_core::EmailAddress::parse(&a).ok())
        else {
            continue;
        };
        messages.extend(inbox_messages(ports, &addr).await?);
    }
    // Arrival order: the ingest time of the first copy.
    messages.sort_by_key(|m| s(m, "gsi1sk"));
    let mut roots = RootCache::new(ports);
    let mut convs: BTreeMap<String, ConversationView> = BTreeMap::new();
    // A verification's messages (crate::verify) are nobody's conversation.
    for item in messages.into_iter().filter(|m| m.get("test").is_none()) {
        let m = Message::from_item(&item);
        let (mid, Some(conv)) = (m.message_id.clone(), m.conversation.clone()) else { continue };
        let root = roots.root(&conv).await?;
        if !convs.contains_key(&root.id) {
            let ticket = t.get(&crate::keys::ticket_key(&root.id)).await?.map(|x| {
                let x = Ticket::from_item(&x);
                TicketView {
                    id: x.id,
                    pipeline: x.pipeline,
                    stage: x.stage,
                    status: x.status,
                    owner: x.owner,
                    team: x.team,
                }
            });
            let c = Conversation::from_item(&root.item);
            let view = ConversationView {
                id: root.id.clone(),
                status: c.status().to_string(),
                inbox: c.inbox,
                subject: c.subject,
                first_date: c.first_date,
                contact_email: c.contact_email,
                company_domain: c.company_domain,
                deal_ids: c.deal_ids,
                team: c.team,
                assignee: c.assignee,
                priority: c.priority,
                tags: c.tags,
                ticket,
                figures: crate::reports::figures(ports, &root.id).await?,
                message_ids: vec![],
                messages: vec![],
            };
            convs.insert(root.id.clone(), view);
        }
        let Some(view) = convs.get_mut(&root.id) else { continue };
        if view.message_ids.contains(&mid) {
            continue;
        }
        view.message_ids.push(mid.clone());
        view.messages.push(MessageView {
            message_id: mid,
            direction: m.direction.clone().unwrap_or_default(),
            kind: m.kind.clone().unwrap_or_default(),
            from: m.from.clone(),
            date: m.date.clone(),
            subject: m.subject.clone(),
            inboxes: m.copies.iter().map(|c| c.inbox.clone()).collect(),
            channel: m.channel.clone().unwrap_or_else(|| "email".into()),
            log: m.log.clone(),
        });
    }
    let mut out: Vec<ConversationView> = convs.into_values().collect();
    out.sort_by(|a, b| (&a.first_date, &a.id).cmp(&(&b.first_date, &b.id)));
    Ok(out)
}
