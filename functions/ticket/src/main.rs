//! `mailroom-ticket`: the consumer of the ticket queue (ticket automation: create,
//! reopen), SQS batches with partial batch failure reporting.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use mailroom_app::{Ports, TicketHandler, handle_sqs_event, runtime::config::AwsConfig, runtime::telemetry};
use mailroom_store::aws::AwsClients;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(true, "info");
    let clients = AwsClients::from_env().await;
    mailroom_app::runtime::config::load_secrets(&clients).await?;
    let cfg = AwsConfig::from_env(false)?;
    let handler = Arc::new(TicketHandler::new(Ports::aws(&clients, &cfg)));
    lambda_runtime::run(service_fn(move |ev: LambdaEvent<SqsEvent>| {
        let handler = handler.clone();
        async move { Ok::<_, Error>(handle_sqs_event(handler.as_ref(), ev.payload).await) }
    }))
    .await
}
