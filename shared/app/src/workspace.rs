//! The workspace model in the main table: `mailroom apply FILE` writes it, every function
//! reads it. See docs/workspace.md for the file format and the items.
//!
//! [`apply`] writes the whole model as one item (`workspace`/`current`: `config`,
//! `version`, `applied_at`, and `items`, the keys it wrote) and one item per inbox, user,
//! team, pipeline, rule, deal, deal link and configured contact. Every write is an update
//! that sets the configured attributes one by one, so items that other code writes too
//! (inboxes registered by ingest, contacts created by the pipeline) keep their other
//! attributes.
//!
//! What the previous apply wrote and the file no longer has (found through the previous
//! `items` list):
//! - teams, pipelines, rules, deals and deal links are deleted;
//! - inbox items are never deleted (their messages, copies and statistics refer to them):
//!   they get `configured = false` and `archived = true`;
//! - user items are never deleted (conversations stay assigned to them): `active = false`;
//! - contact items are never deleted (the pipeline owns them): `configured = false`, and
//!   the file's `owner` and `properties` are removed.
//!
//! Crash safety: before writing anything, `items` becomes the union of the previous and
//! the new keys, and `config`/`version` change only at the end. An apply that stops half
//! way leaves the previous configuration in force, and the next apply cleans up after it.
//! Two concurrent applies: the later one to finish fails (the version is compared).

use crate::keys;
use crate::runtime::ports::Ports;
use anyhow::{Context, Result, anyhow, bail};
use mailroom_core::EmailAddress;
use mailroom_core::workspace::{self, Deal, Inbox, Pipeline, Rule, Team, User, Workspace};
use mailroom_store::{Cond, Item, Key, StoreError, Update};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};

/// What [`apply`] did: the counts of the file, then what it retired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApplySummary {
    pub version: u64,
    pub inboxes: usize,
    pub users: usize,
    pub teams: usize,
    pub pipelines: usize,
    pub rules: usize,
    pub deals: usize,
    pub contacts: usize,
    /// Inboxes of the previous apply that the file no longer has (`archived = true`).
    pub archived_inboxes: usize,
    /// Users of the previous apply that the file no longer has (`active = false`).
    pub deactivated_users: usize,
    /// Contacts of the previous apply that the file no longer has (`configured = false`).
    pub unconfigured_contacts: usize,
    /// Teams, pipelines, rules, deals and deal links deleted.
    pub deleted: usize,
}

/// Reads the model in force (`None` before the first apply).
pub async fn load(ports: &Ports) -> Result<Option<Workspace>> {
    let Some(item) = ports.table.get(&keys::workspace_key()).await? else { return Ok(None) };
    let Some(config) = item.get("config") else { return Ok(None) };
    let ws =
        serde_json::from_value(config.clone()).context("the stored workspace configuration is corrupt")?;
    Ok(Some(ws))
}

/// Writes a workspace (validated again here; nothing is written when it has errors).
pub async fn apply(ports: &Ports, ws: &Workspace) -> Result<ApplySummary> {
    apply_expecting(ports, ws, None).await
}

/// The version of the model in force (0 before the first apply).
pub async fn version(ports: &Ports) -> Result<u64> {
    Ok(ports
        .table
        .get(&keys::workspace_key())
        .await?
        .and_then(|i| i.get("version").and_then(Value::as_u64))
        .unwrap_or(0))
}

/// An apply that another one overtook (the version moved on).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct VersionConflict(pub String);

