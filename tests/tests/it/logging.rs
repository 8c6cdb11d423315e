//! What is logged on the CRM (issue 21): each logging mode, the never-log list in both
//! directions, internal mail and noise, on gen_corpus.py's mailboxes plus personal mail in
//! three agents' individual inboxes. The expected confirmation of every message is
//! computed here from the corpus's ground truth, by the rules of docs/crm-and-routing.md,
//! and compared with what the pipeline stored; the email-log report must equal a count
//! over the stored confirmations. Then deal association: the conversation's deal, else
//! the most recently active open deal.

use mailroom_app::records::{LogEntry, Message};
use mailroom_app::replay::{ReplayOptions, replay_log};
use mailroom_app::{Ingestor, Ports, RawMail, Stages};
use mailroom_core::crm_log::LogMode;
use mailroom_core::workspace::{
    Actions, Condition, ContactSeed, Deal, DealStatus, Field, MatchMode, Op, Rule, Workspace,
};
use mailroom_core::{EmailAddress, Folder};
use mailroom_store::Query;
use mailroom_tests::{acme_workspace, gen_corpus};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const LOG_ADDRESS: &str = "log@acme-corp.example";
/// A tracked_only inbox, a known_contacts one, and one left at the default.
const TRACKED: &str = "maria.keller@acme-corp.example";
const KNOWN: &str = "tom.becker@acme-corp.example";
const DEFAULT: &str = "priya.raman@acme-corp.example";

fn lower(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_lowercase).collect())
        .unwrap_or_default()
}

/// One stored message as the test sees it.
struct Row {
    file: Option<String>,
    raw: Option<Vec<u8>>,
    message_id: String,
    inbox: String,
    outbound: bool,
    kind: String,
    from: String,
    to: Vec<String>,
    cc: Vec<String>,
    bcc: Vec<String>,
}

/// A personal message (not in the corpus).
#[allow(clippy::too_many_arguments)]
fn personal(
    n: u32,
    inbox: &str,
    outbound: bool,
    from: &str,
    to: &[&str],
    cc: &[&str],
    bcc: &[&str],
    subject: &str,
) -> Row {
    let id = format!("personal-{n}@mail.example");
    let mut m = String::new();
    if !outbound {
        m.push_str(&format!("Delivered-To: {inbox}\r\n"));
    }
    m.push_str(&format!("From: {from}\r\nTo: {}\r\n", to.join(", ")));
    if !cc.is_empty() {
        m.push_str(&format!("Cc: {}\r\n", cc.join(", ")));
    }
    if !bcc.is_empty() {
        m.push_str(&format!("Bcc: {}\r\n", bcc.join(", ")));
    }
    m.push_str(&format!(
        "Subject: {subject}\r\nDate: Mon, 1 Apr 2024 10:{n:02}:00 +0000\r\nMessage-ID: <{id}>\r\n\r\nHello\r\n"
    ));
    let l = |v: &[&str]| v.iter().map(|a| a.to_lowercase()).collect::<Vec<_>>();
    Row {
        file: None,
        raw: Some(m.into_bytes()),
        message_id: id,
        inbox: inbox.into(),
        outbound,
        kind: "normal".into(),
        from: from.to_lowercase(),
        to: l(to),
        cc: l(cc),
        bcc: l(bcc),
    }
}

fn workspace(never_domain: &str, never_address: &str) -> Workspace {
    let mut ws = acme_workspace();
    ws.logging.never_log = vec!["family.example".into(), never_domain.into(), never_address.into()];
    ws.logging.internal_domains = vec!["acme-group.example".into()];
    ws.logging.logging_address = Some(LOG_ADDRESS.into());
    for i in &mut ws.inboxes {
        if i.address == TRACKED {
            i.logging = Some(LogMode::TrackedOnly);
        } else if i.address == KNOWN {
            i.logging = Some(LogMode::KnownContacts);
        }
    }
    ws.contacts.push(ContactSeed {
        email: "known@client.example".into(),
        name: Some("Known Client".into()),
        owner: None,
        properties: Default::default(),
    });
    ws
}

/// The rules of docs/crm-and-routing.md, "What is logged", written out again: the
/// expected (reason, contacts) of every message, in arrival order, keeping the set of
/// contacts that exist as they are created.
type Expected = BTreeMap<String, (Option<String>, BTreeSet<String>)>;

