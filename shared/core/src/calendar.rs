//! Business-hours calendars: weekly open hours in an IANA time zone, minus holidays.
//!
//! Business time is the number of real (elapsed) seconds whose wall-clock time in the
//! calendar's zone falls inside an open interval of its local date, on a local date that
//! is not a holiday. The zone's real rules decide the wall-clock time of every instant,
//! so daylight saving time needs no special case: on a spring-forward day the local hour
//! that does not exist is never open (`00:00-24:00` is 23 hours, `08:00-18:00` around a
//! 02:00 gap is still 10 hours), and on a fall-back day the local hour that happens twice
//! is open twice when it is inside an interval (`00:00-24:00` is 25 hours).
//!
//! The computations walk the time line in pieces of constant UTC offset and, within each,
//! local day by local day, so a span of months costs a few hundred steps.

use chrono::{DateTime, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use std::collections::{BTreeMap, BTreeSet};

/// The day keys of `hours`, Monday first (the index is `Weekday::num_days_from_monday`).
pub const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

const DAY: i64 = 86_400;
/// The stride at which UTC offset changes are looked for (then found to the second by
/// bisection). Two changes that cancel out within one stride would be missed; no zone
/// has had such a pair in the period a helpdesk deals with.
const PROBE: i64 = 6 * 3600;
/// Time is walked within the years 0000 to 9999 (Unix seconds of 0000-01-01T00:00:00Z
/// and 9999-12-31T23:59:59Z); nothing is open outside them.
const MIN_TS: i64 = -62_167_219_200;
const MAX_TS: i64 = 253_402_300_799;
/// The longest piece of time line searched for an offset change at once.
const CHUNK: i64 = 32 * DAY;

/// Weekly open hours in a time zone, with holidays. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    tz: Tz,
    /// Open intervals per weekday (Monday first), in local minutes of the day
    /// `[start, end)`, `end <= 1440`, sorted, not overlapping or touching.
    week: [Vec<(u32, u32)>; 7],
    /// Local dates closed all day.
    holidays: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// Open all the time, in UTC: business time is calendar time.
    pub fn always() -> Calendar {
        Calendar { tz: Tz::UTC, week: std::array::from_fn(|_| vec![(0, 1440)]), holidays: BTreeSet::new() }
    }

    /// A calendar from its configuration: an IANA zone name (`Europe/Berlin`), open hours
    /// per day (`mon` .. `sun`; a missing day or `""` is closed; `"09:00-17:00"`,
    /// `"08:00-12:00,13:00-18:00"`, `"00:00-24:00"`; intervals in order, not overlapping)
    /// and holidays (`YYYY-MM-DD`, local dates closed all day). The error is one line.
    pub fn new(
        time_zone: &str,
        hours: &BTreeMap<String, String>,
        holidays: &[String],
    ) -> Result<Calendar, String> {
        let tz: Tz = time_zone.trim().parse().map_err(|_| {
            format!("unknown time zone {time_zone:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\"")
        })?;
        let mut week: [Vec<(u32, u32)>; 7] = Default::default();
        for (day, spec) in hours {
            let Some(i) = DAYS.iter().position(|d| d == day) else {
                return Err(format!("unknown day {day:?}: use {}", DAYS.join(", ")));
            };
            week[i] = parse_day(spec).map_err(|e| format!("{day} = {spec:?}: {e}"))?;
        }
        let mut days = BTreeSet::new();
        for h in holidays {
            days.insert(parse_date(h)?);
        }
        Ok(Calendar { tz, week, holidays: days })
    }

    /// The business seconds in `[start, end)` (whole seconds: both ends are truncated to
    /// the second); 0 when `end <= start`.
    pub fn business_seconds(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
        let (a, b) = (start.timestamp(), end.timestamp());
        if b <= a {
            return 0;
        }
        if self.is_always_open() {
            return b - a;
        }
        let mut total = 0;
        self.walk(a, b, |lo, hi| {
            total += hi - lo;
            true
        });
        total
    }

    /// The earliest instant `t >= start` with `business_seconds(start, t) == secs`: the
    /// moment a clock that runs only in open hours, started at `start`, shows `secs`.
    /// `start` itself for `secs <= 0`; `None` when `secs > 0` and the calendar is never
    /// open (no hours on any day), or the instant is past the end of time.
    pub fn add_business_seconds(&self, start: DateTime<Utc>, secs: i64) -> Option<DateTime<Utc>> {
        if secs <= 0 {
            return Some(start);
        }
        if self.week.iter().all(Vec::is_empty) {
            return None;
        }
        let a = start.timestamp();
        if self.is_always_open() {
            return DateTime::from_timestamp(a.checked_add(secs)?, 0);
        }
        let mut left = secs;
        let mut found = None;
        self.walk(a, MAX_TS, |lo, hi| {
            if hi - lo >= left {
                found = Some(lo + left);
                return false;
            }
            left -= hi - lo;
            true
        });
        DateTime::from_timestamp(found?, 0)
    }

    /// Whether `t` is inside open hours.
    pub fn is_open(&self, t: DateTime<Utc>) -> bool {
        let ts = t.timestamp();
        let local = ts + self.offset(ts);
        let (day, sec) = (local.div_euclid(DAY), local.rem_euclid(DAY));
        self.open_intervals(day).iter().any(|&(s, e)| i64::from(s) * 60 <= sec && sec < i64::from(e) * 60)
    }

    /// Open every minute of every day with no holidays: then every zone gives calendar
    /// time (consecutive local days tile the time line).
    fn is_always_open(&self) -> bool {
        self.holidays.is_empty() && self.week.iter().all(|d| d.as_slice() == [(0, 1440)])
    }

    /// The UTC offset in seconds (local minus UTC) at a Unix time.
    fn offset(&self, ts: i64) -> i64 {
        match DateTime::from_timestamp(ts, 0) {
            Some(t) => i64::from(self.tz.offset_from_utc_datetime(&t.naive_utc()).fix().local_minus_utc()),
            None => 0,
        }
    }

    /// The first second in `(from, limit)` whose offset differs from the offset at
    /// `from`, or `limit`.
    fn next_change(&self, from: i64, limit: i64) -> i64 {
        if self.tz == Tz::UTC {
            return limit;
        }
        let off = self.offset(from);
        let mut lo = from;
        while lo < limit {
            let hi = lo.saturating_add(PROBE).min(limit);
            if self.offset(hi) != off {
                // offset(lo) == off != offset(hi): bisect to the first second of the change.
                let mut hi = hi;
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if self.offset(mid) == off {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                return hi;
            }
            lo = hi;
        }
        limit
    }

    /// The open intervals of a local day (days since 1970-01-01): none on a holiday.
    fn open_intervals(&self, day: i64) -> &[(u32, u32)] {
        // 1970-01-01 was a Thursday (index 3 from Monday).
        let weekday = (day + 3).rem_euclid(7) as usize;
        let intervals = &self.week[weekday];
        if intervals.is_empty() || self.holidays.is_empty() {
            return intervals;
        }
        let holiday =
            DateTime::from_timestamp(day * DAY, 0).is_some_and(|t| self.holidays.contains(&t.date_naive()));
        if holiday { &[] } else { intervals }
    }

    /// Calls `f(lo, hi)` for every maximal piece `[lo, hi)` of open time inside `[a, b)`
    /// (Unix seconds), in order, until it returns false.
    fn walk(&self, a: i64, b: i64, mut f: impl FnMut(i64, i64) -> bool) {
        let (a, b) = (a.max(MIN_TS), b.min(MAX_TS));
        let mut cursor = a;
        while cursor < b {
            // [cursor, seg_end) has one UTC offset: local time = Unix time + off.
            let seg_end = self.next_change(cursor, b.min(cursor + CHUNK));
            let off = self.offset(cursor);
            let (lo, hi) = (cursor + off, seg_end + off);
            let mut day = lo.div_euclid(DAY);
            while day * DAY < hi {
                for &(s, e) in self.open_intervals(day) {
                    let open = (day * DAY + i64::from(s) * 60).max(lo);
                    let close = (day * DAY + i64::from(e) * 60).min(hi);
                    if open < close && !f(open - off, close - off) {
                        return;
                    }
                }
                day += 1;
            }
            cursor = seg_end;
        }
    }
}

/// `"08:00-12:00,13:00-18:00"` → `[(480, 720), (780, 1080)]`; `""` → closed. Touching
/// intervals are merged.
fn parse_day(spec: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    if spec.trim().is_empty() {
        return Ok(out);
    }
    for part in spec.split(',') {
        let part = part.trim();
        let bad = || format!("invalid interval {part:?}: use HH:MM-HH:MM, e.g. \"09:00-17:00\"");
        let (s, e) = part.split_once('-').ok_or_else(bad)?;
        let (s, e) = (parse_clock(s.trim()).ok_or_else(bad)?, parse_clock(e.trim()).ok_or_else(bad)?);
        if s >= e {
            return Err(format!("interval {part:?} ends before it starts"));
        }
        if s == 1440 {
            return Err(format!("interval {part:?} starts at 24:00"));
        }
        match out.last_mut() {
            Some(last) if s < last.1 => {
                return Err(format!("interval {part:?} overlaps or precedes the one before it"));
            }
            Some(last) if s == last.1 => last.1 = e,
            _ => out.push((s, e)),
        }
    }
    Ok(out)
}

/// `"HH:MM"` (the hour may have one digit; `24:00` is the end of the day) → minutes.
fn parse_clock(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    if !(digits(h) && h.len() <= 2 && digits(m) && m.len() == 2) {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// A `YYYY-MM-DD` date.
fn parse_date(s: &str) -> Result<NaiveDate, String> {
    let shape = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) if shape => Ok(d),
        _ => Err(format!("invalid holiday {s:?}: use a date YYYY-MM-DD, e.g. \"2024-12-25\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Duration, NaiveDateTime, Timelike};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn hours(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn weekdays(span: &str) -> BTreeMap<String, String> {
        hours(&[("mon", span), ("tue", span), ("wed", span), ("thu", span), ("fri", span)])
    }

    fn cal(tz: &str, h: &BTreeMap<String, String>, holidays: &[&str]) -> Calendar {
        let holidays: Vec<String> = holidays.iter().map(|s| s.to_string()).collect();
        Calendar::new(tz, h, &holidays).unwrap_or_else(|e| panic!("{e}"))
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc)
    }

    /// A local wall-clock time in a zone (the earlier instant when it happens twice).
    fn local(tz: &str, s: &str) -> DateTime<Utc> {
        let tz: Tz = tz.parse().unwrap();
        let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        tz.from_local_datetime(&naive).earliest().unwrap().with_timezone(&Utc)
    }

    const H: i64 = 3600;

    /// Independent: steps through every UTC minute and asks chrono-tz for its wall-clock
    /// time; every offset involved is whole minutes, so a UTC minute is open or closed as
    /// a whole.
    fn brute_force(c: &Calendar, week: &BTreeMap<String, String>, holidays: &[&str], a: i64, b: i64) -> i64 {
        let holidays: BTreeSet<NaiveDate> =
            holidays.iter().map(|h| NaiveDate::parse_from_str(h, "%Y-%m-%d").unwrap()).collect();
        let mut total = 0;
        let mut m = a.div_euclid(60) * 60;
        while m < b {
            let t = DateTime::from_timestamp(m, 0).unwrap().with_timezone(&c.tz);
            let day = DAYS[t.date_naive().weekday().num_days_from_monday() as usize];
            let minute = t.hour() * 60 + t.minute();
            let open = !holidays.contains(&t.date_naive())
                && week.get(day).is_some_and(|spec| {
                    spec.split(',').filter(|p| !p.trim().is_empty()).any(|p| {
                        let (s, e) = p.trim().split_once('-').unwrap();
                        let clock = |x: &str| {
                            let (h, mm) = x.split_once(':').unwrap();
                            h.parse::<u32>().unwrap() * 60 + mm.parse::<u32>().unwrap()
                        };
                        clock(s) <= minute && minute < clock(e)
                    })
                });
            if open {
                total += (m + 60).min(b) - m.max(a);
            }
            m += 60;
        }
        total
    }

    #[test]
    fn always_is_calendar_time() {
        let c = Calendar::always();
        let (a, b) = (utc("2024-03-30T12:00:00Z"), utc("2024-04-02T12:00:30Z"));
        assert_eq!(c.business_seconds(a, b), 3 * 24 * H + 30);
        assert_eq!(c.business_seconds(b, a), 0);
        assert_eq!(c.add_business_seconds(a, 3 * 24 * H + 30), Some(b));
        assert!(c.is_open(a));
        // 00:00-24:00 every day in any zone is calendar time too, DST or not.
        let berlin = cal("Europe/Berlin", &hours(&DAYS.map(|d| (d, "00:00-24:00"))), &[]);
        assert_eq!(berlin.business_seconds(a, b), 3 * 24 * H + 30);
    }

    #[test]
    fn weekends_and_intervals() {
        let c = cal("UTC", &weekdays("09:00-17:00"), &[]);
        // Friday 2024-03-01 16:00 to Monday 2024-03-04 10:00: 1 h + 1 h.
        assert_eq!(c.business_seconds(utc("2024-03-01T16:00:00Z"), utc("2024-03-04T10:00:00Z")), 2 * H);
        // Saturday to Sunday: nothing.
        assert_eq!(c.business_seconds(utc("2024-03-02T00:00:00Z"), utc("2024-03-04T00:00:00Z")), 0);
        // Both ends before opening / after closing on the same day.
        assert_eq!(c.business_seconds(utc("2024-03-04T06:00:00Z"), utc("2024-03-04T20:00:00Z")), 8 * H);
        // Both inside.
        assert_eq!(c.business_seconds(utc("2024-03-04T10:15:00Z"), utc("2024-03-04T10:45:10Z")), 1810);
        // Both outside, on the same closed stretch.
        assert_eq!(c.business_seconds(utc("2024-03-04T18:00:00Z"), utc("2024-03-05T08:00:00Z")), 0);
        assert!(c.is_open(utc("2024-03-04T09:00:00Z")));
        assert!(c.is_open(utc("2024-03-04T16:59:59Z")));
        assert!(!c.is_open(utc("2024-03-04T17:00:00Z")));
        assert!(!c.is_open(utc("2024-03-02T12:00:00Z")));
        // Split days.
        let c = cal("UTC", &hours(&[("mon", "08:00-12:00, 13:00-18:00"), ("sat", "")]), &[]);
        assert_eq!(c.business_seconds(utc("2024-03-04T00:00:00Z"), utc("2024-03-05T00:00:00Z")), 9 * H);
        assert_eq!(c.business_seconds(utc("2024-03-04T11:30:00Z"), utc("2024-03-04T13:30:00Z")), H);
        assert!(!c.is_open(utc("2024-03-04T12:30:00Z")));
    }

    #[test]
    fn many_weeks() {
        let c = cal("UTC", &weekdays("09:00-17:00"), &[]);
        // 2024-01-01 is a Monday: 52 weeks of 40 h.
        let a = utc("2024-01-01T00:00:00Z");
        assert_eq!(c.business_seconds(a, a + Duration::weeks(52)), 52 * 40 * H);
        assert_eq!(c.add_business_seconds(a, 52 * 40 * H), Some(utc("2024-12-27T17:00:00Z")));
        // Berlin over a year with its two DST changes: still 40 h a week (no interval
        // touches 02:00-03:00).
        let b = cal("Europe/Berlin", &weekdays("08:00-18:00"), &[]);
        let a = local("Europe/Berlin", "2024-01-01 00:00");
        let z = local("Europe/Berlin", "2024-12-30 00:00");
        assert_eq!(b.business_seconds(a, z), 52 * 50 * H);
    }

    #[test]
    fn holidays_are_closed_in_local_time() {
        let c = cal("Europe/Berlin", &weekdays("08:00-18:00"), &["2024-03-29", "2024-04-01"]);
        // Thursday 2024-03-28 to Wednesday 2024-04-03 (Berlin is UTC+1, then +2 from 31 March).
        let a = local("Europe/Berlin", "2024-03-28 00:00");
        let z = local("Europe/Berlin", "2024-04-03 00:00");
        assert_eq!(c.business_seconds(a, z), 2 * 10 * H);
        assert!(!c.is_open(local("Europe/Berlin", "2024-03-29 12:00")));
        // 18:00 on Thursday + 1 s of business time = Tuesday 08:00:01 local.
        assert_eq!(
            c.add_business_seconds(local("Europe/Berlin", "2024-03-28 17:00"), H + 1),
            Some(local("Europe/Berlin", "2024-04-02 08:00") + Duration::seconds(1))
        );
        // A holiday in the zone's local date, not in UTC: Kolkata's 1 May starts at
        // 18:30 UTC on 30 April.
        let k = cal("Asia/Kolkata", &hours(&DAYS.map(|d| (d, "00:00-24:00"))), &["2024-05-01"]);
        assert!(k.is_open(utc("2024-04-30T18:29:59Z")));
        assert!(!k.is_open(utc("2024-04-30T18:30:00Z")));
        assert!(k.is_open(utc("2024-05-01T18:30:00Z")));
        assert_eq!(k.business_seconds(utc("2024-04-30T00:00:00Z"), utc("2024-05-02T00:00:00Z")), 24 * H);
    }

    #[test]
    fn kolkata_half_hour_offset() {
        let c = cal("Asia/Kolkata", &weekdays("09:00-17:30"), &[]);
        // 09:00 IST = 03:30 UTC, 17:30 IST = 12:00 UTC.
        assert!(!c.is_open(utc("2024-03-04T03:29:59Z")));
        assert!(c.is_open(utc("2024-03-04T03:30:00Z")));
        assert!(!c.is_open(utc("2024-03-04T12:00:00Z")));
        assert_eq!(c.business_seconds(utc("2024-03-04T00:00:00Z"), utc("2024-03-04T04:00:00Z")), 1800);
        assert_eq!(
            c.add_business_seconds(utc("2024-03-04T00:00:00Z"), 60),
            Some(utc("2024-03-04T03:31:00Z"))
        );
        // Friday 11:00 UTC + 2 h: 1 h on Friday, 1 h from Monday 09:00 IST.
        assert_eq!(
            c.add_business_seconds(utc("2024-03-08T11:00:00Z"), 2 * H),
            Some(utc("2024-03-11T04:30:00Z"))
        );
    }

    #[test]
    fn berlin_dst() {
        let tz = "Europe/Berlin";
        // 2024-03-31: 02:00 CET -> 03:00 CEST. 2024-10-27: 03:00 CEST -> 02:00 CET.
        let full = cal(tz, &hours(&DAYS.map(|d| (d, "00:00-24:00"))), &["2024-01-01"]);
        let day = |c: &Calendar, d: &str, next: &str| {
            c.business_seconds(local(tz, &format!("{d} 00:00")), local(tz, &format!("{next} 00:00")))
        };
        assert_eq!(day(&full, "2024-03-31", "2024-04-01"), 23 * H);
        assert_eq!(day(&full, "2024-10-27", "2024-10-28"), 25 * H);
        assert_eq!(day(&full, "2024-10-28", "2024-10-29"), 24 * H);
        let every = cal(tz, &hours(&DAYS.map(|d| (d, "08:00-18:00"))), &[]);
        assert_eq!(day(&every, "2024-03-31", "2024-04-01"), 10 * H);
        assert_eq!(day(&every, "2024-10-27", "2024-10-28"), 10 * H);
        // Intervals that touch the gap or the repeated hour.
        let night = cal(tz, &hours(&DAYS.map(|d| (d, "01:00-04:00"))), &[]);
        assert_eq!(day(&night, "2024-03-31", "2024-04-01"), 2 * H);
        assert_eq!(day(&night, "2024-10-27", "2024-10-28"), 4 * H);
        let gap = cal(tz, &hours(&DAYS.map(|d| (d, "02:15-02:45"))), &[]);
        assert_eq!(day(&gap, "2024-03-31", "2024-04-01"), 0);
        assert_eq!(day(&gap, "2024-10-27", "2024-10-28"), H);
        // 01:30 UTC on 31 March is 03:30 CEST: open; the hour before it does not exist.
        assert!(night.is_open(utc("2024-03-31T01:30:00Z")));
        assert_eq!(night.business_seconds(utc("2024-03-31T00:00:00Z"), utc("2024-03-31T01:00:00Z")), H);
        // Crossing the change inside an open interval.
        assert_eq!(
            night.add_business_seconds(utc("2024-03-31T00:30:00Z"), H),
            Some(utc("2024-03-31T01:30:00Z"))
        );
        assert_eq!(
            night.add_business_seconds(utc("2024-10-27T00:30:00Z"), H),
            Some(utc("2024-10-27T01:30:00Z"))
        );
    }

    #[test]
    fn new_york_dst() {
        let tz = "America/New_York";
        // 2024-03-10: 02:00 EST -> 03:00 EDT. 2024-11-03: 02:00 EDT -> 01:00 EST.
        let full = cal(tz, &hours(&DAYS.map(|d| (d, "00:00-24:00"))), &["2020-01-01"]);
        let day = |c: &Calendar, d: &str, next: &str| {
            c.business_seconds(local(tz, &format!("{d} 00:00")), local(tz, &format!("{next} 00:00")))
        };
        assert_eq!(day(&full, "2024-03-10", "2024-03-11"), 23 * H);
        assert_eq!(day(&full, "2024-11-03", "2024-11-04"), 25 * H);
        let every = cal(tz, &hours(&DAYS.map(|d| (d, "08:00-18:00"))), &[]);
        assert_eq!(day(&every, "2024-03-10", "2024-03-11"), 10 * H);
        assert_eq!(day(&every, "2024-11-03", "2024-11-04"), 10 * H);
        let early = cal(tz, &hours(&DAYS.map(|d| (d, "00:30-03:00"))), &[]);
        assert_eq!(day(&early, "2024-03-10", "2024-03-11"), 90 * 60);
        assert_eq!(day(&early, "2024-11-03", "2024-11-04"), 210 * 60);
        // 9-17 on weekdays, the week of the spring change: 5 x 8 h.
        let office = cal(tz, &weekdays("09:00-17:00"), &[]);
        assert_eq!(
            office.business_seconds(local(tz, "2024-03-09 00:00"), local(tz, "2024-03-16 00:00")),
            40 * H
        );
        // Friday 16:00 EST + 2 h = Monday 10:00 EDT.
        assert_eq!(
            office.add_business_seconds(local(tz, "2024-03-08 16:00"), 2 * H),
            Some(local(tz, "2024-03-11 10:00"))
        );
    }

    #[test]
    fn add_is_the_inverse() {
        let c = cal("Europe/Berlin", &weekdays("08:00-12:00,13:00-18:00"), &["2024-03-29", "2024-04-01"]);
        let a = utc("2024-03-27T15:20:13Z");
        for secs in [0, 1, 59, 3600, 2 * 3600 + 1, 9 * 3600, 30 * 3600, 100 * 3600, 1000 * 3600] {
            let t = c.add_business_seconds(a, secs).unwrap();
            assert_eq!(c.business_seconds(a, t), secs, "{secs}");
            if secs > 0 {
                // The earliest such instant: a second less is not enough.
                assert_eq!(c.business_seconds(a, t - Duration::seconds(1)), secs - 1, "{secs}");
            }
        }
        // Ends at the close of an interval, not at the next opening.
        let t = c.add_business_seconds(utc("2024-03-27T10:00:00Z"), H).unwrap();
        assert_eq!(t, utc("2024-03-27T11:00:00Z"));
        assert_eq!(c.add_business_seconds(a, -5), Some(a));
    }

    #[test]
    fn never_open() {
        let c = cal("Europe/Berlin", &hours(&[("mon", ""), ("sun", " ")]), &[]);
        let a = utc("2024-03-27T15:20:13Z");
        assert_eq!(c.add_business_seconds(a, 0), Some(a));
        assert_eq!(c.add_business_seconds(a, 1), None);
        assert_eq!(c.business_seconds(a, a + Duration::days(400)), 0);
        assert!(!c.is_open(a));
    }

    #[test]
    fn configuration_errors() {
        let err = |tz: &str, h: &[(&str, &str)], hol: &[&str]| {
            let hol: Vec<String> = hol.iter().map(|s| s.to_string()).collect();
            Calendar::new(tz, &hours(h), &hol).unwrap_err()
        };
        assert!(err("Europe/Berln", &[], &[]).starts_with("unknown time zone \"Europe/Berln\""));
        assert!(err("UTC", &[("monday", "09:00-17:00")], &[]).starts_with("unknown day \"monday\""));
        for bad in ["9-17", "09:00", "09:00-17:60", "25:00-26:00", "09:00-17:00;", "09.00-17.00", "-"] {
            assert!(err("UTC", &[("mon", bad)], &[]).contains("invalid interval"), "{bad}");
        }
        assert!(err("UTC", &[("tue", "17:00-09:00")], &[]).contains("ends before it starts"));
        assert!(err("UTC", &[("tue", "09:00-09:00")], &[]).contains("ends before it starts"));
        assert!(err("UTC", &[("tue", "24:00-24:00")], &[]).contains("ends before it starts"));
        assert!(err("UTC", &[("wed", "08:00-12:00,11:00-18:00")], &[]).contains("overlaps"));
        assert!(err("UTC", &[("wed", "13:00-18:00,08:00-12:00")], &[]).contains("overlaps"));
        for bad in ["2024-3-29", "2024-02-30", "29.03.2024", "", "2024-03-29x"] {
            assert!(err("UTC", &[], &[bad]).starts_with("invalid holiday"), "{bad}");
        }
        for e in [err("UTC", &[("wed", "08:00-12:00,11:00-18:00")], &[]), err("Nowhere", &[], &[])] {
            assert!(!e.contains('\n'), "{e}");
        }
        // Accepted forms.
        let ok = cal("UTC", &hours(&[("mon", "9:00-12:00,12:00-17:00"), ("tue", "00:00-24:00")]), &[]);
        assert_eq!(ok.week[0], vec![(540, 1020)]);
        assert_eq!(ok.week[1], vec![(0, 1440)]);
        assert!(ok.week[2].is_empty());
    }

    #[test]
    fn subsecond_instants() {
        let c = cal("UTC", &weekdays("09:00-17:00"), &[]);
        let a = utc("2024-03-04T10:00:00.700Z");
        assert_eq!(c.business_seconds(a, utc("2024-03-04T10:00:10.200Z")), 10);
        let t = c.add_business_seconds(a, 10).unwrap();
        assert!(t >= a);
        assert_eq!(c.business_seconds(a, t), 10);
    }

    #[test]
    fn randomized_against_brute_force() {
        let zones = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "UTC"];
        let specs: [&[(&str, &str)]; 4] = [
            &[("mon", "08:00-18:00"), ("tue", "08:00-18:00"), ("wed", "08:00-18:00"), ("thu", "08:00-18:00")],
            &[("mon", "00:00-24:00"), ("sat", "01:30-02:30,02:45-03:15"), ("sun", "00:00-03:00,22:00-24:00")],
            &[("tue", "02:00-03:00"), ("wed", "00:00-01:00,23:00-24:00"), ("fri", "09:00-12:00,13:00-17:30")],
            &[("mon", "01:00-02:00"), ("sun", "00:00-24:00"), ("sat", "00:15-02:45")],
        ];
        let holidays = ["2024-03-31", "2024-10-27", "2024-11-03", "2024-04-07"];
        // DST changes of 2024 in these zones, and random instants around them.
        let pivots = [
            utc("2024-03-10T07:00:00Z"),
            utc("2024-03-31T01:00:00Z"),
            utc("2024-04-06T16:00:00Z"),
            utc("2024-10-06T16:00:00Z"),
            utc("2024-10-27T01:00:00Z"),
            utc("2024-11-03T06:00:00Z"),
        ];
        let mut rng = StdRng::seed_from_u64(0x5EED_CA1E);
        for round in 0..300 {
            let zone = zones[rng.random_range(0..zones.len())];
            let week = hours(specs[rng.random_range(0..specs.len())]);
            let hol: Vec<&str> = holidays.iter().copied().filter(|_| rng.random_bool(0.5)).collect();
            let c = cal(zone, &week, &hol);
            let pivot = pivots[rng.random_range(0..pivots.len())].timestamp();
            let a = pivot + rng.random_range(-4 * DAY..2 * DAY);
            let len = if rng.random_bool(0.2) {
                rng.random_range(0..40 * DAY)
            } else {
                rng.random_range(0..3 * DAY)
            };
            let b = a + len;
            let (ta, tb) = (DateTime::from_timestamp(a, 0).unwrap(), DateTime::from_timestamp(b, 0).unwrap());
            let want = brute_force(&c, &week, &hol, a, b);
            assert_eq!(c.business_seconds(ta, tb), want, "round {round}: {zone} {week:?} {hol:?} {ta} {tb}");
            let t = c.add_business_seconds(ta, want).unwrap();
            assert!(t <= tb, "round {round}");
            assert_eq!(c.business_seconds(ta, t), want, "round {round}");
            if want > 0 {
                assert_eq!(c.business_seconds(ta, t - Duration::seconds(1)), want - 1, "round {round}");
                assert!(c.is_open(t - Duration::seconds(1)), "round {round}");
            }
            // is_open agrees with the brute force at a few instants.
            for _ in 0..5 {
                let x = rng.random_range(a..b.max(a + 1));
                let open = brute_force(&c, &week, &hol, x, x + 1) == 1;
                let tx = DateTime::from_timestamp(x, 0).unwrap();
                assert_eq!(c.is_open(tx), open, "round {round}: {zone} {week:?} {tx}");
            }
        }
    }
}
