//! Issue 17: the dependency audit. `scripts/audit.py` checks every locked package against
//! the RustSec advisory snapshot (`scripts/rustsec-advisories.json`) the way cargo-audit
//! does; here it must find exactly the vulnerable versions of a made-up lock file, and
//! nothing in the workspace's own Cargo.lock.

use mailroom_tests::repo_root;
use std::process::Command;

fn audit(lock: &std::path::Path) -> (bool, String) {
    let out = Command::new("python3")
        .arg("scripts/audit.py")
        .arg("check")
        .arg("--lock")
        .arg(lock)
        .current_dir(repo_root())
        .output()
        .expect("python3 runs (scripts/test.sh needs it too)");
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

fn reported(text: &str, prefix: &str) -> Vec<String> {
    let mut ids: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn the_dependency_audit_finds_known_vulnerabilities_and_none_in_ours() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("Cargo.lock");
    let pkg = |name: &str, version: &str| {
        format!(
            "[[package]]\nname = \"{name}\"\nversion = \"{version}\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n"
        )
    };
    // smallvec 1.6.0: patched are ">= 0.6.14, < 1.0.0" and ">= 1.6.1" (RUSTSEC-2021-0003).
    // smallvec 0.4.4: before the caret "^0.4.5" fix of RUSTSEC-2018-0003.
    // smallvec 0.4.5: patched by that caret; only the informational (unsound) 2018-0018.
    // time 0.2.3: listed as unaffected ("=0.2.3"); rsa 0.9.10: no fixed release.
    let body = [
        pkg("smallvec", "1.6.0"),
        pkg("smallvec", "0.4.4"),
        pkg("smallvec", "0.4.5"),
        pkg("time", "0.2.3"),
        pkg("rsa", "0.9.10"),
        // A path dependency (no source) is ours, not a registry package.
        "[[package]]\nname = \"rsa\"\nversion = \"0.1.0\"\n\n".to_string(),
    ]
    .concat();
    std::fs::write(&lock, format!("version = 4\n\n{body}")).unwrap();
    let (ok, text) = audit(&lock);
    assert!(!ok, "a vulnerable lock must fail the audit:\n{text}");
    assert_eq!(
        reported(&text, "vulnerable: "),
        ["RUSTSEC-2018-0003", "RUSTSEC-2021-0003", "RUSTSEC-2023-0071"],
        "{text}"
    );
    assert_eq!(reported(&text, "warning: [unsound] "), ["RUSTSEC-2018-0018", "RUSTSEC-2018-0018"], "{text}");

    let (ok, text) = audit(&repo_root().join("Cargo.lock"));
    assert!(ok, "the workspace's dependencies have a known vulnerability:\n{text}");
    assert!(text.contains("0 vulnerabilities"), "{text}");
}
