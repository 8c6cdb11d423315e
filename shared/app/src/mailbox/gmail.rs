//! Gmail mailboxes: the Pub/Sub push webhook, the history sync the sync worker runs, the
//! first connection and the daily watch renewal. See docs/connections.md (## Gmail).
//!
//! - Push (`handle_push`): verify the OIDC JWT before the body is looked at, decode the
//!   notification, look the mailbox up, queue a `SyncRequest`. No Gmail call: the
//!   webhook answers in milliseconds.
//! - Sync (`sync`): under the mailbox's lease, history.list from the stored historyId
//!   across every page, fetch each new INBOX/SENT message raw and ingest it, and only
//!   then move the cursor. An expired cursor (404) or none (first connection) runs a
//!   bounded full sync (messages.list `newer_than:Nd` for INBOX and SENT) and
//!   re-baselines from getProfile. Ingest dedupes, so repeating any of it is safe.

use crate::keys;
use crate::mailbox::connection::{self, Failure, Lease, Provider, State};
use crate::mailbox::oauth;
use crate::mailbox::request::{self as sync, SourceError, SyncReport, SyncRequest};
use crate::pipeline::ingest::{IngestError, IngestOutcome, Ingestor, RawMail};
use crate::runtime::config::GoogleConfig;
use crate::runtime::ports::Ports;
use chrono::{DateTime, Duration, TimeZone, Utc};
use mailroom_core::{EmailAddress, Folder};
use mailroom_providers::gmail::{GmailClient, GmailError, MessageRef, Watch, decode_base64_any};
use mailroom_providers::jwt::{Claims, JwtError, OidcConfig, OidcVerifier};
use mailroom_store::{StoreError, Update};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashSet;
use tracing::Instrument;

/// The cursor (`cursor#gmail`): `{"history_id": "<u64>", "at": <rfc3339>}`.
pub const CURSOR: &str = "gmail";
/// Days a first connection imports when its settings do not say (`backfill_days`).
pub const DEFAULT_BACKFILL_DAYS: i64 = 14;
/// A full sync after an expired cursor reaches back to the last good cursor plus this
/// margin, at least `MIN_FULL_SYNC_DAYS` and at most `MAX_FULL_SYNC_DAYS`.
pub const MIN_FULL_SYNC_DAYS: i64 = 2;
pub const MAX_FULL_SYNC_DAYS: i64 = 30;
/// Messages one full sync fetches at most (a Lambda must end); the newest are kept.
pub const MAX_FULL_SYNC_MESSAGES: usize = 5000;
/// Re-watch when the watch expires within this, or was last renewed longer ago than
/// `WATCH_RENEW_AFTER` (Google recommends calling watch daily).
pub const WATCH_RENEW_BEFORE: Duration = Duration::hours(24);
pub const WATCH_RENEW_AFTER: Duration = Duration::hours(20);
const LEASE_TTL: Duration = Duration::minutes(10);
/// Rounds one sync runs for requests that arrived while it held the lease, before it
/// hands the rest to a queued request.
const MAX_ROUNDS: u32 = 5;

/// Labels whose messages are never imported, even when also labelled INBOX or SENT.
const SKIP_LABELS: [&str; 4] = ["DRAFT", "SPAM", "TRASH", "CHAT"];

fn client(cfg: &GoogleConfig) -> Result<GmailClient, SourceError> {
    GmailClient::new(&cfg.api_base).map_err(|e| SourceError::Transient(e.to_string()))
}

/// Whether a message with these labels is imported, and into which folder: INBOX wins
/// (mail to oneself), SENT alone is the Sent copy.
pub fn folder_for(labels: &[String]) -> Option<Folder> {
    let has = |l: &str| labels.iter().any(|x| x == l);
    if SKIP_LABELS.iter().any(|l| has(l)) {
        return None;
    }
    if has("INBOX") {
        Some(Folder::Inbox)
    } else if has("SENT") {
        Some(Folder::Sent)
    } else {
        None
    }
}

fn source_error(e: GmailError) -> SourceError {
    if e.needs_reconnect() {
        SourceError::Reconnect(format!("{e}; connect the mailbox again and grant Gmail access"))
    } else {
        SourceError::Transient(e.to_string())
    }
}

