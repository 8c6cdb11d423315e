//! Polling IMAP mailboxes (docs/connections.md): one run takes the mailbox's lease, reads
//! INBOX and the `\Sent` folder from their cursors, hands every new message to the
//! ingestor, and records the mailbox's health.
//!
//! Per folder the cursor is `{uidvalidity, last_uid, mailbox}`, checkpointed after each
//! message, so a run cut off anywhere (a budget, a Lambda timeout, a crash) resumes with the
//! next message: the one in flight at the cut is fetched again and the ingestor dedupes it.
//! With no cursor, or when UIDVALIDITY changed, the run re-baselines: it starts from the
//! first message received in the backfill window (`UID SEARCH SINCE`). Messages seen
//! before are not duplicated: the ingestor dedupes identical bytes and the match stage
//! dedupes by Message-ID.

use crate::mailbox::connection::{self, Failure, Lease, Provider, State};
use crate::pipeline::ingest::{IngestError, IngestOutcome, Ingestor, RawMail};
use crate::runtime::ports::Ports;
use chrono::{DateTime, Utc};
use mailroom_core::{EmailAddress, Folder};
pub use mailroom_providers::imap::Security;
use mailroom_providers::imap::{
    Bodies, Body, Credentials, Endpoint, FolderStatus, ImapError, ImapSession, MessageMeta,
};
pub use mailroom_providers::smtp::SmtpSecurity;
use mailroom_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::{Duration, Instant};
use thiserror::Error;
use tracing::Instrument;

/// The name of the sealed password (`connection::put_secret`).
pub const SECRET: &str = "imap";
pub const DEFAULT_BACKFILL_DAYS: u32 = 14;

/// An IMAP connection's settings (the connection's `settings`; the password is sealed
/// apart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImapSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub user: String,
    /// How far back the first poll (and a re-baseline) reaches, in days.
    #[serde(default = "default_backfill_days")]
    pub backfill_days: u32,
    /// Extra trusted CA certificates (PEM), for a server with a private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    /// Where replies from this inbox are submitted (docs/replies.md); `None`: the inbox
    /// cannot send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpSettings>,
    /// The server may be on a loopback, link-local or private address: set when the
    /// connection was made with the workspace's (or the CLI operator's) leave, checked
    /// again on every connection (`mailroom_providers::net`).
    #[serde(default)]
    pub allow_private_host: bool,
    /// The folder sent mail is read from when the server marks none `\Sent` (or marks
    /// another one than the one this mailbox uses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_folder: Option<String>,
}

/// SMTP submission of an IMAP inbox. The password is the IMAP one (sealed apart); the
/// CA is the IMAP settings' `ca_pem`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// The login; the IMAP user when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// APPEND each sent reply to the `\Sent` folder, as mail clients do. Off for servers
    /// that file submitted mail in Sent themselves (Gmail, Microsoft 365 over SMTP), where
    /// it would show twice.
    #[serde(default = "default_true")]
    pub append_sent: bool,
}

fn default_true() -> bool {
    true
}

fn default_backfill_days() -> u32 {
    DEFAULT_BACKFILL_DAYS
}

impl ImapSettings {
    /// The folder sent mail is read from: the one picked, while the server has it, else
    /// the one the server marks `\Sent`.
    pub fn sent_of(&self, f: &mailroom_providers::imap::Folders) -> Option<String> {
        self.sent_folder.clone().filter(|s| f.all.contains(s)).or_else(|| f.sent.clone())
    }

    pub fn endpoint(&self, opts: &PollOptions) -> Endpoint {
        let mut ep = Endpoint::new(&self.host, self.port, self.security);
        ep.extra_ca_pem = self.ca_pem.clone();
        ep.connect_timeout = opts.connect_timeout;
        ep.command_timeout = opts.command_timeout;
        ep.allow_private = self.allow_private_host;
        ep
    }
}

/// The two folders read, and their cursor names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Role {
    #[serde(rename = "INBOX")]
    Inbox,
    #[serde(rename = "Sent")]
    Sent,
}

