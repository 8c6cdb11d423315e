//! `mailroom apply FILE [--stack NAME]`: read a workspace file, validate it, and write it
//! to storage: the data directory, or a deployed stack's table (`stack.rs`).
//! Any problem in the file is printed as `FILE:LINE: path: message`, one line each, and
//! the command exits with status 2 without writing (or even opening) anything.

use anyhow::Result;
use mailroom_app::Ports;
use mailroom_app::workspace::{self, ApplySummary};
use std::path::Path;

/// Exit status for a file that cannot be applied.
const INVALID: i32 = 2;

pub async fn run(data: &Path, stack: Option<&str>, file: &Path, json: bool) -> Result<()> {
    let shown = file.display();
    let ext = file.extension().and_then(|e| e.to_str()).unwrap_or_default();
    if !ext.eq_ignore_ascii_case("toml") {
        let got = if ext.is_empty() { "no extension".to_string() } else { format!(".{ext}") };
        eprintln!("{shown}: only .toml workspace files are supported (got {got})");
        std::process::exit(INVALID);
    }
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{shown}: cannot read: {e}");
            std::process::exit(INVALID);
        }
    };
    let ws = match mailroom_core::workspace::parse_toml(&text) {
        Ok(ws) => ws,
        Err(errors) => {
            for e in &errors {
                match e.line {
                    Some(n) => eprintln!("{shown}:{n}: {}: {}", e.path, e.message),
                    None => eprintln!("{shown}: {}: {}", e.path, e.message),
                }
            }
            std::process::exit(INVALID);
        }
    };
    let ports = match stack {
        Some(name) => crate::stack::ports(name).await?,
        None => Ports::embedded(data)?,
    };
    let s = workspace::apply(&ports, &ws).await?;
    ports.flush()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print_summary(file, &s);
    }
    Ok(())
}

fn print_summary(file: &Path, s: &ApplySummary) {
    println!("applied {} as workspace version {}", file.display(), s.version);
    println!(
        "  {} inboxes, {} users, {} teams, {} pipelines, {} rules, {} deals, {} contacts",
        s.inboxes, s.users, s.teams, s.pipelines, s.rules, s.deals, s.contacts
    );
    if s.archived_inboxes + s.deactivated_users + s.unconfigured_contacts + s.deleted > 0 {
        println!(
            "  no longer in the file: {} inboxes archived, {} users deactivated, {} contacts unconfigured, \
             {} items deleted",
            s.archived_inboxes, s.deactivated_users, s.unconfigured_contacts, s.deleted
        );
    }
}
