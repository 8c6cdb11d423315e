//! IMAP polling against a private dovecot (tests/src/dovecot.rs): through the real
//! `mailroom` binary where the CLI is the point (connect-imap, poll --once, inbox status),
//! through library calls where a test needs control (concurrent pollers, a run cut off
//! at an exact point).

use futures::StreamExt;
use mailroom_app::mailbox::imap::{self, ImapSettings, Outcome, PollOptions, Role, Security};
use mailroom_app::{Ingestor, Ports, Stages};
use mailroom_core::EmailAddress;
use mailroom_providers::imap::{Credentials, Endpoint, ImapSession};
use mailroom_store::{Cond, Item, Key, Page, Query, Table, TransactOp, Update};
use mailroom_tests::dovecot::Dovecot;
use mailroom_tests::{bin, mailroom_json, mailroom_ok};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const INBOX: &str = "support@acme.test";

/// A small RFC 5322 message; `parent` makes it a reply.
fn mail(id: &str, from: &str, to: &str, subject: &str, parent: Option<&str>) -> Vec<u8> {
    let date = chrono::Utc::now().to_rfc2822();
    let mut m = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
    );
    if let Some(p) = parent {
        m.push_str(&format!("In-Reply-To: <{p}>\r\nReferences: <{p}>\r\n"));
    }
    m.push_str(&format!("\r\nHello,\r\n\r\nthis is {id} about {subject}.\r\n"));
    m.into_bytes()
}

fn customer_mail(n: u32) -> (String, Vec<u8>) {
    let id = format!("c{n}-{:08x}@customer.test", rand::random::<u32>());
    let raw = mail(&id, &format!("Customer {n} <c{n}@customer.test>"), INBOX, &format!("Question {n}"), None);
    (id, raw)
}

