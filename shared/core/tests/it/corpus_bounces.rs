//! The classifier against sisimai's set-of-emails bounces (`../shared/corpus/bounces`, read in
//! place), compared with `expected.json`.
//!
//! Print the figures with:
//! `cargo test -p mailroom-core --test corpus_bounces -- --nocapture`
//!
//! Two status figures are printed:
//! - *strict*: a file matches when, for every expected record with a non-empty `dsn`, one of
//!   the detected recipients has exactly that status (records with an empty `dsn` match when
//!   at least one recipient was detected);
//! - *report*: the same, except that sisimai's own pseudo status codes (`X.0.9YY`, e.g.
//!   `5.0.911` for "userunknown", from sisimai's `$InternalCode` table) count like an empty
//!   `dsn`. sisimai writes those when the report carries no status code at all and it derived
//!   one from its reason taxonomy; they are not RFC 3463 codes and appear nowhere in the
//!   message, so a classifier that reads statuses from the report cannot produce them and
//!   must not invent them.

use mail_parser::MessageParser;
use mailroom_core::classify::{Classification, Kind, classify};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus");

/// Files where this classifier deliberately disagrees with sisimai about the *kind*, with the
/// reason. Each must still classify as the kind given here.
const NOT_BOUNCES: &[(&str, Kind, &str)] = &[(
    "lhost-sendmail-14.eml",
    Kind::Normal,
    "a person forwarding a bounce (\"Fwd: Returned mail: ...\") is writing to us: it must open a \
     ticket, not be filed as noise",
)];

#[derive(Debug, Deserialize)]
struct Expected {
    dsn: String,
    #[allow(dead_code)]
    replycode: String,
    reason: String,
}

fn bounces_dir() -> PathBuf {
    Path::new(CORPUS).join("bounces")
}

fn expected() -> BTreeMap<String, Vec<Expected>> {
    let path = bounces_dir().join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("expected.json is valid")
}

fn eml_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(bounces_dir())
        .expect("corpus/bounces exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
}

fn classify_file(path: &Path) -> Classification {
    let raw = std::fs::read(path).expect("read eml");
    let name = path.display().to_string();
    let result = std::panic::catch_unwind(|| {
        let msg = MessageParser::default().parse(&raw).expect("mail-parser parses the message");
        classify(&msg)
    });
    result.unwrap_or_else(|_| panic!("classify panicked on {name}"))
}

/// sisimai's pseudo status codes: `X.0.9YY` (not RFC 3463, derived from its reason names).
fn is_sisimai_pseudo(dsn: &str) -> bool {
    let parts: Vec<&str> = dsn.split('.').collect();
    parts.len() == 3 && parts[1] == "0" && parts[2].len() == 3 && parts[2].starts_with('9')
}

/// Whether the detected statuses cover the expected records; `pseudo_as_empty` treats
/// sisimai's pseudo codes like an empty `dsn`.
fn status_match(c: &Classification, expected: &[Expected], pseudo_as_empty: bool) -> bool {
    let Some(bounce) = c.bounce.as_ref().filter(|_| c.kind == Kind::Bounce) else {
        return false;
    };
    expected.iter().all(|e| {
        if e.dsn.is_empty() || (pseudo_as_empty && is_sisimai_pseudo(&e.dsn)) {
            !bounce.recipients.is_empty()
        } else {
            bounce.recipients.iter().any(|r| r.status == e.dsn)
        }
    })
}

/// Whether every expected non-empty `dsn` occurs literally in the raw file.
fn dsns_in_file(path: &Path, expected: &[Expected]) -> bool {
    let raw = String::from_utf8_lossy(&std::fs::read(path).expect("read eml")).into_owned();
    expected.iter().all(|e| e.dsn.is_empty() || raw.contains(&e.dsn))
}

fn describe(c: &Classification) -> String {
    let recipients = c
        .bounce
        .as_ref()
        .map(|b| b.recipients.iter().map(|r| format!("{}={:?}", r.email, r.status)).collect::<Vec<_>>())
        .unwrap_or_default();
    format!("kind={:?} recipients={recipients:?} signals={:?}", c.kind, c.signals)
}

#[test]
fn sisimai_bounces_are_bounces_with_their_status_codes() {
    let expected = expected();
    let files = eml_files();
    assert_eq!(files.len(), expected.len(), "one expected.json entry per .eml file");
    let (mut bounce, mut counted, mut strict, mut report) = (0usize, 0usize, 0usize, 0usize);
    let mut literal = 0usize;
    let mut misses = Vec::new();
    for path in &files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let want = expected.get(&name).unwrap_or_else(|| panic!("{name} missing from expected.json"));
        let c = classify_file(path);
        if let Some((_, kind, why)) = NOT_BOUNCES.iter().find(|(f, _, _)| *f == name) {
            assert_eq!(c.kind, *kind, "{name}: deliberate exception ({why}) no longer holds");
            continue;
        }
        counted += 1;
        literal += usize::from(dsns_in_file(path, want));
        bounce += usize::from(c.kind == Kind::Bounce);
        strict += usize::from(status_match(&c, want, false));
        let ok = status_match(&c, want, true);
        report += usize::from(ok);
        if !ok {
            let want: Vec<String> = want.iter().map(|e| format!("{}/{}", e.dsn, e.reason)).collect();
            misses.push(format!("{name}: expected {want:?}; got {}", describe(&c)));
        }
    }
    let share = |n: usize| n as f64 / counted as f64;
    eprintln!(
        "bounces: {counted} files scored ({} deliberate exceptions: {NOT_BOUNCES:?})",
        NOT_BOUNCES.len()
    );
    eprintln!("  classified bounce: {bounce}/{counted} = {:.1}%", 100.0 * share(bounce));
    eprintln!(
        "  status match (strict, sisimai pseudo codes required): {strict}/{counted} = {:.1}%",
        100.0 * share(strict)
    );
    eprintln!(
        "  status match (report, pseudo codes as no dsn): {report}/{counted} = {:.1}%",
        100.0 * share(report)
    );
    eprintln!(
        "  files whose expected dsn all occur in the raw message (ceiling of strict): {literal}/{counted} = {:.1}%",
        100.0 * share(literal)
    );
    for m in &misses {
        eprintln!("  miss: {m}");
    }
    assert_eq!(bounce, counted, "every sisimai sample (but the documented exceptions) is a bounce");
    assert!(share(report) >= 0.95, "status match {:.3} < 0.95", share(report));
    // The strict figure cannot exceed the share of files whose expected codes occur in the
    // message at all (72.2% here): it must stay close to that ceiling.
    assert!(share(strict) >= 0.70, "strict status match {:.3} < 0.70", share(strict));
}
