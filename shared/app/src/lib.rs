//! Mailroom's use cases: the handlers every function calls, written once against the
//! storage ports so that Lambda (AWS adapters) and `mailroom serve` (embedded adapters)
//! run the same code.

pub mod access;
pub mod api;
pub mod chat;
pub mod conversations;
pub mod feed;
pub mod forms;
pub mod keys;
pub mod live;
pub mod load;
pub mod mailbox;
pub mod outbound;
pub mod pipeline;
pub mod records;
pub mod replay;
pub mod reports;
pub mod runtime;
pub mod thread;
pub mod tickets;
pub mod verify;
pub mod views;
pub mod web;
pub mod workspace;

#[cfg(test)]
mod layers;

pub use pipeline::Stages;
pub use pipeline::ingest::{IngestError, IngestOutcome, Ingestor, RawMail};
pub use pipeline::matcher::MatchHandler;
pub use pipeline::route::RouteHandler;
pub use pipeline::ticket::TicketHandler;
pub use runtime::consumer::{MessageHandler, Worker, handle_sqs_event};
pub use runtime::ports::Ports;
