//! `mailroom serve`: the queue consumers and the HTTP endpoints in one process.

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::{get, post};
use mailroom_app::ingest::ingest_response;
use mailroom_app::{Ingestor, Ports, RawMail, Stages};
use mailroom_core::{EmailAddress, Folder};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

#[derive(Clone)]
struct AppState {
    ingestor: Arc<Ingestor>,
    ports: Ports,
}

pub async fn run(data: &Path, bind: &str, port: u16) -> Result<()> {
    let ports = Ports::embedded(data)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = Stages::new(&ports);
    let bg = tokio::spawn(async move { worker.run(stop_rx).await });

    let state = AppState { ingestor: Arc::new(Ingestor::new(ports.clone())), ports: ports.clone() };
    let app = Router::new()
        .route("/health", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/ingest", post(ingest))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind((bind, port))
        .await
        .with_context(|| format!("cannot listen on {bind}:{port}"))?;
    tracing::info!(addr = %listener.local_addr()?, data = %data.display(), "mailroom serve is up");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    let _ = stop_tx.send(true);
    bg.await?;
    ports.flush()?;
    Ok(())
}

#[derive(Deserialize)]
struct IngestParams {
    inbox: Option<String>,
    folder: Option<Folder>,
}

/// `POST /ingest?inbox=...&folder=inbox|sent` with the raw message as the body: the local
/// twin of the ingest function.
async fn ingest(State(st): State<AppState>, Query(p): Query<IngestParams>, body: Bytes) -> impl IntoResponse {
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
