//! Reports: pre-aggregated buckets written as the pipeline runs, read in O(buckets).
//!
//! Every report figure is a sum of counters in bucket items keyed by UTC hour, inbox and
//! channel: partition `rpt#{YYYY-MM-DD}`, sort key `{HH}\t{inbox}\t{channel}` (a tab
//! cannot appear in an address), plus one histogram item per hour, inbox and channel
//! (`h{HH}\t{inbox}\t{channel}`). Counters by team or agent are attributes of those items
//! (`opened|t:{team}`, `msg_out|a:{agent}`), so the number of items a report reads is
//! bounded by hours x inboxes, whatever the number of conversations. A report over a
//! range reads the day partitions of the range and never the conversations.
//!
//! Writes are exact under at-least-once delivery and any arrival order. Each conversation
//! keeps its facts (one entry per message) and its current contribution to the buckets
//! in its own item (`rpt-conv#{id}`); processing recomputes the owner's contribution from its facts and applies the
//! difference together with the new contribution in one transaction, conditional on the
//! owner's version. A redelivery adds nothing (the difference is empty), a message that
//! arrives late moves a conversation's figures (say, its first response) by retracting
//! the old contribution, and two concurrent writers retry on the version check. When two
//! conversations merge, the survivor absorbs the merged one's state and retracts its
//! contribution in the same way.
//!
//! Time-dependent figures (stale, SLA due vs breached) are stored as the instant they
//! change, rounded up to the hour (`wait@{t}`, `sla_due@{t}`), and resolved against
//! "now" when the report is read, so nothing needs a sweep to keep the counts right
//! (the sweep's breach events use the exact instants). The formulas are in
//! docs/metrics.md.

use crate::feed;
use crate::keys;
use crate::keys::conv_key;
use crate::keys::item_str as s;
use crate::keys::ticket_key;
use crate::runtime::metrics;
use crate::runtime::ports::Ports;
use crate::thread::Threader;
use anyhow::Context;
use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use mailroom_core::calendar::Calendar;
use mailroom_core::workspace::{Workspace, parse_duration};
use mailroom_store::{Cond, Item, Key, Query, SkCond, StoreError, TransactOp, Update};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const CHANNEL_EMAIL: &str = "email";
/// Stands for "no team".
pub const NONE: &str = "-";
const SEP: char = '\t';

/// (bucket pk, bucket sk) -> attribute -> count.
type Contrib = BTreeMap<(String, String), BTreeMap<String, i64>>;

/// What a report needs to know about one message of a conversation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MsgFact {
    /// Arrival in the mailbox (the receiving server's Received time, else Date), epoch s.
    pub t: i64,
    #[serde(rename = "o")]
    pub out: bool,
    #[serde(rename = "n")]
    pub normal: bool,
    /// For an outbound message: the workspace user who sent it.
    #[serde(default, rename = "a", skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, rename = "l")]
    pub logged: bool,
    /// `email`, or `form` for a form submission.
    #[serde(default = "email_channel", rename = "c", skip_serializing_if = "is_email")]
    pub channel: String,
}

fn email_channel() -> String {
    CHANNEL_EMAIL.into()
}
fn is_email(c: &String) -> bool {
    c == CHANNEL_EMAIL
}

fn bucket(t: i64, inbox: &str, channel: &str) -> (String, String) {
    let d = DateTime::from_timestamp(t, 0).unwrap_or_default();
    let sk = [format!("{:02}", d.hour()), inbox.into(), channel.into()].join(&SEP.to_string());
    (format!("rpt#{}", d.format("%Y-%m-%d")), sk)
}

fn add(c: &mut Contrib, b: &(String, String), attr: impl Into<String>, n: i64) {
    if n != 0 {
        *c.entry(b.clone()).or_default().entry(attr.into()).or_default() += n;
    }
}

/// The hour's histogram item of an inbox and channel, beside its counters: histogram bins
/// (at most ~700 per histogram) are kept apart so the counter items stay small.
fn hist_bucket(t: i64, inbox: &str, channel: &str) -> (String, String) {
    let d = DateTime::from_timestamp(t, 0).unwrap_or_default();
    (
        format!("rpt#{}", d.format("%Y-%m-%d")),
        [format!("h{:02}", d.hour()), inbox.into(), channel.into()].join(&SEP.to_string()),
    )
}

/// One duration ending at `t` (a first response, a wait): its count and sums in the
/// hour's counters, its calendar and business bins in the hour's histogram item. The
/// report reads them back with [`Durations`].
fn add_duration(c: &mut Contrib, name: &str, t: i64, inbox: &str, channel: &str, secs: i64, bsecs: i64) {
    let b = bucket(t, inbox, channel);
    add(c, &b, format!("{name}_n"), 1);
    add(c, &b, format!("{name}_sum"), secs);
    add(c, &b, format!("{name}b_sum"), bsecs);
    let h = hist_bucket(t, inbox, channel);
    add(c, &h, format!("{name}_h{}", hist_index(secs)), 1);
    add(c, &h, format!("{name}b_h{}", hist_index(bsecs)), 1);
}

/// Histogram bucket of a duration: exact seconds below a minute, then buckets 2% wide
/// (a value read back from a bucket is within 1% of the true one).
pub fn hist_index(v: i64) -> i64 {
    if v < 60 { v.max(0) } else { 60 + ((v as f64 / 60.0).ln() / 1.02f64.ln()).floor() as i64 }
}
/// The value a histogram bucket stands for (its midpoint).
pub fn hist_value(i: i64) -> f64 {
    if i < 60 {
        i as f64
    } else {
        let lo = 60.0 * 1.02f64.powi((i - 60) as i32);
        lo * 1.01
    }
}
/// Upper bound of a histogram bucket.
fn hist_upper(i: i64) -> f64 {
    if i < 60 { i as f64 } else { 60.0 * 1.02f64.powi((i - 60 + 1) as i32) }
}

