//! `mailroom-chat`: the chat widget's WebSocket routes behind API Gateway's WebSocket API
//! (`mailroom_app::live::gateway`). A visitor's line is stored and queued for the pipeline
//! like mail; answers go back through the management API (`MAILROOM_CHAT_ENDPOINT`).

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom_app::chat::push::ApiGatewayPush;
use mailroom_app::runtime::lambda;
use mailroom_app::{Ingestor, live::gateway};
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let init = lambda::init(true).await?;
    let push = ApiGatewayPush::from_env().await.ok_or(
        "MAILROOM_CHAT_ENDPOINT is not set (the SAM template sets it to the WebSocket API's stage URL)",
    )?;
    let state = Arc::new((Ingestor::new(init.ports.clone()), init.ports, push));
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
        let state = state.clone();
        async move {
            let (ingestor, ports, push) = state.as_ref();
            let r = gateway::handle(ports, ingestor, push, ev.payload).await;
            let _ = ports.flush();
            r.map_err(|e| {
                tracing::error!(error = %format!("{e:#}"), "chat event failed");
                Error::from(format!("{e:#}"))
            })
        }
    }))
    .await
}
