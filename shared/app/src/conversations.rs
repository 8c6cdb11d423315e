//! Conversation commands: close and reopen (with the ticket, the reports and the agents'
//! load following). The listing of every conversation is `views::conversations`.

use crate::runtime::ports::Ports;

/// Closes or reopens a conversation (and its ticket), then updates its report figures.
/// Closing an already closed conversation changes nothing.
pub async fn set_status(
    ports: &Ports,
    ws: &mailroom_core::workspace::Workspace,
    id: &str,
    close: bool,
    by: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<String> {
    use mailroom_store::{Cond, StoreError, Update};
    use serde_json::json;
    let root = crate::thread::Threader::new(ports).find(id).await?;
    let (from, to) = if close { ("open", "closed") } else { ("closed", "open") };
    let mut actions = vec![Update::Set("status".into(), json!(to))];
    if close {
        actions.push(Update::Set("closed_at".into(), json!(at.to_rfc3339())));
        actions.push(Update::Set("closed_by".into(), json!(by.map(str::to_lowercase))));
    } else {
        actions.push(Update::Remove("closed_at".into()));
        actions.push(Update::Remove("closed_by".into()));
        actions.push(Update::Add("reopened".into(), 1));
    }
    let not_to = Cond::Or(vec![Cond::AttrNotExists("status".into()), Cond::Eq("status".into(), json!(from))]);
    match ports.table.update(&crate::keys::conv_key(&root.id), actions, Some(not_to)).await {
        Ok(_) => {}
        Err(StoreError::ConditionFailed) => return Ok(root.id),
        Err(e) => return Err(e.into()),
    }
    let tkey = crate::keys::ticket_key(&root.id);
    if ports.table.get(&tkey).await?.is_some() {
        let mut t = vec![Update::Set("status".into(), json!(to))];
        if close {
            t.push(Update::Set("closed_at".into(), json!(at.to_rfc3339())));
        }
        ports.table.update(&tkey, t, None).await?;
    }
    crate::reports::refresh(ports, ws, &root.id, None).await?;
    crate::load::settle(ports, &root.id).await?;
    Ok(root.id)
}
