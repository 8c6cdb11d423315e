//! Storage ports and their two adapters.
//!
//! Every port (`BlobStore`, `Queue`, `Table`, `Clock`, `Secrets`) has an AWS adapter (S3, SQS,
//! DynamoDB) and an embedded adapter (files + SQLite) so that the same use cases run in
//! Lambda and in `mailroom serve`. One contract test suite (tests/) runs against both.

pub mod aws;
pub mod blob;
pub mod clock;
pub mod embedded;
pub mod error;
pub mod meter;
pub mod queue;
pub mod secrets;
pub mod table;

pub use blob::{BlobStore, PutOutcome};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::StoreError;
pub use queue::{Queue, QueueMessage};
pub use secrets::{LocalSecrets, Secrets};
pub use table::{Cond, Item, Key, Page, Query, SkCond, Table, TransactOp, Update};
