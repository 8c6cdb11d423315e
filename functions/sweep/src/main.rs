//! `mailroom-sweep`: the scheduled sweep (every 5 minutes in the template). Writes one
//! `sla_breached` event per conversation whose SLA deadline passed, and publishes the
//! gauges (open, unassigned, stale, SLA due and breached) as CloudWatch embedded metrics.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom_app::{Ports, runtime::config::AwsConfig, runtime::telemetry};
use mailroom_store::aws::AwsClients;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(true, "info");
    let clients = AwsClients::from_env().await;
    mailroom_app::runtime::config::load_secrets(&clients).await?;
    let cfg = AwsConfig::from_env(false)?;
    let ports = Ports::aws(&clients, &cfg);
    lambda_runtime::run(service_fn(move |_ev: LambdaEvent<serde_json::Value>| {
        let ports = ports.clone();
        async move {
            let out = mailroom_app::reports::scheduled(&ports, chrono::Utc::now()).await?;
            Ok::<_, Error>(serde_json::to_value(out)?)
        }
    }))
    .await
}
