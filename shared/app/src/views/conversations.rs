//! Conversations as the threading left them: for `mailroom conversations` and the tests.
//! Reads every message of every inbox (a listing, not the API's paged view).

use crate::keys;
use crate::keys::item_str as s;
use crate::runtime::ports::Ports;
use crate::thread::RootCache;
use mailroom_store::Query;
use serde::Serialize;
use serde_json::Value;
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

/// Every conversation, oldest first.
pub async fn list(ports: &Ports) -> anyhow::Result<Vec<ConversationView>> {
    let t = &ports.table;
    let mut messages = Vec::new();
    for inbox in t.query_all(Query::new(keys::INBOXES_INDEX_PK).index("gsi1")).await? {
        let Some(addr) = s(&inbox, "address") else { continue };
        let pk = format!("messages#{}", addr.to_lowercase());
        messages.extend(t.query_all(Query::new(pk).index("gsi1")).await?);
    }
    // Arrival order: the ingest time of the first copy.
    messages.sort_by_key(|m| s(m, "gsi1sk"));
    let mut roots = RootCache::new(ports);
    let mut convs: BTreeMap<String, ConversationView> = BTreeMap::new();
    for m in messages {
        let (Some(mid), Some(conv)) = (s(&m, "message_id"), s(&m, "conversation")) else { continue };
        let root = roots.root(&conv).await?;
        if !convs.contains_key(&root.id) {
            let ticket = t.get(&crate::keys::ticket_key(&root.id)).await?.map(|x| TicketView {
                id: s(&x, "id").unwrap_or_default(),
                pipeline: s(&x, "pipeline").unwrap_or_default(),
                stage: s(&x, "stage").unwrap_or_default(),
                status: s(&x, "status").unwrap_or_default(),
                owner: s(&x, "owner"),
                team: s(&x, "team"),
            });
            let strings = |k: &str| -> Vec<String> {
                root.item
                    .get(k)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                    .unwrap_or_default()
            };
            let view = ConversationView {
                id: root.id.clone(),
                inbox: s(&root.item, "inbox").unwrap_or_default(),
                subject: s(&root.item, "subject").unwrap_or_default(),
                status: s(&root.item, "status").unwrap_or_else(|| "open".into()),
                first_date: s(&root.item, "first_date").unwrap_or_default(),
                contact_email: s(&root.item, "contact_email"),
                company_domain: s(&root.item, "company_domain"),
                deal_ids: strings("deal_ids"),
                team: s(&root.item, "team"),
                assignee: s(&root.item, "assignee"),
                priority: s(&root.item, "priority"),
                tags: strings("tags"),
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
        let inboxes = m
            .get("copies")
            .and_then(Value::as_array)
            .map(|c| {
                c.iter().filter_map(|x| x.get("inbox").and_then(Value::as_str).map(str::to_string)).collect()
            })
            .unwrap_or_default();
        view.message_ids.push(mid.clone());
        view.messages.push(MessageView {
            message_id: mid,
            direction: s(&m, "direction").unwrap_or_default(),
            kind: s(&m, "kind").unwrap_or_default(),
            from: s(&m, "from"),
            date: s(&m, "date"),
            subject: s(&m, "subject").unwrap_or_default(),
            inboxes,
        });
    }
    let mut out: Vec<ConversationView> = convs.into_values().collect();
    out.sort_by(|a, b| (&a.first_date, &a.id).cmp(&(&b.first_date, &b.id)));
    Ok(out)
}
