//! Notifications: a consumer of the event feed (its own cursor, `relay#notify`) that
//! turns events into emails to the users they concern, as each user's settings say
//! (`[users.notifications]`, docs/workspace.md):
//! - `assigned` / `reassigned`: the new assignee (`assigned`);
//! - `message_logged` of a customer's message (inbound, normal, not a loop) in a
//!   conversation with an assignee, other than its first message: the assignee
//!   (`customer_reply`);
//! - `comment_added`: each mentioned user but the author (`mention`);
//! - `sla_breached`: the assignee, else the members of the conversation's team, else
//!   the admins (`sla_breach`).
//!
//! Each (event, user) is sent once: a marker item is written after the send and checked
//! before it (a crash between the two sends it again: at least once).

use crate::feed::{Event, Sink};
use crate::keys;
use crate::keys::item_str as s;
use crate::runtime::ports::Ports;
use crate::thread::Threader;
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mailroom_core::workspace::{NotifyBy, User, Workspace};
use mailroom_store::{Cond, MailSender, StoreError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A customer message older than this when it is recorded (a history import) notifies
/// nobody, nor does routing's assignment of it, nor an SLA deadline that passed longer
/// ago than this when the sweep found it.
pub const REPLY_MAX_AGE: chrono::Duration = chrono::Duration::hours(24);

/// One email to one user.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub to: String,
    /// `assigned`, `customer_reply`, `mention`, `sla_breach`.
    pub reason: &'static str,
    pub subject: String,
    pub text: String,
    pub event_id: String,
}

/// Sends notification emails: SMTP locally, SES in AWS.
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn send(&self, n: &Notification) -> anyhow::Result<()>;
}

/// The RFC 5322 form of a notification. `Auto-Submitted: auto-generated` makes every
/// mail system (and our own classifier) treat it as machine mail: if it reaches a
/// connected inbox it is stored as an auto-reply, never opens a ticket and never gets
/// an auto-reply.
pub fn build_email(from: &str, n: &Notification) -> anyhow::Result<lettre::Message> {
    use lettre::message::header::{ContentType, HeaderName, HeaderValue};
    let domain = from.rsplit_once('@').map(|(_, d)| d).unwrap_or("mailroom.invalid");
    let hash = hex::encode(&Sha256::digest(format!("{}\n{}", n.event_id, n.to).as_bytes())[..12]);
    let raw = |name: &'static str, value: &str| {
        HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
    };
    let mut msg = lettre::Message::builder()
        .from(from.parse().with_context(|| format!("MAILROOM_NOTIFY_FROM {from:?} is not an address"))?)
        .to(n.to.parse().with_context(|| format!("notification recipient {:?} is not an address", n.to))?)
        .subject(&n.subject)
        .message_id(Some(format!("<notify.{hash}@{domain}>")))
        .header(ContentType::TEXT_PLAIN)
        .body(n.text.clone())
        .context("building the notification email")?;
    msg.headers_mut().insert_raw(raw("Auto-Submitted", "auto-generated"));
    msg.headers_mut().insert_raw(raw("X-Mailroom-Notification", n.reason));
    msg.headers_mut().insert_raw(raw("X-Auto-Response-Suppress", "All"));
    Ok(msg)
}

/// Notification emails through a [`MailSender`] (SMTP locally, SES in AWS: the adapters
/// live in mailroom-store), from `from`.
pub struct MailNotifier {
    pub from: String,
    pub sender: Arc<dyn MailSender>,
}

#[async_trait]
impl Notifier for MailNotifier {
    async fn send(&self, n: &Notification) -> anyhow::Result<()> {
        let raw = build_email(&self.from, n)?.formatted();
        self.sender
            .send_raw(&self.from, std::slice::from_ref(&n.to), &raw)
            .await
            .with_context(|| format!("sending a notification to {}", n.to))?;
        Ok(())
    }
}

/// The notifier the environment configures: `MAILROOM_NOTIFY_SMTP_URL` and
/// `MAILROOM_NOTIFY_FROM`; `None` when no URL is set (notifications off).
pub fn smtp_from_env() -> anyhow::Result<Option<MailNotifier>> {
    let Ok(url) = std::env::var("MAILROOM_NOTIFY_SMTP_URL") else { return Ok(None) };
    let from = std::env::var("MAILROOM_NOTIFY_FROM")
        .context("MAILROOM_NOTIFY_SMTP_URL is set but MAILROOM_NOTIFY_FROM is not: set the sender address")?;
    let sender = mailroom_store::embedded::SmtpSender::new(url.trim())?;
    Ok(Some(MailNotifier { from: from.trim().to_string(), sender: Arc::new(sender) }))
}

