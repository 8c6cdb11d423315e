//! Replay of the route stage over stored history: after a routing rule changed, every
//! routed conversation since a date gets today's decision again (team, priority, tags,
//! pipeline and stage, no-ticket), read from the stored raw of the message that routed it.
//! A dry run counts what would change; the real run applies exactly those changes, so a
//! second run finds nothing to do. History stays quiet: no notification, webhook or email
//! goes out (report figures are recomputed without feed events), and one audit entry
//! records the run. Decisions in docs/crm-and-routing.md, "Replay".
//!
//! What a replay changes on a conversation whose decision moved:
//! - team, priority, tags, rule pipeline and stage, no-ticket, matched rules;
//! - the assignee only when they are not a member of the new team (then unassigned, for
//!   the new team to pick up; no one is assigned by a replay, which would notify them);
//! - an open ticket whose pipeline moved goes to the new pipeline's initial stage (the
//!   rule's stage, else the inbox's, else the first); a closed ticket stays as it closed;
//!   no ticket is created or deleted.

use crate::keys;
use crate::keys::item_str as s;
use crate::pipeline::route::{recorded_message, route_context};
use crate::runtime::ports::Ports;
use chrono::{DateTime, Utc};
use mailroom_core::routing::{Decision, Router};
use mailroom_core::workspace::Workspace;
use mailroom_store::{Item, Key, Update};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Conversations whose first message is dated this or later.
    pub since: DateTime<Utc>,
    /// Only the conversations of this inbox.
    pub inbox: Option<String>,
    pub dry_run: bool,
    /// Who asked (for the audit entry).
    pub by: String,
}

/// What a replay changed, or would change (a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct ReplaySummary {
    /// `route` or `log`.
    pub stage: String,
    pub dry_run: bool,
    /// Routed conversations in the range.
    pub conversations: usize,
    /// Those whose decision moved.
    pub changed: usize,
    /// `"{old team} -> {new team}"` (`-` for none) -> conversations.
    pub team_moves: BTreeMap<String, usize>,
    pub priority_changes: usize,
    pub tag_changes: usize,
    /// Assignees taken off because they are not in the new team.
    pub unassigned: usize,
    /// `"{old pipeline} -> {new pipeline}"` -> open tickets moved.
    pub ticket_moves: BTreeMap<String, usize>,
    /// `log`: messages looked at.
    pub messages: usize,
    /// `log`: `"{old outcome} -> {new outcome}"` (`logged`, a reason, or `unknown` for a
    /// message recorded before confirmations were kept) -> messages.
    pub log_moves: BTreeMap<String, usize>,
    /// `log`: timeline entries taken off contacts, and put on.
    pub timeline_removed: usize,
    pub timeline_added: usize,
    /// In words: "312 conversations would move from billing to support; ...".
    pub lines: Vec<String>,
}

/// The routing fields of a conversation as stored, and as today's rules decide them.
#[derive(Debug, Clone, PartialEq)]
struct Routing {
    team: Option<String>,
    priority: Option<String>,
    tags: Vec<String>,
    pipeline: Option<String>,
    stage: Option<String>,
    no_ticket: bool,
}

impl Routing {
    fn stored(conv: &Item) -> Routing {
        let tags = conv
            .get("tags")
            .and_then(|t| serde_json::from_value::<Vec<String>>(t.clone()).ok())
            .unwrap_or_default();
        Routing {
            team: s(conv, "team"),
            priority: s(conv, "priority"),
            tags,
            pipeline: s(conv, "rule_pipeline"),
            stage: s(conv, "rule_stage"),
            no_ticket: conv.get("no_ticket").and_then(Value::as_bool).unwrap_or(false),
        }
    }
    fn decided(d: &Decision) -> Routing {
        Routing {
            team: d.team.clone(),
            priority: d.priority.clone(),
            tags: d.tags.clone(),
            pipeline: d.pipeline.clone(),
            stage: d.stage.clone(),
            no_ticket: d.no_ticket,
        }
    }
}

