//! `mailroom demo` on a fresh data directory: the built-in Northwind workspace and mailbox
//! (examples/demo/), imported through match, route and ticket.

use mailroom_tests::bin;
use serde_json::Value;
use std::process::Command;

#[test]
fn demo_runs_on_a_fresh_directory_and_lands_every_message() {
    let tmp = tempfile::tempdir().unwrap();
    // Run from an empty working directory: the demo must need nothing but the binary.
    let out = Command::new(bin("mailroom"))
        .current_dir(tmp.path())
        .args(["--data", "data", "demo"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "demo failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    for needle in ["Tickets by team:", "Contacts created:", "Companies created:", "Unassigned tickets: 0"] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    let store = tmp.path().join("data/demo/store");
    let stats =
        Command::new(bin("mailroom")).arg("--data").arg(&store).args(["stats", "--json"]).output().unwrap();
    let s: Value = serde_json::from_slice(&stats.stdout).unwrap();
    // examples/demo/mailbox: 16 files, one message delivered to two inboxes; 9 customer
    // conversations (the refund mail to support@ goes to billing by its subject), an
    // auto-reply that joins its thread, a bounce and a newsletter that open no ticket.
    assert_eq!(s["copies"], 16, "{s}");
    assert_eq!(s["messages"], 15, "{s}");
    assert_eq!(s["tickets"], 9, "{s}");
    assert_eq!(s["contacts"], 10, "{s}");
    assert_eq!(s["companies"], 4, "{s}");
    for q in ["ingest_dlq", "route_dlq", "ticket_dlq"] {
        assert_eq!(s[q], 0, "{q}: {s}");
    }
    // A second run starts over rather than piling up.
    let again = Command::new(bin("mailroom"))
        .current_dir(tmp.path())
        .args(["--data", "data", "demo"])
        .output()
        .unwrap();
    assert!(again.status.success());
    let stats =
        Command::new(bin("mailroom")).arg("--data").arg(&store).args(["stats", "--json"]).output().unwrap();
    let s2: Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(s2["tickets"], 9, "{s2}");

    // It ends with a sign-in link for the demo's agent, which signs in to serve's web
    // inbox on that store (once).
    let stdout = String::from_utf8_lossy(&again.stdout);
    let link = stdout
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:3000/app/login/"))
        .unwrap_or_else(|| panic!("no sign-in link in:\n{stdout}"));
    let path = link.trim_start_matches("http://127.0.0.1:3000");
    let port = mailroom_tests::free_port();
    let mut serve = Command::new(bin("mailroom"))
        .arg("--data")
        .arg(&store)
        .args(["serve", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    mailroom_tests::wait_for_port(port, std::time::Duration::from_secs(20));
    let get = |p: &str| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        use std::io::{Read, Write};
        write!(s, "GET {p} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
        let mut r = String::new();
        s.read_to_string(&mut r).unwrap();
        r
    };
    let first = get(path);
    let second = get(path);
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(first.starts_with("HTTP/1.1 303") && first.contains("mr_session="), "{first}");
    assert!(second.contains("bad-link"), "a link signs in once: {second}");
}