fn expected(ws: &Workspace, rows: &[Row]) -> Expected {
    expected_from(ws, rows, ws.contacts.iter().map(|c| c.email.to_lowercase()).collect())
}

/// As [`expected`], starting from the contacts that exist already.
fn expected_from(ws: &Workspace, rows: &[Row], mut contacts: BTreeSet<String>) -> Expected {
    let own = |a: &str| {
        let d = a.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        d == "acme-corp.example" || d == "acme-group.example" || d.ends_with(".acme-group.example")
    };
    let never = |a: &str| {
        ws.logging.never_log.iter().any(|e| {
            if e.contains('@') {
                e == a
            } else {
                let d = a.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
                d == e || d.ends_with(&format!(".{e}"))
            }
        })
    };
    let mut out = BTreeMap::new();
    for r in rows {
        let mode =
            ws.inboxes.iter().find(|i| i.address == r.inbox).and_then(|i| i.logging).unwrap_or_default();
        let everyone: Vec<&String> =
            std::iter::once(&r.from).chain(&r.to).chain(&r.cc).chain(&r.bcc).collect();
        let primary: Vec<String> = if r.outbound { r.to.clone() } else { vec![r.from.clone()] }
            .into_iter()
            .filter(|a| !own(a))
            .collect();
        let others: Vec<String> =
            if r.outbound { [&r.cc[..], &r.bcc[..]].concat() } else { [&r.to[..], &r.cc[..]].concat() }
                .into_iter()
                .filter(|a| !own(a) && !primary.contains(a))
                .collect();
        let tracked = r.inbox == LOG_ADDRESS || everyone.iter().any(|a| *a == LOG_ADDRESS);
        let reason = match r.kind.as_str() {
            "normal" => None,
            k => Some(k.to_string()),
        }
        .or_else(|| everyone.iter().any(|a| never(a)).then(|| "never_log".to_string()))
        .or_else(|| (primary.is_empty() && others.is_empty()).then(|| "internal".to_string()))
        .or_else(|| (mode == LogMode::TrackedOnly && !tracked).then(|| "not_tracked".to_string()));
        let mut logged = BTreeSet::new();
        if reason.is_none() {
            let create = mode != LogMode::KnownContacts;
            // Every acme inbox creates contacts for Cc too (examples/acme-corp.toml).
            for a in primary.iter().chain(&others) {
                if create || contacts.contains(a) {
                    logged.insert(a.clone());
                }
            }
            contacts.extend(logged.iter().cloned());
        }
        let reason = reason.or_else(|| logged.is_empty().then(|| "no_contact".to_string()));
        out.insert(r.message_id.clone(), (reason, logged));
    }
    out
}

async fn run(ports: &Ports, corpus: &Path, rows: &[Row]) {
    let ingestor = Ingestor::new(ports.clone());
    let stages = Stages::new(ports);
    for r in rows {
        let bytes = match (&r.raw, &r.file) {
            (Some(b), _) => b.clone(),
            (None, Some(f)) => std::fs::read(corpus.join(f)).unwrap(),
            _ => unreachable!(),
        };
        let mut mail = RawMail::new(bytes, "test");
        mail.inbox = Some(EmailAddress::parse(&r.inbox).unwrap());
        mail.folder = Some(if r.outbound { Folder::Sent } else { Folder::Inbox });
        ingestor.ingest(mail).await.unwrap();
        assert_eq!(stages.process_visible().await.unwrap().failed, 0, "a stage failed");
    }
}

