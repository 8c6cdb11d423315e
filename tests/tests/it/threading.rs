//! Message understanding end to end, against gen_corpus.py's ground truth: a 2000-
//! conversation mailbox taken in as each inbox's inbound mail and each inbox's Sent
//! folder, in both orders. Conversations must
//! match truth (pairwise precision and recall >= 0.995, no two customers merged), kinds
//! must match (>= 0.99 per kind), duplicates stored once, and both orders must give the
//! same conversations. A shuffled arrival order through the library gives them too.

use mailroom_app::{IngestOutcome, Ingestor, Ports, RawMail, Worker};
use mailroom_core::{EmailAddress, Folder};
use mailroom_tests::gen_corpus;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Row {
    file: PathBuf,
    message_id: String,
    delivered_to: String,
    direction: String,
    conversation: String,
    kind: String,
    contact: String,
}

fn load_truth(dir: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(dir.join("truth.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            Row {
                file: dir.join(s("file")),
                message_id: s("message_id").trim_start_matches('<').trim_end_matches('>').to_string(),
                delivered_to: s("delivered_to"),
                direction: s("direction"),
                conversation: s("conversation"),
                kind: s("kind"),
                contact: s("contact_email"),
            }
        })
        .collect()
}

type Partition = BTreeSet<BTreeSet<String>>;

