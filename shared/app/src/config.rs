//! Configuration of the Lambda functions, read once at start from the environment.

use thiserror::Error;

#[derive(Debug, Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub bucket: String,
    pub table: String,
    /// Only the functions that enqueue need it.
    pub ingest_queue_url: Option<String>,
    /// `MAILROOM_ROUTE_QUEUE_URL` (the match function sends to it) and
    /// `MAILROOM_TICKET_QUEUE_URL` (the route function sends to it).
    pub route_queue_url: Option<String>,
    pub ticket_queue_url: Option<String>,
    /// `MAILROOM_THREAD_KEY`: the secret that signs our thread ids (the template resolves it
    /// from Secrets Manager).
    pub thread_key: Vec<u8>,
    /// `MAILROOM_KMS_KEY_ID`: the stack's key that encrypts mailbox credentials; only the
    /// functions that read or store them have it.
    pub kms_key_id: Option<String>,
}

fn var(name: &str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(ConfigError(format!("{name} is not set (the SAM template sets it for every function)"))),
    }
}

impl AwsConfig {
    pub fn from_env(needs_ingest_queue: bool) -> Result<AwsConfig, ConfigError> {
        Ok(AwsConfig {
            bucket: var("MAILROOM_BUCKET")?,
            table: var("MAILROOM_TABLE")?,
            ingest_queue_url: if needs_ingest_queue { Some(var("MAILROOM_INGEST_QUEUE_URL")?) } else { None },
            thread_key: var("MAILROOM_THREAD_KEY")?.into_bytes(),
            route_queue_url: var("MAILROOM_ROUTE_QUEUE_URL").ok(),
            ticket_queue_url: var("MAILROOM_TICKET_QUEUE_URL").ok(),
            kms_key_id: var("MAILROOM_KMS_KEY_ID").ok(),
        })
    }
}
