//! Reports against gen_corpus.py's ground truth: every figure of `mailroom report --json`
//! recomputed independently from truth.jsonl (and, for what the truth does not know, such
//! as assignments, from the conversation listing), after closing a few conversations with
//! `mailroom close`. Then the dashboard page of `mailroom serve` in headless Chromium.

use chrono::{DateTime, Duration};
use mailroom_tests::{bin, gen_corpus, repo_root};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};

const ACME: &str = "@acme-corp.example";

use mailroom_tests::mailroom_json as mailroom;

fn run(data: &Path, args: &[&str]) {
    mailroom_tests::mailroom_ok(data, args);
}

fn t(v: &Value) -> i64 {
    DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp()
}

/// The day of an instant in the workspace's report zone (acme-corp: Europe/Berlin).
fn day(ts: i64) -> String {
    day_in(ts, chrono_tz::Europe::Berlin)
}

fn day_in(ts: i64, tz: chrono_tz::Tz) -> String {
    DateTime::from_timestamp(ts, 0).unwrap().with_timezone(&tz).format("%Y-%m-%d").to_string()
}

/// One truth conversation: its rows (first copies only), in arrival order.
struct TruthConv {
    rows: Vec<Value>,
}

impl TruthConv {
    fn normal(&self) -> Vec<&Value> {
        self.rows.iter().filter(|r| r["kind"] == "normal").collect()
    }
    fn opened(&self) -> Option<i64> {
        self.normal().first().map(|r| t(&r["arrival"]))
    }
    /// Seconds from the first (customer) message to the first outbound one after it.
    fn first_response(&self) -> Option<i64> {
        let n = self.normal();
        let first = n.first()?;
        if first["direction"] != "inbound" {
            return None;
        }
        let start = t(&first["arrival"]);
        n.iter()
            .find(|r| r["direction"] == "outbound" && t(&r["arrival"]) >= start)
            .map(|r| t(&r["arrival"]) - start)
    }
    /// Every reply of ours to a waiting customer: seconds since the first of their
    /// messages after our previous reply.
    fn waits(&self) -> Vec<i64> {
        let mut out = Vec::new();
        let mut since: Option<i64> = None;
        for r in self.normal() {
            let at = t(&r["arrival"]);
            if r["direction"] == "inbound" {
                since.get_or_insert(at);
            } else if let Some(s) = since.take() {
                out.push(at - s);
            }
        }
        out
    }
    /// When the customer started waiting, if the last normal message is theirs.
    fn waiting_since(&self) -> Option<i64> {
        let n = self.normal();
        if n.last()?["direction"] == "outbound" {
            return None;
        }
        let after = n.iter().rposition(|r| r["direction"] == "outbound").map_or(0, |i| i + 1);
        Some(t(&n[after]["arrival"]))
    }
}

/// Truth conversation label -> our conversation holding its first message.
fn map_conversations<'a>(
    listing: &'a [Value],
    convs: &BTreeMap<String, TruthConv>,
) -> HashMap<String, &'a Value> {
    let mut by_msg: HashMap<&str, &Value> = HashMap::new();
    for c in listing {
        for m in c["message_ids"].as_array().unwrap() {
            by_msg.insert(m.as_str().unwrap(), c);
        }
    }
    convs
        .iter()
        .map(|(label, c)| {
            let first = c.rows[0]["message_id"].as_str().unwrap().trim_matches(|x| x == '<' || x == '>');
            (
                label.clone(),
                *by_msg
                    .get(first)
                    .unwrap_or_else(|| panic!("{label}: message {first} is in no conversation")),
            )
        })
        .collect()
}

fn nearest_rank(sorted: &[i64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1] as f64
}

fn close_enough(ours: f64, truth: f64, what: &str) {
    let tol = (truth * 0.01).max(1.0);
    assert!((ours - truth).abs() <= tol, "{what}: report {ours}, truth {truth} (tolerance {tol})");
}

