//! Who is calling: bearer JWTs from an OIDC issuer (Cognito by default in AWS, any issuer
//! with a JWKS), or locally issued development tokens (`mailroom token USER`).
//!
//! The identity is the token's `email` claim (configurable); it must be a user of the
//! workspace, whose role (admin or agent) and teams decide what the caller may do. A
//! token is refused (401) when it is missing, malformed, expired, badly signed, for
//! another audience, or from an issuer we do not trust; a valid token for someone who is
//! not (or no longer) a workspace user gets 403.
//!
//! Two verifiers, each pinned to its algorithm, chosen by the token's `iss`:
//! - local: HS256 with a key derived from the workspace secret (`DATA/secret.key`), issuer
//!   `mailroom-local`. Only `mailroom serve` enables it; the Lambda never accepts it.
//! - OIDC: RS256 against the issuer's JWKS (`mailroom_providers::jwt::OidcVerifier`,
//!   the same code that checks Pub/Sub push tokens).
//!
//! Peeking at `iss` before verifying only picks the verifier; the verifier then checks
//! the issuer again with the signature, so a token cannot choose a weaker check.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use mailroom_core::ThreadSigner;
use mailroom_providers::jwt::{OidcConfig, OidcVerifier};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// The `iss` of development tokens.
pub const LOCAL_ISSUER: &str = "mailroom-local";
/// The `aud` of development tokens.
pub const LOCAL_AUDIENCE: &str = "mailroom-api";

#[derive(Debug, Error)]
pub enum AuthError {
    #[error("no bearer token: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token has expired: get a new one")]
    Expired,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token was issued by {0:?}, which this deployment does not trust")]
    UntrustedIssuer(String),
    #[error("the token is not meant for this API (audience)")]
    WrongAudience,
    #[error("the token has no {0:?} claim to identify the user")]
    NoIdentity(String),
    #[error("the token issuer's keys cannot be fetched right now: {0}")]
    Unavailable(String),
}

/// The claims of a development token.
#[derive(Debug, Serialize, Deserialize)]
struct LocalClaims {
    iss: String,
    aud: String,
    sub: String,
    email: String,
    iat: i64,
    exp: i64,
}

/// Issues and checks development tokens.
#[derive(Clone)]
pub struct LocalIssuer {
    key: Vec<u8>,
}

impl LocalIssuer {
    /// The key is derived from the workspace secret, so tokens survive restarts and die
    /// with the data directory.
    pub fn new(signer: &ThreadSigner) -> LocalIssuer {
        LocalIssuer { key: signer.sign("api-local-token-key", "v1").into_bytes() }
    }

    /// A token for `email`, valid for `ttl` from `now`.
    pub fn issue(
        &self,
        email: &str,
        now: chrono::DateTime<chrono::Utc>,
        ttl: Duration,
    ) -> anyhow::Result<String> {
        let claims = LocalClaims {
            iss: LOCAL_ISSUER.into(),
            aud: LOCAL_AUDIENCE.into(),
            sub: email.to_lowercase(),
            email: email.to_lowercase(),
            iat: now.timestamp(),
            exp: now.timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.key),
        )?)
    }

    fn verify(&self, token: &str) -> Result<String, AuthError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 30;
        v.set_audience(&[LOCAL_AUDIENCE]);
        v.set_issuer(&[LOCAL_ISSUER]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<LocalClaims>(token, &DecodingKey::from_secret(&self.key), &v)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidIssuer => AuthError::UntrustedIssuer(LOCAL_ISSUER.into()),
                ErrorKind::InvalidAlgorithm => AuthError::Malformed("development tokens are HS256".into()),
                _ => AuthError::Malformed(e.to_string()),
            })?;
        Ok(data.claims.email)
    }
}

/// The OIDC issuer's settings (`MAILROOM_OIDC_*`).
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    /// The claim holding the user's email (`email`; Cognito ID tokens have it).
    pub email_claim: String,
}

impl OidcSettings {
    /// `MAILROOM_OIDC_ISSUER` (unset: no OIDC), `MAILROOM_OIDC_AUDIENCE` (required with it),
    /// `MAILROOM_OIDC_JWKS_URL` (default `{issuer}/.well-known/jwks.json`, Cognito's
    /// layout), `MAILROOM_OIDC_EMAIL_CLAIM` (default `email`).
    pub fn from_env() -> anyhow::Result<Option<OidcSettings>> {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let Some(issuer) = var("MAILROOM_OIDC_ISSUER") else { return Ok(None) };
        let issuer = issuer.trim_end_matches('/').to_string();
        let Some(audience) = var("MAILROOM_OIDC_AUDIENCE") else {
            anyhow::bail!(
                "MAILROOM_OIDC_ISSUER is set but MAILROOM_OIDC_AUDIENCE is not: set it to the app client id tokens are issued for"
            );
        };
        let jwks_url =
            var("MAILROOM_OIDC_JWKS_URL").unwrap_or_else(|| format!("{issuer}/.well-known/jwks.json"));
        let email_claim = var("MAILROOM_OIDC_EMAIL_CLAIM").unwrap_or_else(|| "email".into());
        Ok(Some(OidcSettings { issuer, audience, jwks_url, email_claim }))
    }
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A development token `mailroom token` issued on this machine: the email is ours.
    Local { email: String },
    /// An OIDC ID token: the issuer's stable subject, and what the token says of the email.
    /// The user is found by the subject once it is bound (see `api::identity`); the email
    /// is used only to bind it the first time, and only when the issuer verified it.
    Oidc { issuer: String, subject: String, email: Option<String>, email_verified: bool },
}

