//! Configuration of the Lambda functions, read once at start from the environment.

use thiserror::Error;

#[derive(Debug, Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

#[derive(Debug, Clone)]
pub struct AwsConfig {
    pub bucket: String,
    pub table: String,
    /// Only the functions that enqueue need it.
    pub ingest_queue_url: Option<String>,
    /// `MAILROOM_ROUTE_QUEUE_URL` (the match function sends to it) and
    /// `MAILROOM_TICKET_QUEUE_URL` (the route function sends to it).
    pub route_queue_url: Option<String>,
    pub ticket_queue_url: Option<String>,
    /// `MAILROOM_SYNC_QUEUE_URL`: webhooks and the scheduler send to it, the sync
    /// function reads it.
    pub sync_queue_url: Option<String>,
    /// `MAILROOM_SEND_QUEUE_URL`: the API sends queued replies to it, the send function
    /// reads it.
    pub send_queue_url: Option<String>,
    /// `MAILROOM_THREAD_KEY`: the secret that signs our thread ids ([`secret`]: in AWS read
    /// from Secrets Manager at start).
    pub thread_key: Vec<u8>,
    /// `MAILROOM_KMS_KEY_ID`: the stack's key that encrypts mailbox credentials; only the
    /// functions that read or store them have it.
    pub kms_key_id: Option<String>,
}

/// The configuration secrets: never in a Lambda's environment in plain text. The
/// template sets `{NAME}_SECRET_ARN`, and [`load_secrets`] reads each from Secrets Manager
/// once at start; locally (`mailroom serve`, tests) `{NAME}` itself may be set.
pub const SECRET_NAMES: [&str; 3] =
    ["MAILROOM_THREAD_KEY", "MAILROOM_GOOGLE_CLIENT_SECRET", "MAILROOM_MS_CLIENT_SECRET"];

static SECRETS: std::sync::OnceLock<std::collections::HashMap<&'static str, String>> =
    std::sync::OnceLock::new();

/// Reads every `{NAME}_SECRET_ARN` of [`SECRET_NAMES`] from Secrets Manager, once per
/// process (a Lambda's init). A secret that is named but cannot be read stops the start:
/// a function without its keys must not run.
pub async fn load_secrets(clients: &mailroom_store::aws::AwsClients) -> Result<(), ConfigError> {
    let mut found = std::collections::HashMap::new();
    for name in SECRET_NAMES {
        if var(name).is_ok() {
            continue;
        }
        let Ok(arn) = var(&format!("{name}_SECRET_ARN")) else { continue };
        let value = clients.secret_string(&arn).await.map_err(|e| ConfigError(format!("{name}: {e}")))?;
        found.insert(name, value);
    }
    let _ = SECRETS.set(found);
    Ok(())
}

/// A configuration secret: `{NAME}` from the environment, else what [`load_secrets`] read.
pub fn secret(name: &str) -> Option<String> {
    var(name)
        .ok()
        .or_else(|| SECRETS.get().and_then(|m| m.get(name)).cloned().filter(|v| !v.trim().is_empty()))
}

fn var(name: &str) -> Result<String, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        _ => Err(ConfigError(format!("{name} is not set (the SAM template sets it for every function)"))),
    }
}

impl AwsConfig {
    pub fn from_env(needs_ingest_queue: bool) -> Result<AwsConfig, ConfigError> {
        Ok(AwsConfig {
            bucket: var("MAILROOM_BUCKET")?,
            table: var("MAILROOM_TABLE")?,
            ingest_queue_url: if needs_ingest_queue { Some(var("MAILROOM_INGEST_QUEUE_URL")?) } else { None },
            thread_key: secret("MAILROOM_THREAD_KEY")
                .ok_or_else(|| {
                    ConfigError(
                        "MAILROOM_THREAD_KEY (or MAILROOM_THREAD_KEY_SECRET_ARN) is not set (the SAM template sets it for every function)".into(),
                    )
                })?
                .into_bytes(),
            route_queue_url: var("MAILROOM_ROUTE_QUEUE_URL").ok(),
            ticket_queue_url: var("MAILROOM_TICKET_QUEUE_URL").ok(),
            sync_queue_url: var("MAILROOM_SYNC_QUEUE_URL").ok(),
            send_queue_url: var("MAILROOM_SEND_QUEUE_URL").ok(),
            kms_key_id: var("MAILROOM_KMS_KEY_ID").ok(),
        })
    }
}

/// One OAuth 2.0 client (authorization code with PKCE, refresh).
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthConfig {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub auth_url: String,
    pub token_url: String,
    pub scopes: Vec<String>,
    /// Where the provider sends the user back: `{public_url}/oauth/callback`.
    pub redirect_url: String,
}

/// Gmail: OAuth client, API and Pub/Sub push settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GoogleConfig {
    pub oauth: OAuthConfig,
    /// `https://gmail.googleapis.com`
    pub api_base: String,
    pub jwks_url: String,
    /// The audience configured on the push subscription (by default the push URL).
    pub pubsub_audience: String,
    /// The service account the push subscription authenticates as.
    pub pubsub_email: String,
    /// `projects/{project}/topics/{topic}` that `users.watch` publishes to.
    pub topic: String,
    pub issuers: Vec<String>,
}

