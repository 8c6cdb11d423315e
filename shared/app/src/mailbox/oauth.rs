//! OAuth 2.0 for Gmail and Microsoft 365: connecting an inbox (authorization code with
//! PKCE and a signed, short-lived, single-use state) and keeping its access token valid
//! (refresh before expiry; Microsoft's rotated refresh token written back with
//! compare-and-swap; `invalid_grant` / `interaction_required` end in
//! `reconnect_required`). Tokens are stored sealed by the `Secrets` port, never logged.

use crate::keys;
use crate::mailbox::connection::{self, Connection, Failure, Provider, State};
use crate::mailbox::request::SourceError;
use crate::runtime::config::{OAuthConfig, ProvidersConfig};
use crate::runtime::ports::Ports;
use chrono::{DateTime, Duration, Utc};
use mailroom_core::EmailAddress;
use mailroom_store::{Cond, StoreError};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use thiserror::Error;

/// The secret that holds an inbox's tokens.
pub const SECRET: &str = "oauth";
/// Refresh this long before the access token expires.
const REFRESH_MARGIN: Duration = Duration::minutes(5);
/// How long a user has between the authorize URL and the callback.
const STATE_TTL: Duration = Duration::minutes(10);
const STATE_PURPOSE: &str = "oauth-state";

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    #[serde(default)]
    pub refresh_token: Option<String>,
    pub expires_at: DateTime<Utc>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet").field("expires_at", &self.expires_at).finish_non_exhaustive()
    }
}