#[test]
fn report_equals_truth_and_dashboard_renders() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    gen_corpus(&corpus, 400, 61);
    let data = tmp.path().join("data");
    // The report buckets spread over 4 partitions per inbox and day (`[reports] shards`,
    // docs/scale.md): the figures must come out the same as from one.
    let acme = std::fs::read_to_string(repo_root().join("examples/acme-corp.toml")).unwrap();
    let sharded = acme.replacen("[reports]\n", "[reports]\nshards = 4\n", 1);
    assert_ne!(sharded, acme, "examples/acme-corp.toml has no [reports] table");
    let ws_file = tmp.path().join("workspace.toml");
    std::fs::write(&ws_file, sharded).unwrap();
    run(&data, &["apply", ws_file.to_str().unwrap()]);
    run(&data, &["import", corpus.join("messages").to_str().unwrap()]);
    let entries = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let ports = mailroom_app::Ports::embedded(&data).unwrap();
        let q = mailroom_store::Query::new(mailroom_app::keys::REPORT_DAYS_PK);
        ports.table.query_all(q).await.unwrap()
    });
    let sharded = entries.iter().filter_map(|e| e["sk"].as_str()).filter(|sk| sk.ends_with("#3")).count();
    assert!(sharded > 0, "no fourth shard in the report's day list: {entries:?}");

    // Truth, first copies only, grouped by conversation.
    let rows: Vec<Value> = std::fs::read_to_string(corpus.join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|r: &Value| r["is_duplicate_copy"] == false)
        .collect();
    let mut convs: BTreeMap<String, TruthConv> = BTreeMap::new();
    for r in &rows {
        convs
            .entry(r["conversation"].as_str().unwrap().into())
            .or_insert(TruthConv { rows: vec![] })
            .rows
            .push(r.clone());
    }
    // Conversations with at least one normal message are the ones reports count.
    let counted: Vec<(&String, &TruthConv)> = convs.iter().filter(|(_, c)| c.opened().is_some()).collect();

    // Our conversations, by their message ids, mapped to the truth's.
    let listing = mailroom(&data, &["conversations", "--json"]);
    let listing = listing.as_array().unwrap();
    let ours_by_truth = map_conversations(listing, &convs);

    // Close five conversations (the first five counted ones, by an agent each, a day
    // after they opened) and reopen one of them: exercises closed, reopened and agents.
    let agents: Vec<&str> = vec!["maria.keller@acme-corp.example", "tom.becker@acme-corp.example"];
    let mut closed_by: BTreeMap<String, usize> = BTreeMap::new();
    let mut closed_truth: BTreeSet<String> = BTreeSet::new();
    let mut closes_by_day: BTreeMap<String, i64> = BTreeMap::new();
    for (i, (label, c)) in counted.iter().take(6).enumerate() {
        let ours = ours_by_truth[*label]["id"].as_str().unwrap();
        let at = c.opened().unwrap() + 86_400;
        let at_s = DateTime::from_timestamp(at, 0).unwrap().to_rfc3339();
        let by = agents[i % 2];
        run(&data, &["close", ours, "--by", by, "--at", &at_s]);
        // Closing twice changes nothing.
        run(&data, &["close", ours, "--by", by, "--at", &at_s]);
        if i == 5 {
            run(&data, &["reopen", ours]);
            continue;
        }
        *closed_by.entry(by.to_string()).or_default() += 1;
        *closes_by_day.entry(day(at)).or_default() += 1;
        closed_truth.insert((*label).clone());
    }

    let now = "2024-04-10T00:00:00Z";
    let now_ts = t(&Value::String(now.into()));
    let report = mailroom(&data, &["report", "--json", "--now", now]);
    // The listing again: assignments as the conversations hold them (the truth has none).
    let listing = mailroom(&data, &["conversations", "--json"]);
    let listing = listing.as_array().unwrap();
    let ours_by_truth = map_conversations(listing, &convs);

    // Volume per inbox and per day.
    let mut by_inbox: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_day: BTreeMap<String, i64> = BTreeMap::new();
    for (_, c) in &counted {
        *by_inbox.entry(c.rows[0]["delivered_to"].as_str().unwrap().to_lowercase()).or_default() += 1;
        *by_day.entry(day(c.opened().unwrap())).or_default() += 1;
    }
    assert_eq!(report["volume"]["total"], counted.len() as i64);
    let got: BTreeMap<String, i64> = serde_json::from_value(report["volume"]["by_inbox"].clone()).unwrap();
    assert_eq!(got, by_inbox, "volume.by_inbox");
    assert_eq!(report["time_zone"], "Europe/Berlin");
    let got: BTreeMap<String, i64> = serde_json::from_value(report["volume"]["by_day"].clone()).unwrap();
    let got: BTreeMap<String, i64> = got.into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(got, by_day, "volume.by_day (Berlin days)");
    // The same in UTC days.
    let utc = mailroom(&data, &["report", "--json", "--now", now, "--tz", "UTC"]);
    let mut by_utc_day: BTreeMap<String, i64> = BTreeMap::new();
    for (_, c) in &counted {
        *by_utc_day.entry(day_in(c.opened().unwrap(), chrono_tz::UTC)).or_default() += 1;
    }
    let got: BTreeMap<String, i64> = serde_json::from_value(utc["volume"]["by_day"].clone()).unwrap();
    let got: BTreeMap<String, i64> = got.into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(got, by_utc_day, "volume.by_day (UTC days)");
    assert_eq!(utc["volume"]["total"], report["volume"]["total"]);

    // First response: per conversation within 1 s, then count, mean, median, p90.
    let mut frts = Vec::new();
    for (label, c) in &counted {
        let truth = c.first_response();
        let ours = ours_by_truth[*label]["figures"]["first_response_s"].as_i64();
        match (truth, ours) {
            (Some(a), Some(b)) => {
                assert!((a - b).abs() <= 1, "{label}: first response truth {a} s, ours {b} s")
            }
            (a, b) => assert_eq!(a, b, "{label}: first response"),
        }
        frts.extend(truth);
    }
    frts.sort();
    let fr = &report["first_response"];
    assert_eq!(fr["count"], frts.len() as i64, "first_response.count");
    let mean = frts.iter().sum::<i64>() as f64 / frts.len() as f64;
    assert!((fr["mean_s"].as_f64().unwrap() - mean).abs() <= 1.0, "mean {} vs {mean}", fr["mean_s"]);
    close_enough(fr["median_s"].as_f64().unwrap(), nearest_rank(&frts, 0.5), "median");
    close_enough(fr["p90_s"].as_f64().unwrap(), nearest_rank(&frts, 0.9), "p90");
    assert!(fr["business_median_s"].as_f64().unwrap() < fr["median_s"].as_f64().unwrap());

    // Wait time: every reply to a waiting customer.
    let mut waits: Vec<i64> = counted.iter().flat_map(|(_, c)| c.waits()).collect();
    waits.sort();
    let wt = &report["wait_time"];
    assert_eq!(wt["count"], waits.len() as i64, "wait_time.count");
    let mean = waits.iter().sum::<i64>() as f64 / waits.len() as f64;
    assert!((wt["mean_s"].as_f64().unwrap() - mean).abs() <= 1.0, "wait mean {} vs {mean}", wt["mean_s"]);
    close_enough(wt["median_s"].as_f64().unwrap(), nearest_rank(&waits, 0.5), "wait median");
    close_enough(wt["p90_s"].as_f64().unwrap(), nearest_rank(&waits, 0.9), "wait p90");
    assert!(waits.len() > frts.len(), "follow-ups are answered too");

    // Agents: replies from the truth, assignments from the conversations, closes as done.
    let mut expect: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    for r in rows.iter().filter(|r| r["kind"] == "normal" && r["direction"] == "outbound") {
        let from = r["from"].as_str().unwrap().to_lowercase();
        if from.ends_with(ACME)
            && !["support", "billing", "sales", "onboarding"]
                .iter()
                .any(|s| from.starts_with(&format!("{s}@")))
        {
            expect.entry(from).or_default()[1] += 1;
        }
    }
    for (label, _) in &counted {
        if let Some(a) = ours_by_truth[*label]["assignee"].as_str() {
            expect.entry(a.to_string()).or_default()[0] += 1;
        }
    }
    for (a, n) in &closed_by {
        expect.entry(a.clone()).or_default()[2] += *n as i64;
    }
    let got: BTreeMap<String, [i64; 3]> = report["agents"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                [
                    v["assigned"].as_i64().unwrap(),
                    v["replied"].as_i64().unwrap(),
                    v["closed"].as_i64().unwrap(),
                ],
            )
        })
        .collect();
    assert_eq!(got, expect, "agents {{email: [assigned, replied, closed]}}");

    // Tickets: conversations with a customer's normal inbound message (every acme inbox
    // automates tickets).
    let tickets = counted
        .iter()
        .filter(|(_, c)| {
            c.normal().iter().any(|r| {
                r["direction"] == "inbound" && !r["from"].as_str().unwrap().to_lowercase().ends_with(ACME)
            })
        })
        .count();
    assert_eq!(report["tickets_created"], tickets as i64, "tickets_created");

    // Open vs closed, unassigned, stale.
    assert_eq!(report["closed"], closed_truth.len() as i64, "closed");
    assert_eq!(report["open"], (counted.len() - closed_truth.len()) as i64, "open");
    let closed_days: BTreeMap<String, i64> = report["open_closed_by_day"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["closed"].as_i64().unwrap() > 0)
        .map(|(k, v)| (k.clone(), v["closed"].as_i64().unwrap()))
        .collect();
    assert_eq!(closed_days, closes_by_day, "open_closed_by_day closed");
    let unassigned = counted
        .iter()
        .filter(|(l, _)| !closed_truth.contains(*l) && ours_by_truth[*l]["assignee"].is_null())
        .count();
    assert_eq!(report["unassigned"], unassigned as i64, "unassigned");
    let stale_after = report["stale_after_s"].as_i64().unwrap();
    assert_eq!(stale_after, Duration::hours(24).num_seconds());
    let stale = counted
        .iter()
        .filter(|(l, c)| {
            !closed_truth.contains(*l) && c.waiting_since().is_some_and(|w| w <= now_ts - stale_after)
        })
        .count();
    assert_eq!(report["stale"], stale as i64, "stale");

    // Messages and the email log.
    let normal_in = rows.iter().filter(|r| r["kind"] == "normal" && r["direction"] == "inbound").count();
    let normal_out = rows.iter().filter(|r| r["kind"] == "normal" && r["direction"] == "outbound").count();
    assert_eq!(report["messages"]["in"], normal_in as i64, "messages.in");
    assert_eq!(report["messages"]["out"], normal_out as i64, "messages.out");
    // The email log counts every message; noise is never logged, by its kind.
    let log = &report["email_log"];
    assert_eq!(log["messages"], rows.len() as i64, "{log}");
    let not_logged: i64 = log["not_logged"].as_object().unwrap().values().map(|v| v.as_i64().unwrap()).sum();
    assert_eq!(log["logged"].as_i64().unwrap() + not_logged, rows.len() as i64, "{log}");
    for kind in ["bounce", "auto_reply", "list"] {
        let n = rows.iter().filter(|r| r["kind"] == kind).count();
        assert!(n > 0, "the corpus has {kind}");
        assert_eq!(log["not_logged"][kind], n as i64, "{log}");
    }
    let logged = log["logged"].as_i64().unwrap() as f64;
    assert!(logged / (normal_in + normal_out) as f64 > 0.95, "share of customer mail logged: {log}");

    // SLA: every counted conversation has a status under the acme policies.
    let sla = &report["sla"];
    let n = sla["met"].as_i64().unwrap()
        + sla["breached"].as_i64().unwrap()
        + sla["due"].as_i64().unwrap()
        + sla["paused"].as_i64().unwrap();
    assert_eq!(n, counted.len() as i64, "sla statuses");

    // A filtered report: one inbox, one week.
    let support = "support@acme-corp.example";
    let week = mailroom(
        &data,
        &["report", "--json", "--now", now, "--inbox", support, "--from", "2024-03-11", "--to", "2024-03-17"],
    );
    let expect_week = counted
        .iter()
        .filter(|(_, c)| {
            let d = day(c.opened().unwrap());
            c.rows[0]["delivered_to"].as_str().unwrap().eq_ignore_ascii_case(support)
                && d.as_str() >= "2024-03-11"
                && d.as_str() <= "2024-03-17"
        })
        .count();
    assert_eq!(week["volume"]["total"], expect_week as i64, "filtered volume");
    assert_eq!(week["volume"]["by_day"].as_object().unwrap().len(), 7);

    // A customer writing again after the close reopens the conversation and its ticket.
    let (label, c) = counted
        .iter()
        .find(|(l, c)| closed_truth.contains(*l) && c.normal()[0]["direction"] == "inbound")
        .expect("a closed customer conversation");
    let customer = c.normal()[0]["from"].as_str().unwrap();
    let inbox = c.rows[0]["delivered_to"].as_str().unwrap();
    let last = c.rows.last().unwrap()["message_id"].as_str().unwrap();
    let when = DateTime::from_timestamp(c.opened().unwrap() + 2 * 86_400, 0).unwrap().to_rfc2822();
    let eml = format!(
        "Received: from mx1.acme-corp.example by imap.acme-corp.example with LMTP; {when}\r\n\
         Delivered-To: {inbox}\r\nFrom: <{customer}>\r\nTo: <{inbox}>\r\nSubject: Re: still open\r\n\
         Date: {when}\r\nMessage-ID: <reopen-{label}@customer.example>\r\nIn-Reply-To: {last}\r\n\
         References: {last}\r\n\r\nAny news on this?\r\n"
    );
    let again = tmp.path().join("again");
    std::fs::create_dir_all(&again).unwrap();
    std::fs::write(again.join("reopen.eml"), eml).unwrap();
    run(&data, &["import", again.to_str().unwrap()]);
    let after = mailroom(&data, &["report", "--json", "--now", now]);
    assert_eq!(after["closed"], report["closed"].as_i64().unwrap() - 1, "reopened by the customer");
    assert_eq!(after["open"], report["open"].as_i64().unwrap() + 1);
    assert_eq!(after["messages"]["in"], report["messages"]["in"].as_i64().unwrap() + 1);
    let listing = mailroom(&data, &["conversations", "--json"]);
    let reopened = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|x| {
            x["message_ids"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m.as_str() == Some(&format!("reopen-{label}@customer.example")))
        })
        .expect("the new message joined a conversation");
    assert_eq!(reopened["status"], "open");
    assert_eq!(reopened["ticket"]["status"], "open");

    dashboard(&data, &after);
}

