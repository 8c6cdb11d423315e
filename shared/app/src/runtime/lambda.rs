//! What every Lambda function does at start, once: logs, AWS clients, the configuration
//! secrets (read from Secrets Manager), the storage ports. And the one SQS runner the
//! queue-consuming functions share: a function's `main` names its handler and nothing
//! else (the shape of aws-lambda-rust-runtime's partial-batch-failure example).

use crate::runtime::config::{AwsConfig, ConfigError, ProvidersConfig, load_secrets};
use crate::runtime::consumer::{MessageHandler, handle_sqs_event};
use crate::runtime::ports::Ports;
use crate::runtime::telemetry;
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom_store::aws::AwsClients;
use std::sync::Arc;

/// What a function starts with.
pub struct Init {
    pub clients: AwsClients,
    pub cfg: AwsConfig,
    pub ports: Ports,
}

/// Logs (JSON), AWS clients, secrets, configuration and ports; `needs_ingest_queue` for the
/// functions that store mail (the ingest queue URL is then required).
pub async fn init(needs_ingest_queue: bool) -> Result<Init, ConfigError> {
    telemetry::init(true, "info");
    let clients = AwsClients::from_env().await;
    load_secrets(&clients).await?;
    let cfg = AwsConfig::from_env(needs_ingest_queue)?;
    let ports = Ports::aws(&clients, &cfg);
    Ok(Init { clients, cfg, ports })
}

/// The providers' configuration (`MAILROOM_PUBLIC_URL` and the OAuth clients).
pub fn providers() -> Result<Arc<ProvidersConfig>, ConfigError> {
    let public_url = std::env::var("MAILROOM_PUBLIC_URL").unwrap_or_default();
    Ok(Arc::new(ProvidersConfig::from_env(&public_url)?))
}

/// Runs `handler` over SQS batches, reporting each failed message (the function's event
/// source has `ReportBatchItemFailures`), until the runtime stops.
pub async fn run_sqs(handler: Arc<dyn MessageHandler>) -> Result<(), Error> {
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handle_sqs_event(handler.as_ref(), ev.payload).await) }
    }))
    .await
}
