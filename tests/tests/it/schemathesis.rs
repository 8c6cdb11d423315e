//! schemathesis (PyPI) against the OpenAPI document of the real `mailroom serve`: generated
//! requests for every operation, as an admin (who may call all of them) and as an agent,
//! must never get a server error (5xx): schemathesis's `not_a_server_error` check.

use mailroom_tests::serve::Serve;
use mailroom_tests::{mailroom_ok, repo_root};
use std::process::Command;

const WORKSPACE: &str = r#"
[[users]]
email = "ann@acme.test"
name = "Ann Admin"
role = "admin"

[[users]]
email = "bob@acme.test"
name = "Bob Agent"

[[pipelines]]
id = "support"
stages = [{ id = "new" }, { id = "done", closed = true }]

[[inboxes]]
address = "support@acme.test"
members = { users = ["bob@acme.test"] }
tickets = { enabled = true, pipeline = "support" }
"#;

fn schemathesis(serve: &Serve, token: &str, max_examples: u32) -> (bool, String) {
    let bin = repo_root().join(".venv/bin/schemathesis");
    assert!(
        bin.exists(),
        "schemathesis is missing: run scripts/test.sh (it installs scripts/requirements-test.txt into .venv)"
    );
    // schemathesis keeps a folder of its own (.schemathesis/) in its working directory:
    // a scratch one, so that nothing is left in the tree.
    let scratch = tempfile::tempdir().unwrap();
    let out = Command::new(&bin)
        .current_dir(scratch.path())
        .args(["run", &serve.url("/openapi.json")])
        .args(["--url", &serve.base])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", &max_examples.to_string()])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // Reproducible: the same seed every run.
        .args(["--seed", "20261128"])
        .args(["--no-color"])
        .output()
        .expect("running schemathesis");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn no_generated_request_causes_a_server_error() {
    let data = tempfile::tempdir().unwrap();
    let ws = data.path().join("workspace.toml");
    std::fs::write(&ws, WORKSPACE).unwrap();
    mailroom_ok(data.path(), &["apply", ws.to_str().unwrap()]);
    // One conversation to act on.
    let mail = data.path().join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    std::fs::write(
        mail.join("1.eml"),
        "Delivered-To: support@acme.test\r\nFrom: Dana <dana@customer.test>\r\nTo: support@acme.test\r\nSubject: Help\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <st-1@customer.test>\r\n\r\nPlease help.\r\n",
    )
    .unwrap();
    mailroom_ok(data.path(), &["import", mail.to_str().unwrap()]);
    let serve = Serve::start(data, &[]);
    // The agent first: the admin's run edits the workspace at random (it may delete users).
    for (user, examples) in [("bob@acme.test", 10), ("ann@acme.test", 25)] {
        let token = mailroom_tests::dev_token(serve.data(), user);
        let (ok, report) = schemathesis(&serve, &token, examples);
        let tail: Vec<&str> = report.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
        println!("schemathesis as {user}:\n{}", tail.join("\n"));
        assert!(
            ok,
            "schemathesis found server errors as {user}:\n{report}\nserve log:\n{}",
            serve.log_tail()
        );
    }
}
