//! `mailroom-api`: the HTTP API (`mailroom_app::api::router`) behind API Gateway's HTTP
//! API. API Gateway's JWT authorizer checks the bearer token first; the router checks it
//! again with the same rules (issuer, audience, signature from the JWKS), so a route
//! left without the authorizer by mistake is still protected. No development tokens here:
//! only the OIDC issuer the template configures.

use lambda_http::Error;
use mailroom_app::api::{ApiState, auth};
use mailroom_app::runtime::config::{AwsConfig, ProvidersConfig};
use mailroom_app::{Ports, runtime::telemetry};
use mailroom_store::aws::AwsClients;
use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init(true, "info");
    let clients = AwsClients::from_env().await;
    mailroom_app::runtime::config::load_secrets(&clients).await?;
    let cfg = AwsConfig::from_env(false)?;
    let Some(oidc) = auth::OidcSettings::from_env()? else {
        return Err(
            "MAILROOM_OIDC_ISSUER is not set: the API would accept no token at all. The SAM template \
             sets it (the stack's Cognito user pool, or the OidcIssuer parameter)"
                .into(),
        );
    };
    let public_url = std::env::var("MAILROOM_PUBLIC_URL")
        .map_err(|_| "MAILROOM_PUBLIC_URL is not set (the SAM template sets it to the HTTP API's URL)")?;
    let providers = ProvidersConfig::from_env(&public_url)?;
    let ports = Ports::aws(&clients, &cfg);
    let auth = auth::Authenticator::new(None, Some(oidc))?;
    let state = Arc::new(ApiState { ports, auth, providers, public_url });
    // The JSON API and the web inbox (`/app/`, session cookies) on one function.
    let app = mailroom_app::api::router(state.clone())
        .merge(mailroom_app::web::router(state, mailroom_app::web::oidc::WebOidc::from_env()?))
        .merge(mailroom_app::live::visitor::script_router());
    lambda_http::run(mailroom_app::runtime::http::with_problem_fallbacks(app)).await
}