/// `--since`: a day (`2024-03-01`, midnight UTC) or an RFC 3339 instant.
pub fn parse_since(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text.trim())
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| anyhow::anyhow!("{text:?} is neither a day (YYYY-MM-DD) nor an RFC 3339 time"))
}

/// Replays the route stage over the routed conversations of `opts`.
pub async fn replay(ports: &Ports, ws: &Workspace, opts: &ReplayOptions) -> anyhow::Result<ReplaySummary> {
    let router = Router::new(ws);
    let mut sum = ReplaySummary { stage: "route".into(), dry_run: opts.dry_run, ..ReplaySummary::default() };
    for root in in_range(ports, opts).await? {
        let inbox = s(&root, "inbox").unwrap_or_default().to_lowercase();
        if root.get("routed").is_none() {
            continue;
        }
        let Some(by) = s(&root, "routed_by") else { continue };
        let id = s(&root, "id").unwrap_or_default();
        sum.conversations += 1;
        let msg = recorded_message(ports, &by).await?;
        let kind = s(&msg, "kind").unwrap_or_else(|| "normal".into());
        let customer = s(&root, "contact_email");
        let ctx = route_context(ports, &msg, &inbox, &kind, customer.as_deref()).await?;
        let d = router.route(&ctx);
        let (old, new) = (Routing::stored(&root), Routing::decided(&d));
        if old == new {
            continue;
        }
        sum.changed += 1;
        let name = |t: &Option<String>| t.clone().unwrap_or_else(|| "-".into());
        if old.team != new.team {
            *sum.team_moves.entry(format!("{} -> {}", name(&old.team), name(&new.team))).or_default() += 1;
        }
        sum.priority_changes += (old.priority != new.priority) as usize;
        sum.tag_changes += (old.tags != new.tags) as usize;
        // The assignee stays unless the new team does not have them.
        let assignee = s(&root, "assignee");
        let drop_assignee = old.team != new.team
            && assignee.as_ref().is_some_and(|a| {
                d.user.as_ref() != Some(a)
                    && !new
                        .team
                        .as_ref()
                        .and_then(|t| ws.teams.iter().find(|x| &x.id == t))
                        .is_some_and(|t| t.members.iter().any(|m| m.eq_ignore_ascii_case(a)))
            });
        sum.unassigned += drop_assignee as usize;
        let tkey = keys::ticket_key(&id);
        let ticket = ports.table.get(&tkey).await?;
        let ticket_move = ticket.as_ref().and_then(|t| ticket_move(ws, t, &inbox, &new));
        if let Some((from, to, _)) = &ticket_move {
            *sum.ticket_moves.entry(format!("{from} -> {to}")).or_default() += 1;
        }
        if opts.dry_run {
            continue;
        }
        let mut actions = crate::pipeline::route::decision_updates(&d);
        actions.push(Update::Set("replayed_at".into(), json!(ports.clock.now().to_rfc3339())));
        if drop_assignee {
            actions.push(Update::Set("assignee".into(), Value::Null));
        }
        ports.table.update(&keys::conv_key(&id), actions, None).await?;
        // The ticket follows: team, priority, owner, and its pipeline when that moved.
        if let Some(t) = &ticket {
            let mut actions = vec![
                Update::Set("team".into(), json!(new.team)),
                Update::Set("priority".into(), json!(new.priority)),
            ];
            if drop_assignee && s(t, "owner").is_some() {
                actions.push(Update::Set("owner".into(), Value::Null));
            }
            if let Some((_, to, stage)) = &ticket_move {
                actions.extend(crate::tickets::enter_stage(stage, &ports.clock.now().to_rfc3339(), &opts.by));
                actions.push(Update::Set("pipeline".into(), json!(to)));
            }
            ports.table.update(&tkey, actions, None).await?;
        }
        crate::load::settle(ports, &id).await?;
        crate::reports::refresh_quietly(ports, ws, &id).await?;
    }
    sum.lines = lines(&sum);
    audit(ports, opts, &sum).await?;
    Ok(sum)
}

