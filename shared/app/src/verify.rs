//! Inbox verification ("send a test email", docs/inbox-setup.md): a run sends a uniquely
//! tagged message to the inbox and follows it through the real path (received by push
//! or poll, stored, threaded, logged on a test contact, routed, ticket), then sends a
//! reply from the inbox and waits for its Sent copy to sync back. Each step records pass,
//! fail or waiting, when, and the reason.
//!
//! A run is a state machine stored in the table (`verify#{inbox}` / `run#{id}`) and moved
//! on by [`advance`]: by the API and the settings page each time they are asked for it,
//! and by `mailroom inbox verify` in a loop. Nothing runs in the background, so it works
//! the same behind API Gateway and Lambda, where a request cannot outlive its answer.
//!
//! The test message is marked by a record written before it is sent
//! (`verifymsg#{message-id}`, read by the match stage): it is a customer's message from
//! the run's test contact whatever its From says, and its conversation, contact and
//! ticket stay out of every list and report (`test` on each). When the run ends its
//! conversation is closed and its test contact and timeline are deleted.

use crate::keys;
use crate::keys::item_str as s;
use crate::mailbox::connection::{self, Provider, State};
use crate::mailbox::imap::{self, PollOptions, Role};
use crate::outbound::reply::{self, ReplyRequest};
use crate::outbound::send::SendHandler;
use crate::pipeline::ingest::Ingestor;
use crate::runtime::config::ProvidersConfig;
use crate::runtime::ports::Ports;
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use mailroom_core::EmailAddress;
use mailroom_store::{Cond, Key, Query, SkCond, StoreError, Update};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The steps of a run, in order: (key, what the admin reads).
pub const STEPS: &[(&str, &str)] = &[
    ("connection", "Mailbox connection"),
    ("send", "Test message sent"),
    ("received", "Received by push or poll"),
    ("threaded", "Stored and threaded"),
    ("logged", "Logged on the test contact"),
    ("routed", "Routed by the rules"),
    ("ticket", "Ticket created"),
    ("reply", "Reply sent from the inbox"),
    ("sent_copy", "Sent copy synced back"),
];

