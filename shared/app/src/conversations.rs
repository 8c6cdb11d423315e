//! Conversation commands: close and reopen, assign, comment, snooze (with the ticket, the
//! reports, the agents' load and the event feed following). The API and the web pages
//! both call these; the listing of every conversation is `views::conversations`.

use crate::access::Viewer;
use crate::keys;
use crate::runtime::ports::Ports;
use mailroom_store::{Cond, Key, Update};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CommandError {
    /// The request cannot be done as asked (the message says what to change).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<mailroom_store::StoreError> for CommandError {
    fn from(e: mailroom_store::StoreError) -> CommandError {
        CommandError::Other(e.into())
    }
}

/// An internal comment (never emailed).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Comment {
    pub id: String,
    pub author: String,
    pub body: String,
    /// Users mentioned with `@email`.
    pub mentions: Vec<String>,
    pub created_at: String,
}

/// Assigns conversation `root` (in `inbox`) to `assignee` (someone who can see it; `None`
/// unassigns) and, when given, `team`. The ticket's owner follows; a person's assignment
/// notifies even on old mail (routing's does not: `assigned_by`).
pub async fn assign(
    ports: &Ports,
    by: &Viewer,
    root: &str,
    inbox: &str,
    assignee: Option<&str>,
    team: Option<&str>,
) -> Result<(), CommandError> {
    let ws = &by.ws;
    let assignee = match assignee.map(str::to_lowercase) {
        None => None,
        Some(a) => {
            let Some(user) = ws.users.iter().find(|u| u.email.eq_ignore_ascii_case(&a)) else {
                return Err(CommandError::Invalid(format!("{a} is not a user of this workspace")));
            };
            let them = Viewer::of(user, ws);
            if !them.can_see(inbox) {
                return Err(CommandError::Invalid(format!("{a} is not a member of {inbox}")));
            }
            Some(them.email)
        }
    };
    if let Some(team) = team
        && !ws.teams.iter().any(|t| t.id == team)
    {
        return Err(CommandError::Invalid(format!("there is no team {team:?}")));
    }
    let mut actions = vec![
        Update::Set("assignee".into(), json!(assignee)),
        Update::Set("assigned_by".into(), json!(by.email)),
    ];
    if let Some(team) = team {
        actions.push(Update::Set("team".into(), json!(team)));
    }
    ports.table.update(&keys::conv_key(root), actions, None).await?;
    // Open conversations per agent, for least-loaded assignment.
    crate::load::settle(ports, root).await?;
    let tkey = keys::ticket_key(root);
    if ports.table.get(&tkey).await?.is_some() {
        let mut t = vec![Update::Set("owner".into(), json!(assignee))];
        if let Some(team) = team {
            t.push(Update::Set("team".into(), json!(team)));
        }
        ports.table.update(&tkey, t, None).await?;
    }
    crate::reports::refresh(ports, ws, root, None).await?;
    Ok(())
}

/// Adds an internal comment to conversation `root` (in `inbox`); `@address` mentions a
/// workspace user who can see it, and the mentioned are notified from the feed's
/// `comment_added`.
pub async fn add_comment(
    ports: &Ports,
    by: &Viewer,
    root: &str,
    inbox: &str,
    text: &str,
) -> Result<Comment, CommandError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 20_000 {
        return Err(CommandError::Invalid("a comment is 1 to 20000 characters".into()));
    }
    let mut mentions: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        let Some(m) = word.strip_prefix('@') else { continue };
        let m = m.trim_end_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
        if let Some(u) = by.ws.users.iter().find(|u| u.email.eq_ignore_ascii_case(&m)) {
            let them = Viewer::of(u, &by.ws);
            if them.can_see(inbox) && !mentions.contains(&them.email) {
                mentions.push(them.email);
            }
        }
    }
    let now = ports.clock.now();
    let cid = format!("c{}", hex::encode(rand::random::<[u8; 8]>()));
    let comment = Comment {
        id: cid.clone(),
        author: by.email.clone(),
        body: text.to_string(),
        mentions,
        created_at: now.to_rfc3339(),
    };
    let mut it = Key::new(keys::comments_pk(root), format!("{}#{cid}", now.to_rfc3339())).item();
    if let Value::Object(m) = serde_json::to_value(&comment).map_err(anyhow::Error::from)? {
        it.extend(m);
    }
    ports.table.put(it, Some(Cond::NotExists)).await?;
    crate::feed::emit(
        ports,
        crate::feed::Subject::Conversation(root),
        "comment_added",
        json!({"author": comment.author, "comment_id": comment.id, "mentions": comment.mentions}),
    )
    .await?;
    Ok(comment)
}

/// A conversation's comments, oldest first.
pub async fn comments(ports: &Ports, root: &str) -> Result<Vec<Comment>, CommandError> {
    Ok(ports
        .table
        .query_all(mailroom_store::Query::new(keys::comments_pk(root)))
        .await?
        .into_iter()
        .filter_map(|c| serde_json::from_value(Value::Object(c)).ok())
        .collect())
}

/// Snoozes conversation `root` until `until` (it leaves the open lists until then), or
/// wakes it (`None`). A customer's new message wakes it too (the route stage).
pub async fn snooze(
    ports: &Ports,
    by: &Viewer,
    root: &str,
    until: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), CommandError> {
    let now = ports.clock.now();
    let action = match until {
        Some(t) if t <= now => return Err(CommandError::Invalid("snooze until a time in the future".into())),
        Some(t) => Update::Set("snoozed_until".into(), json!(t.timestamp())),
        None => Update::Remove("snoozed_until".into()),
    };
    ports.table.update(&keys::conv_key(root), vec![action], Some(Cond::Exists)).await?;
    crate::feed::emit(
        ports,
        crate::feed::Subject::Conversation(root),
        if until.is_some() { "snoozed" } else { "woken" },
        json!({"by": by.email, "until": until.map(|t| t.to_rfc3339())}),
    )
    .await?;
    Ok(())
}

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
