//! Threading: which conversation a message belongs to.
//!
//! Conversations are the connected components of a graph whose edges are, in DESIGN.md's
//! order: our signed reply identifier; References / In-Reply-To against message ids; the
//! provider's thread id; and, for a reply that carries no threading header at all, its
//! normalised subject when its external party took part in a recent message with that
//! subject. Every edge is a property of a *pair* of messages (ids, dates from the Date
//! header, participants), never of what happened to arrive first, so the components, and
//! with them the conversations, come out the same in any arrival order.
//!
//! Storage is a union-find over `conv#` items, written with conditional writes so that
//! concurrent Lambda invocations agree:
//! - `ref#{message-id}` claims an id (the message's own and every parent) for a
//!   conversation; a failed claim means another conversation holds it, and the two merge;
//! - merging sets `parent` on the root that started later (`first_received`, then id), so
//!   the surviving root is the conversation of the message we received first;
//! - subject links use two index partitions keyed by (subject key, external party):
//!   `subj#` for every message, `subjwait#` for header-less replies, queried from both
//!   sides within [`SUBJECT_WINDOW_DAYS`].

use crate::keys;
use crate::runtime::ports::Ports;
use anyhow::{Context, bail};
use chrono::{DateTime, Duration, Utc};
use mailroom_core::{SignedRef, sha256};
use mailroom_store::{Cond, Item, Key, Query, SkCond, StoreError, TransactOp, Update};
use serde_json::{Value, json};
use std::collections::HashMap;

/// How far apart a header-less reply and the message it answers may be.
pub const SUBJECT_WINDOW_DAYS: i64 = 30;

fn auto_window() -> Duration {
    Duration::hours(AUTO_REPLY_WINDOW_HOURS)
}

/// What threading needs to know of a message.
#[derive(Debug, Clone)]
pub struct ThreadInput {
    pub message_id: String,
    pub parents: Vec<String>,
    pub signed: Option<SignedRef>,
    /// Provider thread id (Gmail threadId, Graph conversationId), scoped by inbox.
    pub provider_thread: Option<String>,
    pub inbox: String,
    pub subject: String,
    pub subject_key: String,
    /// The Date header (or the receipt time when it has none): what the sender says. It
    /// places subject links (header-less replies within a window of their parent) and is
    /// shown; it never decides which inbox owns a conversation.
    pub date: DateTime<Utc>,
    /// When we received the message (the mailbox's own time: IMAP INTERNALDATE, Gmail
    /// internalDate, Graph receivedDateTime, else when it was ingested). Decides the
    /// conversation's owner and order: a customer cannot write it.
    pub received: DateTime<Utc>,
    /// The message's primary external parties (lower-cased): the sender of an inbound
    /// message, the external To recipients of an outbound one. Cc'd people are not
    /// parties: a colleague on Cc who later writes about the same subject is not joined
    /// to the thread they were copied on.
    pub parties: Vec<String>,
    /// External Cc recipients (lower-cased): a header-less reply from one of them joins
    /// the thread they were copied on only when they have no thread of their own on the
    /// subject.
    pub cc_parties: Vec<String>,
    pub outbound: bool,
    /// Set for a reply without any threading header: the external party whose earlier
    /// messages with the same subject it may join (inbound: the sender; outbound: the
    /// first external recipient).
    pub subject_link_party: Option<String>,
    /// The header-less reply is an automatic one: it answers only one of our own
    /// (outbound) messages to its sender (To or Cc) sent at most
    /// [`AUTO_REPLY_WINDOW_HOURS`] before it.
    pub auto_reply: bool,
}

/// How long after our message a header-less automatic reply may come.
pub const AUTO_REPLY_WINDOW_HOURS: i64 = 6;

/// A conversation root as stored.
#[derive(Debug, Clone)]
pub struct ConversationRoot {
    pub id: String,
    pub item: Item,
}

pub struct Threader<'a> {
    ports: &'a Ports,
}

