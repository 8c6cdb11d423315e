//! `mailroom demo`: the product brief's scenario on embedded storage. A service-ops lead
//! runs support@, onboarding@ and billing@ with ticket creation on and routing by subject
//! keywords; the demo applies that workspace, imports a small mailbox written for it and
//! prints what landed where. Both files are built into the binary (examples/demo/), so
//! the demo needs nothing but the binary.

use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// The agent the demo's sign-in link is for.
const DEMO_AGENT: &str = "ana.ruiz@northwind.example";
const WORKSPACE: &str = include_str!("../../../examples/demo/workspace.toml");
const MAILBOX: &[(&str, &[u8])] = &[
    ("01-support-login.eml", include_bytes!("../../../examples/demo/mailbox/01-support-login.eml")),
    (
        "02-support-login-reply-sent.eml",
        include_bytes!("../../../examples/demo/mailbox/02-support-login-reply-sent.eml"),
    ),
    (
        "03-support-login-customer-reply.eml",
        include_bytes!("../../../examples/demo/mailbox/03-support-login-customer-reply.eml"),
    ),
    (
        "04-billing-invoice-twice.eml",
        include_bytes!("../../../examples/demo/mailbox/04-billing-invoice-twice.eml"),
    ),
    ("05-billing-reply-sent.eml", include_bytes!("../../../examples/demo/mailbox/05-billing-reply-sent.eml")),
    ("06-out-of-office.eml", include_bytes!("../../../examples/demo/mailbox/06-out-of-office.eml")),
    (
        "07-support-refund-gmail.eml",
        include_bytes!("../../../examples/demo/mailbox/07-support-refund-gmail.eml"),
    ),
    ("08-onboarding-kickoff.eml", include_bytes!("../../../examples/demo/mailbox/08-onboarding-kickoff.eml")),
    (
        "09-sso-setup-copy-in-onboarding.eml",
        include_bytes!("../../../examples/demo/mailbox/09-sso-setup-copy-in-onboarding.eml"),
    ),
    (
        "09-sso-setup-copy-in-support.eml",
        include_bytes!("../../../examples/demo/mailbox/09-sso-setup-copy-in-support.eml"),
    ),
    ("10-bounce.eml", include_bytes!("../../../examples/demo/mailbox/10-bounce.eml")),
    ("11-newsletter.eml", include_bytes!("../../../examples/demo/mailbox/11-newsletter.eml")),
    ("12-support-export.eml", include_bytes!("../../../examples/demo/mailbox/12-support-export.eml")),
    (
        "13-support-api-question.eml",
        include_bytes!("../../../examples/demo/mailbox/13-support-api-question.eml"),
    ),
    (
        "14-billing-payment-method.eml",
        include_bytes!("../../../examples/demo/mailbox/14-billing-payment-method.eml"),
    ),
    (
        "15-support-sso-question.eml",
        include_bytes!("../../../examples/demo/mailbox/15-support-sso-question.eml"),
    ),
];

/// Writes the demo mailbox's messages into `dir` (created).
pub fn write_mailbox(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in MAILBOX {
        std::fs::write(dir.join(name), bytes)?;
    }
    Ok(())
}

/// The demo workspace.
pub fn workspace() -> Result<mailroom_core::workspace::Workspace> {
    mailroom_core::workspace::parse_toml(WORKSPACE)
        .map_err(|e| anyhow::anyhow!("the built-in demo workspace is invalid: {e:?}"))
}

