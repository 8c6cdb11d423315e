//! `mailroom report`, `mailroom close` and `mailroom reopen`.

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use mailroom_app::Ports;
use mailroom_app::reports::{Filter, Report};
use std::path::Path;

pub struct Options {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub inbox: Option<String>,
    pub tz: Option<chrono_tz::Tz>,
    pub now: Option<DateTime<Utc>>,
    pub json: bool,
}

pub async fn run(data: &Path, o: Options) -> Result<()> {
    let ports = Ports::embedded(data)?;
    let ws = mailroom_app::workspace::load(&ports).await?.unwrap_or_default();
    let f = Filter { from: o.from, to: o.to, inbox: o.inbox, tz: o.tz, visible: None };
    let r = mailroom_app::reports::report(&ports, &ws, &f, o.now.unwrap_or_else(Utc::now)).await?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print_table(&r);
    }
    Ok(())
}

fn dur(s: Option<f64>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s < 3600.0 => format!("{:.0}m", s / 60.0),
        Some(s) if s < 86400.0 => format!("{:.1}h", s / 3600.0),
        Some(s) => format!("{:.1}d", s / 86400.0),
    }
}

fn print_table(r: &Report) {
    let range = format!("{} .. {}", r.from.as_deref().unwrap_or("start"), r.to.as_deref().unwrap_or("end"));
    println!(
        "Report {range} ({}){}",
        r.time_zone,
        r.inbox.as_ref().map(|i| format!(", inbox {i}")).unwrap_or_default()
    );
    println!();
    println!(
        "Conversations {:>7}   open {}   closed {}   unassigned {}   stale {}",
        r.volume.total, r.open, r.closed, r.unassigned, r.stale
    );
    println!(
        "Messages      in {}   out {}   noise {}",
        r.messages.inbound, r.messages.outbound, r.messages.noise
    );
    println!("Tickets created {}", r.tickets_created);
    let fr = &r.first_response;
    println!(
        "First response  n={}  mean {}  median {}  p90 {}   business: mean {}  median {}  p90 {}",
        fr.count,
        dur(fr.mean_s),
        dur(fr.median_s),
        dur(fr.p90_s),
        dur(fr.business_mean_s),
        dur(fr.business_median_s),
        dur(fr.business_p90_s)
    );
    println!(
        "SLA  met {}  breached {}  due {}  paused {}  compliance {}",
        r.sla.all.met,
        r.sla.all.breached,
        r.sla.all.due,
        r.sla.all.paused,
        r.sla.all.compliance.map(|c| format!("{:.1}%", c * 100.0)).unwrap_or_else(|| "-".into())
    );
    println!(
        "Email log  {} of {} messages logged on a contact ({})",
        r.email_log.logged,
        r.email_log.messages,
        r.email_log.share.map(|c| format!("{:.1}%", c * 100.0)).unwrap_or_else(|| "-".into())
    );
    println!();
    println!("{:<40} {:>8}", "inbox", "conversations");
    for (i, n) in &r.volume.by_inbox {
        println!("{i:<40} {n:>8}");
    }
    println!();
    println!("{:<40} {:>8} {:>8} {:>8}", "agent", "assigned", "replied", "closed");
    for (a, f) in &r.agents {
        println!("{a:<40} {:>8} {:>8} {:>8}", f.assigned, f.replied, f.closed);
    }
    println!();
    println!("{:<12} {:>8} {:>8}", "day", "opened", "closed");
    for (d, oc) in &r.open_closed_by_day {
        println!("{d:<12} {:>8} {:>8}", oc.opened, oc.closed);
    }
}

/// `mailroom close ID` / `mailroom reopen ID`.
pub async fn set_status(
    data: &Path,
    id: &str,
    close: bool,
    by: Option<&str>,
    at: Option<DateTime<Utc>>,
) -> Result<()> {
    let ports = Ports::embedded(data)?;
    let ws = mailroom_app::workspace::load(&ports).await?.unwrap_or_default();
    let root =
        mailroom_app::conversations::set_status(&ports, &ws, id, close, by, at.unwrap_or_else(Utc::now))
            .await
            .with_context(|| format!("conversation {id}"))?;
    ports.flush()?;
    println!("{root} {}", if close { "closed" } else { "open" });
    Ok(())
}
