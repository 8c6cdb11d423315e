//! The `Secrets` port: encryption of the small secrets Mailroom keeps (OAuth tokens, IMAP
//! passwords). The table stores only what `seal` returns. Each secret is bound to a
//! context (the inbox and the secret's name), so a sealed value copied onto another inbox
//! does not open there.

use crate::error::{Result, StoreError};
use async_trait::async_trait;

#[async_trait]
pub trait Secrets: Send + Sync {
    async fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>>;
    async fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>>;
}

/// Local secrets: ChaCha20-Poly1305 with a 32-byte key file of the data directory, the
/// context as associated data. The RustCrypto AEAD is used rather than anything hand-made.
pub struct LocalSecrets {
    cipher: chacha20poly1305::ChaCha20Poly1305,
}

const LOCAL_TAG: &[u8] = b"mrs1";

impl LocalSecrets {
    pub fn new(key: &[u8]) -> Result<LocalSecrets> {
        use chacha20poly1305::KeyInit;
        let key: [u8; 32] = key
            .get(..32)
            .and_then(|k| k.try_into().ok())
            .ok_or_else(|| StoreError::Backend("secrets key is shorter than 32 bytes".into()))?;
        Ok(LocalSecrets { cipher: chacha20poly1305::ChaCha20Poly1305::new(&key.into()) })
    }
}

#[async_trait]
impl Secrets for LocalSecrets {
    async fn seal(&self, context: &str, plain: &[u8]) -> Result<Vec<u8>> {
        use chacha20poly1305::aead::{Aead, Payload};
        let nonce: [u8; 12] = rand::random();
        let ct = self
            .cipher
            .encrypt(&nonce.into(), Payload { msg: plain, aad: context.as_bytes() })
            .map_err(|_| StoreError::Backend("sealing a secret failed".into()))?;
        let mut out = Vec::with_capacity(LOCAL_TAG.len() + nonce.len() + ct.len());
        out.extend_from_slice(LOCAL_TAG);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    async fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        use chacha20poly1305::aead::{Aead, Payload};
        let rest = sealed
            .strip_prefix(LOCAL_TAG)
            .filter(|r| r.len() > 12)
            .ok_or_else(|| StoreError::Backend("not a locally sealed secret".into()))?;
        let (nonce, ct) = rest.split_at(12);
        let nonce: [u8; 12] = nonce.try_into().map_err(StoreError::backend)?;
        self.cipher.decrypt(&nonce.into(), Payload { msg: ct, aad: context.as_bytes() }).map_err(|_| {
            StoreError::Backend(format!(
                "secret for {context} does not open with this data directory's key (secrets.key replaced, or the value was moved)"
            ))
        })
    }
}
