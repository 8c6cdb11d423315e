//! `Secrets` on AWS KMS: Encrypt/Decrypt with the stack's key, the context as KMS
//! encryption context (so CloudTrail shows which inbox's secret was opened).

use super::describe;
use crate::error::{Result, StoreError};
use crate::secrets::Secrets;
use async_trait::async_trait;
use aws_sdk_kms::primitives::Blob;

const CONTEXT_KEY: &str = "mailroom:secret";

pub struct KmsSecrets {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsSecrets {
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> KmsSecrets {
        KmsSecrets { client, key_id: key_id.into() }
    }
}

#[async_trait]
impl Secrets for KmsSecrets {
    async fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>> {
        crate::meter::record("kms", "Encrypt", 1.0, plain.len() as u64);
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(plain))
            .encryption_context(CONTEXT_KEY, context)
            .send()
            .await
            .map_err(|e| StoreError::Backend(format!("KMS Encrypt: {}", describe(&e))))?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| StoreError::Backend("KMS Encrypt returned no ciphertext".into()))
    }

    async fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        crate::meter::record("kms", "Decrypt", 1.0, sealed.len() as u64);
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(sealed))
            .encryption_context(CONTEXT_KEY, context)
            .send()
            .await
            .map_err(|e| {
                StoreError::Backend(format!("KMS Decrypt of the secret for {context}: {}", describe(&e)))
            })?;
        out.plaintext
            .map(Blob::into_inner)
            .ok_or_else(|| StoreError::Backend("KMS Decrypt returned no plaintext".into()))
    }
}

/// Stands in where no key is configured: every use says how to configure one.
pub struct NoSecrets;

#[async_trait]
impl Secrets for NoSecrets {
    async fn seal(&self, _: &str, _: &[u8]) -> Result<Vec<u8>> {
        Err(StoreError::Backend(
            "MAILROOM_KMS_KEY_ID is not set: this function cannot store mailbox credentials".into(),
        ))
    }
    async fn open(&self, _: &str, _: &[u8]) -> Result<Vec<u8>> {
        Err(StoreError::Backend(
            "MAILROOM_KMS_KEY_ID is not set: this function cannot read mailbox credentials".into(),
        ))
    }
}
