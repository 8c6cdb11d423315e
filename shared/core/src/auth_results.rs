//! The `Authentication-Results` header (RFC 8601) that the receiving mail host adds: who
//! checked the message (the authserv-id) and what DMARC said about its From domain.
//!
//! Only the topmost header counts: it is the one the last receiving host added. Anything
//! below it came with the message, and a sender can write whatever it likes there, so
//! the result is believed only when its authserv-id is a host the workspace trusts
//! (`trusted_receivers`, docs/security.md).

use serde::{Deserialize, Serialize};

/// What the topmost `Authentication-Results` header says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResults {
    /// The host that did the checks (lower case), e.g. `mx.google.com`.
    pub authserv_id: String,
    /// `pass`, `fail`, `none`, ... (lower case); absent when DMARC was not evaluated.
    pub dmarc: Option<String>,
    /// The From domain DMARC was evaluated for (`header.from`, lower case).
    pub dmarc_domain: Option<String>,
}

impl AuthResults {
    /// Parses a header value. `None` when it has no authserv-id.
    pub fn parse(value: &str) -> Option<AuthResults> {
        let text = strip_comments(&value.replace(['\r', '\n'], " "));
        let mut parts = text.split(';');
        let authserv_id = parts.next()?.split_whitespace().next()?.to_ascii_lowercase();
        if authserv_id.is_empty() {
            return None;
        }
        let mut out = AuthResults { authserv_id, ..AuthResults::default() };
        for part in parts {
            let mut words = part.split_whitespace();
            let Some((method, result)) = words.next().and_then(|w| w.split_once('=')) else { continue };
            if !method.eq_ignore_ascii_case("dmarc") || out.dmarc.is_some() {
                continue;
            }
            out.dmarc = Some(result.to_ascii_lowercase());
            out.dmarc_domain = words
                .filter_map(|w| w.split_once('='))
                .find(|(k, _)| k.eq_ignore_ascii_case("header.from"))
                .map(|(_, v)| v.trim_matches('"').to_ascii_lowercase());
        }
        Some(out)
    }

    /// Whether a host in `trusted` (authserv-ids, case-insensitive) saw DMARC pass for
    /// `domain`.
    pub fn dmarc_pass_for(&self, domain: &str, trusted: &[String]) -> bool {
        trusted.iter().any(|t| t.eq_ignore_ascii_case(&self.authserv_id))
            && self.dmarc.as_deref() == Some("pass")
            && self.dmarc_domain.as_deref().is_some_and(|d| d.eq_ignore_ascii_case(domain))
    }
}

/// Removes RFC 5322 comments (parenthesised, nesting allowed).
fn strip_comments(s: &str) -> String {
    let mut depth = 0usize;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gmail_and_microsoft_headers() {
        let g = AuthResults::parse(
            "mx.google.com;\r\n       dkim=pass header.i=@acme.example header.s=s1 header.b=abc;\r\n       spf=pass (google.com: domain of a@acme.example designates 1.2.3.4 as permitted sender) smtp.mailfrom=a@acme.example;\r\n       dmarc=pass (p=REJECT sp=REJECT dis=NONE) header.from=Acme.example",
        )
        .unwrap();
        assert_eq!(g.authserv_id, "mx.google.com");
        assert_eq!(g.dmarc.as_deref(), Some("pass"));
        assert_eq!(g.dmarc_domain.as_deref(), Some("acme.example"));
        let trusted = vec!["MX.google.com".to_string()];
        assert!(g.dmarc_pass_for("acme.example", &trusted));
        assert!(!g.dmarc_pass_for("other.example", &trusted));
        assert!(!g.dmarc_pass_for("acme.example", &["evil.example".to_string()]));
        let m = AuthResults::parse("spf=fail (sender IP is 5.6.7.8) smtp.mailfrom=acme.example; dkim=none (message not signed) header.d=none;dmarc=fail action=none header.from=acme.example;compauth=fail reason=001").unwrap();
        // No authserv-id before the first method: the first token is taken as one, and
        // nobody trusts "spf=fail".
        assert!(!m.dmarc_pass_for("acme.example", &["outlook.com".to_string()]));
        let ms = AuthResults::parse("eu-smtp-1.outlook.com 1; dmarc=fail header.from=acme.example").unwrap();
        assert_eq!(ms.authserv_id, "eu-smtp-1.outlook.com");
        assert_eq!(ms.dmarc.as_deref(), Some("fail"));
        assert!(AuthResults::parse("   ").is_none());
    }
}