// ---------------------------------------------------------------------------------------
// Sync

/// Syncs one Gmail mailbox: what the sync worker calls for every `SyncRequest` of a
/// Gmail inbox.
///
/// Concurrency: one sync per mailbox at a time (the connection lease). A request that
/// finds the lease taken does not fail and is not re-queued: it bumps the mailbox's
/// `gmail#pending` counter and returns an empty report with `skipped: 1`. The holder reads
/// the counter before each round and again before releasing, and runs another round (a
/// fresh history.list) when it moved; after releasing it looks once more and takes the
/// lease back if it moved in between. So a push that arrives during a sync is never
/// lost, and a burst of pushes costs one extra round, not one sync each.
pub async fn sync(
    ports: &Ports,
    cfg: &GoogleConfig,
    inbox: &EmailAddress,
    req: &SyncRequest,
) -> Result<SyncReport, SourceError> {
    let span = tracing::info_span!("gmail_sync", inbox = %inbox, reason = %req.reason);
    sync_locked(ports, cfg, inbox, req).instrument(span).await
}

async fn sync_locked(
    ports: &Ports,
    cfg: &GoogleConfig,
    inbox: &EmailAddress,
    req: &SyncRequest,
) -> Result<SyncReport, SourceError> {
    let Some(conn) = connection::get(ports, inbox).await? else {
        tracing::warn!("no connection for this inbox (disconnected?); nothing to sync");
        return Ok(SyncReport::default());
    };
    if conn.provider != Provider::Gmail {
        tracing::warn!(provider = conn.provider.as_str(), "not a Gmail connection; nothing to sync");
        return Ok(SyncReport::default());
    }
    if conn.state == State::ReconnectRequired {
        tracing::info!("mailbox needs to be connected again; not syncing");
        return Ok(SyncReport::default());
    }
    let backfill_days =
        conn.settings.get("backfill_days").and_then(Value::as_i64).unwrap_or(DEFAULT_BACKFILL_DAYS);

    let mut lease = match connection::acquire_lease(ports, inbox, LEASE_TTL).await? {
        Some(l) => l,
        None => {
            bump_pending(ports, inbox).await?;
            // The holder may have released between our two steps without seeing the bump.
            match connection::acquire_lease(ports, inbox, LEASE_TTL).await? {
                Some(l) => l,
                None => {
                    tracing::info!("another sync holds the mailbox; it will run again for this request");
                    return Ok(SyncReport { skipped: 1, ..SyncReport::default() });
                }
            }
        }
    };
    let mut total = SyncReport::default();
    let mut newest: Option<DateTime<Utc>> = None;
    let mut held = true;
    let result: Result<(), Failed> = async {
        let mut seen = pending(ports, inbox).await?;
        let mut rounds = 0;
        loop {
            rounds += 1;
            round(ports, cfg, inbox, req, rounds == 1, backfill_days, &mut lease, &mut total, &mut newest)
                .await?;
            let now_seen = pending(ports, inbox).await?;
            if now_seen != seen && rounds < MAX_ROUNDS {
                seen = now_seen;
                continue;
            }
            held = false;
            release(ports, lease.clone()).await;
            let after = pending(ports, inbox).await?;
            if after == seen {
                return Ok(());
            }
            if rounds >= MAX_ROUNDS {
                // A push storm: hand the rest to the queue rather than hold the worker.
                let next = SyncRequest { reason: "continue".into(), hint: Value::Null, ..req.clone() };
                sync::enqueue(ports, &next).await?;
                return Ok(());
            }
            seen = after;
            match connection::acquire_lease(ports, inbox, LEASE_TTL).await? {
                Some(l) => {
                    lease = l;
                    held = true;
                }
                // Someone else took it after our release: they list the same history.
                None => return Ok(()),
            }
        }
    }
    .await;
    if held {
        release(ports, lease).await;
    }
    match result {
        Ok(()) => {
            let lag = newest.map(|n| ports.clock.now() - n);
            connection::record_success(ports, inbox, lag).await?;
            tracing::info!(
                fetched = total.fetched,
                stored = total.stored,
                duplicates = total.duplicates,
                skipped = total.skipped,
                "gmail sync done"
            );
            Ok(total)
        }
        Err(Failed::Recorded(e)) => Err(e),
        Err(Failed::Gmail(e)) => {
            let se = source_error(e);
            let failure = match &se {
                SourceError::Reconnect(_) => Failure::Terminal,
                _ => Failure::Transient,
            };
            connection::record_error(ports, inbox, &se.to_string(), failure).await?;
            tracing::warn!(error = %se, "gmail sync failed");
            Err(se)
        }
    }
}

