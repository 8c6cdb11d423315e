//! A real SMTP server for tests: aiosmtpd (from PyPI, `scripts/requirements-test.txt`)
//! with its Maildir handler, on a free loopback port. Each accepted message is a file in
//! the Maildir's `new/`. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SmtpSink {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    let p = crate::repo_root().join(".venv/bin/python");
    if p.exists() { p } else { PathBuf::from("/work/main/.venv/bin/python") }
}

impl SmtpSink {
    pub fn start() -> SmtpSink {
        let py = python();
        assert!(
            py.exists(),
            "aiosmtpd needs the test venv: run scripts/test.sh (or `python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements-test.txt`)"
        );
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("maildir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(&py)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting aiosmtpd with {}: {e}; install scripts/requirements-test.txt", py.display())
            });
        crate::wait_for_port(port, Duration::from_secs(20));
        SmtpSink { child, port, dir }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let new = self.dir.path().join("maildir/new");
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&new)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| {
                        (e.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH), e.path())
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files.into_iter().filter_map(|(_, p)| std::fs::read(p).ok()).collect()
    }

    /// Waits until at least `n` messages arrived; returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let t = Instant::now();
        loop {
            let m = self.messages();
            if m.len() >= n {
                return m;
            }
            assert!(t.elapsed() < timeout, "SMTP sink: {} of {n} messages after {timeout:?}", m.len());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
