//! A private dovecot for the IMAP tests: its own configuration, certificate, users and
//! maildirs in a temp dir, listening on loopback ports of its own, stopped on drop.
//!
//! Never skipped: without dovecot the test fails and says how to install it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dovecot {
    dir: tempfile::TempDir,
    conf: PathBuf,
    child: Child,
    /// Implicit TLS (imaps).
    pub port_tls: u16,
    /// Plain text then STARTTLS (imap).
    pub port_starttls: u16,
    pub user: String,
    pub password: String,
}

fn dovecot_bin() -> PathBuf {
    for p in ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"] {
        if Path::new(p).is_file() {
            return PathBuf::from(p);
        }
    }
    if let Ok(out) = Command::new("dovecot").arg("--version").output()
        && out.status.success()
    {
        return PathBuf::from("dovecot");
    }
    panic!(
        "dovecot is not installed: run `sudo apt-get install dovecot-imapd` (scripts/test.sh does), \
         then stop the system service it starts; the tests run their own instance"
    );
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn id(args: &[&str]) -> String {
    run(Command::new("id").args(args)).trim().to_string()
}

/// (major, minor) of `dovecot --version` ("2.3.19.1 (9b53102964)").
fn version(bin: &Path) -> (u32, u32) {
    let v = run(Command::new(bin).arg("--version"));
    let mut parts = v.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
    let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (next(), next())
}

impl Dovecot {
    /// Starts dovecot with one user and an empty INBOX and Sent (`\Sent`).
    pub fn start() -> Dovecot {
        let bin = dovecot_bin();
        let (major, minor) = version(&bin);
        let dir = tempfile::Builder::new().prefix("mailroom-dovecot-").tempdir().expect("temp dir");
        let d = dir.path().to_path_buf();
        for sub in ["run", "state", "mail", "home"] {
            std::fs::create_dir_all(d.join(sub)).expect("dovecot dirs");
        }
        // A test CA and a server certificate it signs (rustls refuses a CA certificate
        // as the server's own, so one self-signed certificate will not do).
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let p = |s: &str| d.join(s).display().to_string();
        run(Command::new("openssl")
            .args(["req", "-x509"])
            .args(ec)
            .args(["-days", "2", "-subj", "/CN=Mailroom test CA"])
            .args(["-keyout", &p("ca.key"), "-out", &p("ca.pem")]));
        run(Command::new("openssl").arg("req").args(ec).args(["-subj", "/CN=localhost"]).args([
            "-keyout",
            &p("key.pem"),
            "-out",
            &p("server.csr"),
        ]));
        std::fs::write(
            d.join("server.ext"),
            "basicConstraints = CA:FALSE\nsubjectAltName = IP:127.0.0.1, DNS:localhost\nextendedKeyUsage = serverAuth\n",
        )
        .expect("server.ext");
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in", &p("server.csr")])
            .args(["-CA", &p("ca.pem"), "-CAkey", &p("ca.key"), "-CAcreateserial"])
            .args(["-extfile", &p("server.ext"), "-out", &p("cert.pem")]));
        let user = "support".to_string();
        let password = "s3cret-imap".to_string();
        std::fs::write(d.join("passwd"), format!("{user}:{{PLAIN}}{password}::::::\n")).expect("passwd");

