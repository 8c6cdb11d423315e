//! `mailroom apply` on embedded storage: the example workspace applies twice (same
//! counts, version 2) and round-trips through `workspace::load`; a broken file
//! exits 2 with one `FILE:LINE: path: message` line per problem and writes nothing;
//! items that vanish from the file are archived, deactivated or deleted as documented.

use mailroom_app::Ports;
use mailroom_app::workspace;
use mailroom_store::{Key, Query};
use mailroom_tests::{bin, repo_root};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example() -> PathBuf {
    repo_root().join("examples/acme-corp.toml")
}

fn apply(data: &Path, file: &Path) -> Output {
    Command::new(bin("mailroom"))
        .arg("--data")
        .arg(data)
        .arg("apply")
        .arg(file)
        .arg("--json")
        .output()
        .unwrap()
}

fn apply_json(data: &Path, file: &Path) -> Value {
    let out = apply(data, file);
    assert!(out.status.success(), "apply failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

async fn item(ports: &Ports, pk: &str, sk: &str) -> Option<serde_json::Map<String, Value>> {
    ports.table.get(&Key::new(pk, sk)).await.unwrap()
}

#[tokio::test]
async fn the_example_applies_twice_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let first = apply_json(&data, &example());
    let counts = json!({
        "version": 1, "inboxes": 12, "users": 8, "teams": 4, "pipelines": 2, "rules": 7, "deals": 2,
        "contacts": 1, "archived_inboxes": 0, "deactivated_users": 0, "unconfigured_contacts": 0, "deleted": 0,
    });
    assert_eq!(first, counts);
    let second = apply_json(&data, &example());
    let mut counts2 = counts.clone();
    counts2["version"] = json!(2);
    assert_eq!(second, counts2, "a second apply of the same file changes nothing but the version");

    let ports = Ports::embedded(&data).unwrap();
    let loaded = workspace::load(&ports).await.unwrap().expect("a workspace after apply");
    let text = std::fs::read_to_string(example()).unwrap();
    let parsed = mailroom_core::workspace::parse_toml(&text).unwrap();
    assert_eq!(loaded, parsed);

    let current = item(&ports, "workspace", "current").await.unwrap();
    assert_eq!(current["version"], 2);
    assert!(current["applied_at"].is_string());

    let support = item(&ports, "inbox#support@acme-corp.example", "inbox").await.unwrap();
    assert_eq!(support["configured"], true);
    assert_eq!(support["type"], "shared");
    assert_eq!(support["fallback_team"], "support");
    assert_eq!(support["tickets"], json!({"enabled": true, "pipeline": "support", "stage": "new"}));
    assert_eq!(
        (support["gsi1pk"].as_str(), support["gsi1sk"].as_str()),
        (Some("inboxes"), Some("support@acme-corp.example"))
    );
    let agent = item(&ports, "inbox#lukas.schmidt@acme-corp.example", "inbox").await.unwrap();
    assert_eq!(agent["owner"], "lukas.schmidt@acme-corp.example");
    assert_eq!(agent["tickets"]["stage"], "new", "the pipeline's first stage when none is given");
    let inboxes = ports.table.query_all(Query::new("inboxes").index("gsi1")).await.unwrap();
    assert_eq!(inboxes.len(), 12);

    let user = item(&ports, "user#aiko.tanaka@acme-corp.example", "user").await.unwrap();
    assert_eq!((user["name"].as_str(), user["active"].as_bool()), (Some("Aiko Tanaka"), Some(true)));
    assert_eq!(user["teams"], json!(["billing"]));
    let team = item(&ports, "team#onboarding", "team").await.unwrap();
    assert_eq!(team["members"], json!(["sofia.rossi@acme-corp.example"]));
    let pipeline = item(&ports, "pipeline#support", "pipeline").await.unwrap();
    assert_eq!(pipeline["stages"][3]["closed"], true);
    let rules = ports.table.query_all(Query::new("rules")).await.unwrap();
    let names: Vec<&str> = rules.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names[..3], ["subject: billing", "subject: onboarding", "subject: sales"]);
    assert_eq!(rules.len(), 7);
    let links = ports.table.query_all(Query::new("deals#globex.example.org")).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(
        (links[0]["sk"].as_str(), links[0]["status"].as_str()),
        (Some("globex-2024-renewal"), Some("open"))
    );
    let contact = item(&ports, "contact#jane.doe@globex.example.org", "contact").await.unwrap();
    assert_eq!(contact["owner"], "james.oconnor@acme-corp.example");
    assert_eq!(contact["properties"]["tier"], "enterprise");
}

