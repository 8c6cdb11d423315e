//! `mailroom-match`: the consumer of the ingest queue (parse, classify, thread, record). SQS batches with partial batch failure reporting; the
//! runner and the start are `mailroom_app::runtime::lambda`'s.

use mailroom_app::runtime::lambda;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let init = lambda::init(false).await?;
    lambda::run_sqs(Arc::new(mailroom_app::pipeline::matcher::MatchHandler::new(init.ports))).await
}
