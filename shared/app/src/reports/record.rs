//! The write side of the reports: a conversation's contribution to the buckets, kept
//! exact under redelivery and any arrival order (see reports/mod.rs).

use super::*;
use crate::feed;
use crate::keys;
use crate::keys::conv_key;
use crate::keys::item_str as s;
use crate::keys::ticket_key;
use crate::runtime::metrics;
use crate::runtime::ports::Ports;
use crate::thread::Threader;
use anyhow::Context;
use chrono::{DateTime, Utc};
use mailroom_core::calendar::Calendar;
use mailroom_core::workspace::{Workspace, parse_duration};
use mailroom_store::{Cond, Item, Key, StoreError, TransactOp, Update};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A conversation's contribution and figures from its messages and its current item.
pub(super) fn conversation_contrib(
    ws: &Workspace,
    conv: &Item,
    ticket: Option<&Item>,
    msgs: &[MsgFact],
) -> (Contrib, ConvFigures) {
    let mut c = Contrib::new();
    let mut fig = ConvFigures::default();
    for m in msgs {
        message_counts(&mut c, conv, m, ws.reports.shards());
    }
    let mut normal: Vec<&MsgFact> = msgs.iter().filter(|m| m.normal).collect();
    normal.sort_by_key(|m| (m.t, m.out));
    let Some(first) = normal.first() else { return (c, fig) };
    let open_t = first.t;
    fig.opened_at = Some(open_t);
    let inbox = s(conv, "inbox").unwrap_or_default().to_lowercase();
    let id = s(conv, "id").unwrap_or_default();
    let team = s(conv, "team").unwrap_or_else(|| NONE.into());
    let assignee = s(conv, "assignee");
    let closed = s(conv, "status").as_deref() == Some("closed");
    let closed_at = ts(conv.get("closed_at")).filter(|_| closed);
    // A conversation counts in the channel of its first message.
    let ch = first.channel.as_str();
    let place = Place { inbox: &inbox, channel: ch, conv: &id, shards: ws.reports.shards() };
    let b_open = bucket(open_t, &place);
    add(&mut c, &b_open, "opened", 1);
    add(&mut c, &b_open, format!("opened|t:{team}"), 1);
    if let Some(a) = &assignee {
        add(&mut c, &b_open, format!("assigned|a:{a}"), 1);
    }
    add(&mut c, &b_open, if closed { "closed_now" } else { "open_now" }, 1);
    if !closed && assignee.is_none() {
        add(&mut c, &b_open, "unassigned", 1);
    }
    if ticket.is_some() {
        add(&mut c, &b_open, "tickets", 1);
    }
    if let Some(at) = closed_at {
        let b = bucket(at, &place);
        add(&mut c, &b, "closed", 1);
        if let Some(by) = s(conv, "closed_by").or(assignee.clone()) {
            add(&mut c, &b, format!("closed|a:{by}"), 1);
        }
    }

    // First response: for a conversation a customer started, from its first message to
    // the first outbound message after it.
    let report_cal = ws.calendar(ws.reports.calendar.as_deref());
    let customer_started = !first.out;
    let response = if customer_started { normal.iter().find(|m| m.out && m.t >= open_t) } else { None };
    if let Some(r) = response {
        let secs = r.t - open_t;
        let bsecs = business(&report_cal, open_t, r.t);
        add_duration(&mut c, "frt", r.t, &place, secs, bsecs);
        fig.first_response_s = Some(secs);
        fig.first_response_business_s = Some(bsecs);
    }

    // Wait time: every reply of ours to a waiting customer, from the first of their
    // messages since our previous reply (the first response included).
    let mut waiting: Option<i64> = None;
    for m in &normal {
        match (m.out, waiting) {
            (false, None) => waiting = Some(m.t),
            (true, Some(w)) => {
                let secs = m.t - w;
                let bsecs = business(&report_cal, w, m.t);
                add_duration(&mut c, "wait", m.t, &place, secs, bsecs);
                waiting = None;
            }
            _ => {}
        }
    }

    // Waiting for us: open, and the last normal message is the customer's.
    if !closed && normal.last().is_some_and(|m| !m.out) {
        let last_out = normal.iter().rposition(|m| m.out);
        let since = normal[last_out.map_or(0, |i| i + 1)..].first().map(|m| m.t).unwrap_or(open_t);
        add(&mut c, &b_open, format!("wait@{}", ceil_hour(since)), 1);
        fig.waiting_since = Some(since);
    }

    // SLA.
    let priority = s(conv, "priority");
    if let Some(p) = ws.sla_policy(&inbox, priority.as_deref()) {
        let cal = ws.calendar(p.calendar.as_deref());
        fig.sla_policy = Some(p.id.clone());
        // Per target: met, breached, or pending until a due instant (or paused).
        let mut states: Vec<(&str, Target)> = Vec::new();
        if let Some(target) = p.first_response.as_deref().and_then(|d| parse_duration(d).ok())
            && customer_started
        {
            let due = cal.add_business_seconds(at(open_t), target).map(|d| d.timestamp());
            // A conversation closed without a reply needs none.
            let done = response.map(|r| r.t).or(closed_at);
            states.push(("slafr", Target::judge(done, due, false)));
        }
        if let Some(target) = p.time_to_close.as_deref().and_then(|d| parse_duration(d).ok()) {
            // The clock stops while the ticket waits in a pause stage: its deadline moves
            // by the business time spent there.
            let st = match close_clock(&cal, open_t, target, &pauses(ticket, &p.pause_stages)) {
                Clock::Due(due) => Target::judge(closed_at, due, false),
                Clock::Paused => Target::judge(closed_at, None, true),
            };
            states.push(("slattc", st));
        }
        for (name, st) in &states {
            match st {
                Target::Met => add(&mut c, &b_open, format!("{name}_met"), 1),
                Target::Breached => add(&mut c, &b_open, format!("{name}_breached"), 1),
                Target::Due(t) => add(&mut c, &b_open, format!("{name}_due@{}", ceil_hour(*t)), 1),
                Target::Paused => add(&mut c, &b_open, format!("{name}_paused"), 1),
            }
        }
        // The conversation: breached when a target is, met when every target is, else
        // due at its earliest pending target (or paused).
        let breached = states.iter().any(|s| s.1 == Target::Breached);
        let pending =
            states.iter().filter_map(|s| if let Target::Due(t) = s.1 { Some(t) } else { None }).min();
        let status = if breached {
            add(&mut c, &b_open, "sla_breached", 1);
            "breached"
        } else if let Some(due) = pending {
            add(&mut c, &b_open, format!("sla_due@{}", ceil_hour(due)), 1);
            fig.sla_due_at = Some(due);
            "due"
        } else if states.iter().any(|s| s.1 == Target::Paused) {
            add(&mut c, &b_open, "sla_paused", 1);
            "paused"
        } else if states.is_empty() {
            "none"
        } else {
            add(&mut c, &b_open, "sla_met", 1);
            "met"
        };
        fig.sla = Some(status.into());
    }
    (c, fig)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Met,
    Breached,
    Due(i64),
    Paused,
}