/// Checks bearer tokens; built once per process (the OIDC verifier caches the JWKS).
pub struct Authenticator {
    local: Option<LocalIssuer>,
    oidc: Option<(OidcVerifier, OidcSettings)>,
}

impl Authenticator {
    pub fn new(local: Option<LocalIssuer>, oidc: Option<OidcSettings>) -> anyhow::Result<Authenticator> {
        let oidc = match oidc {
            None => None,
            Some(s) => {
                let cfg = OidcConfig {
                    jwks_url: s.jwks_url.clone(),
                    issuers: vec![s.issuer.clone()],
                    audience: s.audience.clone(),
                    email: None,
                    leeway: Duration::from_secs(30),
                    default_max_age: Duration::from_secs(3600),
                    min_refetch: Duration::from_secs(30),
                };
                let v = OidcVerifier::new(cfg).map_err(|e| anyhow::anyhow!("OIDC verifier: {e}"))?;
                Some((v, s))
            }
        };
        Ok(Authenticator { local, oidc })
    }

    /// Whether any token can be accepted at all.
    pub fn enabled(&self) -> bool {
        self.local.is_some() || self.oidc.is_some()
    }

    /// Who a valid token speaks for.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let iss = peek_issuer(token)?;
        if iss == LOCAL_ISSUER
            && let Some(local) = &self.local
        {
            return local.verify(token).map(|email| Identity::Local { email });
        }
        if let Some((v, s)) = &self.oidc
            && iss.trim_end_matches('/') == s.issuer
        {
            use mailroom_providers::jwt::JwtError as J;
            let claims = v.verify(token).await.map_err(|e| match e {
                J::Expired => AuthError::Expired,
                J::BadSignature | J::UnknownKey(_) => AuthError::BadSignature,
                J::WrongIssuer => AuthError::UntrustedIssuer(iss.clone()),
                J::WrongAudience => AuthError::WrongAudience,
                J::Jwks { .. } => AuthError::Unavailable(e.to_string()),
                other => AuthError::Malformed(other.to_string()),
            })?;
            let email = if s.email_claim == "email" {
                claims.email.clone()
            } else {
                claims.extra.get(&s.email_claim).and_then(|v| v.as_str()).map(str::to_string)
            };
            let subject = claims
                .sub
                .clone()
                .filter(|x| !x.is_empty())
                .ok_or_else(|| AuthError::NoIdentity("sub".into()))?;
            if email.is_none() {
                return Err(AuthError::NoIdentity(s.email_claim.clone()));
            }
            return Ok(Identity::Oidc {
                issuer: s.issuer.clone(),
                subject,
                email: email.map(|e| e.to_lowercase()),
                email_verified: claims.email_verified == Some(true),
            });
        }
        Err(AuthError::UntrustedIssuer(iss))
    }
}

/// The unverified `iss` of a JWT: only to pick the verifier.
fn peek_issuer(token: &str) -> Result<String, AuthError> {
    let mut parts = token.split('.');
    let (Some(_), Some(payload), Some(_), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("a JWT has three dot-separated parts".into()));
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .map_err(|_| AuthError::Malformed("the payload is not base64url".into()))?;
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let iss: Iss = serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("the payload is not a JSON object".into()))?;
    iss.iss.ok_or_else(|| AuthError::Malformed("the token has no iss claim".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> LocalIssuer {
        LocalIssuer::new(&ThreadSigner::new(vec![7u8; 32]))
    }

    #[tokio::test]
    async fn local_tokens_round_trip_and_expire() {
        let auth = Authenticator::new(Some(local()), None).unwrap();
        let now = chrono::Utc::now();
        let t = local().issue("Ann@Acme.example", now, Duration::from_secs(60)).unwrap();
        assert_eq!(auth.verify(&t).await.unwrap(), Identity::Local { email: "ann@acme.example".into() });
        let old = local()
            .issue("ann@acme.example", now - chrono::Duration::hours(2), Duration::from_secs(60))
            .unwrap();
        assert!(matches!(auth.verify(&old).await, Err(AuthError::Expired)));
    }

    #[tokio::test]
    async fn another_key_or_issuer_is_refused() {
        let auth = Authenticator::new(Some(local()), None).unwrap();
        let other = LocalIssuer::new(&ThreadSigner::new(vec![8u8; 32]));
        let t = other.issue("ann@acme.example", chrono::Utc::now(), Duration::from_secs(60)).unwrap();
        assert!(matches!(auth.verify(&t).await, Err(AuthError::BadSignature)));
        // A token naming an issuer we do not trust never reaches a verifier.
        let claims = serde_json::json!({"iss": "https://evil.example", "aud": LOCAL_AUDIENCE, "email": "ann@acme.example", "exp": chrono::Utc::now().timestamp() + 60});
        let forged = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&local().key),
        )
        .unwrap();
        assert!(matches!(auth.verify(&forged).await, Err(AuthError::UntrustedIssuer(_))));
        // Without local tokens enabled (the Lambda), a development token is refused.
        let lambda = Authenticator::new(None, None).unwrap();
        let t = local().issue("ann@acme.example", chrono::Utc::now(), Duration::from_secs(60)).unwrap();
        assert!(matches!(lambda.verify(&t).await, Err(AuthError::UntrustedIssuer(_))));
        assert!(matches!(auth.verify("not.a.jwt.at-all").await, Err(AuthError::Malformed(_))));
    }
}
