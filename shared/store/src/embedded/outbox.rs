//! The local adapters of the outbound ports: the event bus as a JSON-lines spool file
//! (`DATA/events.jsonl`, what would go to EventBridge), and mail by SMTP (lettre).

use crate::StoreError;
use crate::outbox::{BusEvent, EventBus, MailSender};
use async_trait::async_trait;
use std::io::Write;
use std::path::PathBuf;

pub struct SpoolBus {
    pub path: PathBuf,
}

#[async_trait]
impl EventBus for SpoolBus {
    fn name(&self) -> &str {
        "spool"
    }

    async fn publish(&self, events: &[BusEvent]) -> (usize, Option<StoreError>) {
        let open = std::fs::OpenOptions::new().create(true).append(true).open(&self.path);
        let mut f = match open {
            Ok(f) => f,
            Err(e) => return (0, Some(e.into())),
        };
        for (i, e) in events.iter().enumerate() {
            let line = match serde_json::to_string(e) {
                Ok(l) => l,
                Err(err) => return (i, Some(StoreError::backend(err))),
            };
            if let Err(err) = writeln!(f, "{line}") {
                return (i, Some(err.into()));
            }
        }
        (events.len(), None)
    }
}

/// SMTP submission from a URL (`smtp://host:port`, `smtps://user:pass@host`).
pub struct SmtpSender {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
}

impl SmtpSender {
    pub fn new(url: &str) -> Result<SmtpSender, StoreError> {
        let transport = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
            .map_err(|e| StoreError::Invalid(format!("{url:?} is not an SMTP URL: {e}")))?
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build();
        Ok(SmtpSender { transport })
    }
}

#[async_trait]
impl MailSender for SmtpSender {
    async fn send_raw(&self, from: &str, to: &[String], raw: &[u8]) -> Result<(), StoreError> {
        use lettre::AsyncTransport;
        let parse = |a: &str| {
            a.parse::<lettre::Address>().map_err(|e| StoreError::Invalid(format!("address {a:?}: {e}")))
        };
        let envelope = lettre::address::Envelope::new(
            Some(parse(from)?),
            to.iter().map(|t| parse(t)).collect::<Result<_, _>>()?,
        )
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.transport
            .send_raw(&envelope, raw)
            .await
            .map_err(|e| StoreError::Backend(format!("SMTP: {e}")))?;
        Ok(())
    }
}
