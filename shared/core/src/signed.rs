//! Our own signed thread identifier. Every message Mailroom sends carries a Message-ID
//! `<mr.{conversation}.{nonce}.{sig}@{domain}>` and the body marker `[mr:{conversation}.{nonce}.{sig}]`,
//! where `sig` is HMAC-SHA256(key, conversation || nonce) truncated to 128 bits. A reply
//! that references it joins that conversation before any other rule; a forged or altered
//! id fails the check and is treated as an ordinary unknown id (FreeScout's advisory
//! GHSA-6r38-6mcf-2ww3 was about exactly such forged ids).
//!
//! The inbox is not in the signed text: a conversation belongs to one workspace (one key)
//! and can move between inboxes when it is re-routed, so signing the conversation keeps
//! old replies valid after a move.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Signs and checks thread identifiers with the workspace's secret key.
#[derive(Clone)]
pub struct ThreadSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for ThreadSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ThreadSigner(..)")
    }
}

/// A verified reference to one of our conversations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRef {
    pub conversation: String,
    pub nonce: String,
}

impl ThreadSigner {
    pub fn new(key: impl Into<Vec<u8>>) -> ThreadSigner {
        ThreadSigner { key: key.into() }
    }

    fn sig(&self, conversation: &str, nonce: &str) -> String {
        // new_from_slice accepts keys of any length; an empty key is refused upstream.
        let mut mac = match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => return String::new(),
        };
        mac.update(conversation.as_bytes());
        mac.update(b"\0");
        mac.update(nonce.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// A signature of `text` for one purpose (an OAuth state, a tracking URL), with the same
    /// key: the purpose separates the domains, so a signature made for one is worthless
    /// for another. Hex of the full HMAC-SHA256.
    pub fn sign(&self, purpose: &str, text: &str) -> String {
        match self.mac(purpose, text) {
            Some(m) => hex::encode(m.finalize().into_bytes()),
            None => String::new(),
        }
    }

    /// Checks a signature made by `sign`, in constant time.
    pub fn verify(&self, purpose: &str, text: &str, sig: &str) -> bool {
        let (Some(m), Ok(sig)) = (self.mac(purpose, text), hex::decode(sig)) else { return false };
        m.verify_slice(&sig).is_ok()
    }

    fn mac(&self, purpose: &str, text: &str) -> Option<HmacSha256> {
        let mut mac = HmacSha256::new_from_slice(&self.key).ok()?;
        mac.update(b"purpose\0");
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(text.as_bytes());
        Some(mac)
    }

    /// The Message-ID (without angle brackets) for a message we send in `conversation`.
    pub fn message_id(&self, conversation: &str, nonce: &str, domain: &str) -> String {
        format!("mr.{conversation}.{nonce}.{}@{domain}", self.sig(conversation, nonce))
    }

    /// The body marker carried as a fallback for providers that rewrite Message-IDs.
    pub fn body_marker(&self, conversation: &str, nonce: &str) -> String {
        format!("[mr:{conversation}.{nonce}.{}]", self.sig(conversation, nonce))
    }

    /// Checks a Message-ID (with or without brackets).
    pub fn verify_message_id(&self, id: &str) -> Option<SignedRef> {
        let id = id.trim().trim_start_matches('<').trim_end_matches('>');
        let (local, _domain) = id.rsplit_once('@')?;
        self.verify_token(local.strip_prefix("mr.")?)
    }

    /// Finds and checks a body marker in `text`.
    pub fn find_body_marker(&self, text: &str) -> Option<SignedRef> {
        text.match_indices("[mr:").find_map(|(i, _)| {
            let rest = &text[i + 4..];
            let end = rest.find(']')?;
            self.verify_token(&rest[..end])
        })
    }

    fn verify_token(&self, token: &str) -> Option<SignedRef> {
        let mut it = token.rsplitn(3, '.');
        let (sig, nonce, conversation) = (it.next()?, it.next()?, it.next()?);
        let ok = constant_time_eq(sig.as_bytes(), self.sig(conversation, nonce).as_bytes());
        (ok && !conversation.is_empty() && !sig.is_empty())
            .then(|| SignedRef { conversation: conversation.to_string(), nonce: nonce.to_string() })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let s = ThreadSigner::new(b"k1".to_vec());
        let id = s.message_id("c0123", "n1", "acme.example");
        assert_eq!(
            s.verify_message_id(&format!("<{id}>")),
            Some(SignedRef { conversation: "c0123".into(), nonce: "n1".into() })
        );
        assert!(ThreadSigner::new(b"k2".to_vec()).verify_message_id(&id).is_none());
        let forged = id.replace("c0123", "c0124");
        assert!(s.verify_message_id(&forged).is_none());
        let marker = s.body_marker("c9", "x");
        assert_eq!(
            s.find_body_marker(&format!("hello\n{marker}\n")).map(|r| r.conversation),
            Some("c9".into())
        );
        assert!(s.find_body_marker("[mr:c9.x.00]").is_none());
    }
}
