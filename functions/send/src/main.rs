//! `mailroom-send`: consumes the send queue. Each message names one outbox entry (a
//! reply the API queued, its MIME already composed and stored); the handler sends it
//! through the inbox's provider, records the outcome, and hands the sent MIME to the
//! ingest queue as the inbox's Sent copy. Failed entries are reported as batch item
//! failures and retried; a redelivered entry that was sent sends nothing.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom_app::outbound::send::SendHandler;
use mailroom_app::runtime::config::{AwsConfig, ProvidersConfig};
use mailroom_app::{Ports, handle_sqs_event, runtime::telemetry};
use mailroom_store::aws::AwsClients;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(true, "info");
    let clients = AwsClients::from_env().await;
    mailroom_app::runtime::config::load_secrets(&clients).await?;
    let cfg = AwsConfig::from_env(true)?;
    if cfg.send_queue_url.is_none() {
        return Err("MAILROOM_SEND_QUEUE_URL is not set (the SAM template sets it)".into());
    }
    let public_url = std::env::var("MAILROOM_PUBLIC_URL").unwrap_or_default();
    let providers = Arc::new(ProvidersConfig::from_env(&public_url)?);
    let handler = Arc::new(SendHandler::new(Ports::aws(&clients, &cfg), providers));
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handle_sqs_event(handler.as_ref(), ev.payload).await) }
    }))
    .await
}