/// Microsoft 365: OAuth client and Graph settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MicrosoftConfig {
    pub oauth: OAuthConfig,
    /// `https://graph.microsoft.com`
    pub api_base: String,
    /// `{public_url}/webhooks/graph` and `{public_url}/webhooks/graph-lifecycle`.
    pub notification_url: String,
    pub lifecycle_url: String,
}

/// The mailbox providers' settings, from the environment (`MAILROOM_GOOGLE_*`,
/// `MAILROOM_MS_*`, `MAILROOM_PUBLIC_URL`). A provider without a client id is not
/// configured: connecting an inbox through it says which variables to set.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvidersConfig {
    /// The address users and providers reach Mailroom at (API Gateway's URL in AWS,
    /// `http://127.0.0.1:PORT` for `mailroom serve`).
    pub public_url: String,
    pub google: GoogleConfig,
    pub microsoft: MicrosoftConfig,
    /// Days of mail a first connection imports (IMAP, Gmail, Graph).
    pub backfill_days: u32,
}

fn var_or(name: &str, default: &str) -> String {
    var(name).unwrap_or_else(|_| default.to_string())
}

impl ProvidersConfig {
    pub fn from_env(default_public_url: &str) -> Result<ProvidersConfig, ConfigError> {
        let public_url = var_or("MAILROOM_PUBLIC_URL", default_public_url).trim_end_matches('/').to_string();
        let redirect_url = format!("{public_url}/oauth/callback");
        let backfill_days = match var("MAILROOM_BACKFILL_DAYS") {
            Ok(v) => v
                .parse()
                .map_err(|_| ConfigError(format!("MAILROOM_BACKFILL_DAYS={v} is not a number of days")))?,
            Err(_) => 14,
        };
        let tenant = var_or("MAILROOM_MS_TENANT", "common");
        let ms_authority = var_or("MAILROOM_MS_AUTHORITY", "https://login.microsoftonline.com");
        let scopes = |name: &str, default: &str| -> Vec<String> {
            var_or(name, default).split_whitespace().map(str::to_string).collect()
        };
        Ok(ProvidersConfig {
            google: GoogleConfig {
                oauth: OAuthConfig {
                    client_id: var_or("MAILROOM_GOOGLE_CLIENT_ID", ""),
                    client_secret: secret("MAILROOM_GOOGLE_CLIENT_SECRET"),
                    auth_url: var_or(
                        "MAILROOM_GOOGLE_AUTH_URL",
                        "https://accounts.google.com/o/oauth2/v2/auth",
                    ),
                    token_url: var_or("MAILROOM_GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token"),
                    scopes: scopes(
                        "MAILROOM_GOOGLE_SCOPES",
                        "openid email https://www.googleapis.com/auth/gmail.readonly https://www.googleapis.com/auth/gmail.send",
                    ),
                    redirect_url: redirect_url.clone(),
                },
                api_base: var_or("MAILROOM_GMAIL_API", "https://gmail.googleapis.com"),
                jwks_url: var_or("MAILROOM_GOOGLE_JWKS_URL", "https://www.googleapis.com/oauth2/v3/certs"),
                pubsub_audience: var_or("MAILROOM_PUBSUB_AUDIENCE", &format!("{public_url}/webhooks/gmail")),
                pubsub_email: var_or("MAILROOM_PUBSUB_EMAIL", ""),
                topic: var_or("MAILROOM_GMAIL_TOPIC", ""),
                issuers: vec!["https://accounts.google.com".into(), "accounts.google.com".into()],
            },
            microsoft: MicrosoftConfig {
                oauth: OAuthConfig {
                    client_id: var_or("MAILROOM_MS_CLIENT_ID", ""),
                    client_secret: secret("MAILROOM_MS_CLIENT_SECRET"),
                    auth_url: format!("{ms_authority}/{tenant}/oauth2/v2.0/authorize"),
                    token_url: format!("{ms_authority}/{tenant}/oauth2/v2.0/token"),
                    scopes: scopes(
                        "MAILROOM_MS_SCOPES",
                        "openid email offline_access https://graph.microsoft.com/Mail.Read https://graph.microsoft.com/Mail.Send",
                    ),
                    redirect_url,
                },
                api_base: var_or("MAILROOM_GRAPH_API", "https://graph.microsoft.com"),
                notification_url: format!("{public_url}/webhooks/graph"),
                lifecycle_url: format!("{public_url}/webhooks/graph-lifecycle"),
            },
            public_url,
            backfill_days,
        })
    }
}

/// The largest message any source fetches whole: `MAILROOM_MAX_MESSAGE_MB` (default 40,
/// above Gmail's 25 MB attachment limit once encoded). A larger one is stored as a
/// placeholder that says so (`mailroom_core::placeholder`). A bad value is reported and
/// the default used: a typo must not stop mail.
pub fn max_message_bytes() -> u64 {
    const DEFAULT_MB: u64 = 40;
    let mb = match std::env::var("MAILROOM_MAX_MESSAGE_MB") {
        Err(_) => DEFAULT_MB,
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                tracing::error!(value = %v, "MAILROOM_MAX_MESSAGE_MB must be a whole number of megabytes above 0; using 40");
                DEFAULT_MB
            }
        },
    };
    mb * 1_000_000
}
