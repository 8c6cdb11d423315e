use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::fmt;
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
#[error("not an email address: {0:?}")]
pub struct InvalidAddress(pub String);

/// An email address with its domain lower-cased (the local part keeps its case, as
/// RFC 5321 allows; comparisons that must ignore it use [`EmailAddress::key`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, InvalidAddress> {
        let t = s.trim().trim_start_matches('<').trim_end_matches('>').trim();
        let (local, domain) = t.rsplit_once('@').ok_or_else(|| InvalidAddress(s.to_string()))?;
        let bad =
            |c: char| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';' | '/' | '\\');
        if local.is_empty()
            || domain.is_empty()
            || local.len() > 64
            || domain.len() > 253
            || domain.starts_with('.')
            || domain.ends_with('.')
            || local.contains(bad)
            || domain.contains(bad)
            || local.contains('@')
        {
            return Err(InvalidAddress(s.to_string()));
        }
        Ok(EmailAddress(format!("{local}@{}", domain.to_ascii_lowercase())))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
    /// The fully lower-cased form, for matching contacts and inboxes.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = InvalidAddress;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        EmailAddress::parse(&s)
    }
}

impl From<EmailAddress> for String {
    fn from(a: EmailAddress) -> String {
        a.0
    }
}

/// A SHA-256 digest in lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Sha256(pub String);

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn sha256(bytes: &[u8]) -> Sha256 {
    Sha256(hex::encode(sha2::Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_lower_case_the_domain_only() {
        let a = EmailAddress::parse(" <Jane.Doe@Example.COM> ").unwrap();
        assert_eq!(a.as_str(), "Jane.Doe@example.com");
        assert_eq!(a.domain(), "example.com");
        assert_eq!(a.key(), "jane.doe@example.com");
    }

    #[test]
    fn rejects_what_is_not_an_address() {
        for s in ["", "nobody", "@x.com", "a@", "a b@c.com", "a@b@c", "a@.com"] {
            assert!(EmailAddress::parse(s).is_err(), "{s:?} accepted");
        }
    }

    #[test]
    fn sha256_is_hex() {
        assert_eq!(sha256(b"abc").0, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
