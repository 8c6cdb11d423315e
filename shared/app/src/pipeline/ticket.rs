//! The `ticket` stage: one ticket per conversation that has a customer message, where the
//! conversation's inbox enables ticket automation, in the pipeline and initial stage the
//! routing rule or the inbox names, with the routed team and assignee as owner. A
//! customer reply to a closed ticket reopens it; agent replies and noise (auto-replies,
//! bounces, list mail) never create or reopen one.
//!
//! Idempotent: the ticket is created with a conditional put on `ticket#{conversation}`,
//! and a reopen is conditional on the ticket being closed by an earlier message.

use crate::keys;
use crate::pipeline::{StagePointer, WorkspaceCache};
use crate::runtime::consumer::MessageHandler;
use crate::runtime::ports::Ports;
use crate::thread::{ConversationRoot, Threader};
use anyhow::Context;
use async_trait::async_trait;
use mailroom_store::{Cond, StoreError, Update};
use serde_json::{Value, json};

pub struct TicketHandler {
    ports: Ports,
    config: WorkspaceCache,
}

use crate::keys::item_str as s;

impl TicketHandler {
    pub fn new(ports: Ports) -> TicketHandler {
        TicketHandler { config: WorkspaceCache::new(ports.clone()), ports }
    }

    async fn process(&self, ptr: &StagePointer) -> anyhow::Result<()> {
        let msg = crate::pipeline::route::recorded_message(&self.ports, &ptr.message_id).await?;
        let conv_id = s(&msg, "conversation").context("message has no conversation")?;
        // The root is read once for the steps below (each used to read it again, and the
        // ticket twice, docs/performance.md).
        let root = Threader::new(&self.ports).find(&conv_id).await?;
        let cfg = self.config.get().await?;
        let ticket = self.ticket(ptr, &cfg.0, &msg, &root).await?;
        self.confirm_ticket(&msg, ticket.as_ref()).await?;
        self.reopen_conversation(&cfg.0, &msg, &root).await?;
        // Reports last, so they see the ticket, the routing and the status (a
        // verification's conversation is left out there, in `reports::refresh`). They
        // read the root and the ticket again, after their own state: their write is
        // conditional on that state only, so a change made since the reads above (a
        // close, a merge, a ticket created by another message), whose own refresh has
        // already run, would otherwise be undone.
        let logged = ptr.logged.map(|l| (l, ptr.log_reason.clone()));
        crate::reports::record_message(&self.ports, &cfg.0, &msg, logged).await?;
        // A conversation merged into another counts for nobody's load any more.
        crate::load::settle_merged(&self.ports, &root).await
    }

    /// Adds the conversation's ticket to the email-log confirmation of a logged message.
    async fn confirm_ticket(
        &self,
        msg: &mailroom_store::Item,
        ticket: Option<&mailroom_store::Item>,
    ) -> anyhow::Result<()> {
        let Some(mut entry) =
            crate::records::Message::from_item(msg).log.filter(|e| e.logged && e.ticket.is_none())
        else {
            return Ok(());
        };
        let Some(ticket) = ticket else {
            return Ok(());
        };
        entry.ticket = s(ticket, "id");
        let key = keys::message(&s(msg, "message_id").context("message item has no message_id")?);
        self.ports
            .table
            .update(&key, vec![Update::Set("log".into(), serde_json::to_value(&entry)?)], None)
            .await?;
        Ok(())
    }

    /// A customer's message that arrived after the conversation was closed reopens it (an
    /// older one, redelivered or late, does not).
    async fn reopen_conversation(
        &self,
        ws: &mailroom_core::workspace::Workspace,
        msg: &mailroom_store::Item,
        root: &ConversationRoot,
    ) -> anyhow::Result<()> {
        if s(msg, "direction").as_deref() == Some("outbound") || s(msg, "kind").as_deref() != Some("normal") {
            return Ok(());
        }
        if s(&root.item, "status").as_deref() != Some("closed") {
            return Ok(());
        }
        let closed_at = crate::reports::ts(root.item.get("closed_at"));
        let arrived = crate::reports::message_time(msg);
        if let (Some(c), Some(a)) = (closed_at, arrived)
            && a > c
        {
            crate::conversations::set_status(&self.ports, ws, &root.id, false, None, self.ports.clock.now())
                .await?;
            tracing::info!(conversation = %root.id, "conversation reopened by a customer message");
        }
        Ok(())
    }

