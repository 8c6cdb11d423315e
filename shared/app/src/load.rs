//! Agents' load: how many open conversations each agent is assigned, for least-loaded
//! assignment (docs/crm-and-routing.md) and the inbox's "assigned to me" count; and each
//! inbox's tally of open and open-unassigned conversations, for the inbox list.
//!
//! A conversation counts for its assignee while it is open. The conversation item says
//! whom it is counted for (`load_for`); [`settle`] moves the count when that differs from
//! what it should be (an assignment, a reassignment, an unassignment, a close, a reopen),
//! in one transaction conditional on `load_for`, so concurrent or repeated calls count a
//! conversation once. [`pick_least_loaded`] claims its pick with a conditional increment,
//! so two conversations routed at once do not both see the same agent as the least loaded.

use crate::keys;
use crate::keys::conv_key;
use crate::keys::item_str as s;
use crate::runtime::ports::Ports;
use crate::thread::{ConversationRoot, Threader};
use mailroom_store::{Cond, Key, StoreError, TransactOp, Update};
use serde_json::{Value, json};

/// An agent's open assigned conversations.
pub async fn load_of(ports: &Ports, agent: &str) -> anyhow::Result<i64> {
    Ok(ports
        .table
        .get(&keys::load_key(agent))
        .await?
        .and_then(|i| i.get("open").and_then(Value::as_i64))
        .unwrap_or(0))
}

fn is_conflict(e: &StoreError) -> bool {
    matches!(e, StoreError::ConditionFailed | StoreError::TransactionCanceled { .. })
}

/// Makes the load counters agree with conversation `id` (its root) as it is now.
pub async fn settle(ports: &Ports, id: &str) -> anyhow::Result<()> {
    let root = Threader::new(ports).find(id).await?;
    settle_one(ports, &root.id).await
}

/// Releases the load of the conversations merged into `root`: a merged conversation
/// lives on in its root and counts for nobody.
pub async fn settle_merged(ports: &Ports, root: &ConversationRoot) -> anyhow::Result<()> {
    let merged: Vec<String> =
        root.item.get("merged").and_then(|m| serde_json::from_value(m.clone()).ok()).unwrap_or_default();
    for m in merged {
        settle_one(ports, &m).await?;
    }
    Ok(())
}

