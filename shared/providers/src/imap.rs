//! A read-only IMAP client for polling a mailbox (protocols.md §3, §4).
//!
//! What it does and never does:
//! - connects with implicit TLS, STARTTLS or (for tests and private networks) no TLS, over
//!   rustls with the webpki roots plus an optional extra CA, and reads the greeting before
//!   anything else;
//! - logs in with LOGIN, or AUTHENTICATE XOAUTH2 answering a failure challenge with the
//!   empty line SASL requires;
//! - finds INBOX and the folder carrying `\Sent` (RFC 6154) from LIST, never by name;
//! - opens folders with EXAMINE and reads bodies with `BODY.PEEK[]`, so it never sets
//!   `\Seen`, and it has no command that stores flags, expunges, moves or deletes; its one
//!   write is APPEND of a reply Mailroom sent over SMTP to the Sent folder.
//!
//! Every network step has a timeout; errors say whether the credentials were refused (the
//! user must connect again) or the next attempt may work.

use async_imap::types::NameAttribute;
use chrono::{DateTime, NaiveDate, Utc};
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (port 993).
    Tls,
    /// Plain text, then `STARTTLS` before logging in (port 143).
    Starttls,
    /// No encryption at all: only for loopback tests and trusted private networks.
    None,
}

impl Security {
    /// 993 for implicit TLS, 143 otherwise.
    pub fn default_port(self) -> u16 {
        match self {
            Security::Tls => 993,
            Security::Starttls | Security::None => 143,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Security::Tls => "tls",
            Security::Starttls => "starttls",
            Security::None => "none",
        }
    }
}

impl std::str::FromStr for Security {
    type Err = String;
    fn from_str(s: &str) -> Result<Security, String> {
        match s.to_ascii_lowercase().as_str() {
            "tls" | "ssl" => Ok(Security::Tls),
            "starttls" => Ok(Security::Starttls),
            "none" | "plain" => Ok(Security::None),
            _ => Err(format!("security must be tls, starttls or none, not {s:?}")),
        }
    }
}

impl std::fmt::Display for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the server is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// PEM certificates trusted besides the webpki roots (a private CA, a test server's
    /// self-signed certificate).
    pub extra_ca_pem: Option<String>,
    /// TCP connect, TLS handshake, greeting and login, each.
    pub connect_timeout: Duration,
    /// One command, or one response of a command that streams (a FETCH).
    pub command_timeout: Duration,
    /// Whether the host may be loopback, link-local or private (`net::resolve`).
    pub allow_private: bool,
}

impl Endpoint {
    pub fn new(host: impl Into<String>, port: u16, security: Security) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
            security,
            extra_ca_pem: None,
            connect_timeout: Duration::from_secs(15),
            command_timeout: Duration::from_secs(60),
            allow_private: false,
        }
    }
}

/// How to log in.
#[derive(Clone)]
pub enum Credentials {
    Password {
        user: String,
        password: String,
    },
    /// An OAuth 2.0 access token (Gmail, Microsoft 365).
    XOAuth2 {
        user: String,
        access_token: String,
    },
}

impl Credentials {
    pub fn user(&self) -> &str {
        match self {
            Credentials::Password { user, .. } | Credentials::XOAuth2 { user, .. } => user,
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        match self {
            Credentials::Password { user, .. } => write!(f, "Password {{ user: {user:?} }}"),
            Credentials::XOAuth2 { user, .. } => write!(f, "XOAuth2 {{ user: {user:?} }}"),
        }
    }
}

#[derive(Debug, Error)]
pub enum ImapError {
    #[error(
        "the IMAP server refused the credentials of {user} ({detail}): check the user name and password (or token), then connect the inbox again"
    )]
    AuthenticationFailed { user: String, detail: String },
    #[error(
        "the IMAP server does not accept a login on an unencrypted connection ({detail}): connect with --security tls or starttls"
    )]
    EncryptionRequired { detail: String },
    #[error(
        "cannot connect to {host}:{port}: {source}; check the host, the port and that the server is reachable"
    )]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: io::Error,
    },
    #[error(
        "TLS with {host} failed: {detail}; check --security (tls for port 993, starttls for 143) and, for a private CA, pass its certificate with --ca-file"
    )]
    Tls { host: String, detail: String },
    #[error(
        "the IMAP server at {host} did not answer {what} within {secs} s; it may be overloaded or unreachable, the next poll retries"
    )]
    Timeout { host: String, what: String, secs: u64 },
    #[error("IMAP {what} failed: {detail}")]
    Protocol { what: String, detail: String },
    /// The server answered NO: it understood and declined (a folder it cannot open, a
    /// message it cannot read).
    #[error("the IMAP server refused {what}: {detail}")]
    Refused { what: String, detail: String },
    #[error("the IMAP server closed the connection during {what}; the next poll retries")]
    ConnectionLost { what: String },
    #[error("the IMAP server has no INBOX for this user")]
    NoInbox,
    #[error("invalid extra CA certificate: {0}; pass a PEM file with one or more CERTIFICATE blocks")]
    BadCa(String),
}

