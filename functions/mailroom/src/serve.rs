//! `mailroom serve`: the queue consumers and the HTTP endpoints in one process.

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use mailroom_app::mailbox::routes::WebState;
use mailroom_app::mailbox::sync::SyncHandler;
use mailroom_app::pipeline::ingest::ingest_response;
use mailroom_app::runtime::config::ProvidersConfig;
use mailroom_app::{Ingestor, Ports, RawMail, Stages, Worker};
use mailroom_core::{EmailAddress, Folder};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

#[derive(Clone)]
struct AppState {
    ingestor: Arc<Ingestor>,
    ports: Ports,
    api: Arc<mailroom_app::api::ApiState>,
    /// `MAILROOM_INGEST_TOKEN`: a bearer token for scripts and mail servers that hand
    /// mail to `POST /ingest` (an admin's API token works too).
    ingest_token: Option<String>,
}

pub async fn run(data: &Path, bind: &str, port: u16) -> Result<()> {
    // Settings first, so a bad one stops serve before anything starts.
    let cors = mailroom_app::api::cors_from_env()?;
    let ports = Ports::embedded(data)?;
    let listener = tokio::net::TcpListener::bind((bind, port))
        .await
        .with_context(|| format!("cannot listen on {bind}:{port}"))?;
    let providers = ProvidersConfig::from_env(&format!("http://{}", listener.local_addr()?))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut worker = Stages::new(&ports);
    // The sync queue's consumer (the mailbox-sync function in AWS).
    let sync = SyncHandler { ports: ports.clone(), cfg: Arc::new(providers.clone()) };
    worker.workers.push(Worker::new(ports.sync_queue.clone(), Arc::new(sync)));
    // The send queue's consumer (the send function in AWS): replies the API queued.
    let send = mailroom_app::outbound::send::SendHandler::new(ports.clone(), Arc::new(providers.clone()));
    worker.workers.push(Worker::new(ports.send_queue.clone(), Arc::new(send)));
    let bg = tokio::spawn(async move { worker.run(stop_rx).await });
    // The schedule: the SLA sweep and gauges every minute (the `sweep` function in AWS).
    let sched_ports = ports.clone();
    let schedule = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            match mailroom_app::reports::scheduled(&sched_ports, chrono::Utc::now()).await {
                Ok(o) if !o.breached.is_empty() => tracing::warn!(breached = o.breached.len(), "SLA sweep"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %format!("{e:#}"), "SLA sweep failed"),
            }
            let _ = sched_ports.flush();
        }
    });

    // The IMAP poll, every MAILROOM_IMAP_POLL_SECONDS (the imap-poll function in AWS). The
    // consumers above run the pipeline; each mailbox's lease keeps a `mailroom poll` beside
    // this one from polling it at the same time.
    let interval = crate::inbox::poll_interval()?;
    let poll_ports = ports.clone();
    let imap = tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let opts = mailroom_app::mailbox::imap::PollOptions::default();
        loop {
            tick.tick().await;
            match mailroom_app::mailbox::imap::poll_all(&poll_ports, &opts).await {
                Ok(r) => {
                    for i in r.inboxes.iter().filter(|i| i.fetched > 0 || i.error.is_some()) {
                        tracing::info!(inbox = %i.inbox, outcome = ?i.outcome, fetched = i.fetched, stored = i.stored, error = ?i.error, "IMAP poll");
                    }
                }
                Err(e) => tracing::error!(error = %e, "IMAP poll failed"),
            }
            let _ = poll_ports.flush();
        }
    });

    // Gmail watch and Graph subscription renewal, fallback syncs, health gauges: every
    // MAILROOM_CONNECTIONS_TICK_SECONDS (900; the scheduler function in AWS).
    let tick_every = tick_interval()?;
    let (tick_ports, tick_cfg) = (ports.clone(), providers.clone());
    let connections = tokio::spawn(async move {
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match mailroom_app::mailbox::schedule::connections_tick(
                &tick_ports,
                &tick_cfg,
                chrono::Utc::now(),
            )
            .await
            {
                Ok(t) if t.renewals_failed > 0 => {
                    tracing::warn!(failed = t.renewals_failed, "connection renewals failed")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %format!("{e:#}"), "connections schedule failed"),
            }
            let _ = tick_ports.flush();
        }
    });

    // The event relay: webhooks and notifications, every MAILROOM_EVENTS_RELAY_SECONDS
    // (5; the events function in AWS, every minute).
    let relay = mailroom_app::outbound::relay::Relay::local_from_env(&ports)?;
    let relay_every = seconds_env("MAILROOM_EVENTS_RELAY_SECONDS", 5)?;
    let relay_ports = ports.clone();
    let events = tokio::spawn(async move {
        let mut tick = tokio::time::interval(relay_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            relay.run_once(&relay_ports, chrono::Utc::now()).await;
            let _ = relay_ports.flush();
        }
    });

    // Live updates: chat visitors and agents' pages over WebSockets, fed by the event feed.
    let hub = mailroom_app::live::Hub::new(ports.clone());
    let live = tokio::spawn(hub.clone().run());

    // The API: development tokens (`mailroom token USER`) and, when configured, an OIDC issuer.
    let auth = mailroom_app::api::auth::Authenticator::new(
        Some(mailroom_app::api::auth::LocalIssuer::new(&ports.signer)),
        mailroom_app::api::auth::OidcSettings::from_env()?,
    )?;
    let api = mailroom_app::api::ApiState {
        ports: ports.clone(),
        auth,
        public_url: providers.public_url.clone(),
        providers: providers.clone(),
    };
    let web = WebState::new(ports.clone(), providers).map_err(anyhow::Error::msg)?;
    let ingest_token = match std::env::var("MAILROOM_INGEST_TOKEN") {
        Ok(t) if t.len() >= 16 => Some(t),
        Ok(_) => anyhow::bail!("MAILROOM_INGEST_TOKEN must be at least 16 characters"),
        Err(_) => None,
    };
    let api = Arc::new(api);
    let state = AppState {
        ingestor: Arc::new(Ingestor::new(ports.clone())),
        ports: ports.clone(),
        api: api.clone(),
        ingest_token,
    };
    let app = Router::new()
        .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/ingest", post(ingest))
        .route("/dashboard", get(|| async { axum::response::Html(include_str!("dashboard.html")) }))
        .with_state(state)
        .merge(mailroom_app::mailbox::routes::router(Arc::new(web)))
        .merge(mailroom_app::api::router(api.clone()))
        .merge(mailroom_app::web::router(api, mailroom_app::web::oidc::WebOidc::from_env()?))
        .merge(mailroom_app::outbound::track::router(ports.clone()))
        .merge(mailroom_app::forms::router(ports.clone()))
        .merge(mailroom_app::live::visitor::router(hub.clone()))
        .merge(mailroom_app::live::agent::router(hub));
    let app = mailroom_app::runtime::http::with_problem_fallbacks(app);
    let app = match cors {
        Some(cors) => app.layer(cors),
        None => app,
    };
    tracing::info!(addr = %listener.local_addr()?, data = %data.display(), "mailroom serve is up");
    // The peer address is the tracking routes' client IP when no proxy sets X-Forwarded-For.
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let _ = stop_tx.send(true);
    schedule.abort();
    imap.abort();
    connections.abort();
    events.abort();
    live.abort();
    bg.await?;
    ports.flush()?;
    Ok(())
}