#[derive(Debug, Error)]
pub enum OAuthError {
    #[error("{0} is not configured: set MAILROOM_{1}_CLIENT_ID (and _CLIENT_SECRET)")]
    NotConfigured(&'static str, &'static str),
    #[error("the sign-in link is invalid or has expired: start the connection again")]
    BadState,
    #[error("the provider refused the sign-in: {0}")]
    Refused(String),
    #[error("the provider could not be reached: {0}")]
    Unreachable(String),
    #[error("bad OAuth endpoint URL: {0}")]
    Url(String),
    #[error(
        "you signed in as {account}, but the inbox being connected is {inbox}: sign in with the account of {inbox} (nothing was stored; to connect {account}, create an inbox for it)"
    )]
    WrongAccount { inbox: String, account: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn http() -> Result<oauth2::reqwest::Client, String> {
    // No redirects: oauth2's UPGRADE.md warns that following them opens SSRF.
    oauth2::reqwest::Client::builder()
        .redirect(oauth2::reqwest::redirect::Policy::none())
        // Below the webhooks function's 10 s timeout, so a slow token endpoint gets a clear error.
        .timeout(std::time::Duration::from_secs(7))
        .build()
        .map_err(|e| e.to_string())
}

type Client = oauth2::Client<
    oauth2::basic::BasicErrorResponse,
    oauth2::basic::BasicTokenResponse,
    oauth2::basic::BasicTokenIntrospectionResponse,
    oauth2::StandardRevocableToken,
    oauth2::basic::BasicRevocationErrorResponse,
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

fn client(cfg: &OAuthConfig) -> Result<Client, OAuthError> {
    let url = |u: &str| u.to_string();
    let mut c = BasicClient::new(ClientId::new(cfg.client_id.clone()))
        .set_auth_uri(
            AuthUrl::new(url(&cfg.auth_url))
                .map_err(|e| OAuthError::Url(format!("{}: {e}", cfg.auth_url)))?,
        )
        .set_token_uri(
            TokenUrl::new(url(&cfg.token_url))
                .map_err(|e| OAuthError::Url(format!("{}: {e}", cfg.token_url)))?,
        )
        .set_redirect_uri(
            RedirectUrl::new(url(&cfg.redirect_url))
                .map_err(|e| OAuthError::Url(format!("{}: {e}", cfg.redirect_url)))?,
        )
        // Credentials in the form body, as both Google and Microsoft document it.
        .set_auth_type(AuthType::RequestBody);
    if let Some(s) = &cfg.client_secret {
        c = c.set_client_secret(ClientSecret::new(s.clone()));
    }
    Ok(c)
}

fn provider_config(cfg: &ProvidersConfig, provider: Provider) -> Result<&OAuthConfig, OAuthError> {
    let (oauth, name, var) = match provider {
        Provider::Gmail => (&cfg.google.oauth, "Gmail", "GOOGLE"),
        Provider::Graph => (&cfg.microsoft.oauth, "Microsoft 365", "MS"),
        Provider::Imap => return Err(OAuthError::NotConfigured("IMAP over OAuth", "IMAP")),
    };
    if oauth.client_id.is_empty() {
        return Err(OAuthError::NotConfigured(name, var));
    }
    Ok(oauth)
}

/// The provider's authorize URL for connecting `inbox`. The state is a random nonce,
/// its expiry and an HMAC over both; the PKCE verifier waits, sealed, in a one-time
/// state item until the callback.
pub async fn start(
    ports: &Ports,
    cfg: &ProvidersConfig,
    provider: Provider,
    inbox: &EmailAddress,
) -> Result<String, OAuthError> {
    start_returning(ports, cfg, provider, inbox, None).await
}

/// [`start`], with the page of ours (a path under `/app/`) the callback sends the browser
/// back to with the outcome: the settings pages' flow.
pub async fn start_returning(
    ports: &Ports,
    cfg: &ProvidersConfig,
    provider: Provider,
    inbox: &EmailAddress,
    return_to: Option<&str>,
) -> Result<String, OAuthError> {
    let oauth = provider_config(cfg, provider)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let nonce = CsrfToken::new_random().secret().clone();
    let expires = (ports.clock.now() + STATE_TTL).timestamp();
    let text = format!("{nonce}.{expires}");
    let state = format!("{text}.{}", ports.signer.sign(STATE_PURPOSE, &text));
    let sealed =
        ports.secrets.seal(&format!("{STATE_PURPOSE}/{nonce}"), verifier.secret().as_bytes()).await?;
    let mut item = keys::oauth_state_key(&nonce).item();
    item.insert("inbox".into(), json!(inbox.key()));
    item.insert("provider".into(), json!(provider.as_str()));
    item.insert("verifier".into(), json!(hex::encode(sealed)));
    item.insert("expires".into(), json!(expires));
    if let Some(back) = return_to.filter(|b| is_own_page(b)) {
        item.insert("return_to".into(), json!(back));
    }
    ports.table.put(item, Some(Cond::NotExists)).await?;

    let c = client(oauth)?;
    let mut req = c.authorize_url(|| CsrfToken::new(state.clone())).set_pkce_challenge(challenge);
    for s in &oauth.scopes {
        req = req.add_scope(Scope::new(s.clone()));
    }
    req = req.add_extra_param("login_hint", inbox.key());
    if provider == Provider::Gmail {
        // Google returns a refresh token only when the user sees the consent screen.
        req = req.add_extra_param("access_type", "offline").add_extra_param("prompt", "consent");
    }
    Ok(req.url().0.to_string())
}

/// Only a path of our own web pages: never an open redirect.
fn is_own_page(p: &str) -> bool {
    p.starts_with("/app/") && !p.contains("//") && !p.contains('\\') && p.is_ascii()
}

/// The page a signed state asks the callback to return to, read before the callback
/// uses the state up (`None`: a forged or unknown state, or none was asked for).
pub async fn return_to(ports: &Ports, state: &str) -> Option<String> {
    let (text, sig) = state.rsplit_once('.')?;
    if !ports.signer.verify(STATE_PURPOSE, text, sig) {
        return None;
    }
    let (nonce, _) = text.split_once('.')?;
    let item = ports.table.get(&keys::oauth_state_key(nonce)).await.ok()??;
    item.get("return_to").and_then(Value::as_str).filter(|b| is_own_page(b)).map(str::to_string)
}

/// The callback: checks the state (signature, expiry, single use), exchanges the code
/// with the PKCE verifier, stores the tokens sealed and the connection. A reconnect
/// keeps the inbox's settings and cursors, so the next sync backfills from where the
/// last one stopped. Returns the connection; the caller then runs the provider's
/// `on_connect` (watch, subscriptions, backfill).
pub async fn callback(
    ports: &Ports,
    cfg: &ProvidersConfig,
    code: &str,
    state: &str,
) -> Result<Connection, OAuthError> {
    let mut parts = state.rsplitn(2, '.');
    let (Some(sig), Some(text)) = (parts.next(), parts.next()) else { return Err(OAuthError::BadState) };
    if !ports.signer.verify(STATE_PURPOSE, text, sig) {
        return Err(OAuthError::BadState);
    }
    let Some((nonce, expires)) = text.split_once('.') else { return Err(OAuthError::BadState) };
    let expires: i64 = expires.parse().map_err(|_| OAuthError::BadState)?;
    if ports.clock.now().timestamp() > expires {
        return Err(OAuthError::BadState);
    }
    let key = keys::oauth_state_key(nonce);
    let Some(item) = ports.table.get(&key).await? else { return Err(OAuthError::BadState) };
    // Single use: whoever deletes it first goes on.
    match ports.table.delete(&key, Some(Cond::Exists)).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed) => return Err(OAuthError::BadState),
        Err(e) => return Err(e.into()),
    }
    let text_of =
        |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string).ok_or(OAuthError::BadState);
    let inbox = EmailAddress::parse(&text_of("inbox")?).map_err(|_| OAuthError::BadState)?;
    let provider: Provider =
        serde_json::from_value(json!(text_of("provider")?)).map_err(|_| OAuthError::BadState)?;
    let sealed = hex::decode(text_of("verifier")?).map_err(|_| OAuthError::BadState)?;
    let verifier = ports.secrets.open(&format!("{STATE_PURPOSE}/{nonce}"), &sealed).await?;
    let verifier = PkceCodeVerifier::new(String::from_utf8(verifier).map_err(|_| OAuthError::BadState)?);

    let oauth = provider_config(cfg, provider)?;
    let http = http().map_err(OAuthError::Unreachable)?;
    let tr = client(oauth)?
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .map_err(|e| match classify(&e) {
            Refusal::Terminal(m) | Refusal::Transient(m) => OAuthError::Refused(m),
        })?;
    let now = ports.clock.now();
    let tokens = TokenSet {
        access_token: tr.access_token().secret().clone(),
        refresh_token: tr.refresh_token().map(|r| r.secret().clone()),
        expires_at: now
            + tr.expires_in().and_then(|d| Duration::from_std(d).ok()).unwrap_or(Duration::hours(1)),
    };
    if tokens.refresh_token.is_none() {
        return Err(OAuthError::Refused(
            "no refresh token was granted (Google: revoke Mailroom's access in the account and connect again; Microsoft: the offline_access scope is required)".into(),
        ));
    }
    // The mailbox the user consented with must be the inbox being connected: support@
    // connected with someone's personal account would sync the wrong mail.
    let account = account_address(cfg, provider, &tokens.access_token).await?;
    if !account.iter().any(|a| a.eq_ignore_ascii_case(&inbox.key())) {
        let account = account.first().cloned().unwrap_or_else(|| "an account without an address".into());
        tracing::warn!(inbox = %inbox, %account, "OAuth consent from another mailbox refused");
        return Err(OAuthError::WrongAccount { inbox: inbox.key(), account });
    }
    store_tokens(ports, &inbox, &tokens).await?;
    let conn = match connection::get(ports, &inbox).await? {
        Some(mut c) if c.provider == provider => {
            c.state = State::Connected;
            c.last_error = None;
            c.consecutive_failures = 0;
            c
        }
        _ => Connection::new(&inbox, provider, json!({"backfill_days": cfg.backfill_days}), now),
    };
    connection::save(ports, &conn).await?;
    crate::pipeline::ingest::Ingestor::new(ports.clone()).register_inbox(&inbox).await?;
    connection::event(ports, &inbox, "inbox_connected", json!(provider.as_str())).await?;
    Ok(conn)
}