/// How long a waiting step may wait before it fails (`MAILROOM_VERIFY_WAIT_SECONDS`).
pub fn default_wait() -> std::time::Duration {
    let secs = std::env::var("MAILROOM_VERIFY_WAIT_SECONDS").ok().and_then(|v| v.trim().parse().ok());
    std::time::Duration::from_secs(secs.unwrap_or(180))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Waiting,
    Pass,
    Fail,
    Skipped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Step {
    pub key: String,
    pub label: String,
    pub status: StepStatus,
    /// When the step started waiting, and when it ended.
    pub started_at: Option<DateTime<Utc>>,
    pub at: Option<DateTime<Utc>>,
    /// What was found, or the reason it failed.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Run {
    pub id: String,
    pub inbox: String,
    /// The admin who started it (the reply's author).
    pub by: String,
    /// `running`, `passed` or `failed`.
    pub outcome: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub message_id: String,
    pub test_contact: String,
    pub conversation: Option<String>,
    pub reply_request: Option<String>,
    /// Sync cursor versions when the reply was queued (the Sent copy moves one on).
    #[serde(default)]
    pub cursors_before: BTreeMap<String, i64>,
    /// Seconds a waiting step may wait.
    pub wait_seconds: u64,
    /// Someone is moving the run on until then (two readers never send twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub busy_until: Option<DateTime<Utc>>,
    pub steps: Vec<Step>,
}

impl Run {
    pub fn finished(&self) -> bool {
        self.outcome != "running"
    }
}

/// What a run needs besides the storage: the providers (to send and sync) and the
/// notification sender, when one is configured.
pub struct Verifier {
    pub ports: Ports,
    pub providers: Arc<ProvidersConfig>,
    pub wait: std::time::Duration,
}

/// The outcome of one step's check.
enum Check {
    Pass(String),
    Fail(String),
    Wait(String),
    Skip(String),
}

impl Verifier {
    pub fn new(ports: Ports, providers: Arc<ProvidersConfig>) -> Verifier {
        Verifier { ports, providers, wait: default_wait() }
    }

    /// Starts a run on `inbox` for the admin `by`, and advances it as far as it goes now.
    pub async fn start(&self, inbox: &EmailAddress, by: &str) -> anyhow::Result<Run> {
        let now = self.ports.clock.now();
        let token = hex::encode(rand::random::<[u8; 6]>());
        let id = format!("{}-{token}", now.format("%Y%m%dT%H%M%S"));
        let run = Run {
            id: id.clone(),
            inbox: inbox.key(),
            by: by.to_lowercase(),
            outcome: "running".into(),
            started_at: now,
            finished_at: None,
            message_id: format!("{}{id}@{}", keys::VERIFY_MID_PREFIX, inbox.domain()),
            test_contact: format!("mailroom-verify+{token}@verify.mailroom.invalid"),
            conversation: None,
            reply_request: None,
            cursors_before: BTreeMap::new(),
            wait_seconds: self.wait.as_secs(),
            busy_until: None,
            steps: STEPS
                .iter()
                .map(|(k, l)| Step {
                    key: (*k).into(),
                    label: (*l).into(),
                    status: StepStatus::Pending,
                    started_at: None,
                    at: None,
                    detail: None,
                })
                .collect(),
        };
        let mut rec = keys::verify_message_key(&run.message_id).item();
        rec.insert("run".into(), json!(id));
        rec.insert("contact".into(), json!(run.test_contact));
        rec.insert("inbox".into(), json!(inbox.key()));
        self.ports.table.put(rec, Some(Cond::NotExists)).await?;
        save(&self.ports, &run).await?;
        self.advance(run).await
    }

    /// Moves a run on as far as it goes without waiting, and stores it. One reader at a
    /// time moves a run (a lease on the stored run); another gets it as it is.
    pub async fn advance(&self, run: Run) -> anyhow::Result<Run> {
        let inbox = EmailAddress::parse(&run.inbox).context("run inbox")?;
        let key = keys::verify_run_key(&inbox, &run.id);
        let now = self.ports.clock.now();
        let free = Cond::Or(vec![
            Cond::AttrNotExists("busy_until".into()),
            Cond::Lt("busy_until".into(), json!(now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))),
        ]);
        let until = (now + Duration::seconds(60)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        match self
            .ports
            .table
            .update(
                &key,
                vec![Update::Set("busy_until".into(), json!(until))],
                Some(Cond::And(vec![Cond::Exists, free])),
            )
            .await
        {
            Ok(_) => {}
            Err(StoreError::ConditionFailed) => {
                return Ok(get(&self.ports, &inbox, &run.id).await?.unwrap_or(run));
            }
            Err(e) => return Err(e.into()),
        }
        // The stored run is the truth (the caller's copy may be older); the lease stays on
        // every save in between and goes with the last one.
        let mut run = get(&self.ports, &inbox, &run.id).await?.unwrap_or(run);
        run.busy_until = DateTime::parse_from_rfc3339(&until).ok().map(|t| t.with_timezone(&Utc));
        let out = self.advance_held(&mut run).await;
        run.busy_until = None;
        save(&self.ports, &run).await?;
        out.map(|()| run)
    }

    async fn advance_held(&self, run: &mut Run) -> anyhow::Result<()> {
        while !run.finished() {
            let Some(i) =
                run.steps.iter().position(|s| matches!(s.status, StepStatus::Pending | StepStatus::Waiting))
            else {
                self.finish(run).await?;
                save(&self.ports, run).await?;
                break;
            };
            let now = self.ports.clock.now();
            if run.steps[i].started_at.is_none() {
                run.steps[i].started_at = Some(now);
            }
            let key = run.steps[i].key.clone();
            let check = match self.check(run, &key).await {
                Ok(c) => c,
                Err(e) => Check::Fail(format!("{e:#}")),
            };
            let waited = now - run.steps[i].started_at.unwrap_or(now);
            let step = &mut run.steps[i];
            match check {
                Check::Pass(d) => {
                    (step.status, step.detail, step.at) = (StepStatus::Pass, Some(d), Some(now))
                }
                Check::Skip(d) => {
                    (step.status, step.detail, step.at) = (StepStatus::Skipped, Some(d), Some(now))
                }
                Check::Fail(d) => {
                    (step.status, step.detail, step.at) = (StepStatus::Fail, Some(d), Some(now))
                }
                Check::Wait(d) if waited >= Duration::seconds(run.wait_seconds as i64) => {
                    let why = format!("{d} (gave up after {} s)", waited.num_seconds());
                    (step.status, step.detail, step.at) = (StepStatus::Fail, Some(why), Some(now));
                }
                Check::Wait(d) => {
                    (step.status, step.detail) = (StepStatus::Waiting, Some(d));
                    save(&self.ports, run).await?;
                    return Ok(());
                }
            }
            if step.status == StepStatus::Fail {
                // The steps after a failure cannot run: they stay pending.
                self.finish(run).await?;
            }
            save(&self.ports, run).await?;
        }
        Ok(())
    }

    async fn check(&self, run: &mut Run, key: &str) -> anyhow::Result<Check> {
        let inbox = EmailAddress::parse(&run.inbox).context("run inbox")?;
        match key {
            "connection" => self.connection(&inbox).await,
            "send" => self.send(run, &inbox).await,
            "received" => self.received(run, &inbox).await,
            "threaded" => {
                let Some(m) = self.ports.table.get(&keys::message(&run.message_id)).await? else {
                    return Ok(Check::Wait("the message is not recorded yet".into()));
                };
                let conv = s(&m, "conversation").context("the recorded message has no conversation")?;
                let root = crate::thread::Threader::new(&self.ports).find(&conv).await?;
                run.conversation = Some(root.id.clone());
                Ok(Check::Pass(format!(
                    "conversation {} (subject {:?})",
                    root.id,
                    s(&root.item, "subject").unwrap_or_default()
                )))
            }
            "logged" => {
                let q = Query::new(keys::timeline_pk(&run.test_contact));
                let logged = self
                    .ports
                    .table
                    .query_all(q)
                    .await?
                    .iter()
                    .any(|t| s(t, "message_id").as_deref() == Some(run.message_id.as_str()));
                Ok(if logged {
                    Check::Pass(format!("on the timeline of contact {}", run.test_contact))
                } else {
                    Check::Wait("the route stage has not logged it yet".into())
                })
            }
            "routed" => self.routed(run).await,
            "ticket" => self.ticket(run).await,
            "reply" => self.reply(run, &inbox).await,
            "sent_copy" => self.sent_copy(run, &inbox).await,
            other => Ok(Check::Fail(format!("unknown step {other}"))),
        }
    }

    async fn connection(&self, inbox: &EmailAddress) -> anyhow::Result<Check> {
        let Some(c) = connection::get(&self.ports, inbox).await? else {
            return Ok(Check::Fail(format!(
                "{inbox} has no mailbox connection: connect it (Gmail, Microsoft 365 or IMAP) first"
            )));
        };
        if c.state == State::ReconnectRequired {
            return Ok(Check::Fail(format!(
                "reconnect required: {}",
                c.last_error.unwrap_or_else(|| "the provider refused the credentials".into())
            )));
        }
        let now = self.ports.clock.now();
        let last = match c.last_success {
            Some(t) => format!("last sync {} min ago", (now - t).num_minutes()),
            None => "not synced yet".into(),
        };
        if let Some(exp) = c.push_expires()
            && exp <= now
        {
            return Ok(Check::Fail("push subscription expired: the scheduler renews it; run `mailroom inbox connect` again if it keeps failing".into()));
        }
        let what = match c.provider {
            Provider::Imap => {
                let host = c.settings.get("host").and_then(Value::as_str).unwrap_or("?");
                let port = c.settings.get("port").and_then(Value::as_u64).unwrap_or(0);
                let smtp = c.settings.pointer("/smtp/host").and_then(Value::as_str);
                if smtp.is_none() {
                    return Ok(Check::Fail(
                        "IMAP without SMTP settings: the inbox cannot send; add SMTP".into(),
                    ));
                }
                format!("IMAP {host}:{port}")
            }
            Provider::Gmail => "Gmail (push)".into(),
            Provider::Graph => "Microsoft 365 (change notifications)".into(),
        };
        Ok(Check::Pass(format!("{what}, {}; {last}", c.state.as_str())))
    }

    async fn send(&self, run: &Run, inbox: &EmailAddress) -> anyhow::Result<Check> {
        let mime = test_message(run, inbox)?;
        let handler = SendHandler::new(self.ports.clone(), self.providers.clone());
        Ok(match handler.submit_test(inbox, &[inbox.key()], &mime).await {
            Ok(d) => Check::Pass(d),
            Err(e) => Check::Fail(e),
        })
    }

    /// Recorded yet? An IMAP inbox is polled now rather than at its next scheduled poll;
    /// push inboxes wait for the provider's notification.
    async fn received(&self, run: &Run, inbox: &EmailAddress) -> anyhow::Result<Check> {
        if self.ports.table.get(&keys::message(&run.message_id)).await?.is_some() {
            return Ok(Check::Pass("recorded".into()));
        }
        let c = connection::get(&self.ports, inbox).await?.context("the connection is gone")?;
        if c.provider == Provider::Imap {
            let r = match self.poll_now(inbox).await {
                Ok(r) => r,
                Err(fail) => return Ok(fail),
            };
            if self.ports.table.get(&keys::message(&run.message_id)).await?.is_some() {
                return Ok(Check::Pass("recorded".into()));
            }
            return Ok(Check::Wait(if r.fetched > 0 {
                "fetched; the pipeline is processing it".into()
            } else {
                "not in the mailbox yet".into()
            }));
        }
        let now = self.ports.clock.now();
        let mut why = "no push notification for it yet".to_string();
        if let Some(t) = c.last_success {
            why.push_str(&format!("; the last sync ran {} min ago", (now - t).num_minutes()));
        }
        if let Some(e) = c.last_error {
            why.push_str(&format!("; last error: {e}"));
        }
        Ok(Check::Wait(why))
    }

    async fn routed(&self, run: &Run) -> anyhow::Result<Check> {
        let conv = run.conversation.clone().context("no conversation")?;
        let Some(c) = self.ports.table.get(&keys::conv_key(&conv)).await? else {
            return Ok(Check::Fail(format!("conversation {conv} is gone")));
        };
        if c.get("routed").is_none() {
            return Ok(Check::Wait("the route stage has not routed it yet".into()));
        }
        let rules = keys::item_strings(&c, "matched_rules");
        let team = s(&c, "team");
        let who = match (&team, s(&c, "assignee")) {
            (Some(t), Some(a)) => format!("team {t}, assigned to {a}"),
            (Some(t), None) => format!("team {t}, unassigned"),
            (None, Some(a)) => format!("assigned to {a}"),
            (None, None) => "no team, unassigned".into(),
        };
        Ok(Check::Pass(if rules.is_empty() {
            let ws = crate::workspace::load(&self.ports).await?.unwrap_or_default();
            let fallback = ws
                .inboxes
                .iter()
                .find(|i| i.address.eq_ignore_ascii_case(&run.inbox))
                .and_then(|i| i.fallback_team.clone());
            match fallback {
                Some(f) => format!("no rule matched; fell back to the inbox's team {f}: {who}"),
                None => format!("no rule matched and the inbox has no fallback team: {who}"),
            }
        } else {
            format!("rule {} matched: {who}", rules.join(", then "))
        }))
    }

    async fn ticket(&self, run: &Run) -> anyhow::Result<Check> {
        let ws = crate::workspace::load(&self.ports).await?.unwrap_or_default();
        let enabled = ws
            .inboxes
            .iter()
            .find(|i| i.address.eq_ignore_ascii_case(&run.inbox))
            .is_some_and(|i| i.tickets.enabled);
        let conv = run.conversation.clone().context("no conversation")?;
        if let Some(t) = self.ports.table.get(&keys::ticket_key(&conv)).await? {
            return Ok(Check::Pass(format!(
                "ticket {} in pipeline {} at stage {}",
                s(&t, "id").unwrap_or_default(),
                s(&t, "pipeline").unwrap_or_default(),
                s(&t, "stage").unwrap_or_default()
            )));
        }
        if !enabled {
            return Ok(Check::Skip("ticket creation is off for this inbox".into()));
        }
        let c = self.ports.table.get(&keys::conv_key(&conv)).await?;
        if c.as_ref().and_then(|c| c.get("no_ticket")).and_then(Value::as_bool) == Some(true) {
            return Ok(Check::Skip("a routing rule says no ticket for this message".into()));
        }
        Ok(Check::Wait("the ticket stage has not created the ticket yet".into()))
    }

    async fn reply(&self, run: &mut Run, inbox: &EmailAddress) -> anyhow::Result<Check> {
        let conv = run.conversation.clone().context("no conversation")?;
        let Some(request_id) = run.reply_request.clone() else {
            let ws = crate::workspace::load(&self.ports).await?.unwrap_or_default();
            // The Sent copy is looked for in what is synced from now on (a push may bring
            // it in before this run sees the reply sent).
            run.cursors_before = connection::cursors(&self.ports, inbox)
                .await?
                .into_iter()
                .map(|(f, v)| (f, v.version))
                .collect();
            let req = ReplyRequest {
                request_id: format!("verify-{}", run.id),
                author: run.by.clone(),
                text: format!("Mailroom verification reply for run {}: no action needed.", run.id),
                html: None,
                cc: vec![],
                to: Some(vec![inbox.key()]),
                attachments: vec![],
            };
            let queued = reply::queue_reply(&self.ports, &ws, &conv, req, None)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            run.reply_request = Some(queued.request_id);
            self.ports.flush()?;
            return Ok(Check::Wait("queued".into()));
        };
        let Some(entry) = self.ports.table.get(&keys::outbox_key(&conv, &request_id)).await? else {
            return Ok(Check::Fail("the reply's outbox entry is gone".into()));
        };
        Ok(match s(&entry, "status").as_deref() {
            Some("sent") => Check::Pass(format!("sent as {}", s(&entry, "message_id").unwrap_or_default())),
            Some("failed") => {
                Check::Fail(format!("the reply failed: {}", s(&entry, "last_error").unwrap_or_default()))
            }
            _ => match s(&entry, "last_error") {
                Some(e) => Check::Wait(format!("retrying after: {e}")),
                None => Check::Wait("waiting for the send function".into()),
            },
        })
    }

    /// The provider's own copy of the reply: the Sent folder (IMAP) or the mailbox
    /// history (Gmail, Graph) read past the point where the reply was queued.
    async fn sent_copy(&self, run: &Run, inbox: &EmailAddress) -> anyhow::Result<Check> {
        let c = connection::get(&self.ports, inbox).await?.context("the connection is gone")?;
        if c.provider == Provider::Imap {
            let r = match self.poll_now(inbox).await {
                Ok(r) => r,
                Err(fail) => return Ok(fail),
            };
            if !r.folders.iter().any(|f| f.folder == Role::Sent) && r.outcome == imap::Outcome::Polled {
                return Ok(Check::Fail(
                    "no Sent folder: the server marks no folder \\Sent, so sent mail is not synced; pick one"
                        .into(),
                ));
            }
        }
        let now: BTreeMap<String, i64> =
            connection::cursors(&self.ports, inbox).await?.into_iter().map(|(f, v)| (f, v.version)).collect();
        let sent_cursor = if c.provider == Provider::Imap { Some(Role::Sent.cursor_name()) } else { None };
        let moved = now.iter().any(|(f, v)| {
            sent_cursor.is_none_or(|sc| sc == f) && run.cursors_before.get(f).is_none_or(|b| v > b)
        });
        Ok(if moved {
            Check::Pass(match sent_cursor {
                Some(f) => format!("the {f} folder was read past the reply"),
                None => "the mailbox history was read past the reply".into(),
            })
        } else {
            Check::Wait("the provider's Sent copy has not been synced yet".into())
        })
    }

    /// Polls an IMAP inbox now rather than at its next scheduled poll; a failed poll is
    /// the step's failure, with the server's reason.
    async fn poll_now(&self, inbox: &EmailAddress) -> Result<imap::InboxReport, Check> {
        let opts =
            PollOptions { connect_timeout: std::time::Duration::from_secs(10), ..PollOptions::default() };
        let r = imap::poll_inbox(&self.ports, &Ingestor::new(self.ports.clone()), inbox, &opts).await;
        match r.error {
            Some(e) => Err(Check::Fail(format!("IMAP poll failed: {e}"))),
            None => Ok(r),
        }
    }

    /// Ends a run: the outcome, the test conversation closed, the test contact and its
    /// timeline removed (the conversation stays, out of every list, as the evidence).
    async fn finish(&self, run: &mut Run) -> anyhow::Result<()> {
        let t = &self.ports.table;
        // From now on the test message is no longer expected: a late copy is recorded as
        // a test without a contact, routing or ticket, and a forged one as anyone's mail.
        t.update(
            &keys::verify_message_key(&run.message_id),
            vec![Update::Set("done".into(), json!(true))],
            None,
        )
        .await?;
        for e in t.query_all(Query::new(keys::timeline_pk(&run.test_contact))).await? {
            if let Some(k) = Key::of(&e) {
                t.delete(&k, None).await?;
            }
        }
        t.delete(&keys::contact_key(&run.test_contact), None).await?;
        if let Some(conv) = &run.conversation {
            let ws = crate::workspace::load(&self.ports).await?.unwrap_or_default();
            let now = self.ports.clock.now();
            crate::conversations::set_status(&self.ports, &ws, conv, true, None, now).await?;
        }
        self.ports.flush()?;
        // The outcome last: a failed clean-up is tried again by the next reader.
        let failed = run.steps.iter().any(|s| s.status == StepStatus::Fail);
        run.outcome = if failed { "failed" } else { "passed" }.into();
        run.finished_at = Some(self.ports.clock.now());
        Ok(())
    }
}

/// The test message: from and to the inbox, with the run's Message-ID (which the match
/// stage looks up), machine-marked so that no one auto-replies to it.
fn test_message(run: &Run, inbox: &EmailAddress) -> anyhow::Result<Vec<u8>> {
    use lettre::message::header::{ContentType, HeaderName, HeaderValue};
    let addr: lettre::message::Mailbox =
        format!("Mailroom verification <{}>", inbox.key()).parse().context("inbox address")?;
    let mut msg = lettre::Message::builder()
        .from(addr.clone())
        .to(addr)
        .subject(format!("Mailroom test message, {}", run.started_at.format("%Y-%m-%d %H:%M UTC")))
        .message_id(Some(format!("<{}>", run.message_id)))
        .header(ContentType::TEXT_PLAIN)
        .body(format!(
            "This message checks that Mailroom receives, logs and routes mail for {}.\r\nIt was started by {} and is removed from lists and reports automatically.\r\n",
            inbox.key(),
            run.by
        ))
        .context("building the test message")?;
    let raw = |name: &'static str, value: &str| {
        HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
    };
    msg.headers_mut().insert_raw(raw("X-Mailroom-Verify", &run.id));
    msg.headers_mut().insert_raw(raw("X-Auto-Response-Suppress", "All"));
    Ok(msg.formatted())
}

