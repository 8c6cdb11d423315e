//! A local SMTP server for the tests: aiosmtpd (from PyPI, in the project's `.venv`)
//! running scripts/smtp_sink.py on a loopback port of its own, stopped on drop. Received
//! messages are read back as raw bytes.
//!
//! Never skipped: without aiosmtpd the test fails and says how to install it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmtpSink {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    /// The login the server requires, when it requires one.
    pub credentials: Option<(String, String)>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    let python = crate::repo_root().join(".venv/bin/python");
    let ok = Command::new(&python)
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "aiosmtpd is not installed in {}: run scripts/test.sh (it installs scripts/requirements-test.txt), \
         or `.venv/bin/pip install aiosmtpd==1.4.6`",
        python.display()
    );
    python
}

impl SmtpSink {
    /// A server that takes mail from anyone (no AUTH).
    pub fn start() -> SmtpSink {
        SmtpSink::spawn(None)
    }

    /// A server that offers AUTH PLAIN/LOGIN (without TLS; loopback) and refuses mail
    /// from a client that did not log in as `user`/`password`.
    pub fn start_with_auth(user: &str, password: &str) -> SmtpSink {
        SmtpSink::spawn(Some((user.to_string(), password.to_string())))
    }

    /// A server with AUTH like [`SmtpSink::start_with_auth`] that also delivers every
    /// message it accepts into `maildir`, as a local delivery agent does, on `port` (a
    /// free one when `None`: a test that restarts the server keeps its port).
    pub fn start_delivering(
        user: &str,
        password: &str,
        maildir: &std::path::Path,
        port: Option<u16>,
    ) -> SmtpSink {
        SmtpSink::spawn_with(Some((user.to_string(), password.to_string())), Some(maildir), port)
    }

    fn spawn(credentials: Option<(String, String)>) -> SmtpSink {
        SmtpSink::spawn_with(credentials, None, None)
    }

    fn spawn_with(
        credentials: Option<(String, String)>,
        maildir: Option<&std::path::Path>,
        port: Option<u16>,
    ) -> SmtpSink {
        let python = python();
        let dir = tempfile::tempdir().expect("temp dir for the SMTP sink");
        let port = port.unwrap_or_else(crate::free_port);
        let mut cmd = Command::new(python);
        cmd.arg(crate::repo_root().join("scripts/smtp_sink.py"))
            .args(["--port", &port.to_string()])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some((u, p)) = &credentials {
            cmd.args(["--user", u, "--password", p]);
        }
        if let Some(d) = maildir {
            cmd.arg("--maildir").arg(d);
        }
        let child = cmd.spawn().expect("starting scripts/smtp_sink.py");
        crate::wait_for_port(port, Duration::from_secs(20));
        SmtpSink { dir, child, port, credentials }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn count(&self) -> usize {
        (1..).take_while(|n| self.dir.path().join(format!("{n}.eml")).is_file()).count()
    }

    /// Every message received so far, in order, as the client sent it (DATA).
    pub fn messages(&self) -> Vec<Vec<u8>> {
        (1..=self.count())
            .map(|n| {
                std::fs::read(self.dir.path().join(format!("{n}.eml"))).expect("read a received message")
            })
            .collect()
    }

    /// The SMTP envelope of each message: (MAIL FROM, RCPT TO...).
    pub fn envelopes(&self) -> Vec<(String, Vec<String>)> {
        (1..=self.count())
            .map(|n| {
                let v: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(self.dir.path().join(format!("{n}.json"))).expect("read an envelope"),
                )
                .expect("envelope JSON");
                let rcpt =
                    v["rcpt"].as_array().into_iter().flatten().filter_map(|r| r.as_str().map(str::to_string));
                (v["from"].as_str().unwrap_or_default().to_string(), rcpt.collect())
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived; panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let t = Instant::now();
        loop {
            if self.count() >= n {
                return self.messages();
            }
            assert!(
                t.elapsed() < timeout,
                "the SMTP sink got {} of {n} messages in {timeout:?}",
                self.count()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
