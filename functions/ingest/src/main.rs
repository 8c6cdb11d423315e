//! `mailroom-ingest`: takes raw messages handed over by importers and pollers, stores them
//! in S3 and queues them for the pipeline. Invoked directly with
//! `{"raw_base64": "...", "inbox": "support@example.com", "folder": "inbox"}`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom_app::pipeline::ingest::{IngestRequest, ingest_request};
use mailroom_app::{Ingestor, Ports, runtime::config::AwsConfig, runtime::telemetry};
use mailroom_store::aws::AwsClients;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(true, "info");
    let clients = AwsClients::from_env().await;
    mailroom_app::runtime::config::load_secrets(&clients).await?;
    let cfg = AwsConfig::from_env(true)?;
    let ingestor = Arc::new(Ingestor::new(Ports::aws(&clients, &cfg)));
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<IngestRequest>| {
        let ingestor = ingestor.clone();
        async move { ingest_request(&ingestor, ev.payload).await.map_err(Error::from) }
    }))
    .await
}
