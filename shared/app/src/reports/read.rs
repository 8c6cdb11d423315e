//! The read side of the reports: a report over a range reads the day partitions of the
//! buckets, never the conversations (docs/metrics.md).

use super::bucket::{AgentCount, Attr, Bucket, Dur, SlaStatus, SlaTarget};
use super::*;
use crate::keys;
use crate::keys::item_str as s;
use crate::runtime::ports::Ports;
use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use futures::{StreamExt, TryStreamExt};
use mailroom_core::workspace::Workspace;
use mailroom_store::{Query, SkCond};
use serde::Serialize;
use std::collections::BTreeMap;

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

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Volume {
    pub total: i64,
    pub by_inbox: BTreeMap<String, i64>,
    pub by_day: BTreeMap<String, i64>,
    pub by_hour_of_day: BTreeMap<String, i64>,
    pub by_channel: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct HistBar {
    /// Upper bound in seconds; null for the last, open-ended bar.
    pub le_s: Option<i64>,
    pub count: i64,
}

/// Durations (first response, wait time): count, mean, percentiles, in calendar and
/// business time.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct AgentFigures {
    pub assigned: i64,
    pub replied: i64,
    pub closed: i64,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct OpenedClosed {
    pub opened: i64,
    pub closed: i64,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct SlaCounts {
    pub met: i64,
    pub breached: i64,
    pub due: i64,
    pub paused: i64,
    /// met / (met + breached); null when neither.
    pub compliance: Option<f64>,
}

impl SlaCounts {
    fn count(&mut self, status: SlaStatus, n: i64, now: i64) {
        match status {
            SlaStatus::Met => self.met += n,
            SlaStatus::Breached => self.breached += n,
            SlaStatus::Paused => self.paused += n,
            // Stored rounded up to the hour: breached once that hour has come.
            SlaStatus::Due(t) if t <= now => self.breached += n,
            SlaStatus::Due(_) => self.due += n,
            SlaStatus::Other => {}
        }
    }
    fn finish(&mut self) {
        let decided = self.met + self.breached;
        self.compliance = (decided > 0).then(|| self.met as f64 / decided as f64);
    }
}

/// Conversations by SLA status: all targets together, and each target alone.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Sla {
    #[serde(flatten)]
    pub all: SlaCounts,
    pub first_response: SlaCounts,
    pub time_to_close: SlaCounts,
}

/// Email-log confirmation: every message, logged on the CRM or not and why
/// (docs/metrics.md).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct EmailLog {
    pub messages: i64,
    pub logged: i64,
    pub share: Option<f64>,
    /// Messages not logged, by reason (`never_log`, `internal`, ...; `unknown` for those
    /// recorded before reasons were kept).
    pub not_logged: BTreeMap<String, i64>,
    pub by_inbox: BTreeMap<String, EmailLogCounts>,
    /// By local day (`YYYY-MM-DD`).
    pub by_day: BTreeMap<String, EmailLogCounts>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct EmailLogCounts {
    pub messages: i64,
    pub logged: i64,
    pub not_logged: BTreeMap<String, i64>,
}

/// Counts `n` messages, logged (`reason` none) or not.
fn tally(
    messages: &mut i64,
    logged: &mut i64,
    not_logged: &mut BTreeMap<String, i64>,
    reason: Option<&str>,
    n: i64,
) {
    *messages += n;
    match reason {
        None => *logged += n,
        Some(r) => *not_logged.entry(r.to_string()).or_default() += n,
    }
}

impl EmailLog {
    fn count(&mut self, inbox: &str, day: &str, reason: Option<&str>, n: i64) {
        tally(&mut self.messages, &mut self.logged, &mut self.not_logged, reason, n);
        for c in [
            self.by_inbox.entry(inbox.to_string()).or_default(),
            self.by_day.entry(day.to_string()).or_default(),
        ] {
            tally(&mut c.messages, &mut c.logged, &mut c.not_logged, reason, n);
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Messages {
    #[serde(rename = "in")]
    pub inbound: i64,
    #[serde(rename = "out")]
    pub outbound: i64,
    pub noise: i64,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
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
    /// The same by channel (`email`, `form`, `chat`): a chat's first answer is in seconds.
    pub first_response_by_channel: BTreeMap<String, FirstResponse>,
    /// Chats opened in the range whose first answer did not come within
    /// [`MISSED_CHAT_AFTER_S`] (unanswered ones included).
    pub missed_chats: i64,
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

/// One entry of the report's day list: the partition to read, and its inbox (none for the
/// old shared partition of every inbox).
type DayParts = (String, Option<String>);

/// A chat not answered within this many seconds is missed (docs/metrics.md).
pub const MISSED_CHAT_AFTER_S: i64 = 300;

/// Builds a report from the buckets.
pub async fn report(ports: &Ports, ws: &Workspace, f: &Filter, now: DateTime<Utc>) -> anyhow::Result<Report> {
    // The bucket partitions by day, from the day list: an inbox's (or its shards,
    // `keys::report_pk`), or `rpt#{day}` (every inbox's, as versions before
    // docs/scale.md's change 4 wrote).
    let days = ports.table.query_all(Query::new(keys::REPORT_DAYS_PK)).await?;
    let mut parts: BTreeMap<NaiveDate, Vec<DayParts>> = BTreeMap::new();
    for entry in days.iter().filter_map(|d| s(d, "sk")) {
        let (day, inbox) = keys::report_entry(&entry);
        if let Ok(day) = NaiveDate::parse_from_str(day, "%Y-%m-%d") {
            parts.entry(day).or_default().push((format!("rpt#{entry}"), inbox.map(str::to_string)));
        }
    }
    let all: Vec<NaiveDate> = parts.keys().copied().collect();
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
    let mut frt_by_channel: BTreeMap<String, Durations> = BTreeMap::new();
    let mut wait = Durations::default();
    let stale_before = now.timestamp() - r.stale_after_s;
    let mut inboxes = std::collections::BTreeSet::new();
    let want = f.inbox.as_ref().map(|i| i.to_lowercase());
    // The partitions of the range's days this reader reads (an inbox's only if they may see
    // it and the filter wants it), all queried concurrently.
    let seen =
        |inbox: &str| f.visible.as_ref().is_none_or(|v| v.iter().any(|x| x.eq_ignore_ascii_case(inbox)));
    let mut pks = Vec::new();
    for (_, ps) in parts.iter().filter(|(d, _)| (first_day..=last_day).contains(*d)) {
        for (pk, inbox) in ps {
            if let Some(inbox) = inbox {
                if !seen(inbox) {
                    continue;
                }
                inboxes.insert(inbox.clone());
                if want.as_ref().is_some_and(|w| w != inbox) {
                    continue;
                }
            }
            pks.push(pk.clone());
        }
    }
    let fetched: Vec<Vec<String>> = futures::stream::iter(pks)
        .map(|pk| async move { ports.table.query_all_json(Query::new(pk).sk(SkCond::All)).await })
        .buffered(16)
        .try_collect()
        .await?;
    let now_s = now.timestamp();
    for text in fetched.iter().flatten() {
        r.buckets_read += 1;
        let b = Bucket::from_json(text).map_err(|e| anyhow::anyhow!("corrupt report bucket: {e}"))?;
        let inbox = b.inbox.unwrap_or_default();
        if let Some(v) = &f.visible
            && !v.iter().any(|x| x.eq_ignore_ascii_case(&inbox))
        {
            continue;
        }
        if !inboxes.contains(&inbox) {
            inboxes.insert(inbox.clone());
        }
        if want.as_ref().is_some_and(|w| *w != inbox) {
            continue;
        }
        // The bucket's hour, in the report's zone.
        let Some(at) = b.hour.as_deref().and_then(bucket_hour) else { continue };
        if at < start || at >= end {
            continue;
        }
        let at = at.with_timezone(&tz);
        let key = at.date_naive().to_string();
        let hour = at.hour();
        let channel = b.channel.unwrap_or_else(|| CHANNEL_EMAIL.into());
        // The first-response figures of the bucket's channel, looked up once per bucket.
        let mut frt_channel = b
            .counts
            .iter()
            .any(|(a, _)| matches!(a, Attr::Frt(_)))
            .then(|| frt_by_channel.entry(channel.clone()).or_default());
        for (attr, n) in b.counts {
            match attr {
                Attr::Unlogged(reason) => r.email_log.count(&inbox, &key, Some(&reason), n),
                Attr::Logged => r.email_log.count(&inbox, &key, None, n),
                Attr::TeamOpened(team) => *r.teams.entry(team).or_default() += n,
                Attr::Agent(what, agent) => {
                    let a = r.agents.entry(agent).or_default();
                    match what {
                        AgentCount::Assigned => a.assigned += n,
                        AgentCount::Replied => a.replied += n,
                        AgentCount::Closed => a.closed += n,
                    }
                }
                Attr::Opened => {
                    r.volume.total += n;
                    *r.volume.by_inbox.entry(inbox.clone()).or_default() += n;
                    *r.volume.by_day.entry(key.clone()).or_default() += n;
                    *r.volume.by_hour_of_day.entry(hour.to_string()).or_default() += n;
                    *r.volume.by_channel.entry(channel.clone()).or_default() += n;
                    r.open_closed_by_day.entry(key.clone()).or_default().opened += n;
                }
                Attr::Closed => r.open_closed_by_day.entry(key.clone()).or_default().closed += n,
                Attr::MsgOut => r.messages.outbound += n,
                Attr::MsgIn => r.messages.inbound += n,
                Attr::MsgNoise => r.messages.noise += n,
                Attr::OpenNow => r.open += n,
                Attr::ClosedNow => r.closed += n,
                Attr::Unassigned => r.unassigned += n,
                Attr::Tickets => r.tickets_created += n,
                Attr::Frt(d) => {
                    frt.count(d, n);
                    if let Some(c) = frt_channel.as_deref_mut() {
                        c.count(d, n);
                    }
                }
                Attr::Wait(d) => wait.count(d, n),
                Attr::WaitingSince(t) => {
                    if t <= stale_before {
                        r.stale += n;
                    }
                }
                Attr::Sla(target, status) => {
                    let c = match target {
                        SlaTarget::All => &mut r.sla.all,
                        SlaTarget::FirstResponse => &mut r.sla.first_response,
                        SlaTarget::TimeToClose => &mut r.sla.time_to_close,
                    };
                    c.count(status, n, now_s);
                }
                Attr::Other => {}
            }
        }
    }
    r.agents.retain(|_, a| *a != AgentFigures::default());
    r.first_response = frt.finish();
    r.first_response_by_channel = frt_by_channel.iter().map(|(c, d)| (c.clone(), d.finish())).collect();
    let chats = r.volume.by_channel.get("chat").copied().unwrap_or(0);
    let in_time = frt_by_channel.get("chat").map_or(0, |d| d.within(MISSED_CHAT_AFTER_S));
    r.missed_chats = (chats - in_time).max(0);
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

/// A bucket's `hour` attribute (`YYYY-MM-DDTHH`, UTC) as an instant.
fn bucket_hour(h: &str) -> Option<DateTime<Utc>> {
    let (day, hour) = h.split_once('T')?;
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(hour.parse().ok()?, 0, 0)?.and_utc())
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
pub(super) fn local_midnight(tz: chrono_tz::Tz, d: NaiveDate) -> DateTime<Utc> {
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
pub(super) struct Durations {
    n: i64,
    sum: i64,
    bsum: i64,
    hist: BTreeMap<i64, i64>,
    bhist: BTreeMap<i64, i64>,
}

impl Durations {
    fn count(&mut self, d: Dur, n: i64) {
        match d {
            Dur::N => self.n += n,
            Dur::Sum => self.sum += n,
            Dur::BusinessSum => self.bsum += n,
            Dur::Bin(i) => *self.hist.entry(i).or_default() += n,
            Dur::BusinessBin(i) => *self.bhist.entry(i).or_default() += n,
            Dur::Other => {}
        }
    }

    /// How many took at most `secs` (by the histogram's bins).
    fn within(&self, secs: i64) -> i64 {
        self.hist.iter().filter(|(i, _)| hist_value(**i) <= secs as f64).map(|(_, c)| c).sum()
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
pub(super) fn percentile(h: &BTreeMap<i64, i64>, p: f64) -> Option<f64> {
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
pub(super) fn coarse(h: &BTreeMap<i64, i64>) -> Vec<HistBar> {
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
