//! A new team's first hour on a deployed stack (issue 24, item 3), on moto: the stack's
//! storage and sign-in (`scripts/moto_stack.py`: the key, table and bucket created by
//! CloudFormation from infra/template.yaml itself; the thread key secret, the user pool
//! and the first admin from the template's own properties), then `mailroom apply FILE
//! --stack NAME` writes the workspace to the table it finds from the stack's outputs, then
//! the api function, configured from those outputs, accepts the first admin's Cognito ID
//! token and makes a form secret with it.

use crate::lambda::{http_event, invoke_blocking, start};
use mailroom_tests::{bin, moto_endpoint, moto_env, repo_root};
use serde_json::{Value, json};
use std::process::Command;

const WORKSPACE: &str = r#"
name = "Bootstrap"

[[users]]
email = "ann@acme.test"
name = "Ann Admin"
role = "admin"

[[users]]
email = "bob@acme.test"
name = "Bob Agent"

[[inboxes]]
address = "support@acme.test"
members = { users = ["bob@acme.test"] }

[[forms]]
id = "contact"
inbox = "support@acme.test"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_stack_gets_its_workspace_and_its_first_admin_signs_in() {
    let name = mailroom_tests::unique("boot");
    let out = tokio::task::block_in_place(|| {
        Command::new(repo_root().join(".venv/bin/python"))
            .arg("scripts/moto_stack.py")
            .args(["--endpoint", &moto_endpoint(), "--stack", &name, "--admin", "ann@acme.test"])
            .current_dir(repo_root())
            .output()
            .expect("running scripts/moto_stack.py (scripts/test.sh installs .venv)")
    });
    assert!(out.status.success(), "moto_stack.py: {}", String::from_utf8_lossy(&out.stderr));
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let outputs = &made["outputs"];
    let output =
        |k: &str| outputs[k].as_str().unwrap_or_else(|| panic!("no output {k}: {outputs}")).to_string();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("workspace.toml");
    std::fs::write(&file, WORKSPACE).unwrap();
    let data = dir.path().join("data");
    let apply = |stack: &str| {
        tokio::task::block_in_place(|| {
            Command::new(bin("mailroom"))
                .envs(moto_env())
                .arg("--data")
                .arg(&data)
                .arg("apply")
                .arg(&file)
                .args(["--stack", stack, "--json"])
                .output()
                .unwrap()
        })
    };
    // A stack that does not exist: a clear error, nothing written anywhere.
    let out = apply("no-such-stack");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-stack"), "{err}");
    // The real one: the workspace goes to the stack's table, not to --data.
    let out = apply(&name);
    assert!(out.status.success(), "apply --stack: {}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["users"].as_u64(), summary["inboxes"].as_u64()), (Some(2), Some(1)), "{summary}");
    assert!(!data.exists(), "apply --stack wrote to the local data directory");

    // The api function as the template configures it, from the stack's outputs, and the
    // stack's user pool as its issuer.
    let mut env = moto_env();
    for (var, out) in [
        ("MAILROOM_TABLE", "MainTableName"),
        ("MAILROOM_BUCKET", "MailBucketName"),
        ("MAILROOM_KMS_KEY_ID", "KeyArn"),
        ("MAILROOM_THREAD_KEY_SECRET_ARN", "ThreadKeySecretArn"),
        ("MAILROOM_OIDC_AUDIENCE", "UserPoolClientId"),
    ] {
        env.push((var.into(), output(out)));
    }
    env.push(("MAILROOM_OIDC_ISSUER".into(), made["issuer"].as_str().unwrap().into()));
    env.push(("MAILROOM_OIDC_JWKS_URL".into(), made["jwks_url"].as_str().unwrap().into()));
    env.push(("MAILROOM_PUBLIC_URL".into(), "https://mailroom.test".into()));
    let (port, _w, _f) = start("mailroom-api", &env);
    let call = |method: &str, path: &str, token: Option<&str>| {
        let headers = match token {
            Some(t) => json!({"authorization": format!("Bearer {t}")}),
            None => json!({}),
        };
        let resp = invoke_blocking(port, &http_event(method, path, "", headers, None));
        let status = resp["statusCode"].as_u64().unwrap_or_else(|| panic!("no status: {resp}"));
        let body = resp["body"].as_str().map(|b| serde_json::from_str(b).unwrap_or(json!(b)));
        (status, body.unwrap_or_default())
    };

    // The first admin's Cognito ID token: bound on this first sign-in, an admin.
    let token = made["id_token"].as_str().unwrap();
    let (status, me) = call("GET", "/me", Some(token));
    assert_eq!(status, 200, "{me}");
    assert_eq!((me["email"].as_str(), me["role"].as_str()), (Some("ann@acme.test"), Some("admin")), "{me}");
    let (status, _) = call("GET", "/me", None);
    assert_eq!(status, 401);
    // What a team needs next: a form secret through the API (shown once).
    let (status, made_secret) = call("POST", "/admin/forms/contact/secret", Some(token));
    assert_eq!(status, 200, "{made_secret}");
    assert!(made_secret["secret"].as_str().is_some_and(|s| s.len() >= 32), "{made_secret}");
}