/// The conversation roots of the replay's range: first message dated `since` or later
/// (its Date, what people mean by "since", else when it arrived), of the inbox if one is
/// named, verification runs left out.
async fn in_range(ports: &Ports, opts: &ReplayOptions) -> anyhow::Result<Vec<Item>> {
    let want_inbox = opts.inbox.as_ref().map(|i| i.to_lowercase());
    let mut out = Vec::new();
    for root in crate::views::conversations::roots(ports).await? {
        let inbox = s(&root, "inbox").unwrap_or_default().to_lowercase();
        let first = s(&root, "first_date").filter(|d| !d.is_empty()).or_else(|| s(&root, "first_received"));
        let recent =
            first.and_then(|f| DateTime::parse_from_rfc3339(&f).ok()).is_some_and(|f| f >= opts.since);
        if recent && want_inbox.as_ref().is_none_or(|w| *w == inbox) && root.get("test").is_none() {
            out.push(root);
        }
    }
    Ok(out)
}

/// Replays the logging decisions (`pipeline::crm_log`) over the messages of the
/// conversations in range, with today's `[logging]` settings: a message whose outcome
/// changes gets its new confirmation, its timeline entries follow (taken off contacts it
/// is no longer logged on: a never-log entry reaches history), and its report fact the
/// new reason. Contacts and companies made before stay; no deal is chosen again (a
/// message that stays logged keeps its deal). A dry run counts the same changes.
pub async fn replay_log(
    ports: &Ports,
    ws: &Workspace,
    opts: &ReplayOptions,
) -> anyhow::Result<ReplaySummary> {
    use crate::pipeline::crm_log::Logbook;
    use crate::records::{LogEntry, Message};
    let mut sum = ReplaySummary { stage: "log".into(), dry_run: opts.dry_run, ..ReplaySummary::default() };
    let book = Logbook { ports, ws };
    let outcome = |l: &LogEntry| l.reason.clone().unwrap_or_else(|| "logged".into());
    for root in in_range(ports, opts).await? {
        let id = s(&root, "id").unwrap_or_default();
        sum.conversations += 1;
        for item in crate::views::conversations::messages_of(ports, &id).await? {
            if item.get("test").is_some() {
                continue;
            }
            sum.messages += 1;
            let m = Message::from_item(&item);
            let (mut new, _) = book.decide(&item, &m, !opts.dry_run).await?;
            let old_contacts: Vec<String> = m.log.as_ref().map(|l| l.contacts.clone()).unwrap_or_default();
            let sorted = |mut v: Vec<String>| {
                v.sort();
                v
            };
            let same = m.log.as_ref().is_some_and(|old| {
                outcome(old) == outcome(&new) && sorted(old.contacts.clone()) == sorted(new.contacts.clone())
            });
            if same {
                continue;
            }
            sum.changed += 1;
            let from = m.log.as_ref().map(outcome).unwrap_or_else(|| "unknown".into());
            *sum.log_moves.entry(format!("{from} -> {}", outcome(&new))).or_default() += 1;
            let removed: Vec<&String> = old_contacts.iter().filter(|c| !new.contacts.contains(c)).collect();
            let added: Vec<&String> = new.contacts.iter().filter(|c| !old_contacts.contains(c)).collect();
            sum.timeline_removed += removed.len();
            sum.timeline_added += added.len();
            if opts.dry_run {
                continue;
            }
            for c in removed {
                ports.table.delete(&Logbook::timeline_key(c, &m), None).await?;
            }
            for c in added {
                book.add_to_timeline(c, &m, &id).await?;
            }
            if let Some(old) = m.log.as_ref().filter(|_| new.logged) {
                new.company = old.company.clone();
                new.deal = old.deal.clone();
                new.ticket = old.ticket.clone();
            }
            let log = serde_json::to_value(&new)?;
            ports
                .table
                .update(&keys::message(&m.message_id), vec![Update::Set("log".into(), log)], None)
                .await?;
            crate::reports::rerecord_message_quietly(ports, ws, &item, (new.logged, new.reason.clone()))
                .await?;
        }
    }
    sum.lines = log_lines(&sum);
    audit(ports, opts, &sum).await?;
    Ok(sum)
}

