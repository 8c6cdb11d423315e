//! The scheduled side of the reports: SLA breach events from the `sla-due` index, and
//! the gauges published as metrics (the sweep function; every minute in `mailroom serve`).

use super::*;
use crate::keys;
use crate::keys::item_str as s;
use crate::reports::record::{event_put, is_conflict};
use crate::runtime::metrics;
use crate::runtime::ports::Ports;
use chrono::{DateTime, Duration, Utc};
use mailroom_store::{Cond, Query, SkCond, TransactOp, Update};
use serde::Serialize;
use serde_json::{Value, json};

/// The SLA sweep: every conversation whose SLA deadline has passed without the target
/// being met gets one `sla_breached` event (and a log line, and an EMF metric in
/// Lambda). Reads only the conversations that are due, through the `sla-due` index.
/// Returns the conversations newly found in breach.
pub async fn sweep(ports: &Ports, now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
    let upto = format!("{:012}~", now.timestamp());
    let due =
        ports.table.query_all(Query::new(keys::SLA_DUE_INDEX_PK).index("gsi1").sk(SkCond::Le(upto))).await?;
    let mut found = Vec::new();
    for item in due {
        let (Some(conv), Some(sk)) = (s(&item, "conversation"), s(&item, "gsi1sk")) else { continue };
        let due_at: i64 = sk.split('#').next().and_then(|x| x.parse().ok()).unwrap_or_default();
        if item.get("breach_event_for").and_then(Value::as_i64) == Some(due_at) {
            continue;
        }
        let version = item.get("version").and_then(Value::as_i64).unwrap_or(0);
        let ops = vec![
            TransactOp::Update {
                key: keys::conv_owner(&conv),
                actions: vec![Update::Set("breach_event_for".into(), json!(due_at))],
                cond: Some(Cond::Eq("version".into(), json!(version))),
            },
            event_put(&conv, version, "sla_breached", json!(due_at), now),
        ];
        match ports.table.transact_write(ops).await {
            Ok(()) => {
                tracing::warn!(conversation = %conv, due = due_at, "SLA breached");
                metrics::emf(now, json!([[]]), &[], &[("SlaBreached", json!(1), "Count")]);
                found.push(conv);
            }
            // Changed meanwhile (a reply, a close): the next sweep looks again.
            Err(e) if is_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(found)
}

/// What one scheduled run did.
#[derive(Debug, Clone, Serialize)]
pub struct SweepOutcome {
    pub at: String,
    pub breached: Vec<String>,
    pub open: i64,
    pub unassigned: i64,
    pub stale: i64,
    pub sla_due: i64,
    pub sla_breached: i64,
}

/// Days of buckets the scheduled gauges look at.
pub const GAUGE_DAYS: i64 = 90;

/// The scheduled run (the `sweep` function, and every minute in `mailroom serve`): the
/// SLA sweep, the day's email-log alerts (the first run of a day), then the gauges over the last [`GAUGE_DAYS`] days, published as CloudWatch
/// embedded metrics in Lambda.
pub async fn scheduled(ports: &Ports, now: DateTime<Utc>) -> anyhow::Result<SweepOutcome> {
    let breached = sweep(ports, now).await?;
    let ws = crate::workspace::load(ports).await?.unwrap_or_default();
    super::log_alert::check(ports, &ws, now).await?;
    let f = Filter { from: Some((now - Duration::days(GAUGE_DAYS)).date_naive()), ..Filter::default() };
    let r = report(ports, &ws, &f, now).await?;
    let out = SweepOutcome {
        at: now.to_rfc3339(),
        breached,
        open: r.open,
        unassigned: r.unassigned,
        stale: r.stale,
        sla_due: r.sla.all.due,
        sla_breached: r.sla.all.breached,
    };
    let gauge = |name, v: i64| (name, json!(v), "Count");
    let gauges = [
        gauge("OpenConversations", out.open),
        gauge("UnassignedConversations", out.unassigned),
        gauge("StaleConversations", out.stale),
        gauge("SlaDue", out.sla_due),
        gauge("SlaBreachedOpen", out.sla_breached),
    ];
    metrics::emf(now, json!([[]]), &[], &gauges);
    Ok(out)
}
