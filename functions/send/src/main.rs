//! `mailroom-send`: the consumer of the send queue (replies through Gmail, Graph or SMTP). SQS batches with partial batch failure reporting; the
//! runner and the start are `mailroom_app::runtime::lambda`'s.

use mailroom_app::runtime::lambda;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let init = lambda::init(true).await?;
    if init.cfg.send_queue_url.is_none() {
        return Err("MAILROOM_SEND_QUEUE_URL is not set (the SAM template sets it)".into());
    }
    let mut handler = mailroom_app::outbound::send::SendHandler::new(init.ports, lambda::providers()?);
    // Replies delivered in a live chat are pushed to the visitor's WebSocket connections.
    if let Some(push) = mailroom_app::chat::push::ApiGatewayPush::from_env().await {
        handler = handler.with_chat_push(Arc::new(push));
    }
    lambda::run_sqs(Arc::new(handler)).await
}