#[test]
fn a_broken_file_exits_2_with_one_line_per_error_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let text = std::fs::read_to_string(example()).unwrap();
    // Two problems: a rule names a team that does not exist, and an inbox is listed twice.
    let broken =
        text.replacen("actions = { team = \"sales\", assign", "actions = { team = \"sale\", assign", 1)
            + "\n[[inboxes]]\naddress = \"Support@acme-corp.example\"\n";
    let file = tmp.path().join("broken.toml");
    std::fs::write(&file, &broken).unwrap();
    let out = apply(&data, &file);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    let line_of = |needle: &str| broken.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let shown = file.display();
    assert_eq!(
        lines,
        vec![
            format!(
                "{shown}:{}: rules[2].actions.team: unknown team \"sale\" (teams: billing, onboarding, sales, support)",
                line_of("team = \"sale\",")
            ),
            format!(
                "{shown}:{}: inboxes[12].address: duplicate inbox support@acme-corp.example (also inboxes[0])",
                line_of("address = \"Support@acme-corp.example\"")
            ),
        ]
    );
    assert!(!data.exists(), "nothing written, not even the data directory");

    // A syntax error, and a file that is not TOML.
    std::fs::write(&file, "[[users]\nemail = 1\n").unwrap();
    let out = apply(&data, &file);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with(&format!("{shown}:1: (syntax): ")), "{stderr}");
    let json = tmp.path().join("workspace.json");
    std::fs::write(&json, "{}").unwrap();
    let out = apply(&data, &json);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("only .toml workspace files are supported (got .json)"), "{stderr}");
    assert!(!data.exists());
}

#[tokio::test]
async fn vanished_items_are_archived_deactivated_or_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // An inbox the ingest path registered before any configuration.
    {
        let ports = Ports::embedded(&data).unwrap();
        let mut it = Key::new("inbox#support@acme-corp.example", "inbox").item();
        it.insert("address".into(), json!("support@acme-corp.example"));
        it.insert("created_at".into(), json!("2024-03-04T00:00:00+00:00"));
        it.insert("gsi1pk".into(), json!("inboxes"));
        it.insert("gsi1sk".into(), json!("support@acme-corp.example"));
        ports.table.put(it, None).await.unwrap();
        let mut c = Key::new("contact#jane.doe@globex.example.org", "contact").item();
        c.insert("first_seen".into(), json!("2024-03-05T00:00:00+00:00"));
        ports.table.put(c, None).await.unwrap();
    }
    apply_json(&data, &example());
    let small = tmp.path().join("small.toml");
    std::fs::write(
        &small,
        r#"
[[users]]
email = "maria.keller@acme-corp.example"
name = "Maria Keller"

[[teams]]
id = "support"
members = ["maria.keller@acme-corp.example"]

[[pipelines]]
id = "support"
stages = [{ id = "new" }, { id = "closed", closed = true }]

[[inboxes]]
address = "support@acme-corp.example"
tickets = { enabled = true, pipeline = "support" }
fallback_team = "support"
"#,
    )
    .unwrap();
    let s = apply_json(&data, &small);
    assert_eq!(
        s,
        json!({
            "version": 2, "inboxes": 1, "users": 1, "teams": 1, "pipelines": 1, "rules": 0, "deals": 0,
            "contacts": 0, "archived_inboxes": 11, "deactivated_users": 7, "unconfigured_contacts": 1,
            // 3 teams, 1 pipeline, 7 rules, 2 deals, 3 deal links
            "deleted": 16,
        })
    );
    let ports = Ports::embedded(&data).unwrap();
    let support = item(&ports, "inbox#support@acme-corp.example", "inbox").await.unwrap();
    assert_eq!(support["created_at"], "2024-03-04T00:00:00+00:00", "apply merges into the registered inbox");
    assert_eq!((support["configured"].as_bool(), support["archived"].as_bool()), (Some(true), Some(false)));
    let billing = item(&ports, "inbox#billing@acme-corp.example", "inbox").await.unwrap();
    assert_eq!((billing["configured"].as_bool(), billing["archived"].as_bool()), (Some(false), Some(true)));
    assert_eq!(billing["gsi1pk"], "inboxes", "an archived inbox is still listed");
    let tom = item(&ports, "user#tom.becker@acme-corp.example", "user").await.unwrap();
    assert_eq!(tom["active"], false);
    assert!(item(&ports, "team#billing", "team").await.is_none());
    assert!(item(&ports, "pipeline#sales", "pipeline").await.is_none());
    assert!(item(&ports, "deal#initech-pilot", "deal").await.is_none());
    assert!(ports.table.query_all(Query::new("rules")).await.unwrap().is_empty());
    assert!(ports.table.query_all(Query::new("deals#globex.example.org")).await.unwrap().is_empty());
    let jane = item(&ports, "contact#jane.doe@globex.example.org", "contact").await.unwrap();
    assert_eq!(jane["first_seen"], "2024-03-05T00:00:00+00:00", "the pipeline's attributes stay");
    assert_eq!(jane["configured"], false);
    assert!(jane.get("owner").is_none());

    // Back to the full file: everything returns.
    let s = apply_json(&data, &example());
    assert_eq!((s["version"].as_u64(), s["archived_inboxes"].as_u64()), (Some(3), Some(0)));
    let billing = item(&ports, "inbox#billing@acme-corp.example", "inbox").await.unwrap();
    assert_eq!((billing["configured"].as_bool(), billing["archived"].as_bool()), (Some(true), Some(false)));
    let tom = item(&ports, "user#tom.becker@acme-corp.example", "user").await.unwrap();
    assert_eq!(tom["active"], true);
}
