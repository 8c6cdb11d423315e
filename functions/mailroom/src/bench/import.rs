//! `mailroom bench-import`: `mailroom import` of a generated mbox of SIZE MiB (a Google
//! Takeout-sized export), in a child process so that its peak memory is its own. The
//! first run is killed (SIGKILL) once its checkpoint has passed half of the file; the
//! second resumes there and runs to the end. Prints each run's peak RSS (the target is a
//! flat 200 MiB whatever the size), throughput, and whether every message was stored.

use anyhow::{Context, Result, bail};
use serde::Serialize;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Peak memory `mailroom import` may use on any mbox (issue 23, target 4).
pub const RSS_TARGET_MIB: f64 = 200.0;

#[derive(Serialize)]
struct Report {
    mbox_mib: f64,
    messages: u64,
    generate_s: f64,
    killed_at_message: u64,
    killed_at_mib: f64,
    first_run_s: f64,
    first_run_peak_rss_mib: f64,
    resumed: u64,
    second_run_read: u64,
    second_run_s: f64,
    second_run_mib_per_s: f64,
    second_run_peak_rss_mib: f64,
    stored_copies: u64,
    target_rss_mib: f64,
}

pub async fn run(size_mib: u64, keep: Option<&Path>, json: bool) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = keep.map(Path::to_path_buf).unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let mbox = dir.join("takeout.mbox");
    let data = dir.join("data");
    let t = Instant::now();
    let messages = generate(&mbox, size_mib << 20)?;
    let generate_s = t.elapsed().as_secs_f64();
    let len = std::fs::metadata(&mbox)?.len();
    let exe = std::env::current_exe()?;
    let import = || {
        let mut c = Command::new(&exe);
        c.arg("--data").arg(&data).arg("import").arg(&mbox).arg("--json");
        c
    };

    // 1. Killed once the checkpoint says half of the file is in.
    let t = Instant::now();
    let mut child = import().stdout(Stdio::null()).spawn().context("starting mailroom import")?;
    let states = data.join("import");
    let (killed, first_rss) = loop {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(st) = state(&states)
            && st.0 >= len / 2
        {
            let rss = crate::import::vm_hwm_kib(&child.id().to_string()).unwrap_or(0);
            child.kill()?;
            child.wait()?;
            break (st, rss);
        }
        if let Some(status) = child.try_wait()? {
            bail!("the first import ended ({status}) before half of the mbox was in");
        }
    };
    let first_run_s = t.elapsed().as_secs_f64();

    // 2. Resumed to the end.
    let t = Instant::now();
    let out = import().stderr(Stdio::inherit()).output().context("running mailroom import")?;
    let second_run_s = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("the resumed import failed ({})", out.status);
    }
    let s: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let stats = Command::new(&exe).arg("--data").arg(&data).args(["stats", "--json"]).output()?;
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout)?;
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    let r = Report {
        mbox_mib: mib(len),
        messages,
        generate_s,
        killed_at_message: killed.1,
        killed_at_mib: mib(killed.0),
        first_run_s,
        first_run_peak_rss_mib: first_rss as f64 / 1024.0,
        resumed: s["resumed"].as_u64().unwrap_or(0),
        second_run_read: s["read"].as_u64().unwrap_or(0),
        second_run_s,
        second_run_mib_per_s: mib(s["bytes"].as_u64().unwrap_or(0)) / second_run_s,
        second_run_peak_rss_mib: s["peak_rss_kib"].as_u64().unwrap_or(0) as f64 / 1024.0,
        stored_copies: stats["copies"].as_u64().unwrap_or(0),
        target_rss_mib: RSS_TARGET_MIB,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print(&r);
    }
    Ok(())
}