async fn stored(ports: &Ports, id: &str) -> Message {
    let item = ports.table.get(&mailroom_app::keys::message(id)).await.unwrap().expect("message recorded");
    Message::from_item(&item)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_logging_rule_and_the_never_log_list_on_a_mixed_mailbox() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    gen_corpus(&corpus, 250, 2121);
    let truth: Vec<Value> = std::fs::read_to_string(corpus.join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // One copy per message: the first (the pipeline logs a message once, in the inbox of
    // its first copy).
    let mut rows: Vec<Row> = truth
        .iter()
        .filter(|r| r["is_duplicate_copy"] == false)
        .map(|r| Row {
            file: Some(r["file"].as_str().unwrap().to_string()),
            raw: None,
            message_id: r["message_id"].as_str().unwrap().trim_matches(['<', '>']).to_string(),
            inbox: r["delivered_to"].as_str().unwrap().to_lowercase(),
            outbound: r["direction"] == "outbound",
            kind: r["kind"].as_str().unwrap().to_string(),
            from: r["from"].as_str().unwrap_or_default().to_lowercase(),
            to: lower(&r["to"]),
            cc: lower(&r["cc"]),
            bcc: vec![],
        })
        .collect();
    let dup_copies: Vec<&Value> = truth.iter().filter(|r| r["is_duplicate_copy"] == true).collect();
    // The never-log list takes a company domain and a freemail address from the corpus's
    // customers (both sides: they write in, and agents write to them).
    let customer = |pred: &dyn Fn(&str) -> bool| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for r in truth.iter().filter(|r| r["kind"] == "normal") {
            if let Some(c) = r["contact_email"].as_str().filter(|c| pred(c)) {
                *counts.entry(c.to_string()).or_default() += 1;
            }
        }
        counts.into_iter().max_by_key(|(c, n)| (*n, c.clone())).unwrap().0
    };
    let freemail = ["gmail.com", "outlook.com", "yahoo.com", "gmx.de", "web.de", "icloud.com"];
    let never_domain = customer(&|c: &str| !freemail.iter().any(|f| c.ends_with(&format!("@{f}"))))
        .rsplit_once('@')
        .unwrap()
        .1
        .to_string();
    let never_address = customer(&|c: &str| c.ends_with("@gmail.com"));
    let ws = workspace(&never_domain, &never_address);

    // Personal mail in three individual inboxes.
    rows.extend([
        personal(1, KNOWN, false, "mum@home.family.example", &[KNOWN], &[], &[], "Sunday lunch"),
        personal(2, KNOWN, false, "lukas.schmidt@acme-corp.example", &[KNOWN], &[], &[], "Lunch?"),
        personal(
            3,
            DEFAULT,
            false,
            "cfo@acme-group.example",
            &[DEFAULT],
            &["ops@hq.acme-group.example"],
            &[],
            "Budget",
        ),
        personal(4, TRACKED, true, TRACKED, &["new.lead@prospect.example"], &[], &[LOG_ADDRESS], "Our offer"),
        personal(5, TRACKED, true, TRACKED, &["friend@prospect2.example"], &[], &[], "Drinks"),
        personal(
            6,
            TRACKED,
            false,
            "new.lead@prospect.example",
            &[TRACKED],
            &[],
            &[],
            "Re: Our offer (untracked)",
        ),
        personal(7, KNOWN, false, "stranger@nowhere.example", &[KNOWN], &[], &[], "Hi"),
        personal(8, KNOWN, false, "known@client.example", &[KNOWN], &[], &[], "Order"),
        personal(
            9,
            DEFAULT,
            true,
            DEFAULT,
            &[&never_address],
            &["someone@cust3.example"],
            &[],
            "Re: your case",
        ),
        personal(10, DEFAULT, false, &format!("ceo@{never_domain}"), &[DEFAULT], &[], &[], "Partnership"),
        personal(
            11,
            TRACKED,
            false,
            "buyer@prospect3.example",
            &[TRACKED],
            &[LOG_ADDRESS],
            &[],
            "Quote request",
        ),
    ]);
    let want = expected(&ws, &rows);

    let ports = Ports::embedded(&tmp.path().join("data")).unwrap();
    mailroom_app::workspace::apply(&ports, &ws).await.unwrap();
    run(&ports, &corpus, &rows).await;
    // The later copies of messages already logged change nothing.
    for r in &dup_copies {
        let mut mail = RawMail::new(std::fs::read(corpus.join(r["file"].as_str().unwrap())).unwrap(), "test");
        mail.inbox = Some(EmailAddress::parse(r["delivered_to"].as_str().unwrap()).unwrap());
        mail.folder = Some(if r["direction"] == "outbound" { Folder::Sent } else { Folder::Inbox });
        Ingestor::new(ports.clone()).ingest(mail).await.unwrap();
    }
    assert_eq!(Stages::new(&ports).process_visible().await.unwrap().failed, 0);

    // The report counts a message in its conversation's inbox (where it is worked).
    let conv_inbox: BTreeMap<String, String> = mailroom_app::views::conversations::list(&ports)
        .await
        .unwrap()
        .into_iter()
        .flat_map(|c| c.message_ids.into_iter().map(move |m| (m, c.inbox.to_lowercase())))
        .collect();
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_inbox: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut timeline_want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &rows {
        let m = stored(&ports, &r.message_id).await;
        let log: LogEntry = m.log.clone().unwrap_or_else(|| panic!("{} has no log entry", r.message_id));
        let (reason, contacts) = &want[&r.message_id];
        assert_eq!(
            (&log.reason, log.logged, log.contacts.iter().cloned().collect::<BTreeSet<_>>()),
            (reason, reason.is_none(), contacts.clone()),
            "{} in {} ({} {:?} {:?}): {log:?}",
            r.message_id,
            r.inbox,
            r.from,
            r.to,
            r.cc
        );
        assert!(log.logged || log.reason.is_some(), "unlogged without a reason: {log:?}");
        *by_reason.entry(reason.clone().unwrap_or_else(|| "logged".into())).or_default() += 1;
        let e = by_inbox.entry(conv_inbox[&r.message_id].clone()).or_default();
        e.0 += 1;
        e.1 += log.logged as i64;
        for c in &log.contacts {
            timeline_want.entry(c.clone()).or_default().insert(r.message_id.clone());
        }
    }
    eprintln!("logged / not logged by reason over {} messages: {by_reason:?}", rows.len());
    for reason in
        ["logged", "never_log", "internal", "not_tracked", "bounce", "auto_reply", "list", "no_contact"]
    {
        assert!(by_reason.get(reason).is_some_and(|n| *n > 0), "no message with {reason}: {by_reason:?}");
    }
    // Never-log both ways: the corpus customer writes in and is written to; none logged.
    let never_rows: Vec<&Row> = rows
        .iter()
        .filter(|r| r.kind == "normal" && [&r.from].into_iter().chain(&r.to).any(|a| *a == never_address))
        .collect();
    assert!(never_rows.iter().any(|r| r.outbound) && never_rows.iter().any(|r| !r.outbound));
    // The personal mail, one by one (what the rules say in words).
    let reason_of = |n: u32| want[&format!("personal-{n}@mail.example")].0.clone();
    let expect_personal = [
        (1, Some("never_log")),
        (2, Some("internal")),
        (3, Some("internal")),
        (4, None),
        (5, Some("not_tracked")),
        (6, Some("not_tracked")),
        (7, Some("no_contact")),
        (8, None),
        (9, Some("never_log")),
        (10, Some("never_log")),
        (11, None),
    ];
    for (n, r) in expect_personal {
        assert_eq!(reason_of(n).as_deref(), r, "personal-{n}");
    }
    // No contact for anyone on the never-log list or for the untracked lead's friend.
    for nobody in
        [&never_address, "mum@home.family.example", "friend@prospect2.example", "stranger@nowhere.example"]
    {
        assert!(
            ports.table.get(&mailroom_app::keys::contact_key(nobody)).await.unwrap().is_none(),
            "{nobody} became a contact"
        );
    }

    // Contacts' timelines hold exactly the messages logged on them.
    for (contact, ids) in &timeline_want {
        let tl = ports.table.query_all(Query::new(format!("timeline#{contact}"))).await.unwrap();
        let got: BTreeSet<String> =
            tl.iter().filter_map(|t| t["message_id"].as_str().map(str::to_string)).collect();
        assert_eq!(&got, ids, "timeline of {contact}");
    }

    // The report equals a count over the stored confirmations.
    let filter = mailroom_app::reports::Filter { tz: Some(chrono_tz::UTC), ..Default::default() };
    let report = mailroom_app::reports::report(&ports, &ws, &filter, chrono::Utc::now()).await.unwrap();
    let log = &report.email_log;
    assert_eq!(log.messages as usize, rows.len(), "{log:?}");
    assert_eq!(log.logged as usize, by_reason["logged"]);
    let not_logged: BTreeMap<String, usize> =
        by_reason.iter().filter(|(k, _)| *k != "logged").map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(
        log.not_logged.iter().map(|(k, v)| (k.clone(), *v as usize)).collect::<BTreeMap<_, _>>(),
        not_logged
    );
    let report_by_inbox: BTreeMap<String, (i64, i64)> =
        log.by_inbox.iter().map(|(k, v)| (k.clone(), (v.messages, v.logged))).collect();
    assert_eq!(report_by_inbox, by_inbox);
    let per_day: i64 = log.by_day.values().map(|d| d.messages).sum();
    assert_eq!(per_day, log.messages);

    // The never-log list grows by another customer domain: replaying the logging takes
    // its history off the CRM (the dry run first, then for real, then again).
    let second = customer(&|c: &str| {
        !freemail.iter().any(|f| c.ends_with(&format!("@{f}"))) && !c.ends_with(&format!("@{never_domain}"))
    });
    let second_domain = second.rsplit_once('@').unwrap().1.to_string();
    let mut ws2 = ws.clone();
    ws2.logging.never_log.push(second_domain.clone());
    mailroom_app::workspace::apply(&ports, &ws2).await.unwrap();
    let existing: BTreeSet<String> = mailroom_app::views::crm::contacts(&ports)
        .await
        .unwrap()
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok()?["email"].as_str().map(str::to_string))
        .collect();
    let want2 = expected_from(&ws2, &rows, existing);
    let opts = ReplayOptions {
        since: mailroom_app::replay::parse_since("2000-01-01").unwrap(),
        inbox: None,
        dry_run: true,
        by: "test".into(),
    };
    let dry = replay_log(&ports, &ws2, &opts).await.unwrap();
    let real = replay_log(&ports, &ws2, &ReplayOptions { dry_run: false, ..opts.clone() }).await.unwrap();
    eprintln!("replay --stage log: {:?}", real.lines);
    assert_eq!(
        (dry.changed, &dry.log_moves, dry.timeline_removed, dry.timeline_added),
        (real.changed, &real.log_moves, real.timeline_removed, real.timeline_added)
    );
    let moved: usize = want.iter().filter(|(id, w)| want2[*id] != **w).count();
    assert!(moved > 0, "the new never-log domain {second_domain} changes something");
    assert_eq!(real.changed, moved, "{:?}", real.log_moves);
    assert!(real.log_moves.keys().all(|k| k.ends_with("-> never_log")), "{:?}", real.log_moves);
    assert_eq!(replay_log(&ports, &ws2, &ReplayOptions { dry_run: false, ..opts }).await.unwrap().changed, 0);
    let mut timeline2: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut by_reason2: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        let log = stored(&ports, &r.message_id).await.log.unwrap();
        let (reason, contacts) = &want2[&r.message_id];
        assert_eq!(
            (&log.reason, log.contacts.iter().cloned().collect::<BTreeSet<_>>()),
            (reason, contacts.clone()),
            "after the replay: {}",
            r.message_id
        );
        *by_reason2.entry(reason.clone().unwrap_or_else(|| "logged".into())).or_default() += 1;
        for c in &log.contacts {
            timeline2.entry(c.clone()).or_default().insert(r.message_id.clone());
        }
    }
    // Every timeline, including those of the domain now never logged, holds exactly the
    // messages logged on it.
    for contact in timeline_want.keys().chain(timeline2.keys()) {
        let tl = ports.table.query_all(Query::new(format!("timeline#{contact}"))).await.unwrap();
        let got: BTreeSet<String> =
            tl.iter().filter_map(|t| t["message_id"].as_str().map(str::to_string)).collect();
        assert_eq!(
            got,
            timeline2.get(contact).cloned().unwrap_or_default(),
            "timeline of {contact} after the replay"
        );
    }
    assert!(
        timeline_want.keys().any(|c| c.ends_with(&format!("@{second_domain}")) && !timeline2.contains_key(c)),
        "a contact of {second_domain} lost its timeline"
    );
    let report = mailroom_app::reports::report(&ports, &ws2, &filter, chrono::Utc::now()).await.unwrap();
    assert_eq!(report.email_log.logged as usize, by_reason2["logged"]);
    assert_eq!(report.email_log.not_logged["never_log"] as usize, by_reason2["never_log"]);
}

