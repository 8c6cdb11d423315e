//! A bucket item as a report reads it: decoded from its JSON text straight into its
//! dimensions and classified counters. At 100,000 conversations most of a report's time
//! was building a `serde_json` map per bucket (a string per attribute) and then matching
//! the attribute names again in the fold (docs/performance.md); here each name is matched
//! once, as it is read, and only the names of agents, teams and reasons are kept as text.
//!
//! Hand-written `Deserialize` rather than a derived one: the attribute names are data
//! (`frt_h12`, `assigned|a:ana`), not fields.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// One bucket: `hour` (`YYYY-MM-DDTHH`, UTC), `inbox`, `channel`, and its non-zero integer
/// counters in the order stored.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Bucket {
    pub hour: Option<String>,
    pub inbox: Option<String>,
    pub channel: Option<String>,
    pub counts: Vec<(Attr, i64)>,
}

/// What a counter counts (docs/metrics.md lists the attributes).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Attr {
    Opened,
    MsgIn,
    MsgOut,
    MsgNoise,
    Logged,
    /// `unlogged|{reason}`.
    Unlogged(String),
    Closed,
    OpenNow,
    ClosedNow,
    Unassigned,
    Tickets,
    /// `opened|t:{team}`.
    TeamOpened(String),
    /// `{assigned,msg_out,closed}|a:{agent}`.
    Agent(AgentCount, String),
    /// `frt{rest}`: first response.
    Frt(Dur),
    /// `wait{rest}`: wait time.
    Wait(Dur),
    /// `wait@{t}`: waiting since the hour `t`.
    WaitingSince(i64),
    /// `sla_`, `slafr_`, `slattc_` and what follows.
    Sla(SlaTarget, SlaStatus),
    /// Any other name (a dimension other than team or agent, a counter of a later version).
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum AgentCount {
    Assigned,
    Replied,
    Closed,
}

