use thiserror::Error;

/// What a storage call can fail with. `ConditionFailed` and `TransactionCanceled` are
/// expected outcomes of optimistic concurrency, not faults: callers branch on them.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("condition failed")]
    ConditionFailed,
    /// A transact write was rejected as a whole; one reason per operation, `None` where
    /// that operation was not the cause.
    #[error("transaction canceled: {reasons:?}")]
    TransactionCanceled { reasons: Vec<Option<String>> },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The backend failed (network, throttling, disk); the caller may retry.
    #[error("storage backend error: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn backend(e: impl std::fmt::Display) -> Self {
        StoreError::Backend(e.to_string())
    }
}

#[cfg(feature = "sqlite")]
impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(format!("sqlite: {e}"))
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Backend(format!("io: {e}"))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