impl Target {
    /// A target done at `done` (if it is), due at `due` (`None`: the calendar never
    /// opens, so it never falls due).
    fn judge(done: Option<i64>, due: Option<i64>, paused: bool) -> Target {
        match (done, due) {
            (Some(d), Some(due)) if d > due => Target::Breached,
            (Some(_), _) => Target::Met,
            (None, _) if paused => Target::Paused,
            (None, Some(due)) => Target::Due(due),
            (None, None) => Target::Paused,
        }
    }
}

/// The intervals a ticket spent in one of `pause_stages`, oldest first: (entered, left or
/// `None` while it is still there), epoch seconds. Read from the ticket's `stage_log`
/// (`[[stage, RFC 3339], ...]`, one entry per stage it entered); a ticket without one
/// (written before the log was kept) counts its current stage from its last change.
pub(super) fn pauses(ticket: Option<&Item>, pause_stages: &[String]) -> Vec<(i64, Option<i64>)> {
    let Some(t) = ticket else { return vec![] };
    let mut log: Vec<(String, i64)> = t
        .get("stage_log")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e.get(0)?.as_str()?.to_string(), ts(e.get(1))?)))
        .collect();
    if log.is_empty()
        && let Some(stage) = s(t, "stage")
    {
        // Since its last change; with no time at all, since the beginning.
        log.push((stage, ts(t.get("stage_changed_at")).or(ts(t.get("created_at"))).unwrap_or(0)));
    }
    log.sort_by_key(|e| e.1);
    let mut out: Vec<(i64, Option<i64>)> = Vec::new();
    for (stage, when) in log {
        let paused = pause_stages.contains(&stage);
        match out.last_mut() {
            Some((_, end @ None)) if !paused => *end = Some(when),
            Some((_, None)) => {}
            _ if paused => out.push((when, None)),
            _ => {}
        }
    }
    out
}