/// An RFC 3339 string attribute as epoch seconds.
pub(crate) fn ts(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_str).and_then(|d| DateTime::parse_from_rfc3339(d).ok()).map(|d| d.timestamp())
}

/// The arrival time of a recorded message item.
pub fn message_time(msg: &Item) -> Option<i64> {
    ts(msg.get("arrived")).or_else(|| ts(msg.get("date")))
}

/// Per-conversation figures kept with the conversation's report state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ConvFigures {
    pub opened_at: Option<i64>,
    pub first_response_s: Option<i64>,
    pub first_response_business_s: Option<i64>,
    pub waiting_since: Option<i64>,
    /// met | breached | due | paused; absent without an SLA policy.
    pub sla: Option<String>,
    pub sla_policy: Option<String>,
    pub sla_due_at: Option<i64>,
}

/// A conversation's contribution and figures from its messages and its current item.
fn conversation_contrib(
    ws: &Workspace,
    conv: &Item,
    ticket: Option<&Item>,
    msgs: &[MsgFact],
) -> (Contrib, ConvFigures) {
    let mut c = Contrib::new();
    let mut fig = ConvFigures::default();
    for m in msgs {
        message_counts(&mut c, conv, m);
    }
    let mut normal: Vec<&MsgFact> = msgs.iter().filter(|m| m.normal).collect();
    normal.sort_by_key(|m| (m.t, m.out));
    let Some(first) = normal.first() else { return (c, fig) };
    let open_t = first.t;
    fig.opened_at = Some(open_t);
    let inbox = s(conv, "inbox").unwrap_or_default().to_lowercase();
    let team = s(conv, "team").unwrap_or_else(|| NONE.into());
    let assignee = s(conv, "assignee");
    let closed = s(conv, "status").as_deref() == Some("closed");
    let closed_at = ts(conv.get("closed_at")).filter(|_| closed);
    // A conversation counts in the channel of its first message.
    let ch = first.channel.as_str();
    let b_open = bucket(open_t, &inbox, ch);
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
        let b = bucket(at, &inbox, ch);
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
        add_duration(&mut c, "frt", r.t, &inbox, ch, secs, bsecs);
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
                add_duration(&mut c, "wait", m.t, &inbox, ch, secs, bsecs);
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
enum Target {
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
fn pauses(ticket: Option<&Item>, pause_stages: &[String]) -> Vec<(i64, Option<i64>)> {
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
enum Clock {
    /// Due at this instant (`None`: the calendar never opens).
    Due(Option<i64>),
    /// Stopped now, in a pause that began before the target was reached.
    Paused,
}

/// The instant `target` business seconds of running clock have passed since `open`, the
/// clock stopped during `pauses`.
fn close_clock(cal: &Calendar, open: i64, target: i64, pauses: &[(i64, Option<i64>)]) -> Clock {
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

fn at(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(t, 0).unwrap_or_default()
}

/// Instants stored in buckets are rounded up to the hour, so a bucket holds at most one
/// attribute per hour whatever the number of conversations (docs/metrics.md).
fn ceil_hour(t: i64) -> i64 {
    (t + 3599).div_euclid(3600) * 3600
}

fn business(cal: &Calendar, from: i64, to: i64) -> i64 {
    cal.business_seconds(at(from), at(to))
}

/// A message's counts, in its arrival hour.
fn message_counts(c: &mut Contrib, conv: &Item, f: &MsgFact) {
    let inbox = s(conv, "inbox").unwrap_or_default().to_lowercase();
    let b = bucket(f.t, &inbox, &f.channel);
    if f.normal {
        add(c, &b, if f.out { "msg_out" } else { "msg_in" }, 1);
        if let Some(a) = f.agent.as_ref().filter(|_| f.out) {
            add(c, &b, format!("msg_out|a:{a}"), 1);
        }
        if f.logged {
            add(c, &b, "logged", 1);
        }
    } else {
        add(c, &b, "msg_noise", 1);
    }
}

/// The stored form of a contribution: `{"{pk}\n{sk}": {attr: n}}`, each bucket key once
/// (the state item's size is what DynamoDB bills its writes by).
fn encode(c: &Contrib) -> Value {
    Value::Object(c.iter().map(|((pk, sk), attrs)| (format!("{pk}\n{sk}"), json!(attrs))).collect())
}
fn decode(v: Option<&Value>) -> Contrib {
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
fn merge(into: &mut Contrib, from: &Contrib, sign: i64) {
    for (k, attrs) in from {
        for (a, n) in attrs {
            add(into, k, a.clone(), sign * n);
        }
    }
}

/// new - old, without zero entries.
fn delta(old: &Contrib, new: &Contrib) -> Contrib {
    let mut d = new.clone();
    merge(&mut d, old, -1);
    d.retain(|_, attrs| {
        attrs.retain(|_, n| *n != 0);
        !attrs.is_empty()
    });
    d
}

fn days_of(c: &Contrib) -> Vec<String> {
    let mut v: Vec<String> =
        c.keys().filter_map(|(pk, _)| pk.strip_prefix("rpt#").map(str::to_string)).collect();
    v.dedup();
    v
}

/// The bucket writes of a delta: one update per bucket, dimensions set once.
fn bucket_ops(d: &Contrib, ops: &mut Vec<TransactOp>) {
    for ((pk, sk), attrs) in d {
        let mut parts = sk.split(SEP);
        let hour = parts.next().unwrap_or("00");
        let day = pk.strip_prefix("rpt#").unwrap_or_default();
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

fn version_cond(owner: Option<&Item>) -> Cond {
    match owner.and_then(|o| o.get("version")) {
        Some(v) => Cond::Eq("version".into(), v.clone()),
        None => Cond::AttrNotExists("version".into()),
    }
}

fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::ConditionFailed | StoreError::TransactionCanceled { .. })
}

/// Writes a conversation's new contribution `new` (with `extra` attributes) to its
/// state item and the difference `d` to the buckets, with `more` (events, merged states),
/// all or nothing. False when another writer changed the state first.
async fn apply(
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

/// The fact a recorded message item gives.
pub fn fact(ws: &Workspace, msg: &Item, logged: bool) -> Option<MsgFact> {
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
        logged,
        channel,
    })
}

/// Records one processed message in its conversation's figures. Idempotent; call it
/// after routing and ticket automation so they are included. `logged`: whether the route
/// stage logged it on a contact; `None` keeps what an earlier delivery recorded.
pub async fn record_message(
    ports: &Ports,
    ws: &Workspace,
    msg: &Item,
    logged: Option<bool>,
) -> anyhow::Result<()> {
    let mid = s(msg, "message_id").context("message item has no message_id")?;
    let Some(f) = fact(ws, msg, logged.unwrap_or(false)) else {
        tracing::warn!(message_id = %mid, "message has no date: left out of reports");
        return Ok(());
    };
    let conv_id = s(msg, "conversation").context("message has no conversation")?;
    refresh(ports, ws, &conv_id, Some(NewMessage { id: &mid, fact: f, keep_logged: logged.is_none() })).await
}

/// A message to add to a conversation's facts.
pub struct NewMessage<'a> {
    pub id: &'a str,
    pub fact: MsgFact,
    /// Keep the `logged` flag an earlier delivery recorded.
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
    for _ in 0..20 {
        let root = Threader::new(ports).find(conv).await?;
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
            return record_overflow(ports, &root.item, &root.id, n).await;
        }
        if let Some(n) = &new_msg {
            let mut f = n.fact.clone();
            if n.keep_logged {
                f.logged = msgs.get(n.id).is_some_and(|m| m.logged);
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
        for day in days_of(&contrib).into_iter().filter(|x| !known.contains(x)) {
            more.push(TransactOp::Update {
                key: Key::new(keys::REPORT_DAYS_PK, day.clone()),
                actions: vec![Update::SetIfAbsent("day".into(), json!(day))],
                cond: None,
            });
        }
        let version = owner.as_ref().and_then(|o| o.get("version")).and_then(Value::as_i64).unwrap_or(0) + 1;
        // A breach the sweep already announced is not announced again when the late
        // reply (or close) makes it final.
        let announced = owner.as_ref().is_some_and(|o| o.contains_key("breach_event_for"));
        let evs: Vec<_> = events(&d).into_iter().filter(|e| !(announced && e.0 == "sla_breached")).collect();
        for (kind, value) in &evs {
            more.push(event_put(&root.id, version, kind, value.clone(), ports.clock.now()));
        }
        if apply(ports, &key, owner.as_ref(), &d, &contrib, extra, more).await? {
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

/// Counts a message past [`MAX_FACTS`] in the volume buckets, once.
async fn record_overflow(ports: &Ports, conv: &Item, id: &str, n: &NewMessage<'_>) -> anyhow::Result<()> {
    let mut c = Contrib::new();
    message_counts(&mut c, conv, &n.fact);
    let marker = Key::new(format!("rpt-over#{id}"), n.id.to_string());
    let mut ops = vec![TransactOp::Put { item: marker.item(), cond: Some(Cond::NotExists) }];
    for day in days_of(&c) {
        ops.push(TransactOp::Update {
            key: Key::new(keys::REPORT_DAYS_PK, day.clone()),
            actions: vec![Update::SetIfAbsent("day".into(), json!(day))],
            cond: None,
        });
    }
    bucket_ops(&c, &mut ops);
    match ports.table.transact_write(ops).await {
        Ok(()) => Ok(()),
        // Counted before (a redelivery).
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The report events a change of the buckets amounts to, with a value where one applies
/// (seconds for a first response, the agent for an assignment).
fn events(d: &Contrib) -> Vec<(&'static str, Value)> {
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
fn event_put(conv: &str, version: i64, kind: &str, value: Value, now: DateTime<Utc>) -> TransactOp {
    feed::put_op(
        feed::Subject::Conversation(conv),
        kind,
        &format!("{version:08}"),
        feed::data_of(kind, value),
        now,
    )
}

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
/// SLA sweep, then the gauges over the last [`GAUGE_DAYS`] days, published as CloudWatch
/// embedded metrics in Lambda.
pub async fn scheduled(ports: &Ports, now: DateTime<Utc>) -> anyhow::Result<SweepOutcome> {
    let breached = sweep(ports, now).await?;
    let ws = crate::workspace::load(ports).await?.unwrap_or_default();
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

/// The report figures kept for one conversation.
pub async fn figures(ports: &Ports, conv: &str) -> anyhow::Result<Option<ConvFigures>> {
    Ok(ports
        .table
        .get(&keys::conv_owner(conv))
        .await?
        .and_then(|o| o.get("figures").cloned())
        .and_then(|f| serde_json::from_value(f).ok()))
}

/// CloudWatch embedded metric format lines for the events of a change, in Lambda only:
/// each metric counts events (never a negative correction), and `FirstResponseSeconds`
/// is one value per first response.
fn emit_metrics(conv: &Item, evs: &[(&'static str, Value)]) {
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

/// A report's filter.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// First and last day, inclusive, in the report's time zone.
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// The zone days and hours of day are counted in; `None`: the zone of the
    /// `[reports] calendar`, else UTC.
    pub tz: Option<chrono_tz::Tz>,
    pub inbox: Option<String>,
    /// Inboxes the reader may see (`None`: all).
    pub visible: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Volume {
    pub total: i64,
    pub by_inbox: BTreeMap<String, i64>,
    pub by_day: BTreeMap<String, i64>,
    pub by_hour_of_day: BTreeMap<String, i64>,
    pub by_channel: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HistBar {
    /// Upper bound in seconds; null for the last, open-ended bar.
    pub le_s: Option<i64>,
    pub count: i64,
}

/// Durations (first response, wait time): count, mean, percentiles, in calendar and
/// business time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FirstResponse {
    pub count: i64,
    pub mean_s: Option<f64>,
    pub median_s: Option<f64>,
    pub p90_s: Option<f64>,
    pub business_mean_s: Option<f64>,
    pub business_median_s: Option<f64>,
    pub business_p90_s: Option<f64>,
    pub histogram: Vec<HistBar>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AgentFigures {
    pub assigned: i64,
    pub replied: i64,
    pub closed: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct OpenedClosed {
    pub opened: i64,
    pub closed: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SlaCounts {
    pub met: i64,
    pub breached: i64,
    pub due: i64,
    pub paused: i64,
    /// met / (met + breached); null when neither.
    pub compliance: Option<f64>,
}

impl SlaCounts {
    fn count(&mut self, what: &str, n: i64, now: i64) -> bool {
        match what {
            "met" => self.met += n,
            "breached" => self.breached += n,
            "paused" => self.paused += n,
            w => match w.strip_prefix("due@").and_then(|t| t.parse::<i64>().ok()) {
                // Stored rounded up to the hour: breached once that hour has come.
                Some(t) if t <= now => self.breached += n,
                Some(_) => self.due += n,
                None => return false,
            },
        }
        true
    }
    fn finish(&mut self) {
        let decided = self.met + self.breached;
        self.compliance = (decided > 0).then(|| self.met as f64 / decided as f64);
    }
}

/// Conversations by SLA status: all targets together, and each target alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sla {
    #[serde(flatten)]
    pub all: SlaCounts,
    pub first_response: SlaCounts,
    pub time_to_close: SlaCounts,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EmailLog {
    pub messages: i64,
    pub logged: i64,
    pub share: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Messages {
    #[serde(rename = "in")]
    pub inbound: i64,
    #[serde(rename = "out")]
    pub outbound: i64,
    pub noise: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub from: Option<String>,
    pub to: Option<String>,
    pub inbox: Option<String>,
    /// The IANA zone of days and hours of day.
    pub time_zone: String,
    pub generated_at: String,
    /// Inboxes with data that the reader may see (for filters).
    pub inboxes: Vec<String>,
    pub volume: Volume,
    pub messages: Messages,
    pub first_response: FirstResponse,
    /// Every reply of ours to a waiting customer (docs/metrics.md).
    pub wait_time: FirstResponse,
    pub agents: BTreeMap<String, AgentFigures>,
    pub teams: BTreeMap<String, i64>,
    pub tickets_created: i64,
    pub open: i64,
    pub closed: i64,
    pub unassigned: i64,
    pub stale: i64,
    pub stale_after_s: i64,
    pub open_closed_by_day: BTreeMap<String, OpenedClosed>,
    pub sla: Sla,
    pub email_log: EmailLog,
    /// Bucket items read to build the report (the cost of the report).
    pub buckets_read: u64,
}

/// Builds a report from the buckets.
pub async fn report(ports: &Ports, ws: &Workspace, f: &Filter, now: DateTime<Utc>) -> anyhow::Result<Report> {
    let days = ports.table.query_all(Query::new(keys::REPORT_DAYS_PK)).await?;
    let all: Vec<NaiveDate> = days
        .iter()
        .filter_map(|d| s(d, "sk"))
        .filter_map(|d| NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok())
        .collect();
    let tz = f.tz.unwrap_or_else(|| report_zone(ws));
    let mut r = Report {
        from: f.from.map(|d| d.to_string()),
        to: f.to.map(|d| d.to_string()),
        inbox: f.inbox.clone(),
        time_zone: tz.name().to_string(),
        generated_at: now.to_rfc3339(),
        stale_after_s: ws.stale_after_secs(),
        ..Report::default()
    };
    let (Some(first), Some(last)) = (all.iter().min(), all.iter().max()) else { return Ok(r) };
    // The range in local days, and the UTC instants and day partitions it covers.
    let local =
        |d: NaiveDate, h: u32| d.and_hms_opt(h, 59, 59).map(|t| t.and_utc().with_timezone(&tz).date_naive());
    let from = f.from.or_else(|| local(*first, 0)).unwrap_or(*first);
    let to = f.to.or_else(|| local(*last, 23)).unwrap_or(*last);
    let start = local_midnight(tz, from);
    let end = local_midnight(tz, to + Duration::days(1));
    let (first_day, last_day) =
        (start.date_naive().max(*first), (end - Duration::seconds(1)).date_naive().min(*last));
    let mut frt = Durations::default();
    let mut wait = Durations::default();
    let stale_before = now.timestamp() - r.stale_after_s;
    let mut inboxes = std::collections::BTreeSet::new();
    let want = f.inbox.as_ref().map(|i| i.to_lowercase());
    let mut day = first_day;
    while day <= last_day {
        if all.contains(&day) {
            let items = ports.table.query_all(Query::new(format!("rpt#{day}")).sk(SkCond::All)).await?;
            r.buckets_read += items.len() as u64;
            for b in items {
                let inbox = s(&b, "inbox").unwrap_or_default();
                if let Some(v) = &f.visible
                    && !v.iter().any(|x| x.eq_ignore_ascii_case(&inbox))
                {
                    continue;
                }
                inboxes.insert(inbox.clone());
                if want.as_ref().is_some_and(|w| *w != inbox) {
                    continue;
                }
                // The bucket's hour, in the report's zone.
                let Some(at) = s(&b, "hour")
                    .and_then(|h| {
                        chrono::NaiveDateTime::parse_from_str(&format!("{h}:00"), "%Y-%m-%dT%H:%M").ok()
                    })
                    .map(|t| t.and_utc())
                else {
                    continue;
                };
                if at < start || at >= end {
                    continue;
                }
                let at = at.with_timezone(&tz);
                let key = at.date_naive().to_string();
                let hour = at.hour();
                let channel = s(&b, "channel").unwrap_or_else(|| CHANNEL_EMAIL.into());
                for (attr, v) in &b {
                    let Some(n) = v.as_i64() else { continue };
                    if n == 0 {
                        continue;
                    }
                    // Counters by team or agent: `name|t:TEAM`, `name|a:AGENT`.
                    if let Some((name, dim)) = attr.split_once('|') {
                        if let Some(team) = dim.strip_prefix("t:") {
                            if name == "opened" {
                                *r.teams.entry(team.to_string()).or_default() += n;
                            }
                        } else if let Some(agent) = dim.strip_prefix("a:") {
                            let a = r.agents.entry(agent.to_string()).or_default();
                            match name {
                                "assigned" => a.assigned += n,
                                "msg_out" => a.replied += n,
                                "closed" => a.closed += n,
                                _ => {}
                            }
                        }
                        continue;
                    }
                    match attr.as_str() {
                        "opened" => {
                            r.volume.total += n;
                            *r.volume.by_inbox.entry(inbox.clone()).or_default() += n;
                            *r.volume.by_day.entry(key.clone()).or_default() += n;
                            *r.volume.by_hour_of_day.entry(hour.to_string()).or_default() += n;
                            *r.volume.by_channel.entry(channel.clone()).or_default() += n;
                            r.open_closed_by_day.entry(key.clone()).or_default().opened += n;
                        }
                        "msg_out" => {
                            r.messages.outbound += n;
                            r.email_log.messages += n;
                        }
                        "msg_in" => {
                            r.messages.inbound += n;
                            r.email_log.messages += n;
                        }
                        "msg_noise" => r.messages.noise += n,
                        "logged" => r.email_log.logged += n,
                        "closed" => {
                            r.open_closed_by_day.entry(key.clone()).or_default().closed += n;
                        }
                        "open_now" => r.open += n,
                        "closed_now" => r.closed += n,
                        "unassigned" => r.unassigned += n,
                        "tickets" => r.tickets_created += n,
                        a => {
                            if let Some(rest) = a.strip_prefix("frt") {
                                frt.count(rest, n);
                            } else if let Some(rest) = a.strip_prefix("wait").filter(|r| !r.starts_with('@'))
                            {
                                wait.count(rest, n);
                            } else if let Some(t) =
                                a.strip_prefix("wait@").and_then(|x| x.parse::<i64>().ok())
                            {
                                if t <= stale_before {
                                    r.stale += n;
                                }
                            } else if let Some(w) = a.strip_prefix("sla_") {
                                r.sla.all.count(w, n, now.timestamp());
                            } else if let Some(w) = a.strip_prefix("slafr_") {
                                r.sla.first_response.count(w, n, now.timestamp());
                            } else if let Some(w) = a.strip_prefix("slattc_") {
                                r.sla.time_to_close.count(w, n, now.timestamp());
                            }
                        }
                    }
                }
            }
        }
        day += Duration::days(1);
    }
    r.agents.retain(|_, a| *a != AgentFigures::default());
    r.first_response = frt.finish();
    r.wait_time = wait.finish();
    r.sla.all.finish();
    r.sla.first_response.finish();
    r.sla.time_to_close.finish();
    r.email_log.share =
        (r.email_log.messages > 0).then(|| r.email_log.logged as f64 / r.email_log.messages as f64);
    r.inboxes = inboxes.into_iter().collect();
    // Days of the range without data still show, as zeros.
    let mut d = from;
    while d <= to {
        r.volume.by_day.entry(d.to_string()).or_default();
        r.open_closed_by_day.entry(d.to_string()).or_default();
        d += Duration::days(1);
    }
    Ok(r)
}

/// The zone of the `[reports] calendar`, else UTC.
pub fn report_zone(ws: &Workspace) -> chrono_tz::Tz {
    let id = ws.reports.calendar.as_deref();
    ws.calendars
        .iter()
        .find(|c| Some(c.id.as_str()) == id)
        .and_then(|c| c.time_zone.parse().ok())
        .unwrap_or(chrono_tz::UTC)
}

/// The first instant of a local day (a day whose midnight a DST change skips starts at
/// the first hour that exists).
fn local_midnight(tz: chrono_tz::Tz, d: NaiveDate) -> DateTime<Utc> {
    use chrono::TimeZone;
    (0..4)
        .find_map(|h| d.and_hms_opt(h, 0, 0).and_then(|t| tz.from_local_datetime(&t).earliest()))
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

/// Sums and histograms of one duration metric while a report reads the buckets:
/// attributes `{name}_n`, `{name}_sum`, `{name}b_sum`, `{name}_h{bin}`, `{name}b_h{bin}`
/// (the caller strips `{name}`).
#[derive(Default)]
struct Durations {
    n: i64,
    sum: i64,
    bsum: i64,
    hist: BTreeMap<i64, i64>,
    bhist: BTreeMap<i64, i64>,
}

impl Durations {
    fn count(&mut self, rest: &str, n: i64) {
        match rest {
            "_n" => self.n += n,
            "_sum" => self.sum += n,
            "b_sum" => self.bsum += n,
            r => {
                if let Some(i) = r.strip_prefix("_h").and_then(|x| x.parse().ok()) {
                    *self.hist.entry(i).or_default() += n;
                } else if let Some(i) = r.strip_prefix("b_h").and_then(|x| x.parse().ok()) {
                    *self.bhist.entry(i).or_default() += n;
                }
            }
        }
    }

    fn finish(&self) -> FirstResponse {
        let mut f = FirstResponse { count: self.n, ..FirstResponse::default() };
        if self.n > 0 {
            f.mean_s = Some(self.sum as f64 / self.n as f64);
            f.business_mean_s = Some(self.bsum as f64 / self.n as f64);
            f.median_s = percentile(&self.hist, 0.5);
            f.p90_s = percentile(&self.hist, 0.9);
            f.business_median_s = percentile(&self.bhist, 0.5);
            f.business_p90_s = percentile(&self.bhist, 0.9);
            f.histogram = coarse(&self.hist);
        }
        f
    }
}

/// Nearest-rank percentile of a histogram.
fn percentile(h: &BTreeMap<i64, i64>, p: f64) -> Option<f64> {
    let n: i64 = h.values().sum();
    if n == 0 {
        return None;
    }
    let rank = ((p * n as f64).ceil() as i64).max(1);
    let mut seen = 0;
    for (i, c) in h {
        seen += c;
        if seen >= rank {
            return Some(hist_value(*i));
        }
    }
    None
}

/// The histogram regrouped into readable bars for charts.
fn coarse(h: &BTreeMap<i64, i64>) -> Vec<HistBar> {
    const BOUNDS: [i64; 11] = [300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 259200, i64::MAX];
    let mut bars: Vec<HistBar> =
        BOUNDS.iter().map(|b| HistBar { le_s: (*b != i64::MAX).then_some(*b), count: 0 }).collect();
    for (i, c) in h {
        let v = hist_upper(*i);
        let at = BOUNDS.iter().position(|b| v <= *b as f64).unwrap_or(BOUNDS.len() - 1);
        bars[at].count += c;
    }
    bars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_values_are_within_one_percent() {
        for v in [0i64, 1, 59, 60, 61, 299, 3600, 86_399, 259_200, 2_000_000] {
            let back = hist_value(hist_index(v));
            let err = (back - v as f64).abs();
            assert!(err <= (v as f64 * 0.01).max(0.0) + 1e-9, "{v} -> {back}");
        }
    }

    #[test]
    fn delta_retracts_and_adds() {
        let b1 = ("rpt#2024-03-04".to_string(), "01".to_string());
        let b2 = ("rpt#2024-03-05".to_string(), "02".to_string());
        let mut old = Contrib::new();
        add(&mut old, &b1, "frt_n", 1);
        add(&mut old, &b1, "opened", 1);
        let mut new = Contrib::new();
        add(&mut new, &b1, "opened", 1);
        add(&mut new, &b2, "frt_n", 1);
        let d = delta(&old, &new);
        assert_eq!(d.get(&b1).map(|a| a.get("frt_n").copied()), Some(Some(-1)));
        assert_eq!(d.get(&b1).and_then(|a| a.get("opened")), None);
        assert_eq!(d.get(&b2).and_then(|a| a.get("frt_n")), Some(&1));
        assert!(delta(&new, &new).is_empty());
        assert_eq!(decode(Some(&encode(&new))), new);
    }

    fn acme() -> Workspace {
        mailroom_core::workspace::parse_toml(include_str!("../../../../examples/acme-corp.toml")).unwrap()
    }

    fn conv(extra: &[(&str, Value)]) -> Item {
        let mut c = Item::new();
        c.insert("inbox".into(), json!("support@acme-corp.example"));
        c.insert("team".into(), json!("support"));
        c.insert("assignee".into(), json!("maria.keller@acme-corp.example"));
        c.insert("status".into(), json!("open"));
        for (k, v) in extra {
            c.insert((*k).into(), v.clone());
        }
        c
    }

    fn t(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    fn inbound(at: &str) -> MsgFact {
        inbound_at(t(at))
    }
    fn inbound_at(t: i64) -> MsgFact {
        MsgFact { t, out: false, normal: true, agent: None, logged: true, channel: "email".into() }
    }
    fn reply_at(t: i64) -> MsgFact {
        MsgFact {
            t,
            out: true,
            normal: true,
            agent: Some("maria.keller@acme-corp.example".into()),
            logged: true,
            channel: "email".into(),
        }
    }
    fn reply(at: &str) -> MsgFact {
        MsgFact {
            t: t(at),
            out: true,
            normal: true,
            agent: Some("maria.keller@acme-corp.example".into()),
            logged: true,
            channel: "email".into(),
        }
    }

    #[test]
    fn first_response_in_calendar_and_business_time() {
        // Friday 17:00 Berlin (16:00Z) to Monday 09:00 Berlin (08:00Z): 64 h of calendar
        // time, 2 business hours (Fri 17-18, Mon 08-09).
        let msgs = [inbound("2024-03-08T16:00:00Z"), reply("2024-03-11T08:00:00Z")];
        let (_, fig) = conversation_contrib(&acme(), &conv(&[]), None, &msgs);
        assert_eq!(fig.first_response_s, Some(64 * 3600));
        assert_eq!(fig.first_response_business_s, Some(2 * 3600));
        assert_eq!(fig.waiting_since, None);
    }

    /// Issue 17, item 17: the time a ticket waits in a pause stage is taken off its
    /// time-to-close clock. By hand, in the standard policy (time to close "5d" = 120
    /// business hours; Berlin, weekdays 08:00-18:00, CET): opened Monday 4 March 09:00;
    /// without a pause due twelve business days later, Wednesday 20 March 09:00. Paused
    /// ("waiting on contact") Monday 11:00 to Wednesday 6 March 11:00: 7 + 10 + 3 = 20
    /// business hours, so due Friday 22 March 09:00. Closed Thursday 21 March at noon it
    /// is met (on 4490ca9 breached: the pause was not subtracted).
    #[test]
    fn sla_pause_time_is_not_counted() {
        let ws = acme();
        let open = "2024-03-04T08:00:00Z";
        let mut ticket = Item::new();
        ticket.insert("stage".into(), json!("closed"));
        ticket.insert(
            "stage_log".into(),
            json!([
                ["new", open],
                ["waiting_on_contact", "2024-03-04T10:00:00Z"],
                ["waiting_on_us", "2024-03-06T10:00:00Z"],
                ["closed", "2024-03-21T11:00:00Z"]
            ]),
        );
        let p = ws.sla_policy("support@acme-corp.example", None).unwrap();
        let cal = ws.calendar(p.calendar.as_deref());
        let ps = pauses(Some(&ticket), &p.pause_stages);
        assert_eq!(ps, vec![(t("2024-03-04T10:00:00Z"), Some(t("2024-03-06T10:00:00Z")))]);
        let target = parse_duration(p.time_to_close.as_deref().unwrap()).unwrap();
        assert_eq!(close_clock(&cal, t(open), target, &ps), Clock::Due(Some(t("2024-03-22T08:00:00Z"))));
        assert_eq!(close_clock(&cal, t(open), target, &[]), Clock::Due(Some(t("2024-03-20T08:00:00Z"))));
        // Still waiting on the contact: paused.
        assert_eq!(close_clock(&cal, t(open), target, &[(t("2024-03-04T10:00:00Z"), None)]), Clock::Paused);
        let closed = conv(&[("status", json!("closed")), ("closed_at", json!("2024-03-21T11:00:00Z"))]);
        let msgs = [inbound(open), reply("2024-03-04T09:00:00Z")];
        let (_, fig) = conversation_contrib(&ws, &closed, Some(&ticket), &msgs);
        assert_eq!(fig.sla.as_deref(), Some("met"), "{fig:?}");
    }

    /// Issue 17, item 9, the bound: a conversation's state at the cap, in the worst case
    /// (long Message-IDs, every message in an hour and a day of its own, every one a
    /// first response or a wait), stays under DynamoDB's 400 KB item limit. On 4490ca9
    /// the state grew without limit (past 400 KB near 2,000 such messages).
    #[test]
    fn report_state_at_the_cap_fits_an_item() {
        let ws = acme();
        let mut msgs = BTreeMap::new();
        for i in 0..1000usize {
            let at = t("2024-03-04T08:00:00Z") + i as i64 * 86_400 + (i as i64 % 24) * 3600;
            let f = if i.is_multiple_of(2) { inbound_at(at) } else { reply_at(at) };
            msgs.insert(format!("CAF{i:05}+a-rather-long-message-id-of-a-big-provider@mail.gmail.com"), f);
        }
        let facts: Vec<MsgFact> = msgs.values().cloned().collect();
        let (contrib, fig) = conversation_contrib(&ws, &conv(&[]), None, &facts);
        let state =
            json!({"msgs": msgs, "contrib": encode(&contrib), "figures": fig, "absorbed": [], "version": 1});
        let size = serde_json::to_vec(&state).unwrap().len();
        assert!(size < 350_000, "the report state at the cap is {size} bytes");
    }

    /// Issue 17, item 9, the counting: past the cap (100 in tests), messages are counted
    /// once each, straight into the buckets, and the state stops growing.
    #[tokio::test]
    async fn messages_past_the_cap_are_counted_once_and_the_state_stops_growing() {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::embedded(dir.path()).unwrap();
        let ws = acme();
        let mut c = conv(&[]);
        c.extend(conv_key("cbig").item());
        ports.table.put(c, None).await.unwrap();
        let msg = |i: usize| {
            let mut m = Item::new();
            m.insert("message_id".into(), json!(format!("loop-{i:05}@mailer.customer.example")));
            m.insert("conversation".into(), json!("cbig"));
            m.insert("direction".into(), json!(if i.is_multiple_of(2) { "inbound" } else { "outbound" }));
            m.insert("kind".into(), json!("normal"));
            let at = t("2024-03-04T08:00:00Z") + i as i64 * 3600 * 5;
            m.insert("arrived".into(), json!(DateTime::from_timestamp(at, 0).unwrap().to_rfc3339()));
            m
        };
        for i in 0..150 {
            record_message(&ports, &ws, &msg(i), Some(true)).await.unwrap();
        }
        let before = ports.table.get(&keys::conv_owner("cbig")).await.unwrap().unwrap();
        record_message(&ports, &ws, &msg(140), Some(true)).await.unwrap();
        record_message(&ports, &ws, &msg(10), Some(true)).await.unwrap();
        let state = ports.table.get(&keys::conv_owner("cbig")).await.unwrap().unwrap();
        assert_eq!(state.get("msgs").and_then(Value::as_object).map(|m| m.len()), Some(MAX_FACTS));
        assert_eq!(state.get("version"), before.get("version"), "a redelivery changed the state");
        let r = report(&ports, &ws, &Filter::default(), Utc::now()).await.unwrap();
        assert_eq!((r.messages.inbound, r.messages.outbound), (75, 75), "{:?}", r.messages);
    }

    #[test]
    fn sla_statuses() {
        let ws = acme();
        // The standard policy: first response 8 business hours, close in 5 business days.
        let open = "2024-03-04T08:00:00Z"; // Monday 09:00 Berlin
        let (c, fig) =
            conversation_contrib(&ws, &conv(&[]), None, &[inbound(open), reply("2024-03-04T10:00:00Z")]);
        assert_eq!(fig.sla_policy.as_deref(), Some("standard"));
        // First response met, close still running: due.
        assert_eq!(fig.sla.as_deref(), Some("due"));
        let attrs: Vec<&String> = c.values().flat_map(|a| a.keys()).collect();
        assert!(attrs.iter().any(|a| a.as_str() == "slafr_met"), "{attrs:?}");
        // No reply at all: due at 17:00 Berlin the same day (16:00Z).
        let (_, fig) = conversation_contrib(&ws, &conv(&[]), None, &[inbound(open)]);
        assert_eq!(fig.sla_due_at, Some(t("2024-03-04T16:00:00Z")));
        assert_eq!(fig.waiting_since, Some(t(open)));
        // A reply after 9 business hours: breached.
        let (_, fig) =
            conversation_contrib(&ws, &conv(&[]), None, &[inbound(open), reply("2024-03-05T08:00:00Z")]);
        assert_eq!(fig.sla.as_deref(), Some("breached"));
        // Replied and closed in time: met.
        let closed = conv(&[("status", json!("closed")), ("closed_at", json!("2024-03-05T09:00:00Z"))]);
        let (c, fig) =
            conversation_contrib(&ws, &closed, None, &[inbound(open), reply("2024-03-04T09:00:00Z")]);
        assert_eq!(fig.sla.as_deref(), Some("met"));
        assert!(c.values().any(|a| a.get("closed_now") == Some(&1)));
        // Waiting on the customer (a pause stage): the close target is paused.
        let mut ticket = Item::new();
        ticket.insert("stage".into(), json!("waiting_on_contact"));
        let (_, fig) = conversation_contrib(
            &ws,
            &conv(&[]),
            Some(&ticket),
            &[inbound(open), reply("2024-03-04T09:00:00Z")],
        );
        assert_eq!(fig.sla.as_deref(), Some("paused"));
        // High priority: the urgent policy (1 business hour).
        let high = conv(&[("priority", json!("high"))]);
        let (_, fig) =
            conversation_contrib(&ws, &high, None, &[inbound(open), reply("2024-03-04T09:30:00Z")]);
        assert_eq!(fig.sla_policy.as_deref(), Some("urgent"));
        assert_eq!(fig.sla.as_deref(), Some("breached"));
    }

    #[test]
    fn order_of_facts_does_not_matter_and_late_messages_move_figures() {
        let ws = acme();
        let a =
            [inbound("2024-03-04T10:00:00Z"), reply("2024-03-04T12:00:00Z"), inbound("2024-03-05T10:00:00Z")];
        let b = [a[2].clone(), a[0].clone(), a[1].clone()];
        assert_eq!(
            conversation_contrib(&ws, &conv(&[]), None, &a),
            conversation_contrib(&ws, &conv(&[]), None, &b)
        );
        // An earlier customer message arriving late moves the first response.
        let mut late = a.to_vec();
        late.push(inbound("2024-03-04T08:00:00Z"));
        let (old, _) = conversation_contrib(&ws, &conv(&[]), None, &a);
        let (new, fig) = conversation_contrib(&ws, &conv(&[]), None, &late);
        assert_eq!(fig.first_response_s, Some(4 * 3600));
        let d = delta(&old, &new);
        let frt: i64 = d.values().filter_map(|x| x.get("frt_sum")).sum();
        assert_eq!(frt, 2 * 3600);
    }

    #[test]
    fn events_of_a_change() {
        let ws = acme();
        let msgs = [inbound("2024-03-04T10:00:00Z")];
        let (before, _) = conversation_contrib(&ws, &conv(&[]), None, &msgs);
        let kinds = |d: &Contrib| events(d).into_iter().map(|e| e.0).collect::<Vec<_>>();
        let first = kinds(&delta(&Contrib::new(), &before));
        assert!(first.contains(&"conversation_opened") && first.contains(&"assigned"), "{first:?}");
        let other = conv(&[("assignee", json!("tom.becker@acme-corp.example"))]);
        let (after, _) = conversation_contrib(&ws, &other, None, &msgs);
        assert_eq!(kinds(&delta(&before, &after)), vec!["reassigned"]);
        let closed = conv(&[("status", json!("closed")), ("closed_at", json!("2024-03-04T11:00:00Z"))]);
        let (c, _) = conversation_contrib(&ws, &closed, None, &msgs);
        assert!(kinds(&delta(&before, &c)).contains(&"conversation_closed"));
        assert!(kinds(&delta(&c, &before)).contains(&"conversation_reopened"));
        assert!(delta(&before, &before).is_empty());
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let mut h = BTreeMap::new();
        for v in 1..=10 {
            *h.entry(hist_index(v)).or_insert(0) += 1;
        }
        assert_eq!(percentile(&h, 0.5), Some(5.0));
        assert_eq!(percentile(&h, 0.9), Some(9.0));
    }
}