/// An attribute of a duration metric, the metric's name stripped: `_n`, `_sum`, `b_sum`,
/// `_h{bin}`, `b_h{bin}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Dur {
    N,
    Sum,
    BusinessSum,
    Bin(i64),
    BusinessBin(i64),
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum SlaTarget {
    All,
    FirstResponse,
    TimeToClose,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum SlaStatus {
    Met,
    Breached,
    Paused,
    /// `due@{t}`.
    Due(i64),
    Other,
}

impl Attr {
    /// Classifies an attribute name, the way the report's fold reads it.
    pub fn of(name: &str) -> Attr {
        if let Some(reason) = name.strip_prefix("unlogged|") {
            return Attr::Unlogged(reason.to_string());
        }
        if let Some((name, dim)) = name.split_once('|') {
            if let Some(team) = dim.strip_prefix("t:") {
                return if name == "opened" { Attr::TeamOpened(team.to_string()) } else { Attr::Other };
            }
            if let Some(agent) = dim.strip_prefix("a:") {
                let what = match name {
                    "assigned" => AgentCount::Assigned,
                    "msg_out" => AgentCount::Replied,
                    "closed" => AgentCount::Closed,
                    // Not counted by agent (an agent with only these does not show).
                    _ => return Attr::Other,
                };
                return Attr::Agent(what, agent.to_string());
            }
            return Attr::Other;
        }
        match name {
            "opened" => Attr::Opened,
            "msg_out" => Attr::MsgOut,
            "msg_in" => Attr::MsgIn,
            "msg_noise" => Attr::MsgNoise,
            "logged" => Attr::Logged,
            "closed" => Attr::Closed,
            "open_now" => Attr::OpenNow,
            "closed_now" => Attr::ClosedNow,
            "unassigned" => Attr::Unassigned,
            "tickets" => Attr::Tickets,
            a => {
                if let Some(rest) = a.strip_prefix("frt") {
                    Attr::Frt(Dur::of(rest))
                } else if let Some(t) = a.strip_prefix("wait@") {
                    t.parse().map_or(Attr::Other, Attr::WaitingSince)
                } else if let Some(rest) = a.strip_prefix("wait") {
                    Attr::Wait(Dur::of(rest))
                } else if let Some(w) = a.strip_prefix("sla_") {
                    Attr::Sla(SlaTarget::All, SlaStatus::of(w))
                } else if let Some(w) = a.strip_prefix("slafr_") {
                    Attr::Sla(SlaTarget::FirstResponse, SlaStatus::of(w))
                } else if let Some(w) = a.strip_prefix("slattc_") {
                    Attr::Sla(SlaTarget::TimeToClose, SlaStatus::of(w))
                } else {
                    Attr::Other
                }
            }
        }
    }
}

impl Dur {
    fn of(rest: &str) -> Dur {
        match rest {
            "_n" => Dur::N,
            "_sum" => Dur::Sum,
            "b_sum" => Dur::BusinessSum,
            r => {
                let bin = |p: &str| r.strip_prefix(p).and_then(|x| x.parse().ok());
                bin("_h").map(Dur::Bin).or_else(|| bin("b_h").map(Dur::BusinessBin)).unwrap_or(Dur::Other)
            }
        }
    }
}

impl SlaStatus {
    fn of(w: &str) -> SlaStatus {
        match w {
            "met" => SlaStatus::Met,
            "breached" => SlaStatus::Breached,
            "paused" => SlaStatus::Paused,
            w => w.strip_prefix("due@").and_then(|t| t.parse().ok()).map_or(SlaStatus::Other, SlaStatus::Due),
        }
    }
}

impl Bucket {
    /// Decodes a bucket item's JSON text.
    pub fn from_json(text: &str) -> serde_json::Result<Bucket> {
        serde_json::from_str(text)
    }
}

/// An attribute name as the map is read: a dimension, or a counter.
enum Name {
    Hour,
    Inbox,
    Channel,
    Counter(Attr),
}

impl<'de> de::Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Name;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an attribute name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Name, E> {
                Ok(match s {
                    "hour" => Name::Hour,
                    "inbox" => Name::Inbox,
                    "channel" => Name::Channel,
                    s => Name::Counter(Attr::of(s)),
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// An attribute's value: only integers count and only strings name a dimension; anything
/// else is read past (as the map-based fold skipped what `as_i64` refused).
enum Val {
    Int(i64),
    Str(String),
    Other,
}

impl<'de> de::Deserialize<'de> for Val {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Val, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Val;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_i64<E>(self, n: i64) -> Result<Val, E> {
                Ok(Val::Int(n))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Val, E> {
                Ok(i64::try_from(n).map_or(Val::Other, Val::Int))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Val, E> {
                Ok(Val::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Val, E> {
                Ok(Val::Other)
            }
            fn visit_unit<E>(self) -> Result<Val, E> {
                Ok(Val::Other)
            }
            fn visit_str<E>(self, s: &str) -> Result<Val, E> {
                Ok(Val::Str(s.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Val, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Val::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Val, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Val::Other)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> de::Deserialize<'de> for Bucket {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bucket, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Bucket;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a bucket item")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Bucket, A::Error> {
                let mut b = Bucket::default();
                while let Some(name) = a.next_key::<Name>()? {
                    let v = a.next_value::<Val>()?;
                    match (name, v) {
                        (Name::Hour, Val::Str(s)) => b.hour = Some(s),
                        (Name::Inbox, Val::Str(s)) => b.inbox = Some(s),
                        (Name::Channel, Val::Str(s)) => b.channel = Some(s),
                        (Name::Counter(attr), Val::Int(n)) if n != 0 => b.counts.push((attr, n)),
                        _ => {}
                    }
                }
                Ok(b)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_decodes_into_its_dimensions_and_classified_counters() {
        let text = r#"{"pk":"rpt#2026-03-02#support@acme.test","sk":"h09\u001fsupport@acme.test\u001femail",
            "hour":"2026-03-02T09","inbox":"support@acme.test","channel":"email",
            "opened":2,"msg_in":3,"msg_out":1,"msg_noise":0,"logged":4,"unlogged|internal":1,
            "opened|t:billing":1,"closed|t:billing":5,"assigned|a:ana@acme.test":1,
            "msg_out|a:b\"o":2,"note|a:ana@acme.test":7,"frt_n":1,"frt_sum":3600,"frtb_sum":1800,
            "frt_h12":1,"frtb_h9":1,"frt_x":1,"wait_n":2,"wait@1772442000":1,"wait@x":1,
            "sla_met":1,"slafr_due@1772445600":1,"slattc_paused":1,"sla_what":1,
            "tickets":1.5,"closed_now":18446744073709551615,"open_now":[1],"unassigned":{"a":1},
            "later_counter":9}"#;
        let b = Bucket::from_json(text).expect("decodes");
        assert_eq!(b.hour.as_deref(), Some("2026-03-02T09"));
        assert_eq!(b.inbox.as_deref(), Some("support@acme.test"));
        assert_eq!(b.channel.as_deref(), Some("email"));
        use Attr::*;
        let want = vec![
            (Opened, 2),
            (MsgIn, 3),
            (MsgOut, 1),
            (Logged, 4),
            (Unlogged("internal".into()), 1),
            (TeamOpened("billing".into()), 1),
            (Other, 5),
            (Agent(AgentCount::Assigned, "ana@acme.test".into()), 1),
            (Agent(AgentCount::Replied, "b\"o".into()), 2),
            (Other, 7),
            (Frt(Dur::N), 1),
            (Frt(Dur::Sum), 3600),
            (Frt(Dur::BusinessSum), 1800),
            (Frt(Dur::Bin(12)), 1),
            (Frt(Dur::BusinessBin(9)), 1),
            (Frt(Dur::Other), 1),
            (Wait(Dur::N), 2),
            (WaitingSince(1772442000), 1),
            (Other, 1),
            (Sla(SlaTarget::All, SlaStatus::Met), 1),
            (Sla(SlaTarget::FirstResponse, SlaStatus::Due(1772445600)), 1),
            (Sla(SlaTarget::TimeToClose, SlaStatus::Paused), 1),
            (Sla(SlaTarget::All, SlaStatus::Other), 1),
            (Other, 9),
        ];
        assert_eq!(b.counts, want, "zero, fractional, too large, list and map values are not counted");
    }

    #[test]
    fn a_bucket_without_dimensions_or_with_mistyped_ones_still_decodes() {
        let b = Bucket::from_json(r#"{"hour":7,"inbox":null,"opened":1}"#).expect("decodes");
        assert_eq!(b, Bucket { counts: vec![(Attr::Opened, 1)], ..Bucket::default() });
        assert!(Bucket::from_json("[1]").is_err(), "not an object");
        assert!(Bucket::from_json("{\"opened\":").is_err(), "truncated");
    }
}
