//! `mailroom parse` and big messages: the JSON shape, exit codes, and a 25 MB message with
//! many attachments going through the pipeline with bounded memory.

use base64::Engine;
use mailroom_tests::{bin, shared_dir};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::Command;

fn parse(path: &Path) -> (i32, Value, String) {
    let out = Command::new(bin("mailroom")).arg("parse").arg(path).arg("--json").output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), json, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn parse_prints_the_normalised_message() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.eml");
    std::fs::write(
        &f,
        "From: =?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <joerg@Example.DE>\r\n\
         To: support@acme.example\r\nCc: b@x.example\r\nReply-To: r@x.example\r\n\
         Subject: =?UTF-8?Q?Re:_Frage_zur_Rechnung?=\r\nDate: Tue, 5 Mar 2024 10:00:00 +0100\r\n\
         Message-ID: <m2@example.de>\r\nIn-Reply-To: <m1@acme.example>\r\nReferences: <m0@acme.example> <m1@acme.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
         --b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDanke!\r\n\r\nOn Mon, 4 Mar 2024 09:00, Support <support@acme.example> wrote:\r\n> Hallo\r\n\
         --b\r\nContent-Type: image/png\r\nContent-Disposition: inline; filename=\"logo.png\"\r\nContent-ID: <logo1>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n",
    )
    .unwrap();
    let (code, m, err) = parse(&f);
    assert_eq!(code, 0, "{err}");
    for k in [
        "message_id",
        "from",
        "to",
        "cc",
        "reply_to",
        "subject",
        "date",
        "in_reply_to",
        "references",
        "text",
        "html",
        "new_text",
        "attachments",
        "kind",
        "bounce",
    ] {
        assert!(m.get(k).is_some(), "missing {k}: {m}");
    }
    assert_eq!(m["message_id"], "m2@example.de");
    assert_eq!(m["from"]["name"], "Jörg Müller");
    assert_eq!(m["from"]["email"], "joerg@example.de");
    assert_eq!(m["to"][0]["email"], "support@acme.example");
    assert_eq!(m["reply_to"][0]["email"], "r@x.example");
    assert_eq!(m["subject"], "Re: Frage zur Rechnung");
    assert_eq!(m["date"], "2024-03-05T09:00:00Z");
    assert_eq!(m["in_reply_to"], serde_json::json!(["m1@acme.example"]));
    assert_eq!(m["references"], serde_json::json!(["m0@acme.example", "m1@acme.example"]));
    assert_eq!(m["new_text"], "Danke!");
    assert_eq!(m["kind"], "normal");
    assert_eq!(m["bounce"], Value::Null);
    let a = &m["attachments"][0];
    assert_eq!(a["name"], "logo.png");
    assert_eq!(a["content_type"], "image/png");
    assert_eq!(a["size"], 8);
    assert_eq!(a["inline"], true);
    assert_eq!(a["content_id"], "logo1");
}

#[test]
fn parse_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    // Malformed but readable: exit 0, defects listed.
    let f = dir.path().join("bad.eml");
    std::fs::write(
        &f,
        b"Subject: \xff\xfe broken\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nno end",
    )
    .unwrap();
    let (code, m, err) = parse(&f);
    assert_eq!(code, 0, "{err}");
    assert_eq!(m["synthetic_id"], true);
    // Nothing to read: exit 1 with one line.
    let e = dir.path().join("empty.eml");
    std::fs::write(&e, b"  \r\n").unwrap();
    let (code, _, err) = parse(&e);
    assert_eq!(code, 1);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, err) = parse(&dir.path().join("missing.eml"));
    assert_eq!(code, 1);
    assert!(err.contains("cannot read"), "{err}");
}

/// The bounce corpus through the CLI, one sample per mail server family.
#[test]
fn parse_reports_bounce_recipients() {
    let f = shared_dir().join("corpus/bounces/lhost-postfix-01.eml");
    assert!(f.exists(), "{} is missing: the shared corpus must sit beside the project", f.display());
    let (code, m, err) = parse(&f);
    assert_eq!(code, 0, "{err}");
    assert_eq!(m["kind"], "bounce");
    let r = m["bounce"]["recipients"].as_array().unwrap();
    assert!(!r.is_empty() && r.iter().all(|x| x["email"].as_str().unwrap().contains('@')), "{m}");
}

