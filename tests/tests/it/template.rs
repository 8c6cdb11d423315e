//! The SAM template lints clean and names the functions the workspace builds.

use mailroom_tests::repo_root;
use std::process::Command;

#[test]
fn cfn_lint_reports_nothing() {
    let exe = repo_root().join(".venv/bin/cfn-lint");
    assert!(
        exe.is_file(),
        "cfn-lint is not installed: {} is missing. Run scripts/test.sh (it installs cfn-lint into .venv)",
        exe.display()
    );
    let out = Command::new(exe).arg("infra/template.yaml").current_dir(repo_root()).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim().is_empty(), "cfn-lint found problems:\n{text}");
}

#[test]
fn every_function_in_the_template_is_a_workspace_binary() {
    let template = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    let binaries: Vec<&str> =
        template.lines().filter_map(|l| l.trim().strip_prefix("Binary:")).map(str::trim).collect();
    assert!(binaries.len() >= 2, "no BuildProperties Binary entries found");
    for b in binaries {
        let manifest =
            repo_root().join("functions").join(b.trim_start_matches("mailroom-")).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap_or_default();
        assert!(
            text.contains(&format!("name = \"{b}\"")),
            "template builds {b}, but {} does not define it",
            manifest.display()
        );
    }
}
