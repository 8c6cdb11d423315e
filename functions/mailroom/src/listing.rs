//! The listing and one-shot commands: contacts, companies, conversations, stats, the
//! sweep, secrets, the relay, a development token, and `parse`.

use anyhow::Result;
use chrono::Utc;
use std::path::Path;

pub async fn contacts(data: &Path, json: bool) -> Result<()> {
    let ports = mailroom_app::Ports::embedded(data)?;
    let list = mailroom_app::views::crm::contacts(&ports).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for c in &list {
            println!(
                "{:<40} {:<30} {}",
                c.email,
                c.name.as_deref().unwrap_or("-"),
                c.company_domain.as_deref().unwrap_or("-")
            );
        }
        println!("{} contacts", list.len());
    }
    Ok(())
}

pub async fn companies(data: &Path, json: bool) -> Result<()> {
    let ports = mailroom_app::Ports::embedded(data)?;
    let list = mailroom_app::views::crm::companies(&ports).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for c in &list {
            println!("{:<30} {:<30} {} contacts", c.domain, c.name, c.contacts);
        }
        println!("{} companies", list.len());
    }
    Ok(())
}

pub async fn conversations(data: &Path, json: bool) -> Result<()> {
    let ports = mailroom_app::Ports::embedded(data)?;
    let convs = mailroom_app::views::conversations::list(&ports).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&convs)?);
    } else {
        for c in &convs {
            println!("{}  {:<28} {:>3} msg  {}", c.id, c.inbox, c.message_ids.len(), c.subject);
        }
        println!("{} conversations", convs.len());
    }
    Ok(())
}

pub async fn stats(data: &Path, json: bool) -> Result<()> {
    let ports = mailroom_app::Ports::embedded(data)?;
    let s = mailroom_app::views::stats::collect(&ports).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!("{:<40} {:>8} {:>10} {:>9}", "inbox", "copies", "processed", "messages");
        for (addr, i) in &s.inboxes {
            println!("{addr:<40} {:>8} {:>10} {:>9}", i.copies, i.processed, i.messages);
        }
        println!("queues: ingest {} waiting, dead-letter {}", s.ingest_queue, s.ingest_dlq.unwrap_or(0));
    }
    Ok(())
}

pub async fn sweep(data: &Path, now: Option<chrono::DateTime<Utc>>) -> Result<()> {
    let ports = mailroom_app::Ports::embedded(data)?;
    let out = mailroom_app::reports::scheduled(&ports, now.unwrap_or_else(Utc::now)).await?;
    ports.flush()?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub async fn replay(
    data: &Path,
    since: &str,
    inbox: Option<String>,
    stage: &str,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    if stage != "route" && stage != "log" {
        anyhow::bail!("--stage {stage}: `route` or `log` (threading is not replayed yet)");
    }
    let since = mailroom_app::replay::parse_since(since)?;
    let ports = mailroom_app::Ports::embedded(data)?;
    let ws = mailroom_app::workspace::load(&ports).await?.unwrap_or_default();
    let opts = mailroom_app::replay::ReplayOptions { since, inbox, dry_run, by: "cli".into() };
    let sum = if stage == "log" {
        mailroom_app::replay::replay_log(&ports, &ws, &opts).await?
    } else {
        mailroom_app::replay::replay(&ports, &ws, &opts).await?
    };
    ports.flush()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&sum)?);
    } else {
        for l in &sum.lines {
            println!("{l}");
        }
    }
    Ok(())
}

pub async fn form_secret(data: &Path, form_id: &str) -> Result<()> {
    let ports = mailroom_app::Ports::embedded(data)?;
    println!("{}", mailroom_app::forms::rotate_form_secret(&ports, form_id).await?);
    Ok(())
}

pub fn events_secret(data: &Path) -> Result<()> {
    let ports = mailroom_app::Ports::embedded(data)?;
    println!("{}", mailroom_app::outbound::relay::webhook_key(&ports));
    Ok(())
}

pub async fn events_relay(data: &Path) -> Result<()> {
    let ports = mailroom_app::Ports::embedded(data)?;
    let relay = mailroom_app::outbound::relay::Relay::local_from_env(&ports)?;
    let out = relay.run_once(&ports, Utc::now()).await;
    ports.flush()?;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

/// A development token for a workspace user (`mailroom token`).
pub async fn token(data: &Path, user: &str, hours: u64) -> Result<()> {
    let ports = mailroom_app::Ports::embedded(data)?;
    let ws = mailroom_app::workspace::load(&ports).await?.unwrap_or_default();
    let Some(u) = ws.users.iter().find(|u| u.email.eq_ignore_ascii_case(user)) else {
        anyhow::bail!(
            "{user} is not a user of the applied workspace: add a [[users]] entry and run mailroom apply"
        );
    };
    let issuer = mailroom_app::api::auth::LocalIssuer::new(&ports.signer);
    let ttl = std::time::Duration::from_secs(hours.clamp(1, 24 * 30) * 3600);
    println!("{}", issuer.issue(&u.email, chrono::Utc::now(), ttl)?);
    Ok(())
}

/// `mailroom login-link`: a one-time sign-in link to the web inbox.
pub async fn login_link(data: &Path, user: &str, url: &str) -> Result<()> {
    let ports = mailroom_app::Ports::embedded(data)?;
    let ws = mailroom_app::workspace::load(&ports).await?.unwrap_or_default();
    let Some(u) = ws.users.iter().find(|u| u.email.eq_ignore_ascii_case(user)) else {
        anyhow::bail!(
            "{user} is not a user of the applied workspace: add a [[users]] entry and run mailroom apply"
        );
    };
    let link = mailroom_app::web::session::login_link(&ports, url, &u.email).await?;
    ports.flush()?;
    println!("{link}");
    Ok(())
}

/// `mailroom parse`: exit 0 for anything read (leniently, with `defects`), 1 with a
/// one-line error only when nothing could be read.
pub fn parse(file: &std::path::Path, json: bool) -> Result<()> {
    let raw = match std::fs::read(file) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailroom parse: cannot read {}: {e}", file.display());
            std::process::exit(1);
        }
    };
    let m = match mailroom_core::understand(&raw) {
        Ok(u) => u.message,
        Err(e) => {
            eprintln!("mailroom parse: {}: {e}", file.display());
            std::process::exit(1);
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&m)?);
    } else {
        let from = m.from.as_ref().map(|f| f.email.as_str()).unwrap_or("-");
        println!(
            "{}\n  from {from}\n  subject {}\n  kind {:?}, {} attachments",
            m.message_id,
            m.subject,
            m.kind,
            m.attachments.len()
        );
        for d in &m.defects {
            println!("  defect: {d}");
        }
    }
    Ok(())
}
