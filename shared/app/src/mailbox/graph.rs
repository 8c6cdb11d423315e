//! Microsoft 365 mailboxes through Graph (docs/connections.md, "Microsoft 365 (Graph)").
//!
//! - `on_connect` (run by the sync worker for a `connect` request): one `created`
//!   subscription per folder (inbox, sentitems), each with its own random clientState
//!   (sealed, a secret per folder), then the backfill.
//! - `handle_notification` / `handle_lifecycle`: the two webhooks. They verify and enqueue
//!   a `SyncRequest`, nothing else: Graph wants a 2xx within 3 s.
//! - `sync`: the worker's half. Replays each folder's stored deltaLink, fetches the MIME
//!   of every new message and hands it to the ingestor; the deltaLink moves only after the
//!   last page.
//! - `renew_subscriptions`: the scheduler's half (subscriptions live at most 4,230 min).
//!
//! Items (besides the connection's own, see connections.rs): `graph-sub#{subscription id}`
//! / `sub` maps a subscription to its inbox and folder for the webhooks;
//! `graph-pending#{inbox}` / `pending` says a notification came while a sync held the
//! lease. The connection's `settings` hold `user_id` (the mailbox's GUID) and
//! `subscriptions.{inbox,sentitems}` = `{id, expires_at}`.

use crate::keys;
use crate::mailbox::connection::{self, Connection, Failure, Lease, Provider, State};
use crate::mailbox::oauth;
use crate::mailbox::request::{self as sync, SourceError, SyncReport, SyncRequest};
use crate::pipeline::ingest::{IngestError, IngestOutcome, Ingestor, RawMail};
use crate::runtime::config::MicrosoftConfig;
use crate::runtime::ports::Ports;
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use mailroom_core::{EmailAddress, Folder};
use mailroom_providers::graph::{
    DeltaMessage, DeltaNext, GraphClient, GraphError, MailFolder, NewSubscription, client_state_matches,
    new_client_state,
};
use mailroom_store::{Cond, StoreError, Update};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Mutex;

/// How long a new or renewed subscription lives: under Outlook's 4,230 minutes, with room
/// for clock skew between us and Graph.
pub const SUBSCRIPTION_MINUTES: i64 = 4200;
/// Renew subscriptions with less than this left (EmailEngine's choice too).
pub const RENEW_WITHIN_HOURS: i64 = 24;
/// How far back the first delta of a folder reaches (connection setting `backfill_days`).
pub const DEFAULT_BACKFILL_DAYS: i64 = 14;
/// A 410 restart reaches this far before the last successful sync, so that nothing
/// received around it is lost (duplicates are absorbed by the ingestor).
const RESTART_MARGIN_HOURS: i64 = 1;
/// The sync lease; renewed after every delta page.
const LEASE_TTL_SECONDS: i64 = 300;
/// `$value` fetches started at once; the client lets 4 per mailbox through.
const FETCH_PARALLELISM: usize = 8;
/// Rounds a sync runs when notifications keep arriving while it holds the lease.
const MAX_ROUNDS: u32 = 3;
const SOURCE: &str = "graph";

fn secret_name(folder: MailFolder) -> String {
    format!("graph-client-state-{}", folder.as_str())
}

fn ingest_folder(f: MailFolder) -> Folder {
    match f {
        MailFolder::Inbox => Folder::Inbox,
        MailFolder::SentItems => Folder::Sent,
    }
}

/// A subscription as the connection's settings keep it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionInfo {
    pub id: String,
    pub expires_at: DateTime<Utc>,
}

fn subscription_of(settings: &Value, folder: MailFolder) -> Option<SubscriptionInfo> {
    serde_json::from_value(settings["subscriptions"][folder.as_str()].clone()).ok()
}

fn graph_failure(e: GraphError) -> SourceError {
    SourceError::Transient(e.to_string())
}

/// A Graph call's failure: what Graph said (for the caller to act on), or a failure of the
/// token or the store.
#[derive(Debug)]
enum CallError {
    Graph(GraphError),
    Source(SourceError),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Graph(g) => write!(f, "{g}"),
            CallError::Source(s) => write!(f, "{s}"),
        }
    }
}