/// The feed consumer that sends notifications.
pub struct NotifySink<'a> {
    pub ports: &'a Ports,
    pub notifier: &'a dyn Notifier,
}

impl NotifySink<'_> {
    /// Who an event notifies, and why.
    async fn recipients(&self, ws: &Workspace, e: &Event) -> anyhow::Result<Vec<(String, &'static str)>> {
        if !matches!(
            e.kind.as_str(),
            "assigned"
                | "reassigned"
                | "message_logged"
                | "comment_added"
                | "sla_breached"
                | "inbox_reconnect_required"
                | "email_log_alert"
        ) {
            return Ok(Vec::new());
        }
        let conv = self.conversation(e).await?;
        let assignee = conv.as_ref().and_then(|c| s(c, "assignee"));
        let str_of = |k: &str| e.data.get(k).and_then(Value::as_str).map(str::to_lowercase);
        let mut out: Vec<(String, &'static str)> = Vec::new();
        match e.kind.as_str() {
            "assigned" | "reassigned" => {
                // A person's assignment always notifies; routing's only for fresh mail
                // (importing last year's mail must not email every assignee).
                let manual = conv.as_ref().and_then(|c| s(c, "assigned_by")).is_some();
                let routed_by = conv.as_ref().and_then(|c| s(c, "routed_by"));
                let fresh = match (manual, routed_by) {
                    (false, Some(mid)) => self.fresh(&mid, e).await?,
                    _ => true,
                };
                if let (Some(a), true) = (str_of("assignee"), fresh) {
                    out.push((a, "assigned"));
                }
            }
            "message_logged" => {
                let customer = str_of("direction").as_deref() == Some("inbound")
                    && str_of("kind").as_deref().unwrap_or("normal") == "normal"
                    && e.data.get("loop").and_then(Value::as_bool) != Some(true);
                let first = conv.as_ref().and_then(|c| s(c, "first_message_id")) == str_of("message_id")
                    && conv.as_ref().and_then(|c| s(c, "first_message_id")).is_some();
                let fresh = match str_of("message_id") {
                    Some(mid) => self.fresh(&mid, e).await?,
                    None => false,
                };
                if let (true, false, true, Some(a)) = (customer, first, fresh, assignee) {
                    out.push((a, "customer_reply"));
                }
            }
            "comment_added" => {
                let author = str_of("author");
                for m in e.data.get("mentions").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(m) = m.as_str().map(str::to_lowercase)
                        && Some(&m) != author.as_ref()
                    {
                        out.push((m, "mention"));
                    }
                }
            }
            // A deadline that passed long before anyone could know (imported history, a
            // sweep that did not run for a day) is old news too.
            "sla_breached" if !Self::recent(e, e.data.get("due")) => {}
            "sla_breached" => {
                let team = conv.as_ref().and_then(|c| s(c, "team"));
                let members =
                    team.and_then(|t| ws.teams.iter().find(|x| x.id == t)).map(|t| t.members.clone());
                let who: Vec<String> = match (assignee, members) {
                    (Some(a), _) => vec![a],
                    (None, Some(m)) if !m.is_empty() => m,
                    _ => admins(ws),
                };
                out.extend(who.into_iter().map(|w| (w.to_lowercase(), "sla_breach")));
            }
            kind @ ("inbox_reconnect_required" | "email_log_alert") => {
                // The health of an inbox (its connection, its email log): an individual
                // inbox's owner; the admins for a shared one (or one whose owner is gone).
                let inbox = e
                    .inbox
                    .as_deref()
                    .and_then(|a| ws.inboxes.iter().find(|i| i.address.eq_ignore_ascii_case(a)));
                let owner = inbox.and_then(|i| i.owner.clone()).filter(|o| ws.user(o).is_some());
                let who = owner.map(|o| vec![o]).unwrap_or_else(|| admins(ws));
                let reason = if kind == "email_log_alert" { "email_log_alert" } else { "reconnect_required" };
                out.extend(who.into_iter().map(|w| (w.to_lowercase(), reason)));
            }
            _ => {}
        }
        out.dedup();
        Ok(out)
    }

    /// The event's conversation (its root after merges); `None` when it is gone or was
    /// never there, so that one odd event cannot hold the notifications back.
    async fn conversation(&self, e: &Event) -> anyhow::Result<Option<mailroom_store::Item>> {
        let Some(c) = &e.conversation else { return Ok(None) };
        if self.ports.table.get(&crate::keys::conv_key(c)).await?.is_none() {
            tracing::warn!(conversation = %c, event = %e.id, "event of an unknown conversation");
            return Ok(None);
        }
        Ok(Some(Threader::new(self.ports).find(c).await?.item))
    }

    /// Whether message `mid` arrived at most [`REPLY_MAX_AGE`] before event `e`: a
    /// message recorded long after it arrived (a history import) is old news.
    async fn fresh(&self, mid: &str, e: &Event) -> anyhow::Result<bool> {
        let Some(msg) = self.ports.table.get(&crate::keys::message(mid)).await? else { return Ok(false) };
        let arrived = crate::reports::message_time(&msg).map(|t| json!(t));
        Ok(Self::recent(e, arrived.as_ref()))
    }

    /// Whether `when` (RFC 3339 or Unix seconds) is at most [`REPLY_MAX_AGE`] before
    /// event `e`; an unknown time counts as recent.
    fn recent(e: &Event, when: Option<&Value>) -> bool {
        let at =
            DateTime::parse_from_rfc3339(&e.at).map(|t| t.with_timezone(&Utc)).unwrap_or_else(|_| Utc::now());
        let when = match when {
            Some(Value::String(t)) => DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc)),
            Some(v) => v.as_i64().and_then(|t| DateTime::from_timestamp(t, 0)),
            None => None,
        };
        when.is_none_or(|t| at - t <= REPLY_MAX_AGE)
    }

    async fn notify_one(&self, ws: &Workspace, e: &Event) -> anyhow::Result<()> {
        for (to, reason) in self.recipients(ws, e).await? {
            let Some(user) = ws.user(&to) else { continue };
            if setting(user, reason) != NotifyBy::Email {
                continue;
            }
            let key = keys::notified_key(&e.id, &to);
            if self.ports.table.get(&key).await?.is_some() {
                continue;
            }
            let n = self.compose(e, &to, reason).await?;
            self.notifier.send(&n).await?;
            let mut item = key.item();
            item.insert("reason".into(), json!(reason));
            item.insert("at".into(), json!(self.ports.clock.now().to_rfc3339()));
            match self.ports.table.put(item, Some(Cond::NotExists)).await {
                Ok(()) | Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e.into()),
            }
            tracing::info!(to = %to, reason, event = %e.id, "notification sent");
        }
        Ok(())
    }

    async fn compose(&self, e: &Event, to: &str, reason: &'static str) -> anyhow::Result<Notification> {
        if reason == "email_log_alert" {
            return Ok(log_alert_email(e, to));
        }
        if reason == "reconnect_required" {
            let inbox = e.inbox.clone().unwrap_or_default();
            let why =
                e.data.get("value").and_then(Value::as_str).unwrap_or("the provider refused the credentials");
            let text = format!(
                "{inbox} stopped syncing: {why}\n\nNo mail reaches Mailroom from it until it is connected again \
                 (Settings, the inbox, Reconnect; or `mailroom inbox connect`).\n\n\
                 You get this email because of your notification settings in Mailroom.\n"
            );
            return Ok(Notification {
                to: to.to_string(),
                reason,
                subject: format!("[Mailroom] Reconnect {inbox}"),
                text,
                event_id: e.id.clone(),
            });
        }
        let conv = self.conversation(e).await?;
        let subject = conv.as_ref().and_then(|c| s(c, "subject")).unwrap_or_else(|| "(no subject)".into());
        let inbox = conv.as_ref().and_then(|c| s(c, "inbox")).unwrap_or_default();
        let id = conv.as_ref().and_then(|c| s(c, "id")).unwrap_or_default();
        let d = |k: &str| e.data.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let (title, line) = match reason {
            "assigned" => ("Assigned to you", "This conversation was assigned to you.".to_string()),
            "customer_reply" => {
                ("Customer replied", format!("{} wrote in a conversation assigned to you.", d("from")))
            }
            "mention" => ("You were mentioned", format!("{} mentioned you in a comment.", d("author"))),
            _ => ("SLA breached", "This conversation missed its SLA target.".to_string()),
        };
        let text = format!(
            "{line}\n\nSubject: {subject}\nInbox: {inbox}\nConversation: {id}\n\n\
             You get this email because of your notification settings in Mailroom.\n"
        );
        Ok(Notification {
            to: to.to_string(),
            reason,
            subject: format!("[Mailroom] {title}: {subject}"),
            text,
            event_id: e.id.clone(),
        })
    }
}

