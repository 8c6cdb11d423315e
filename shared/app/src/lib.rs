//! Mailroom's use cases: the handlers every function calls, written once against the
//! storage ports so that Lambda (AWS adapters) and `mailroom serve` (embedded adapters)
//! run the same code.

pub mod config;
pub mod consumer;
pub mod conversations;
pub mod ingest;
pub mod keys;
pub mod matcher;
pub mod ports;
pub mod stats;
pub mod telemetry;
pub mod thread;

pub use consumer::{MessageHandler, Worker, handle_sqs_event};
pub use ingest::{IngestError, IngestOutcome, Ingestor, RawMail};
pub use matcher::MatchHandler;
pub use ports::Ports;
