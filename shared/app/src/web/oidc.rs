//! Browser sign-in through the OIDC provider (the Cognito hosted UI in AWS): the
//! authorization-code flow with PKCE.
//!
//! `/app/auth/start` stores a one-time state (random, 10 minutes, with the PKCE verifier
//! and where to go after) and sends the browser to the provider; `/app/auth/callback`
//! takes the state back exactly once, exchanges the code with the verifier, checks the
//! ID token like the API checks bearer tokens (issuer, audience = this client, signature
//! from the issuer's JWKS, expiry) and maps it to a workspace user by its subject
//! (`api::identity`: bound on first sign-in to a verified email). Then a session starts.
//!
//! The exchange is written with reqwest rather than the `oauth2` client: that client's
//! standard token response drops the `id_token`, and the request is one form POST.

use crate::api::auth::{Authenticator, OidcSettings};
use crate::keys;
use crate::keys::item_str as s;
use crate::runtime::ports::Ports;
use anyhow::{Context, Result, bail};
use chrono::Duration;
use mailroom_store::{Cond, StoreError};
use oauth2::PkceCodeChallenge;
use serde_json::json;

/// How long a sign-in may take at the provider.
const STATE_TTL: Duration = Duration::minutes(10);

/// The provider's endpoints and this app's client (`MAILROOM_WEB_OIDC_*`).
pub struct WebOidc {
    pub authorize_url: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: String,
    /// Checks ID tokens issued to this client.
    verifier: Authenticator,
}

impl WebOidc {
    /// `MAILROOM_WEB_OIDC_AUTHORIZE_URL` and `MAILROOM_WEB_OIDC_TOKEN_URL` (unset: no
    /// browser sign-in through OIDC), `MAILROOM_WEB_OIDC_CLIENT_ID` (default: the API's
    /// audience), `MAILROOM_WEB_OIDC_CLIENT_SECRET` (or its `_SECRET_ARN`; none for a
    /// public client such as the template's), `MAILROOM_WEB_OIDC_SCOPES` (default `openid
    /// email profile`). The issuer and its keys are the API's (`MAILROOM_OIDC_*`).
    pub fn from_env() -> Result<Option<WebOidc>> {
        let var = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let (Some(authorize_url), Some(token_url)) =
            (var("MAILROOM_WEB_OIDC_AUTHORIZE_URL"), var("MAILROOM_WEB_OIDC_TOKEN_URL"))
        else {
            return Ok(None);
        };
        let Some(api) = OidcSettings::from_env()? else {
            bail!(
                "MAILROOM_WEB_OIDC_AUTHORIZE_URL is set but MAILROOM_OIDC_ISSUER is not: the ID tokens need an issuer to trust"
            );
        };
        let client_id = var("MAILROOM_WEB_OIDC_CLIENT_ID").unwrap_or_else(|| api.audience.clone());
        let settings = OidcSettings { audience: client_id.clone(), ..api };
        Ok(Some(WebOidc {
            authorize_url,
            token_url,
            client_id,
            client_secret: crate::runtime::config::secret("MAILROOM_WEB_OIDC_CLIENT_SECRET"),
            scopes: var("MAILROOM_WEB_OIDC_SCOPES").unwrap_or_else(|| "openid email profile".into()),
            verifier: Authenticator::new(None, Some(settings))?,
        }))
    }

    fn redirect_uri(public_url: &str) -> String {
        format!("{}/app/auth/callback", public_url.trim_end_matches('/'))
    }

    /// The provider's URL to send the browser to; `next` is where it comes back to.
    pub async fn start(&self, ports: &Ports, public_url: &str, next: &str) -> Result<String> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = hex::encode(rand::random::<[u8; 24]>());
        let expires = (ports.clock.now() + STATE_TTL).timestamp();
        let mut item = keys::web_auth_state_key(&mailroom_core::sha256(state.as_bytes()).to_string()).item();
        item.insert("verifier".into(), json!(verifier.secret()));
        item.insert("next".into(), json!(next));
        item.insert("expires_at".into(), json!(expires));
        item.insert("ttl".into(), json!(expires));
        ports.table.put(item, Some(Cond::NotExists)).await?;
        ports.flush()?;
        let mut url = url::Url::parse(&self.authorize_url).context("MAILROOM_WEB_OIDC_AUTHORIZE_URL")?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &Self::redirect_uri(public_url))
            .append_pair("scope", &self.scopes)
            .append_pair("state", &state)
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256");
        Ok(url.to_string())
    }

    /// The callback: the state once, the code exchanged, the ID token checked. Returns
    /// the user's email (bound by subject) and where to go next.
    pub async fn finish(
        &self,
        ports: &Ports,
        public_url: &str,
        code: &str,
        state: &str,
    ) -> Result<(String, String)> {
        let key = keys::web_auth_state_key(&mailroom_core::sha256(state.as_bytes()).to_string());
        let item = ports.table.get(&key).await?.context("unknown or used sign-in state")?;
        match ports.table.delete(&key, Some(Cond::Exists)).await {
            Ok(()) => {}
            Err(StoreError::ConditionFailed) => bail!("this sign-in was already used"),
            Err(e) => return Err(e.into()),
        }
        let expires = item.get("expires_at").and_then(serde_json::Value::as_i64).unwrap_or(0);
        if expires <= ports.clock.now().timestamp() {
            bail!("the sign-in took too long: start again");
        }
        let verifier = s(&item, "verifier").context("the sign-in state has no verifier")?;
        let next = s(&item, "next").unwrap_or_else(|| "/app/".into());
        let mut form = vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", Self::redirect_uri(public_url)),
            ("client_id", self.client_id.clone()),
            ("code_verifier", verifier),
        ];
        if let Some(secret) = &self.client_secret {
            form.push(("client_secret", secret.clone()));
        }
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            .build()?;
        let resp = http.post(&self.token_url).form(&form).send().await.context("the token endpoint")?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.context("the token endpoint's answer")?;
        if !status.is_success() {
            bail!(
                "the provider refused the code ({status}): {}",
                body["error_description"].as_str().or(body["error"].as_str()).unwrap_or("no reason")
            );
        }
        let id_token = body["id_token"]
            .as_str()
            .context("the provider sent no ID token (is `openid` in the scopes?)")?;
        let identity =
            self.verifier.verify(id_token).await.map_err(|e| anyhow::anyhow!("the ID token: {e}"))?;
        let email =
            crate::api::identity::user_of(ports, &identity).await.map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok((email, next))
    }
}
