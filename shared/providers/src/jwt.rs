//! Checks the OIDC JWTs that push deliveries carry (Google Pub/Sub authenticated push;
//! reusable for Microsoft's validation tokens): RS256 only, the key found by `kid` in a
//! JWKS fetched from a configured URL and cached, then `exp`, `iss`, `aud` and, when
//! configured, `email` + `email_verified`.
//!
//! The JWKS is cached for its `Cache-Control: max-age` (Google rotates keys and says so
//! in that header). A token signed by a key we have not seen makes one refetch (keys
//! rotate before the cache expires), but at most one per `min_refetch`, so a stream of
//! forged `kid`s cannot turn the webhook into a JWKS hammer.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::sync::Mutex;

/// What a token must be to be accepted.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Where the signing keys are (Google: `https://www.googleapis.com/oauth2/v3/certs`).
    pub jwks_url: String,
    /// Accepted `iss` values (Google: `https://accounts.google.com`, `accounts.google.com`).
    pub issuers: Vec<String>,
    /// The one accepted `aud` (for Pub/Sub: the audience set on the push subscription).
    pub audience: String,
    /// When set, `email` must equal it and `email_verified` must be `true` (the push
    /// subscription's service account).
    pub email: Option<String>,
    /// Clock skew allowed on `exp`/`nbf`.
    pub leeway: Duration,
    /// Cache lifetime when the JWKS response says nothing (no `max-age`).
    pub default_max_age: Duration,
    /// Minimum time between two fetches caused by unknown `kid`s.
    pub min_refetch: Duration,
}

impl OidcConfig {
    /// Google's issuers and defaults; `jwks_url`, `audience` and `email` from configuration.
    pub fn google(jwks_url: &str, audience: &str, email: &str) -> OidcConfig {
        OidcConfig {
            jwks_url: jwks_url.to_string(),
            issuers: vec!["https://accounts.google.com".into(), "accounts.google.com".into()],
            audience: audience.to_string(),
            email: Some(email.to_string()),
            leeway: Duration::from_secs(60),
            default_max_age: Duration::from_secs(3600),
            min_refetch: Duration::from_secs(30),
        }
    }
}

/// Why a token was refused. `status()` maps it to the HTTP answer: 401 when the token is
/// missing or not a valid token from the issuer at all, 403 when it is a valid token that
/// is not meant for us (another audience, another service account).
#[derive(Debug, Error)]
pub enum JwtError {
    #[error(
        "no bearer token: the push subscription must be an authenticated one (set a service account on it)"
    )]
    Missing,
    #[error("token is malformed: {0}")]
    Malformed(String),
    #[error("token algorithm {0} is not accepted; only RS256 is")]
    Algorithm(String),
    #[error("token has no kid header")]
    NoKid,
    #[error("token is signed with unknown key {0} (not in the JWKS, even after a refetch)")]
    UnknownKey(String),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not an accepted one")]
    WrongIssuer,
    #[error("token audience is not ours: set the push subscription's audience to the configured one")]
    WrongAudience,
    #[error("token email {0:?} is not the configured push service account")]
    WrongEmail(Option<String>),
    #[error("token email is not verified")]
    EmailNotVerified,
    #[error("cannot fetch the JWKS from {url}: {reason} (retry later)")]
    Jwks { url: String, reason: String },
}

impl JwtError {
    /// The HTTP status a webhook answers with.
    pub fn status(&self) -> u16 {
        match self {
            JwtError::WrongAudience | JwtError::WrongEmail(_) | JwtError::EmailNotVerified => 403,
            // Our side could not check: the sender should retry, so not a 4xx.
            JwtError::Jwks { .. } => 503,
            _ => 401,
        }
    }
}

/// The claims of an accepted token. `extra` has every claim, for callers that check
/// more (Microsoft's `appid`/`azp`).
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    pub iss: String,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "bool_or_string")]
    pub email_verified: Option<bool>,
    pub exp: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `email_verified` as a JSON boolean (Google, Cognito) or the strings "true"/"false"
/// that some issuers put there (user-pool attributes are strings); anything else is
/// "not verified".
fn bool_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => Some(b),
        Some(Value::String(s)) if s == "true" => Some(true),
        Some(Value::String(s)) if s == "false" => Some(false),
        _ => None,
    })
}

struct Cache {
    keys: JwkSet,
    fresh_until: Option<Instant>,
    last_fetch: Option<Instant>,
}

/// A verifier, built once per process and shared: it owns the JWKS cache.
pub struct OidcVerifier {
    cfg: OidcConfig,
    http: reqwest::Client,
    cache: Mutex<Cache>,
    fetches: std::sync::atomic::AtomicU64,
}