async fn save(ports: &Ports, run: &Run) -> anyhow::Result<()> {
    let inbox = EmailAddress::parse(&run.inbox).context("run inbox")?;
    let Value::Object(mut item) = serde_json::to_value(run)? else { anyhow::bail!("run did not serialise") };
    let k = keys::verify_run_key(&inbox, &run.id);
    item.insert("pk".into(), json!(k.pk));
    item.insert("sk".into(), json!(k.sk));
    ports.table.put(item, None).await?;
    ports.flush()?;
    Ok(())
}

/// A run of `inbox` by id.
pub async fn get(ports: &Ports, inbox: &EmailAddress, id: &str) -> anyhow::Result<Option<Run>> {
    match ports.table.get(&keys::verify_run_key(inbox, id)).await? {
        Some(item) => Ok(Some(serde_json::from_value(Value::Object(item))?)),
        None => Ok(None),
    }
}

/// The latest run of `inbox`, if any.
pub async fn latest(ports: &Ports, inbox: &EmailAddress) -> anyhow::Result<Option<Run>> {
    let q = Query::new(keys::verify_runs_pk(inbox)).sk(SkCond::BeginsWith("run#".into())).backward().limit(1);
    match ports.table.query(q).await?.items.into_iter().next() {
        Some(item) => Ok(Some(serde_json::from_value(Value::Object(item))?)),
        None => Ok(None),
    }
}