impl From<CallError> for SourceError {
    fn from(e: CallError) -> SourceError {
        match e {
            CallError::Graph(g) => graph_failure(g),
            CallError::Source(s) => s,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Talking to one mailbox
// ---------------------------------------------------------------------------------------

/// One mailbox's Graph session: its client, user GUID, and an access token that is
/// refreshed once if Graph refuses it.
struct Mailbox<'a> {
    ports: &'a Ports,
    cfg: &'a MicrosoftConfig,
    inbox: &'a EmailAddress,
    client: GraphClient,
    user_id: String,
    token: Mutex<String>,
}

impl<'a> Mailbox<'a> {
    async fn open(
        ports: &'a Ports,
        cfg: &'a MicrosoftConfig,
        inbox: &'a EmailAddress,
        conn: &Connection,
    ) -> Result<Mailbox<'a>, SourceError> {
        let client = GraphClient::shared(&cfg.api_base).map_err(graph_failure)?;
        let token = oauth::access_token(ports, &cfg.oauth, inbox).await?;
        let mut mb = Mailbox { ports, cfg, inbox, client, user_id: String::new(), token: Mutex::new(token) };
        mb.user_id = match conn.settings["user_id"].as_str() {
            Some(id) if !id.is_empty() => id.to_string(),
            // The callback did not record it: ask Graph, and keep it.
            _ => {
                let client = &mb.client;
                let me = mb.call(|t| async move { client.me(&t).await }).await?;
                update_settings(ports, inbox, |s| s["user_id"] = json!(me.id)).await?;
                me.id
            }
        };
        Ok(mb)
    }

    fn current_token(&self) -> String {
        self.token.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Runs a Graph call; on 401, refreshes the token once and runs it again. A second 401
    /// means the grant no longer works for Graph: the mailbox must be connected again.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, CallError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T, GraphError>>,
    {
        let used = self.current_token();
        match f(used.clone()).await {
            Err(GraphError::Unauthorized { code }) => {
                tracing::info!(inbox = %self.inbox, code, "Graph refused the access token; refreshing it");
                let fresh = self.refresh(&used).await.map_err(CallError::Source)?;
                match f(fresh).await {
                    Err(GraphError::Unauthorized { code }) => {
                        Err(CallError::Source(SourceError::Reconnect(format!(
                            "Graph refused a freshly refreshed access token ({code}): connect {} again",
                            self.inbox
                        ))))
                    }
                    other => other.map_err(CallError::Graph),
                }
            }
            other => other.map_err(CallError::Graph),
        }
    }

    /// A new access token, unless a parallel call already replaced `stale`.
    async fn refresh(&self, stale: &str) -> Result<String, SourceError> {
        let current = self.current_token();
        if current != stale {
            return Ok(current);
        }
        oauth::expire_access_token(self.ports, self.inbox, Some(stale)).await?;
        let fresh = oauth::access_token(self.ports, &self.cfg.oauth, self.inbox).await?;
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// Creates a subscription on `folder` with a fresh clientState and records it; the
    /// previous one (if any) is deleted at Graph and forgotten here.
    async fn subscribe(&self, folder: MailFolder, delete_old: bool) -> Result<SubscriptionInfo, SourceError> {
        let conn = connection::get(self.ports, self.inbox).await?;
        let old = conn.as_ref().and_then(|c| subscription_of(&c.settings, folder));
        if let (Some(old), true) = (&old, delete_old) {
            let id = old.id.as_str();
            if let Err(e) = self
                .call(|t| async move { self.client.delete_subscription(&t, &self.user_id, id).await })
                .await
            {
                tracing::warn!(inbox = %self.inbox, error = %e, "could not delete the old Graph subscription; it expires on its own");
            }
        }
        let client_state = new_client_state();
        let expires_at = self.ports.clock.now() + Duration::minutes(SUBSCRIPTION_MINUTES);
        let lifecycle = (!self.cfg.lifecycle_url.is_empty()).then_some(self.cfg.lifecycle_url.as_str());
        let new = NewSubscription {
            folder,
            notification_url: &self.cfg.notification_url,
            lifecycle_url: lifecycle,
            expires_at,
            client_state: &client_state,
        };
        let new = &new;
        let sub = self
            .call(|t| async move { self.client.create_subscription(&t, &self.user_id, new).await })
            .await?;
        // The secret first: the lookup item makes the subscription's notifications count.
        connection::put_secret(self.ports, self.inbox, &secret_name(folder), client_state.as_bytes()).await?;
        let mut item = keys::graph_subscription_key(&sub.id).item();
        item.insert("inbox".into(), json!(self.inbox.key()));
        item.insert("folder".into(), json!(folder.as_str()));
        item.insert("created_at".into(), json!(self.ports.clock.now()));
        self.ports.table.put(item, None).await?;
        let info = SubscriptionInfo { id: sub.id.clone(), expires_at: sub.expires_at };
        let stored = serde_json::to_value(&info).map_err(|e| SourceError::Store(StoreError::backend(e)))?;
        update_settings(self.ports, self.inbox, |s| {
            if !s["subscriptions"].is_object() {
                s["subscriptions"] = json!({});
            }
            s["subscriptions"][folder.as_str()] = stored;
        })
        .await?;
        if let Some(old) = old.filter(|o| o.id != sub.id) {
            self.ports.table.delete(&keys::graph_subscription_key(&old.id), None).await?;
        }
        tracing::info!(inbox = %self.inbox, folder = folder.as_str(), subscription = %sub.id, "Graph subscription created");
        Ok(info)
    }

    /// Extends the folder's subscription (which also reauthorizes it), or creates a new one
    /// when Graph no longer has it. Returns true when it had to be created.
    async fn renew(&self, folder: MailFolder, now: DateTime<Utc>) -> Result<bool, SourceError> {
        let conn = connection::get(self.ports, self.inbox).await?;
        let Some(old) = conn.as_ref().and_then(|c| subscription_of(&c.settings, folder)) else {
            self.subscribe(folder, false).await?;
            return Ok(true);
        };
        let id = old.id.as_str();
        let until = now + Duration::minutes(SUBSCRIPTION_MINUTES);
        let renewed = self
            .call(|t| async move { self.client.renew_subscription(&t, &self.user_id, id, until).await })
            .await;
        let renewed = match renewed {
            Ok(s) => Some(s),
            Err(CallError::Graph(GraphError::NotFound { .. })) => None,
            Err(e) => return Err(e.into()),
        };
        let Some(sub) = renewed else {
            tracing::warn!(inbox = %self.inbox, folder = folder.as_str(), subscription = id, "Graph no longer has the subscription; creating a new one");
            self.subscribe(folder, false).await?;
            return Ok(true);
        };
        let info = SubscriptionInfo { id: sub.id, expires_at: sub.expires_at };
        let stored = serde_json::to_value(&info).map_err(|e| SourceError::Store(StoreError::backend(e)))?;
        update_settings(self.ports, self.inbox, |s| s["subscriptions"][folder.as_str()] = stored).await?;
        Ok(false)
    }

    /// One delta round of a folder: from the stored deltaLink (or a bounded backfill), every
    /// page, every new message ingested; the new deltaLink is stored after the last page.
    async fn sync_folder(&self, folder: MailFolder, progress: &mut Progress) -> Result<(), SourceError> {
        let ports = self.ports;
        let cursor = connection::get_cursor(ports, self.inbox, folder.as_str()).await?;
        let stored_link = cursor.as_ref().and_then(|c| c.value["delta_link"].as_str().map(str::to_string));
        let now = ports.clock.now();
        let conn = connection::get(ports, self.inbox).await?;
        let backfill_days =
            conn.as_ref().and_then(|c| c.settings["backfill_days"].as_i64()).unwrap_or(DEFAULT_BACKFILL_DAYS);
        let backfill_from = now - Duration::days(backfill_days.max(0));
        let mut restarted = stored_link.is_none();
        let mut url = match stored_link {
            Some(l) => l,
            None => {
                self.client.delta_start(&self.user_id, folder, Some(backfill_from)).map_err(graph_failure)?
            }
        };
        let ingestor = Ingestor::new(ports.clone());
        let mut pages = 0u32;
        loop {
            let u = url.as_str();
            let page = match self
                .call(|t| async move { self.client.delta_page(&t, &self.user_id, u).await })
                .await
            {
                Ok(p) => p,
                Err(CallError::Graph(GraphError::SyncStateGone { .. })) if !restarted => {
                    // The stored link expired. Start over, reaching back to before the last
                    // sync that worked: nothing is lost, repeats are absorbed downstream.
                    restarted = true;
                    let last = cursor
                        .as_ref()
                        .and_then(|c| c.value["synced_at"].as_str())
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&Utc) - Duration::hours(RESTART_MARGIN_HOURS));
                    let since = last.map_or(backfill_from, |l| l.min(backfill_from));
                    tracing::warn!(inbox = %self.inbox, folder = folder.as_str(), %since, "Graph delta token expired; restarting the folder's delta");
                    connection::event(
                        ports,
                        self.inbox,
                        "graph_delta_restarted",
                        json!({"folder": folder.as_str(), "since": since}),
                    )
                    .await?;
                    url =
                        self.client.delta_start(&self.user_id, folder, Some(since)).map_err(graph_failure)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            pages += 1;
            self.ingest_page(&ingestor, folder, &page.messages, progress).await?;
            match page.next {
                DeltaNext::NextLink(next) => {
                    url = next;
                    progress.lease.renew(ports, Duration::seconds(LEASE_TTL_SECONDS)).await.map_err(|e| {
                        match e {
                            StoreError::ConditionFailed => SourceError::Transient(format!(
                                "lost the sync lease of {} while paging; the next sync carries on",
                                self.inbox
                            )),
                            e => SourceError::Store(e),
                        }
                    })?;
                }
                DeltaNext::DeltaLink(link) => {
                    let value = json!({"delta_link": link, "synced_at": ports.clock.now()});
                    let expected = cursor.as_ref().map(|c| c.version);
                    match connection::set_cursor(ports, self.inbox, folder.as_str(), value, expected).await {
                        Ok(_) => {}
                        // Only a sync that lost its lease gets here; the other one's link is
                        // as good as ours.
                        Err(StoreError::ConditionFailed) => {
                            tracing::warn!(inbox = %self.inbox, folder = folder.as_str(), "delta cursor moved under us; keeping the other sync's");
                        }
                        Err(e) => return Err(SourceError::Store(e)),
                    }
                    tracing::debug!(inbox = %self.inbox, folder = folder.as_str(), pages, "delta round done");
                    return Ok(());
                }
            }
        }
    }

    async fn fetch<'m>(&self, m: &'m DeltaMessage) -> (&'m DeltaMessage, Result<Bytes, CallError>) {
        let id = m.id.as_str();
        let limit = usize::try_from(crate::runtime::config::max_message_bytes()).unwrap_or(usize::MAX);
        let got =
            self.call(|t| async move { self.client.message_mime(&t, &self.user_id, id, limit).await }).await;
        let got = match got {
            // Over the size cap: its headers, and a note where the original is.
            Err(CallError::Graph(GraphError::TooLarge)) => {
                tracing::warn!(inbox = %self.inbox, id, "message over the size cap: stored as a placeholder");
                self.call(|t| async move { self.client.message_headers(&t, &self.user_id, id).await })
                    .await
                    .map(|h| {
                        let place = format!("Microsoft 365 message {id}");
                        Bytes::from(mailroom_core::placeholder::too_large(&h, None, limit as u64, &place))
                    })
            }
            other => other,
        };
        (m, got)
    }

    async fn ingest_page(
        &self,
        ingestor: &Ingestor,
        folder: MailFolder,
        messages: &[DeltaMessage],
        progress: &mut Progress,
    ) -> Result<(), SourceError> {
        let Progress { report, newest, .. } = progress;
        // A window of fetches in flight, filled as they finish. (Not `buffer_unordered` over
        // a closure: that future is not `Send` for every lifetime, which spawning needs.)
        let mut queue = messages.iter();
        let mut fetches = FuturesUnordered::new();
        loop {
            while fetches.len() < FETCH_PARALLELISM {
                let Some(m) = queue.next() else { break };
                fetches.push(self.fetch(m));
            }
            let Some((m, fetched)) = fetches.next().await else { break };
            let bytes = match fetched {
                Ok(b) => b,
                Err(CallError::Graph(e @ GraphError::NotFound { .. })) => {
                    // Deleted since the delta listed it: skip it.
                    tracing::warn!(inbox = %self.inbox, id = %m.id, error = %e, "skipping a Graph message");
                    report.skipped += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            report.fetched += 1;
            let mail = RawMail {
                bytes,
                inbox: Some(self.inbox.clone()),
                folder: Some(ingest_folder(folder)),
                source: SOURCE.into(),
                source_id: Some(m.id.clone()),
                thread_hint: m.conversation_id.clone(),
                received_at: m.received_at,
            };
            match ingestor.ingest(mail).await {
                Ok(IngestOutcome::Stored(_)) => {
                    report.stored += 1;
                    if let Some(r) = m.received_at {
                        *newest = Some(newest.map_or(r, |n| n.max(r)));
                    }
                }
                Ok(IngestOutcome::Duplicate | IngestOutcome::Requeued(_)) => report.duplicates += 1,
                Err(IngestError::Store(e)) => return Err(SourceError::Store(e)),
                Err(e) => {
                    tracing::warn!(inbox = %self.inbox, id = %m.id, error = %e, "Graph message not ingested");
                    report.skipped += 1;
                }
            }
        }
        Ok(())
    }
}

/// Rewrites the connection's settings (read, change, write; callers hold the lease or
/// run before any sync can).
async fn update_settings(
    ports: &Ports,
    inbox: &EmailAddress,
    change: impl FnOnce(&mut Value),
) -> Result<(), SourceError> {
    let conn = connection::get(ports, inbox)
        .await?
        .ok_or_else(|| SourceError::Reconnect(format!("{inbox} is not connected")))?;
    let mut settings = if conn.settings.is_object() { conn.settings } else { json!({}) };
    change(&mut settings);
    ports
        .table
        .update(
            &keys::connection_key(inbox),
            vec![Update::Set("settings".into(), settings)],
            Some(Cond::Exists),
        )
        .await
        .map(|_| ())
        .map_err(SourceError::Store)
}

// ---------------------------------------------------------------------------------------
// Connect
// ---------------------------------------------------------------------------------------

/// What `on_connect` did.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectReport {
    pub user_id: String,
    pub subscriptions: Vec<(MailFolder, SubscriptionInfo)>,
    /// The backfill.
    pub sync: SyncReport,
}

/// The sync worker runs it for the `connect` request the OAuth callback queues (tokens
/// and connection stored): creates the subscriptions (Graph validates both webhook URLs
/// during the call, so the webhooks must answer by then; older subscriptions of the
/// mailbox are deleted), then the backfill. A first connection imports `backfill_days`;
/// a reconnect carries on from the stored deltaLinks, so mail that came while the mailbox
/// needed reconnecting is not lost. A failure is recorded on the connection.
pub async fn on_connect(
    ports: &Ports,
    cfg: &MicrosoftConfig,
    inbox: &EmailAddress,
) -> Result<ConnectReport, SourceError> {
    let conn = connection::get(ports, inbox).await?.ok_or_else(|| {
        SourceError::Reconnect(format!("{inbox} has no connection; finish the OAuth flow first"))
    })?;
    if conn.provider != Provider::Graph {
        return Err(SourceError::Reconnect(format!(
            "{inbox} is connected through {}, not Graph",
            conn.provider.as_str()
        )));
    }
    let set_up = async {
        let mb = Mailbox::open(ports, cfg, inbox, &conn).await?;
        let mut subscriptions = Vec::new();
        for folder in MailFolder::ALL {
            subscriptions.push((folder, mb.subscribe(folder, true).await?));
        }
        Ok::<_, SourceError>((mb.user_id.clone(), subscriptions))
    };
    let (user_id, subscriptions) = match set_up.await {
        Ok(s) => s,
        Err(e) => return Err(record_failure(ports, inbox, e).await),
    };
    let mut synced_before = false;
    for folder in MailFolder::ALL {
        synced_before |= connection::get_cursor(ports, inbox, folder.as_str()).await?.is_some();
    }
    let req = SyncRequest {
        inbox: inbox.key(),
        provider: Provider::Graph,
        reason: if synced_before { "reconnect" } else { "connect" }.into(),
        hint: json!({}),
    };
    let sync = sync(ports, cfg, inbox, &req).await?;
    Ok(ConnectReport { user_id, subscriptions, sync })
}

/// Records a failed sync or connect on the connection (transient: `degraded`; refused
/// credentials: `reconnect_required`) and hands the error back.
async fn record_failure(ports: &Ports, inbox: &EmailAddress, e: SourceError) -> SourceError {
    let failure = match &e {
        SourceError::Reconnect(_) => Failure::Terminal,
        SourceError::Transient(_) => Failure::Transient,
        SourceError::Store(_) => return e,
    };
    match connection::record_error(ports, inbox, &e.to_string(), failure).await {
        Ok(_) => e,
        Err(store) => SourceError::Store(store),
    }
}

// ---------------------------------------------------------------------------------------
// Sync (the worker)
// ---------------------------------------------------------------------------------------

fn folders_of(hint: &Value) -> Vec<MailFolder> {
    match hint["folder"].as_str().and_then(MailFolder::parse) {
        Some(f) => vec![f],
        None => MailFolder::ALL.to_vec(),
    }
}

async fn set_pending(ports: &Ports, inbox: &EmailAddress) -> Result<(), StoreError> {
    let mut item = keys::graph_pending_key(inbox).item();
    item.insert("at".into(), json!(ports.clock.now()));
    ports.table.put(item, None).await
}

/// Brings the mailbox up to date for `req` (the sync worker calls it through
/// `sync::handle`). Another sync holding the mailbox's lease makes this one a no-op
/// (`skipped` 1), after leaving a flag the holder reads before it lets go, so that what
/// this request was about is synced by the holder.
pub async fn sync(
    ports: &Ports,
    cfg: &MicrosoftConfig,
    inbox: &EmailAddress,
    req: &SyncRequest,
) -> Result<SyncReport, SourceError> {
    let skipped = SyncReport { skipped: 1, ..SyncReport::default() };
    let Some(conn) = connection::get(ports, inbox).await? else {
        tracing::info!(%inbox, reason = %req.reason, "no connection any more; nothing to sync");
        return Ok(skipped);
    };
    if conn.provider != Provider::Graph || conn.state == State::ReconnectRequired {
        tracing::info!(%inbox, state = conn.state.as_str(), "not syncing: the mailbox is not a working Graph connection");
        return Ok(skipped);
    }
    let ttl = Duration::seconds(LEASE_TTL_SECONDS);
    let lease = match connection::acquire_lease(ports, inbox, ttl).await? {
        Some(l) => l,
        None => {
            set_pending(ports, inbox).await?;
            // The holder may have let go between the two; then the work is ours.
            match connection::acquire_lease(ports, inbox, ttl).await? {
                Some(l) => l,
                None => {
                    tracing::debug!(%inbox, "another sync holds the mailbox; it will pick this up");
                    return Ok(skipped);
                }
            }
        }
    };
    let mut progress = Progress { lease, report: SyncReport::default(), newest: None };
    let mut folders = folders_of(&req.hint);
    let mut round = 0;
    let outcome = loop {
        round += 1;
        if let Err(e) = ports.table.delete(&keys::graph_pending_key(inbox), None).await {
            break Err(SourceError::Store(e));
        }
        let r = match Mailbox::open(ports, cfg, inbox, &conn).await {
            Ok(mb) => sync_round(&mb, req, round == 1, &folders, &mut progress).await,
            Err(e) => Err(e),
        };
        if let Err(e) = progress.lease.clone().release(ports).await {
            break Err(SourceError::Store(e));
        }
        if let Err(e) = r {
            break Err(e);
        }
        let again = match ports.table.get(&keys::graph_pending_key(inbox)).await {
            Ok(p) => p.is_some(),
            Err(e) => break Err(SourceError::Store(e)),
        };
        if !again || round >= MAX_ROUNDS {
            break Ok(());
        }
        match connection::acquire_lease(ports, inbox, ttl).await {
            Ok(Some(l)) => progress.lease = l,
            // Someone else took it; the flag is theirs now.
            Ok(None) => break Ok(()),
            Err(e) => break Err(SourceError::Store(e)),
        }
        folders = MailFolder::ALL.to_vec();
    };
    match outcome {
        Ok(()) => {
            let lag = progress.newest.map(|n| ports.clock.now() - n);
            connection::record_success(ports, inbox, lag).await?;
            Ok(progress.report)
        }
        Err(e) => Err(record_failure(ports, inbox, e).await),
    }
}

/// A sync under way: its lease (renewed page by page) and what it did so far.
struct Progress {
    lease: Lease,
    report: SyncReport,
    /// When the newest stored message was received (the connection's lag).
    newest: Option<DateTime<Utc>>,
}

/// Whether a lifecycle event is still about the folder's current subscription: a
/// redelivered event for one that was replaced since must not replace it again.
async fn is_current(mb: &Mailbox<'_>, folder: MailFolder, hint: &Value) -> Result<bool, SourceError> {
    let Some(named) = hint["subscription_id"].as_str() else { return Ok(true) };
    let conn = connection::get(mb.ports, mb.inbox).await?;
    Ok(conn.and_then(|c| subscription_of(&c.settings, folder)).is_none_or(|s| s.id == named))
}

async fn sync_round(
    mb: &Mailbox<'_>,
    req: &SyncRequest,
    first: bool,
    folders: &[MailFolder],
    progress: &mut Progress,
) -> Result<(), SourceError> {
    if first {
        match req.reason.as_str() {
            // A PATCH of the expiry reauthorizes; no change was missed.
            "reauthorize" => {
                let mut recreated = false;
                for &f in folders {
                    if is_current(mb, f, &req.hint).await? {
                        recreated |= mb.renew(f, mb.ports.clock.now()).await?;
                    }
                }
                if !recreated {
                    return Ok(());
                }
            }
            "subscription_removed" => {
                for &f in folders {
                    if is_current(mb, f, &req.hint).await? {
                        mb.subscribe(f, false).await?;
                    }
                }
            }
            _ => {}
        }
    }
    for &f in folders {
        mb.sync_folder(f, progress).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Renewal (the scheduler)
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenewReport {
    /// Graph connections looked at.
    pub mailboxes: u32,
    pub renewed: u32,
    /// Subscriptions Graph no longer had, created again (a delta catch-up is queued).
    pub recreated: u32,
    /// Mailboxes a sync held; the next run renews them (the margin is 24 h).
    pub busy: u32,
    /// Mailboxes that failed (their connection records why).
    pub failed: u32,
}

/// Renews every subscription with less than 24 h left, and recreates the ones Graph
/// dropped. Meant to run every hour or so.
pub async fn renew_subscriptions(
    ports: &Ports,
    cfg: &MicrosoftConfig,
    now: DateTime<Utc>,
) -> Result<RenewReport, StoreError> {
    let mut report = RenewReport::default();
    for conn in connection::list(ports).await? {
        if conn.provider != Provider::Graph || conn.state == State::ReconnectRequired {
            continue;
        }
        let Ok(inbox) = EmailAddress::parse(&conn.inbox) else { continue };
        report.mailboxes += 1;
        let due: Vec<MailFolder> = MailFolder::ALL
            .into_iter()
            .filter(|f| {
                subscription_of(&conn.settings, *f)
                    .is_none_or(|s| s.expires_at - now < Duration::hours(RENEW_WITHIN_HOURS))
            })
            .collect();
        if due.is_empty() {
            continue;
        }
        let Some(lease) =
            connection::acquire_lease(ports, &inbox, Duration::seconds(LEASE_TTL_SECONDS)).await?
        else {
            report.busy += 1;
            continue;
        };
        let result = renew_mailbox(ports, cfg, &inbox, &conn, &due, now, &mut report).await;
        lease.release(ports).await?;
        let e = match result {
            Ok(()) => continue,
            Err(SourceError::Store(e)) => return Err(e),
            Err(e) => e,
        };
        report.failed += 1;
        let failure = match &e {
            SourceError::Reconnect(_) => Failure::Terminal,
            _ => Failure::Transient,
        };
        tracing::warn!(%inbox, error = %e, "Graph subscription renewal failed");
        connection::record_error(ports, &inbox, &e.to_string(), failure).await?;
    }
    ports.flush()?;
    Ok(report)
}

async fn renew_mailbox(
    ports: &Ports,
    cfg: &MicrosoftConfig,
    inbox: &EmailAddress,
    conn: &Connection,
    due: &[MailFolder],
    now: DateTime<Utc>,
    report: &mut RenewReport,
) -> Result<(), SourceError> {
    let mb = Mailbox::open(ports, cfg, inbox, conn).await?;
    for &f in due {
        if mb.renew(f, now).await? {
            report.recreated += 1;
            // Notifications may have gone nowhere while it was missing.
            let req = SyncRequest {
                inbox: inbox.key(),
                provider: Provider::Graph,
                reason: "missed".into(),
                hint: json!({"folder": f.as_str()}),
            };
            sync::enqueue(ports, &req).await?;
        } else {
            report.renewed += 1;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Webhooks
// ---------------------------------------------------------------------------------------

/// A webhook's answer, framework-free (the router copies it into its response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl WebhookReply {
    fn text(status: u16, body: impl Into<String>) -> WebhookReply {
        WebhookReply { status, content_type: "text/plain; charset=utf-8", body: body.into() }
    }
}

/// Graph's validation handshake: 200, text/plain, the token (already URL-decoded by the
/// router) as the body.
fn validation(token: &str) -> WebhookReply {
    WebhookReply { status: 200, content_type: "text/plain", body: token.to_string() }
}

#[derive(Deserialize)]
struct Batch {
    value: Vec<Value>,
}

/// A subscription of ours: its inbox, folder and clientState.
type KnownSubscription = (EmailAddress, MailFolder, Vec<u8>);

enum Verdict {
    /// A subscription of ours, with the right clientState.
    Ours { inbox: EmailAddress, folder: MailFolder },
    /// A subscription we do not know (deleted, or recreated since): nothing to do.
    Unknown,
    /// The clientState does not match: forged, or not meant for us.
    Mismatch,
}

/// Checks one item against the subscription it names, in constant time. Caches per
/// subscription within a batch.
async fn verify(
    ports: &Ports,
    item: &Value,
    cache: &mut HashMap<String, Option<KnownSubscription>>,
) -> Result<Verdict, StoreError> {
    let (Some(sub), Some(state)) = (item["subscriptionId"].as_str(), item["clientState"].as_str()) else {
        return Ok(Verdict::Mismatch);
    };
    if !cache.contains_key(sub) {
        let found = match ports.table.get(&keys::graph_subscription_key(sub)).await? {
            None => None,
            Some(i) => {
                let inbox = i.get("inbox").and_then(Value::as_str).and_then(|a| EmailAddress::parse(a).ok());
                let folder = i.get("folder").and_then(Value::as_str).and_then(MailFolder::parse);
                match (inbox, folder) {
                    (Some(inbox), Some(folder)) => {
                        connection::get_secret(ports, &inbox, &secret_name(folder))
                            .await?
                            .map(|s| (inbox, folder, s.value))
                    }
                    _ => None,
                }
            }
        };
        cache.insert(sub.to_string(), found);
    }
    Ok(match cache.get(sub) {
        Some(Some((inbox, folder, stored))) if client_state_matches(state, stored) => {
            Verdict::Ours { inbox: inbox.clone(), folder: *folder }
        }
        Some(Some(_)) => Verdict::Mismatch,
        _ => Verdict::Unknown,
    })
}

/// The shared part of both webhooks: validation handshake, parse, verify every item,
/// enqueue one request per (mailbox, folder, reason), make it durable, answer.
///
/// Answers: 200 + the token for a validation; 400 for a body that is not a notification
/// batch; 202 when at least one item is ours, or when the items only name subscriptions we
/// no longer know (Graph would otherwise retry them for 4 hours); 403 when no item is ours
/// and at least one carries a wrong clientState (the batch is not from Graph, or not for
/// us: retrying will not help, and nothing is enqueued); 503 when the requests could not be
/// stored (Graph retries).
async fn handle_batch(
    ports: &Ports,
    validation_token: Option<&str>,
    body: &[u8],
    what: &str,
    reason_of: impl Fn(&Value) -> Option<&'static str>,
) -> WebhookReply {
    if let Some(t) = validation_token {
        return validation(t);
    }
    let batch: Batch = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return WebhookReply::text(400, format!("not a Graph {what} batch: {e}")),
    };
    let mut cache = HashMap::new();
    let mut wanted: BTreeSet<(String, MailFolder, &'static str, Option<String>)> = BTreeSet::new();
    let (mut mismatched, mut unknown) = (0u32, 0u32);
    for item in &batch.value {
        let verdict = match verify(ports, item, &mut cache).await {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "Graph {what}: cannot read subscriptions; Graph will retry");
                return WebhookReply::text(503, "storage unavailable; retry");
            }
        };
        let sub = item["subscriptionId"].as_str().unwrap_or_default();
        match verdict {
            Verdict::Ours { inbox, folder } => match reason_of(item) {
                Some(reason) => {
                    let sub_id = (reason != "notification").then(|| sub.to_string());
                    wanted.insert((inbox.key(), folder, reason, sub_id));
                }
                None => tracing::info!(
                    subscription = sub,
                    "Graph {what}: ignoring an item Mailroom does not act on"
                ),
            },
            Verdict::Unknown => {
                unknown += 1;
                tracing::info!(
                    subscription = sub,
                    "Graph {what} for a subscription Mailroom does not have; dropped"
                );
            }
            Verdict::Mismatch => {
                mismatched += 1;
                tracing::warn!(subscription = sub, "Graph {what} with a wrong clientState; dropped");
            }
        }
    }
    if wanted.is_empty() && mismatched > 0 {
        return WebhookReply::text(403, "clientState does not match");
    }
    for (inbox, folder, reason, sub_id) in &wanted {
        let mut hint = json!({"folder": folder.as_str()});
        if let Some(id) = sub_id {
            hint["subscription_id"] = json!(id);
        }
        let req =
            SyncRequest { inbox: inbox.clone(), provider: Provider::Graph, reason: (*reason).into(), hint };
        if let Err(e) = sync::enqueue(ports, &req).await {
            tracing::error!(error = %e, %inbox, "Graph {what}: cannot queue the sync; Graph will retry");
            return WebhookReply::text(503, "queue unavailable; retry");
        }
    }
    if let Err(e) = ports.flush() {
        tracing::error!(error = %e, "Graph {what}: cannot make the sync requests durable; Graph will retry");
        return WebhookReply::text(503, "storage unavailable; retry");
    }
    tracing::debug!(queued = wanted.len(), unknown, mismatched, "Graph {what} accepted");
    WebhookReply::text(202, "")
}

/// `POST /webhooks/graph`: change notifications (and their validation handshake). No Graph
/// call happens here: it answers in milliseconds, well inside Graph's 3 s.
pub async fn handle_notification(ports: &Ports, validation_token: Option<&str>, body: &[u8]) -> WebhookReply {
    handle_batch(ports, validation_token, body, "notification", |item| {
        (item["changeType"].as_str() == Some("created")).then_some("notification")
    })
    .await
}

/// `POST /webhooks/graph-lifecycle`: lifecycle events, turned into sync requests the
/// worker acts on: `reauthorizationRequired` → "reauthorize" (PATCH the expiry),
/// `subscriptionRemoved` → "subscription_removed" (create it again, then delta), `missed`
/// → "missed" (delta).
pub async fn handle_lifecycle(ports: &Ports, validation_token: Option<&str>, body: &[u8]) -> WebhookReply {
    handle_batch(ports, validation_token, body, "lifecycle event", |item| {
        match item["lifecycleEvent"].as_str() {
            Some("reauthorizationRequired") => Some("reauthorize"),
            Some("subscriptionRemoved") => Some("subscription_removed"),
            Some("missed") => Some("missed"),
            _ => None,
        }
    })
    .await
}