/// [`apply`], only when the model in force is still at version `expected` (0: none yet);
/// otherwise a [`VersionConflict`] error. The API's read-modify-write edits use it, so
/// two admins editing at once never silently undo each other.
pub async fn apply_expecting(ports: &Ports, ws: &Workspace, expected: Option<u64>) -> Result<ApplySummary> {
    let mut ws = ws.clone();
    ws.normalize();
    let errors = workspace::validate(&ws);
    if !errors.is_empty() {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        bail!("the workspace has {} errors:\n{}", errors.len(), list.join("\n"));
    }
    let table = &ports.table;
    let now = ports.clock.now().to_rfc3339();

    let current = table.get(&keys::workspace_key()).await?;
    let version = current.as_ref().and_then(|c| c.get("version")).and_then(Value::as_u64);
    // The guard below compares this same version, so nothing can slip in between.
    if let Some(expected) = expected
        && version.unwrap_or(0) != expected
    {
        return Err(VersionConflict(format!(
            "the workspace changed since version {expected} (it is at {}): read it again and retry",
            version.unwrap_or(0)
        ))
        .into());
    }
    let guard = || match version {
        Some(v) => Cond::Eq("version".into(), json!(v)),
        None => Cond::AttrNotExists("version".into()),
    };
    let previous: Vec<Key> = current.as_ref().map(stored_keys).unwrap_or_default();

    let writes = plan(&ws, &now)?;
    let new_keys: Vec<Key> = writes.iter().map(|(k, _)| k.clone()).collect();
    let new_set: HashSet<&Key> = new_keys.iter().collect();

    // Remember every key this apply may leave behind before writing any of them.
    let mut pending = previous.clone();
    pending.extend(new_keys.iter().filter(|k| !previous.contains(k)).cloned());
    guarded(table.update(
        &keys::workspace_key(),
        vec![Update::Set("items".into(), keys_json(&pending))],
        Some(guard()),
    ))
    .await?;

    for (key, actions) in writes {
        table.update(&key, actions, None).await.with_context(|| format!("writing {}/{}", key.pk, key.sk))?;
    }

    let mut summary = ApplySummary {
        version: version.unwrap_or(0) + 1,
        inboxes: ws.inboxes.len(),
        users: ws.users.len(),
        teams: ws.teams.len(),
        pipelines: ws.pipelines.len(),
        rules: ws.rules.len(),
        deals: ws.deals.len(),
        contacts: ws.contacts.len(),
        archived_inboxes: 0,
        deactivated_users: 0,
        unconfigured_contacts: 0,
        deleted: 0,
    };
    let mut seen = HashSet::new();
    for key in previous.iter().filter(|k| !new_set.contains(k)) {
        if !seen.insert(key) {
            continue;
        }
        let retire = |actions: Vec<Update>| async move {
            match table.update(key, actions, Some(Cond::Exists)).await {
                Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
                Err(e) => Err(e),
            }
        };
        match key.sk.as_str() {
            "inbox" => {
                retire(vec![set("configured", false), set("archived", true), set("archived_at", &now)])
                    .await?;
                summary.archived_inboxes += 1;
            }
            "user" => {
                retire(vec![set("active", false)]).await?;
                summary.deactivated_users += 1;
            }
            "contact" => {
                retire(vec![
                    set("configured", false),
                    Update::Remove("owner".into()),
                    Update::Remove("properties".into()),
                ])
                .await?;
                summary.unconfigured_contacts += 1;
            }
            _ => {
                table.delete(key, None).await?;
                summary.deleted += 1;
            }
        }
    }

    let config = serde_json::to_value(&ws)?;
    guarded(table.update(
        &keys::workspace_key(),
        vec![
            Update::Set("config".into(), config),
            Update::Set("version".into(), json!(summary.version)),
            Update::Set("applied_at".into(), json!(now)),
            Update::Set("items".into(), keys_json(&new_keys)),
        ],
        Some(guard()),
    ))
    .await?;
    Ok(summary)
}

async fn guarded(f: impl std::future::Future<Output = mailroom_store::error::Result<Item>>) -> Result<Item> {
    f.await.map_err(|e| match e {
        StoreError::ConditionFailed => anyhow::Error::new(VersionConflict(
            "another apply changed the workspace while this one ran: run apply again".into(),
        )),
        e => anyhow::Error::new(e),
    })
}

fn set(attr: &str, v: impl Serialize) -> Update {
    Update::Set(attr.into(), serde_json::to_value(v).unwrap_or(Value::Null))
}

fn keys_json(keys: &[Key]) -> Value {
    Value::Array(keys.iter().map(|k| json!([k.pk, k.sk])).collect())
}

fn stored_keys(item: &Item) -> Vec<Key> {
    let Some(Value::Array(list)) = item.get("items") else { return Vec::new() };
    list.iter()
        .filter_map(|v| match v.as_array().map(Vec::as_slice) {
            Some([Value::String(pk), Value::String(sk)]) => Some(Key::new(pk.as_str(), sk.as_str())),
            _ => None,
        })
        .collect()
}

fn address(s: &str) -> Result<EmailAddress> {
    EmailAddress::parse(s).map_err(|e| anyhow!("{e}"))
}