    /// Creates or reopens the conversation's ticket where this message calls for it, and
    /// returns the ticket as it now is (none when the conversation has none).
    async fn ticket(
        &self,
        ptr: &StagePointer,
        ws: &mailroom_core::workspace::Workspace,
        msg: &mailroom_store::Item,
        root: &ConversationRoot,
    ) -> anyhow::Result<Option<mailroom_store::Item>> {
        let table = &self.ports.table;
        let key = keys::ticket_key(&root.id);
        let current = table.get(&key).await?;
        let wants_ticket = s(msg, "direction").as_deref() != Some("outbound")
            && s(msg, "kind").as_deref() == Some("normal")
            && root.item.get("no_ticket").and_then(Value::as_bool) != Some(true)
            // No customer, no ticket (e.g. mail between our own addresses).
            && !root.item.get("contact_email").is_none_or(Value::is_null);
        let inbox = s(&root.item, "inbox").unwrap_or_default();
        let inbox_cfg = ws.inboxes.iter().find(|i| i.address.eq_ignore_ascii_case(&inbox));
        let Some(inbox_cfg) = inbox_cfg.filter(|i| wants_ticket && i.tickets.enabled) else {
            return Ok(current);
        };
        let pipeline_id = s(&root.item, "rule_pipeline").or_else(|| inbox_cfg.tickets.pipeline.clone());
        let Some(pipeline) = pipeline_id.as_deref().and_then(|p| ws.pipeline(p)) else {
            tracing::warn!(inbox, "ticket automation is on but the inbox has no valid pipeline");
            return Ok(current);
        };
        let stage = s(&root.item, "rule_stage")
            .and_then(|st| pipeline.stage(&st).map(|x| x.id.clone()))
            .or_else(|| inbox_cfg.initial_stage(ws).map(|x| x.id.clone()))
            .or_else(|| pipeline.initial_stage().map(|x| x.id.clone()))
            .context("pipeline has no stages")?;
        let date = s(msg, "date").unwrap_or_default();
        let key = keys::ticket_key(&root.id);
        match current {
            None => {
                let now = self.ports.clock.now().to_rfc3339();
                let mut item = crate::tickets::new_ticket(&root.id, &root.item, &pipeline.id, &stage, &now);
                item.insert("created_by_message".into(), json!(ptr.message_id));
                match table.put(item.clone(), Some(Cond::NotExists)).await {
                    Ok(()) => {
                        tracing::info!(conversation = %root.id, pipeline = %pipeline.id, stage, "ticket created");
                        Ok(Some(item))
                    }
                    // Another delivery created it first.
                    Err(StoreError::ConditionFailed) => Ok(table.get(&key).await?),
                    Err(e) => Err(e.into()),
                }
            }
            // Only a message newer than the close reopens (a redelivered older one does not).
            Some(t)
                if s(&t, "status").as_deref() == Some("closed")
                    && date > s(&t, "closed_at").unwrap_or_default() =>
            {
                let res = table
                    .update(
                        &key,
                        vec![
                            Update::Set("status".into(), json!("open")),
                            Update::Set("stage".into(), json!(stage)),
                            // SLA pauses are measured on the stage log.
                            Update::Append(
                                "stage_log".into(),
                                vec![json!([stage, self.ports.clock.now().to_rfc3339()])],
                            ),
                            Update::Set("reopened_by_message".into(), json!(ptr.message_id)),
                            Update::Add("reopened".into(), 1),
                        ],
                        Some(Cond::Eq("status".into(), json!("closed"))),
                    )
                    .await;
                match res {
                    Ok(t) => Ok(Some(t)),
                    Err(StoreError::ConditionFailed) => Ok(table.get(&key).await?),
                    Err(e) => Err(e.into()),
                }
            }
            t => Ok(t),
        }
    }
}

#[async_trait]
impl MessageHandler for TicketHandler {
    async fn handle(&self, body: &str) -> anyhow::Result<()> {
        let ptr: StagePointer =
            serde_json::from_str(body).context("ticket queue message is not a stage pointer")?;
        self.process(&ptr).await
    }
}