/// How a round failed: `Recorded` errors already updated the connection's health (token
/// refresh, storage); `Gmail` ones are recorded by `sync`.
enum Failed {
    Recorded(SourceError),
    Gmail(GmailError),
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Failed {
        Failed::Recorded(SourceError::Store(e))
    }
}

impl From<GmailError> for Failed {
    fn from(e: GmailError) -> Failed {
        Failed::Gmail(e)
    }
}

async fn pending(ports: &Ports, inbox: &EmailAddress) -> Result<i64, StoreError> {
    Ok(ports
        .table
        .get(&keys::gmail_pending_key(inbox))
        .await?
        .and_then(|i| i.get("n").and_then(Value::as_i64))
        .unwrap_or(0))
}

async fn bump_pending(ports: &Ports, inbox: &EmailAddress) -> Result<(), StoreError> {
    ports
        .table
        .update(&keys::gmail_pending_key(inbox), vec![Update::Add("n".into(), 1)], None)
        .await
        .map(drop)
}

/// The stored cursor: its historyId, when it was written, and its version.
struct Cursor {
    history_id: Option<u64>,
    at: Option<DateTime<Utc>>,
    version: Option<i64>,
}

async fn cursor(ports: &Ports, inbox: &EmailAddress) -> Result<Cursor, StoreError> {
    Ok(match connection::get_cursor(ports, inbox, CURSOR).await? {
        None => Cursor { history_id: None, at: None, version: None },
        Some(v) => Cursor {
            history_id: v.value.get("history_id").and_then(|h| match h {
                Value::String(s) => s.parse().ok(),
                other => other.as_u64(),
            }),
            at: v.value.get("at").and_then(|a| serde_json::from_value(a.clone()).ok()),
            version: Some(v.version),
        },
    })
}