impl ImapError {
    /// The provider refused us for good: retrying with the same settings cannot work, so the
    /// mailbox must be connected again (`reconnect_required`).
    pub fn is_terminal(&self) -> bool {
        matches!(self, ImapError::AuthenticationFailed { .. } | ImapError::EncryptionRequired { .. })
    }

    fn protocol(what: &str, e: async_imap::error::Error) -> ImapError {
        match e {
            async_imap::error::Error::ConnectionLost => ImapError::ConnectionLost { what: what.into() },
            async_imap::error::Error::No(detail) => ImapError::Refused { what: what.into(), detail },
            e => ImapError::Protocol { what: what.into(), detail: e.to_string() },
        }
    }
}

/// The byte stream under the IMAP session: plain TCP (before STARTTLS, or `none`) or TLS.
#[derive(Debug)]
pub enum ImapStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for ImapStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// XOAUTH2 as SASL wants it: the token on the first challenge, and an empty answer to any
/// later one (the server's error challenge); answering it with the token again, as the
/// naive authenticator does, leaves the server waiting forever (protocols.md §3.4).
struct XOAuth2 {
    initial: Option<String>,
}

impl async_imap::Authenticator for XOAuth2 {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        self.initial.take().unwrap_or_default()
    }
}

/// The two folders Mailroom reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folders {
    pub inbox: String,
    /// The folder with the `\Sent` attribute; `None` when the server marks none.
    pub sent: Option<String>,
    /// Every selectable folder, as the server names it.
    pub all: Vec<String>,
}

/// A folder opened read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderStatus {
    pub uid_validity: u32,
    pub uid_next: Option<u32>,
    pub exists: u32,
}

/// What `UID FETCH … (UID INTERNALDATE RFC822.SIZE)` says of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    pub uid: u32,
    pub internal_date: Option<DateTime<Utc>>,
    pub size: Option<u32>,
}

/// What became of one UID of a body fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Raw(Vec<u8>),
    /// The server answered without this message's body, or refused to give it (it was
    /// expunged meanwhile, or the server cannot read it).
    Missing(String),
}

/// What a body fetch returned.
#[derive(Debug, Default)]
pub struct Bodies {
    pub got: BTreeMap<u32, Body>,
    /// The connection broke (or a command timed out) before every UID was answered; the
    /// session is unusable.
    pub broken: Option<ImapError>,
}

/// A logged-in, read-only session.
pub struct ImapSession {
    session: async_imap::Session<ImapStream>,
    host: String,
    command_timeout: Duration,
}

impl std::fmt::Debug for ImapSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapSession").field("host", &self.host).finish()
    }
}

fn tls_connector(extra_ca_pem: Option<&str>) -> Result<TlsConnector, ImapError> {
    Ok(TlsConnector::from(Arc::new(tls_config_inner(extra_ca_pem)?)))
}

