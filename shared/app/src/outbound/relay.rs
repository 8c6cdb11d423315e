//! The relay: the feed's webhook and EventBridge listeners, and the run that drives every
//! listener (webhooks, EventBridge, notifications) once (`mailroom serve` every few
//! seconds, the events function every minute). See docs/events.md.

use crate::feed::{Event, FollowOutcome, Sink, follow};
use crate::runtime::ports::Ports;
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mailroom_store::aws::{EventBridgeBus, SesSender};
use mailroom_store::{BusEvent, EventBus};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The key webhook consumers verify `X-Mailroom-Signature` with: derived from the
/// workspace's secret key (`mailroom events secret` prints it).
pub fn webhook_key(ports: &Ports) -> String {
    ports.signer.sign("event-webhook-key", "v1")
}

/// `sha256=<hex HMAC-SHA256(webhook key, body)>`.
pub fn webhook_signature(key: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs each event to one URL (locally; `MAILROOM_EVENT_WEBHOOKS`).
pub struct WebhookSink {
    pub url: String,
    pub key: String,
    pub http: reqwest::Client,
}

impl WebhookSink {
    pub fn new(url: &str, key: String) -> anyhow::Result<WebhookSink> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .context("building the webhook HTTP client")?;
        Ok(WebhookSink { url: url.to_string(), key, http })
    }
}

#[async_trait]
impl Sink for WebhookSink {
    fn cursor_name(&self) -> String {
        format!("webhook#{}", &hex::encode(Sha256::digest(self.url.as_bytes()))[..16])
    }

    async fn deliver(&self, events: &[Event]) -> (usize, Option<anyhow::Error>) {
        for (i, e) in events.iter().enumerate() {
            let body = match serde_json::to_vec(e) {
                Ok(b) => b,
                Err(err) => return (i, Some(err.into())),
            };
            let res = self
                .http
                .post(&self.url)
                .header("content-type", "application/json")
                .header("x-mailroom-event-id", &e.id)
                .header("x-mailroom-signature", webhook_signature(&self.key, &body))
                .body(body)
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => return (i, Some(anyhow::anyhow!("webhook {} answered {}", self.url, r.status()))),
                Err(err) => return (i, Some(anyhow::anyhow!("webhook {}: {err}", self.url))),
            }
        }
        (events.len(), None)
    }
}

/// Publishes to an EventBridge bus (in AWS; `MAILROOM_EVENT_BUS`): Source `mailroom`,
/// DetailType the event's type, Detail the event.
/// The feed published to an event bus (EventBridge in AWS: `source` is
/// [`EVENT_SOURCE`], the detail type the event's type, the detail the event).
pub struct BusSink {
    pub bus: Arc<dyn EventBus>,
}

pub const EVENT_SOURCE: &str = "mailroom";

#[async_trait]
impl Sink for BusSink {
    fn cursor_name(&self) -> String {
        self.bus.name().into()
    }

    async fn deliver(&self, events: &[Event]) -> (usize, Option<anyhow::Error>) {
        let mut entries = Vec::with_capacity(events.len());
        for e in events {
            let detail = match serde_json::to_string(e) {
                Ok(d) => d,
                Err(err) => return (0, Some(err.into())),
            };
            let time = DateTime::parse_from_rfc3339(&e.at).ok().map(|t| t.with_timezone(&Utc));
            entries.push(BusEvent { source: EVENT_SOURCE.into(), detail_type: e.kind.clone(), detail, time });
        }
        let (n, err) = self.bus.publish(&entries).await;
        (
            n,
            err.map(|e| {
                anyhow::anyhow!("event {}: {e}", events.get(n).map(|x| x.id.as_str()).unwrap_or("?"))
            }),
        )
    }
}

