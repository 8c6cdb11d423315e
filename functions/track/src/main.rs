//! `mailroom-track`: the open pixel and click redirect (`mailroom_app::track`) behind API
//! Gateway's HTTP API. Checks the token's signature, records the hit in the table and
//! answers the GIF or the 302; no queue, no S3.

use lambda_http::Error;
use mailroom_app::config::AwsConfig;
use mailroom_app::{Ports, telemetry, track};
use mailroom_store::aws::AwsClients;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(true, "info");
    let clients = AwsClients::from_env().await;
    mailroom_app::config::load_secrets(&clients).await?;
    let cfg = AwsConfig::from_env(false)?;
    lambda_http::run(track::router(Ports::aws(&clients, &cfg))).await
}