/// Where a time-to-close clock stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Clock {
    /// Due at this instant (`None`: the calendar never opens).
    Due(Option<i64>),
    /// Stopped now, in a pause that began before the target was reached.
    Paused,
}

/// The instant `target` business seconds of running clock have passed since `open`, the
/// clock stopped during `pauses`.
pub(super) fn close_clock(cal: &Calendar, open: i64, target: i64, pauses: &[(i64, Option<i64>)]) -> Clock {
    let (mut cur, mut left) = (open, target);
    for &(start, end) in pauses {
        if start > cur {
            let run = business(cal, cur, start);
            if run >= left {
                break;
            }
            left -= run;
        }
        match end {
            Some(e) => cur = cur.max(e),
            None => return Clock::Paused,
        }
    }
    Clock::Due(cal.add_business_seconds(at(cur), left).map(|d| d.timestamp()))
}

pub(super) fn at(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

/// Instants stored in buckets are rounded up to the hour, so a bucket holds at most one
/// attribute per hour whatever the number of conversations (docs/metrics.md).
pub(super) fn ceil_hour(t: i64) -> i64 {
    (t + 3599).div_euclid(3600) * 3600
}

pub(super) fn business(cal: &Calendar, from: i64, to: i64) -> i64 {
    cal.business_seconds(at(from), at(to))
}

/// A message's counts, in its arrival hour.
pub(super) fn message_counts(c: &mut Contrib, conv: &Item, f: &MsgFact, shards: u8) {
    let inbox = s(conv, "inbox").unwrap_or_default().to_lowercase();
    let id = s(conv, "id").unwrap_or_default();
    let b = bucket(f.t, &Place { inbox: &inbox, channel: &f.channel, conv: &id, shards });
    if f.normal {
        add(c, &b, if f.out { "msg_out" } else { "msg_in" }, 1);
        if let Some(a) = f.agent.as_ref().filter(|_| f.out) {
            add(c, &b, format!("msg_out|a:{a}"), 1);
        }
    } else {
        add(c, &b, "msg_noise", 1);
    }
    // The email-log confirmation counts every message, noise included.
    if f.logged {
        add(c, &b, "logged", 1);
    } else {
        add(c, &b, format!("unlogged|{}", f.reason.as_deref().unwrap_or(UNKNOWN_REASON)), 1);
    }
}

/// The stored form of a contribution: `{"{pk}\n{sk}": {attr: n}}`, each bucket key once
/// (the state item's size is what DynamoDB bills its writes by).
pub(super) fn encode(c: &Contrib) -> Value {
    Value::Object(c.iter().map(|((pk, sk), attrs)| (format!("{pk}\n{sk}"), json!(attrs))).collect())
}
pub(super) fn decode(v: Option<&Value>) -> Contrib {
    let mut c = Contrib::new();
    for (k, attrs) in v.and_then(Value::as_object).into_iter().flatten() {
        let Some((pk, sk)) = k.split_once('\n') else { continue };
        for (a, n) in attrs.as_object().into_iter().flatten() {
            if let Some(n) = n.as_i64() {
                add(&mut c, &(pk.into(), sk.into()), a.clone(), n);
            }
        }
    }
    c
}

/// Adds `sign` times `from` to `into`.
pub(super) fn merge(into: &mut Contrib, from: &Contrib, sign: i64) {
    for (k, attrs) in from {
        for (a, n) in attrs {
            add(into, k, a.clone(), sign * n);
        }
    }
}

/// new - old, without zero entries.
pub(super) fn delta(old: &Contrib, new: &Contrib) -> Contrib {
    let mut d = new.clone();
    merge(&mut d, old, -1);
    d.retain(|_, attrs| {
        attrs.retain(|_, n| *n != 0);
        !attrs.is_empty()
    });
    d
}

/// The day list's entries of the partitions `c` writes (`keys::report_day_entry`), each
/// once.
pub(super) fn days_of(c: &Contrib) -> Vec<String> {
    let mut v: Vec<String> =
        c.keys().filter_map(|(pk, _)| keys::report_day_entry(pk).map(str::to_string)).collect();
    v.sort();
    v.dedup();
    v
}

/// The bucket writes of a delta: one update per bucket, dimensions set once.
pub(super) fn bucket_ops(d: &Contrib, ops: &mut Vec<TransactOp>) {
    for ((pk, sk), attrs) in d {
        let mut parts = sk.split(SEP);
        let hour = parts.next().unwrap_or("00");
        let day = pk.strip_prefix("rpt#").unwrap_or_default().split('#').next().unwrap_or_default();
        let dims = ["inbox", "channel"];
        let mut actions = vec![Update::SetIfAbsent(
            "hour".into(),
            json!(format!("{day}T{}", hour.trim_start_matches('h'))),
        )];
        for (name, v) in dims.iter().zip(parts) {
            actions.push(Update::SetIfAbsent((*name).into(), json!(v)));
        }
        actions.extend(attrs.iter().map(|(a, n)| Update::Add(a.clone(), *n)));
        ops.push(TransactOp::Update { key: Key::new(pk.clone(), sk.clone()), actions, cond: None });
    }
}

pub(super) fn version_cond(owner: Option<&Item>) -> Cond {
    match owner.and_then(|o| o.get("version")) {
        Some(v) => Cond::Eq("version".into(), v.clone()),
        None => Cond::AttrNotExists("version".into()),
    }
}

pub(super) fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::ConditionFailed | StoreError::TransactionCanceled { .. })
}

