//! The SMTP sink of the notification tests: the same aiosmtpd harness as the replies' tests.

pub use crate::smtp::SmtpSink;