/// Every item of the model, as (key, update actions), in the order they are written.
fn plan(ws: &Workspace, now: &str) -> Result<Vec<(Key, Vec<Update>)>> {
    let mut out = Vec::new();
    for i in &ws.inboxes {
        out.push(inbox_item(ws, i, now)?);
    }
    for u in &ws.users {
        out.push(user_item(ws, u)?);
    }
    for t in &ws.teams {
        out.push(team_item(t));
    }
    for p in &ws.pipelines {
        out.push(pipeline_item(p));
    }
    for (n, r) in ws.rules.iter().enumerate() {
        out.push(rule_item(n, r)?);
    }
    for d in &ws.deals {
        out.extend(deal_items(d));
    }
    for c in &ws.contacts {
        let mut actions = vec![set("email", &c.email), set("configured", true)];
        if let Some(name) = &c.name {
            actions.push(set("name", name));
        }
        actions.push(match &c.owner {
            Some(o) => set("owner", o),
            None => Update::Remove("owner".into()),
        });
        actions.push(set("properties", &c.properties));
        out.push((keys::contact_key(&c.email), actions));
    }
    // A key twice (two deals of one contact share no key; this is a safety net) would be
    // written twice; keep the last.
    let mut seen = BTreeSet::new();
    let mut deduped: Vec<(Key, Vec<Update>)> = Vec::new();
    for (k, a) in out.into_iter().rev() {
        if seen.insert((k.pk.clone(), k.sk.clone())) {
            deduped.push((k, a));
        }
    }
    deduped.reverse();
    Ok(deduped)
}

fn inbox_item(ws: &Workspace, i: &Inbox, now: &str) -> Result<(Key, Vec<Update>)> {
    let addr = address(&i.address)?;
    let mut tickets = serde_json::to_value(&i.tickets)?;
    // The stage new tickets start in, resolved (the pipeline's first when not given).
    if let (Some(stage), Some(t)) = (i.initial_stage(ws), tickets.as_object_mut()) {
        t.insert("stage".into(), json!(stage.id));
    }
    let actions = vec![
        set("address", addr.key()),
        set("type", i.kind),
        set("provider", i.provider),
        set("owner", &i.owner),
        set("members", &i.members),
        Update::Set("tickets".into(), tickets),
        set("signature", &i.signature),
        set("fallback_team", &i.fallback_team),
        set("create_cc_contacts", i.create_cc_contacts),
        set("tracking", i.tracking),
        set("configured", true),
        set("archived", false),
        Update::SetIfAbsent("created_at".into(), json!(now)),
        set("gsi1pk", keys::INBOXES_INDEX_PK),
        set("gsi1sk", addr.key()),
    ];
    Ok((keys::inbox(&addr), actions))
}

fn user_item(ws: &Workspace, u: &User) -> Result<(Key, Vec<Update>)> {
    let addr = address(&u.email)?;
    let actions = vec![
        set("email", addr.key()),
        set("name", &u.name),
        set("role", u.role),
        set("available", u.available),
        set("signature", &u.signature),
        set("teams", ws.teams_of(&u.email)),
        set("active", true),
        set("gsi1pk", keys::USERS_INDEX_PK),
        set("gsi1sk", addr.key()),
    ];
    Ok((keys::user(&addr), actions))
}

fn team_item(t: &Team) -> (Key, Vec<Update>) {
    let actions = vec![
        set("id", &t.id),
        set("name", &t.name),
        set("members", &t.members),
        set("gsi1pk", keys::TEAMS_INDEX_PK),
        set("gsi1sk", &t.id),
    ];
    (keys::team_key(&t.id), actions)
}

fn pipeline_item(p: &Pipeline) -> (Key, Vec<Update>) {
    let actions = vec![
        set("id", &p.id),
        set("name", &p.name),
        set("stages", &p.stages),
        set("gsi1pk", keys::PIPELINES_INDEX_PK),
        set("gsi1sk", &p.id),
    ];
    (keys::pipeline_key(&p.id), actions)
}

fn rule_item(position: usize, r: &Rule) -> Result<(Key, Vec<Update>)> {
    let Value::Object(fields) = serde_json::to_value(r)? else { bail!("a rule is not a JSON object") };
    let mut actions: Vec<Update> = fields.into_iter().map(|(k, v)| Update::Set(k, v)).collect();
    actions.push(set("position", position));
    Ok((keys::rule_key(position), actions))
}

fn deal_items(d: &Deal) -> Vec<(Key, Vec<Update>)> {
    let mut out = vec![(
        keys::deal_key(&d.id),
        vec![
            set("id", &d.id),
            set("name", &d.name),
            set("status", d.status),
            set("contacts", &d.contacts),
            set("companies", &d.companies),
            set("amount", d.amount),
            set("gsi1pk", keys::DEALS_INDEX_PK),
            set("gsi1sk", &d.id),
        ],
    )];
    let links = d.contacts.iter().map(|c| (c, "contact")).chain(d.companies.iter().map(|c| (c, "company")));
    for (target, via) in links {
        out.push((
            keys::deal_link_key(target, &d.id),
            vec![set("deal_id", &d.id), set("name", &d.name), set("status", d.status), set("via", via)],
        ));
    }
    out
}