impl Role {
    /// The cursor's folder name: the role, not the server's folder name, which is
    /// localised and may be renamed.
    pub fn cursor_name(self) -> &'static str {
        match self {
            Role::Inbox => "INBOX",
            Role::Sent => "Sent",
        }
    }
    fn folder(self) -> Folder {
        match self {
            Role::Inbox => Folder::Inbox,
            Role::Sent => Folder::Sent,
        }
    }
}

/// Where a folder's sync stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub uidvalidity: u32,
    /// Every message with a UID up to this one was handed to the ingestor (or recorded as
    /// skipped).
    pub last_uid: u32,
    /// The server's folder name when the cursor was written.
    pub mailbox: String,
    /// The message the connection last broke on, and how many runs in a row it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspect: Option<Suspect>,
}

/// A message whose fetch broke the connection (dovecot drops it on a file it cannot
/// read). After [`MAX_BREAKS`] runs in a row it is skipped; one broken run (a network
/// glitch) only retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspect {
    pub uid: u32,
    pub breaks: u32,
}

/// Runs in a row whose connection broke on the same message before it is skipped.
pub const MAX_BREAKS: u32 = 3;

/// How one run may go.
#[derive(Debug, Clone)]
pub struct PollOptions {
    /// The mailbox lease; renewed while the run goes on. A run that dies keeps others out
    /// for at most this long.
    pub lease_ttl: chrono::Duration,
    /// At most this many messages per mailbox per run (the rest waits for the next run).
    pub max_messages: Option<u32>,
    /// No new batch starts after this instant (the Lambda's deadline less a margin).
    pub deadline: Option<Instant>,
    /// Bodies per `UID FETCH`.
    pub batch_size: usize,
    /// A batch stops growing at this many bytes (RFC822.SIZE), but holds at least one.
    pub batch_bytes: u64,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    /// Messages larger than this (RFC822.SIZE) are stored as a placeholder, not fetched.
    pub max_message_bytes: u64,
    /// `connect`: refuse a mailbox whose sent mail cannot be read (no folder marked
    /// `\Sent` and none picked), naming its folders (the settings pages ask for one).
    pub require_sent: bool,
}

impl Default for PollOptions {
    fn default() -> PollOptions {
        PollOptions {
            lease_ttl: chrono::Duration::minutes(5),
            max_messages: None,
            deadline: None,
            batch_size: 25,
            batch_bytes: 16 << 20,
            connect_timeout: Duration::from_secs(15),
            command_timeout: Duration::from_secs(60),
            max_message_bytes: crate::runtime::config::max_message_bytes(),
            require_sent: false,
        }
    }
}

impl PollOptions {
    /// Options for a run that must be over in `remaining` (a Lambda invocation): commands
    /// time out well before it ends, and no batch starts in its last stretch, so the
    /// function returns with its cursors saved instead of being killed mid-batch.
    pub fn within(remaining: Duration) -> PollOptions {
        let command_timeout = Duration::from_secs(30).min(remaining / 4);
        let margin = (command_timeout + Duration::from_secs(10)).min(remaining / 3);
        PollOptions {
            deadline: Some(Instant::now() + remaining.saturating_sub(margin)),
            command_timeout,
            connect_timeout: Duration::from_secs(15).min(remaining / 4),
            ..PollOptions::default()
        }
    }
}

#[derive(Debug, Error)]
pub enum PollError {
    #[error(transparent)]
    Imap(#[from] ImapError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("{0} is not an IMAP connection")]
    NotImap(String),
    /// `connect`: the picked Sent folder is not on the server, or none is marked and
    /// none was picked.
    #[error("{0}")]
    SentFolder(String),
    /// The SMTP check of a connect (login refused, unreachable, TLS).
    #[error("SMTP: {0}")]
    Smtp(String),
    #[error(
        "the event's inbox {0:?} is not an email address: send {{\"inbox\": \"support@example.com\"}}, or {{}} to poll every inbox"
    )]
    BadEvent(String),
    #[error("no IMAP password is stored for {0}: connect the inbox again with `mailroom inbox connect-imap`")]
    NoPassword(String),
    #[error("the IMAP settings of {inbox} are unreadable ({detail}): connect the inbox again")]
    BadSettings { inbox: String, detail: String },
    #[error("the lease on {0} expired and another poller took it; this run stopped and the other continues")]
    LeaseLost(String),
    #[error("the {folder} cursor of {inbox} was moved by another poller; this run stopped")]
    CursorMoved { inbox: String, folder: String },
}

