//! `mailroom import` and `mailroom serve` on embedded storage, against gen_corpus.py's
//! ground truth: every distinct message stored once, nothing new on a second import, and
//! exactly-once processing across SIGKILLs.

use mailroom_tests::{bin, gen_corpus};
use serde_json::Value;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn mailroom(data: &Path) -> Command {
    let mut c = Command::new(bin("mailroom"));
    c.arg("--data").arg(data);
    c
}

fn import_json(data: &Path, path: &Path, extra: &[&str]) -> Value {
    let out = mailroom(data).arg("import").arg(path).args(extra).arg("--json").output().unwrap();
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stats(data: &Path) -> Value {
    let out = mailroom(data).args(["stats", "--json"]).output().unwrap();
    assert!(out.status.success(), "stats failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Truth {
    copies: usize,
    message_ids: usize,
    inboxes: HashSet<String>,
}

fn truth(dir: &Path) -> Truth {
    let text = std::fs::read_to_string(dir.join("truth.jsonl")).unwrap();
    let rows: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    Truth {
        copies: rows.len(),
        message_ids: rows
            .iter()
            .map(|r| r["message_id"].as_str().unwrap().to_string())
            .collect::<HashSet<_>>()
            .len(),
        inboxes: rows.iter().map(|r| r["delivered_to"].as_str().unwrap().to_string()).collect(),
    }
}

/// Everything stored once and processed exactly once, queues empty.
fn assert_complete(s: &Value, t: &Truth) {
    assert_eq!(s["copies"], t.copies, "one stored copy per file: {s}");
    assert_eq!(s["processed"], t.copies, "every copy processed: {s}");
    assert_eq!(s["messages"], t.message_ids, "one message per distinct Message-ID: {s}");
    assert_eq!(s["ingest_queue"], 0, "{s}");
    assert_eq!(s["ingest_dlq"], 0, "{s}");
    for (inbox, i) in s["inboxes"].as_object().unwrap() {
        assert_eq!(i["processed_more_than_once"], 0, "{inbox}: a copy was processed twice");
    }
}

#[test]
fn import_of_2000_conversations_stores_each_message_once_and_again_adds_nothing() {
    let corpus = tempfile::tempdir().unwrap();
    gen_corpus(corpus.path(), 2000, 11);
    let t = truth(corpus.path());
    let data = tempfile::tempdir().unwrap();

    let first = import_json(data.path(), &corpus.path().join("messages"), &[]);
    assert_eq!(first["read"], t.copies);
    assert_eq!(first["stored"], t.copies, "{first}");
    assert_eq!(first["failed"], 0);
    let s = stats(data.path());
    assert_complete(&s, &t);
    let inboxes: HashSet<String> = s["inboxes"].as_object().unwrap().keys().cloned().collect();
    assert!(t.inboxes.is_subset(&inboxes), "inboxes {inboxes:?} miss some of {:?}", t.inboxes);

    let second = import_json(data.path(), &corpus.path().join("messages"), &[]);
    assert_eq!(second["stored"], 0, "{second}");
    assert_eq!(second["requeued"], 0, "{second}");
    assert_eq!(second["duplicates"], t.copies, "{second}");
    assert_complete(&stats(data.path()), &t);
}

#[test]
fn imports_mbox_and_maildir() {
    for format in ["mbox", "maildir"] {
        let corpus = tempfile::tempdir().unwrap();
        let st = Command::new("python3")
            .arg(mailroom_tests::shared_dir().join("tools/gen_corpus.py"))
            .args([
                "--out",
                &corpus.path().display().to_string(),
                "--conversations",
                "60",
                "--seed",
                "5",
                "--quiet",
                "--format",
                format,
            ])
            .status()
            .unwrap();
        assert!(st.success());
        let t = truth(corpus.path());
        let data = tempfile::tempdir().unwrap();
        let path =
            if format == "mbox" { corpus.path().join("mailbox.mbox") } else { corpus.path().join("maildir") };
        let r = import_json(data.path(), &path, &[]);
        assert_eq!(r["read"], t.copies, "{format}: {r}");
        assert_eq!(r["failed"], 0, "{format}: {r}");
        assert_complete(&stats(data.path()), &t);
        let again = import_json(data.path(), &path, &[]);
        assert_eq!(again["stored"], 0, "{format}: {again}");
    }
}

#[test]
fn explicit_inbox_and_sent_folder() {
    let dir = tempfile::tempdir().unwrap();
    let eml = dir.path().join("a.eml");
    std::fs::write(&eml, "From: Agent <agent@acme.example>\r\nTo: c@customer.example\r\nSubject: hi\r\nMessage-ID: <sent-1@acme.example>\r\n\r\nhello\r\n").unwrap();
    let data = tempfile::tempdir().unwrap();
    // No delivery header and an unknown From: reported, not guessed.
    let out = mailroom(data.path()).arg("import").arg(&eml).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--inbox"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = import_json(data.path(), &eml, &["--inbox", "Support@ACME.example", "--folder", "sent"]);
    assert_eq!(r["stored"], 1);
    let s = stats(data.path());
    assert_eq!(s["inboxes"]["support@acme.example"]["messages"], 1, "{s}");
}

fn wait_running(child: &mut std::process::Child, what: &str) {
    assert!(
        child.try_wait().unwrap().is_none(),
        "{what} finished before it could be killed; the test proves nothing"
    );
}

#[test]
fn sigkill_during_import_and_serve_loses_nothing_and_processes_each_copy_once() {
    let corpus = tempfile::tempdir().unwrap();
    gen_corpus(corpus.path(), 600, 3);
    let t = truth(corpus.path());
    let data = tempfile::tempdir().unwrap();
    let msgs = corpus.path().join("messages");

    // 1. Import, killed mid-run.
    let mut imp = mailroom(data.path())
        .arg("import")
        .arg(&msgs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let stored = data.path().join("blobs/raw").exists()
            && walk_count(&data.path().join("blobs/raw")) >= t.copies / 4;
        if stored || t0.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    wait_running(&mut imp, "import");
    imp.kill().unwrap(); // SIGKILL
    imp.wait().unwrap();
    let mid = stats(data.path());
    assert!(mid["copies"].as_u64().unwrap() < t.copies as u64, "import was not cut off: {mid}");

    // 2. Serve picks up the queue, and is killed mid-run too.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut srv = mailroom(data.path())
        .args(["serve", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    mailroom_tests::wait_for_port(port, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    wait_running(&mut srv, "serve");
    srv.kill().unwrap();
    srv.wait().unwrap();

    // 3. The import again, to the end.
    let r = import_json(data.path(), &msgs, &[]);
    assert_eq!(r["failed"], 0, "{r}");
    assert_complete(&stats(data.path()), &t);
}

/// An mbox streams, and a run killed after its first checkpoint resumes from it: the
/// second run reads only what the first had not imported, and everything ends up stored
/// and processed exactly once; the checkpoint is gone once the import has finished.
#[test]
fn an_mbox_import_killed_half_way_resumes_where_it_stopped() {
    let corpus = tempfile::tempdir().unwrap();
    let st = Command::new("python3")
        .arg(mailroom_tests::shared_dir().join("tools/gen_corpus.py"))
        .args(["--out", &corpus.path().display().to_string(), "--conversations", "150", "--seed", "8"])
        .args(["--quiet", "--format", "mbox"])
        .status()
        .unwrap();
    assert!(st.success());
    let t = truth(corpus.path());
    assert!(t.copies > 400, "too few messages to be killed half-way: {}", t.copies);
    let mbox = corpus.path().join("mailbox.mbox");
    let data = tempfile::tempdir().unwrap();
    let states = data.path().join("import");

    let mut imp = mailroom(data.path()).arg("import").arg(&mbox).stdout(Stdio::null()).spawn().unwrap();
    let t0 = Instant::now();
    // A checkpoint is written to a temporary file and renamed: only a `.json` counts, or
    // the kill could land between the write and the rename (seen on CI).
    let saved_file = || -> Option<PathBuf> {
        let dir = std::fs::read_dir(&states).ok()?;
        dir.flatten().map(|e| e.path()).find(|p| p.extension().is_some_and(|x| x == "json"))
    };
    while saved_file().is_none() {
        assert!(t0.elapsed() < Duration::from_secs(120), "no checkpoint after 2 minutes");
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_running(&mut imp, "import");
    imp.kill().unwrap(); // SIGKILL
    imp.wait().unwrap();
    let file = saved_file().unwrap();
    let saved: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let done = saved["index"].as_u64().unwrap();
    assert!(done > 0 && done < t.copies as u64, "{saved}");
    assert_eq!(saved["done"], false, "{saved}");

    let r = import_json(data.path(), &mbox, &[]);
    assert_eq!(r["resumed"], done, "{r}");
    assert_eq!(r["read"].as_u64().unwrap() + done, t.copies as u64, "each message read once in all: {r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_complete(&stats(data.path()), &t);
    assert!(!file.exists(), "the checkpoint outlived the import");

    // Again from the start on purpose: all of it read, nothing new stored.
    let again = import_json(data.path(), &mbox, &["--restart"]);
    assert_eq!(
        (again["read"].as_u64(), again["stored"].as_u64()),
        (Some(t.copies as u64), Some(0)),
        "{again}"
    );
}

/// A message of an mbox that cannot be imported (no delivery header, an unknown From)
/// fails at the end of the run and stays in the checkpoint alone: importing the file again
/// (here with the --inbox it needed) reads nothing else and stores just it.
#[test]
fn an_mbox_message_that_fails_stays_in_the_checkpoint_and_alone_is_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("export.mbox");
    let msg = |n: u32, head: &str| {
        format!(
            "From x@y Mon Jan  1 00:00:00 2024\n{head}From: c{n}@customer.example\nSubject: s{n}\nMessage-ID: <f{n}@customer.example>\n\nbody {n}\n\n"
        )
    };
    let text = [
        msg(1, "Delivered-To: support@acme.example\n"),
        msg(2, ""),
        msg(3, "Delivered-To: support@acme.example\n"),
    ]
    .concat();
    std::fs::write(&mbox, text).unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = mailroom(data.path()).arg("import").arg(&mbox).arg("--json").output().unwrap();
    assert!(!out.status.success(), "a failed message must fail the import");
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((first["stored"].as_u64(), first["failed"].as_u64()), (Some(2), Some(1)), "{first}");
    let states: Vec<_> = std::fs::read_dir(data.path().join("import")).unwrap().flatten().collect();
    assert_eq!(states.len(), 1, "the checkpoint of the failed message is kept");
    let saved: Value = serde_json::from_slice(&std::fs::read(states[0].path()).unwrap()).unwrap();
    assert_eq!(
        (saved["done"].as_bool(), saved["retry"].as_array().map(Vec::len)),
        (Some(true), Some(1)),
        "{saved}"
    );

    let again = import_json(data.path(), &mbox, &["--inbox", "support@acme.example"]);
    assert_eq!((again["read"].as_u64(), again["resumed"].as_u64()), (Some(0), Some(3)), "{again}");
    assert_eq!((again["stored"].as_u64(), again["failed"].as_u64()), (Some(1), Some(0)), "{again}");
    assert!(!states[0].path().exists(), "the checkpoint outlived the last failure");
}

fn walk_count(dir: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            n += walk_count(&p);
        } else if p.extension().is_some_and(|x| x == "eml") {
            n += 1;
        }
    }
    n
}