impl OidcVerifier {
    pub fn new(cfg: OidcConfig) -> Result<OidcVerifier, JwtError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| JwtError::Jwks { url: cfg.jwks_url.clone(), reason: e.to_string() })?;
        Ok(OidcVerifier {
            cfg,
            http,
            cache: Mutex::new(Cache {
                keys: JwkSet { keys: Vec::new() },
                fresh_until: None,
                last_fetch: None,
            }),
            fetches: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.cfg
    }

    /// How many times the JWKS was fetched (for metrics and tests).
    pub fn jwks_fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checks an `Authorization` header value (`Bearer <jwt>`).
    pub async fn verify_header(&self, authorization: Option<&str>) -> Result<Claims, JwtError> {
        let token = authorization
            .map(str::trim)
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(JwtError::Missing)?;
        self.verify(token).await
    }

    /// Checks a bare JWT.
    pub async fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let header = decode_header(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(JwtError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.ok_or(JwtError::NoKid)?;
        let key = self.key(&kid).await?;
        let mut v = Validation::new(Algorithm::RS256);
        v.leeway = self.cfg.leeway.as_secs();
        v.validate_nbf = true;
        v.set_audience(&[&self.cfg.audience]);
        v.set_issuer(&self.cfg.issuers);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = decode::<Claims>(token, &key, &v).map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => JwtError::BadSignature,
            ErrorKind::ExpiredSignature => JwtError::Expired,
            ErrorKind::ImmatureSignature => JwtError::NotYetValid,
            ErrorKind::InvalidIssuer => JwtError::WrongIssuer,
            ErrorKind::InvalidAudience => JwtError::WrongAudience,
            ErrorKind::InvalidAlgorithm => JwtError::Algorithm("mismatch with the key".into()),
            _ => JwtError::Malformed(e.to_string()),
        })?;
        let claims = data.claims;
        if let Some(want) = &self.cfg.email {
            if claims.email.as_deref() != Some(want.as_str()) {
                return Err(JwtError::WrongEmail(claims.email));
            }
            if claims.email_verified != Some(true) {
                return Err(JwtError::EmailNotVerified);
            }
        }
        Ok(claims)
    }

    /// The key for `kid`: from the cache while fresh, else (or when `kid` is unknown) from
    /// a refetch, rate-limited.
    async fn key(&self, kid: &str) -> Result<DecodingKey, JwtError> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        let stale = cache.fresh_until.is_none_or(|t| now >= t);
        let known = cache.keys.find(kid).is_some();
        let may_refetch = cache.last_fetch.is_none_or(|t| now.duration_since(t) >= self.cfg.min_refetch);
        if stale || (!known && may_refetch) {
            match self.fetch().await {
                Ok((keys, max_age)) => {
                    cache.keys = keys;
                    cache.fresh_until = Some(now + max_age);
                    cache.last_fetch = Some(now);
                }
                // Keys we already have stay usable when a refresh fails; with none, the
                // caller answers 503 so the sender retries.
                Err(e) if cache.keys.keys.is_empty() => return Err(e),
                Err(e) => {
                    // Try again no sooner than `min_refetch`, not on every request.
                    cache.last_fetch = Some(now);
                    cache.fresh_until = Some(now + self.cfg.min_refetch);
                    tracing::warn!(error = %e, "JWKS refresh failed; using the cached keys");
                }
            }
        }
        let jwk = cache.keys.find(kid).ok_or_else(|| JwtError::UnknownKey(kid.to_string()))?;
        DecodingKey::from_jwk(jwk).map_err(|e| JwtError::Malformed(format!("JWKS key {kid}: {e}")))
    }

    async fn fetch(&self) -> Result<(JwkSet, Duration), JwtError> {
        self.fetches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let err = |reason: String| JwtError::Jwks { url: self.cfg.jwks_url.clone(), reason };
        let resp = self.http.get(&self.cfg.jwks_url).send().await.map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        let max_age = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(self.cfg.default_max_age);
        let keys: JwkSet = resp.json().await.map_err(|e| err(format!("not a JWKS: {e}")))?;
        Ok((keys, max_age))
    }
}

/// `max-age=N` of a Cache-Control value (`no-cache`/`no-store` count as zero).
pub fn max_age(cache_control: &str) -> Option<Duration> {
    let mut out = None;
    for d in cache_control.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            out = n.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_max_age() {
        assert_eq!(
            max_age("public, max-age=19765, must-revalidate, no-transform"),
            Some(Duration::from_secs(19765))
        );
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }

    #[test]
    fn statuses() {
        assert_eq!(JwtError::Missing.status(), 401);
        assert_eq!(JwtError::Expired.status(), 401);
        assert_eq!(JwtError::WrongIssuer.status(), 401);
        assert_eq!(JwtError::WrongAudience.status(), 403);
        assert_eq!(JwtError::EmailNotVerified.status(), 403);
        assert_eq!(JwtError::WrongEmail(None).status(), 403);
    }

    #[test]
    fn email_verified_as_boolean_or_string() {
        let claims = |v: Value| -> Option<bool> {
            let c: Claims =
                serde_json::from_value(serde_json::json!({"iss": "i", "exp": 1, "email_verified": v}))
                    .unwrap();
            c.email_verified
        };
        assert_eq!(claims(Value::Bool(true)), Some(true));
        assert_eq!(claims(Value::from("true")), Some(true));
        assert_eq!(claims(Value::from("false")), Some(false));
        assert_eq!(claims(Value::from("yes")), None);
        assert_eq!(claims(Value::from(1)), None);
        let c: Claims = serde_json::from_value(serde_json::json!({"iss": "i", "exp": 1})).unwrap();
        assert_eq!(c.email_verified, None);
    }
}
