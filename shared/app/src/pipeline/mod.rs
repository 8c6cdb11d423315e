//! The pipeline: every message goes ingest -> match -> route -> ticket, each stage an SQS
//! consumer (a Lambda function in AWS, a local worker in `mailroom serve` and `import`),
//! each idempotent under at-least-once delivery (docs/architecture.md).

pub mod crm_log;
pub mod ingest;
pub mod matcher;
pub mod route;
pub mod ticket;

use crate::runtime::consumer::{BatchResult, Worker};
use crate::runtime::ports::Ports;
use mailroom_core::routing::Router;
use mailroom_core::workspace::Workspace;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The body of a route-queue and ticket-queue message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StagePointer {
    pub message_id: String,
    /// Set by the route stage: whether the message was logged on a contact's timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged: Option<bool>,
    /// Set by the route stage when the message was not logged: why
    /// (`mailroom_core::crm_log::NotLogged`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_reason: Option<String>,
}

/// How long a loaded workspace configuration is used before it is read again.
const CONFIG_TTL: Duration = Duration::from_secs(30);

/// A loaded workspace configuration and its compiled rules.
pub type LoadedConfig = Arc<(Workspace, Router)>;

/// The workspace configuration with its compiled router, reloaded after [`CONFIG_TTL`].
pub struct WorkspaceCache {
    ports: Ports,
    cached: Mutex<Option<(Instant, LoadedConfig)>>,
}

impl WorkspaceCache {
    pub fn new(ports: Ports) -> WorkspaceCache {
        WorkspaceCache { ports, cached: Mutex::new(None) }
    }
    pub async fn get(&self) -> anyhow::Result<LoadedConfig> {
        if let Some((at, ws)) = self.cached.lock().ok().and_then(|c| c.clone())
            && at.elapsed() < CONFIG_TTL
        {
            return Ok(ws);
        }
        let ws = crate::workspace::load(&self.ports).await?.unwrap_or_default();
        let router = Router::new(&ws);
        let entry = Arc::new((ws, router));
        if let Ok(mut c) = self.cached.lock() {
            *c = Some((Instant::now(), entry.clone()));
        }
        Ok(entry)
    }
}

/// The three pipeline stages (match, route, ticket) as local workers over their queues:
/// what `mailroom import` and `mailroom serve` run in-process.
#[derive(Clone)]
pub struct Stages {
    pub workers: Vec<Worker>,
}

impl Stages {
    pub fn new(ports: &Ports) -> Stages {
        let workers = vec![
            Worker::new(ports.ingest_queue.clone(), Arc::new(matcher::MatchHandler::new(ports.clone()))),
            Worker::new(ports.route_queue.clone(), Arc::new(route::RouteHandler::new(ports.clone()))),
            Worker::new(ports.ticket_queue.clone(), Arc::new(ticket::TicketHandler::new(ports.clone()))),
        ];
        Stages { workers }
    }

    pub fn retry_base(mut self, d: Duration) -> Stages {
        for w in &mut self.workers {
            w.retry_base = d;
        }
        self
    }

    /// Drains every stage, upstream first, until all queues are empty (failed messages
    /// included: they are retried until they succeed or reach a dead-letter queue).
    pub async fn drain(&self) -> anyhow::Result<BatchResult> {
        self.rounds(None).await
    }

    /// Handles whatever is visible in the queues now, upstream first, without waiting for
    /// delayed retries (for tests that process message by message).
    pub async fn process_visible(&self) -> anyhow::Result<BatchResult> {
        self.rounds(Some(Duration::ZERO)).await
    }

    /// Rounds over the stages until one handles nothing: each stage drained (`None`) or
    /// received from once without waiting.
    async fn rounds(&self, once: Option<Duration>) -> anyhow::Result<BatchResult> {
        let mut total = BatchResult::default();
        loop {
            let mut round = BatchResult::default();
            for w in &self.workers {
                let r = match once {
                    None => w.drain().await?,
                    Some(wait) => w.run_once(wait).await?,
                };
                round.ok += r.ok;
                round.failed += r.failed;
            }
            total.ok += round.ok;
            total.failed += round.failed;
            if round.ok + round.failed == 0 {
                return Ok(total);
            }
        }
    }

    /// Runs every stage until `stop` turns true.
    pub async fn run(&self, stop: tokio::sync::watch::Receiver<bool>) {
        let tasks: Vec<_> = self
            .workers
            .iter()
            .cloned()
            .map(|w| {
                let stop = stop.clone();
                tokio::spawn(async move { w.run(stop).await })
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}
