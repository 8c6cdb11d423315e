//! `mailroom-mailbox-sync`: consumes the sync queue. Each request names a Gmail or
//! Microsoft 365 mailbox; the sync reads what is new since its cursor, writes each raw
//! message to S3 and its pointer to the ingest queue. Failed requests are reported as
//! batch item failures and retried; a mailbox is synced by one invocation at a time
//! (the connection's lease).

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom_app::mailbox::sync::SyncHandler;
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
    let public_url = std::env::var("MAILROOM_PUBLIC_URL").unwrap_or_default();
    let providers = Arc::new(ProvidersConfig::from_env(&public_url)?);
    let handler = Arc::new(SyncHandler { ports: Ports::aws(&clients, &cfg), cfg: providers });
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handle_sqs_event(handler.as_ref(), ev.payload).await) }
    }))
    .await
}
