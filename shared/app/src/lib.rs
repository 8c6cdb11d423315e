//! Mailroom's use cases: the handlers every function calls, written once against the
//! storage ports so that Lambda (AWS adapters) and `mailroom serve` (embedded adapters)
//! run the same code.

pub mod api;
pub mod config;
pub mod connections;
pub mod consumer;
pub mod conversations;
pub mod crm;
pub mod events;
pub mod forms;
pub mod gmail;
pub mod graph;
pub mod imap_poll;
pub mod ingest;
pub mod keys;
pub mod load;
pub mod matcher;
pub mod notify;
pub mod oauth;
pub mod ports;
pub mod reports;
pub mod route;
pub mod schedule;
pub mod send;
pub mod stats;
pub mod sync;
pub mod telemetry;
pub mod thread;
pub mod ticket;
pub mod track;
pub mod web;
pub mod workspace_store;

pub use consumer::{MessageHandler, Stages, Worker, handle_sqs_event};
pub use ingest::{IngestError, IngestOutcome, Ingestor, RawMail};
pub use matcher::MatchHandler;
pub use ports::Ports;
pub use route::RouteHandler;
pub use ticket::TicketHandler;
