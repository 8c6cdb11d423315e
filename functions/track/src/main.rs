//! `mailroom-track`: the open pixel and click redirect (`mailroom_app::outbound::track`) behind API
//! Gateway's HTTP API. Checks the token's signature, records the hit in the table and
//! answers the GIF or the 302; no queue, no S3.

use lambda_http::Error;
use mailroom_app::runtime::config::AwsConfig;
use mailroom_app::{Ports, outbound::track, runtime::telemetry};
use mailroom_store::aws::AwsClients;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(true, "info");
    let clients = AwsClients::from_env().await;
    mailroom_app::runtime::config::load_secrets(&clients).await?;
    let cfg = AwsConfig::from_env(false)?;
    lambda_http::run(track::router(Ports::aws(&clients, &cfg))).await
}