/// Writes the cursor unless another sync moved it meanwhile (then theirs stands: it is
/// at least as new, since both only move after a complete listing).
async fn advance(
    ports: &Ports,
    inbox: &EmailAddress,
    history_id: u64,
    expected: Option<i64>,
) -> Result<(), StoreError> {
    let value = json!({"history_id": history_id.to_string(), "at": ports.clock.now()});
    match connection::set_cursor(ports, inbox, CURSOR, value, expected).await {
        Ok(_) => Ok(()),
        Err(StoreError::ConditionFailed) => {
            tracing::info!("cursor moved by another sync; keeping theirs");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn round(
    ports: &Ports,
    cfg: &GoogleConfig,
    inbox: &EmailAddress,
    req: &SyncRequest,
    first: bool,
    backfill_days: i64,
    lease: &mut Lease,
    report: &mut SyncReport,
    newest: &mut Option<DateTime<Utc>>,
) -> Result<(), Failed> {
    let cur = cursor(ports, inbox).await?;
    // A push about history we already have (several pushes queued for one change).
    if let (Some(have), Some(hint)) = (cur.history_id, hint_history_id(&req.hint))
        && req.reason == "push"
        && hint <= have
        && first
    {
        tracing::debug!(have, hint, "push already covered by the cursor");
        return Ok(());
    }
    let gmail = client(cfg).map_err(Failed::Recorded)?;
    let mut refreshed = false;
    loop {
        let token = oauth::access_token(ports, &cfg.oauth, inbox).await.map_err(Failed::Recorded)?;
        let mut run = Run {
            ports,
            gmail: &gmail,
            token: &token,
            inbox,
            ingestor: Ingestor::new(ports.clone()),
            report: &mut *report,
            newest: &mut *newest,
            track_lag: true,
        };
        let r = match cur.history_id {
            None => {
                tracing::info!(days = backfill_days, "no cursor yet: backfilling");
                run.full_sync(backfill_days, cur.version).await
            }
            Some(start) => match run.history(start, cur.version, lease).await {
                Err(Failed::Gmail(GmailError::HistoryExpired(_))) => {
                    // Never a silent skip: re-list everything since the last good cursor.
                    let since = cur
                        .at
                        .map(|at| (ports.clock.now() - at).num_days() + 1)
                        .unwrap_or(MAX_FULL_SYNC_DAYS);
                    let days = since.clamp(MIN_FULL_SYNC_DAYS, MAX_FULL_SYNC_DAYS);
                    tracing::warn!(start, days, "history cursor expired: running a bounded full sync");
                    connection::event(
                        ports,
                        inbox,
                        "gmail_history_expired",
                        json!({"history_id": start.to_string(), "days": days}),
                    )
                    .await?;
                    // Re-read: the version must be the one this full sync replaces.
                    let version = cursor(ports, inbox).await?.version;
                    run.full_sync(days, version).await
                }
                r => r,
            },
        };
        match r {
            // The stored access token looked valid but Gmail refused it (revoked, or
            // the password changed): refresh once, which either works or ends in
            // `reconnect_required`. Nothing moved the cursor, so the round repeats safely.
            Err(Failed::Gmail(GmailError::Unauthorized)) if !refreshed => {
                refreshed = true;
                oauth::expire_access_token(ports, inbox, None).await?;
            }
            r => return r,
        }
    }
}

fn hint_history_id(hint: &Value) -> Option<u64> {
    match hint.get("history_id")? {
        Value::String(s) => s.parse().ok(),
        v => v.as_u64(),
    }
}

/// One round's Gmail session.
struct Run<'a> {
    ports: &'a Ports,
    gmail: &'a GmailClient,
    token: &'a str,
    inbox: &'a EmailAddress,
    ingestor: Ingestor,
    report: &'a mut SyncReport,
    newest: &'a mut Option<DateTime<Utc>>,
    /// Lag is measured on new mail (history), not on a backfill of old mail.
    track_lag: bool,
}

impl Run<'_> {
    /// history.list from `start` over every page; the cursor moves after the last one.
    async fn history(&mut self, start: u64, version: Option<i64>, lease: &mut Lease) -> Result<(), Failed> {
        let mut page_token: Option<String> = None;
        let mut done: HashSet<String> = HashSet::new();
        loop {
            let page = self.gmail.history_page(self.token, start, page_token.as_deref()).await?;
            for m in page.history.iter().flat_map(|h| h.messages_added()) {
                if !done.insert(m.id.clone()) {
                    continue;
                }
                match folder_for(&m.label_ids) {
                    Some(folder) => self.fetch(m, Some(folder)).await?,
                    None => tracing::debug!(id = %m.id, labels = ?m.label_ids, "not INBOX/SENT; ignored"),
                }
            }
            renew(self.ports, lease).await?;
            match page.next_page_token {
                Some(t) => page_token = Some(t),
                None => {
                    advance(self.ports, self.inbox, page.history_id, version).await?;
                    return Ok(());
                }
            }
        }
    }

    /// messages.list `newer_than:{days}d` for INBOX and SENT, oldest first, then the
    /// cursor at the historyId read *before* listing: whatever arrives during the listing
    /// comes again through history (and dedupes).
    async fn full_sync(&mut self, days: i64, version: Option<i64>) -> Result<(), Failed> {
        self.track_lag = false;
        let baseline = self.gmail.profile(self.token).await?.history_id;
        let query = format!("newer_than:{days}d");
        let mut ids: Vec<MessageRef> = Vec::new();
        let mut seen = HashSet::new();
        for label in ["INBOX", "SENT"] {
            let mut page_token: Option<String> = None;
            loop {
                let page = self.gmail.messages_page(self.token, label, &query, page_token.as_deref()).await?;
                ids.extend(page.messages.into_iter().filter(|m| seen.insert(m.id.clone())));
                match page.next_page_token {
                    Some(t) if ids.len() < MAX_FULL_SYNC_MESSAGES * 2 => page_token = Some(t),
                    Some(_) => break,
                    None => break,
                }
            }
        }
        // Gmail ids grow with time (hex): oldest first, so parents come before replies.
        ids.sort_by(|a, b| (a.id.len(), &a.id).cmp(&(b.id.len(), &b.id)));
        if ids.len() > MAX_FULL_SYNC_MESSAGES {
            tracing::warn!(
                listed = ids.len(),
                kept = MAX_FULL_SYNC_MESSAGES,
                "full sync capped: older messages not imported"
            );
            ids.drain(..ids.len() - MAX_FULL_SYNC_MESSAGES);
        }
        for m in &ids {
            // Labels come with the message itself: the list does not carry them.
            self.fetch(m, None).await?;
        }
        advance(self.ports, self.inbox, baseline, version).await?;
        Ok(())
    }

    /// Fetches one message raw and ingests it. `folder`: from the history record's
    /// labels; `None` takes it from the fetched message's labels.
    async fn fetch(&mut self, m: &MessageRef, folder: Option<Folder>) -> Result<(), Failed> {
        let raw = match self.gmail.message_raw(self.token, &m.id).await {
            Ok(r) => r,
            Err(GmailError::MessageGone(id)) => {
                tracing::info!(id = %id, "message deleted before it could be fetched; skipped");
                self.report.skipped += 1;
                return Ok(());
            }
            // A request Gmail will never answer for this one message (not auth, not
            // throttling): one message must not block the mailbox. Logged loudly.
            Err(e @ GmailError::Status { status: 400..=499, .. }) => {
                tracing::error!(id = %m.id, error = %e, "message cannot be fetched; skipped");
                self.report.skipped += 1;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        self.report.fetched += 1;
        let Some(folder) = folder.or_else(|| folder_for(&raw.label_ids)) else {
            tracing::debug!(id = %m.id, labels = ?raw.label_ids, "not INBOX/SENT; ignored");
            return Ok(());
        };
        let received_at = raw.internal_date.and_then(|ms| Utc.timestamp_millis_opt(ms).single());
        let mail = RawMail {
            bytes: raw.raw.into(),
            inbox: Some(self.inbox.clone()),
            folder: Some(folder),
            source: "gmail".into(),
            source_id: Some(raw.id.clone()),
            thread_hint: raw.thread_id.clone().or_else(|| m.thread_id.clone()),
            received_at,
        };
        match self.ingestor.ingest(mail).await {
            Ok(IngestOutcome::Stored(_)) => {
                self.report.stored += 1;
                if let Some(at) = received_at.filter(|_| self.track_lag) {
                    *self.newest = Some(self.newest.map_or(at, |n| n.max(at)));
                }
            }
            // Stored before (Requeued: not processed yet, so its pointer went out again).
            Ok(IngestOutcome::Duplicate | IngestOutcome::Requeued(_)) => self.report.duplicates += 1,
            Err(IngestError::Store(e)) => return Err(e.into()),
            Err(e) => {
                tracing::warn!(id = %raw.id, error = %e, "message not ingested; skipped");
                self.report.skipped += 1;
            }
        }
        Ok(())
    }
}

async fn release(ports: &Ports, lease: Lease) {
    if let Err(e) = lease.release(ports).await {
        tracing::warn!(error = %e, "could not release the mailbox lease; it expires by itself");
    }
}

async fn renew(ports: &Ports, lease: &mut Lease) -> Result<(), StoreError> {
    if lease.expires_at - ports.clock.now() < LEASE_TTL / 2 {
        lease.renew(ports, LEASE_TTL).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Connect, watch renewal, disconnect

/// The `connect` sync request, which the OAuth callback queues once it stored the
/// tokens and the connection: `users.watch` (every label; the sync keeps INBOX/SENT),
/// the watch's expiry in the connection settings, then the backfill: a first connection
/// imports `backfill_days`; a reconnect catches up from its cursor. Runs in the sync
/// worker, so the browser's callback answers at once.
pub async fn on_connect(
    ports: &Ports,
    cfg: &GoogleConfig,
    inbox: &EmailAddress,
) -> Result<SyncReport, SourceError> {
    let w = watch(ports, cfg, inbox).await?;
    let req = SyncRequest {
        inbox: inbox.key(),
        provider: Provider::Gmail,
        reason: "connect".into(),
        hint: json!({"history_id": w.history_id.to_string()}),
    };
    sync(ports, cfg, inbox, &req).await
}

/// Calls users.watch and records it in the connection's settings (`settings.watch`).
pub async fn watch(ports: &Ports, cfg: &GoogleConfig, inbox: &EmailAddress) -> Result<Watch, SourceError> {
    let gmail = client(cfg)?;
    let mut refreshed = false;
    let w = loop {
        let token = oauth::access_token(ports, &cfg.oauth, inbox).await?;
        match gmail.watch(&token, &cfg.topic).await {
            Ok(w) => break w,
            Err(GmailError::Unauthorized) if !refreshed => {
                refreshed = true;
                oauth::expire_access_token(ports, inbox, None).await?;
            }
            Err(e) => {
                let se = source_error(e);
                let f = if matches!(se, SourceError::Reconnect(_)) {
                    Failure::Terminal
                } else {
                    Failure::Transient
                };
                connection::record_error(ports, inbox, &format!("users.watch: {se}"), f).await?;
                return Err(se);
            }
        }
    };
    let record = json!({"expiration_ms": w.expiration, "history_id": w.history_id.to_string(),
        "topic": cfg.topic, "renewed_at": ports.clock.now()});
    set_watch_setting(ports, inbox, Some(record)).await?;
    tracing::info!(inbox = %inbox, expiration_ms = w.expiration, "gmail watch set");
    Ok(w)
}

/// What `renew_watch` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenewReport {
    pub renewed: u32,
    pub not_due: u32,
    /// Failed now (logged, and recorded on the connection); tried again next run.
    pub failed: u32,
    /// `reconnect_required`: skipped until someone connects them again.
    pub needs_reconnect: u32,
}

/// Whether a connection's watch is due: none yet, expiring within a day, or last renewed
/// 20 h ago or more (Google: "call watch once per day").
pub fn watch_due(settings: &Value, now: DateTime<Utc>) -> bool {
    let w = &settings["watch"];
    let Some(exp) = w["expiration_ms"].as_i64() else { return true };
    let renewed: Option<DateTime<Utc>> = serde_json::from_value(w["renewed_at"].clone()).ok();
    exp - now.timestamp_millis() < WATCH_RENEW_BEFORE.num_milliseconds()
        || renewed.is_none_or(|r| now - r >= WATCH_RENEW_AFTER)
}

/// The scheduler's watch renewal (run it hourly): re-watches every Gmail connection whose
/// watch is due. One mailbox failing does not stop the others.
pub async fn renew_watch(
    ports: &Ports,
    cfg: &GoogleConfig,
    now: DateTime<Utc>,
) -> Result<RenewReport, StoreError> {
    let mut r = RenewReport::default();
    for c in connection::list(ports).await? {
        if c.provider != Provider::Gmail {
            continue;
        }
        if c.state == State::ReconnectRequired {
            r.needs_reconnect += 1;
            continue;
        }
        if !watch_due(&c.settings, now) {
            r.not_due += 1;
            continue;
        }
        let Ok(inbox) = EmailAddress::parse(&c.inbox) else { continue };
        match watch(ports, cfg, &inbox).await {
            Ok(_) => r.renewed += 1,
            Err(SourceError::Store(e)) => return Err(e),
            Err(SourceError::Reconnect(e)) => {
                tracing::warn!(inbox = %inbox, error = %e, "watch renewal: mailbox must be connected again");
                r.needs_reconnect += 1;
            }
            Err(SourceError::Transient(e)) => {
                tracing::warn!(inbox = %inbox, error = %e, "watch renewal failed; next run tries again");
                r.failed += 1;
            }
        }
    }
    Ok(r)
}

/// users.stop, for a disconnect. The stored watch is dropped from the settings.
pub async fn stop_watch(ports: &Ports, cfg: &GoogleConfig, inbox: &EmailAddress) -> Result<(), SourceError> {
    let token = oauth::access_token(ports, &cfg.oauth, inbox).await?;
    client(cfg)?.stop(&token).await.map_err(source_error)?;
    set_watch_setting(ports, inbox, None).await?;
    Ok(())
}

/// Sets (or removes) `settings.watch`, writing only the settings attribute: the health
/// fields belong to whoever syncs.
async fn set_watch_setting(
    ports: &Ports,
    inbox: &EmailAddress,
    watch: Option<Value>,
) -> Result<(), StoreError> {
    let Some(conn) = connection::get(ports, inbox).await? else { return Ok(()) };
    let mut settings = match conn.settings {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    match watch {
        Some(w) => settings.insert("watch".into(), w),
        None => settings.remove("watch"),
    };
    let up = vec![Update::Set("settings".into(), Value::Object(settings))];
    match ports.table.update(&keys::connection_key(inbox), up, Some(mailroom_store::Cond::Exists)).await {
        Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e),
    }
}

// ---------------------------------------------------------------------------------------
// Push webhook

/// The push verifier for this configuration (build it once per process: it caches the
/// JWKS).
pub fn push_verifier(cfg: &GoogleConfig) -> Result<OidcVerifier, JwtError> {
    let mut oc = OidcConfig::google(&cfg.jwks_url, &cfg.pubsub_audience, &cfg.pubsub_email);
    if !cfg.issuers.is_empty() {
        oc.issuers = cfg.issuers.clone();
    }
    OidcVerifier::new(oc)
}

/// What a push delivery came to. `status()` is the HTTP answer: 2xx acks the delivery
/// (Pub/Sub stops retrying), anything else makes Pub/Sub redeliver with backoff.
#[derive(Debug)]
pub enum PushOutcome {
    /// A sync request is queued.
    Queued { inbox: EmailAddress, history_id: u64 },
    /// The cursor is already past this historyId: nothing to do.
    UpToDate { inbox: EmailAddress, history_id: u64 },
    /// No Gmail connection for this address (disconnected, or another deployment's
    /// mailbox on a shared topic). Acked: retrying cannot make it ours.
    UnknownMailbox(String),
    /// The mailbox is `reconnect_required`: acked, not queued; the reconnect catches up
    /// from the cursor.
    NotSyncing(EmailAddress),
    /// The token was missing or refused (401/403; 503 when the JWKS is unreachable).
    Rejected(JwtError),
    /// Authenticated but unreadable: 400 (with a dead-letter topic it lands there).
    Malformed(String),
    /// We could not queue it (storage): 500, Pub/Sub redelivers.
    Failed(String),
}

impl PushOutcome {
    pub fn status(&self) -> u16 {
        match self {
            PushOutcome::Queued { .. }
            | PushOutcome::UpToDate { .. }
            | PushOutcome::UnknownMailbox(_)
            | PushOutcome::NotSyncing(_) => 204,
            PushOutcome::Rejected(e) => e.status(),
            PushOutcome::Malformed(_) => 400,
            PushOutcome::Failed(_) => 500,
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    message: PubsubMessage,
}

#[derive(Deserialize)]
struct PubsubMessage {
    #[serde(default)]
    data: Option<String>,
    // Pub/Sub sends both spellings; an alias would make that a duplicate field.
    #[serde(default, rename = "messageId")]
    message_id: Option<String>,
    #[serde(default, rename = "message_id")]
    message_id_snake: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    email_address: String,
    history_id: Value,
}

/// Step 1 of a push, before the body is read: the `Authorization` header's JWT.
pub async fn verify_push(
    verifier: &OidcVerifier,
    authorization: Option<&str>,
) -> Result<Claims, PushOutcome> {
    verifier.verify_header(authorization).await.map_err(|e| {
        tracing::warn!(error = %e, "gmail push refused");
        PushOutcome::Rejected(e)
    })
}

/// Step 2, for a verified push: decode, look the mailbox up, queue a sync request, and
/// make it durable before acking.
pub async fn accept_push(ports: &Ports, body: &[u8]) -> PushOutcome {
    let env: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => return PushOutcome::Malformed(format!("not a Pub/Sub push envelope: {e}")),
    };
    let Some(data) = env.message.data.as_deref() else {
        return PushOutcome::Malformed("message.data is missing".into());
    };
    let n: Notification = match decode_base64_any(data)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(n) => n,
        Err(e) => return PushOutcome::Malformed(format!("message.data is not a Gmail notification: {e}")),
    };
    let history_id = match &n.history_id {
        Value::String(s) => s.parse::<u64>().ok(),
        v => v.as_u64(),
    };
    let Some(history_id) = history_id else {
        return PushOutcome::Malformed(format!("historyId {} is not a u64", n.history_id));
    };
    let Ok(inbox) = EmailAddress::parse(&n.email_address) else {
        return PushOutcome::Malformed(format!("emailAddress {:?} is not an address", n.email_address));
    };
    let span = tracing::info_span!("gmail_push", inbox = %inbox, history_id, message_id = env.message.message_id.as_deref().or(env.message.message_id_snake.as_deref()).unwrap_or(""));
    let outcome = async {
        match connection::get(ports, &inbox).await? {
            Some(c) if c.provider == Provider::Gmail => {
                if c.state == State::ReconnectRequired {
                    return Ok(PushOutcome::NotSyncing(inbox));
                }
            }
            _ => return Ok(PushOutcome::UnknownMailbox(inbox.key())),
        }
        if cursor(ports, &inbox).await?.history_id.is_some_and(|h| h >= history_id) {
            return Ok(PushOutcome::UpToDate { inbox, history_id });
        }
        let req = SyncRequest {
            inbox: inbox.key(),
            provider: Provider::Gmail,
            reason: "push".into(),
            hint: json!({"history_id": history_id.to_string()}),
        };
        sync::enqueue(ports, &req).await?;
        ports.flush()?;
        Ok::<_, StoreError>(PushOutcome::Queued { inbox, history_id })
    }
    .instrument(span.clone())
    .await;
    let _g = span.enter();
    match outcome {
        Ok(o) => {
            match &o {
                PushOutcome::UnknownMailbox(a) => {
                    tracing::warn!(address = %a, "gmail push for a mailbox that is not connected; acked")
                }
                PushOutcome::NotSyncing(_) => {
                    tracing::info!("gmail push for a mailbox that must be reconnected; acked")
                }
                _ => tracing::debug!("gmail push handled"),
            }
            o
        }
        Err(e) => {
            tracing::error!(error = %e, "gmail push could not be queued; Pub/Sub will redeliver");
            PushOutcome::Failed(e.to_string())
        }
    }
}

/// Both steps, for callers that already hold the body.
pub async fn handle_push(
    ports: &Ports,
    verifier: &OidcVerifier,
    authorization: Option<&str>,
    body: &[u8],
) -> PushOutcome {
    if let Err(o) = verify_push(verifier, authorization).await {
        return o;
    }
    accept_push(ports, body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn labels_choose_the_folder() {
        assert_eq!(folder_for(&labels(&["INBOX", "UNREAD"])), Some(Folder::Inbox));
        assert_eq!(folder_for(&labels(&["SENT"])), Some(Folder::Sent));
        assert_eq!(folder_for(&labels(&["SENT", "INBOX"])), Some(Folder::Inbox));
        assert_eq!(folder_for(&labels(&["DRAFT"])), None);
        assert_eq!(folder_for(&labels(&["SPAM", "INBOX"])), None);
        assert_eq!(folder_for(&labels(&["CHAT"])), None);
        assert_eq!(folder_for(&labels(&["CATEGORY_UPDATES"])), None);
    }

    #[test]
    fn watch_is_due_daily_or_near_expiry() {
        let now = Utc::now();
        assert!(watch_due(&json!({}), now));
        let fresh = json!({"watch": {"expiration_ms": (now + Duration::days(7)).timestamp_millis(), "renewed_at": now}});
        assert!(!watch_due(&fresh, now));
        assert!(watch_due(&fresh, now + Duration::hours(21)));
        let expiring = json!({"watch": {"expiration_ms": (now + Duration::hours(3)).timestamp_millis(), "renewed_at": now}});
        assert!(watch_due(&expiring, now));
    }
}
