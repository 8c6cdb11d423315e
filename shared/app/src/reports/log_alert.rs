//! Email-log alerts: once a day, each configured inbox's last complete day (UTC) is
//! compared with the seven days before it, from the report's email-log figures. An inbox
//! that received mail every day and then none (`stopped`), or whose share of messages
//! logged on the CRM fell sharply (`share_dropped`), gets one `email_log_alert` event,
//! which the notifications send to the inbox's owner (individual) or the admins
//! (docs/metrics.md, "Email log alerts").

use super::*;
use crate::feed::{self, Subject};
use crate::keys;
use crate::runtime::ports::Ports;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use mailroom_core::EmailAddress;
use mailroom_core::workspace::Workspace;
use mailroom_store::Key;
use serde::Serialize;

/// `stopped`: the seven days before had at least this many messages a day on average.
pub const STOPPED_MIN_PER_DAY: i64 = 5;
/// `share_dropped`: the day had at least this many messages, the seven days before at
/// least [`DROP_MIN_BASELINE`], and the logged share fell by at least [`DROP_POINTS`].
pub const DROP_MIN_DAY: i64 = 20;
pub const DROP_MIN_BASELINE: i64 = 50;
pub const DROP_POINTS: f64 = 0.25;

/// One inbox's figures over a stretch of days.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LogFigures {
    pub messages: i64,
    pub logged: i64,
}

impl LogFigures {
    fn share(&self) -> Option<f64> {
        (self.messages > 0).then(|| self.logged as f64 / self.messages as f64)
    }
}

/// An alert raised for an inbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogAlert {
    pub inbox: String,
    /// `stopped` or `share_dropped`.
    pub kind: &'static str,
    /// The day judged (UTC).
    pub day: NaiveDate,
    pub day_figures: LogFigures,
    /// The seven days before it.
    pub baseline: LogFigures,
}

/// What the day's figures say against the baseline, if anything.
pub fn judge(day: LogFigures, baseline: LogFigures) -> Option<&'static str> {
    if day.messages == 0 && baseline.messages >= 7 * STOPPED_MIN_PER_DAY {
        return Some("stopped");
    }
    if day.messages >= DROP_MIN_DAY
        && baseline.messages >= DROP_MIN_BASELINE
        && let (Some(d), Some(b)) = (day.share(), baseline.share())
        && b - d >= DROP_POINTS
    {
        return Some("share_dropped");
    }
    None
}

/// Every inbox's email-log figures over days `from` to `to` (UTC), from one report.
async fn figures(
    ports: &Ports,
    ws: &Workspace,
    from: NaiveDate,
    to: NaiveDate,
    now: DateTime<Utc>,
) -> anyhow::Result<std::collections::BTreeMap<String, LogFigures>> {
    let f = Filter { from: Some(from), to: Some(to), tz: Some(chrono_tz::UTC), inbox: None, visible: None };
    let r = report(ports, ws, &f, now).await?;
    Ok(r.email_log
        .by_inbox
        .into_iter()
        .map(|(inbox, c)| (inbox, LogFigures { messages: c.messages, logged: c.logged }))
        .collect())
}

/// Judges yesterday (UTC) for every configured inbox, once per day: a marker item per
/// day says it was done (written last, so a run that failed is done again; the events
/// are written once whatever the runs). Each alert is an `email_log_alert` event on the
/// inbox.
pub async fn check(ports: &Ports, ws: &Workspace, now: DateTime<Utc>) -> anyhow::Result<Vec<LogAlert>> {
    let day = (now - Duration::days(1)).date_naive();
    let marker = Key::new(keys::LOG_ALERT_CHECK_PK, day.to_string());
    if ports.table.get(&marker).await?.is_some() {
        return Ok(Vec::new());
    }
    let days = figures(ports, ws, day, day, now).await?;
    let weeks = figures(ports, ws, day - Duration::days(7), day - Duration::days(1), now).await?;
    let mut out = Vec::new();
    for inbox in &ws.inboxes {
        let Ok(addr) = EmailAddress::parse(&inbox.address) else { continue };
        let key = addr.key();
        let day_figures = days.get(&key).copied().unwrap_or_default();
        let baseline = weeks.get(&key).copied().unwrap_or_default();
        let Some(kind) = judge(day_figures, baseline) else { continue };
        let alert = LogAlert { inbox: key.clone(), kind, day, day_figures, baseline };
        let data = serde_json::to_value(&alert)?;
        feed::emit_once(ports, Subject::Inbox(&addr), "email_log_alert", &format!("{kind}-{day}"), data)
            .await?;
        tracing::warn!(inbox = %key, kind, %day, ?day_figures, ?baseline, "email log alert");
        out.push(alert);
    }
    ports.table.put(marker.item(), None).await?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(messages: i64, logged: i64) -> LogFigures {
        LogFigures { messages, logged }
    }

    #[test]
    fn stopped_and_dropped_need_a_baseline() {
        assert_eq!(judge(f(0, 0), f(70, 60)), Some("stopped"));
        assert_eq!(judge(f(0, 0), f(34, 30)), None, "too little mail before to tell");
        assert_eq!(judge(f(20, 5), f(70, 63)), Some("share_dropped"));
        assert_eq!(judge(f(20, 14), f(70, 63)), None, "a fall under 25 points");
        assert_eq!(judge(f(19, 0), f(70, 63)), None, "too few messages in the day");
        assert_eq!(judge(f(20, 0), f(49, 49)), None, "too few messages before");
        assert_eq!(judge(f(30, 30), f(70, 0)), None, "a rise is no alert");
    }
}
