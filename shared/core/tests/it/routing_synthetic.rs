//! examples/acme-corp.toml's routing rules, evaluated by the router on the first message of
//! every conversation of a gen_corpus.py mailbox, against truth's `expected_team`.

use mailroom_core::routing::{RouteContext, Router};
use mailroom_core::understand;
use mailroom_core::workspace::parse_toml;
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

#[test]
fn acme_rules_route_like_the_ground_truth() {
    let text = std::fs::read_to_string(format!("{ROOT}/examples/acme-corp.toml")).unwrap();
    let ws = parse_toml(&text).unwrap_or_else(|e| panic!("examples/acme-corp.toml: {e:?}"));
    let router = Router::new(&ws);

    let out: PathBuf = std::env::temp_dir().join(format!("mailroom-routing-{}", std::process::id()));
    let st = Command::new("python3")
        .arg(format!("{ROOT}/../shared/tools/gen_corpus.py"))
        .args(["--out"])
        .arg(&out)
        .args(["--conversations", "2000", "--seed", "31", "--quiet"])
        .status()
        .expect("python3 is needed to run ../shared/tools/gen_corpus.py");
    assert!(st.success(), "gen_corpus.py failed");
    let truth = std::fs::read_to_string(out.join("truth.jsonl")).unwrap();
    let (mut n, mut ok, mut wrong) = (0, 0, Vec::new());
    let mut seen = HashSet::new();
    for line in truth.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        // Routing is decided once per conversation, on its first message.
        let conv = r["conversation"].as_str().unwrap().to_string();
        if !seen.insert(conv.clone()) {
            continue;
        }
        let raw = std::fs::read(out.join(r["file"].as_str().unwrap())).unwrap();
        let m = understand(&raw).unwrap().message;
        let ctx = RouteContext {
            inbox: r["delivered_to"].as_str().unwrap().to_string(),
            subject: m.subject.clone(),
            body: m.text.clone(),
            sender_email: m.from.map(|f| f.email).unwrap_or_default(),
            kind: serde_json::to_value(m.kind).unwrap().as_str().unwrap_or_default().to_string(),
            ..RouteContext::default()
        };
        let got = router.route(&ctx).team.unwrap_or_default();
        let want = r["expected_team"].as_str().unwrap();
        n += 1;
        if got == want {
            ok += 1;
        } else if wrong.len() < 20 {
            wrong.push(format!("{conv} {}: {want} -> {got} ({:?})", r["file"], m.subject));
        }
    }
    let _ = std::fs::remove_dir_all(&out);
    let acc = ok as f64 / n as f64;
    eprintln!("routing: {ok}/{n} conversations to the expected team ({acc:.4})");
    assert!(acc >= 0.99, "routing accuracy {acc}: {wrong:#?}");
}
