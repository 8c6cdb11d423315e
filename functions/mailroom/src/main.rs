//! `mailroom`: every Mailroom function in one process, on embedded storage.

mod apply;
mod bench;
mod bench_report;
mod demo;
mod import;
mod inbox;
mod report;
mod serve;
mod sources;

use anyhow::Result;
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Parser, Subcommand};
use mailroom_core::Folder;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "mailroom",
    version,
    about = "Connect shared inboxes to your CRM, on your own machine or AWS account"
)]
struct Cli {
    /// Data directory of the embedded storage.
    #[arg(long, global = true, env = "MAILROOM_DATA", default_value = "./.mailroom")]
    data: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Import a folder of .eml files (recursive), an mbox file or a maildir, and run the
    /// pipeline until its queues are drained.
    Import {
        path: PathBuf,
        /// The inbox the messages belong to; without it, each message's Delivered-To (then
        /// X-Original-To) decides, and a message whose From is a known inbox is its Sent copy.
        #[arg(long)]
        inbox: Option<String>,
        /// `sent` marks the messages as the inbox's Sent copies (agent messages).
        #[arg(long)]
        folder: Option<Folder>,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Connected mailboxes: connect an IMAP inbox, see every connection's health.
    Inbox {
        #[command(subcommand)]
        cmd: InboxCmd,
    },
    /// Poll every connected IMAP inbox and run the pipeline until its queues are drained;
    /// without --once, again every MAILROOM_IMAP_POLL_SECONDS (60) until Ctrl-C. Exit
    /// status 1 when an inbox failed.
    Poll {
        /// One round, then exit.
        #[arg(long)]
        once: bool,
        /// At most this many messages per inbox per round (the rest waits for the next).
        #[arg(long)]
        max_messages: Option<u32>,
        #[arg(long)]
        json: bool,
    },
    /// Run the queue consumers, the HTTP endpoints and the schedules (SLA sweep, IMAP poll
    /// every MAILROOM_IMAP_POLL_SECONDS) until Ctrl-C.
    Serve {
        #[arg(long, default_value_t = 3000)]
        port: u16,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
    },
    /// Parse one .eml file and print the normalised message, without touching storage.
    Parse {
        file: PathBuf,
        /// Print JSON (the default output is a short summary).
        #[arg(long)]
        json: bool,
    },
    /// List every conversation with its messages, in arrival order.
    Conversations {
        #[arg(long)]
        json: bool,
    },
    /// Run the product scenario: a three-inbox service team, a sample mailbox, and what
    /// landed where (in DATA/demo, replaced on every run).
    Demo,
    /// List contacts `{email, name, company_domain}`.
    Contacts {
        #[arg(long)]
        json: bool,
    },
    /// List companies `{domain, name, contacts}`.
    Companies {
        #[arg(long)]
        json: bool,
    },
    /// Counts of stored copies, processed copies, messages and queue depths.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Benchmark: the parse floor, the full pipeline on embedded storage and per-message
    /// latency, on the same gen_corpus.py mailbox (docs/performance.md).
    Bench {
        /// Conversations to generate (ignored with --corpus).
        #[arg(long, default_value_t = 1000)]
        conversations: u32,
        #[arg(long, default_value_t = 7)]
        seed: u32,
        /// Use this corpus (a gen_corpus.py output directory, or any folder of .eml files)
        /// instead of generating one.
        #[arg(long)]
        corpus: Option<PathBuf>,
        /// gen_corpus.py to generate with (default: $MAILROOM_GEN_CORPUS, then
        /// ../shared/tools/gen_corpus.py).
        #[arg(long)]
        generator: Option<PathBuf>,
        /// Workspace to apply first (default: the built-in examples/acme-corp.toml).
        #[arg(long)]
        workspace: Option<PathBuf>,
        /// Keep the generated corpus and the data directories in this new directory.
        #[arg(long)]
        keep: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Conversation volume, first response times, agents, open vs closed, unassigned,
    /// stale and SLA compliance, from the pre-aggregated report buckets
    /// (docs/metrics.md has the formulas).
    Report {
        /// First day (YYYY-MM-DD), inclusive.
        #[arg(long)]
        from: Option<NaiveDate>,
        /// Last day (YYYY-MM-DD), inclusive.
        #[arg(long)]
        to: Option<NaiveDate>,
        /// Only conversations of this inbox.
        #[arg(long)]
        inbox: Option<String>,
        /// IANA zone of days and hours of day (default: the [reports] calendar's zone,
        /// else UTC).
        #[arg(long)]
        tz: Option<chrono_tz::Tz>,
        /// The instant stale and SLA figures are judged at (RFC 3339; default: now).
        #[arg(long)]
        now: Option<DateTime<Utc>>,
        #[arg(long)]
        json: bool,
    },
    /// One run of the schedule: SLA breach events for conversations past their deadline,
    /// and the gauges (open, unassigned, stale, SLA due). `mailroom serve` runs it every
    /// minute.
    Sweep {
        /// The instant to judge deadlines at (RFC 3339; default: now).
        #[arg(long)]
        now: Option<DateTime<Utc>>,
    },
    /// Close a conversation (and its ticket).
    Close {
        id: String,
        /// The user who closes it (counted in the agent report).
        #[arg(long)]
        by: Option<String>,
        /// When (RFC 3339; default: now).
        #[arg(long)]
        at: Option<DateTime<Utc>>,
    },
    /// Reopen a closed conversation.
    Reopen { id: String },
    /// Print a development bearer token for a workspace user, for the API of
    /// `mailroom serve` on this data directory (docs/api.md).
    Token {
        /// The user's email (a `[[users]]` entry of the applied workspace).
        user: String,
        /// How long it is valid, in hours.
        #[arg(long, default_value_t = 12)]
        hours: u64,
    },
    /// Print the API's OpenAPI document (JSON).
    Openapi,
    /// Benchmark: report latency at growing numbers of conversations (embedded storage);
    /// the latency should not grow with them (docs/performance.md).
    BenchReport {
        /// Sizes to run, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
        conversations: Vec<u32>,
        /// Keep each size's data directory in DIR/n{N}.
        #[arg(long)]
        keep: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Validate a workspace file (.toml: inboxes, users, teams, pipelines, rules, deals;
    /// see docs/workspace.md) and write it to storage. Errors are printed as
    /// `FILE:LINE: path: message`, exit status 2, and nothing is written.
    Apply {
        file: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Web forms: `mailroom form secret FORM_ID` makes a new secret (shown once).
    Form {
        #[command(subcommand)]
        cmd: FormCmd,
    },
    /// The event feed: `secret` prints the webhook signing key, `relay` runs the
    /// webhooks and notifications once (docs/events.md).
    Events {
        #[command(subcommand)]
        cmd: EventsCmd,
    },
}

#[derive(Subcommand)]
enum FormCmd {
    /// Make a new secret for a form of the workspace and print it (the old one stops
    /// working).
    Secret { form_id: String },
}

#[derive(Subcommand)]
enum EventsCmd {
    /// Print the key that signs event webhooks (X-Mailroom-Signature).
    Secret,
    /// Deliver pending events to MAILROOM_EVENT_WEBHOOKS and send notifications once.
    Relay,
}

#[derive(Subcommand)]
enum InboxCmd {
    /// Connect an inbox over IMAP: checks the login, then stores the settings and the
    /// password (encrypted). Connecting again (a new password) keeps the sync position
    /// when the server and user are the same.
    ConnectImap {
        /// The inbox address (support@acme.example).
        address: String,
        #[arg(long)]
        host: String,
        /// Default: 993 with tls, 143 otherwise.
        #[arg(long)]
        port: Option<u16>,
        /// tls (implicit, port 993), starttls (port 143) or none (tests, trusted networks).
        #[arg(long, default_value = "tls")]
        security: mailroom_app::mailbox::imap::Security,
        /// The login name.
        #[arg(long)]
        user: String,
        /// The environment variable that holds the password (never the password itself).
        #[arg(long)]
        password_env: String,
        /// How many days back the first poll reads.
        #[arg(long, default_value_t = mailroom_app::mailbox::imap::DEFAULT_BACKFILL_DAYS)]
        backfill_days: u32,
        /// A PEM file with the CA certificate(s) to trust besides the public roots.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// The SMTP server replies are sent through (same password; without it the inbox
        /// cannot send replies).
        #[arg(long)]
        smtp_host: Option<String>,
        /// Default: 465 with tls, 587 with starttls, 25 with none.
        #[arg(long, requires = "smtp_host")]
        smtp_port: Option<u16>,
        /// tls (implicit), starttls or none (tests, trusted networks).
        #[arg(long, default_value = "starttls", requires = "smtp_host")]
        smtp_security: mailroom_app::mailbox::imap::SmtpSecurity,
        /// The SMTP login, when it is not the IMAP one.
        #[arg(long, requires = "smtp_host")]
        smtp_user: Option<String>,
        /// Do not APPEND sent replies to the Sent folder (for servers that file submitted
        /// mail themselves, such as Gmail and Microsoft 365).
        #[arg(long, requires = "smtp_host")]
        no_sent_append: bool,
        /// Allow a server on a loopback, link-local or private address (a mail server on
        /// this machine or its network; the API allows it only with the workspace's
        /// `[security] allow_private_mail_hosts`).
        #[arg(long)]
        allow_private_host: bool,
        #[arg(long)]
        json: bool,
    },
    /// Connect an inbox through Gmail or Microsoft 365: prints the sign-in link. Open it
    /// in a browser while `mailroom serve` runs (the provider sends the browser back to
    /// serve's /oauth/callback, which stores the tokens and starts the import).
    Connect {
        /// The inbox address (support@acme.example).
        address: String,
        /// gmail or graph (Microsoft 365).
        #[arg(long)]
        provider: String,
        /// Where serve is reached (MAILROOM_PUBLIC_URL); must be the redirect URI
        /// registered with the provider, minus /oauth/callback.
        #[arg(long, env = "MAILROOM_PUBLIC_URL", default_value = "http://127.0.0.1:3000")]
        public_url: String,
    },
    /// Each connection's health (state, last success and error, lag, failures) and sync
    /// cursors.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // Per-message logs are for `RUST_LOG=info`; a terminal user sees warnings and the summary.
    let level =
        if matches!(cli.cmd, Cmd::Serve { .. } | Cmd::Poll { once: false, .. }) { "info" } else { "warn" };
    mailroom_app::runtime::telemetry::init(false, level);
    match cli.cmd {
        Cmd::Import { path, inbox, folder, json } => {
            let failed = import::run(&cli.data, &path, inbox.as_deref(), folder, json).await?;
            if failed > 0 {
                std::process::exit(1);
            }
        }
        Cmd::Inbox { cmd: InboxCmd::Status { json } } => inbox::status(&cli.data, json).await?,
        Cmd::Inbox { cmd: InboxCmd::Connect { address, provider, public_url } } => {
            inbox::connect_oauth(&cli.data, &address, &provider, &public_url).await?
        }
        Cmd::Inbox {
            cmd:
                InboxCmd::ConnectImap {
                    address,
                    host,
                    port,
                    security,
                    user,
                    password_env,
                    backfill_days,
                    ca_file,
                    smtp_host,
                    smtp_port,
                    smtp_security,
                    smtp_user,
                    no_sent_append,
                    allow_private_host,
                    json,
                },
        } => {
            use mailroom_app::mailbox::imap::SmtpSettings;
            let smtp = smtp_host.map(|host| SmtpSettings {
                host,
                port: smtp_port.unwrap_or(smtp_security.default_port()),
                security: smtp_security,
                user: smtp_user,
                append_sent: !no_sent_append,
            });
            let args = inbox::ConnectArgs {
                address,
                host,
                port,
                security,
                user,
                password_env,
                backfill_days,
                ca_file,
                smtp,
                allow_private_host,
                json,
            };
            inbox::connect_imap(&cli.data, args).await?
        }
        Cmd::Poll { once, max_messages, json } => {
            if !inbox::poll(&cli.data, once, max_messages, json).await? {
                std::process::exit(1);
            }
        }
        Cmd::Serve { port, bind } => serve::run(&cli.data, &bind, port).await?,
        Cmd::Token { user, hours } => {
            let ports = mailroom_app::Ports::embedded(&cli.data)?;
            let ws = mailroom_app::workspace::load(&ports).await?.unwrap_or_default();
            let Some(u) = ws.users.iter().find(|u| u.email.eq_ignore_ascii_case(&user)) else {
                anyhow::bail!(
                    "{user} is not a user of the applied workspace: add a [[users]] entry and run mailroom apply"
                );
            };
            let issuer = mailroom_app::api::auth::LocalIssuer::new(&ports.signer);
            let ttl = std::time::Duration::from_secs(hours.clamp(1, 24 * 30) * 3600);
            println!("{}", issuer.issue(&u.email, chrono::Utc::now(), ttl)?);
        }
        Cmd::Openapi => println!("{}", serde_json::to_string_pretty(&mailroom_app::api::openapi())?),
        Cmd::Parse { file, json } => parse(&file, json)?,
        Cmd::Demo => demo::run(&cli.data).await?,
        Cmd::Contacts { json } => {
            let ports = mailroom_app::Ports::embedded(&cli.data)?;
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
        }
        Cmd::Companies { json } => {
            let ports = mailroom_app::Ports::embedded(&cli.data)?;
            let list = mailroom_app::views::crm::companies(&ports).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for c in &list {
                    println!("{:<30} {:<30} {} contacts", c.domain, c.name, c.contacts);
                }
                println!("{} companies", list.len());
            }
        }
        Cmd::Bench { conversations, seed, corpus, generator, workspace, keep, json } => {
            bench::run(bench::Options { conversations, seed, corpus, generator, workspace, keep, json })
                .await?
        }
        Cmd::BenchReport { conversations, keep, json } => {
            bench_report::run(&conversations, keep.as_deref(), json).await?
        }
        Cmd::Apply { file, json } => apply::run(&cli.data, &file, json).await?,
        Cmd::Report { from, to, inbox, tz, now, json } => {
            report::run(&cli.data, report::Options { from, to, inbox, tz, now, json }).await?
        }
        Cmd::Close { id, by, at } => report::set_status(&cli.data, &id, true, by.as_deref(), at).await?,
        Cmd::Sweep { now } => {
            let ports = mailroom_app::Ports::embedded(&cli.data)?;
            let out = mailroom_app::reports::scheduled(&ports, now.unwrap_or_else(Utc::now)).await?;
            ports.flush()?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Cmd::Form { cmd: FormCmd::Secret { form_id } } => {
            let ports = mailroom_app::Ports::embedded(&cli.data)?;
            println!("{}", mailroom_app::forms::rotate_form_secret(&ports, &form_id).await?);
        }
        Cmd::Events { cmd: EventsCmd::Secret } => {
            let ports = mailroom_app::Ports::embedded(&cli.data)?;
            println!("{}", mailroom_app::outbound::relay::webhook_key(&ports));
        }
        Cmd::Events { cmd: EventsCmd::Relay } => {
            let ports = mailroom_app::Ports::embedded(&cli.data)?;
            let relay = mailroom_app::outbound::relay::Relay::local_from_env(&ports)?;
            let out = relay.run_once(&ports, Utc::now()).await;
            ports.flush()?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Cmd::Reopen { id } => report::set_status(&cli.data, &id, false, None, None).await?,
        Cmd::Conversations { json } => {
            let ports = mailroom_app::Ports::embedded(&cli.data)?;
            let convs = mailroom_app::views::conversations::list(&ports).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&convs)?);
            } else {
                for c in &convs {
                    println!("{}  {:<28} {:>3} msg  {}", c.id, c.inbox, c.message_ids.len(), c.subject);
                }
                println!("{} conversations", convs.len());
            }
        }
        Cmd::Stats { json } => {
            let ports = mailroom_app::Ports::embedded(&cli.data)?;
            let s = mailroom_app::views::stats::collect(&ports).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("{:<40} {:>8} {:>10} {:>9}", "inbox", "copies", "processed", "messages");
                for (addr, i) in &s.inboxes {
                    println!("{addr:<40} {:>8} {:>10} {:>9}", i.copies, i.processed, i.messages);
                }
                println!(
                    "queues: ingest {} waiting, dead-letter {}",
                    s.ingest_queue,
                    s.ingest_dlq.unwrap_or(0)
                );
            }
        }
    }
    Ok(())
}

/// `mailroom parse`: exit 0 for anything read (leniently, with `defects`), 1 with a
/// one-line error only when nothing could be read.
fn parse(file: &std::path::Path, json: bool) -> Result<()> {
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
