//! Ticket commands: a conversation's ticket created (by the ticket stage's automation or
//! by hand) and moved between the stages of its pipeline. The API and the stage both call
//! these; a ticket in a closed stage closes its conversation, leaving one reopens it.

use crate::keys;
use crate::keys::item_str as s;
use crate::runtime::ports::Ports;
use mailroom_core::workspace::{Pipeline, Stage, Workspace};
use mailroom_store::{Cond, Item, StoreError, Update};
use serde_json::{Value, json};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TicketError {
    /// The request cannot be met as it is (a pipeline or stage that does not exist).
    #[error("{0}")]
    Invalid(String),
    /// The conversation's state says no (it has a ticket, or has none).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<StoreError> for TicketError {
    fn from(e: StoreError) -> TicketError {
        TicketError::Other(e.into())
    }
}

/// A new open ticket of conversation `root` (its item `conv`) in `pipeline` at `stage`,
/// owned like the conversation; the caller adds what created it and puts it with
/// `Cond::NotExists` (one ticket per conversation).
pub fn new_ticket(
    root: &str,
    conv: &mailroom_store::Item,
    pipeline: &str,
    stage: &str,
    now: &str,
) -> mailroom_store::Item {
    let mut item = keys::ticket_key(root).item();
    item.insert("id".into(), json!(format!("t{}", root.get(1..).unwrap_or_default())));
    item.insert("conversation".into(), json!(root));
    item.insert("pipeline".into(), json!(pipeline));
    item.insert("stage".into(), json!(stage));
    item.insert("status".into(), json!("open"));
    for (field, from) in
        [("owner", "assignee"), ("team", "team"), ("priority", "priority"), ("inbox", "inbox")]
    {
        item.insert(field.into(), conv.get(from).cloned().unwrap_or(Value::Null));
    }
    item.insert("created_at".into(), json!(now));
    // Every stage the ticket enters, with when: SLA pauses are measured on it.
    item.insert("stage_log".into(), json!([[stage, now]]));
    // A verification's ticket stays out of the ticket lists.
    let index = if conv.get("test").is_some() { keys::TEST_INDEX_PK } else { keys::TICKETS_INDEX_PK };
    item.insert("gsi1pk".into(), json!(index));
    if let Some(run) = conv.get("test") {
        item.insert("test".into(), run.clone());
    }
    item.insert("gsi1sk".into(), json!(format!("{now}#{root}")));
    item
}

/// The stage `wanted` of `pipeline`, or why not (naming the stages it has).
pub fn stage_of<'p>(pipeline: &'p Pipeline, wanted: &str) -> Result<&'p Stage, TicketError> {
    pipeline.stage(wanted).ok_or_else(|| {
        let ids: Vec<&str> = pipeline.stages.iter().map(|x| x.id.as_str()).collect();
        TicketError::Invalid(format!(
            "pipeline {} has no stage {wanted:?}; its stages are {}",
            pipeline.id,
            ids.join(", ")
        ))
    })
}