fn tick_interval() -> Result<std::time::Duration> {
    match std::env::var("MAILROOM_CONNECTIONS_TICK_SECONDS") {
        Err(_) => Ok(std::time::Duration::from_secs(900)),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(std::time::Duration::from_secs(n)),
            _ => anyhow::bail!(
                "MAILROOM_CONNECTIONS_TICK_SECONDS={v:?} must be a whole number of seconds above 0"
            ),
        },
    }
}

fn seconds_env(name: &str, default: u64) -> Result<std::time::Duration> {
    match std::env::var(name) {
        Err(_) => Ok(std::time::Duration::from_secs(default)),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(std::time::Duration::from_secs(n)),
            _ => anyhow::bail!("{name}={v:?} must be a whole number of seconds above 0"),
        },
    }
}

#[derive(Deserialize)]
struct IngestParams {
    inbox: Option<String>,
    folder: Option<Folder>,
}

/// Whether a request may hand mail to `POST /ingest`: it carries `MAILROOM_INGEST_TOKEN`
/// or an admin's API token. A web page cannot: browsers send no `Authorization` header
/// cross-site without a CORS preflight, which serve answers for configured origins only,
/// and then still without the token.
async fn may_ingest(st: &AppState, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
    use subtle::ConstantTimeEq;
    let Some(token) = mailroom_app::api::bearer(headers) else {
        return Err((
            StatusCode::UNAUTHORIZED,
            "POST /ingest needs `Authorization: Bearer` with MAILROOM_INGEST_TOKEN or an admin's API token"
                .into(),
        ));
    };
    if let Some(want) = &st.ingest_token
        && bool::from(want.as_bytes().ct_eq(token.as_bytes()))
    {
        return Ok(());
    }
    match mailroom_app::api::caller_from_headers(&st.api, headers).await {
        Ok(c) if c.is_admin() => Ok(()),
        Ok(c) => {
            Err((StatusCode::FORBIDDEN, format!("{} is not an admin: only admins may ingest mail", c.email)))
        }
        Err(_) => Err((StatusCode::UNAUTHORIZED, "the bearer token is not valid for POST /ingest".into())),
    }
}

/// `POST /ingest?inbox=...&folder=inbox|sent` with the raw message as the body: the local
/// twin of the ingest function.
async fn ingest(
    State(st): State<AppState>,
    Query(p): Query<IngestParams>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if let Err((status, detail)) = may_ingest(&st, &headers).await {
        return (status, Json(serde_json::json!({"error": detail}))).into_response();
    }
    let mut mail = RawMail::new(body, "api");
    mail.folder = p.folder;
    let res = match p.inbox.as_deref().map(EmailAddress::parse).transpose() {
        Ok(inbox) => {
            mail.inbox = inbox;
            // Durable before the 202: the client will not send it again.
            ingest_response(&st.ingestor, mail).await.and_then(|r| {
                st.ports.flush()?;
                Ok(r)
            })
        }
        Err(e) => Err(e.into()),
    };
    match res {
        Ok(r) => (StatusCode::ACCEPTED, Json(serde_json::json!(r))).into_response(),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, Json(serde_json::json!({"error": format!("{e:#}")})))
            .into_response(),
    }
}
