//! `mailroom-imap-poll`: the scheduled IMAP poll (docs/connections.md). Each invocation
//! polls every IMAP inbox (or the one named by `{"inbox": ADDRESS}`), each under its
//! lease, and stops starting new batches well before the invocation's deadline, so a
//! timeout never loses work: every message's cursor is saved as it is stored.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom_app::mailbox::imap::{self, PollOptions};
use mailroom_app::{Ports, runtime::config::AwsConfig, runtime::telemetry};
use mailroom_store::aws::AwsClients;
use std::time::{Duration, SystemTime};

/// The time a run assumes it has when the invocation's deadline is unusable.
const FALLBACK_REMAINING: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(true, "info");
    // It stores raw mail and queues pointers (the ingest queue), and opens the sealed
    // passwords (the KMS key).
    let clients = AwsClients::from_env().await;
    mailroom_app::runtime::config::load_secrets(&clients).await?;
    let cfg = AwsConfig::from_env(true)?;
    if cfg.kms_key_id.is_none() {
        return Err(
            "MAILROOM_KMS_KEY_ID is not set: the IMAP poller needs the key that seals the mailbox passwords"
                .into(),
        );
    }
    let ports = Ports::aws(&clients, &cfg);
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<serde_json::Value>| {
        let ports = ports.clone();
        async move {
            let remaining = match ev.context.deadline().duration_since(SystemTime::now()) {
                Ok(r) if !r.is_zero() => r,
                // Lambda always sends a deadline in the future; local emulators may not
                // (cargo-lambda sends the timeout itself).
                _ => {
                    tracing::warn!(deadline_ms = ev.context.deadline, "the invocation deadline is not in the future; assuming 60 s");
                    FALLBACK_REMAINING
                }
            };
            let report = imap::scheduled(&ports, &ev.payload, &PollOptions::within(remaining)).await?;
            for i in &report.inboxes {
                tracing::info!(inbox = %i.inbox, outcome = ?i.outcome, fetched = i.fetched, stored = i.stored, skipped = i.skipped.len(), error = ?i.error, "IMAP poll");
            }
            Ok::<_, Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