fn partition(convs: &[Value]) -> Partition {
    convs
        .iter()
        .map(|c| {
            c["message_ids"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect()
        })
        .collect()
}

fn pairs(n: usize) -> f64 {
    (n * n.saturating_sub(1) / 2) as f64
}

/// Checks a run against truth and returns its partition.
fn check(convs: &[Value], rows: &[Row], label: &str) -> Partition {
    let truth_conv: HashMap<&str, &str> =
        rows.iter().map(|r| (r.message_id.as_str(), r.conversation.as_str())).collect();
    let truth_kind: HashMap<&str, &str> =
        rows.iter().map(|r| (r.message_id.as_str(), r.kind.as_str())).collect();
    // The customer of a truth conversation: the contact of its inbound normal messages.
    let mut customer: HashMap<&str, &str> = HashMap::new();
    for r in rows.iter().filter(|r| r.direction == "inbound" && r.kind == "normal") {
        customer.entry(r.conversation.as_str()).or_insert(r.contact.as_str());
    }

    // Every message once, in exactly one conversation.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for c in convs {
        let ids = c["message_ids"].as_array().unwrap();
        assert_eq!(ids.len(), c["messages"].as_array().unwrap().len());
        for m in ids {
            *seen.entry(m.as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    assert_eq!(seen.len(), truth_conv.len(), "{label}: one message per distinct Message-ID");
    assert!(seen.values().all(|&n| n == 1), "{label}: a message listed twice");

    // Pairwise precision and recall.
    let mut cells: HashMap<(usize, &str), usize> = HashMap::new();
    let mut truth_sizes: HashMap<&str, usize> = HashMap::new();
    for (i, c) in convs.iter().enumerate() {
        for m in c["message_ids"].as_array().unwrap() {
            let t = truth_conv[m.as_str().unwrap()];
            *cells.entry((i, t)).or_default() += 1;
            *truth_sizes.entry(t).or_default() += 1;
        }
    }
    let tp: f64 = cells.values().map(|&n| pairs(n)).sum();
    let predicted: f64 = convs.iter().map(|c| pairs(c["message_ids"].as_array().unwrap().len())).sum();
    let actual: f64 = truth_sizes.values().map(|&n| pairs(n)).sum();
    let (precision, recall) = (tp / predicted, tp / actual);

    // Merges of two customers' conversations.
    let mut merges = Vec::new();
    for c in convs {
        let customers: BTreeSet<&str> = c["message_ids"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| customer.get(truth_conv[m.as_str().unwrap()]).copied())
            .collect();
        if customers.len() > 1 {
            merges.push(format!("{} {:?}", c["id"], customers));
        }
    }

    // Kind accuracy per truth kind.
    let mut kinds: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut wrong = Vec::new();
    for c in convs {
        for m in c["messages"].as_array().unwrap() {
            let id = m["message_id"].as_str().unwrap();
            let want = truth_kind[id];
            let got = m["kind"].as_str().unwrap();
            let e = kinds.entry(want).or_default();
            e.0 += 1;
            if got == want {
                e.1 += 1;
            } else if wrong.len() < 20 {
                wrong.push(format!("{id}: {want} -> {got}"));
            }
        }
    }
    eprintln!(
        "{label}: {} conversations (truth {}), pairwise precision {precision:.5} recall {recall:.5}, merges {}, kinds {:?}",
        convs.len(),
        truth_sizes.len(),
        merges.len(),
        kinds.iter().map(|(k, (n, ok))| format!("{k} {ok}/{n}")).collect::<Vec<_>>()
    );
    if !wrong.is_empty() {
        eprintln!("{label}: misclassified (first 20): {wrong:#?}");
    }
    assert!(merges.is_empty(), "{label}: customers' conversations merged: {merges:#?}");
    assert!(precision >= 0.995, "{label}: pairwise precision {precision}");
    assert!(recall >= 0.995, "{label}: pairwise recall {recall}");
    for (k, (n, ok)) in &kinds {
        let acc = *ok as f64 / *n as f64;
        assert!(acc >= 0.99, "{label}: kind {k} accuracy {acc} ({ok}/{n})");
    }
    partition(convs)
}

fn diff(a: &Partition, b: &Partition) -> Vec<String> {
    a.symmetric_difference(b).take(10).map(|s| format!("{s:?}")).collect()
}

/// Threading is the match stage's: both orders go through it alone, in process (the
/// whole pipeline through `mailroom import` is import.rs's test, on the same corpus size).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gen_corpus_conversations_in_both_orders() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let corpus = root.join("corpus");
    gen_corpus(&corpus, 2000, 23);
    let rows = load_truth(&corpus);
    let (sent, inbound): (Vec<usize>, Vec<usize>) =
        (0..rows.len()).partition(|&i| rows[i].direction == "outbound");

    let a = run_phases(&root.join("inbound-first"), &rows, &[&inbound, &sent]).await;
    let pa = check(&a, &rows, "inbound first");
    let b = run_phases(&root.join("sent-first"), &rows, &[&sent, &inbound]).await;
    let pb = check(&b, &rows, "sent first");
    assert!(pa == pb, "the two orders gave different conversations: {:#?}", diff(&pa, &pb));
}

/// Every copy in a random order, through the library, against the in-order result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shuffled_arrival_gives_the_same_conversations() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let corpus = root.join("corpus");
    gen_corpus(&corpus, 300, 29);
    let rows = load_truth(&corpus);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    let in_order = run_library(&root.join("in-order"), &rows, &order).await;
    // A fixed-seed shuffle (xorshift), so a failure can be reproduced.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..order.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let shuffled = run_library(&root.join("shuffled"), &rows, &order).await;
    let pa = check(&in_order, &rows, "in order");
    let pb = check(&shuffled, &rows, "shuffled");
    assert!(pa == pb, "shuffled arrival gave different conversations: {:#?}", diff(&pa, &pb));
}

/// Each phase's copies taken in, then matched (in arrival order, in batches), like an
/// import of one folder after another.
async fn run_phases(data: &Path, rows: &[Row], phases: &[&[usize]]) -> Vec<Value> {
    let ports = Ports::embedded(data).unwrap();
    let ingestor = Ingestor::new(ports.clone());
    let worker =
        Worker::new(ports.ingest_queue.clone(), Arc::new(mailroom_app::MatchHandler::new(ports.clone())));
    for phase in phases {
        for &i in *phase {
            let outcome = ingestor.ingest(raw_mail(&rows[i])).await.unwrap();
            assert!(matches!(outcome, IngestOutcome::Stored(_) | IngestOutcome::Duplicate), "{outcome:?}");
        }
        let r = worker.drain().await.unwrap();
        assert_eq!(r.failed, 0, "a message failed to process");
    }
    listing(&ports).await
}

fn raw_mail(r: &Row) -> RawMail {
    let mut mail = RawMail::new(std::fs::read(&r.file).unwrap(), "test");
    mail.inbox = Some(EmailAddress::parse(&r.delivered_to).unwrap());
    mail.folder = Some(if r.direction == "outbound" { Folder::Sent } else { Folder::Inbox });
    mail
}

async fn listing(ports: &Ports) -> Vec<Value> {
    serde_json::to_value(mailroom_app::views::conversations::list(ports).await.unwrap())
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

async fn run_library(data: &Path, rows: &[Row], order: &[usize]) -> Vec<Value> {
    let ports = Ports::embedded(data).unwrap();
    let ingestor = Ingestor::new(ports.clone());
    let worker =
        Worker::new(ports.ingest_queue.clone(), Arc::new(mailroom_app::MatchHandler::new(ports.clone())));
    for &i in order {
        let outcome = ingestor.ingest(raw_mail(&rows[i])).await.unwrap();
        assert!(matches!(outcome, IngestOutcome::Stored(_) | IngestOutcome::Duplicate), "{outcome:?}");
        // Process as it arrives, so the order really is the arrival order.
        loop {
            let r = worker.run_once(std::time::Duration::ZERO).await.unwrap();
            assert_eq!(r.failed, 0, "a message failed to process");
            if r.ok == 0 {
                break;
            }
        }
    }
    listing(&ports).await
}
