//! Mailroom's domain types and pure logic: no I/O, no AWS crates.

pub mod envelope;
pub mod ids;
pub mod ingest;
pub mod mbox;

pub use envelope::Envelope;
pub use ids::{EmailAddress, InvalidAddress, Sha256, sha256};
pub use ingest::{Folder, IngestPointer, raw_key};