fn ts(d: DateTime<Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Receipt times to the millisecond: messages ingested within one second keep their order.
fn ts_ms(d: DateTime<Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn short_hash(s: &str) -> String {
    sha256(s.as_bytes()).to_string()[..20].to_string()
}

/// The id of a conversation started by `message_id`: derived, so a retried message
/// starts the same conversation again instead of a second one.
pub fn new_conversation_id(message_id: &str) -> String {
    format!("c{}", &sha256(message_id.as_bytes()).to_string()[..16])
}

impl<'a> Threader<'a> {
    pub fn new(ports: &'a Ports) -> Threader<'a> {
        Threader { ports }
    }

    /// Assigns `m` to a conversation and returns the conversation id it was recorded
    /// under (follow [`Threader::find`] for the current root).
    pub async fn assign(&self, m: &ThreadInput) -> anyhow::Result<String> {
        let table = &self.ports.table;
        let mut linked: Vec<String> = Vec::new();
        if let Some(s) = &m.signed {
            linked.push(s.conversation.clone());
        }
        let ids: Vec<&String> = std::iter::once(&m.message_id).chain(&m.parents).collect();
        // Claims found here are never rewritten (claimed with a conditional put): their
        // conversations are linked below, so they are not claimed again.
        let mut claimed: Vec<Key> = Vec::new();
        for id in &ids {
            let key = keys::ref_key(id);
            if let Some(item) = table.get(&key).await? {
                linked.extend(item.get("conv").and_then(Value::as_str).map(str::to_string));
                claimed.push(key);
            }
        }
        let thread_key = m
            .provider_thread
            .as_ref()
            .map(|t| Key::new(format!("pthread#{}#{}", m.inbox, short_hash(t)), "pthread"));
        if let Some(k) = &thread_key
            && let Some(item) = table.get(k).await?
        {
            linked.extend(item.get("conv").and_then(Value::as_str).map(str::to_string));
            claimed.push(k.clone());
        }
        let base = linked.first().cloned().unwrap_or_else(|| new_conversation_id(&m.message_id));
        self.ensure_conversation(&base, m).await?;
        for other in linked.iter().skip(1) {
            self.union(&base, other).await?;
        }
        // Claims: the message's own id and its parents', the provider thread.
        let mut claims: Vec<Key> = ids.iter().map(|id| keys::ref_key(id)).collect();
        claims.extend(thread_key);
        for key in claims.into_iter().filter(|k| !claimed.contains(k)) {
            let mut item = key.item();
            item.insert("conv".into(), json!(base));
            match table.put(item, Some(Cond::NotExists)).await {
                Ok(()) => {}
                Err(StoreError::ConditionFailed) => {
                    let holder = table.get(&key).await?.context("claim vanished")?;
                    if let Some(c) = holder.get("conv").and_then(Value::as_str) {
                        self.union(&base, c).await?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.subject_links(m, &base).await?;
        self.note_first_message(&base, m).await?;
        Ok(base)
    }

    async fn subject_links(&self, m: &ThreadInput, base: &str) -> anyhow::Result<()> {
        if m.subject_key.is_empty() {
            return Ok(());
        }
        let table = &self.ports.table;
        // A message in a forwarded conversation ("fwd: x") is indexed under its own key and
        // under the plain one: a header-less "Re: X" may answer the forward (people and
        // clients drop prefixes), while a header-less "Re: Fwd: X" only answers forwards.
        // A forward itself never links by subject, so it still starts a new conversation.
        let exact = short_hash(&m.subject_key);
        let mut keys = vec![exact.clone()];
        if let Some(plain) = m.subject_key.strip_prefix("fwd: ") {
            keys.push(short_hash(plain));
        }
        let sk = format!("{}#{}", ts(m.date), m.message_id);
        let window = Duration::days(SUBJECT_WINDOW_DAYS);
        let tagged = m.parties.iter().map(|p| (p, false)).chain(m.cc_parties.iter().map(|p| (p, true)));
        for (party, cc) in tagged {
            for subject in &keys {
                let mut item = Key::new(format!("subj#{subject}#{party}"), sk.clone()).item();
                item.insert("conv".into(), json!(base));
                item.insert("outbound".into(), json!(m.outbound));
                item.insert("cc".into(), json!(cc));
                table.put(item, None).await?;
                // Header-less replies that came before this message and may answer it.
                let waiting = table
                    .query_all(
                        Query::new(format!("subjwait#{subject}#{party}"))
                            .sk(SkCond::Between(ts(m.date), format!("{}~", ts(m.date + window)))),
                    )
                    .await?;
                let mut answerable = Vec::new();
                for w in waiting {
                    let auto = w.get("auto_reply").and_then(Value::as_bool).unwrap_or(false);
                    let wsk = w.get("sk").and_then(Value::as_str).unwrap_or_default().to_string();
                    // An automatic reply answers our message to its sender (To or Cc).
                    let ok = if auto {
                        m.outbound && wsk.as_str() <= format!("{}~", ts(m.date + auto_window())).as_str()
                    } else {
                        // Copied (Cc) on this message: it answers only when the replier
                        // has no thread of their own on this subject.
                        !cc || !self.has_primary(subject, party, &wsk, window).await?
                    };
                    if ok {
                        answerable.push(w);
                    }
                }
                self.union_all(base, &answerable, &m.message_id).await?;
            }
        }
        let subject = exact;
        if let Some(party) = &m.subject_link_party {
            let mut item = Key::new(format!("subjwait#{subject}#{party}"), sk.clone()).item();
            item.insert("conv".into(), json!(base));
            item.insert("auto_reply".into(), json!(m.auto_reply));
            table.put(item, None).await?;
            let since = if m.auto_reply { m.date - auto_window() } else { m.date - window };
            let earlier = table
                .query_all(
                    Query::new(format!("subj#{subject}#{party}"))
                        .sk(SkCond::Between(ts(since), format!("{}~", ts(m.date)))),
                )
                .await?;
            let is = |e: &Item, k: &str| e.get(k).and_then(Value::as_bool).unwrap_or(false);
            // Not the reply's own index entries.
            let earlier: Vec<Item> = earlier
                .into_iter()
                .filter(|e| e.get("sk").and_then(Value::as_str) != Some(sk.as_str()))
                .collect();
            let primary: Vec<Item> = earlier
                .iter()
                .filter(|e| if m.auto_reply { is(e, "outbound") } else { !is(e, "cc") })
                .cloned()
                .collect();
            // A thread the party wrote in (or was written to) wins over one they were
            // only copied on; an automatic reply answers only a message sent to them.
            let answerable = if !primary.is_empty() || m.auto_reply {
                primary
            } else {
                earlier.into_iter().filter(|e| is(e, "cc")).collect()
            };
            self.union_all(base, &answerable, &m.message_id).await?;
        }
        Ok(())
    }

    /// Whether `party` was a primary party of a message with this subject in the window
    /// before the waiting reply whose sort key is `reply_sk`.
    async fn has_primary(
        &self,
        subject: &str,
        party: &str,
        reply_sk: &str,
        window: Duration,
    ) -> anyhow::Result<bool> {
        let reply_date = reply_sk.split('#').next().unwrap_or_default();
        let since = DateTime::parse_from_rfc3339(reply_date).map(|d| d.with_timezone(&Utc) - window);
        let Ok(since) = since else { return Ok(false) };
        let entries = self
            .ports
            .table
            .query_all(
                Query::new(format!("subj#{subject}#{party}"))
                    .sk(SkCond::Between(ts(since), reply_sk.to_string())),
            )
            .await?;
        Ok(entries.iter().any(|e| {
            !e.get("cc").and_then(Value::as_bool).unwrap_or(false)
                && e.get("sk").and_then(Value::as_str) != Some(reply_sk)
        }))
    }

    async fn union_all(&self, base: &str, entries: &[Item], own_id: &str) -> anyhow::Result<()> {
        for e in entries {
            let sk = e.get("sk").and_then(Value::as_str).unwrap_or_default();
            if sk.ends_with(&format!("#{own_id}")) {
                continue;
            }
            if let Some(c) = e.get("conv").and_then(Value::as_str) {
                self.union(base, c).await?;
            }
        }
        Ok(())
    }

    async fn ensure_conversation(&self, id: &str, m: &ThreadInput) -> anyhow::Result<()> {
        let mut item = keys::conv_key(id).item();
        item.insert("id".into(), json!(id));
        item.insert("inbox".into(), json!(m.inbox));
        item.insert("subject".into(), json!(m.subject));
        item.insert("first_date".into(), json!(ts(m.date)));
        item.insert("first_received".into(), json!(ts_ms(m.received)));
        item.insert("first_message_id".into(), json!(m.message_id));
        item.insert("status".into(), json!("open"));
        item.insert("created_at".into(), json!(self.ports.clock.now().to_rfc3339()));
        item.insert("gsi1pk".into(), json!(keys::conversations_index_pk(id)));
        item.insert("gsi1sk".into(), json!(format!("{}#{id}", ts_ms(m.received))));
        match self.ports.table.put(item, Some(Cond::NotExists)).await {
            Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The root conversation of `id`.
    pub async fn find(&self, id: &str) -> anyhow::Result<ConversationRoot> {
        let mut cur = id.to_string();
        for _ in 0..64 {
            let item = self
                .ports
                .table
                .get(&keys::conv_key(&cur))
                .await?
                .with_context(|| format!("conversation {cur} is missing"))?;
            match item.get("parent").and_then(Value::as_str) {
                Some(p) => cur = p.to_string(),
                None => return Ok(ConversationRoot { id: cur, item }),
            }
        }
        bail!("conversation {id}: parent chain longer than 64")
    }

    /// Merges the conversations of `a` and `b`; the root whose first message is older
    /// survives.
    pub async fn union(&self, a: &str, b: &str) -> anyhow::Result<()> {
        // The common case (a subject or reference entry of the conversation itself):
        // nothing to merge and nothing to read.
        if a == b {
            return Ok(());
        }
        for _ in 0..16 {
            let (ra, rb) = (self.find(a).await?, self.find(b).await?);
            if ra.id == rb.id {
                return Ok(());
            }
            let order = |r: &ConversationRoot| (first_received(&r.item), r.id.clone());
            let (winner, loser) = if order(&ra) <= order(&rb) { (ra, rb) } else { (rb, ra) };
            // The winner lists what it absorbed, so reports can take over the loser's
            // counts (reports::refresh).
            let res = self
                .ports
                .table
                .transact_write(vec![
                    TransactOp::Update {
                        key: keys::conv_key(&loser.id),
                        actions: vec![Update::Set("parent".into(), json!(winner.id))],
                        cond: Some(Cond::AttrNotExists("parent".into())),
                    },
                    TransactOp::Update {
                        key: keys::conv_key(&winner.id),
                        actions: vec![Update::Append("merged".into(), vec![json!(loser.id)])],
                        cond: Some(Cond::AttrNotExists("parent".into())),
                    },
                ])
                .await;
            match res {
                Ok(_) => {
                    tracing::debug!(winner = %winner.id, loser = %loser.id, "conversations merged");
                    return Ok(());
                }
                Err(StoreError::ConditionFailed | StoreError::TransactionCanceled { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        bail!("merging conversations {a} and {b}: too many concurrent changes")
    }

    /// Keeps the root's first message (and with it its inbox and subject) the one we
    /// received first. Received time, not the Date header: a reply with a forged old Date
    /// must not move a conversation into another inbox, where another team sees it.
    async fn note_first_message(&self, base: &str, m: &ThreadInput) -> anyhow::Result<()> {
        for _ in 0..16 {
            let root = self.find(base).await?;
            let first = first_received(&root.item);
            let first_id = root.item.get("first_message_id").and_then(Value::as_str).unwrap_or_default();
            let mine = ts_ms(m.received);
            if (first.as_str(), first_id) <= (mine.as_str(), m.message_id.as_str()) {
                return Ok(());
            }
            let stored = root.item.get("first_received").cloned();
            let res = self
                .ports
                .table
                .update(
                    &keys::conv_key(&root.id),
                    vec![
                        Update::Set("first_date".into(), json!(ts(m.date))),
                        Update::Set("first_received".into(), json!(mine)),
                        Update::Set("first_message_id".into(), json!(m.message_id)),
                        Update::Set("inbox".into(), json!(m.inbox)),
                        Update::Set("subject".into(), json!(m.subject)),
                    ],
                    Some(Cond::And(vec![
                        match stored {
                            Some(v) => Cond::Eq("first_received".into(), v),
                            None => Cond::AttrNotExists("first_received".into()),
                        },
                        Cond::AttrNotExists("parent".into()),
                    ])),
                )
                .await;
            match res {
                Ok(_) => return Ok(()),
                Err(StoreError::ConditionFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        bail!("conversation {base}: too many concurrent changes")
    }
}

/// When a conversation's first message was received (RFC 3339, UTC); a conversation
/// stored before receipt times were kept falls back to its first Date.
fn first_received(item: &Item) -> String {
    item.get("first_received")
        .or_else(|| item.get("first_date"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Resolves conversation roots with a cache, for listings.
pub struct RootCache<'a> {
    threader: Threader<'a>,
    roots: HashMap<String, ConversationRoot>,
}

impl<'a> RootCache<'a> {
    pub fn new(ports: &'a Ports) -> RootCache<'a> {
        RootCache { threader: Threader::new(ports), roots: HashMap::new() }
    }
    pub async fn root(&mut self, id: &str) -> anyhow::Result<ConversationRoot> {
        if let Some(r) = self.roots.get(id) {
            return Ok(r.clone());
        }
        let r = self.threader.find(id).await?;
        self.roots.insert(id.to_string(), r.clone());
        Ok(r)
    }
}