/// The addresses of the mailbox an access token opens: Gmail's `users.getProfile`
/// address; Graph's `/me` mail and user principal name.
async fn account_address(
    cfg: &ProvidersConfig,
    provider: Provider,
    access_token: &str,
) -> Result<Vec<String>, OAuthError> {
    match provider {
        Provider::Gmail => {
            let client = mailroom_providers::gmail::GmailClient::new(&cfg.google.api_base)
                .map_err(|e| OAuthError::Unreachable(e.to_string()))?;
            let p = client
                .profile(access_token)
                .await
                .map_err(|e| OAuthError::Unreachable(format!("Gmail profile: {e}")))?;
            Ok(vec![p.email_address])
        }
        Provider::Graph => {
            let client = mailroom_providers::graph::GraphClient::new(&cfg.microsoft.api_base)
                .map_err(|e| OAuthError::Unreachable(e.to_string()))?;
            let me = client
                .me(access_token)
                .await
                .map_err(|e| OAuthError::Unreachable(format!("Graph /me: {e}")))?;
            Ok(me.mail.into_iter().chain(me.user_principal_name).collect())
        }
        Provider::Imap => Ok(vec![]),
    }
}

/// Stores an inbox's tokens (a new connection, or a test).
pub async fn store_tokens(ports: &Ports, inbox: &EmailAddress, tokens: &TokenSet) -> Result<i64, StoreError> {
    let plain = serde_json::to_vec(tokens).map_err(StoreError::backend)?;
    connection::put_secret(ports, inbox, SECRET, &plain).await
}

