//! The SAM template lints clean and names the functions the workspace builds.

use mailroom_tests::{makefile_functions, repo_root};
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

/// The binaries the template's functions are built from, each once.
fn template_binaries() -> Vec<String> {
    let mut b: Vec<String> = makefile_functions().into_iter().map(|(_, bin)| bin).collect();
    b.sort();
    b.dedup();
    b
}

/// Issue 24, item 2: every function of the template is built by the Makefile (BuildMethod
/// makefile, one run of scripts/lambda-package.sh for all), and the Makefile builds nothing the template lacks.
#[test]
fn every_template_function_is_built_by_the_makefile_and_nothing_else_is() {
    let template = std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap();
    let (mut functions, mut methods) = (Vec::new(), Vec::new());
    let mut resource = "";
    for line in template.lines() {
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':'))
            && !name.starts_with(' ')
        {
            resource = name;
        }
        match line.trim() {
            "Type: AWS::Serverless::Function" => functions.push(resource.to_string()),
            m if m.starts_with("BuildMethod:") => methods.push((resource.to_string(), m.to_string())),
            _ => {}
        }
    }
    assert!(functions.len() >= 10, "only {functions:?} in the template");
    for (id, method) in &methods {
        assert_eq!(method, "BuildMethod: makefile", "{id}");
    }
    assert_eq!(methods.len(), functions.len(), "a function without a BuildMethod: {methods:?}");
    let mut made: Vec<String> = makefile_functions().into_iter().map(|(id, _)| id).collect();
    functions.sort();
    made.sort();
    assert_eq!(functions, made, "the template's functions and the Makefile's build targets differ");
    assert_eq!(template_binaries().len(), made.len(), "two functions share a binary");
}

#[test]
fn every_function_in_the_template_is_a_workspace_binary() {
    let binaries = template_binaries();
    assert!(binaries.len() >= 2, "no `build-...: BIN = ...` lines in the Makefile");
    for b in &binaries {
        let manifest =
            repo_root().join("functions").join(b.trim_start_matches("mailroom-")).join("Cargo.toml");
        let text = std::fs::read_to_string(&manifest).unwrap_or_default();
        assert!(
            text.contains(&format!("name = \"{b}\"")),
            "the Makefile builds {b}, but {} does not define it",
            manifest.display()
        );
    }
}

/// Issue 17, items 8, 12 and 15: every function has the permissions its code paths use
/// (sending to a KMS-encrypted queue needs kms:GenerateDataKey and kms:Decrypt; on
/// 4490ca9 the API function lacked them, so replies could not be queued on AWS), no
/// environment variable holds a secret value, and the key policy grants use of the key
/// only under conditions. The rules are in scripts/check_template.py, which reads the
/// template with cfn-lint's own parser.
#[test]
fn every_function_has_the_permissions_its_code_uses_and_no_plaintext_secret() {
    let python = repo_root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "the test venv is missing: {} does not exist. Run scripts/test.sh (it installs cfn-lint into .venv)",
        python.display()
    );
    let out = Command::new(python)
        .arg("scripts/check_template.py")
        .arg("infra/template.yaml")
        .current_dir(repo_root())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the template's permissions are wrong:\n{text}");
    assert!(text.contains("functions checked"), "{text}");
}

/// Issue 24, item 6: no Lambda function links SQLite (the embedded tables and queues are
/// behind mailroom-store's `sqlite` feature, which only `mailroom` and the tests turn on).
/// `cargo tree` resolves the features of exactly the packages named, as a build of the
/// functions alone (scripts/lambda-package.sh, `sam build`) does.
#[test]
fn no_lambda_function_links_sqlite() {
    let binaries = template_binaries();
    assert!(binaries.len() >= 10, "only {binaries:?} in the template");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = |packages: &[&str]| {
        let mut cmd = Command::new(&cargo);
        cmd.args(["tree", "--locked", "--offline", "-e", "normal", "-i", "rusqlite"])
            .current_dir(repo_root());
        for p in packages {
            cmd.args(["-p", p]);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let names: Vec<&str> = binaries.iter().map(String::as_str).collect();
    let (found, text) = tree(&names);
    assert!(!found && text.contains("did not match any packages"), "a Lambda function links SQLite:\n{text}");
    // The check can fail: the CLI does link it.
    let (found, text) = tree(&["mailroom"]);
    assert!(found && text.contains("rusqlite"), "{text}");
}