/// A 25 MB message with 60 attachments: imported through the whole pipeline, every
/// attachment stored, and the importing process's peak RSS printed and bounded.
#[test]
fn a_25_mb_message_goes_through_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.eml");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&f).unwrap());
    write!(
        w,
        "Delivered-To: support@acme.example\r\nFrom: Big <big@customer.example>\r\nTo: support@acme.example\r\n\
         Subject: Logs\r\nDate: Mon, 4 Mar 2024 10:00:00 +0000\r\nMessage-ID: <big@customer.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
    )
    .unwrap();
    let mut seed: u64 = 7;
    let attachments = 60;
    for i in 0..attachments {
        let mut body = vec![0u8; 310 * 1024];
        for b in body.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *b = seed as u8;
        }
        write!(w, "--zz\r\nContent-Type: application/octet-stream; name=\"log{i}.bin\"\r\nContent-Disposition: attachment; filename=\"log{i}.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n").unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&body);
        for chunk in b64.as_bytes().chunks(76) {
            w.write_all(chunk).unwrap();
            w.write_all(b"\r\n").unwrap();
        }
    }
    w.write_all(b"--zz--\r\n").unwrap();
    drop(w);
    let size = std::fs::metadata(&f).unwrap().len();
    assert!(size > 25_000_000, "the test message is {size} bytes");

    let data = dir.path().join("data");
    let out = Command::new(bin("mailroom"))
        .arg("--data")
        .arg(&data)
        .arg("import")
        .arg(&f)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["processed"], 1, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    let att_files = walk(&data.join("blobs/att"));
    assert_eq!(att_files, attachments, "every attachment stored once");
    let rss_kib = s["peak_rss_kib"].as_u64().expect("peak RSS is reported on Linux");
    eprintln!(
        "25 MB message ({size} bytes, {attachments} attachments): import peak RSS {} MiB",
        rss_kib / 1024
    );
    // Raw bytes, decoded attachments and the parse: a small multiple of the message.
    assert!(rss_kib < 6 * size / 1024, "peak RSS {rss_kib} KiB for a {size}-byte message");
}

fn walk(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.map(|e| e.unwrap()).map(|e| if e.file_type().unwrap().is_dir() { walk(&e.path()) } else { 1 }).sum()
}

/// Issue 25: a From header RFC 5322 parsing cannot read (`Name addr`, no angle brackets)
/// still gives the message its sender, so it is logged on a contact and its company like
/// any other. Before the lenient reading it had no sender and no contact.
#[test]
fn a_message_with_a_broken_from_is_still_logged_on_its_sender() {
    let dir = tempfile::tempdir().unwrap();
    let (data, inbox) = (dir.path().join("data"), dir.path().join("in"));
    std::fs::create_dir(&inbox).unwrap();
    std::fs::write(
        inbox.join("1.eml"),
        "From: Big Bug bb@bug.example\r\nTo: support@acme-corp.example\r\nSubject: Cannot log in\r\n\
         Date: Tue, 5 Mar 2024 10:00:00 +0000\r\nMessage-ID: <bf1@bug.example>\r\n\r\n\
         I cannot log in since this morning.\r\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(bin("mailroom")).arg("--data").arg(&data).args(args).output().unwrap();
        assert!(out.status.success(), "mailroom {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let workspace = mailroom_tests::repo_root().join("examples/acme-corp.toml");
    run(&["apply", workspace.to_str().unwrap()]);
    let imported: Value = serde_json::from_str(&run(&[
        "import",
        inbox.to_str().unwrap(),
        "--inbox",
        "support@acme-corp.example",
        "--json",
    ]))
    .unwrap();
    assert_eq!(
        (imported["processed"].as_u64(), imported["failed"].as_u64()),
        (Some(1), Some(0)),
        "{imported}"
    );
    let contacts = run(&["contacts"]);
    let row: Vec<&str> = contacts.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(row, ["bb@bug.example", "Big", "Bug", "bug.example"], "{contacts}");
}