pub async fn run(data: &Path) -> Result<()> {
    let dir = data.join("demo");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let mailbox = dir.join("mailbox");
    write_mailbox(&mailbox)?;
    let store = dir.join("store");
    let ws = workspace()?;
    let ports = mailroom_app::Ports::embedded(&store)?;
    mailroom_app::workspace::apply(&ports, &ws).await?;
    println!(
        "Mailroom demo: {} ({} shared inboxes, ticket creation on, routing by subject keywords)",
        ws.name.as_deref().unwrap_or("demo"),
        ws.inboxes.len()
    );
    println!();
    let failed = crate::import::run(&store, &mailbox, None, None, false, false).await?;
    if failed > 0 {
        anyhow::bail!("{failed} demo messages failed to import");
    }
    report(&ports).await?;
    println!();
    println!(
        "Look around: mailroom --data {} conversations | contacts | companies | report | stats",
        store.display()
    );
    // A sign-in link for the demo's agent, for `serve` on its default address.
    let link = mailroom_app::web::session::login_link(&ports, "http://127.0.0.1:3000", DEMO_AGENT).await?;
    ports.flush()?;
    println!();
    println!("Work the inbox in the browser as {DEMO_AGENT}:");
    println!("  mailroom --data {} serve", store.display());
    println!("  then open {link}");
    println!(
        "  (it signs in once, within 15 minutes; `mailroom --data {} login-link USER` makes another)",
        store.display()
    );
    Ok(())
}

async fn report(ports: &mailroom_app::Ports) -> Result<()> {
    let convs = serde_json::to_value(mailroom_app::views::conversations::list(ports).await?)?;
    let convs = convs.as_array().cloned().unwrap_or_default();
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    println!();
    println!("Conversations: {}", convs.len());
    for c in &convs {
        let kinds: Vec<String> =
            c["messages"].as_array().into_iter().flatten().map(|m| s(&m["kind"])).collect();
        let ticket = if c["ticket"].is_null() {
            "no ticket".to_string()
        } else {
            format!("ticket in {}", s(&c["ticket"]["stage"]))
        };
        println!(
            "  {:<42} {:<28} team {:<10} {:<28} {} message(s) [{}], {ticket}",
            truncate(&s(&c["subject"]), 42),
            s(&c["inbox"]),
            s(&c["team"]),
            s(&c["assignee"]),
            kinds.len(),
            kinds.join(", ")
        );
    }
    let mut per_team: BTreeMap<String, (u32, BTreeMap<String, u32>)> = BTreeMap::new();
    let (mut unassigned, mut not_ticketed) = (0, 0);
    for c in &convs {
        if c["ticket"].is_null() {
            not_ticketed += 1;
            continue;
        }
        let e = per_team.entry(s(&c["team"])).or_default();
        e.0 += 1;
        *e.1.entry(s(&c["assignee"])).or_default() += 1;
        if c["assignee"].is_null() {
            unassigned += 1;
        }
    }
    println!();
    println!("Tickets by team:");
    for (team, (n, who)) in &per_team {
        let who: Vec<String> = who.iter().map(|(a, k)| format!("{a} {k}")).collect();
        println!("  {team:<12} {n}  ({})", who.join(", "));
    }
    println!("Not ticketed (auto-replies, bounces, list mail): {not_ticketed}");
    println!("Unassigned tickets: {unassigned}");
    let contacts = mailroom_app::views::crm::contacts(ports).await?;
    println!("Contacts created: {}", contacts.len());
    for c in &contacts {
        println!(
            "  {:<36} {:<20} {}",
            c.email,
            c.name.as_deref().unwrap_or("-"),
            c.company_domain.as_deref().unwrap_or("(freemail: no company)")
        );
    }
    let companies = mailroom_app::views::crm::companies(ports).await?;
    println!("Companies created: {}", companies.len());
    for c in &companies {
        println!("  {:<24} {:<16} {} contact(s)", c.domain, c.name, c.contacts);
    }
    let ws = mailroom_app::workspace::load(ports).await?.unwrap_or_default();
    let r = mailroom_app::reports::report(ports, &ws, &Default::default(), chrono::Utc::now()).await?;
    let median =
        r.first_response.median_s.map(|m| format!("{:.0} min", m / 60.0)).unwrap_or_else(|| "-".into());
    println!();
    println!(
        "Report: {} conversations, {} answered (median first response {median}), {} open, {} unassigned, \
         email logged on contacts {}/{}",
        r.volume.total,
        r.first_response.count,
        r.open,
        r.unassigned,
        r.email_log.logged,
        r.email_log.messages
    );
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { s.chars().take(n - 1).collect::<String>() + "…" }
}
