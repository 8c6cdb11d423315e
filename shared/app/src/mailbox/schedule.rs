//! The connections' schedule (the `scheduler` function every 15 minutes; `mailroom
//! serve` on the same period): renew Gmail watches and Graph subscriptions, queue a
//! fallback sync of every push mailbox (push is lossy: Gmail drops notifications past
//! one a second, Graph drops them when the endpoint is slow), and publish the health
//! gauges. IMAP polling runs on its own schedule (`imap-poll`).

use crate::mailbox::connection::{self, Provider, State};
use crate::mailbox::request::{self as sync, SyncRequest};
use crate::runtime::config::ProvidersConfig;
use crate::runtime::ports::Ports;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConnectionsTick {
    pub at: String,
    pub fallback_syncs: u32,
    /// Gmail watches renewed.
    pub watches_renewed: u32,
    /// Graph subscriptions renewed or recreated.
    pub subscriptions_renewed: u32,
    /// Renewals that failed (each recorded on its connection).
    pub renewals_failed: u32,
    pub connected: u32,
    pub degraded: u32,
    pub reconnect_required: u32,
}

pub async fn connections_tick(
    ports: &Ports,
    cfg: &ProvidersConfig,
    now: DateTime<Utc>,
) -> anyhow::Result<ConnectionsTick> {
    let mut out = ConnectionsTick { at: now.to_rfc3339(), ..Default::default() };
    let g = crate::mailbox::gmail::renew_watch(ports, &cfg.google, now).await?;
    out.watches_renewed = g.renewed;
    out.renewals_failed += g.failed;
    let m = crate::mailbox::graph::renew_subscriptions(ports, &cfg.microsoft, now).await?;
    out.subscriptions_renewed = m.renewed + m.recreated;
    out.renewals_failed += m.failed;
    let f = enqueue_fallback(ports).await?;
    (out.fallback_syncs, out.connected, out.degraded, out.reconnect_required) =
        (f.queued, f.connected, f.degraded, f.reconnect_required);
    // Published on every run, zeros included: the stalled-scheduler alarm watches them.
    let gauge = |name, v: u32| (name, json!(v), "Count");
    crate::runtime::metrics::emf(
        now,
        json!([[]]),
        &[],
        &[gauge("InboxesReconnectRequired", out.reconnect_required), gauge("InboxesDegraded", out.degraded)],
    );
    Ok(out)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fallback {
    pub queued: u32,
    pub connected: u32,
    pub degraded: u32,
    pub reconnect_required: u32,
}

/// Queues a `fallback` sync for every Gmail and Microsoft 365 connection that is not
/// `reconnect_required`, and counts the connections by state.
pub async fn enqueue_fallback(ports: &Ports) -> Result<Fallback, mailroom_store::StoreError> {
    let mut out = Fallback::default();
    for c in connection::list(ports).await? {
        match c.state {
            State::Connected => out.connected += 1,
            State::Degraded => out.degraded += 1,
            State::ReconnectRequired => {
                out.reconnect_required += 1;
                continue;
            }
        }
        if c.provider == Provider::Imap {
            continue;
        }
        let req = SyncRequest {
            inbox: c.inbox.clone(),
            provider: c.provider,
            reason: "fallback".into(),
            hint: json!({}),
        };
        sync::enqueue(ports, &req).await?;
        out.queued += 1;
    }
    Ok(out)
}
