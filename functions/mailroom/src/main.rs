//! `mailroom`: every Mailroom function in one process on embedded storage. This file only
//! dispatches: the arguments are `cli.rs`, each command lives in its own module.

mod apply;
mod bench;
mod cli;
mod demo;
mod import;
mod inbox;
mod listing;
mod report;
mod resume;
mod serve;
mod sources;
mod stack;

use anyhow::Result;
use clap::Parser;
use cli::{Cli, Cmd, EventsCmd, FormCmd, InboxCmd};

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // Per-message logs are for `RUST_LOG=info`; a terminal user sees warnings and the summary.
    let level =
        if matches!(cli.cmd, Cmd::Serve { .. } | Cmd::Poll { once: false, .. }) { "info" } else { "warn" };
    mailroom_app::runtime::telemetry::init(false, level);
    let data = cli.data.as_path();
    match cli.cmd {
        Cmd::Import { path, inbox, folder, restart, json } => {
            let failed = import::run(data, &path, inbox.as_deref(), folder, restart, json).await?;
            if failed > 0 {
                std::process::exit(1);
            }
        }
        Cmd::Inbox { cmd: InboxCmd::Status { json } } => inbox::status(data, json).await?,
        Cmd::Inbox { cmd: InboxCmd::Verify { address, by, wait, json } } => {
            if !inbox::verify(data, &address, by, wait, json).await? {
                std::process::exit(1);
            }
        }
        Cmd::Inbox { cmd: InboxCmd::Connect { address, provider, public_url } } => {
            inbox::connect_oauth(data, &address, &provider, &public_url).await?
        }
        Cmd::Inbox { cmd: InboxCmd::ConnectImap(args) } => inbox::connect_imap(data, args.into()).await?,
        Cmd::Poll { once, max_messages, json } => {
            if !inbox::poll(data, once, max_messages, json).await? {
                std::process::exit(1);
            }
        }
        Cmd::Serve { port, bind } => serve::run(data, &bind, port).await?,
        Cmd::Token { user, hours } => listing::token(data, &user, hours).await?,
        Cmd::LoginLink { user, url } => listing::login_link(data, &user, &url).await?,
        Cmd::Openapi => println!("{}", serde_json::to_string_pretty(&mailroom_app::api::openapi())?),
        Cmd::Parse { file, json } => listing::parse(&file, json)?,
        Cmd::Demo => demo::run(data).await?,
        Cmd::Contacts { json } => listing::contacts(data, json).await?,
        Cmd::Companies { json } => listing::companies(data, json).await?,
        Cmd::Bench { corpus, keep, json } => {
            bench::pipeline::run(bench::pipeline::Options::new(corpus, keep, json)).await?
        }
        Cmd::BenchImport { mib, keep, json } => bench::import::run(mib, keep.as_deref(), json).await?,
        Cmd::BenchReport { conversations, keep, json } => {
            bench::report::run(&conversations, keep.as_deref(), json).await?
        }
        Cmd::BenchPartitions { corpus, per_day, peak, top, report_shards, json } => {
            let corpus = bench::pipeline::Options::new(corpus, None, json);
            let o = bench::partitions::Options { corpus, per_day, peak, top, report_shards };
            bench::partitions::run(o).await?
        }
        Cmd::BenchChat { visitors, seconds, interval_ms, json } => {
            bench::chat::run(visitors, seconds, interval_ms, json).await?
        }
        Cmd::BenchWeb { conversations, keep, json } => {
            bench::web::run(conversations, keep.as_deref(), json).await?
        }
        Cmd::Apply { file, stack, json } => apply::run(data, stack.as_deref(), &file, json).await?,
        Cmd::Report { from, to, inbox, tz, now, json } => {
            report::run(data, report::Options { from, to, inbox, tz, now, json }).await?
        }
        Cmd::Close { id, by, at } => report::set_status(data, &id, true, by.as_deref(), at).await?,
        Cmd::Reopen { id } => report::set_status(data, &id, false, None, None).await?,
        Cmd::Sweep { now } => listing::sweep(data, now).await?,
        Cmd::Replay { since, inbox, stage, dry_run, json } => {
            listing::replay(data, &since, inbox, &stage, dry_run, json).await?
        }
        Cmd::Form { cmd: FormCmd::Secret { form_id } } => listing::form_secret(data, &form_id).await?,
        Cmd::Events { cmd: EventsCmd::Secret } => listing::events_secret(data)?,
        Cmd::Events { cmd: EventsCmd::Relay } => listing::events_relay(data).await?,
        Cmd::Conversations { json } => listing::conversations(data, json).await?,
        Cmd::Stats { json } => listing::stats(data, json).await?,
    }
    Ok(())
}