/// The webhook sinks of `MAILROOM_EVENT_WEBHOOKS` (comma-separated URLs).
pub fn webhook_sinks_from_env(ports: &Ports) -> anyhow::Result<Vec<WebhookSink>> {
    let Ok(list) = std::env::var("MAILROOM_EVENT_WEBHOOKS") else { return Ok(Vec::new()) };
    let key = webhook_key(ports);
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                anyhow::bail!("MAILROOM_EVENT_WEBHOOKS: {u:?} is not an http(s) URL");
            }
            WebhookSink::new(u, key.clone())
        })
        .collect()
}

/// Runs every consumer once; a failing one is logged and does not stop the others.
pub async fn relay(ports: &Ports, sinks: &[&dyn Sink], now: DateTime<Utc>) -> Vec<FollowOutcome> {
    let mut outs = Vec::new();
    for sink in sinks {
        match follow(ports, *sink, now).await {
            Ok(o) => {
                if let Some(e) = &o.error {
                    tracing::warn!(consumer = %o.consumer, delivered = o.delivered, error = %e, "event delivery stopped");
                }
                outs.push(o);
            }
            Err(e) => {
                tracing::error!(consumer = %sink.cursor_name(), error = %format!("{e:#}"), "event relay failed");
                outs.push(FollowOutcome {
                    consumer: sink.cursor_name(),
                    delivered: 0,
                    error: Some(format!("{e:#}")),
                });
            }
        }
    }
    outs
}

/// The consumers of one process: the webhooks or EventBridge, and the notifications when
/// a notifier is configured. `mailroom serve` runs it every few seconds, the `events`
/// function every minute.
pub struct Relay {
    pub sinks: Vec<Box<dyn Sink>>,
    pub notifier: Option<Box<dyn crate::outbound::notify::Notifier>>,
}

impl Relay {
    /// Local: `MAILROOM_EVENT_WEBHOOKS`, `MAILROOM_NOTIFY_SMTP_URL` + `MAILROOM_NOTIFY_FROM`.
    pub fn local_from_env(ports: &Ports) -> anyhow::Result<Relay> {
        let sinks =
            webhook_sinks_from_env(ports)?.into_iter().map(|w| Box::new(w) as Box<dyn Sink>).collect();
        let notifier = crate::outbound::notify::smtp_from_env()?
            .map(|n| Box::new(n) as Box<dyn crate::outbound::notify::Notifier>);
        Ok(Relay { sinks, notifier })
    }

    /// AWS: `MAILROOM_EVENT_BUS` (EventBridge) and `MAILROOM_NOTIFY_FROM` (SES).
    pub fn aws_from_env(conf: &aws_config::SdkConfig) -> Relay {
        let env = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if let Some(bus) = env("MAILROOM_EVENT_BUS") {
            let bus = EventBridgeBus { client: aws_sdk_eventbridge::Client::new(conf), bus };
            sinks.push(Box::new(BusSink { bus: Arc::new(bus) }));
        }
        let notifier = env("MAILROOM_NOTIFY_FROM").map(|from| {
            let sender = Arc::new(SesSender { client: aws_sdk_sesv2::Client::new(conf) });
            Box::new(crate::outbound::notify::MailNotifier { from, sender })
                as Box<dyn crate::outbound::notify::Notifier>
        });
        Relay { sinks, notifier }
    }

    /// Every sink once, then the daily digests that are due.
    pub async fn run_once(&self, ports: &Ports, now: DateTime<Utc>) -> Vec<FollowOutcome> {
        let notify =
            self.notifier.as_deref().map(|n| crate::outbound::notify::NotifySink { ports, notifier: n });
        let mut all: Vec<&dyn Sink> = self.sinks.iter().map(|s| s.as_ref()).collect();
        if let Some(n) = &notify {
            all.push(n);
        }
        let outs = relay(ports, &all, now).await;
        if let Some(n) = self.notifier.as_deref()
            && let Err(e) = crate::outbound::digest::send_due(ports, n, now).await
        {
            tracing::error!(error = %format!("{e:#}"), "daily digests");
        }
        outs
    }
}