/// Writes a conversation's new contribution `new` (with `extra` attributes) to its
/// state item and the difference `d` to the buckets, with `more` (events, merged states),
/// all or nothing. False when another writer changed the state first.
pub(super) async fn apply(
    ports: &Ports,
    key: &Key,
    owner: Option<&Item>,
    d: &Contrib,
    new: &Contrib,
    extra: Vec<Update>,
    mut more: Vec<TransactOp>,
) -> anyhow::Result<bool> {
    let changed_extra = extra.iter().any(|u| match u {
        Update::Set(k, v) => owner.and_then(|o| o.get(k)) != Some(v),
        _ => true,
    });
    if d.is_empty() && !changed_extra && more.is_empty() && owner.is_some() {
        return Ok(true);
    }
    let mut actions = vec![Update::Set("contrib".into(), encode(new)), Update::Add("version".into(), 1)];
    actions.extend(extra);
    let mut ops = vec![TransactOp::Update { key: key.clone(), actions, cond: Some(version_cond(owner)) }];
    ops.append(&mut more);
    bucket_ops(d, &mut ops);
    if ops.len() > 100 {
        anyhow::bail!("report update of {} needs {} writes (limit 100)", key.pk, ops.len());
    }
    match ports.table.transact_write(ops).await {
        Ok(()) => Ok(true),
        Err(e) if is_conflict(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Stands for the reason of a message recorded before reasons were kept.
pub const UNKNOWN_REASON: &str = "unknown";

/// The fact a recorded message item gives; `logged`: whether the route stage logged it,
/// and if not, why.
pub fn fact(ws: &Workspace, msg: &Item, logged: (bool, Option<String>)) -> Option<MsgFact> {
    let t = message_time(msg)?;
    let out = s(msg, "direction").as_deref() == Some("outbound");
    // A reply sent through Mailroom names its author; otherwise the From, when it is a user.
    let from = s(msg, "author").or_else(|| s(msg, "from")).map(|f| f.to_lowercase());
    let agent = from.filter(|f| out && ws.users.iter().any(|u| u.email.eq_ignore_ascii_case(f)));
    let channel = s(msg, "channel").unwrap_or_else(email_channel);
    Some(MsgFact {
        t,
        out,
        normal: s(msg, "kind").as_deref().unwrap_or("normal") == "normal",
        agent,
        logged: logged.0,
        reason: logged.1.filter(|_| !logged.0),
        channel,
    })
}

/// Records one processed message in its conversation's figures. Idempotent; call it
/// after routing and ticket automation so they are included. `logged`: whether the route
/// stage logged it on a contact, and if not why; `None` keeps what an earlier delivery
/// recorded.
pub async fn record_message(
    ports: &Ports,
    ws: &Workspace,
    msg: &Item,
    logged: Option<(bool, Option<String>)>,
) -> anyhow::Result<()> {
    let mid = s(msg, "message_id").context("message item has no message_id")?;
    let keep_logged = logged.is_none();
    let Some(f) = fact(ws, msg, logged.unwrap_or((false, None))) else {
        tracing::warn!(message_id = %mid, "message has no date: left out of reports");
        return Ok(());
    };
    let conv_id = s(msg, "conversation").context("message has no conversation")?;
    refresh(ports, ws, &conv_id, Some(NewMessage { id: &mid, fact: f, keep_logged })).await
}

/// Records a message's fact again with a new logging outcome, without feed events (a
/// replay of history, `crate::replay`).
pub async fn rerecord_message_quietly(
    ports: &Ports,
    ws: &Workspace,
    msg: &Item,
    logged: (bool, Option<String>),
) -> anyhow::Result<()> {
    let mid = s(msg, "message_id").context("message item has no message_id")?;
    let Some(f) = fact(ws, msg, logged) else { return Ok(()) };
    let conv_id = s(msg, "conversation").context("message has no conversation")?;
    refresh_with(ports, ws, &conv_id, Some(NewMessage { id: &mid, fact: f, keep_logged: false }), false).await
}

/// A message to add to a conversation's facts.
pub struct NewMessage<'a> {
    pub id: &'a str,
    pub fact: MsgFact,
    /// Keep the `logged` flag (and reason) an earlier delivery recorded.
    pub keep_logged: bool,
}

/// Recomputes a conversation's figures (after a message, or a change such as a close),
/// adding `new_msg` to its facts.
pub async fn refresh(
    ports: &Ports,
    ws: &Workspace,
    conv: &str,
    new_msg: Option<NewMessage<'_>>,
) -> anyhow::Result<()> {
    refresh_with(ports, ws, conv, new_msg, true).await
}

/// Recomputes a conversation's figures without writing report events to the feed, so no
/// notification or webhook goes out: for a replay of history (`crate::replay`).
pub async fn refresh_quietly(ports: &Ports, ws: &Workspace, conv: &str) -> anyhow::Result<()> {
    refresh_with(ports, ws, conv, None, false).await
}

async fn refresh_with(
    ports: &Ports,
    ws: &Workspace,
    conv: &str,
    new_msg: Option<NewMessage<'_>>,
    announce: bool,
) -> anyhow::Result<()> {
    for _ in 0..20 {
        let root = Threader::new(ports).find(conv).await?;
        // A verification's conversation (crate::verify) counts in no report.
        if root.item.get("test").is_some() {
            return Ok(());
        }
        let key = keys::conv_owner(&root.id);
        let owner = ports.table.get(&key).await?;
        let mut msgs: BTreeMap<String, MsgFact> = owner
            .as_ref()
            .and_then(|o| o.get("msgs"))
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default();
        let mut absorbed: Vec<String> = owner
            .as_ref()
            .and_then(|o| o.get("absorbed"))
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default();
        // What the buckets hold for this conversation now: its own contribution, and
        // below those of the conversations merged into it (their facts are taken over,
        // their counts retracted).
        let mut counted = decode(owner.as_ref().and_then(|o| o.get("contrib")));
        let mut more = Vec::new();
        let merged_of = |item: &Item| -> Vec<String> {
            item.get("merged").and_then(|m| serde_json::from_value(m.clone()).ok()).unwrap_or_default()
        };
        // Every conversation merged into this one, also through conversations merged
        // before they were merged here.
        let mut todo = merged_of(&root.item);
        let mut seen = Vec::new();
        while let Some(id) = todo.pop() {
            if seen.contains(&id) || seen.len() > 256 {
                continue;
            }
            if let Some(c) = ports.table.get(&conv_key(&id)).await? {
                todo.extend(merged_of(&c));
            }
            seen.push(id);
        }
        let fresh: Vec<String> = seen.into_iter().filter(|id| !absorbed.contains(id)).collect();
        for id in &fresh {
            let k = keys::conv_owner(id);
            if let Some(other) = ports.table.get(&k).await? {
                let theirs: BTreeMap<String, MsgFact> = other
                    .get("msgs")
                    .and_then(|m| serde_json::from_value(m.clone()).ok())
                    .unwrap_or_default();
                msgs.extend(theirs);
                merge(&mut counted, &decode(other.get("contrib")), 1);
                more.push(TransactOp::Delete { key: k, cond: Some(version_cond(Some(&other))) });
            }
            absorbed.push(id.clone());
        }
        if let Some(n) = &new_msg
            && !msgs.contains_key(n.id)
            && msgs.len() >= MAX_FACTS
        {
            return record_overflow(ports, &root.item, &root.id, n, ws.reports.shards()).await;
        }
        if let Some(n) = &new_msg {
            let mut f = n.fact.clone();
            if n.keep_logged {
                f.logged = msgs.get(n.id).is_some_and(|m| m.logged);
                f.reason = msgs.get(n.id).and_then(|m| m.reason.clone());
            }
            msgs.insert(n.id.to_string(), f);
        }
        let ticket = ports.table.get(&ticket_key(&root.id)).await?;
        let facts: Vec<MsgFact> = msgs.values().cloned().collect();
        let (contrib, fig) = conversation_contrib(ws, &root.item, ticket.as_ref(), &facts);
        let mut extra = vec![
            Update::Set("msgs".into(), serde_json::to_value(&msgs)?),
            Update::Set("absorbed".into(), json!(absorbed)),
            Update::Set("figures".into(), serde_json::to_value(&fig)?),
            Update::Set("conversation".into(), json!(root.id)),
        ];
        // Conversations whose SLA falls due, for the sweep.
        match fig.sla_due_at {
            Some(due) => {
                extra.push(Update::Set("gsi1pk".into(), json!(keys::SLA_DUE_INDEX_PK)));
                extra.push(Update::Set("gsi1sk".into(), json!(format!("{due:012}#{}", root.id))));
            }
            None if owner.as_ref().is_some_and(|o| o.contains_key("gsi1pk")) => {
                extra.push(Update::Remove("gsi1pk".into()));
                extra.push(Update::Remove("gsi1sk".into()));
            }
            None => {}
        }
        // What a conversation list shows (waiting since, SLA) goes on the conversation
        // item too, when it changes: a list then reads the index alone, never this state
        // (which holds every message's facts).
        let shown = [
            ("waiting_since", json!(fig.waiting_since)),
            ("sla", json!(fig.sla)),
            ("sla_due_at", json!(fig.sla_due_at)),
        ];
        let stale: Vec<Update> = shown
            .into_iter()
            .filter(|(k, v)| {
                root.item.get(*k).unwrap_or(&Value::Null) != v || !root.item.contains_key("figures_v")
            })
            .map(|(k, v)| Update::Set(k.into(), v))
            .collect();
        if !stale.is_empty() {
            let mut actions = stale;
            actions.push(Update::Set("figures_v".into(), json!(1)));
            more.push(TransactOp::Update {
                key: conv_key(&root.id),
                actions,
                cond: Some(Cond::AttrNotExists("parent".into())),
            });
        }
        let d = delta(&counted, &contrib);
        // Days that get their first buckets, for the report's day list.
        let known = days_of(&counted);
        let new_days = day_markers(ports, days_of(&contrib).into_iter().filter(|x| !known.contains(x)));
        more.extend(new_days.iter().map(|d| day_marker(d)));
        let version = owner.as_ref().and_then(|o| o.get("version")).and_then(Value::as_i64).unwrap_or(0) + 1;
        // A breach the sweep already announced is not announced again when the late
        // reply (or close) makes it final.
        let announced = owner.as_ref().is_some_and(|o| o.contains_key("breach_event_for"));
        let evs: Vec<_> =
            events(&d).into_iter().filter(|e| announce && !(announced && e.0 == "sla_breached")).collect();
        for (kind, value) in &evs {
            more.push(event_put(&root.id, version, kind, value.clone(), ports.clock.now()));
        }
        if apply(ports, &key, owner.as_ref(), &d, &contrib, extra, more).await? {
            ports.written.note(new_days.iter().map(|d| day_key(d)));
            emit_metrics(&root.item, &evs);
            return Ok(());
        }
    }
    anyhow::bail!("report update of conversation {conv}: too many concurrent changes")
}

/// The most messages a conversation's report state keeps one by one. The state is one
/// item, and DynamoDB's items stop at 400 KB: a fact and its share of the contribution
/// take about 200 bytes, so 1,000 stay near 200 KB. A longer conversation (a mail loop,
/// a years-long thread) counts its further messages straight into the volume buckets,
/// once each (an `rpt-over#{conversation}` marker per message), and leaves its figures
/// (first response, waits, SLA) as its first 1,000 messages made them (docs/metrics.md).
pub const MAX_FACTS: usize = if cfg!(test) { 100 } else { 1000 };

/// The days of `days` whose entry in the report's day list this process has not written
/// yet (it is written once and never changes: `Ports::written`).
fn day_markers(ports: &Ports, days: impl Iterator<Item = String>) -> Vec<String> {
    days.filter(|d| !ports.written.contains(&day_key(d))).collect()
}

fn day_key(day: &str) -> String {
    format!("{}/{day}", keys::REPORT_DAYS_PK)
}

/// Adds a partition's entry (see [`days_of`]) to the report's day list, if it is not there.
fn day_marker(entry: &str) -> TransactOp {
    let (day, _) = keys::report_entry(entry);
    TransactOp::Update {
        key: Key::new(keys::REPORT_DAYS_PK, entry),
        actions: vec![Update::SetIfAbsent("day".into(), json!(day))],
        cond: None,
    }
}

/// Counts a message past [`MAX_FACTS`] in the volume buckets, once.
pub(super) async fn record_overflow(
    ports: &Ports,
    conv: &Item,
    id: &str,
    n: &NewMessage<'_>,
    shards: u8,
) -> anyhow::Result<()> {
    let mut c = Contrib::new();
    message_counts(&mut c, conv, &n.fact, shards);
    let marker = Key::new(format!("rpt-over#{id}"), n.id.to_string());
    let mut ops = vec![TransactOp::Put { item: marker.item(), cond: Some(Cond::NotExists) }];
    let new_days = day_markers(ports, days_of(&c).into_iter());
    ops.extend(new_days.iter().map(|d| day_marker(d)));
    bucket_ops(&c, &mut ops);
    match ports.table.transact_write(ops).await {
        Ok(()) => {
            ports.written.note(new_days.iter().map(|d| day_key(d)));
            Ok(())
        }
        // Counted before (a redelivery).
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The report events a change of the buckets amounts to, with a value where one applies
/// (seconds for a first response, the agent for an assignment).
pub(super) fn events(d: &Contrib) -> Vec<(&'static str, Value)> {
    let sum = |pred: &dyn Fn(&str) -> bool| -> i64 {
        d.values().flat_map(|a| a.iter()).filter(|(k, _)| pred(k)).map(|(_, n)| *n).sum()
    };
    let mut out = Vec::new();
    if sum(&|k| k == "opened") > 0 {
        out.push(("conversation_opened", Value::Null));
    }
    let frt = sum(&|k| k == "frt_n");
    if frt > 0 {
        out.push(("first_response", json!(sum(&|k| k == "frt_sum"))));
    }
    // An assignment shows as +1 in the new agent's bucket (and -1 in the old one's).
    let changes =
        || d.values().flat_map(|a| a.iter()).filter_map(|(k, n)| Some((k.strip_prefix("assigned|a:")?, *n)));
    let gained: Vec<String> = changes().filter(|c| c.1 > 0).map(|c| c.0.to_string()).collect();
    let lost = changes().any(|c| c.1 < 0);
    for agent in gained {
        out.push((if lost { "reassigned" } else { "assigned" }, json!(agent)));
    }
    let closed = sum(&|k| k == "closed");
    if closed > 0 {
        out.push(("conversation_closed", Value::Null));
    } else if closed < 0 {
        out.push(("conversation_reopened", Value::Null));
    }
    if sum(&|k| k == "tickets") > 0 {
        out.push(("ticket_created", Value::Null));
    }
    if sum(&|k| k == "sla_breached") > 0 {
        out.push(("sla_breached", Value::Null));
    }
    // No event when a deadline is set: every conversation gets one, and the `sla-due`
    // index and the sweep's `sla_breached` event carry what matters (and each event item
    // costs two write units in the transaction).
    out
}

/// One report event (the feed's one shape), tagged by the state's version.
pub(super) fn event_put(
    conv: &str,
    version: i64,
    kind: &str,
    value: Value,
    now: DateTime<Utc>,
) -> TransactOp {
    feed::put_op(
        feed::Subject::Conversation(conv),
        kind,
        &format!("{version:08}"),
        feed::data_of(kind, value),
        now,
    )
}

/// CloudWatch embedded metric format lines for the events of a change, in Lambda only:
/// each metric counts events (never a negative correction), and `FirstResponseSeconds`
/// is one value per first response.
pub(super) fn emit_metrics(conv: &Item, evs: &[(&'static str, Value)]) {
    let count = |k: &str| evs.iter().filter(|e| e.0 == k).count() as i64;
    let mut metrics: Vec<(&str, Value, &str)> = vec![
        ("ConversationsOpened", json!(count("conversation_opened")), "Count"),
        ("FirstResponses", json!(count("first_response")), "Count"),
        ("ConversationsClosed", json!(count("conversation_closed")), "Count"),
        ("SlaBreached", json!(count("sla_breached")), "Count"),
        ("TicketsCreated", json!(count("ticket_created")), "Count"),
    ];
    if let Some((_, v)) = evs.iter().find(|e| e.0 == "first_response") {
        metrics.push(("FirstResponseSeconds", v.clone(), "Seconds"));
    }
    let unassigned = if count("assigned") > 0 {
        -1
    } else if count("conversation_opened") > 0 {
        1
    } else {
        0
    };
    metrics.push(("Unassigned", json!(unassigned), "Count"));
    metrics.retain(|m| m.1 != json!(0));
    let inbox = json!(s(conv, "inbox").unwrap_or_default());
    metrics::emf(Utc::now(), json!([[], ["Inbox"]]), &[("Inbox", inbox)], &metrics);
}

// ---------------------------------------------------------------------------- reading

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
