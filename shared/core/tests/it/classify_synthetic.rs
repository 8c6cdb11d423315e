//! The classifier against the synthetic shared-inbox traffic of `shared/tools/gen_corpus.py`,
//! whose `truth.jsonl` gives each message's kind and, for bounces, the failed recipient and
//! its status.
//!
//! Print the confusion matrix with:
//! `cargo test -p mailroom-core --test classify_synthetic -- --nocapture`
//! Another corpus: `MAILROOM_SYNTH_SEED=12 MAILROOM_SYNTH_CONVERSATIONS=3000 cargo test ...`
//! (the defaults, seed 11 and 2000 conversations, are what the assertions were set on).

use mail_parser::MessageParser;
use mailroom_core::classify::{Classification, Kind, classify};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;

const GENERATOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/tools/gen_corpus.py");
const KINDS: [Kind; 4] = [Kind::Normal, Kind::AutoReply, Kind::Bounce, Kind::List];
const MIN_ACCURACY: f64 = 0.99;

#[derive(Debug, Deserialize)]
struct Truth {
    file: String,
    kind: Kind,
    bounce: Option<TruthBounce>,
}

#[derive(Debug, Deserialize)]
struct TruthBounce {
    recipient: String,
    status: String,
}

/// A temporary directory removed on drop, also when an assertion fails.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!("mailroom-classify-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn generate(out: &Path, seed: &str, conversations: &str) {
    let status = Command::new("python3")
        .arg(GENERATOR)
        .args([
            "--out",
            &out.display().to_string(),
            "--conversations",
            conversations,
            "--seed",
            seed,
            "--quiet",
        ])
        .status()
        .unwrap_or_else(|e| panic!("this test needs python3 on PATH to run {GENERATOR}: {e}"));
    assert!(status.success(), "{GENERATOR} failed: {status}");
}

fn read_truth(dir: &Path) -> Vec<Truth> {
    let text = std::fs::read_to_string(dir.join("truth.jsonl")).expect("truth.jsonl written");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad truth line {l}: {e}")))
        .collect()
}

fn classify_file(path: &Path) -> Classification {
    let raw = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let msg = MessageParser::default()
        .parse(&raw)
        .unwrap_or_else(|| panic!("mail-parser cannot parse {}", path.display()));
    classify(&msg)
}

fn index(kind: Kind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or_default()
}

fn print_matrix(matrix: &[[usize; 4]; 4]) {
    eprintln!("confusion matrix (rows: truth, columns: classified)");
    eprintln!("{:>12} {:>10} {:>10} {:>10} {:>10}", "", "normal", "auto_reply", "bounce", "list");
    for (i, row) in matrix.iter().enumerate() {
        let name = format!("{:?}", KINDS[i]);
        eprintln!("{name:>12} {:>10} {:>10} {:>10} {:>10}", row[0], row[1], row[2], row[3]);
    }
}

#[test]
fn synthetic_traffic_is_classified_like_the_ground_truth() {
    let seed = env_or("MAILROOM_SYNTH_SEED", "11");
    let conversations = env_or("MAILROOM_SYNTH_CONVERSATIONS", "2000");
    let tmp = TempDir::new();
    generate(&tmp.0, &seed, &conversations);
    let truth = read_truth(&tmp.0);
    assert!(truth.len() > 1000, "the generator wrote only {} messages", truth.len());

    let mut matrix = [[0usize; 4]; 4];
    let mut wrong = Vec::new();
    let (mut bounces, mut bounce_hits) = (0usize, 0usize);
    for t in &truth {
        let c = classify_file(&tmp.0.join(&t.file));
        matrix[index(t.kind)][index(c.kind)] += 1;
        if c.kind != t.kind {
            wrong.push(format!("{}: truth {:?}, classified {:?} {:?}", t.file, t.kind, c.kind, c.signals));
        }
        if let Some(b) = &t.bounce {
            bounces += 1;
            let found = c.bounce.as_ref().is_some_and(|d| {
                d.recipients.iter().any(|r| r.email == b.recipient.to_lowercase() && r.status == b.status)
            });
            if found {
                bounce_hits += 1;
            } else {
                wrong.push(format!(
                    "{}: bounce {} {} not found in {:?}",
                    t.file, b.recipient, b.status, c.bounce
                ));
            }
        }
    }

    eprintln!("seed {seed}, {conversations} conversations, {} messages", truth.len());
    print_matrix(&matrix);
    let mut failures = Vec::new();
    for (i, kind) in KINDS.iter().enumerate() {
        let truth_n: usize = matrix[i].iter().sum();
        let classified_n: usize = matrix.iter().map(|row| row[i]).sum();
        let hit = matrix[i][i];
        let recall = if truth_n == 0 { 1.0 } else { hit as f64 / truth_n as f64 };
        let precision = if classified_n == 0 { 1.0 } else { hit as f64 / classified_n as f64 };
        eprintln!(
            "{kind:?}: recall {recall:.4} ({hit}/{truth_n}), precision {precision:.4} ({hit}/{classified_n})"
        );
        if recall < MIN_ACCURACY || precision < MIN_ACCURACY {
            failures.push(format!("{kind:?}: recall {recall:.4}, precision {precision:.4}"));
        }
    }
    eprintln!("bounce recipient+status found: {bounce_hits}/{bounces}");
    for w in &wrong {
        eprintln!("  {w}");
    }
    assert!(truth.iter().any(|t| t.kind == Kind::Bounce), "the corpus has no bounces to check");
    assert!(failures.is_empty(), "per-kind accuracy below {MIN_ACCURACY}: {failures:?}");
    assert_eq!(bounce_hits, bounces, "every truth bounce's recipient is detected with its status");
}
