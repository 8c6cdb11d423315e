//! `mailroom-mailbox-sync`: the consumer of the sync queue (Gmail history, Graph delta: new mail into raw/ and the ingest queue). SQS batches with partial batch failure reporting; the
//! runner and the start are `mailroom_app::runtime::lambda`'s.

use mailroom_app::runtime::lambda;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let init = lambda::init(true).await?;
    lambda::run_sqs(Arc::new(mailroom_app::mailbox::sync::SyncHandler {
        ports: init.ports,
        cfg: lambda::providers()?,
    }))
    .await
}
