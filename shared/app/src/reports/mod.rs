//! Reports: pre-aggregated buckets written as the pipeline runs, read in O(buckets).
//!
//! Every report figure is a sum of counters in bucket items keyed by UTC hour, inbox and
//! channel: partition `rpt#{YYYY-MM-DD}#{inbox}` (`keys::report_pk`), sort key
//! `{HH}\t{inbox}\t{channel}` (a tab
//! cannot appear in an address), plus one histogram item per hour, inbox and channel
//! (`h{HH}\t{inbox}\t{channel}`). Counters by team or agent are attributes of those items
//! (`opened|t:{team}`, `msg_out|a:{agent}`), so the number of items a report reads is
//! bounded by hours x inboxes, whatever the number of conversations. A report over a
//! range reads the partitions of the range's days (of the inboxes it covers, concurrently)
//! and never the conversations.
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

mod bucket;
pub mod log_alert;
mod read;
pub mod record;
pub mod sweep;

pub use read::*;
pub use record::{
    MAX_FACTS, NewMessage, fact, record_message, refresh, refresh_quietly, rerecord_message_quietly,
};
pub use sweep::{GAUGE_DAYS, SweepOutcome, scheduled, sweep};

use crate::keys;
use crate::runtime::ports::Ports;
use chrono::{DateTime, Timelike};
use mailroom_store::Item;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub const CHANNEL_EMAIL: &str = "email";
/// Stands for "no team".
pub const NONE: &str = "-";
pub(super) const SEP: char = '\t';

/// (bucket pk, bucket sk) -> attribute -> count.
pub(super) type Contrib = BTreeMap<(String, String), BTreeMap<String, i64>>;

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
    /// Why it was not logged (`mailroom_core::crm_log::NotLogged`); none for a message
    /// recorded before reasons were kept.
    #[serde(default, rename = "r", skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `email`, or `form` for a form submission.
    #[serde(default = "email_channel", rename = "c", skip_serializing_if = "is_email")]
    pub channel: String,
}

pub(super) fn email_channel() -> String {
    CHANNEL_EMAIL.into()
}
pub(super) fn is_email(c: &String) -> bool {
    c == CHANNEL_EMAIL
}

pub(super) fn bucket(t: i64, at: &Place) -> (String, String) {
    let (inbox, channel) = (at.inbox, at.channel);
    let d = DateTime::from_timestamp(t, 0).unwrap_or_default();
    let sk = [format!("{:02}", d.hour()), inbox.into(), channel.into()].join(&SEP.to_string());
    (keys::report_pk(&d.format("%Y-%m-%d").to_string(), inbox, at.conv, at.shards), sk)
}

pub(super) fn add(c: &mut Contrib, b: &(String, String), attr: impl Into<String>, n: i64) {
    if n != 0 {
        *c.entry(b.clone()).or_default().entry(attr.into()).or_default() += n;
    }
}

/// The hour's histogram item of an inbox and channel, beside its counters: histogram bins
/// (at most ~700 per histogram) are kept apart so the counter items stay small.
pub(super) fn hist_bucket(t: i64, at: &Place) -> (String, String) {
    let (inbox, channel) = (at.inbox, at.channel);
    let d = DateTime::from_timestamp(t, 0).unwrap_or_default();
    (
        keys::report_pk(&d.format("%Y-%m-%d").to_string(), inbox, at.conv, at.shards),
        [format!("h{:02}", d.hour()), inbox.into(), channel.into()].join(&SEP.to_string()),
    )
}

/// Where a conversation's figures are counted: its inbox and channel, and the
/// conversation itself with the workspace's shard count (they pick the partition,
/// `keys::report_pk`).
pub(super) struct Place<'a> {
    pub inbox: &'a str,
    pub channel: &'a str,
    pub conv: &'a str,
    pub shards: u8,
}

/// One duration ending at `t` (a first response, a wait): its count and sums in the
/// hour's counters, its calendar and business bins in the hour's histogram item. The
/// report reads them back with [`Durations`].
pub(super) fn add_duration(c: &mut Contrib, name: &str, t: i64, at: &Place, secs: i64, bsecs: i64) {
    let b = bucket(t, at);
    add(c, &b, format!("{name}_n"), 1);
    add(c, &b, format!("{name}_sum"), secs);
    add(c, &b, format!("{name}b_sum"), bsecs);
    let h = hist_bucket(t, at);
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
pub(super) fn hist_upper(i: i64) -> f64 {
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

/// The report figures kept for one conversation.
pub async fn figures(ports: &Ports, conv: &str) -> anyhow::Result<Option<ConvFigures>> {
    Ok(ports
        .table
        .get(&keys::conv_owner(conv))
        .await?
        .and_then(|o| o.get("figures").cloned())
        .and_then(|f| serde_json::from_value(f).ok()))
}
