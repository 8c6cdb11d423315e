//! Storage ports and their two adapters.
//!
//! Every port (`BlobStore`, `Queue`, `Table`, `Clock`, `Secrets`, `EventBus`, `MailSender`)
//! has an AWS adapter (S3, SQS, DynamoDB, KMS, EventBridge, SES) and a local one (files,
//! SQLite, a spool file, SMTP) so that the same use cases run in
//! Lambda and in `mailroom serve`. One contract test suite (tests/) runs against both.

pub mod aws;
pub mod blob;
pub mod clock;
pub mod embedded;
pub mod error;
pub mod meter;
pub mod outbox;
pub mod queue;
pub mod secrets;
pub mod table;

pub use blob::{BlobStore, PutOutcome};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::StoreError;
pub use outbox::{BusEvent, EventBus, MailSender};
pub use queue::{Queue, QueueMessage};
pub use secrets::{LocalSecrets, Secrets};
pub use table::{Cond, Item, Key, Page, Query, SkCond, Table, TransactOp, Update};
