//! `mailroom-scheduler` (every 15 minutes in the template): renews Gmail watches and
//! Graph subscriptions, queues a fallback sync per push mailbox and publishes the
//! connection health gauges.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom_app::runtime::config::{AwsConfig, ProvidersConfig};
use mailroom_app::{Ports, mailbox::schedule, runtime::telemetry};
use mailroom_store::aws::AwsClients;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(true, "info");
    let clients = AwsClients::from_env().await;
    mailroom_app::runtime::config::load_secrets(&clients).await?;
    let cfg = AwsConfig::from_env(false)?;
    let public_url = std::env::var("MAILROOM_PUBLIC_URL").unwrap_or_default();
    let providers = Arc::new(ProvidersConfig::from_env(&public_url)?);
    let ports = Ports::aws(&clients, &cfg);
    lambda_runtime::run(service_fn(move |_ev: LambdaEvent<serde_json::Value>| {
        let (ports, providers) = (ports.clone(), providers.clone());
        async move {
            let out = schedule::connections_tick(&ports, &providers, chrono::Utc::now()).await?;
            Ok::<_, Error>(serde_json::to_value(out)?)
        }
    }))
    .await
}