impl PollError {
    /// Whether the mailbox must be connected again (nothing retries until then).
    pub fn failure(&self) -> Failure {
        match self {
            PollError::Imap(e) if e.is_terminal() => Failure::Terminal,
            PollError::NoPassword(_) | PollError::BadSettings { .. } => Failure::Terminal,
            _ => Failure::Transient,
        }
    }
}

/// What happened to one mailbox in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Polled,
    /// Another poller holds the lease: skipped, it is being polled right now.
    Leased,
    /// Not polled: the credentials were refused earlier; connect the inbox again.
    ReconnectRequired,
    /// Not reached before the run's deadline.
    Deferred,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedMessage {
    pub folder: Role,
    pub uidvalidity: u32,
    pub uid: u32,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FolderReport {
    pub folder: Role,
    pub mailbox: String,
    pub uidvalidity: u32,
    pub last_uid: u32,
    /// UIDs above the cursor when the run looked.
    pub pending: u32,
    /// The cursor was (re)made from the backfill window: a first poll, or UIDVALIDITY
    /// changed.
    pub baselined: bool,
    pub uidvalidity_changed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InboxReport {
    pub inbox: String,
    pub outcome: Outcome,
    /// Bodies fetched from the server.
    pub fetched: u32,
    /// New copies stored and queued.
    pub stored: u32,
    /// Copies stored before (the same bytes): nothing done.
    pub duplicates: u32,
    /// Copies stored before but not processed yet: queued again.
    pub requeued: u32,
    /// Messages that could not be read and were passed over (each also recorded as an
    /// `imap_message_skipped` connection event).
    pub skipped: Vec<SkippedMessage>,
    /// The run stopped at `max_messages` or the deadline; messages may be left for the next.
    pub budget_exhausted: bool,
    pub folders: Vec<FolderReport>,
    pub error: Option<String>,
    /// The connection's state after the run.
    pub state: Option<State>,
}

impl InboxReport {
    fn new(inbox: &str, outcome: Outcome) -> InboxReport {
        InboxReport {
            inbox: inbox.to_string(),
            outcome,
            fetched: 0,
            stored: 0,
            duplicates: 0,
            requeued: 0,
            skipped: vec![],
            budget_exhausted: false,
            folders: vec![],
            error: None,
            state: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PollReport {
    pub inboxes: Vec<InboxReport>,
}

impl PollReport {
    pub fn fetched(&self) -> u32 {
        self.inboxes.iter().map(|i| i.fetched).sum()
    }
    pub fn stored(&self) -> u32 {
        self.inboxes.iter().map(|i| i.stored).sum()
    }
    pub fn failed(&self) -> usize {
        self.inboxes.iter().filter(|i| i.outcome == Outcome::Failed).count()
    }
}

/// What `connect` found.
#[derive(Debug, Clone, Serialize)]
pub struct Connected {
    pub inbox: String,
    pub inbox_folder: String,
    /// `None`: the server marks no folder `\Sent`, so Sent copies are not read.
    pub sent_folder: Option<String>,
    /// The earlier cursors were kept (same server and user): no second backfill.
    pub cursors_kept: bool,
}

fn credentials(s: &ImapSettings, password: String) -> Credentials {
    Credentials::Password { user: s.user.clone(), password }
}

/// Checks the settings and password by logging in, then stores the connection (health
/// starts over), the sealed password, and registers the inbox. A reconnect to the same
/// server and user keeps the cursors; anything else starts over from the backfill window.
pub async fn connect(
    ports: &Ports,
    inbox: &EmailAddress,
    settings: ImapSettings,
    password: &str,
    opts: &PollOptions,
) -> Result<Connected, PollError> {
    let mut session =
        ImapSession::connect(&settings.endpoint(opts), &credentials(&settings, password.to_string())).await?;
    let folders = session.folders().await;
    session.logout().await;
    let folders = folders?;
    let others =
        || folders.all.iter().filter(|f| **f != folders.inbox).cloned().collect::<Vec<_>>().join(", ");
    if let Some(s) = settings.sent_folder.as_ref().filter(|s| !folders.all.contains(s)) {
        return Err(PollError::SentFolder(format!(
            "no folder {s:?} on the server; its folders: {}",
            others()
        )));
    }
    if opts.require_sent && settings.sent_of(&folders).is_none() {
        return Err(PollError::SentFolder(format!(
            "no Sent folder: the server marks none \\Sent; pick the one sent mail goes to: {}",
            others()
        )));
    }
    if let Some(m) = &settings.smtp {
        let ep = mailroom_providers::smtp::SmtpEndpoint {
            host: m.host.clone(),
            port: m.port,
            security: m.security,
            extra_ca_pem: settings.ca_pem.clone(),
            hello_name: inbox.domain().to_string(),
            timeout: opts.connect_timeout,
            allow_private: settings.allow_private_host,
        };
        let user = m.user.clone().unwrap_or_else(|| settings.user.clone());
        mailroom_providers::smtp::check(&ep, Some((user, password.to_string())))
            .await
            .map_err(|e| PollError::Smtp(e.to_string()))?;
    }

    let same_place = match connection::get(ports, inbox).await? {
        Some(old) => serde_json::from_value::<ImapSettings>(old.settings).is_ok_and(|o| {
            (o.host, o.port, o.user) == (settings.host.clone(), settings.port, settings.user.clone())
        }),
        None => false,
    };
    if !same_place {
        for role in [Role::Inbox, Role::Sent] {
            connection::clear_cursor(ports, inbox, role.cursor_name()).await?;
        }
    }
    let settings_value = serde_json::to_value(&settings).map_err(StoreError::backend)?;
    let conn = connection::Connection::new(inbox, Provider::Imap, settings_value, ports.clock.now());
    connection::put_secret(ports, inbox, SECRET, password.as_bytes()).await?;
    connection::save(ports, &conn).await?;
    Ingestor::new(ports.clone()).register_inbox(inbox).await?;
    ports.flush()?;
    Ok(Connected {
        inbox: inbox.key(),
        sent_folder: settings.sent_of(&folders),
        inbox_folder: folders.inbox,
        cursors_kept: same_place,
    })
}

/// Polls every IMAP connection once, one after the other (those that need to be connected
/// again are reported, not polled).
pub async fn poll_all(ports: &Ports, opts: &PollOptions) -> Result<PollReport, StoreError> {
    let ingestor = Ingestor::new(ports.clone());
    let mut report = PollReport::default();
    for c in connection::list(ports).await? {
        if c.provider != Provider::Imap {
            continue;
        }
        if opts.deadline.is_some_and(|d| Instant::now() >= d) {
            report.inboxes.push(InboxReport::new(&c.inbox, Outcome::Deferred));
            continue;
        }
        let r = match EmailAddress::parse(&c.inbox) {
            Ok(addr) => poll_inbox(ports, &ingestor, &addr, opts).await,
            Err(e) => {
                let mut r = InboxReport::new(&c.inbox, Outcome::Failed);
                r.error = Some(format!("invalid inbox address: {e}"));
                r
            }
        };
        report.inboxes.push(r);
    }
    ports.flush()?;
    Ok(report)
}

/// The scheduled poll (the imap-poll function's event): `{"inbox": ADDRESS}` polls that
/// inbox (a fan-out of one invocation per mailbox), anything else (the EventBridge
/// schedule's event) polls every IMAP inbox.
pub async fn scheduled(
    ports: &Ports,
    event: &serde_json::Value,
    opts: &PollOptions,
) -> Result<PollReport, PollError> {
    let Some(inbox) = event.get("inbox").and_then(serde_json::Value::as_str) else {
        return Ok(poll_all(ports, opts).await?);
    };
    let addr = EmailAddress::parse(inbox).map_err(|_| PollError::BadEvent(inbox.to_string()))?;
    let report = poll_inbox(ports, &Ingestor::new(ports.clone()), &addr, opts).await;
    ports.flush()?;
    Ok(PollReport { inboxes: vec![report] })
}

/// Polls one mailbox: takes its lease (or reports it `leased`), reads INBOX and Sent, and
/// records the connection's health.
pub async fn poll_inbox(
    ports: &Ports,
    ingestor: &Ingestor,
    inbox: &EmailAddress,
    opts: &PollOptions,
) -> InboxReport {
    let span = tracing::info_span!("imap_poll", inbox = %inbox);
    async {
        let mut report = InboxReport::new(&inbox.key(), Outcome::Polled);
        let conn = match connection::get(ports, inbox).await {
            Ok(Some(c)) if c.provider == Provider::Imap => c,
            Ok(_) => {
                report.outcome = Outcome::Failed;
                report.error = Some(PollError::NotImap(inbox.key()).to_string());
                return report;
            }
            Err(e) => {
                report.outcome = Outcome::Failed;
                report.error = Some(format!("cannot read the connection: {e}"));
                return report;
            }
        };
        if conn.state == State::ReconnectRequired {
            // Retrying refused credentials only gets the account locked: wait for a reconnect.
            report.outcome = Outcome::ReconnectRequired;
            report.state = Some(conn.state);
            report.error = conn.last_error;
            return report;
        }
        let lease = match connection::acquire_lease(ports, inbox, opts.lease_ttl).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                tracing::info!("another poller holds the lease: skipped");
                report.outcome = Outcome::Leased;
                return report;
            }
            Err(e) => {
                report.outcome = Outcome::Failed;
                report.error = Some(format!("cannot take the lease: {e}"));
                return report;
            }
        };
        let mut run = Run { ports, ingestor, inbox, opts, lease, report: &mut report, newest: None };
        let res = run.poll(conn).await;
        let (lease, newest) = (run.lease, run.newest);
        // Give the lease back before recording health: the next poller need not wait for
        // the TTL.
        if let Err(e) = lease.release(ports).await {
            tracing::warn!(error = %e, "cannot release the lease; it expires by itself");
        }
        let health = match &res {
            Ok(()) => {
                let lag = newest.map(|d| ports.clock.now() - d);
                connection::record_success(ports, inbox, lag).await.map(|_| None)
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::warn!(error = %msg, "IMAP poll failed");
                report.outcome = Outcome::Failed;
                report.error = Some(msg.clone());
                connection::record_error(ports, inbox, &msg, e.failure()).await.map(Some)
            }
        };
        match health {
            Ok(_) => {}
            Err(e) => {
                report.outcome = Outcome::Failed;
                report.error =
                    Some(format!("{}; cannot record health: {e}", report.error.take().unwrap_or_default()));
            }
        }
        report.state = connection::get(ports, inbox).await.ok().flatten().map(|c| c.state);
        report
    }
    .instrument(span)
    .await
}

/// One mailbox's run.
struct Run<'a> {
    ports: &'a Ports,
    ingestor: &'a Ingestor,
    inbox: &'a EmailAddress,
    opts: &'a PollOptions,
    lease: Lease,
    report: &'a mut InboxReport,
    /// INTERNALDATE of the newest message handed over: the lag.
    newest: Option<DateTime<Utc>>,
}

impl Run<'_> {
    async fn poll(&mut self, conn: connection::Connection) -> Result<(), PollError> {
        let inbox_key = self.inbox.key();
        let settings: ImapSettings = serde_json::from_value(conn.settings)
            .map_err(|e| PollError::BadSettings { inbox: inbox_key.clone(), detail: e.to_string() })?;
        let password = connection::get_secret(self.ports, self.inbox, SECRET)
            .await?
            .ok_or_else(|| PollError::NoPassword(inbox_key.clone()))?;
        let password = String::from_utf8(password.value).map_err(|_| PollError::BadSettings {
            inbox: inbox_key.clone(),
            detail: "the password is not UTF-8".into(),
        })?;
        let mut session =
            ImapSession::connect(&settings.endpoint(self.opts), &credentials(&settings, password)).await?;
        let res = self.poll_folders(&mut session, &settings).await;
        session.logout().await;
        res
    }

    async fn poll_folders(
        &mut self,
        session: &mut ImapSession,
        settings: &ImapSettings,
    ) -> Result<(), PollError> {
        let folders = session.folders().await?;
        let sent = settings.sent_of(&folders);
        let mut todo = vec![(Role::Inbox, folders.inbox)];
        match sent {
            Some(sent) => todo.push((Role::Sent, sent)),
            None => tracing::warn!("the server marks no folder \\Sent: Sent copies are not read"),
        }
        for (role, mailbox) in todo {
            if self.out_of_budget() {
                self.report.budget_exhausted = true;
                break;
            }
            self.poll_folder(session, settings, role, &mailbox).await?;
        }
        Ok(())
    }

    fn handled(&self) -> u32 {
        self.report.fetched + self.report.skipped.len() as u32
    }

    fn out_of_budget(&self) -> bool {
        self.opts.max_messages.is_some_and(|m| self.handled() >= m)
            || self.opts.deadline.is_some_and(|d| Instant::now() >= d)
    }

    async fn poll_folder(
        &mut self,
        session: &mut ImapSession,
        settings: &ImapSettings,
        role: Role,
        mailbox: &str,
    ) -> Result<(), PollError> {
        let status = session.examine(mailbox).await?;
        let stored = connection::get_cursor(self.ports, self.inbox, role.cursor_name()).await?;
        let old = stored.as_ref().and_then(|c| serde_json::from_value::<Cursor>(c.value.clone()).ok());
        let mut folder_report = FolderReport {
            folder: role,
            mailbox: mailbox.to_string(),
            uidvalidity: status.uid_validity,
            last_uid: 0,
            pending: 0,
            baselined: false,
            uidvalidity_changed: false,
        };
        let (mut cursor, mut version) = match (old, &stored) {
            (Some(c), Some(v)) if c.uidvalidity == status.uid_validity => (c, v.version),
            (old, _) => {
                folder_report.baselined = true;
                folder_report.uidvalidity_changed = old.is_some();
                if let Some(o) = &old {
                    tracing::warn!(
                        folder = role.cursor_name(),
                        old = o.uidvalidity,
                        new = status.uid_validity,
                        "UIDVALIDITY changed: re-reading the backfill window"
                    );
                    connection::event(
                        self.ports,
                        self.inbox,
                        "imap_uidvalidity_changed",
                        json!({"folder": role.cursor_name(), "mailbox": mailbox, "old": o.uidvalidity, "new": status.uid_validity}),
                    )
                    .await?;
                }
                let last_uid = self.baseline(session, settings, &status).await?;
                let c = Cursor {
                    uidvalidity: status.uid_validity,
                    last_uid,
                    mailbox: mailbox.to_string(),
                    suspect: None,
                };
                let v = self.checkpoint(role, &c, stored.as_ref().map(|s| s.version)).await?;
                (c, v)
            }
        };

        let pending =
            if status.exists == 0 { vec![] } else { session.messages_after(cursor.last_uid).await? };
        folder_report.pending = pending.len() as u32;
        let mut rest = pending.as_slice();
        while !rest.is_empty() {
            if self.out_of_budget() {
                self.report.budget_exhausted = true;
                break;
            }
            self.keep_lease().await?;
            let room =
                self.opts.max_messages.map_or(usize::MAX, |m| m.saturating_sub(self.handled()) as usize);
            // A message that broke the connection before is asked for alone, so that the
            // blame lands on it and not on its batch.
            let count = if cursor.suspect.is_some() { 1 } else { self.opts.batch_size.min(room) };
            let batch = next_batch(rest, count, self.opts.batch_bytes);
            rest = &rest[batch.len()..];
            // Over the size cap: not fetched whole (memory, time), kept as a placeholder.
            let cap = self.opts.max_message_bytes;
            let uids: Vec<u32> =
                batch.iter().filter(|m| m.size.is_none_or(|s| u64::from(s) <= cap)).map(|m| m.uid).collect();
            let mut fetched = if uids.is_empty() { Bodies::default() } else { session.bodies(&uids).await };
            for meta in batch {
                if meta.size.is_some_and(|s| u64::from(s) > cap) {
                    let headers = session.header(meta.uid).await?;
                    let place = format!("IMAP folder {}, UID {}", cursor.mailbox, meta.uid);
                    let raw = mailroom_core::placeholder::too_large(
                        &headers,
                        meta.size.map(u64::from),
                        cap,
                        &place,
                    );
                    tracing::warn!(inbox = %self.inbox, uid = meta.uid, size = ?meta.size, cap, "message over the size cap: stored as a placeholder");
                    self.hand_over(role, &cursor, meta, Body::Raw(raw)).await?;
                    cursor.last_uid = meta.uid;
                    cursor.suspect = None;
                    version = self.checkpoint(role, &cursor, Some(version)).await?;
                    continue;
                }
                let Some(body) = fetched.got.remove(&meta.uid) else {
                    // Unanswered: the connection broke at this message.
                    let err = fetched
                        .broken
                        .take()
                        .unwrap_or(ImapError::ConnectionLost { what: "UID FETCH".into() });
                    return self.broke_at(role, &mut cursor, version, meta.uid, err).await;
                };
                self.hand_over(role, &cursor, meta, body).await?;
                cursor.last_uid = meta.uid;
                cursor.suspect = None;
                version = self.checkpoint(role, &cursor, Some(version)).await?;
            }
            if let Some(e) = fetched.broken {
                return Err(e.into());
            }
        }
        folder_report.last_uid = cursor.last_uid;
        self.report.folders.push(folder_report);
        Ok(())
    }

    /// The UID after which a fresh cursor starts: just before the first message received
    /// in the backfill window, or the folder's end when the window is empty.
    async fn baseline(
        &mut self,
        session: &mut ImapSession,
        settings: &ImapSettings,
        status: &FolderStatus,
    ) -> Result<u32, PollError> {
        if status.exists == 0 {
            return Ok(status.uid_next.unwrap_or(1).saturating_sub(1));
        }
        let since =
            (self.ports.clock.now() - chrono::Duration::days(i64::from(settings.backfill_days))).date_naive();
        let uids = session.uids_since(since).await?;
        match uids.first() {
            Some(first) => Ok(first.saturating_sub(1)),
            None => match status.uid_next {
                Some(next) => Ok(next.saturating_sub(1)),
                None => Ok(session.max_uid().await?.unwrap_or(0)),
            },
        }
    }

    /// The connection broke while `uid` was being fetched. Counts the break against the
    /// message; at the [`MAX_BREAKS`]th run in a row it is skipped, so that it cannot hold
    /// the mailbox back for ever. The run ends with the error either way (the session is
    /// gone).
    async fn broke_at(
        &mut self,
        role: Role,
        cursor: &mut Cursor,
        version: i64,
        uid: u32,
        err: ImapError,
    ) -> Result<(), PollError> {
        let breaks = match &cursor.suspect {
            Some(s) if s.uid == uid => s.breaks + 1,
            _ => 1,
        };
        if breaks >= MAX_BREAKS {
            let reason = format!("fetching it broke the connection {breaks} runs in a row ({err})");
            self.skip(role, cursor, uid, reason).await?;
            cursor.last_uid = uid;
            cursor.suspect = None;
        } else {
            tracing::warn!(folder = role.cursor_name(), uid, breaks, error = %err, "the connection broke while fetching this message");
            cursor.suspect = Some(Suspect { uid, breaks });
        }
        self.checkpoint(role, cursor, Some(version)).await?;
        Err(err.into())
    }

    /// Stores one message (or records why it could not be read).
    async fn hand_over(
        &mut self,
        role: Role,
        cursor: &Cursor,
        meta: &MessageMeta,
        body: Body,
    ) -> Result<(), PollError> {
        let bytes = match body {
            Body::Raw(b) => b,
            Body::Missing(reason) => return self.skip(role, cursor, meta.uid, reason).await,
        };
        self.report.fetched += 1;
        let mut mail = RawMail::new(bytes, "imap");
        mail.inbox = Some(self.inbox.clone());
        mail.folder = Some(role.folder());
        mail.source_id = Some(format!("{}:{}", cursor.uidvalidity, meta.uid));
        mail.received_at = meta.internal_date;
        match self.ingestor.ingest(mail).await {
            Ok(IngestOutcome::Stored(_)) => self.report.stored += 1,
            Ok(IngestOutcome::Duplicate) => self.report.duplicates += 1,
            Ok(IngestOutcome::Requeued(_)) => self.report.requeued += 1,
            // Storage failing is not this message's fault: stop, the cursor stays before it.
            Err(IngestError::Store(e)) => return Err(e.into()),
            Err(e) => return self.skip(role, cursor, meta.uid, e.to_string()).await,
        }
        if let Some(d) = meta.internal_date {
            self.newest = Some(self.newest.map_or(d, |n| n.max(d)));
        }
        Ok(())
    }

    /// Passes over a message that cannot be read, loudly: a warning, an
    /// `imap_message_skipped` connection event, and the run's report.
    async fn skip(&mut self, role: Role, cursor: &Cursor, uid: u32, reason: String) -> Result<(), PollError> {
        tracing::warn!(folder = role.cursor_name(), uid, reason = %reason, "message skipped");
        connection::event(
            self.ports,
            self.inbox,
            "imap_message_skipped",
            json!({"folder": role.cursor_name(), "mailbox": cursor.mailbox, "uidvalidity": cursor.uidvalidity, "uid": uid, "reason": reason}),
        )
        .await?;
        self.report.skipped.push(SkippedMessage {
            folder: role,
            uidvalidity: cursor.uidvalidity,
            uid,
            reason,
        });
        Ok(())
    }

    async fn checkpoint(&self, role: Role, c: &Cursor, expected: Option<i64>) -> Result<i64, PollError> {
        let value = serde_json::to_value(c).map_err(StoreError::backend)?;
        match connection::set_cursor(self.ports, self.inbox, role.cursor_name(), value, expected).await {
            Ok(v) => Ok(v),
            Err(StoreError::ConditionFailed) => {
                Err(PollError::CursorMoved { inbox: self.inbox.key(), folder: role.cursor_name().into() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Renews the lease once half of it is gone.
    async fn keep_lease(&mut self) -> Result<(), PollError> {
        if self.lease.expires_at - self.ports.clock.now() > self.opts.lease_ttl / 2 {
            return Ok(());
        }
        match self.lease.renew(self.ports, self.opts.lease_ttl).await {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed) => Err(PollError::LeaseLost(self.inbox.key())),
            Err(e) => Err(e.into()),
        }
    }
}

/// The next batch: up to `count` messages and `bytes` (at least one message).
fn next_batch(rest: &[MessageMeta], count: usize, bytes: u64) -> &[MessageMeta] {
    let mut total = 0u64;
    let mut n = 0;
    for m in rest.iter().take(count.max(1)) {
        total += u64::from(m.size.unwrap_or(0));
        if n > 0 && total > bytes {
            break;
        }
        n += 1;
    }
    &rest[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: u32, size: u32) -> MessageMeta {
        MessageMeta { uid, internal_date: None, size: Some(size) }
    }

    #[test]
    fn batches_hold_count_and_bytes_and_at_least_one() {
        let ms: Vec<_> = (1..=10).map(|u| meta(u, 100)).collect();
        assert_eq!(next_batch(&ms, 4, 10_000).len(), 4);
        assert_eq!(next_batch(&ms, 25, 250).len(), 2);
        assert_eq!(next_batch(&[meta(1, 1 << 30)], 25, 10).len(), 1);
        assert_eq!(next_batch(&ms, 0, 10_000).len(), 1);
    }

    #[test]
    fn a_lambda_run_stops_before_its_deadline() {
        let o = PollOptions::within(Duration::from_secs(900));
        let left = o.deadline.unwrap() - Instant::now();
        assert!(left < Duration::from_secs(861) && left > Duration::from_secs(850), "{left:?}");
        assert_eq!(o.command_timeout, Duration::from_secs(30));
        let o = PollOptions::within(Duration::from_secs(12));
        assert!(o.deadline.unwrap() - Instant::now() <= Duration::from_secs(8));
        assert!(o.command_timeout <= Duration::from_secs(3));
    }

    #[test]
    fn settings_read_with_defaults() {
        let s: ImapSettings =
            serde_json::from_value(json!({"host": "h", "port": 993, "security": "tls", "user": "u"}))
                .unwrap();
        assert_eq!((s.backfill_days, s.ca_pem), (DEFAULT_BACKFILL_DAYS, None));
    }

    #[test]
    fn refused_credentials_are_terminal() {
        let e = PollError::Imap(ImapError::AuthenticationFailed { user: "u".into(), detail: "NO".into() });
        assert_eq!(e.failure(), Failure::Terminal);
        let e = PollError::Imap(ImapError::Timeout { host: "h".into(), what: "x".into(), secs: 1 });
        assert_eq!(e.failure(), Failure::Transient);
    }
}
