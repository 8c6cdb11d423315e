//! CRM matching, routing and tickets against gen_corpus.py's ground truth, with
//! examples/acme-corp.toml applied: contacts, companies, teams, tickets, round-robin
//! fairness; the same counts when every queue message is delivered twice; and the three
//! stages over SQS and DynamoDB on moto, with a poison message dead-lettered.

use async_trait::async_trait;
use mailroom_app::{Ingestor, Ports, RawMail, Stages, Worker};
use mailroom_core::{EmailAddress, Folder};
use mailroom_store::{Queue, QueueMessage};
use mailroom_tests::{AwsStack, gen_corpus, repo_root};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const ACME: &str = "@acme-corp.example";
const FREEMAIL: [&str; 6] = ["gmail.com", "outlook.com", "yahoo.com", "gmx.de", "web.de", "icloud.com"];

fn truth(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_lowercase).collect())
        .unwrap_or_default()
}

/// The contacts the rules call for: the external people of customer (normal) mail: the
/// sender of inbound mail, the To recipients of sent mail, and everyone external on To
/// or Cc (the example enables Cc contacts on every inbox). Noise-only senders: none.
fn expected_contacts(rows: &[Value]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for r in rows.iter().filter(|r| r["kind"] == "normal") {
        let mut all = strs(&r["to"]);
        all.extend(strs(&r["cc"]));
        if r["direction"] == "inbound" {
            all.push(r["from"].as_str().unwrap().to_lowercase());
        }
        out.extend(all.into_iter().filter(|a| !a.ends_with(ACME)));
    }
    out
}

use mailroom_tests::mailroom_json as mailroom;

/// (team, assignee, ticket stage) of a conversation.
type Routed = (Option<String>, Option<String>, Option<String>);

struct Figures {
    contacts: BTreeSet<String>,
    companies: BTreeSet<String>,
    tickets: usize,
    /// conversation (as the set of its message ids) -> (team, assignee, ticket stage)
    routing: BTreeMap<BTreeSet<String>, Routed>,
}

fn figures(convs: &[Value], contacts: &[Value], companies: &[Value]) -> Figures {
    let s = |v: &Value| v.as_str().map(str::to_string);
    Figures {
        contacts: contacts.iter().map(|c| c["email"].as_str().unwrap().to_string()).collect(),
        companies: companies.iter().map(|c| c["domain"].as_str().unwrap().to_string()).collect(),
        tickets: convs.iter().filter(|c| !c["ticket"].is_null()).count(),
        routing: convs
            .iter()
            .map(|c| {
                let ids = c["message_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap().to_string())
                    .collect();
                (ids, (s(&c["team"]), s(&c["assignee"]), s(&c["ticket"]["stage"])))
            })
            .collect(),
    }
}

/// Checks a run against truth.
fn check(f: &Figures, convs: &[Value], rows: &[Value], label: &str) {
    let want = expected_contacts(rows);
    let missing: Vec<_> = want.difference(&f.contacts).take(10).collect();
    let extra: Vec<_> = f.contacts.difference(&want).take(10).collect();
    eprintln!(
        "{label}: {} contacts (truth {}), missing {missing:?}, extra {extra:?}",
        f.contacts.len(),
        want.len()
    );
    assert!(missing.is_empty() && extra.is_empty(), "{label}: contacts differ from truth");
    let domains: BTreeSet<String> = want
        .iter()
        .filter_map(|a| a.rsplit_once('@').map(|(_, d)| d.to_string()))
        .filter(|d| !FREEMAIL.contains(&d.as_str()))
        .collect();
    assert_eq!(f.companies, domains, "{label}: companies must be exactly the non-freemail domains");

    // Tickets: one per conversation with a normal inbound customer message.
    let by_id: HashMap<String, &Value> = rows
        .iter()
        .map(|r| (r["message_id"].as_str().unwrap().trim_matches(['<', '>']).to_string(), r))
        .collect();
    let customer_convs: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r["direction"] == "inbound" && r["kind"] == "normal")
        .map(|r| r["conversation"].as_str().unwrap())
        .collect();
    eprintln!(
        "{label}: {} tickets (truth: {} conversations with a customer message)",
        f.tickets,
        customer_convs.len()
    );
    assert_eq!(f.tickets, customer_convs.len(), "{label}: ticket count");

    // Teams of ticketed conversations, and round-robin spread per team.
    let (mut n, mut ok, mut wrong) = (0, 0, Vec::new());
    let mut spread: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for c in convs.iter().filter(|c| !c["ticket"].is_null()) {
        let first = c["message_ids"][0].as_str().unwrap();
        let want = by_id[first]["expected_team"].as_str().unwrap();
        n += 1;
        if c["team"].as_str() == Some(want) {
            ok += 1;
        } else if wrong.len() < 10 {
            wrong.push(format!("{} {:?}: {want} -> {}", c["id"], c["subject"], c["team"]));
        }
        if let (Some(t), Some(a)) = (c["team"].as_str(), c["assignee"].as_str()) {
            *spread.entry(t.into()).or_default().entry(a.into()).or_default() += 1;
        }
    }
    let acc = ok as f64 / n as f64;
    eprintln!(
        "{label}: team = expected_team for {ok}/{n} ticketed conversations ({acc:.4}); round-robin {spread:?}"
    );
    assert!(acc >= 0.99, "{label}: team accuracy {acc}: {wrong:#?}");
    assert_eq!(spread.len(), 4, "{label}: every team gets assignments: {spread:?}");
    for (team, per_agent) in &spread {
        let (min, max) = (per_agent.values().min().unwrap(), per_agent.values().max().unwrap());
        assert!(max - min <= 1, "{label}: round-robin spread in {team}: {per_agent:?}");
    }
}

