//! Replay of the route stage (issue 21): on gen_corpus.py's 2,000 conversations, one
//! routing rule changes, then `mailroom replay`: the dry run's counts equal what the real
//! run changes (measured by comparing the conversations before and after), a second run
//! changes nothing, no event (so no notification) is written, and every conversation's
//! team is what the corpus's ground truth says under the new rule.

use mailroom_app::Ports;
use mailroom_store::Query;
use mailroom_tests::{gen_corpus, mailroom_json as mailroom, repo_root};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The rule that changes: sales keywords in the subject now go to support, with their
/// tickets in the sales pipeline.
const OLD_RULE: &str = r#"name = "subject: sales"
conditions = [{ field = "subject", op = "contains_any_word", values = ["pricing", "quote", "demo", "purchase"] }]
actions = { team = "sales", assign = "round_robin" }"#;
const NEW_RULE: &str = r#"name = "subject: sales"
conditions = [{ field = "subject", op = "contains_any_word", values = ["pricing", "quote", "demo", "purchase"] }]
actions = { team = "support", pipeline = "sales", stage = "qualified", assign = "round_robin" }"#;

/// conversation (by its first message id) -> (team, ticket pipeline, ticket stage)
type Routing = BTreeMap<String, (Option<String>, Option<String>, Option<String>)>;

fn routing(data: &Path) -> Routing {
    let convs = mailroom(data, &["conversations", "--json"]);
    convs
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |v: &Value| v.as_str().map(str::to_string);
            (
                c["message_ids"][0].as_str().unwrap().to_string(),
                (s(&c["team"]), s(&c["ticket"]["pipeline"]), s(&c["ticket"]["stage"])),
            )
        })
        .collect()
}

async fn events(data: &Path) -> usize {
    let ports = Ports::embedded(data).unwrap();
    let q = Query::new(mailroom_app::feed::EVENTS_INDEX_PK).index("gsi1");
    ports.table.query_all(q).await.unwrap().len()
}

fn counts(s: &Value) -> Value {
    let mut s = s.clone();
    let o = s.as_object_mut().unwrap();
    o.remove("dry_run");
    o.remove("lines");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_a_rule_change_on_2000_conversations() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    gen_corpus(&corpus, 2000, 41);
    let messages = corpus.join("messages");
    let old_text = std::fs::read_to_string(repo_root().join("examples/acme-corp.toml")).unwrap();
    assert!(old_text.contains(OLD_RULE), "examples/acme-corp.toml has the sales subject rule");
    let new_text = old_text.replace(OLD_RULE, NEW_RULE);
    let (old_ws, new_ws) = (tmp.path().join("old.toml"), tmp.path().join("new.toml"));
    std::fs::write(&old_ws, &old_text).unwrap();
    std::fs::write(&new_ws, &new_text).unwrap();

    // History routed by the old rule, then the rule changes.
    let data = tmp.path().join("data");
    mailroom(&data, &["apply", old_ws.to_str().unwrap(), "--json"]);
    mailroom(&data, &["import", messages.to_str().unwrap(), "--json"]);
    mailroom(&data, &["apply", new_ws.to_str().unwrap(), "--json"]);
    let before = routing(&data);
    let events_before = events(&data).await;

    let dry = mailroom(&data, &["replay", "--since", "2024-01-01", "--dry-run", "--json"]);
    assert_eq!(routing(&data), before, "a dry run changes nothing");
    let real = mailroom(&data, &["replay", "--since", "2024-01-01", "--json"]);
    assert_eq!(counts(&dry), counts(&real), "dry run {dry}\nreal run {real}");
    eprintln!("replay: {}", real["lines"]);
    let after = routing(&data);

    // The real run's counts are the changes it made.
    let mut team_moves: BTreeMap<String, u64> = BTreeMap::new();
    let mut ticket_moves: BTreeMap<String, u64> = BTreeMap::new();
    let mut changed = 0;
    for (id, (team, pipeline, _)) in &before {
        let (team2, pipeline2, stage2) = &after[id];
        let name = |t: &Option<String>| t.clone().unwrap_or_else(|| "-".into());
        if team != team2 {
            changed += 1;
            *team_moves.entry(format!("{} -> {}", name(team), name(team2))).or_default() += 1;
        }
        if pipeline != pipeline2 {
            *ticket_moves.entry(format!("{} -> {}", name(pipeline), name(pipeline2))).or_default() += 1;
            assert_eq!(stage2.as_deref(), Some("qualified"), "{id}: the rule's stage");
        }
    }
    assert!(changed > 20, "the rule moves conversations: {real}");
    assert_eq!(real["team_moves"], serde_json::to_value(&team_moves).unwrap(), "{real}");
    assert_eq!(real["ticket_moves"], serde_json::to_value(&ticket_moves).unwrap(), "{real}");
    assert!(ticket_moves.get("support -> sales").is_some_and(|n| *n > 0), "{ticket_moves:?}");
    assert_eq!(
        team_moves.keys().collect::<Vec<_>>(),
        ["sales -> support"],
        "only the changed rule's conversations"
    );

    // Twice gives the same result; history stays quiet; the run is audited.
    let again = mailroom(&data, &["replay", "--since", "2024-01-01", "--json"]);
    assert_eq!(again["changed"], 0, "{again}");
    assert_eq!(events(&data).await, events_before, "a replay writes no event, so it notifies no one");
    let ports = Ports::embedded(&data).unwrap();
    let audit = ports.table.query_all(Query::new(mailroom_app::keys::AUDIT_PK)).await.unwrap();
    assert_eq!(audit.len(), 3, "one audit entry per run: {audit:?}");
    drop(ports);

    // The routing the new rule gives, computed from the corpus's ground truth: the team
    // is decided on a conversation's first message, and a subject never holds keywords of
    // two teams (gen_corpus.py), so a sales keyword in that subject now means support.
    let truth: Vec<Value> = std::fs::read_to_string(corpus.join("truth.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut first: BTreeMap<&str, &Value> = BTreeMap::new();
    for r in &truth {
        first.entry(r["conversation"].as_str().unwrap()).or_insert(r);
    }
    let mut checked = 0;
    for r in first.values().filter(|r| r["kind"] != "list") {
        let id = r["message_id"].as_str().unwrap().trim_matches(['<', '>']);
        let Some((team, _, _)) = after.get(id) else { continue };
        let subject = r["subject"].as_str().unwrap_or_default().to_lowercase();
        let sales_subject = ["pricing", "quote", "demo", "purchase"]
            .iter()
            .any(|k| subject.split(|c: char| !c.is_alphanumeric()).any(|w| w == *k));
        let want = if sales_subject { "support" } else { r["expected_team"].as_str().unwrap() };
        assert_eq!(team.as_deref(), Some(want), "{id}: {subject}");
        checked += 1;
    }
    assert!(checked > 1500, "conversations checked against the truth: {checked}");
}
