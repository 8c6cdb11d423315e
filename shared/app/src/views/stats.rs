//! Counts of what the pipeline holds, per inbox: for `mailroom stats` and the tests.

use crate::keys;
use crate::runtime::ports::Ports;
use mailroom_core::EmailAddress;
use mailroom_store::table::for_each;
use mailroom_store::{Query, StoreError};

/// Items per page when counting.
const PAGE: u32 = 1000;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct InboxStats {
    /// Raw copies stored.
    pub copies: u64,
    /// Copies the match stage has processed.
    pub processed: u64,
    /// Copies processed more than once (must stay 0).
    pub processed_more_than_once: u64,
    /// Messages first seen in this inbox.
    pub messages: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct Stats {
    pub inboxes: BTreeMap<String, InboxStats>,
    pub copies: u64,
    pub processed: u64,
    pub messages: u64,
    pub ingest_queue: u64,
    pub ingest_dlq: Option<u64>,
    pub route_queue: u64,
    pub route_dlq: Option<u64>,
    pub ticket_queue: u64,
    pub ticket_dlq: Option<u64>,
    pub contacts: u64,
    pub companies: u64,
    pub tickets: u64,
}

impl Stats {
    /// Messages in every dead-letter queue.
    pub fn dead_lettered(&self) -> u64 {
        self.ingest_dlq.unwrap_or(0) + self.route_dlq.unwrap_or(0) + self.ticket_dlq.unwrap_or(0)
    }
}

async fn len(q: &Option<std::sync::Arc<dyn mailroom_store::Queue>>) -> Result<Option<u64>, StoreError> {
    match q {
        Some(q) => Ok(Some(q.approximate_len().await?)),
        None => Ok(None),
    }
}

pub async fn collect(ports: &Ports) -> Result<Stats, StoreError> {
    let t = &ports.table;
    // Counts page by page, reading only the keys: a store of millions of messages is
    // counted in the memory of one page.
    let count = |pk: String| async move {
        let mut n = 0u64;
        for_each(t.as_ref(), Query::new(pk).index("gsi1").project(&[]), PAGE, |_| n += 1).await.map(|_| n)
    };
    let mut s = Stats::default();
    for inbox in t.query_all(Query::new(keys::INBOXES_INDEX_PK).index("gsi1")).await? {
        let Some(addr) =
            inbox.get("address").and_then(Value::as_str).and_then(|a| EmailAddress::parse(a).ok())
        else {
            continue;
        };
        let mut is = InboxStats::default();
        let copies = Query::new(keys::copies_index_pk(&addr)).index("gsi1").project(&["process_count"]);
        for_each(t.as_ref(), copies, PAGE, |c| {
            is.copies += 1;
            let n = c.get("process_count").and_then(Value::as_u64).unwrap_or(0);
            if n >= 1 {
                is.processed += 1;
            }
            if n > 1 {
                is.processed_more_than_once += 1;
            }
        })
        .await?;
        for pk in keys::messages_index_pks(&addr) {
            is.messages += count(pk).await?;
        }
        s.copies += is.copies;
        s.processed += is.processed;
        s.messages += is.messages;
        s.inboxes.insert(addr.key(), is);
    }
    s.ingest_queue = ports.ingest_queue.approximate_len().await?;
    s.ingest_dlq = len(&ports.ingest_dlq).await?;
    s.route_queue = ports.route_queue.approximate_len().await?;
    s.route_dlq = len(&ports.route_dlq).await?;
    s.ticket_queue = ports.ticket_queue.approximate_len().await?;
    s.ticket_dlq = len(&ports.ticket_dlq).await?;
    s.contacts = count(crate::keys::CONTACTS_INDEX_PK.into()).await?;
    s.companies = count(crate::keys::COMPANIES_INDEX_PK.into()).await?;
    s.tickets = count(crate::keys::TICKETS_INDEX_PK.into()).await?;
    Ok(s)
}
