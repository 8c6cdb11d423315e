use super::*;
use crate::reports::read::*;

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
    MsgFact { t, out: false, normal: true, agent: None, logged: true, reason: None, channel: "email".into() }
}
fn reply_at(t: i64) -> MsgFact {
    MsgFact {
        t,
        out: true,
        normal: true,
        agent: Some("maria.keller@acme-corp.example".into()),
        logged: true,
        reason: None,
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
        reason: None,
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
        record_message(&ports, &ws, &msg(i), Some((true, None))).await.unwrap();
    }
    let before = ports.table.get(&keys::conv_owner("cbig")).await.unwrap().unwrap();
    record_message(&ports, &ws, &msg(140), Some((true, None))).await.unwrap();
    record_message(&ports, &ws, &msg(10), Some((true, None))).await.unwrap();
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
    let (c, fig) = conversation_contrib(&ws, &closed, None, &[inbound(open), reply("2024-03-04T09:00:00Z")]);
    assert_eq!(fig.sla.as_deref(), Some("met"));
    assert!(c.values().any(|a| a.get("closed_now") == Some(&1)));
    // Waiting on the customer (a pause stage): the close target is paused.
    let mut ticket = Item::new();
    ticket.insert("stage".into(), json!("waiting_on_contact"));
    let (_, fig) =
        conversation_contrib(&ws, &conv(&[]), Some(&ticket), &[inbound(open), reply("2024-03-04T09:00:00Z")]);
    assert_eq!(fig.sla.as_deref(), Some("paused"));
    // High priority: the urgent policy (1 business hour).
    let high = conv(&[("priority", json!("high"))]);
    let (_, fig) = conversation_contrib(&ws, &high, None, &[inbound(open), reply("2024-03-04T09:30:00Z")]);
    assert_eq!(fig.sla_policy.as_deref(), Some("urgent"));
    assert_eq!(fig.sla.as_deref(), Some("breached"));
}

#[test]
fn order_of_facts_does_not_matter_and_late_messages_move_figures() {
    let ws = acme();
    let a = [inbound("2024-03-04T10:00:00Z"), reply("2024-03-04T12:00:00Z"), inbound("2024-03-05T10:00:00Z")];
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