/// Creates conversation `root`'s ticket by hand (`item`: the conversation), in `pipeline`
/// (default: the routing rule's, the inbox's automation's, or the workspace's only one) at
/// `stage` (default: the pipeline's first). One ticket per conversation. A ticket in a
/// closed stage closes the conversation; one in an open stage reopens a closed one.
pub async fn create(
    ports: &Ports,
    ws: &Workspace,
    root: &str,
    item: &Item,
    pipeline: Option<&str>,
    stage: Option<&str>,
    by: &str,
) -> Result<Item, TicketError> {
    let inbox = s(item, "inbox").unwrap_or_default();
    let automation = ws.inboxes.iter().find(|i| i.address.eq_ignore_ascii_case(&inbox)).map(|i| &i.tickets);
    let Some(pipeline_id) = pipeline
        .map(str::to_string)
        .or_else(|| s(item, "rule_pipeline"))
        .or_else(|| automation.and_then(|t| t.pipeline.clone()))
        .or_else(|| match ws.pipelines.as_slice() {
            [only] => Some(only.id.clone()),
            _ => None,
        })
    else {
        return Err(TicketError::Invalid("name a pipeline: this conversation's inbox has none".into()));
    };
    let Some(pipeline) = ws.pipeline(&pipeline_id) else {
        let ids: Vec<&str> = ws.pipelines.iter().map(|p| p.id.as_str()).collect();
        return Err(TicketError::Invalid(format!(
            "there is no pipeline {pipeline_id:?}; the pipelines are {}",
            ids.join(", ")
        )));
    };
    let stage = match stage {
        Some(wanted) => stage_of(pipeline, wanted)?,
        None => pipeline
            .initial_stage()
            .ok_or_else(|| TicketError::Invalid(format!("pipeline {} has no stages", pipeline.id)))?,
    };
    let now = ports.clock.now();
    let mut t = new_ticket(root, item, &pipeline.id, &stage.id, &now.to_rfc3339());
    t.insert("created_by".into(), json!(by));
    if stage.closed {
        t.insert("status".into(), json!("closed"));
        t.insert("closed_at".into(), json!(now.to_rfc3339()));
    }
    match ports.table.put(t, Some(Cond::NotExists)).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed) => {
            return Err(TicketError::Conflict(format!("conversation {root} already has a ticket")));
        }
        Err(e) => return Err(e.into()),
    }
    // The report refresh records `ticket_created`, as for an automatic ticket.
    let closed = s(item, "status").as_deref() == Some("closed");
    if stage.closed != closed {
        crate::conversations::set_status(ports, ws, root, stage.closed, Some(by), now).await?;
    } else {
        crate::reports::refresh(ports, ws, root, None).await?;
    }
    Ok(ports.table.get(&keys::ticket_key(root)).await?.unwrap_or_default())
}

/// The writes of a ticket entering `stage` at `now`, moved by `by`; the stage log is what
/// SLA pauses are measured on.
pub fn enter_stage(stage: &str, now: &str, by: &str) -> Vec<Update> {
    vec![
        Update::Set("stage".into(), json!(stage)),
        Update::Set("stage_changed_at".into(), json!(now)),
        Update::Set("stage_changed_by".into(), json!(by)),
        Update::Append("stage_log".into(), vec![json!([stage, now])]),
    ]
}

/// Moves conversation `root`'s ticket to `wanted`, a stage of its pipeline; the move is
/// logged (SLA pauses are measured on the log) and announced (`ticket_moved`).
pub async fn move_stage(
    ports: &Ports,
    ws: &Workspace,
    root: &str,
    wanted: &str,
    by: &str,
) -> Result<Item, TicketError> {
    let tkey = keys::ticket_key(root);
    let Some(ticket) = ports.table.get(&tkey).await? else {
        return Err(TicketError::Conflict(format!("conversation {root} has no ticket")));
    };
    let pipeline_id = s(&ticket, "pipeline").unwrap_or_default();
    let Some(pipeline) = ws.pipeline(&pipeline_id) else {
        return Err(TicketError::Conflict(format!("the ticket's pipeline {pipeline_id:?} no longer exists")));
    };
    let stage = stage_of(pipeline, wanted)?;
    let from = s(&ticket, "stage").unwrap_or_default();
    if from != stage.id {
        let now = ports.clock.now().to_rfc3339();
        ports.table.update(&tkey, enter_stage(&stage.id, &now, by), None).await?;
        crate::feed::emit(
            ports,
            crate::feed::Subject::Conversation(root),
            "ticket_moved",
            json!({"from": from, "to": stage.id, "by": by}),
        )
        .await?;
        let was_closed = pipeline.stage(&from).is_some_and(|x| x.closed);
        let at = ports.clock.now();
        if stage.closed && !was_closed {
            crate::conversations::set_status(ports, ws, root, true, Some(by), at).await?;
        } else if !stage.closed && was_closed {
            crate::conversations::set_status(ports, ws, root, false, Some(by), at).await?;
        } else {
            crate::reports::refresh(ports, ws, root, None).await?;
        }
    }
    Ok(ports.table.get(&tkey).await?.unwrap_or(ticket))
}