/// `mailroom serve` on the imported data; the dashboard page in headless Chromium.
fn dashboard(data: &Path, report: &Value) {
    let browser = repo_root().join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in tests/browser (scripts/test.sh does)"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut serve = Command::new(bin("mailroom"))
        .arg("--data")
        .arg(data)
        .args(["serve", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    mailroom_tests::wait_for_port(port, std::time::Duration::from_secs(20));
    // The report is behind the API's authentication: an admin's development token.
    let token =
        String::from_utf8(mailroom_tests::mailroom_ok(data, &["token", "maria.keller@acme-corp.example"]))
            .unwrap()
            .trim()
            .to_string();
    let shot = std::env::temp_dir().join(format!("mailroom-dashboard-{}.png", std::process::id()));
    let days = report["volume"]["by_day"].as_object().unwrap().len();
    let agents = report["agents"].as_object().unwrap().len();
    let out = Command::new("node")
        .current_dir(&browser)
        .arg("dashboard.mjs")
        .arg(format!("http://127.0.0.1:{port}/dashboard#token={token}"))
        .arg(&shot)
        .args(["--expect-days", &days.to_string(), "--expect-agents", &agents.to_string()])
        .output()
        .expect("node is missing: install Node.js");
    let _ = serve.kill();
    let _ = serve.wait();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("dashboard: {stdout}");
    assert!(
        out.status.success(),
        "dashboard check failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "screenshot {} is {size} bytes", shot.display());
    println!("screenshot: {}", shot.display());
}