/// The email of an `email_log_alert` event (`reports::log_alert`).
fn log_alert_email(e: &Event, to: &str) -> Notification {
    let inbox = e.inbox.clone().unwrap_or_default();
    let n = |k: &str, f: &str| e.data[k][f].as_i64().unwrap_or(0);
    let day = e.data["day"].as_str().unwrap_or_default();
    let pct = |k: &str| {
        let m = n(k, "messages");
        if m > 0 { format!("{:.0}%", 100.0 * n(k, "logged") as f64 / m as f64) } else { "-".into() }
    };
    let (title, line) = if e.data["kind"] == "stopped" {
        (
            format!("{inbox} received no mail on {day}"),
            format!(
                "{inbox} received no mail on {day}, after {} messages in the seven days before. \
                 Is it still connected, and does its mail still reach it?",
                n("baseline", "messages")
            ),
        )
    } else {
        (
            format!("{inbox} logged {} of its mail on {day}", pct("day_figures")),
            format!(
                "On {day}, {} of {} messages of {inbox} were logged on the CRM ({}), against {} in the seven \
                 days before. The email log confirmation report says why each one was not.",
                n("day_figures", "logged"),
                n("day_figures", "messages"),
                pct("day_figures"),
                pct("baseline")
            ),
        )
    };
    Notification {
        to: to.to_string(),
        reason: "email_log_alert",
        subject: format!("[Mailroom] Email log: {title}"),
        text: format!("{line}\n\nYou get this email because of your notification settings in Mailroom.\n"),
        event_id: e.id.clone(),
    }
}

