//! Mailroom's domain types and pure logic: no I/O, no AWS crates.

pub mod auth_results;
pub mod calendar;
pub mod classify;
pub mod crm;
pub mod crm_log;
pub mod envelope;
pub mod html;
pub mod ids;
pub mod ingest;
pub mod mbox;
pub mod message;
pub mod placeholder;
pub mod quote;
pub mod repair;
pub mod routing;
pub mod signed;
pub mod subject;
pub mod workspace;

pub use calendar::Calendar;
pub use envelope::Envelope;
pub use ids::{EmailAddress, InvalidAddress, Sha256, sha256};
pub use ingest::{Folder, IngestPointer, raw_key};
pub use message::{Attachment, Mailbox, ParseError, ParsedMessage, Understood, text_body, understand};
pub use signed::{SignedRef, ThreadSigner};