fn log_lines(sum: &ReplaySummary) -> Vec<String> {
    let would = if sum.dry_run { "would change" } else { "changed" };
    let mut out = vec![format!(
        "{} of {} messages in {} conversations {would} where they are logged",
        sum.changed, sum.messages, sum.conversations
    )];
    for (mv, n) in &sum.log_moves {
        out.push(format!("{n} messages: {mv}"));
    }
    if sum.timeline_removed + sum.timeline_added > 0 {
        out.push(format!(
            "timeline entries: {} {} off contacts, {} {} on",
            sum.timeline_removed,
            if sum.dry_run { "would come" } else { "taken" },
            sum.timeline_added,
            if sum.dry_run { "would go" } else { "put" }
        ));
    }
    out
}

/// Where today's decision moves `ticket` (open, of a conversation in `inbox`) when its
/// pipeline changes: (from, to, the stage it enters).
fn ticket_move(
    ws: &Workspace,
    ticket: &Item,
    inbox: &str,
    new: &Routing,
) -> Option<(String, String, String)> {
    if s(ticket, "status").as_deref() == Some("closed") {
        return None;
    }
    let inbox_cfg = ws.inboxes.iter().find(|i| i.address.eq_ignore_ascii_case(inbox));
    let to = new.pipeline.clone().or_else(|| inbox_cfg.and_then(|i| i.tickets.pipeline.clone()));
    let from = s(ticket, "pipeline").unwrap_or_default();
    let pipeline = to.as_deref().and_then(|p| ws.pipeline(p)).filter(|p| p.id != from)?;
    let stage = new
        .stage
        .as_deref()
        .and_then(|st| pipeline.stage(st))
        .or_else(|| inbox_cfg.and_then(|i| i.initial_stage(ws)).filter(|st| pipeline.stage(&st.id).is_some()))
        .or_else(|| pipeline.initial_stage())?;
    Some((from, pipeline.id.clone(), stage.id.clone()))
}

fn lines(sum: &ReplaySummary) -> Vec<String> {
    let verb = if sum.dry_run { "would move" } else { "moved" };
    let mut out = vec![format!(
        "{} of {} routed conversations {} by today's rules",
        sum.changed,
        sum.conversations,
        if sum.dry_run { "would change" } else { "changed" }
    )];
    for (mv, n) in &sum.team_moves {
        let (from, to) = mv.split_once(" -> ").unwrap_or((mv, ""));
        out.push(format!("{n} conversations {verb} from {from} to {to}"));
    }
    if sum.priority_changes > 0 {
        out.push(format!(
            "{} priorities {}",
            sum.priority_changes,
            if sum.dry_run { "would change" } else { "changed" }
        ));
    }
    if sum.tag_changes > 0 {
        out.push(format!(
            "{} tag sets {}",
            sum.tag_changes,
            if sum.dry_run { "would change" } else { "changed" }
        ));
    }
    if sum.unassigned > 0 {
        out.push(format!(
            "{} conversations {} unassigned (their agent is not in the new team)",
            sum.unassigned,
            if sum.dry_run { "would be" } else { "were" }
        ));
    }
    for (mv, n) in &sum.ticket_moves {
        out.push(format!(
            "{n} tickets {} pipeline ({mv})",
            if sum.dry_run { "would change" } else { "changed" }
        ));
    }
    out
}

/// One audit entry per run: `audit` / `{time}#replay#{random}`, who, what, the summary.
async fn audit(ports: &Ports, opts: &ReplayOptions, sum: &ReplaySummary) -> anyhow::Result<()> {
    let now = ports.clock.now().to_rfc3339();
    let mut item =
        Key::new(keys::AUDIT_PK, format!("{now}#replay#{}", hex::encode(rand::random::<[u8; 4]>()))).item();
    item.insert("action".into(), json!(format!("replay {}", sum.stage)));
    item.insert("by".into(), json!(opts.by));
    item.insert("since".into(), json!(opts.since.to_rfc3339()));
    item.insert("inbox".into(), json!(opts.inbox));
    item.insert("summary".into(), serde_json::to_value(sum)?);
    item.insert("at".into(), json!(now));
    ports.table.put(item, None).await?;
    Ok(())
}