/// The workspace's admins: who hears of what has no one else.
fn admins(ws: &Workspace) -> Vec<String> {
    ws.users
        .iter()
        .filter(|u| u.role == mailroom_core::workspace::Role::Admin)
        .map(|u| u.email.clone())
        .collect()
}

fn setting(u: &User, reason: &str) -> NotifyBy {
    let n = &u.notifications;
    match reason {
        "assigned" => n.assigned,
        "customer_reply" => n.customer_reply,
        "mention" => n.mention,
        // Both are the health of an inbox.
        "reconnect_required" | "email_log_alert" => n.reconnect_required,
        _ => n.sla_breach,
    }
}

#[async_trait]
impl Sink for NotifySink<'_> {
    fn cursor_name(&self) -> String {
        "notify".into()
    }

    async fn deliver(&self, events: &[Event]) -> (usize, Option<anyhow::Error>) {
        let ws = match crate::workspace::load(self.ports).await {
            Ok(ws) => ws.unwrap_or_default(),
            Err(e) => return (0, Some(e)),
        };
        for (i, e) in events.iter().enumerate() {
            if let Err(err) = self.notify_one(&ws, e).await {
                return (i, Some(err.context(format!("notifications of event {} ({})", e.id, e.kind))));
            }
        }
        (events.len(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notification_emails_are_machine_mail() {
        let n = Notification {
            to: "maria@acme.example".into(),
            reason: "assigned",
            subject: "[Mailroom] Assigned to you: Help".into(),
            text: "This conversation was assigned to you.\n".into(),
            event_id: "evt_1".into(),
        };
        let raw = build_email("mailroom@acme.example", &n).unwrap().formatted();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("Auto-Submitted: auto-generated"), "{text}");
        assert!(text.contains("X-Mailroom-Notification: assigned"), "{text}");
        let understood = mailroom_core::understand(&raw).unwrap();
        assert_eq!(understood.message.kind, mailroom_core::classify::Kind::AutoReply);
    }
}
