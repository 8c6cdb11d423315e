//! SMTP submission of a finished MIME message (replies from IMAP inboxes), on lettre with
//! rustls. The message is sent byte for byte as composed, so the Message-ID and every
//! header we signed or recorded stay what they were.

use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use thiserror::Error;

/// How the submission connection is protected: implicit TLS (465), STARTTLS (587), or
/// none (tests and private relays only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    Tls,
    Starttls,
    None,
}

impl SmtpSecurity {
    /// 465 for implicit TLS, 587 (submission) with STARTTLS, 25 without.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::Tls => 465,
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::None => 25,
        }
    }
}

impl std::str::FromStr for SmtpSecurity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "tls" | "ssl" => Ok(SmtpSecurity::Tls),
            "starttls" => Ok(SmtpSecurity::Starttls),
            "none" | "plain" => Ok(SmtpSecurity::None),
            _ => Err(format!("SMTP security {s:?}: use tls, starttls or none")),
        }
    }
}

/// Where and how to submit.
#[derive(Debug, Clone)]
pub struct SmtpEndpoint {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Extra trusted CA certificate (PEM), for a server with a private CA.
    pub extra_ca_pem: Option<String>,
    /// The EHLO name (the inbox's domain).
    pub hello_name: String,
    pub timeout: Duration,
    /// Whether the host may be loopback, link-local or private (`net::resolve`).
    pub allow_private: bool,
}

#[derive(Debug, Error)]
pub enum SmtpError {
    /// A 5xx reply (including a refused login): sending again will not work.
    #[error("the SMTP server {host} refused the message for good: {detail}")]
    Permanent { host: String, detail: String },
    /// A 4xx reply, a timeout or a broken connection: try again later.
    #[error("the SMTP server {host} could not take the message now: {detail}; retrying later")]
    Transient { host: String, detail: String },
    #[error("SMTP settings for {host}: {detail}")]
    Config { host: String, detail: String },
}

impl SmtpError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SmtpError::Transient { .. })
    }
}

/// Submits `raw` for the envelope sender `from` to `recipients`. `credentials` is
/// `(user, password)`; `None` sends without AUTH.
pub async fn send(
    ep: &SmtpEndpoint,
    credentials: Option<(String, String)>,
    from: &str,
    recipients: &[String],
    raw: &[u8],
) -> Result<(), SmtpError> {
    let config = |detail: String| SmtpError::Config { host: ep.host.clone(), detail };
    // The SSRF guard: lettre looks the name up again, so a DNS answer that changes in
    // between is not covered; the IMAP client connects to the checked address itself.
    crate::net::resolve(&ep.host, ep.port, ep.allow_private).await.map_err(config)?;
    let parse = |a: &str| a.parse::<Address>().map_err(|e| config(format!("address {a:?}: {e}")));
    let to = recipients.iter().map(|r| parse(r)).collect::<Result<Vec<_>, _>>()?;
    let envelope =
        lettre::address::Envelope::new(Some(parse(from)?), to).map_err(|e| config(e.to_string()))?;
    let transport = transport(ep, credentials)?;
    match transport.send_raw(&envelope, raw).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_permanent() => {
            Err(SmtpError::Permanent { host: ep.host.clone(), detail: e.to_string() })
        }
        Err(e) => Err(SmtpError::Transient { host: ep.host.clone(), detail: e.to_string() }),
    }
}

/// Connects, says EHLO and logs in with `credentials`, then quits: the settings check of
/// an inbox's SMTP before anything is stored.
pub async fn check(ep: &SmtpEndpoint, credentials: Option<(String, String)>) -> Result<(), SmtpError> {
    let config = |detail: String| SmtpError::Config { host: ep.host.clone(), detail };
    crate::net::resolve(&ep.host, ep.port, ep.allow_private).await.map_err(config)?;
    match transport(ep, credentials)?.test_connection().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(SmtpError::Transient {
            host: ep.host.clone(),
            detail: "the server did not answer NOOP".into(),
        }),
        Err(e) if e.is_permanent() => {
            Err(SmtpError::Permanent { host: ep.host.clone(), detail: e.to_string() })
        }
        Err(e) => Err(SmtpError::Transient { host: ep.host.clone(), detail: e.to_string() }),
    }
}

fn transport(
    ep: &SmtpEndpoint,
    credentials: Option<(String, String)>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, SmtpError> {
    let config = |detail: String| SmtpError::Config { host: ep.host.clone(), detail };
    let tls = match ep.security {
        SmtpSecurity::None => Tls::None,
        sec => {
            let mut b = TlsParameters::builder(ep.host.clone());
            if let Some(pem) = &ep.extra_ca_pem {
                let cert = Certificate::from_pem(pem.as_bytes()).map_err(|e| config(format!("CA: {e}")))?;
                b = b.add_root_certificate(cert);
            }
            let params = b.build_rustls().map_err(|e| config(format!("TLS: {e}")))?;
            if sec == SmtpSecurity::Tls { Tls::Wrapper(params) } else { Tls::Required(params) }
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(ep.host.clone())
        .port(ep.port)
        .tls(tls)
        .timeout(Some(ep.timeout))
        .hello_name(ClientId::Domain(ep.hello_name.clone()));
    if let Some((user, password)) = credentials {
        builder = builder.credentials(Credentials::new(user, password));
    }
    Ok(builder.build())
}
