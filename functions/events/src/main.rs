//! `mailroom-events` (every minute in the template): follows the event feed, publishes
//! each event to the EventBridge bus `MAILROOM_EVENT_BUS` and sends the notification
//! emails through SES from `MAILROOM_NOTIFY_FROM` (docs/events.md).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom_app::outbound::relay::Relay;
use mailroom_app::runtime::config::AwsConfig;
use mailroom_app::{Ports, runtime::telemetry};
use mailroom_store::aws::AwsClients;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(true, "info");
    let clients = AwsClients::from_env().await;
    mailroom_app::runtime::config::load_secrets(&clients).await?;
    let cfg = AwsConfig::from_env(false)?;
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ports = Ports::aws(&clients, &cfg);
    let relay = Arc::new(Relay::aws_from_env(&conf));
    lambda_runtime::run(service_fn(move |_ev: LambdaEvent<serde_json::Value>| {
        let (ports, relay) = (ports.clone(), relay.clone());
        async move {
            let out = relay.run_once(&ports, chrono::Utc::now()).await;
            // A consumer that stopped short is retried next minute from its cursor (what
            // the others delivered stays delivered). The run still counts as failed, so
            // the EventsErrorsAlarm sees a webhook, EventBridge or SES that keeps failing.
            let failed: Vec<String> =
                out.iter().filter_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.consumer))).collect();
            if !failed.is_empty() {
                return Err(Error::from(format!("event consumers stopped short: {}", failed.join("; "))));
            }
            Ok::<_, Error>(serde_json::to_value(out)?)
        }
    }))
    .await
}