fn connect_cli(data: &Path, dv: &Dovecot, password: &str, port: u16, security: &str) -> Output {
    Command::new(bin("mailroom"))
        .arg("--data")
        .arg(data)
        .args(["inbox", "connect-imap", INBOX, "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--allow-private-host")
        .args(["--security", security, "--user", &dv.user, "--password-env", "MAILROOM_TEST_IMAP_PASSWORD"])
        .arg("--ca-file")
        .arg(dv.ca_file())
        .env("MAILROOM_TEST_IMAP_PASSWORD", password)
        .output()
        .expect("running mailroom inbox connect-imap")
}

fn poll_cli(data: &Path, extra: &[&str]) -> (bool, Value) {
    let out = Command::new(bin("mailroom"))
        .arg("--data")
        .arg(data)
        .args(["poll", "--once", "--json"])
        .args(extra)
        .output()
        .expect("running mailroom poll");
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("poll printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), v)
}

fn inbox_report(v: &Value) -> &Value {
    let list = v["inboxes"].as_array().expect("inboxes");
    assert_eq!(list.len(), 1, "{v}");
    &list[0]
}

/// Message-IDs of every conversation's messages, with their direction; panics on a
/// Message-ID listed twice.
fn messages(data: &Path) -> Vec<(String, String)> {
    let convs = mailroom_json(data, &["conversations", "--json"]);
    let mut out = Vec::new();
    for c in convs.as_array().expect("conversations") {
        for m in c["messages"].as_array().expect("messages") {
            out.push((
                m["message_id"].as_str().unwrap().to_string(),
                m["direction"].as_str().unwrap().to_string(),
            ));
        }
    }
    let ids: HashSet<_> = out.iter().map(|(i, _)| i.clone()).collect();
    assert_eq!(ids.len(), out.len(), "a message is listed twice: {out:?}");
    out
}

fn status(data: &Path) -> Value {
    let v = mailroom_json(data, &["inbox", "status", "--json"]);
    let list = v.as_array().expect("status list");
    assert_eq!(list.len(), 1, "{v}");
    list[0].clone()
}

#[test]
fn cli_ingests_inbox_and_sent_once_and_leaves_flags_alone() {
    let dv = Dovecot::start();
    let data = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    for n in 1..=3 {
        let (id, raw) = customer_mail(n);
        dv.save("INBOX", &raw);
        ids.push(id);
    }
    // The customer had read the second one already in their mail client.
    dv.add_flag("INBOX", 2, "\\Seen");
    let reply_id = format!("r1-{:08x}@acme.test", rand::random::<u32>());
    dv.save(
        "Sent",
        &mail(&reply_id, &format!("Support <{INBOX}>"), "c1@customer.test", "Re: Question 1", Some(&ids[0])),
    );

    let out = connect_cli(data.path(), &dv, &dv.password, dv.port_tls, "tls");
    assert!(out.status.success(), "connect-imap: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Sent"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let (ok, v) = poll_cli(data.path(), &[]);
    assert!(ok, "{v}");
    let r = inbox_report(&v);
    assert_eq!(
        (r["outcome"].as_str(), r["fetched"].as_u64(), r["stored"].as_u64()),
        (Some("polled"), Some(4), Some(4)),
        "{v}"
    );
    let folders: Vec<_> =
        r["folders"].as_array().unwrap().iter().map(|f| f["folder"].as_str().unwrap()).collect();
    assert_eq!(folders, ["INBOX", "Sent"]);

    // Each message once; the Sent copy is the inbox's own reply.
    let msgs = messages(data.path());
    let want: HashSet<String> = ids.iter().chain([&reply_id]).cloned().collect();
    assert_eq!(msgs.iter().map(|(i, _)| i.clone()).collect::<HashSet<_>>(), want);
    for (id, dir) in &msgs {
        assert_eq!(dir, if *id == reply_id { "outbound" } else { "inbound" }, "{id}");
    }

    // \Seen is exactly as it was: set on the one the customer read, on no other.
    let inbox_flags = dv.flags("INBOX");
    assert!(inbox_flags.iter().any(|(u, f)| *u == 2 && f.contains("\\Seen")), "{inbox_flags:?}");
    assert!(
        inbox_flags.iter().filter(|(u, _)| *u != 2).all(|(_, f)| !f.contains("\\Seen")),
        "{inbox_flags:?}"
    );
    assert!(dv.flags("Sent").iter().all(|(_, f)| !f.contains("\\Seen")));

    // A second poll fetches nothing, not even the last message that `UID FETCH n:*`
    // always returns.
    let (ok, v) = poll_cli(data.path(), &[]);
    assert!(ok, "{v}");
    let r = inbox_report(&v);
    assert_eq!((r["fetched"].as_u64(), r["stored"].as_u64()), (Some(0), Some(0)), "{v}");
    for f in r["folders"].as_array().unwrap() {
        assert_eq!(f["pending"], 0, "{f}");
        assert_eq!(f["baselined"], false, "{f}");
    }

    // A new message arrives: only it is fetched.
    let (new_id, raw) = customer_mail(4);
    dv.save("INBOX", &raw);
    let (_, v) = poll_cli(data.path(), &[]);
    assert_eq!(
        (inbox_report(&v)["fetched"].as_u64(), inbox_report(&v)["stored"].as_u64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert!(messages(data.path()).iter().any(|(i, _)| *i == new_id));

    let s = status(data.path());
    assert_eq!(s["state"], "connected", "{s}");
    assert_eq!(s["provider"], "imap");
    assert_eq!(s["consecutive_failures"], 0);
    assert!(s["last_success"].is_string(), "{s}");
    assert!(s["lag_seconds"].as_i64().is_some_and(|l| (0..600).contains(&l)), "{s}");
    assert_eq!(s["cursors"]["INBOX"]["last_uid"], 4, "{s}");
    assert_eq!(s["cursors"]["INBOX"]["uidvalidity"], dv.uidvalidity("INBOX"), "{s}");
    assert_eq!(s["cursors"]["Sent"]["last_uid"], 1, "{s}");
    assert_eq!(s["settings"]["ca"], "custom", "the CA is not dumped: {s}");
    assert!(!s.to_string().contains(&dv.password), "the password is never shown");
}

async fn session(dv: &Dovecot, port: u16, security: Security) -> ImapSession {
    let mut ep = Endpoint::new("127.0.0.1", port, security);
    ep.allow_private = true;
    ep.extra_ca_pem = Some(dv.ca_pem());
    ep.allow_private = true;
    ImapSession::connect(&ep, &Credentials::Password { user: dv.user.clone(), password: dv.password.clone() })
        .await
        .expect("IMAP login")
}

#[tokio::test]
async fn the_n_star_quirk_is_real_and_filtered_and_starttls_works() {
    let dv = Dovecot::start();
    for n in 1..=3 {
        dv.save("INBOX", &customer_mail(n).1);
    }
    let mut s = session(&dv, dv.port_starttls, Security::Starttls).await;
    let folders = s.folders().await.unwrap();
    assert_eq!((folders.inbox.as_str(), folders.sent.as_deref()), ("INBOX", Some("Sent")));
    let st = s.examine("INBOX").await.unwrap();
    assert_eq!((st.exists, st.uid_validity), (3, dv.uidvalidity("INBOX")));

    // The server's side of the quirk: 4:* names UID 3, the last message, though 4 > 3.
    let raw: Vec<u32> = {
        let stream = s.raw().uid_fetch("4:*", "(UID)").await.unwrap();
        stream.map(|f| f.unwrap().uid.unwrap()).collect().await
    };
    assert_eq!(raw, [3], "dovecot no longer shows the n:* quirk; the test proves nothing");
    // Ours: nothing above the cursor.
    assert!(s.messages_after(3).await.unwrap().is_empty());
    let after1: Vec<u32> = s.messages_after(1).await.unwrap().iter().map(|m| m.uid).collect();
    assert_eq!(after1, [2, 3]);
    s.logout().await;

    // A wrong password is an authentication failure (terminal), over implicit TLS too.
    let mut ep = Endpoint::new("127.0.0.1", dv.port_tls, Security::Tls);
    ep.allow_private = true;
    ep.extra_ca_pem = Some(dv.ca_pem());
    let wrong = Credentials::Password { user: dv.user.clone(), password: "nope".into() };
    let e = ImapSession::connect(&ep, &wrong).await.expect_err("a wrong password logs in");
    assert!(e.is_terminal(), "{e}");
    // Without the test CA the server certificate is refused, and that is not terminal.
    ep.extra_ca_pem = None;
    let e = ImapSession::connect(&ep, &wrong).await.expect_err("an untrusted certificate was accepted");
    assert!(!e.is_terminal() && e.to_string().contains("TLS"), "{e}");
}

async fn connected(dv: &Dovecot) -> (tempfile::TempDir, Ports, EmailAddress) {
    let data = tempfile::tempdir().unwrap();
    let ports = Ports::embedded(data.path()).unwrap();
    let inbox = EmailAddress::parse(INBOX).unwrap();
    let settings = dv.imap_settings();
    imap::connect(&ports, &inbox, settings, &dv.password, &PollOptions::default()).await.expect("connect");
    (data, ports, inbox)
}

async fn stats(ports: &Ports) -> mailroom_app::views::stats::Stats {
    Stages::new(ports).drain().await.expect("drain");
    mailroom_app::views::stats::collect(ports).await.unwrap()
}

fn assert_once(s: &mailroom_app::views::stats::Stats, copies: u64, messages: u64) {
    assert_eq!((s.copies, s.processed, s.messages), (copies, copies, messages), "{s:?}");
    assert!(s.inboxes.values().all(|i| i.processed_more_than_once == 0), "{s:?}");
}

#[tokio::test]
async fn a_uidvalidity_change_rebaselines_without_duplicate_messages() {
    let dv = Dovecot::start();
    let mut raws = Vec::new();
    for n in 1..=3 {
        let raw = customer_mail(n).1;
        dv.save("INBOX", &raw);
        raws.push(raw);
    }
    let (_d, ports, inbox) = connected(&dv).await;
    let ing = Ingestor::new(ports.clone());
    let opts = PollOptions::default();
    let r = imap::poll_inbox(&ports, &ing, &inbox, &opts).await;
    assert_eq!((r.outcome, r.stored), (Outcome::Polled, 3), "{r:?}");
    assert_once(&stats(&ports).await, 3, 3);

    let new_validity = dv.change_uidvalidity("INBOX");
    // The server also holds a second copy of message 1 that differs in its bytes but not
    // in its Message-ID (a resend through another relay): a new copy, the same message.
    let mut resent = b"X-Relayed-By: mx2.customer.test\r\n".to_vec();
    resent.extend_from_slice(&raws[0]);
    dv.save("INBOX", &resent);

    let r = imap::poll_inbox(&ports, &ing, &inbox, &opts).await;
    assert_eq!(r.outcome, Outcome::Polled, "{r:?}");
    let f = &r.folders[0];
    assert!(f.uidvalidity_changed && f.baselined && f.uidvalidity == new_validity, "{f:?}");
    assert_eq!(
        (r.fetched, r.stored, r.duplicates),
        (4, 1, 3),
        "every message in the window is read again: {r:?}"
    );
    let s = stats(&ports).await;
    assert_once(&s, 4, 3);
    let events = mailroom_app::mailbox::connection::events(&ports, &inbox).await.unwrap();
    assert!(events.iter().any(|e| e["type"] == "imap_uidvalidity_changed"), "{events:?}");

    // And from the new baseline on, nothing is read twice.
    let r = imap::poll_inbox(&ports, &ing, &inbox, &opts).await;
    assert_eq!((r.fetched, r.stored), (0, 0), "{r:?}");
}

#[tokio::test]
async fn concurrent_pollers_never_duplicate() {
    let dv = Dovecot::start();
    for n in 1..=6 {
        dv.save("INBOX", &customer_mail(n).1);
    }
    dv.save("Sent", &mail("s1@acme.test", INBOX, "c1@customer.test", "Hello", None));
    let (data, ports, inbox) = connected(&dv).await;
    let (a, b) = (Ingestor::new(ports.clone()), Ingestor::new(ports.clone()));
    let opts = PollOptions { batch_size: 2, ..PollOptions::default() };
    let (ra, rb) = tokio::join!(
        imap::poll_inbox(&ports, &a, &inbox, &opts),
        imap::poll_inbox(&ports, &b, &inbox, &opts)
    );
    let outcomes = [ra.outcome, rb.outcome];
    assert!(outcomes.contains(&Outcome::Polled) && outcomes.contains(&Outcome::Leased), "{ra:?} {rb:?}");
    assert_eq!(ra.stored + rb.stored, 7);
    assert_once(&stats(&ports).await, 7, 7);
    drop(ports);

    // Two processes at once (two Lambda invocations, or `poll` beside `serve`): one polls,
    // the other finds the lease taken or runs after it and finds nothing new.
    for n in 7..=9 {
        dv.save("INBOX", &customer_mail(n).1);
    }
    let spawn = || {
        Command::new(bin("mailroom"))
            .arg("--data")
            .arg(data.path())
            .args(["poll", "--once", "--json"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (p1, p2) = (spawn(), spawn());
    let reports: Vec<Value> = [p1, p2]
        .into_iter()
        .map(|p| {
            let out = p.wait_with_output().unwrap();
            assert!(out.status.success());
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let stored: u64 = reports.iter().map(|v| inbox_report(v)["stored"].as_u64().unwrap()).sum();
    let fetched: u64 = reports.iter().map(|v| inbox_report(v)["fetched"].as_u64().unwrap()).sum();
    assert_eq!((stored, fetched), (3, 3), "{reports:?}");
    let msgs = messages(data.path());
    assert_eq!(msgs.len(), 10, "{msgs:?}");
}

/// A table that stops dead on the n-th write of a given cursor, as a process killed
/// between storing a message and saving its cursor would: the worst place to be cut off.
struct CutTable {
    inner: Arc<dyn Table>,
    sk: String,
    cut_at: u32,
    writes: AtomicU32,
    reached: tokio::sync::Notify,
}

#[async_trait::async_trait]
impl Table for CutTable {
    async fn get(&self, key: &Key) -> mailroom_store::error::Result<Option<Item>> {
        self.inner.get(key).await
    }
    async fn put(&self, item: Item, cond: Option<Cond>) -> mailroom_store::error::Result<()> {
        if item.get("sk").and_then(Value::as_str) == Some(self.sk.as_str())
            && self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.cut_at
        {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
        self.inner.put(item, cond).await
    }
    async fn update(
        &self,
        key: &Key,
        actions: Vec<Update>,
        cond: Option<Cond>,
    ) -> mailroom_store::error::Result<Item> {
        self.inner.update(key, actions, cond).await
    }
    async fn delete(&self, key: &Key, cond: Option<Cond>) -> mailroom_store::error::Result<()> {
        self.inner.delete(key, cond).await
    }
    async fn query(&self, q: Query) -> mailroom_store::error::Result<Page> {
        self.inner.query(q).await
    }
    async fn transact_write(&self, ops: Vec<TransactOp>) -> mailroom_store::error::Result<()> {
        self.inner.transact_write(ops).await
    }
    fn flush(&self) -> mailroom_store::error::Result<()> {
        self.inner.flush()
    }
}

#[tokio::test]
async fn a_poll_cut_off_mid_batch_resumes_without_loss_or_duplicates() {
    let dv = Dovecot::start();
    for n in 1..=5 {
        dv.save("INBOX", &customer_mail(n).1);
    }
    let (_d, ports, inbox) = connected(&dv).await;

    // A budget of 2 messages: the run stops cleanly and says there is more.
    let ing = Ingestor::new(ports.clone());
    let budget = PollOptions { max_messages: Some(2), ..PollOptions::default() };
    let r = imap::poll_inbox(&ports, &ing, &inbox, &budget).await;
    assert_eq!((r.fetched, r.stored, r.budget_exhausted), (2, 2, true), "{r:?}");
    assert_eq!(r.folders[0].last_uid, 2, "{r:?}");

    // Then a run cut off dead inside a batch: message 4 is stored, its cursor never
    // written, and the run's future is dropped (its lease is left to expire).
    let cut = Arc::new(CutTable {
        inner: ports.table.clone(),
        sk: "cursor#INBOX".into(),
        cut_at: 2,
        writes: AtomicU32::new(0),
        reached: tokio::sync::Notify::new(),
    });
    let cut_ports = Ports { table: cut.clone(), ..ports.clone() };
    let cut_ing = Ingestor::new(cut_ports.clone());
    let short =
        PollOptions { lease_ttl: chrono::Duration::seconds(1), batch_size: 10, ..PollOptions::default() };
    tokio::select! {
        r = imap::poll_inbox(&cut_ports, &cut_ing, &inbox, &short) => panic!("the run was not cut off: {r:?}"),
        _ = cut.reached.notified() => {}
    }
    let cursor = mailroom_app::mailbox::connection::get_cursor(&ports, &inbox, Role::Inbox.cursor_name())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cursor.value["last_uid"], 3, "cut after message 4 was stored, before its cursor");

    // The next run waits out the dead run's lease, then resumes at message 4.
    let t = Instant::now();
    let r = loop {
        let r = imap::poll_inbox(&ports, &ing, &inbox, &short).await;
        if r.outcome != Outcome::Leased {
            break r;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "the dead run's lease never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(r.outcome, Outcome::Polled, "{r:?}");
    assert_eq!((r.fetched, r.stored, r.requeued + r.duplicates), (2, 1, 1), "{r:?}");
    assert!(!r.budget_exhausted);
    assert_once(&stats(&ports).await, 5, 5);
}

#[tokio::test]
async fn an_unreadable_message_is_retried_then_recorded_and_passed_over() {
    let dv = Dovecot::start();
    dv.save("INBOX", &customer_mail(1).1);
    let before = dv.maildir_files("INBOX");
    dv.save("INBOX", &customer_mail(2).1);
    let file: Vec<_> = dv.maildir_files("INBOX").difference(&before).cloned().collect();
    assert_eq!(file.len(), 1, "{file:?}");
    dv.save("INBOX", &customer_mail(3).1);
    // The server cannot read message 2 any more (a disk error, a broken file). Dovecot
    // answers its FETCH with `* BYE FETCH failed` and drops the connection. (The mail
    // processes never run as root, so mode 000 keeps them out.)
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file[0], std::fs::Permissions::from_mode(0o000)).unwrap();

    let (_d, ports, inbox) = connected(&dv).await;
    let ing = Ingestor::new(ports.clone());
    let opts = PollOptions::default();
    let cursor = |ports: Ports| {
        let inbox = inbox.clone();
        async move {
            mailroom_app::mailbox::connection::get_cursor(&ports, &inbox, "INBOX")
                .await
                .unwrap()
                .unwrap()
                .value
        }
    };
    // Runs 1 and 2: message 1 is stored; the break is counted against message 2 (which
    // could be a network glitch), and the run fails as a transient error.
    for run in 1..=2 {
        let r = imap::poll_inbox(&ports, &ing, &inbox, &opts).await;
        assert_eq!(
            (r.outcome, r.stored, r.skipped.len()),
            (Outcome::Failed, u32::from(run == 1), 0),
            "run {run}: {r:?}"
        );
        assert_eq!(r.state, Some(mailroom_app::mailbox::connection::State::Degraded), "{r:?}");
        let c = cursor(ports.clone()).await;
        assert_eq!(
            (c["last_uid"].as_u64(), c["suspect"]["uid"].as_u64(), c["suspect"]["breaks"].as_u64()),
            (Some(1), Some(2), Some(run)),
            "{c}"
        );
    }
    // Run 3: the third break in a row on the same message: it is recorded and passed over.
    let r = imap::poll_inbox(&ports, &ing, &inbox, &opts).await;
    assert_eq!(r.skipped.len(), 1, "{r:?}");
    assert_eq!((r.skipped[0].folder, r.skipped[0].uid), (Role::Inbox, 2), "{r:?}");
    assert!(r.skipped[0].reason.contains("broke the connection 3 runs in a row"), "{r:?}");
    let c = cursor(ports.clone()).await;
    assert_eq!((c["last_uid"].as_u64(), c.get("suspect")), (Some(2), None), "{c}");
    let events = mailroom_app::mailbox::connection::events(&ports, &inbox).await.unwrap();
    let skipped: Vec<_> = events.iter().filter(|e| e["type"] == "imap_message_skipped").collect();
    assert_eq!(skipped.len(), 1, "{events:?}");
    assert_eq!(skipped[0]["data"]["uid"], 2);
    // Run 4: the mailbox goes on behind it, and is healthy again.
    let r = imap::poll_inbox(&ports, &ing, &inbox, &opts).await;
    assert_eq!((r.outcome, r.fetched, r.stored, r.skipped.len()), (Outcome::Polled, 1, 1, 0), "{r:?}");
    assert_eq!(r.state, Some(mailroom_app::mailbox::connection::State::Connected));
    assert_once(&stats(&ports).await, 2, 2);
    let r = imap::poll_inbox(&ports, &ing, &inbox, &opts).await;
    assert_eq!((r.fetched, r.skipped.len()), (0, 0), "{r:?}");
}

#[test]
fn a_refused_password_needs_a_reconnect_and_a_reconnect_resumes() {
    let mut dv = Dovecot::start();
    let data = tempfile::tempdir().unwrap();
    dv.save("INBOX", &customer_mail(1).1);

    // No password in the environment, or a wrong one: nothing is stored.
    let out = Command::new(bin("mailroom"))
        .arg("--data")
        .arg(data.path())
        .args(["inbox", "connect-imap", INBOX, "--host", "127.0.0.1", "--user", "support"])
        .args(["--password-env", "MAILROOM_TEST_UNSET_VARIABLE"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MAILROOM_TEST_UNSET_VARIABLE is not set"));
    let out = connect_cli(data.path(), &dv, "wrong", dv.port_tls, "tls");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the credentials"), "{err}");
    assert_eq!(mailroom_json(data.path(), &["inbox", "status", "--json"]), serde_json::json!([]));

    let out = connect_cli(data.path(), &dv, &dv.password.clone(), dv.port_tls, "tls");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, v) = poll_cli(data.path(), &[]);
    assert!(ok && inbox_report(&v)["stored"] == 1, "{v}");

    // The password is changed on the server: the next poll is refused for good.
    dv.set_password("a-new-and-longer-password");
    dv.save("INBOX", &customer_mail(2).1);
    let (ok, v) = poll_cli(data.path(), &[]);
    assert!(!ok, "a failed inbox exits non-zero: {v}");
    let r = inbox_report(&v);
    assert_eq!(
        (r["outcome"].as_str(), r["state"].as_str()),
        (Some("failed"), Some("reconnect_required")),
        "{v}"
    );
    let s = status(data.path());
    assert_eq!(s["state"], "reconnect_required", "{s}");
    assert!(s["last_error"].as_str().unwrap().contains("refused the credentials"), "{s}");
    assert!(s["last_error_at"].is_string() && s["consecutive_failures"] == 1, "{s}");

    // Not polled again until someone connects it again.
    let (_, v) = poll_cli(data.path(), &[]);
    assert_eq!(inbox_report(&v)["outcome"], "reconnect_required", "{v}");
    assert_eq!(status(data.path())["consecutive_failures"], 1);

    // Connected again with the new password: same server and user, so it resumes.
    let out = connect_cli(data.path(), &dv, &dv.password.clone(), dv.port_tls, "tls");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(status(data.path())["state"], "connected");
    let (ok, v) = poll_cli(data.path(), &[]);
    let r = inbox_report(&v);
    assert!(ok && r["fetched"] == 1 && r["stored"] == 1, "{v}");
    assert_eq!(messages(data.path()).len(), 2);
    let _ = mailroom_ok(data.path(), &["inbox", "status"]);
}

/// Stops a child process on drop.
struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_polls_on_its_schedule() {
    let dv = Dovecot::start();
    let data = tempfile::tempdir().unwrap();
    let out = connect_cli(data.path(), &dv, &dv.password, dv.port_tls, "tls");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A bad interval is refused at start, not discovered later.
    let out = Command::new(bin("mailroom"))
        .arg("--data")
        .arg(data.path())
        .args(["poll", "--once"])
        .env("MAILROOM_IMAP_POLL_SECONDS", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MAILROOM_IMAP_POLL_SECONDS"));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let _serve = Kill(
        Command::new(bin("mailroom"))
            .arg("--data")
            .arg(data.path())
            .args(["serve", "--port", &port.to_string()])
            .env("MAILROOM_IMAP_POLL_SECONDS", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    mailroom_tests::wait_for_port(port, Duration::from_secs(20));
    let (id, raw) = customer_mail(1);
    dv.save("INBOX", &raw);
    // It arrives through serve's own poll and consumers; nothing else polls here.
    let t = Instant::now();
    while !messages(data.path()).iter().any(|(m, _)| *m == id) {
        assert!(t.elapsed() < Duration::from_secs(20), "serve never polled the message in");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(status(data.path())["state"], "connected");
}

/// An admin connects an inbox over IMAP through the HTTP API; serve's poll then brings its
/// mail in. Refused logins store nothing, and only admins may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_connects_imap_through_the_api() {
    let dv = Dovecot::start();
    let (id, raw) = customer_mail(1);
    dv.save("INBOX", &raw);
    let data = tempfile::tempdir().unwrap();
    let ws = data.path().join("workspace.toml");
    std::fs::write(
        &ws,
        format!(
            "name = \"IMAP API\"\n[[users]]\nemail = \"ann@acme.test\"\nname = \"Ann\"\nrole = \"admin\"\n\n\
             [[users]]\nemail = \"bob@acme.test\"\nname = \"Bob\"\n\n\
             [[inboxes]]\naddress = \"{INBOX}\"\nmembers = {{ users = [\"bob@acme.test\"] }}\n\n\
             [security]\nallow_private_mail_hosts = true\n"
        ),
    )
    .unwrap();
    mailroom_ok(data.path(), &["apply", ws.to_str().unwrap()]);
    let serve = mailroom_tests::serve::Serve::start(data, &[("MAILROOM_IMAP_POLL_SECONDS", "1")]);
    let token = |u: &str| mailroom_tests::dev_token(serve.data(), u);
    let (admin, agent) = (token("ann@acme.test"), token("bob@acme.test"));
    let http = reqwest::Client::new();
    let url = serve.url(&format!("/admin/inboxes/{INBOX}/imap"));
    // The connect logs in to SMTP too.
    let smtp = mailroom_tests::smtp::SmtpSink::start_with_auth(&dv.user, &dv.password);
    let body = |password: &str| {
        serde_json::json!({
            "host": "127.0.0.1", "port": dv.port_tls, "security": "tls", "user": dv.user,
            "password": password, "ca_pem": dv.ca_pem(),
            "smtp": {"host": "127.0.0.1", "port": smtp.port(), "security": "none"}
        })
    };
    let post = |tok: &str, b: Value| http.post(&url).bearer_auth(tok.to_string()).json(&b).send();
    let get_json = |tok: &str, path: &str| {
        let rq = http.get(serve.url(path)).bearer_auth(tok.to_string());
        async move { rq.send().await.unwrap().json::<Value>().await.unwrap() }
    };

    let r = post(&agent, body(&dv.password)).await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::FORBIDDEN);
    let r = post(&admin, body("wrong password")).await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = r.json().await.unwrap();
    assert!(p["detail"].as_str().unwrap().contains("cannot connect"), "{p}");
    assert!(!p.to_string().contains("wrong password"), "the password is echoed: {p}");
    let conns = get_json(&admin, "/admin/connections").await;
    assert_eq!(conns.as_array().map(Vec::len), Some(0), "a refused login stored a connection: {conns}");
    let r = post(&admin, body(&dv.password)).await.unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK, "{}", serve.log_tail());
    let c: Value = r.json().await.unwrap();
    assert_eq!((c["inbox_folder"].as_str(), c["sent_folder"].as_str()), (Some("INBOX"), Some("Sent")), "{c}");

    // The connection is listed, healthy; the password appears nowhere.
    let conns = get_json(&admin, "/admin/connections").await;
    let text = conns.to_string();
    assert!(text.contains("\"imap\"") && !text.contains(&dv.password), "{conns}");
    assert_eq!(conns[0]["state"], "connected", "{conns}");

    // serve's scheduled poll brings the message in.
    let t = Instant::now();
    loop {
        let list = get_json(&agent, "/conversations").await;
        let mut ids = Vec::new();
        for c in list["items"].as_array().unwrap() {
            let d = get_json(&agent, &format!("/conversations/{}", c["id"].as_str().unwrap())).await;
            ids.extend(
                d["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["message_id"].as_str().unwrap().to_string()),
            );
        }
        if ids.contains(&id) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "serve never polled the message in: {ids:?}\n{}",
            serve.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_picked_sent_folder_must_exist_and_is_the_one_read() {
    let dv = Dovecot::start();
    dv.doveadm(&["mailbox", "create", "-u", &dv.user, "Sent Items"]);
    let (id, raw) = customer_mail(7);
    dv.save("Sent Items", &raw);
    let data = tempfile::tempdir().unwrap();
    let ports = Ports::embedded(data.path()).unwrap();
    let inbox = EmailAddress::parse(INBOX).unwrap();
    let settings =
        |sent: Option<&str>| ImapSettings { sent_folder: sent.map(str::to_string), ..dv.imap_settings() };
    let opts = PollOptions { require_sent: true, ..PollOptions::default() };
    // A folder that is not there: refused, naming the ones that are; nothing stored.
    let e =
        imap::connect(&ports, &inbox, settings(Some("Sent Mail")), &dv.password, &opts).await.unwrap_err();
    let why = e.to_string();
    assert!(
        why.contains("no folder \"Sent Mail\"") && why.contains("Sent Items") && why.contains("Sent"),
        "{why}"
    );
    assert!(
        mailroom_app::mailbox::connection::get(&ports, &inbox).await.unwrap().is_none(),
        "stored after a refusal"
    );
    // The picked one wins over the one the server marks \Sent.
    let c = imap::connect(&ports, &inbox, settings(Some("Sent Items")), &dv.password, &opts).await.unwrap();
    assert_eq!(c.sent_folder.as_deref(), Some("Sent Items"));
    let r = imap::poll_all(&ports, &PollOptions::default()).await.unwrap();
    assert_eq!(r.failed(), 0, "{r:?}");
    Stages::new(&ports).drain().await.unwrap();
    let m =
        ports.table.get(&mailroom_app::keys::message(&id)).await.unwrap().expect("the Sent Items message");
    assert_eq!(m["direction"], "outbound", "read as sent mail: {m:?}");

    // The CLI takes the same choice, and the same refusal.
    let cli = tempfile::tempdir().unwrap();
    let out = Command::new(bin("mailroom"))
        .arg("--data")
        .arg(cli.path())
        .args(["inbox", "connect-imap", INBOX, "--host", "127.0.0.1", "--port", &dv.port_tls.to_string()])
        .args(["--allow-private-host", "--user", &dv.user, "--password-env", "MAILROOM_TEST_IMAP_PASSWORD"])
        .args(["--sent-folder", "Sent Mail", "--ca-file"])
        .arg(dv.ca_file())
        .env("MAILROOM_TEST_IMAP_PASSWORD", &dv.password)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("no folder \"Sent Mail\""), "{err}");
}
