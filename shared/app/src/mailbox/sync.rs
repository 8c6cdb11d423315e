//! Mailbox sync requests: webhooks and schedules say which mailbox to sync and why, the
//! sync worker (the `mailbox-sync` function, or `mailroom serve`) does the provider work.
//! Keeping the provider calls out of the webhooks is what lets them answer within
//! Graph's 3 s and Pub/Sub's deadline.

use crate::mailbox::connection::Provider;
pub use crate::mailbox::request::{SourceError, SyncReport, SyncRequest, enqueue};
use crate::runtime::ports::Ports;

/// Runs one sync request: the provider's first connection work (watch, subscriptions)
/// for `connect`, then the sync itself. A mailbox in `reconnect_required` is not
/// touched; a refused credential ends the request without a retry (the connection says
/// why); a transient failure is returned for the queue to retry.
pub async fn handle(
    ports: &Ports,
    cfg: &crate::runtime::config::ProvidersConfig,
    req: &SyncRequest,
) -> Result<SyncReport, SourceError> {
    use crate::mailbox::connection::{self, State};
    let inbox = mailroom_core::EmailAddress::parse(&req.inbox).map_err(|e| {
        SourceError::Transient(format!("sync request for a bad address {:?}: {e}", req.inbox))
    })?;
    let Some(conn) = connection::get(ports, &inbox).await? else {
        tracing::warn!(inbox = %inbox, "sync request for an inbox that is not connected; dropped");
        return Ok(SyncReport::default());
    };
    if conn.state == State::ReconnectRequired && req.reason != "connect" {
        tracing::info!(inbox = %inbox, "not syncing: the inbox must be connected again");
        return Ok(SyncReport::default());
    }
    if conn.provider != req.provider {
        tracing::warn!(inbox = %inbox, "sync request for another provider than the inbox's; dropped");
        return Ok(SyncReport::default());
    }
    let res = match req.provider {
        Provider::Gmail => {
            if req.reason == "connect" {
                crate::mailbox::gmail::on_connect(ports, &cfg.google, &inbox).await
            } else {
                crate::mailbox::gmail::sync(ports, &cfg.google, &inbox, req).await
            }
        }
        Provider::Graph => {
            if req.reason == "connect" {
                crate::mailbox::graph::on_connect(ports, &cfg.microsoft, &inbox).await.map(|r| r.sync)
            } else {
                crate::mailbox::graph::sync(ports, &cfg.microsoft, &inbox, req).await
            }
        }
        Provider::Imap => {
            return Err(SourceError::Transient(
                "IMAP inboxes are polled by imap-poll, not synced from the queue".into(),
            ));
        }
    };
    match res {
        Err(SourceError::Reconnect(why)) => {
            tracing::warn!(inbox = %inbox, why, "sync stopped: the inbox must be connected again");
            Ok(SyncReport::default())
        }
        other => other,
    }
}

/// The sync queue's consumer (the `mailbox-sync` function, and `mailroom serve`).
pub struct SyncHandler {
    pub ports: Ports,
    pub cfg: std::sync::Arc<crate::runtime::config::ProvidersConfig>,
}

#[async_trait::async_trait]
impl crate::runtime::consumer::MessageHandler for SyncHandler {
    async fn handle(&self, body: &str) -> anyhow::Result<()> {
        let req: SyncRequest = match serde_json::from_str(body) {
            Ok(r) => r,
            Err(e) => anyhow::bail!("not a sync request ({e}): {body:.200}"),
        };
        let r = handle(&self.ports, &self.cfg, &req).await?;
        tracing::info!(inbox = %req.inbox, reason = %req.reason, fetched = r.fetched, stored = r.stored, duplicates = r.duplicates, skipped = r.skipped, "mailbox synced");
        self.ports.flush()?;
        Ok(())
    }
}
