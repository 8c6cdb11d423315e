//! `mailroom serve` as a child process on a free loopback port, on a data directory the
//! test prepared; killed on drop. Its stderr goes to `DATA/serve.log`, shown by
//! [`Serve::log_tail`] when something fails.

use crate::{bin, wait_for_port};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Serve {
    child: Child,
    pub data: tempfile::TempDir,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// Starts serve on `data` with extra environment; waits until it listens.
    pub fn start(data: tempfile::TempDir, env: &[(&str, &str)]) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = data.path().join("serve.log");
        let child = Command::new(bin("mailroom"))
            .arg("--data")
            .arg(data.path())
            .args(["serve", "--port", &port.to_string()])
            .env("RUST_LOG", "info")
            .env("MAILROOM_INGEST_TOKEN", crate::INGEST_TOKEN)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, Duration::from_secs(20));
        Serve { child, data, base: format!("http://127.0.0.1:{port}"), log }
    }

    pub fn data(&self) -> &Path {
        self.data.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The last 40 lines serve logged.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// The admin of `examples/acme-corp.toml`.
pub const ACME_ADMIN: &str = "maria.keller@acme-corp.example";

/// Connects `inbox` to `provider` through serve the way an admin does: the API's
/// `POST /admin/inboxes/{inbox}/connect` with the admin's token (`mailroom token ADMIN` on
/// `data`), the provider's authorize URL (which answers a redirect to our callback;
/// followed by hand), the callback on serve.
pub async fn connect_mailbox(
    http: &reqwest::Client,
    base: &str,
    data: &Path,
    admin: &str,
    provider: &str,
    inbox: &str,
    log: impl Fn() -> String,
) {
    let token = crate::dev_token(data, admin);
    let start_url = format!("{base}/admin/inboxes/{inbox}/connect");
    let body = serde_json::json!({ "provider": provider });
    let r = http.post(&start_url).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "start without a token: {}", r.text().await.unwrap());
    let r = http.post(&start_url).bearer_auth("not-a-token-at-all").json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "start with a wrong token: {}", r.text().await.unwrap());
    // The route that took a shared admin token instead of a user's is gone.
    let r = http.post(format!("{base}/connections/{provider}/start?inbox={inbox}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404, "the old start route answered");
    let r = http.post(&start_url).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200, "start: {}", log());
    let start: serde_json::Value = r.json().await.unwrap();
    let authorize = start["authorize_url"].as_str().expect("authorize_url");
    let r = http.get(authorize).send().await.unwrap();
    assert!(r.status().is_redirection(), "authorize answered {}: {}", r.status(), r.text().await.unwrap());
    let back = r.headers()["location"].to_str().unwrap().to_string();
    assert!(back.starts_with(&format!("{}/oauth/callback?", base)), "redirected to {back}");
    let page = http.get(&back).send().await.unwrap();
    let status = page.status().as_u16();
    assert_eq!(status, 200, "callback: {}\n{}", page.text().await.unwrap(), log());
}