        // As root (CI), dovecot will not run its login processes as root nor give mail to
        // uid 0: use the package's unprivileged users. Otherwise everything is this user.
        let (login_user, internal_user, mail_uid, mail_gid) = if id(&["-u"]) == "0" {
            let uid = id(&["-u", "dovecot"]);
            let gid = id(&["-g", "dovecot"]);
            run(Command::new("chown")
                .arg("-R")
                .arg(format!("{uid}:{gid}"))
                .arg(d.join("mail"))
                .arg(d.join("home")));
            // The mail processes must reach their maildirs inside the temp dir.
            run(Command::new("chmod").arg("755").arg(&d));
            ("dovenull".to_string(), "dovecot".to_string(), uid, gid)
        } else {
            let me = id(&["-un"]);
            (me.clone(), me, id(&["-u"]), id(&["-g"]))
        };
        let port_tls = crate::free_port();
        let port_starttls = crate::free_port();
        let conf_text = if (major, minor) >= (2, 4) {
            // Dovecot 2.4 renamed most settings. Debian 12 (this project's machines) ships
            // 2.3, so this branch is written from the 2.4 documentation, not exercised here.
            format!(
                "dovecot_config_version = 2.4.0\ndovecot_storage_version = 2.4.0\n\
                 base_dir = {run}\nstate_dir = {state}\nlog_path = {log}\n\
                 protocols = imap\nlisten = 127.0.0.1\n\
                 ssl = required\nssl_server_cert_file = {cert}\nssl_server_key_file = {key}\n\
                 auth_mechanisms = plain\nauth_failure_delay = 0\n\
                 default_internal_user = {internal_user}\ndefault_internal_group = {internal_user}\n\
                 default_login_user = {login_user}\nfirst_valid_uid = 1\n\
                 mail_driver = maildir\nmail_path = {mail}/%{{user}}\nmail_home = {home}/%{{user}}\n\
                 mail_uid = {mail_uid}\nmail_gid = {mail_gid}\n\
                 passdb passwd-file {{\n  passwd_file_path = {passwd}\n}}\n\
                 userdb static {{\n}}\n\
                 service imap-login {{\n  chroot =\n  inet_listener imap {{\n    listen = 127.0.0.1\n    port = {port_starttls}\n  }}\n  inet_listener imaps {{\n    listen = 127.0.0.1\n    port = {port_tls}\n    ssl = yes\n  }}\n}}\n\
                 service anvil {{\n  chroot =\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n\
                 namespace inbox {{\n  inbox = yes\n  separator = /\n  mailbox Sent {{\n    special_use = \\Sent\n    auto = create\n  }}\n}}\n",
                run = p("run"),
                state = p("state"),
                log = p("dovecot.log"),
                cert = p("cert.pem"),
                key = p("key.pem"),
                mail = p("mail"),
                home = p("home"),
                passwd = p("passwd"),
            )
        } else {
            format!(
                "base_dir = {run}\nstate_dir = {state}\nlog_path = {log}\n\
                 protocols = imap\nlisten = 127.0.0.1\n\
                 ssl = required\nssl_cert = <{cert}\nssl_key = <{key}\n\
                 auth_mechanisms = plain\nauth_failure_delay = 0\n\
                 default_internal_user = {internal_user}\ndefault_internal_group = {internal_user}\n\
                 default_login_user = {login_user}\nfirst_valid_uid = 1\n\
                 mail_location = maildir:{mail}/%u\n\
                 passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {passwd}\n}}\n\
                 userdb {{\n  driver = static\n  args = uid={mail_uid} gid={mail_gid} home={home}/%u\n}}\n\
                 service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port_starttls}\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {port_tls}\n    ssl = yes\n  }}\n}}\n\
                 service anvil {{\n  chroot =\n  unix_listener anvil-auth-penalty {{\n    mode = 0\n  }}\n}}\n\
                 namespace inbox {{\n  inbox = yes\n  separator = /\n  mailbox Sent {{\n    special_use = \\Sent\n    auto = create\n  }}\n}}\n",
                run = p("run"),
                state = p("state"),
                log = p("dovecot.log"),
                cert = p("cert.pem"),
                key = p("key.pem"),
                mail = p("mail"),
                home = p("home"),
                passwd = p("passwd"),
            )
        };
        let conf = d.join("dovecot.conf");
        std::fs::write(&conf, conf_text).expect("dovecot.conf");
        // `auth_failure_delay = 0` and the anvil penalty socket closed (mode 0): the tests
        // log in with wrong passwords on purpose and should not wait out brute-force
        // penalties afterwards.
        // -F: in the foreground, so that this process owns it and stops it on drop.
        let child = Command::new(&bin)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut dv = Dovecot { dir, conf, child, port_tls, port_starttls, user, password };
        dv.wait_ready();
        // Create INBOX and Sent (auto = create) before the tests look at them.
        dv.doveadm(&["mailbox", "status", "-u", &dv.user.clone(), "uidvalidity", "*"]);
        dv
    }

    fn wait_ready(&mut self) {
        let t = Instant::now();
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!("dovecot exited at start ({st}): {err}\n{}", self.log());
            }
            let up = [self.port_tls, self.port_starttls]
                .iter()
                .all(|p| std::net::TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if up {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "dovecot did not listen within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The test CA's certificate, to trust as the extra CA.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_file()).expect("ca.pem")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Runs `doveadm -c CONF ARGS`, requires success, returns its output.
    pub fn doveadm(&self, args: &[&str]) -> String {
        run(Command::new("doveadm").arg("-c").arg(&self.conf).args(args))
    }

    /// Delivers a raw message into `mailbox` (INBOX, Sent) as the server would; its
    /// INTERNALDATE is now.
    pub fn save(&self, mailbox: &str, raw: &[u8]) {
        use std::io::Write;
        let mut child = Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf)
            .args(["save", "-u", &self.user, "-m", mailbox])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("doveadm save");
        child.stdin.take().expect("stdin").write_all(raw).expect("writing to doveadm save");
        let out = child.wait_with_output().expect("doveadm save");
        assert!(out.status.success(), "doveadm save: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// The settings that reach this server's implicit-TLS port as its user (no SMTP, the
    /// server's own `\Sent`), for `imap::connect`.
    pub fn imap_settings(&self) -> mailroom_app::mailbox::imap::ImapSettings {
        mailroom_app::mailbox::imap::ImapSettings {
            host: "127.0.0.1".into(),
            port: self.port_tls,
            security: mailroom_app::mailbox::imap::Security::Tls,
            user: self.user.clone(),
            backfill_days: 14,
            ca_pem: Some(self.ca_pem()),
            smtp: None,
            allow_private_host: true,
            sent_folder: None,
        }
    }

    /// The user's INBOX maildir, where a local delivery agent writes
    /// (`SmtpSink::start_delivering`).
    pub fn inbox_maildir(&self) -> PathBuf {
        self.dir.path().join("mail").join(&self.user)
    }

    /// Stops dovecot (a server that is down); `Drop` finds it stopped.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `(uid, flags)` of every message in `mailbox`.
    pub fn flags(&self, mailbox: &str) -> Vec<(u32, String)> {
        let out = self.doveadm(&["fetch", "-u", &self.user, "uid flags", "mailbox", mailbox, "all"]);
        let mut res = Vec::new();
        let mut uid = None;
        for line in out.lines() {
            if let Some(u) = line.strip_prefix("uid: ") {
                uid = u.trim().parse().ok();
            } else if let Some(f) = line.strip_prefix("flags:") {
                res.push((uid.take().expect("uid before flags"), f.trim().to_string()));
            }
        }
        res
    }

    /// The maildir files of `mailbox` now (to find the file a `save` wrote).
    pub fn maildir_files(&self, mailbox: &str) -> std::collections::HashSet<PathBuf> {
        let root = self.dir.path().join("mail").join(&self.user);
        let dir = if mailbox == "INBOX" { root } else { root.join(format!(".{mailbox}")) };
        ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(dir.join(sub)).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect()
    }

    pub fn add_flag(&self, mailbox: &str, uid: u32, flag: &str) {
        self.doveadm(&["flags", "add", "-u", &self.user, flag, "mailbox", mailbox, "uid", &uid.to_string()]);
    }

    pub fn uidvalidity(&self, mailbox: &str) -> u32 {
        let out =
            self.doveadm(&["-f", "flow", "mailbox", "status", "-u", &self.user, "uidvalidity", mailbox]);
        // "INBOX uidvalidity=1795820338"
        out.split_whitespace()
            .find_map(|w| w.strip_prefix("uidvalidity="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("cannot read UIDVALIDITY from {out:?}"))
    }

    /// Gives `mailbox` a new UIDVALIDITY, as a server does after rebuilding its index:
    /// every UID a client knows is void.
    pub fn change_uidvalidity(&self, mailbox: &str) -> u32 {
        let new = self.uidvalidity(mailbox).wrapping_add(1000).max(1);
        self.doveadm(&["mailbox", "update", "-u", &self.user, "--uid-validity", &new.to_string(), mailbox]);
        assert_eq!(self.uidvalidity(mailbox), new);
        new
    }

    /// Changes the user's password, and returns once dovecot takes it.
    pub fn set_password(&mut self, password: &str) {
        // Dovecot notices the change by the file's mtime or size: make the size differ.
        assert_ne!(password.len(), self.password.len(), "use a password of another length");
        let path = self.dir.path().join("passwd");
        std::fs::write(&path, format!("{}:{{PLAIN}}{password}::::::\n", self.user)).expect("passwd");
        self.password = password.to_string();
        // The auth process looks at the file at most once a second: wait until it accepts
        // the new password.
        let t = Instant::now();
        loop {
            let ok = Command::new("doveadm")
                .arg("-c")
                .arg(&self.conf)
                .args(["auth", "test", &self.user, password])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "dovecot never took the new password:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its children; SIGKILL only if it does not.
        self.stop();
    }
}