fn deal(id: &str, contacts: &[&str], companies: &[&str], status: DealStatus) -> Deal {
    Deal {
        id: id.into(),
        name: id.into(),
        status,
        contacts: contacts.iter().map(|s| s.to_string()).collect(),
        companies: companies.iter().map(|s| s.to_string()).collect(),
        amount: None,
    }
}

/// A conversation's messages go on its deal; a new conversation goes on the open deal
/// with the most recent logged message; a closed deal hands over to the next; a rule
/// that names an open deal wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_on_the_most_recently_active_open_deal() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = Ports::embedded(&tmp.path().join("data")).unwrap();
    let mut ws = acme_workspace();
    ws.deals = vec![
        deal("d-renewal", &["x@globex.example"], &[], DealStatus::Open),
        deal("d-support", &["x@globex.example"], &[], DealStatus::Open),
        deal("d-expansion", &[], &["globex.example"], DealStatus::Open),
    ];
    // A rule that names a deal (and lets the later rules route as before).
    ws.rules.insert(
        0,
        Rule {
            name: "question 6 is about support".into(),
            inboxes: vec![],
            r#match: MatchMode::All,
            conditions: vec![Condition {
                field: Field::Subject,
                op: Op::Contains,
                value: Some("Question 6".into()),
                values: vec![],
            }],
            actions: Actions { deal: Some("d-support".into()), ..Actions::default() },
            r#continue: true,
        },
    );
    mailroom_app::workspace::apply(&ports, &ws).await.unwrap();
    let mail = |n: u32, from: &str, parent: Option<u32>| {
        let mut m = format!(
            "Delivered-To: support@acme-corp.example\r\nFrom: {from}\r\nTo: support@acme-corp.example\r\nSubject: Question {}\r\nDate: Mon, 1 Apr 2024 1{n}:00:00 +0000\r\nMessage-ID: <deal-{n}@globex.example>\r\n",
            parent.unwrap_or(n)
        );
        if let Some(p) = parent {
            m.push_str(&format!("In-Reply-To: <deal-{p}@globex.example>\r\n"));
        }
        m.push_str("\r\nHello\r\n");
        let mut raw = RawMail::new(m.into_bytes(), "test");
        raw.inbox = Some(EmailAddress::parse("support@acme-corp.example").unwrap());
        raw
    };
    let stages = Stages::new(&ports);
    let step = |n: u32, from: &'static str, parent: Option<u32>| {
        let (ports, stages) = (ports.clone(), &stages);
        let raw = mail(n, from, parent);
        async move {
            Ingestor::new(ports.clone()).ingest(raw).await.unwrap();
            assert_eq!(stages.process_visible().await.unwrap().failed, 0);
            stored(&ports, &format!("deal-{n}@globex.example")).await.log.unwrap().deal
        }
    };
    // Neither has a logged message: the contact's deal comes first.
    assert_eq!(step(1, "x@globex.example", None).await.as_deref(), Some("d-renewal"));
    // Only the company's deal is open for y.
    assert_eq!(step(2, "y@globex.example", None).await.as_deref(), Some("d-expansion"));
    // x again, new conversation: the expansion has the newer message.
    assert_eq!(step(3, "x@globex.example", None).await.as_deref(), Some("d-expansion"));
    // A reply in the first conversation stays on its deal.
    assert_eq!(step(4, "x@globex.example", Some(1)).await.as_deref(), Some("d-renewal"));
    // The renewal is won: the conversation's next message goes on the open one.
    ws.deals[0].status = DealStatus::Won;
    mailroom_app::workspace::apply(&ports, &ws).await.unwrap();
    assert_eq!(step(5, "x@globex.example", Some(1)).await.as_deref(), Some("d-expansion"));
    let convs = mailroom_app::views::conversations::list(&ports).await.unwrap();
    let first = convs.iter().find(|c| c.message_ids.contains(&"deal-1@globex.example".to_string())).unwrap();
    assert_eq!(first.deal_ids, ["d-support", "d-expansion"]);
    // A rule names the deal: it wins over the most recently active one.
    assert_eq!(step(6, "x@globex.example", None).await.as_deref(), Some("d-support"));
    assert_eq!(step(7, "x@globex.example", Some(6)).await.as_deref(), Some("d-support"), "and keeps it");
}