#[test]
fn acme_workspace_on_2000_conversations_matches_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    gen_corpus(&corpus, 2000, 41);
    let rows = truth(&corpus);
    let data = tmp.path().join("data");
    let example = repo_root().join("examples/acme-corp.toml");
    mailroom(&data, &["apply", example.to_str().unwrap(), "--json"]);
    let summary = mailroom(&data, &["import", corpus.join("messages").to_str().unwrap(), "--json"]);
    assert_eq!(summary["failed"], 0, "{summary}");
    assert_eq!(summary["dead_lettered"], 0, "{summary}");
    let convs = mailroom(&data, &["conversations", "--json"]);
    let convs = convs.as_array().unwrap();
    let contacts = mailroom(&data, &["contacts", "--json"]);
    let companies = mailroom(&data, &["companies", "--json"]);
    let f = figures(convs, contacts.as_array().unwrap(), companies.as_array().unwrap());
    check(&f, convs, &rows, "2000 conversations");
    for c in convs {
        for k in ["contact_email", "company_domain", "deal_ids", "team", "assignee", "priority", "ticket"] {
            assert!(c.get(k).is_some(), "conversation without {k}: {c}");
        }
    }
}

/// A queue that delivers every message twice (what SQS's at-least-once delivery may do).
struct TwiceQueue(Arc<dyn Queue>);

#[async_trait]
impl Queue for TwiceQueue {
    async fn send_batch(&self, bodies: &[String]) -> mailroom_store::error::Result<Vec<String>> {
        let doubled: Vec<String> = bodies.iter().flat_map(|b| [b.clone(), b.clone()]).collect();
        self.0.send_batch(&doubled).await
    }
    async fn receive(
        &self,
        max: u32,
        visibility: Duration,
        wait: Duration,
    ) -> mailroom_store::error::Result<Vec<QueueMessage>> {
        self.0.receive(max, visibility, wait).await
    }
    async fn delete(&self, receipt: &str) -> mailroom_store::error::Result<()> {
        self.0.delete(receipt).await
    }
    async fn change_visibility(
        &self,
        receipt: &str,
        visibility: Duration,
    ) -> mailroom_store::error::Result<()> {
        self.0.change_visibility(receipt, visibility).await
    }
    async fn approximate_len(&self) -> mailroom_store::error::Result<u64> {
        self.0.approximate_len().await
    }
}

