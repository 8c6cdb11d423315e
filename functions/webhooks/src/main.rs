//! `mailroom-webhooks`: the connection routes (`mailroom_app::mailbox::routes`) behind API Gateway's
//! HTTP API. Verifies, enqueues a sync request and answers: the provider work runs in
//! `mailroom-mailbox-sync`, so Graph's 3 s budget holds.

use lambda_http::Error;
use mailroom_app::runtime::config::{AwsConfig, ProvidersConfig};
use mailroom_app::{Ports, mailbox::routes, runtime::telemetry};
use mailroom_store::aws::AwsClients;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(true, "info");
    // The ingest queue: form submissions are ingested like mail.
    let clients = AwsClients::from_env().await;
    mailroom_app::runtime::config::load_secrets(&clients).await?;
    let cfg = AwsConfig::from_env(true)?;
    if cfg.sync_queue_url.is_none() {
        return Err("MAILROOM_SYNC_QUEUE_URL is not set (the SAM template sets it)".into());
    }
    let public_url = std::env::var("MAILROOM_PUBLIC_URL")
        .map_err(|_| "MAILROOM_PUBLIC_URL is not set (the SAM template sets it to the HTTP API's URL)")?;
    let providers = ProvidersConfig::from_env(&public_url)?;
    let ports = Ports::aws(&clients, &cfg);
    let state = Arc::new(routes::WebState::new(ports, providers)?);
    let ports = state.ports.clone();
    let app = routes::router(state).merge(mailroom_app::forms::router(ports));
    lambda_http::run(mailroom_app::runtime::http::with_problem_fallbacks(app)).await
}