/// One conversation item, root or merged: its agent's load (`load_for`) and its inbox's
/// tally (`tally`: `{inbox}|u` open and unassigned, `{inbox}|a` open and assigned), both
/// moved in one transaction conditional on what the item says is counted.
async fn settle_one(ports: &Ports, id: &str) -> anyhow::Result<()> {
    for _ in 0..16 {
        let Some(item) = ports.table.get(&keys::conv_key(id)).await? else { return Ok(()) };
        let item = &item;
        let open = s(item, "status").as_deref().unwrap_or("open") == "open" && !item.contains_key("parent");
        let assignee = s(item, "assignee").map(|a| a.to_lowercase());
        let want = assignee.clone().filter(|_| open);
        let have = s(item, "load_for");
        let inbox = s(item, "inbox").unwrap_or_default().to_lowercase();
        let want_tally = open.then(|| format!("{inbox}|{}", if assignee.is_some() { "a" } else { "u" }));
        let have_tally = s(item, "tally");
        if want == have && want_tally == have_tally {
            return Ok(());
        }
        let set_or_remove = |k: &str, v: &Option<String>| match v {
            Some(v) => Update::Set(k.into(), json!(v)),
            None => Update::Remove(k.into()),
        };
        let guard = |k: &str, v: &Option<String>| match v {
            Some(v) => Cond::Eq(k.into(), json!(v)),
            None => Cond::AttrNotExists(k.into()),
        };
        let mut ops = vec![TransactOp::Update {
            key: conv_key(id),
            actions: vec![set_or_remove("load_for", &want), set_or_remove("tally", &want_tally)],
            cond: Some(Cond::And(vec![guard("load_for", &have), guard("tally", &have_tally)])),
        }];
        let mut add = |key: Key, deltas: Vec<(&str, i64)>| {
            let actions: Vec<Update> =
                deltas.into_iter().filter(|d| d.1 != 0).map(|(k, n)| Update::Add(k.into(), n)).collect();
            if !actions.is_empty() {
                ops.push(TransactOp::Update { key, actions, cond: None });
            }
        };
        if want != have {
            if let Some(h) = &have {
                add(keys::load_key(h), vec![("open", -1)]);
            }
            if let Some(w) = &want {
                add(keys::load_key(w), vec![("open", 1)]);
            }
        }
        if want_tally != have_tally {
            // One update per inbox item: the old and new tallies of one inbox merge.
            let mut per: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
            for (t, sign) in [(&have_tally, -1), (&want_tally, 1)] {
                if let Some((i, kind)) = t.as_deref().and_then(|t| t.rsplit_once('|')) {
                    let e = per.entry(i.to_string()).or_default();
                    e.0 += sign;
                    e.1 += if kind == "u" { sign } else { 0 };
                }
            }
            for (i, (o, u)) in per {
                add(keys::inbox_tally_key(&i), vec![("open", o), ("unassigned", u)]);
            }
        }
        match ports.table.transact_write(ops).await {
            Ok(()) => return Ok(()),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("agent load of conversation {id}: too many concurrent changes")
}

/// An inbox's open and open-unassigned conversations (its tally).
pub async fn inbox_tally(ports: &Ports, inbox: &str) -> anyhow::Result<(i64, i64)> {
    let item = ports.table.get(&keys::inbox_tally_key(&inbox.to_lowercase())).await?;
    let n = |k: &str| item.as_ref().and_then(|i| i.get(k)).and_then(Value::as_i64).unwrap_or(0);
    Ok((n("open"), n("unassigned")))
}

/// The least-loaded of `members` for conversation `conv`, counted for it at once: the
/// pick is stored per conversation (a redelivery picks the same agent and counts nothing
/// again) and the agent's counter is raised only if it still holds the value the choice
/// was made on. Ties go to the first member in the team's order.
pub async fn pick_least_loaded(
    ports: &Ports,
    conv: &str,
    members: &[String],
) -> anyhow::Result<Option<String>> {
    let table = &ports.table;
    let pick_key = Key::new(format!("pick#{conv}"), "pick");
    for _ in 0..32 {
        if let Some(p) = table.get(&pick_key).await? {
            return Ok(s(&p, "agent"));
        }
        let mut best: Option<(i64, &String)> = None;
        for m in members {
            let load = load_of(ports, m).await?;
            if best.is_none_or(|(b, _)| load < b) {
                best = Some((load, m));
            }
        }
        let Some((load, m)) = best else { return Ok(None) };
        let agent = m.to_lowercase();
        let mut pick = pick_key.item();
        pick.insert("agent".into(), json!(agent));
        let unchanged = if load == 0 {
            Cond::Or(vec![Cond::AttrNotExists("open".into()), Cond::Eq("open".into(), json!(0))])
        } else {
            Cond::Eq("open".into(), json!(load))
        };
        let ops = vec![
            TransactOp::Put { item: pick, cond: Some(Cond::NotExists) },
            TransactOp::Update {
                key: keys::load_key(&agent),
                actions: vec![Update::Add("open".into(), 1)],
                cond: Some(unchanged),
            },
            TransactOp::Update {
                key: conv_key(conv),
                actions: vec![Update::Set("load_for".into(), json!(agent))],
                cond: Some(Cond::AttrNotExists("load_for".into())),
            },
        ];
        match table.transact_write(ops).await {
            Ok(()) => return Ok(Some(agent)),
            // Someone else's pick or count came first: look again.
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("least-loaded pick for {conv}: too many concurrent changes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 17, item 18: 40 conversations routed at once to a team of two by
    /// least-loaded land 20 and 20, and each is counted once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_picks_stay_fair() {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::embedded(dir.path()).unwrap();
        let members = vec!["a@x.example".to_string(), "b@x.example".to_string()];
        let mut tasks = Vec::new();
        for i in 0..40 {
            let (ports, members) = (ports.clone(), members.clone());
            tasks.push(tokio::spawn(async move {
                let conv = format!("c{i}");
                let mut item = conv_key(&conv).item();
                item.insert("status".into(), json!("open"));
                ports.table.put(item, None).await.unwrap();
                let a = pick_least_loaded(&ports, &conv, &members).await.unwrap().unwrap();
                // A redelivery picks the same and counts nothing.
                assert_eq!(pick_least_loaded(&ports, &conv, &members).await.unwrap().unwrap(), a);
                a
            }));
        }
        let mut got = std::collections::BTreeMap::new();
        for t in tasks {
            *got.entry(t.await.unwrap()).or_insert(0) += 1;
        }
        assert_eq!(got.values().copied().collect::<Vec<i64>>(), vec![20, 20], "{got:?}");
        assert_eq!(load_of(&ports, "a@x.example").await.unwrap(), 20);
        assert_eq!(load_of(&ports, "b@x.example").await.unwrap(), 20);
    }
}