fn tls_config_inner(extra_ca_pem: Option<&str>) -> Result<ClientConfig, ImapError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca_pem {
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let cert = cert.map_err(|e| ImapError::BadCa(e.to_string()))?;
            roots.add(cert).map_err(|e| ImapError::BadCa(e.to_string()))?;
            n += 1;
        }
        if n == 0 {
            return Err(ImapError::BadCa("no CERTIFICATE block found".into()));
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ImapError::BadCa(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

async fn within<T>(
    host: &str,
    what: &str,
    limit: Duration,
    f: impl Future<Output = T>,
) -> Result<T, ImapError> {
    tokio::time::timeout(limit, f).await.map_err(|_| ImapError::Timeout {
        host: host.into(),
        what: what.into(),
        secs: limit.as_secs(),
    })
}

/// Collects a streamed answer, with a timeout on each response rather than the whole:
/// a large FETCH may take long but must keep moving.
async fn collect<T>(
    host: &str,
    what: &str,
    limit: Duration,
    stream: impl Stream<Item = async_imap::error::Result<T>>,
) -> Result<Vec<T>, ImapError> {
    let mut stream = std::pin::pin!(stream);
    let mut out = Vec::new();
    while let Some(item) = within(host, what, limit, stream.next()).await? {
        out.push(item.map_err(|e| ImapError::protocol(what, e))?);
    }
    Ok(out)
}

/// Reads the server greeting: `* OK` (or `* PREAUTH`) lets us go on, `* BYE` is a refusal.
async fn greeting(client: &mut async_imap::Client<ImapStream>, ep: &Endpoint) -> Result<(), ImapError> {
    use async_imap::imap_proto::{Response, Status};
    let res = within(&ep.host, "the greeting", ep.connect_timeout, client.read_response())
        .await?
        .map_err(|e| ImapError::Protocol { what: "greeting".into(), detail: e.to_string() })?
        .ok_or_else(|| ImapError::ConnectionLost { what: "the greeting".into() })?;
    match res.parsed() {
        Response::Data { status: Status::Ok | Status::PreAuth, .. } => Ok(()),
        other => Err(ImapError::Protocol { what: "greeting".into(), detail: format!("{other:?}") }),
    }
}

fn auth_error(user: &str, e: async_imap::error::Error) -> ImapError {
    use async_imap::error::Error;
    match e {
        Error::No(detail) => {
            let upper = detail.to_ascii_uppercase();
            // RFC 5530: these codes say "not now", not "wrong credentials".
            if upper.contains("UNAVAILABLE") || upper.contains("INUSE") {
                ImapError::Protocol { what: "login".into(), detail }
            } else if upper.contains("PRIVACYREQUIRED") {
                ImapError::EncryptionRequired { detail }
            } else {
                ImapError::AuthenticationFailed { user: user.into(), detail }
            }
        }
        e => ImapError::protocol("login", e),
    }
}

impl ImapSession {
    /// Connects, reads the greeting, upgrades with STARTTLS when asked, and logs in.
    pub async fn connect(ep: &Endpoint, creds: &Credentials) -> Result<ImapSession, ImapError> {
        let addrs = within(
            &ep.host,
            "the name lookup",
            ep.connect_timeout,
            crate::net::resolve(&ep.host, ep.port, ep.allow_private),
        )
        .await?
        .map_err(|detail| ImapError::Refused { what: "the connection".into(), detail })?;
        let tcp =
            within(&ep.host, "the connection", ep.connect_timeout, TcpStream::connect(addrs.as_slice()))
                .await?
                .map_err(|source| ImapError::Connect { host: ep.host.clone(), port: ep.port, source })?;
        let _ = tcp.set_nodelay(true);
        let tls = match ep.security {
            Security::None => None,
            _ => Some(tls_connector(ep.extra_ca_pem.as_deref())?),
        };
        let server_name = || {
            rustls_pki_types::ServerName::try_from(ep.host.clone())
                .map_err(|e| ImapError::Tls { host: ep.host.clone(), detail: e.to_string() })
        };
        let handshake = |tls: TlsConnector, tcp: TcpStream| async move {
            let name = server_name()?;
            within(&ep.host, "the TLS handshake", ep.connect_timeout, tls.connect(name, tcp))
                .await?
                .map(|s| ImapStream::Tls(Box::new(s)))
                .map_err(|e| ImapError::Tls { host: ep.host.clone(), detail: e.to_string() })
        };
        let client = match (ep.security, tls) {
            (Security::Tls, Some(tls)) => {
                let mut c = async_imap::Client::new(handshake(tls, tcp).await?);
                greeting(&mut c, ep).await?;
                c
            }
            (Security::Starttls, Some(tls)) => {
                let mut c = async_imap::Client::new(ImapStream::Plain(tcp));
                greeting(&mut c, ep).await?;
                within(
                    &ep.host,
                    "STARTTLS",
                    ep.command_timeout,
                    c.run_command_and_check_ok("STARTTLS", None),
                )
                .await?
                .map_err(|e| ImapError::Tls {
                    host: ep.host.clone(),
                    detail: format!("the server refused STARTTLS: {e}"),
                })?;
                let ImapStream::Plain(tcp) = c.into_inner() else {
                    return Err(ImapError::Tls { host: ep.host.clone(), detail: "already encrypted".into() });
                };
                // No second greeting after STARTTLS (RFC 3501 §6.2.1).
                async_imap::Client::new(handshake(tls, tcp).await?)
            }
            _ => {
                let mut c = async_imap::Client::new(ImapStream::Plain(tcp));
                greeting(&mut c, ep).await?;
                c
            }
        };
        let user = creds.user().to_string();
        let session = match creds {
            Credentials::Password { user, password } => {
                within(&ep.host, "the login", ep.connect_timeout, client.login(user, password)).await?
            }
            Credentials::XOAuth2 { user, access_token } => {
                let initial = Some(format!("user={user}\x01auth=Bearer {access_token}\x01\x01"));
                within(
                    &ep.host,
                    "the login",
                    ep.connect_timeout,
                    client.authenticate("XOAUTH2", XOAuth2 { initial }),
                )
                .await?
            }
        }
        .map_err(|(e, _client)| auth_error(&user, e))?;
        Ok(ImapSession { session, host: ep.host.clone(), command_timeout: ep.command_timeout })
    }

    /// INBOX, and the folder the server marks `\Sent` (RFC 6154). Names are localised
    /// (Gmail's `[Gmail]/Sent Mail`, `[Gmail]/Gesendet`), so only the attribute counts.
    pub async fn folders(&mut self) -> Result<Folders, ImapError> {
        let (host, limit) = (self.host.clone(), self.command_timeout);
        let stream = within(&host, "LIST", limit, self.session.list(Some(""), Some("*")))
            .await?
            .map_err(|e| ImapError::protocol("LIST", e))?;
        let names = collect(&host, "LIST", limit, stream).await?;
        self.confirm("LIST").await?;
        let selectable = |n: &&async_imap::types::Name| !n.attributes().contains(&NameAttribute::NoSelect);
        let inbox = names
            .iter()
            .filter(selectable)
            .find(|n| n.name().eq_ignore_ascii_case("INBOX"))
            .map(|n| n.name().to_string())
            .ok_or(ImapError::NoInbox)?;
        let sent = names
            .iter()
            .filter(selectable)
            .find(|n| n.attributes().contains(&NameAttribute::Sent))
            .map(|n| n.name().to_string());
        let all = names.iter().filter(selectable).map(|n| n.name().to_string()).collect();
        Ok(Folders { inbox, sent, all })
    }

    /// Opens a folder read-only (EXAMINE): nothing we do afterwards can change its flags.
    pub async fn examine(&mut self, folder: &str) -> Result<FolderStatus, ImapError> {
        let mb = {
            let (host, limit) = (self.host.clone(), self.command_timeout);
            within(&host, "EXAMINE", limit, self.session.examine(folder))
                .await?
                .map_err(|e| ImapError::protocol(&format!("EXAMINE {folder}"), e))?
        };
        let uid_validity = mb.uid_validity.ok_or_else(|| ImapError::Protocol {
            what: format!("EXAMINE {folder}"),
            detail: "the server sent no UIDVALIDITY".into(),
        })?;
        Ok(FolderStatus { uid_validity, uid_next: mb.uid_next, exists: mb.exists })
    }

    /// UIDs of the open folder's messages received on or after `day` (by INTERNALDATE),
    /// ascending: the bounded first backfill.
    pub async fn uids_since(&mut self, day: NaiveDate) -> Result<Vec<u32>, ImapError> {
        let query = format!("SINCE {}", day.format("%-d-%b-%Y"));
        let (host, limit) = (self.host.clone(), self.command_timeout);
        let set = within(&host, "UID SEARCH", limit, self.session.uid_search(&query))
            .await?
            .map_err(|e| ImapError::protocol("UID SEARCH", e))?;
        self.confirm("UID SEARCH").await?;
        let mut uids: Vec<u32> = set.into_iter().collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// The highest UID in the open folder (`None` when it is empty).
    pub async fn max_uid(&mut self) -> Result<Option<u32>, ImapError> {
        let (host, limit) = (self.host.clone(), self.command_timeout);
        let stream = within(&host, "FETCH *", limit, self.session.fetch("*", "(UID)"))
            .await?
            .map_err(|e| ImapError::protocol("FETCH *", e))?;
        let max = collect(&host, "FETCH *", limit, stream).await?.iter().filter_map(|f| f.uid).max();
        self.confirm("FETCH *").await?;
        Ok(max)
    }

    /// Messages with a UID above `last_uid`, ascending. `UID FETCH n:*` always returns the
    /// folder's last message even when its UID is below n (RFC 3501 §6.4.8), so every UID
    /// <= `last_uid` is dropped here.
    pub async fn messages_after(&mut self, last_uid: u32) -> Result<Vec<MessageMeta>, ImapError> {
        let Some(from) = last_uid.checked_add(1) else { return Ok(vec![]) };
        let (host, limit) = (self.host.clone(), self.command_timeout);
        let what = "UID FETCH (UID INTERNALDATE RFC822.SIZE)";
        let stream = within(
            &host,
            what,
            limit,
            self.session.uid_fetch(format!("{from}:*"), "(UID INTERNALDATE RFC822.SIZE)"),
        )
        .await?
        .map_err(|e| ImapError::protocol(what, e))?;
        let fetches = collect(&host, what, limit, stream).await?;
        self.confirm(what).await?;
        let mut by_uid = BTreeMap::new();
        for f in &fetches {
            if let Some(uid) = f.uid.filter(|u| *u > last_uid) {
                by_uid.insert(
                    uid,
                    MessageMeta {
                        uid,
                        internal_date: f.internal_date().map(|d| d.with_timezone(&Utc)),
                        size: f.size,
                    },
                );
            }
        }
        Ok(by_uid.into_values().collect())
    }

    /// Bodies of `uids` with `BODY.PEEK[]` (never sets `\Seen`), in one command. A UID the
    /// answer lacks is asked for alone before it is called [`Body::Missing`], so one
    /// unreadable message costs only itself.
    ///
    /// Some servers drop the connection on a message they cannot read (dovecot answers
    /// `* BYE FETCH failed`). Then `broken` holds the error and every UID not in `got` went
    /// unanswered: the caller decides whether the first of them is to blame.
    pub async fn bodies(&mut self, uids: &[u32]) -> Bodies {
        let set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let (mut raw, broken) = self.fetch_bodies(&set).await;
        let mut got = BTreeMap::new();
        if broken.is_some() {
            got.extend(raw.into_iter().map(|(u, b)| (u, Body::Raw(b))));
            return Bodies { got, broken };
        }
        for uid in uids {
            if let Some(b) = raw.remove(uid) {
                got.insert(*uid, Body::Raw(b));
                continue;
            }
            if uids.len() == 1 {
                got.insert(*uid, Body::Missing("the server returned no body for this UID".into()));
                continue;
            }
            let (mut one, broken) = self.fetch_bodies(&uid.to_string()).await;
            if broken.is_some() {
                return Bodies { got, broken };
            }
            let body = match one.remove(uid) {
                Some(b) => Body::Raw(b),
                None => Body::Missing("the server returned no body for this UID".into()),
            };
            got.insert(*uid, body);
        }
        Bodies { got, broken: None }
    }

    /// The header block of one message (`BODY.PEEK[HEADER]`, never sets `\Seen`): what
    /// is kept of a message too large to fetch whole. Empty when the server gives none.
    pub async fn header(&mut self, uid: u32) -> Result<Vec<u8>, ImapError> {
        let (host, limit) = (self.host.clone(), self.command_timeout);
        let what = "UID FETCH (UID BODY.PEEK[HEADER])";
        let mut out = Vec::new();
        let mut stream =
            within(&host, what, limit, self.session.uid_fetch(uid.to_string(), "(UID BODY.PEEK[HEADER])"))
                .await?
                .map_err(|e| ImapError::protocol(what, e))?;
        while let Some(f) = within(&host, what, limit, stream.next()).await? {
            let f = f.map_err(|e| ImapError::protocol(what, e))?;
            if f.uid == Some(uid)
                && let Some(h) = f.header()
            {
                out = h.to_vec();
            }
        }
        drop(stream);
        self.confirm(what).await?;
        Ok(out)
    }

    /// One `UID FETCH … (UID BODY.PEEK[])`: the bodies it returned, and the error if the
    /// connection broke. async-imap ends the stream at the tagged reply whatever its
    /// status, and at end of file too, so a NOOP afterwards tells a complete answer from a
    /// cut one.
    async fn fetch_bodies(&mut self, set: &str) -> (BTreeMap<u32, Vec<u8>>, Option<ImapError>) {
        let (host, limit) = (self.host.clone(), self.command_timeout);
        let what = "UID FETCH (UID BODY.PEEK[])";
        let mut out = BTreeMap::new();
        // uid_fetch's stream is Unpin: no pinning, so it can be dropped before the NOOP.
        let mut stream =
            match within(&host, what, limit, self.session.uid_fetch(set, "(UID BODY.PEEK[])")).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return (out, Some(ImapError::protocol(what, e))),
                Err(e) => return (out, Some(e)),
            };
        loop {
            match within(&host, what, limit, stream.next()).await {
                Ok(Some(Ok(f))) => {
                    if let (Some(uid), Some(body)) = (f.uid, f.body()) {
                        out.insert(uid, body.to_vec());
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => return (out, Some(ImapError::protocol(what, e))),
                Err(e) => return (out, Some(e)),
            }
        }
        drop(stream);
        let alive = self.confirm(what).await.err();
        (out, alive)
    }

    /// Fails unless the connection still answers: async-imap ends a SEARCH or FETCH
    /// answer quietly at end of file, so an empty or short answer is only believed once a
    /// NOOP after it comes back (an empty backfill taken from a dropped connection would
    /// otherwise move the cursor past mail we never read).
    async fn confirm(&mut self, what: &str) -> Result<(), ImapError> {
        let (host, limit) = (self.host.clone(), self.command_timeout);
        within(&host, "NOOP", limit, self.noop_answered())
            .await?
            .map_err(|e| ImapError::ConnectionLost { what: format!("{what} ({e})") })
    }

    /// A NOOP that counts only when its own tagged OK arrives. async-imap's `noop` returns
    /// `Ok` at end of file (it reads until the stream ends or the tag appears), so after a
    /// `* BYE` the server's close could pass for a live connection when the close won the
    /// race against our NOOP; this reads the answer itself.
    async fn noop_answered(&mut self) -> Result<(), String> {
        use async_imap::imap_proto::{Response, Status};
        let id = self.session.run_command("NOOP").await.map_err(|e| e.to_string())?;
        loop {
            let resp = match self.session.read_response().await {
                Ok(Some(r)) => r,
                Ok(None) => return Err("the server closed the connection".into()),
                Err(e) => return Err(e.to_string()),
            };
            match resp.parsed() {
                Response::Done { tag, status, outcome } if *tag == id => {
                    return match status {
                        Status::Ok => Ok(()),
                        other => Err(format!(
                            "NOOP answered {other:?}: {}",
                            outcome.information.as_deref().unwrap_or("")
                        )),
                    };
                }
                Response::Data { status: Status::Bye, outcome } => {
                    return Err(format!("BYE {}", outcome.information.as_deref().unwrap_or("")));
                }
                _ => {}
            }
        }
    }

    /// APPENDs a message we sent to `folder`, marked `\Seen` (what a mail client does after
    /// an SMTP submission, so the mailbox's Sent folder shows the reply).
    pub async fn append(&mut self, folder: &str, raw: &[u8]) -> Result<(), ImapError> {
        let (host, limit) = (self.host.clone(), self.command_timeout);
        within(&host, "APPEND", limit, self.session.append(folder, Some("(\\Seen)"), None, raw))
            .await?
            .map_err(|e| ImapError::protocol("APPEND", e))
    }

    /// Says goodbye; errors are of no interest any more.
    pub async fn logout(mut self) {
        let _ = self.cmd_logout().await;
    }

    async fn cmd_logout(&mut self) -> Result<(), ImapError> {
        let (host, limit) = (self.host.clone(), self.command_timeout.min(Duration::from_secs(5)));
        within(&host, "LOGOUT", limit, self.session.logout())
            .await?
            .map_err(|e| ImapError::protocol("LOGOUT", e))
    }

    /// The underlying async-imap session, for tools and tests that need a command this
    /// client deliberately lacks (the tests APPEND with a chosen INTERNALDATE). Mailroom
    /// itself never writes to a mailbox.
    pub fn raw(&mut self) -> &mut async_imap::Session<ImapStream> {
        &mut self.session
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_imap::Authenticator;

    #[test]
    fn xoauth2_sends_the_token_once_then_the_empty_answer() {
        let mut a = XOAuth2 { initial: Some("user=a@b.test\x01auth=Bearer t\x01\x01".into()) };
        assert_eq!(a.process(b""), "user=a@b.test\x01auth=Bearer t\x01\x01");
        assert_eq!(a.process(br#"{"status":"401"}"#), "");
        assert_eq!(a.process(b""), "");
    }

    #[test]
    fn a_refused_login_is_terminal_and_unavailable_is_not() {
        use async_imap::error::Error;
        let e = auth_error("u", Error::No("code: Some(AuthenticationFailed), info: None".into()));
        assert!(e.is_terminal(), "{e}");
        let e = auth_error("u", Error::No("code: None, info: Some(\"[UNAVAILABLE] try later\")".into()));
        assert!(!e.is_terminal(), "{e}");
        let e = auth_error("u", Error::No("[PRIVACYREQUIRED] Plaintext authentication disallowed".into()));
        assert!(matches!(e, ImapError::EncryptionRequired { .. }) && e.is_terminal());
        assert!(!auth_error("u", Error::ConnectionLost).is_terminal());
    }

    /// A server that logs in and opens INBOX, then answers the next command with
    /// `* BYE` (or nothing) and closes its side, the way dovecot does on a message it
    /// cannot read.
    async fn server_that_drops_after_examine(bye: bool) -> u16 {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            w.write_all(b"* OK [CAPABILITY IMAP4rev1] ready\r\n").await.unwrap();
            while let Ok(Some(line)) = lines.next_line().await {
                let (tag, cmd) = line.split_once(' ').unwrap();
                let reply = if cmd.starts_with("LOGIN") {
                    format!("{tag} OK logged in\r\n")
                } else if cmd.starts_with("EXAMINE") {
                    format!(
                        "* 3 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 4] ok\r\n{tag} OK [READ-ONLY] done\r\n"
                    )
                } else {
                    if bye {
                        w.write_all(b"* BYE FETCH failed\r\n").await.unwrap();
                    }
                    // Half-close: the client sees end of file, and whatever it writes
                    // next is still read here, so no reset tells it anything sooner.
                    w.shutdown().await.unwrap();
                    while let Ok(Some(_)) = lines.next_line().await {}
                    return;
                };
                w.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        port
    }

    #[tokio::test]
    async fn an_answer_cut_off_by_a_closed_connection_is_an_error_not_an_empty_result() {
        let creds = Credentials::Password { user: "u".into(), password: "p".into() };
        for bye in [true, false] {
            let mut ep =
                Endpoint::new("127.0.0.1", server_that_drops_after_examine(bye).await, Security::None);
            ep.allow_private = true;
            let mut s = ImapSession::connect(&ep, &creds).await.unwrap();
            assert_eq!(s.examine("INBOX").await.unwrap().uid_validity, 7);
            let day = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
            let e = s.uids_since(day).await.expect_err("an empty SEARCH from a dead connection");
            assert!(matches!(e, ImapError::ConnectionLost { .. }), "{e:?}");

            let mut ep =
                Endpoint::new("127.0.0.1", server_that_drops_after_examine(bye).await, Security::None);
            ep.allow_private = true;
            let mut s = ImapSession::connect(&ep, &creds).await.unwrap();
            s.examine("INBOX").await.unwrap();
            assert!(s.messages_after(0).await.is_err(), "bye={bye}");

            let mut ep =
                Endpoint::new("127.0.0.1", server_that_drops_after_examine(bye).await, Security::None);
            ep.allow_private = true;
            let mut s = ImapSession::connect(&ep, &creds).await.unwrap();
            s.examine("INBOX").await.unwrap();
            let b = s.bodies(&[1, 2]).await;
            assert!(b.got.is_empty() && b.broken.is_some(), "bye={bye}: {:?}", b.broken);
        }
    }

    #[test]
    fn security_parses() {
        assert_eq!("TLS".parse::<Security>().unwrap(), Security::Tls);
        assert_eq!("starttls".parse::<Security>().unwrap(), Security::Starttls);
        assert!("ssl3".parse::<Security>().is_err());
    }

    #[test]
    fn a_bad_extra_ca_is_a_clear_error() {
        assert!(matches!(tls_connector(Some("not a pem")), Err(ImapError::BadCa(_))));
        assert!(tls_connector(None).is_ok());
    }
}