fn print(r: &Report) {
    let ok = |rss: f64| if rss <= RSS_TARGET_MIB { "OK" } else { "MISSED" };
    println!("mbox: {:.0} MiB, {} messages (generated in {:.1} s)", r.mbox_mib, r.messages, r.generate_s);
    println!("| run | messages | time | peak RSS | target |");
    println!("|---|---|---|---|---|");
    println!(
        "| 1, killed at {:.0} MiB | {} | {:.1} s | {:.1} MiB | ≤ {:.0} MiB {} |",
        r.killed_at_mib,
        r.killed_at_message,
        r.first_run_s,
        r.first_run_peak_rss_mib,
        r.target_rss_mib,
        ok(r.first_run_peak_rss_mib)
    );
    println!(
        "| 2, resumed after {} | {} read, {:.1} MiB/s | {:.1} s | {:.1} MiB | ≤ {:.0} MiB {} |",
        r.resumed,
        r.second_run_read,
        r.second_run_mib_per_s,
        r.second_run_s,
        r.second_run_peak_rss_mib,
        r.target_rss_mib,
        ok(r.second_run_peak_rss_mib)
    );
    println!(
        "run 2's time includes waiting out the queue's 60-second visibility timeout of the messages the killed run held"
    );
    let whole = r.resumed + r.second_run_read == r.messages && r.stored_copies == r.messages;
    println!(
        "stored copies: {} of {} ({})",
        r.stored_copies,
        r.messages,
        if whole { "each message read once and stored" } else { "MISSING OR REPEATED" }
    );
}

/// The checkpoint of the one mbox under `dir`: (next offset, messages read).
fn state(dir: &Path) -> Option<(u64, u64)> {
    let f: PathBuf = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))?;
    let st: crate::resume::MboxState = serde_json::from_slice(&std::fs::read(f).ok()?).ok()?;
    Some((st.next, st.index))
}

/// Writes an mbox of about `bytes` bytes: threads of customer mail to two inboxes, one
/// message in eight carrying a 64-768 KiB attachment, bodies with `From ` lines that the
/// mbox quotes. Deterministic (the same size gives the same file). Returns the count.
fn generate(path: &Path, bytes: u64) -> Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut rng = crate::bench::report::Rng(4242);
    let (mut written, mut n) = (0u64, 0u64);
    let start = chrono::DateTime::parse_from_rfc3339("2024-01-01T08:00:00Z")?;
    while written < bytes {
        n += 1;
        let thread = n / 3;
        let inbox = if thread % 4 == 0 { "sales@acme-corp.example" } else { "support@acme-corp.example" };
        let date = (start + chrono::Duration::minutes(n as i64 * 7)).to_rfc2822();
        let parent = if n % 3 != 0 && n > 1 {
            format!("In-Reply-To: <bench-{}@customer{}.example>\r\n", n - 1, thread % 500)
        } else {
            String::new()
        };
        let mut body = String::new();
        for l in 0..(8 + rng.below(40)) {
            body.push_str(&format!(
                "Line {l} of message {n}: the order {} has not arrived yet.\r\n",
                rng.next()
            ));
        }
        body.push_str("\r\nFrom the desk of customer support, thanks.\r\n");
        let mut msg = format!(
            "From customer{c}@customer{c}.example {date}\r\nDelivered-To: {inbox}\r\nFrom: Customer {c} <customer{c}@customer{c}.example>\r\nTo: {inbox}\r\nSubject: Order {thread}\r\nMessage-ID: <bench-{n}@customer{c}.example>\r\n{parent}Date: {date}\r\nMIME-Version: 1.0\r\n",
            c = thread % 500
        );
        if n % 8 == 0 {
            let size = (64 + rng.below(704)) as usize * 1024;
            let mut att = Vec::with_capacity(size);
            while att.len() < size {
                att.extend_from_slice(&rng.next().to_le_bytes());
            }
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(&att);
            msg.push_str("Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n");
            msg.push_str(&body.replace("\r\nFrom ", "\r\n>From "));
            msg.push_str("--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"scan.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
            for line in b64.as_bytes().chunks(76) {
                msg.push_str(std::str::from_utf8(line)?);
                msg.push_str("\r\n");
            }
            msg.push_str("--b--\r\n");
        } else {
            msg.push_str("Content-Type: text/plain\r\n\r\n");
            msg.push_str(&body.replace("\r\nFrom ", "\r\n>From "));
        }
        msg.push_str("\r\n");
        w.write_all(msg.as_bytes())?;
        written += msg.len() as u64;
    }
    w.flush()?;
    Ok(n)
}