enum Refusal {
    /// The grant is dead: the user must connect again.
    Terminal(String),
    Transient(String),
}

fn classify<RE: std::error::Error + 'static>(
    e: &RequestTokenError<RE, oauth2::StandardErrorResponse<BasicErrorResponseType>>,
) -> Refusal {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let what = match r.error_description() {
                Some(d) => format!("{}: {d}", r.error()),
                None => r.error().to_string(),
            };
            match r.error() {
                BasicErrorResponseType::InvalidGrant
                | BasicErrorResponseType::InvalidClient
                | BasicErrorResponseType::UnauthorizedClient => Refusal::Terminal(what),
                BasicErrorResponseType::Extension(x)
                    if x == "interaction_required" || x == "consent_required" =>
                {
                    Refusal::Terminal(what)
                }
                _ => Refusal::Transient(what),
            }
        }
        RequestTokenError::Request(r) => Refusal::Transient(format!("token endpoint unreachable: {r}")),
        RequestTokenError::Parse(p, _) => {
            Refusal::Transient(format!("token endpoint answered something unreadable: {p}"))
        }
        RequestTokenError::Other(o) => Refusal::Transient(o.clone()),
    }
}

/// A valid access token for `inbox`, refreshed when it expires within five minutes.
/// A rotated refresh token is written back only if nobody else refreshed meanwhile
/// (compare-and-swap on the secret's version); otherwise theirs is read and used.
/// A dead grant sets the inbox to `reconnect_required` (one event) and stops.
pub async fn access_token(
    ports: &Ports,
    cfg: &OAuthConfig,
    inbox: &EmailAddress,
) -> Result<String, SourceError> {
    for _ in 0..4 {
        let Some(v) = connection::get_secret(ports, inbox, SECRET).await? else {
            return Err(SourceError::Reconnect(format!("{inbox} has no OAuth tokens: connect it")));
        };
        let tokens: TokenSet = serde_json::from_slice(&v.value).map_err(|e| {
            SourceError::Store(StoreError::Backend(format!("tokens of {inbox} are corrupt: {e}")))
        })?;
        let now = ports.clock.now();
        if tokens.expires_at - now > REFRESH_MARGIN {
            return Ok(tokens.access_token);
        }
        let Some(refresh) = tokens.refresh_token.clone() else {
            return Err(reconnect(ports, inbox, "no refresh token stored").await);
        };
        let c = client(cfg).map_err(|e| SourceError::Transient(e.to_string()))?;
        let http = http().map_err(SourceError::Transient)?;
        let tr = match c.exchange_refresh_token(&RefreshToken::new(refresh)).request_async(&http).await {
            Ok(tr) => tr,
            Err(e) => {
                return Err(match classify(&e) {
                    Refusal::Terminal(m) => reconnect(ports, inbox, &m).await,
                    Refusal::Transient(m) => {
                        connection::record_error(
                            ports,
                            inbox,
                            &format!("token refresh: {m}"),
                            Failure::Transient,
                        )
                        .await?;
                        SourceError::Transient(m)
                    }
                });
            }
        };
        let fresh = TokenSet {
            access_token: tr.access_token().secret().clone(),
            // Google keeps the old refresh token; Microsoft sends a new one every time.
            refresh_token: tr.refresh_token().map(|r| r.secret().clone()).or(tokens.refresh_token),
            expires_at: now
                + tr.expires_in().and_then(|d| Duration::from_std(d).ok()).unwrap_or(Duration::hours(1)),
        };
        let plain = serde_json::to_vec(&fresh).map_err(|e| SourceError::Store(StoreError::backend(e)))?;
        match connection::replace_secret(ports, inbox, SECRET, &plain, v.version).await {
            Ok(_) => return Ok(fresh.access_token),
            // Someone refreshed at the same time and wrote first: use theirs.
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(SourceError::Transient(format!("tokens of {inbox} kept changing during refresh; try again")))
}

/// The provider refused an access token before its stated expiry (revoked, a password
/// change, a tenant policy): marks the stored one expired, so that the next
/// `access_token` refreshes it once, which either works or ends in `reconnect_required`.
/// With `refused`, only if that is still the stored token; compare-and-swap either way,
/// so a concurrent refresh wins and is used as it is.
pub async fn expire_access_token(
    ports: &Ports,
    inbox: &EmailAddress,
    refused: Option<&str>,
) -> Result<(), StoreError> {
    let Some(v) = connection::get_secret(ports, inbox, SECRET).await? else { return Ok(()) };
    let Ok(mut tokens) = serde_json::from_slice::<TokenSet>(&v.value) else { return Ok(()) };
    if refused.is_some_and(|r| r != tokens.access_token) {
        return Ok(());
    }
    tokens.expires_at = DateTime::<Utc>::UNIX_EPOCH;
    let plain = serde_json::to_vec(&tokens).map_err(StoreError::backend)?;
    match connection::replace_secret(ports, inbox, SECRET, &plain, v.version).await {
        Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn reconnect(ports: &Ports, inbox: &EmailAddress, why: &str) -> SourceError {
    let msg = format!("token refresh refused: {why}");
    if let Err(e) = connection::record_error(ports, inbox, &msg, Failure::Terminal).await {
        return SourceError::Store(e);
    }
    SourceError::Reconnect(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom_store::ManualClock;
    use std::sync::Arc;

    fn setup() -> (tempfile::TempDir, Ports, Arc<ManualClock>, ProvidersConfig) {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Ports::embedded(dir.path()).unwrap();
        let clock = Arc::new(ManualClock::new(Utc::now()));
        p.clock = clock.clone();
        let mut cfg = ProvidersConfig::from_env("http://127.0.0.1:9").unwrap();
        cfg.google.oauth.client_id = "cid".into();
        // Nothing listens there: the exchange fails after the state checks.
        cfg.google.oauth.token_url = "http://127.0.0.1:9/token".into();
        (dir, p, clock, cfg)
    }

    fn state_of(url: &str) -> String {
        let u = url::Url::parse(url).unwrap();
        u.query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string()
    }

    #[tokio::test]
    async fn authorize_url_carries_pkce_offline_and_a_signed_state() {
        let (_d, p, _c, cfg) = setup();
        let inbox = EmailAddress::parse("support@acme.test").unwrap();
        let url = start(&p, &cfg, Provider::Gmail, &inbox).await.unwrap();
        let u = url::Url::parse(&url).unwrap();
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!((q["access_type"].as_str(), q["prompt"].as_str()), ("offline", "consent"));
        assert_eq!(q["login_hint"], "support@acme.test");
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:9/oauth/callback");
        assert!(q["scope"].contains("gmail.readonly"));
        // Not configured: a clear error.
        let mut bare = cfg.clone();
        bare.microsoft.oauth.client_id.clear();
        let e = start(&p, &bare, Provider::Graph, &inbox).await.unwrap_err();
        assert!(e.to_string().contains("MAILROOM_MS_CLIENT_ID"), "{e}");
    }

    #[tokio::test]
    async fn state_is_checked_signed_expiring_and_single_use() {
        let (_d, p, clock, cfg) = setup();
        let inbox = EmailAddress::parse("support@acme.test").unwrap();
        let state = state_of(&start(&p, &cfg, Provider::Gmail, &inbox).await.unwrap());
        let tampered = state.replacen('.', "x.", 1);
        assert!(matches!(callback(&p, &cfg, "code", &tampered).await, Err(OAuthError::BadState)));
        assert!(matches!(callback(&p, &cfg, "code", "garbage").await, Err(OAuthError::BadState)));
        // Valid: gets as far as the token endpoint (down here), and is spent.
        let e = callback(&p, &cfg, "code", &state).await.unwrap_err();
        assert!(matches!(e, OAuthError::Refused(_)), "{e}");
        assert!(matches!(callback(&p, &cfg, "code", &state).await, Err(OAuthError::BadState)));
        // Expired.
        let state = state_of(&start(&p, &cfg, Provider::Gmail, &inbox).await.unwrap());
        clock.advance(Duration::minutes(11));
        assert!(matches!(callback(&p, &cfg, "code", &state).await, Err(OAuthError::BadState)));
        assert!(connection::get(&p, &inbox).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn access_token_needs_stored_tokens_and_uses_fresh_ones_as_they_are() {
        let (_d, p, _c, cfg) = setup();
        let inbox = EmailAddress::parse("support@acme.test").unwrap();
        assert!(matches!(access_token(&p, &cfg.google.oauth, &inbox).await, Err(SourceError::Reconnect(_))));
        let t = TokenSet {
            access_token: "at-1".into(),
            refresh_token: Some("rt".into()),
            expires_at: Utc::now() + Duration::hours(1),
        };
        store_tokens(&p, &inbox, &t).await.unwrap();
        assert_eq!(access_token(&p, &cfg.google.oauth, &inbox).await.unwrap(), "at-1");
        assert!(!format!("{t:?}").contains("at-1"), "tokens must not reach logs");
    }
}
