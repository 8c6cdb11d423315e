//! The event bus on Amazon EventBridge (`PutEvents`, ten entries a call).

use crate::StoreError;
use crate::outbox::{BusEvent, EventBus};
use async_trait::async_trait;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

pub struct EventBridgeBus {
    pub client: aws_sdk_eventbridge::Client,
    pub bus: String,
}

#[async_trait]
impl EventBus for EventBridgeBus {
    fn name(&self) -> &str {
        "eventbridge"
    }

    async fn publish(&self, events: &[BusEvent]) -> (usize, Option<StoreError>) {
        let mut done = 0;
        for chunk in events.chunks(10) {
            let entries = chunk
                .iter()
                .map(|e| {
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(&e.source)
                        .detail_type(&e.detail_type)
                        .detail(&e.detail)
                        .set_time(e.time.map(|t| {
                            aws_sdk_eventbridge::primitives::DateTime::from_millis(t.timestamp_millis())
                        }))
                        .build()
                })
                .collect();
            match self.client.put_events().set_entries(Some(entries)).send().await {
                Ok(r) => {
                    // Partial failure: the entries answer in order; the first failed one and
                    // everything after it go again next time.
                    if let Some(i) = r.entries().iter().position(|x| x.error_code().is_some()) {
                        let x = &r.entries()[i];
                        let why = format!(
                            "EventBridge refused an event: {} {}",
                            x.error_code().unwrap_or_default(),
                            x.error_message().unwrap_or_default()
                        );
                        return (done + i, Some(StoreError::Backend(why)));
                    }
                    done += chunk.len();
                }
                Err(e) => {
                    return (
                        done,
                        Some(StoreError::Backend(format!("EventBridge PutEvents: {}", super::describe(&e)))),
                    );
                }
            }
        }
        (done, None)
    }
}
