//! The command line: every subcommand and its arguments (clap). `main.rs` dispatches.

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
pub struct Cli {
    /// Data directory of the embedded storage.
    #[arg(long, global = true, env = "MAILROOM_DATA", default_value = "./.mailroom")]
    pub data: PathBuf,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
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
        /// Read an mbox from its start even where an interrupted import of it stopped
        /// (which it otherwise resumes from; what is already stored is skipped either way).
        #[arg(long)]
        restart: bool,
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
        #[command(flatten)]
        corpus: CorpusArgs,
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
    /// Re-run the route stage over stored history with today's rules: every routed
    /// conversation whose first message is dated SINCE or later gets today's team,
    /// priority, tags and pipeline, or with --stage log its messages today's logging
    /// decisions (docs/crm-and-routing.md, "Replay"). No notification goes out; one audit
    /// entry records the run.
    Replay {
        /// First day (YYYY-MM-DD, UTC) or instant (RFC 3339).
        #[arg(long)]
        since: String,
        /// Only conversations of this inbox.
        #[arg(long)]
        inbox: Option<String>,
        /// The stage to re-run: `route` (teams, priorities, pipelines) or `log` (where
        /// each message is logged on the CRM, by today's [logging] settings).
        #[arg(long, default_value = "route")]
        stage: String,
        /// Print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
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
    /// Print a one-time sign-in link to the web inbox for a workspace user (valid 15
    /// minutes, used once), for `mailroom serve` on this data directory (docs/web.md).
    LoginLink {
        /// The user's email (a `[[users]]` entry of the applied workspace).
        user: String,
        /// The address the browser reaches `mailroom serve` at.
        #[arg(long, env = "MAILROOM_PUBLIC_URL", default_value = "http://127.0.0.1:3000")]
        url: String,
    },
    /// Print the API's OpenAPI document (JSON).
    Openapi,
    /// Benchmark: `mailroom import` of a generated mbox of MIB MiB, killed half-way and
    /// resumed: peak memory of each run (target: 200 MiB at any size), throughput, and that
    /// every message was stored once (docs/performance.md).
    BenchImport {
        #[arg(long, default_value_t = 2048)]
        mib: u64,
        /// Keep the mbox and the data directory in this directory.
        #[arg(long)]
        keep: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
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
    /// Benchmark: the pipeline's writes per DynamoDB partition key, and which partitions
    /// pass 1,000 write units a second first at PER_DAY messages a day with a peak of
    /// PEAK times the average (docs/scale.md).
    BenchPartitions {
        #[command(flatten)]
        corpus: CorpusArgs,
        #[arg(long, default_value_t = 10_000_000.0)]
        per_day: f64,
        #[arg(long, default_value_t = 10.0)]
        peak: f64,
        #[arg(long, default_value_t = 25)]
        top: usize,
        /// The workspace's `[reports] shards` for the run (partitions per inbox and day of
        /// the report buckets; absent: the workspace's own).
        #[arg(long)]
        report_shards: Option<u8>,
        #[arg(long)]
        json: bool,
    },
    /// Benchmark: the live chat under `mailroom serve`: N visitors over WebSockets, each
    /// sending a line every INTERVAL_MS for SECONDS, and one agent's page (docs/chat.md).
    BenchChat {
        #[arg(long, default_value_t = 200)]
        visitors: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 4000)]
        interval_ms: u64,
        #[arg(long)]
        json: bool,
    },
    /// Benchmark: the web inbox's pages (list, search, conversation) with N conversations
    /// stored besides the demo mailbox (embedded storage; docs/performance.md).
    BenchWeb {
        #[arg(long, default_value_t = 100_000)]
        conversations: u32,
        /// Keep the data directory in DIR.
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
        /// Write to the deployed stack of this name (its table, found from its
        /// CloudFormation outputs with your AWS credentials) instead of --data.
        #[arg(long)]
        stack: Option<String>,
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
pub enum FormCmd {
    /// Make a new secret for a form of the workspace and print it (the old one stops
    /// working).
    Secret { form_id: String },
}

#[derive(Subcommand)]
pub enum EventsCmd {
    /// Print the key that signs event webhooks (X-Mailroom-Signature).
    Secret,
    /// Deliver pending events to MAILROOM_EVENT_WEBHOOKS and send notifications once.
    Relay,
}

#[derive(Subcommand)]
pub enum InboxCmd {
    /// Connect an inbox over IMAP: checks the login, then stores the settings and the
    /// password (encrypted). Connecting again (a new password) keeps the sync position
    /// when the server and user are the same.
    ConnectImap(ConnectImapArgs),
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
    /// Send a test email to the inbox and follow it through the whole path (received,
    /// threaded, logged, routed, ticket, reply, Sent copy), running the pipeline here;
    /// each step pass, fail or waiting with the reason. Exit status 1 when a step fails.
    Verify {
        /// The inbox address.
        address: String,
        /// The admin the reply is sent as (default: the workspace's first admin).
        #[arg(long = "as")]
        by: Option<String>,
        /// Seconds a step may wait (default MAILROOM_VERIFY_WAIT_SECONDS, 180).
        #[arg(long)]
        wait: Option<u64>,
        #[arg(long)]
        json: bool,
    },
    /// Each connection's health (state, last success and error, lag, failures) and sync
    /// cursors.
    Status {
        #[arg(long)]
        json: bool,
    },
}

/// `mailroom inbox connect-imap`.
#[derive(clap::Args)]
pub struct ConnectImapArgs {
    /// The inbox address (support@acme.example).
    pub address: String,
    #[arg(long)]
    pub host: String,
    /// Default: 993 with tls, 143 otherwise.
    #[arg(long)]
    pub port: Option<u16>,
    /// tls (implicit, port 993), starttls (port 143) or none (tests, trusted networks).
    #[arg(long, default_value = "tls")]
    pub security: mailroom_app::mailbox::imap::Security,
    /// The login name.
    #[arg(long)]
    pub user: String,
    /// The environment variable that holds the password (never the password itself).
    #[arg(long)]
    pub password_env: String,
    /// How many days back the first poll reads.
    #[arg(long, default_value_t = mailroom_app::mailbox::imap::DEFAULT_BACKFILL_DAYS)]
    pub backfill_days: u32,
    /// A PEM file with the CA certificate(s) to trust besides the public roots.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// The SMTP server replies are sent through (same password; without it the inbox
    /// cannot send replies).
    #[arg(long)]
    pub smtp_host: Option<String>,
    /// Default: 465 with tls, 587 with starttls, 25 with none.
    #[arg(long, requires = "smtp_host")]
    pub smtp_port: Option<u16>,
    /// tls (implicit), starttls or none (tests, trusted networks).
    #[arg(long, default_value = "starttls", requires = "smtp_host")]
    pub smtp_security: mailroom_app::mailbox::imap::SmtpSecurity,
    /// The SMTP login, when it is not the IMAP one.
    #[arg(long, requires = "smtp_host")]
    pub smtp_user: Option<String>,
    /// Do not APPEND sent replies to the Sent folder (for servers that file submitted
    /// mail themselves, such as Gmail and Microsoft 365).
    #[arg(long, requires = "smtp_host")]
    pub no_sent_append: bool,
    /// Allow a server on a loopback, link-local or private address (a mail server on
    /// this machine or its network; the API allows it only with the workspace's
    /// `[security] allow_private_mail_hosts`).
    #[arg(long)]
    pub allow_private_host: bool,
    /// The folder sent mail is read from, when the server marks none `\Sent` (it must
    /// exist).
    #[arg(long)]
    pub sent_folder: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// The corpus and workspace a benchmark runs on (`bench`, `bench-partitions`).
#[derive(clap::Args, Debug)]
pub struct CorpusArgs {
    /// Conversations to generate (ignored with --corpus).
    #[arg(long, default_value_t = 1000)]
    pub conversations: u32,
    #[arg(long, default_value_t = 7)]
    pub seed: u32,
    /// Use this corpus (a gen_corpus.py output directory, or any folder of .eml files)
    /// instead of generating one.
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// gen_corpus.py to generate with (default: $MAILROOM_GEN_CORPUS, then
    /// ../shared/tools/gen_corpus.py).
    #[arg(long)]
    pub generator: Option<PathBuf>,
    /// Workspace to apply first (default: the built-in examples/acme-corp.toml).
    #[arg(long)]
    pub workspace: Option<PathBuf>,
}