async fn run_library(data: &Path, corpus: &Path, rows: &[Value], twice: bool) -> (Figures, Vec<Value>) {
    let mut ports = Ports::embedded(data).unwrap();
    let ws = mailroom_tests::acme_workspace();
    mailroom_app::workspace::apply(&ports, &ws).await.unwrap();
    if twice {
        ports.ingest_queue = Arc::new(TwiceQueue(ports.ingest_queue.clone()));
        ports.route_queue = Arc::new(TwiceQueue(ports.route_queue.clone()));
        ports.ticket_queue = Arc::new(TwiceQueue(ports.ticket_queue.clone()));
    }
    let ingestor = Ingestor::new(ports.clone());
    let stages = Stages::new(&ports);
    for r in rows {
        let mut mail = RawMail::new(std::fs::read(corpus.join(r["file"].as_str().unwrap())).unwrap(), "test");
        mail.inbox = Some(EmailAddress::parse(r["delivered_to"].as_str().unwrap()).unwrap());
        mail.folder = Some(if r["direction"] == "outbound" { Folder::Sent } else { Folder::Inbox });
        ingestor.ingest(mail).await.unwrap();
        let r = stages.process_visible().await.unwrap();
        assert_eq!(r.failed, 0, "a stage failed");
    }
    let stats = mailroom_app::views::stats::collect(&ports).await.unwrap();
    assert_eq!(stats.dead_lettered(), 0);
    let convs: Vec<Value> = serde_json::from_value(
        serde_json::to_value(mailroom_app::views::conversations::list(&ports).await.unwrap()).unwrap(),
    )
    .unwrap();
    let contacts = serde_json::to_value(mailroom_app::views::crm::contacts(&ports).await.unwrap()).unwrap();
    let companies = serde_json::to_value(mailroom_app::views::crm::companies(&ports).await.unwrap()).unwrap();
    (figures(&convs, contacts.as_array().unwrap(), companies.as_array().unwrap()), convs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_queue_message_delivered_twice_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    gen_corpus(&corpus, 300, 43);
    let rows = truth(&corpus);
    let (once, convs) = run_library(&tmp.path().join("once"), &corpus, &rows, false).await;
    check(&once, &convs, &rows, "once");
    let (twice, convs2) = run_library(&tmp.path().join("twice"), &corpus, &rows, true).await;
    check(&twice, &convs2, &rows, "twice");
    assert_eq!(once.contacts, twice.contacts);
    assert_eq!(once.companies, twice.companies);
    assert_eq!(once.tickets, twice.tickets);
    assert!(once.routing == twice.routing, "routing (team, assignee, stage) differs when delivered twice");
}

/// Counts the messages a handler saw, failing the poison one.
struct Poisoned<H>(H, String);

#[async_trait]
impl<H: mailroom_app::MessageHandler> mailroom_app::MessageHandler for Poisoned<H> {
    async fn handle(&self, body: &str) -> anyhow::Result<()> {
        if body.contains(&self.1) {
            anyhow::bail!("poison");
        }
        self.0.handle(body).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_stages_run_on_moto_and_a_poison_message_is_dead_lettered() {
    let stack = AwsStack::create().await;
    let ports = stack.ports();
    let ws = mailroom_tests::acme_workspace();
    mailroom_app::workspace::apply(&ports, &ws).await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    gen_corpus(tmp.path(), 12, 47);
    let rows = truth(tmp.path());
    let ingestor = Ingestor::new(ports.clone());
    for r in &rows {
        let mut mail =
            RawMail::new(std::fs::read(tmp.path().join(r["file"].as_str().unwrap())).unwrap(), "test");
        mail.inbox = Some(EmailAddress::parse(r["delivered_to"].as_str().unwrap()).unwrap());
        mail.folder = Some(if r["direction"] == "outbound" { Folder::Sent } else { Folder::Inbox });
        ingestor.ingest(mail).await.unwrap();
    }
    // A route message that names no recorded message: it must fail alone, five times,
    // then sit in the route DLQ while the rest of its batch goes through.
    ports.route_queue.send(r#"{"message_id":"poison@nowhere.invalid"}"#).await.unwrap();
    let quick = |q: Arc<dyn Queue>, h: Arc<dyn mailroom_app::MessageHandler>| {
        let mut w = Worker::new(q, h);
        w.retry_base = Duration::from_millis(10);
        w.visibility = Duration::from_secs(1);
        w
    };
    let workers = [
        quick(ports.ingest_queue.clone(), Arc::new(mailroom_app::MatchHandler::new(ports.clone()))),
        quick(
            ports.route_queue.clone(),
            Arc::new(Poisoned(mailroom_app::RouteHandler::new(ports.clone()), "poison@".into())),
        ),
        quick(ports.ticket_queue.clone(), Arc::new(mailroom_app::TicketHandler::new(ports.clone()))),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        for w in &workers {
            w.run_once(Duration::from_millis(200)).await.unwrap();
        }
        let dlq = ports.route_dlq.as_ref().unwrap().approximate_len().await.unwrap();
        let pending = ports.ingest_queue.approximate_len().await.unwrap()
            + ports.route_queue.approximate_len().await.unwrap()
            + ports.ticket_queue.approximate_len().await.unwrap();
        if dlq == 1 && pending == 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "stages did not settle: dlq {dlq}, pending {pending}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let stats = mailroom_app::views::stats::collect(&ports).await.unwrap();
    let customer_convs: BTreeSet<&str> = rows
        .iter()
        .filter(|r| r["direction"] == "inbound" && r["kind"] == "normal")
        .map(|r| r["conversation"].as_str().unwrap())
        .collect();
    eprintln!("moto: {stats:?}");
    assert_eq!(stats.processed as usize, rows.len());
    assert_eq!(stats.tickets as usize, customer_convs.len(), "one ticket per customer conversation");
    assert!(stats.contacts > 0 && stats.companies > 0);
    let dead =
        ports.route_dlq.as_ref().unwrap().receive(10, Duration::from_secs(5), Duration::ZERO).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].body.contains("poison@nowhere.invalid"));
    assert_eq!(ports.ingest_dlq.as_ref().unwrap().approximate_len().await.unwrap(), 0);
    assert_eq!(ports.ticket_dlq.as_ref().unwrap().approximate_len().await.unwrap(), 0);
}

const SMALL_WORKSPACE: &str = r#"
[[users]]
email = "a@x.example"
name = "A"
[[users]]
email = "b@x.example"
name = "B"

[[teams]]
id = "t"
members = ["a@x.example", "b@x.example"]
assign = "round_robin"

[[pipelines]]
id = "p"
stages = [{ id = "new" }, { id = "closed", closed = true }]

[[inboxes]]
address = "support@x.example"
tickets = { enabled = true, pipeline = "p" }
fallback_team = "t"

[[contacts]]
email = "vip@big.example"
owner = "b@x.example"
properties = { tier = "gold" }

[[rules]]
name = "big company"
conditions = [{ field = "company.domain", op = "equals", value = "big.example" }]
actions = { tags = ["big"] }
continue = true

[[rules]]
name = "gold customers go to their owner"
conditions = [{ field = "contact.tier", op = "equals", value = "gold" }]
actions = { team = "t", assign = "contact_owner", priority = "high" }
"#;

fn mail(from: &str, to: &str, subject: &str, date: &str, id: &str, parent: Option<&str>) -> Vec<u8> {
    let mut m = format!(
        "Delivered-To: support@x.example\r\nFrom: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n"
    );
    if let Some(p) = parent {
        m.push_str(&format!("In-Reply-To: <{p}>\r\nReferences: <{p}>\r\n"));
    }
    m.push_str("\r\nHello\r\n");
    m.into_bytes()
}

/// Contact-owner assignment and company/contact properties in rules; a customer reply
/// reopens a closed ticket once; an agent reply creates nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contact_owner_properties_and_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let ports = Ports::embedded(tmp.path()).unwrap();
    let ws = mailroom_core::workspace::parse_toml(SMALL_WORKSPACE).unwrap();
    mailroom_app::workspace::apply(&ports, &ws).await.unwrap();
    let ingestor = Ingestor::new(ports.clone());
    let stages = Stages::new(&ports);
    let send = |raw: Vec<u8>, folder: Folder| {
        let mut m = RawMail::new(raw, "test");
        m.inbox = Some(EmailAddress::parse("support@x.example").unwrap());
        m.folder = Some(folder);
        m
    };
    // A vip customer writes; a gold contact goes to its owner; the company rule tags it.
    let first = mail(
        "VIP <vip@big.example>",
        "support@x.example",
        "Help",
        "Thu, 1 Jan 2026 10:00:00 +0000",
        "m1@big.example",
        None,
    );
    ingestor.ingest(send(first, Folder::Inbox)).await.unwrap();
    stages.drain().await.unwrap();
    let convs = mailroom_app::views::conversations::list(&ports).await.unwrap();
    assert_eq!(convs.len(), 1);
    let c = &convs[0];
    assert_eq!(c.assignee.as_deref(), Some("b@x.example"), "{c:?}");
    assert_eq!(c.priority.as_deref(), Some("high"));
    assert_eq!(c.tags, ["big"]);
    let ticket = c.ticket.clone().expect("a ticket");
    assert_eq!(
        (ticket.pipeline.as_str(), ticket.stage.as_str(), ticket.status.as_str()),
        ("p", "new", "open")
    );

    // An agent closes the ticket (the API will do this), then replies: nothing reopens.
    let key = mailroom_app::keys::ticket_key(&c.id);
    ports
        .table
        .update(
            &key,
            vec![
                mailroom_store::Update::Set("status".into(), serde_json::json!("closed")),
                mailroom_store::Update::Set("stage".into(), serde_json::json!("closed")),
                mailroom_store::Update::Set(
                    "closed_at".into(),
                    serde_json::json!("2026-01-02T00:00:00+00:00"),
                ),
            ],
            None,
        )
        .await
        .unwrap();
    let agent = mail(
        "B <b@x.example>",
        "vip@big.example",
        "Re: Help",
        "Fri, 2 Jan 2026 09:00:00 +0000",
        "a1@x.example",
        Some("m1@big.example"),
    );
    ingestor.ingest(send(agent, Folder::Sent)).await.unwrap();
    stages.drain().await.unwrap();
    let t = ports.table.get(&key).await.unwrap().unwrap();
    assert_eq!(t["status"], "closed", "an agent reply must not reopen");

    // The customer answers: the ticket reopens, once, even when the pointer comes twice.
    let reply = mail(
        "VIP <vip@big.example>",
        "support@x.example",
        "Re: Help",
        "Sat, 3 Jan 2026 09:00:00 +0000",
        "m2@big.example",
        Some("a1@x.example"),
    );
    ingestor.ingest(send(reply, Folder::Inbox)).await.unwrap();
    stages.drain().await.unwrap();
    ports.ticket_queue.send(r#"{"message_id":"m2@big.example"}"#).await.unwrap();
    stages.drain().await.unwrap();
    let t = ports.table.get(&key).await.unwrap().unwrap();
    assert_eq!(t["status"], "open");
    assert_eq!(t["stage"], "new");
    assert_eq!(t["reopened"], 1);
    let stats = mailroom_app::views::stats::collect(&ports).await.unwrap();
    assert_eq!(stats.tickets, 1);
    assert_eq!(stats.contacts, 1, "the agent is not a contact");
    assert_eq!(stats.companies, 1);
}
