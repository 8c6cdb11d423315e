//! The `route` stage: for each newly recorded message, log it on its contacts (created
//! when missing) and their companies as the inbox's logging mode allows (`crm_log`),
//! associate the conversation with open deals, and route the conversation once (team,
//! assignee, priority, pipeline and stage, tags) by the workspace's rules. Then it hands
//! the message to the `ticket` stage.
//!
//! Idempotent: contacts and companies are created with conditional puts, timeline
//! entries are keyed by message, the round-robin pick of a conversation is stored before
//! it is used, and the conversation is routed by a conditional update that only the
//! first delivery wins.

use crate::keys;
use crate::keys::conv_key;
use crate::pipeline::crm_log::{Logbook, Logged};
use crate::pipeline::{StagePointer, WorkspaceCache};
use crate::records::Message;
use crate::runtime::consumer::MessageHandler;
use crate::runtime::ports::Ports;
use crate::thread::Threader;
use anyhow::Context;
use async_trait::async_trait;
use mailroom_core::routing::{Decision, RouteContext, Router};
use mailroom_core::workspace::{Assign, Workspace};
use mailroom_store::{Cond, Item, Key, StoreError, Update};
use serde_json::{Value, json};

pub struct RouteHandler {
    ports: Ports,
    config: WorkspaceCache,
}

use crate::keys::item_str as s;

/// The text body of a recorded message, read again from its raw bytes. Nothing derived
/// is stored for it: a second blob per message would cost a file (locally) or an S3 PUT
/// (in AWS, 12x the price of the GET) for what a parse of the raw gives back in
/// ~0.1 ms (docs/performance.md).
pub async fn message_text(ports: &Ports, msg: &Item) -> anyhow::Result<String> {
    let key = s(msg, "raw_key").context("message record has no raw_key")?;
    let raw = ports.blobs.get(&key).await?.with_context(|| format!("raw object {key} is missing"))?;
    Ok(mailroom_core::text_body(&raw))
}

/// The record of a message the match stage recorded (both later stages start from it).
pub async fn recorded_message(ports: &Ports, message_id: &str) -> anyhow::Result<Item> {
    ports
        .table
        .get(&keys::message(message_id))
        .await?
        .with_context(|| format!("message {message_id} is not recorded"))
}

impl RouteHandler {
    pub fn new(ports: Ports) -> RouteHandler {
        RouteHandler { config: WorkspaceCache::new(ports.clone()), ports }
    }

    async fn process(&self, ptr: &StagePointer) -> anyhow::Result<()> {
        let table = &self.ports.table;
        let msg = recorded_message(&self.ports, &ptr.message_id).await?;
        let m = Message::from_item(&msg);
        let cfg = self.config.get().await?;
        let (ws, router) = (&cfg.0, &cfg.1);
        let inbox = m.inbox.clone();
        let kind = m.kind().to_string();
        let outbound = m.is_outbound();
        let conv_id = m.conversation.clone().context("message has no conversation")?;
        let root = Threader::new(&self.ports).find(&conv_id).await?;
        let book = Logbook { ports: &self.ports, ws };
        let Logged { mut entry, customer, open_deals } = book.log(&msg, &m, &root.id, &root.item).await?;

        // The conversation's customer, company and deals: the customer and company set
        // once, the deals kept current.
        if let Some(c) = &customer {
            let test = m.test.clone();
            let mut actions = vec![
                Update::SetIfAbsent("contact_email".into(), json!(c)),
                Update::SetIfAbsent("company_domain".into(), json!(entry.company)),
            ];
            if !open_deals.is_empty() {
                actions.push(Update::Set("deal_ids".into(), json!(open_deals)));
            }
            if let Some(d) = &entry.deal {
                actions.push(Update::Set("deal".into(), json!(d)));
            }
            if let Some(run) = &test {
                // Out of every conversation list (the lists read the gsi1 partition).
                actions.push(Update::Set("test".into(), json!(run)));
                actions.push(Update::Set("gsi1pk".into(), json!(keys::TEST_INDEX_PK)));
            }
            table.update(&conv_key(&root.id), actions, Some(Cond::Exists)).await?;
        }

        self.note_activity(&root.id, &m, outbound, &kind).await?;

        // Routing: once per conversation, on its first customer (or list) message.
        if !outbound && matches!(kind.as_str(), "normal" | "list") && root.item.get("routed").is_none() {
            // Settles the load and the inbox's tally too.
            let d = self
                .route(&ptr.message_id, &msg, &root.id, &inbox, &kind, customer.as_deref(), router, ws)
                .await?;
            // A rule that names one of the customer's open deals puts the conversation on it.
            if let Some(deal) = d.deal.filter(|d| open_deals.contains(d) && entry.deal.as_ref() != Some(d)) {
                book.put_on_deal(&root.id, &m, &mut entry, &deal).await?;
            }
        } else if root.item.get("tally").is_none() {
            // Every conversation counts in its inbox's tally, routed or not (one that
            // starts with our own message, or noise). Once counted, later messages change
            // nothing here: status and assignment changes settle it themselves.
            crate::load::settle(&self.ports, &root.id).await?;
        }
        let next = StagePointer {
            message_id: ptr.message_id.clone(),
            logged: Some(entry.logged),
            log_reason: entry.reason.clone(),
        };
        self.ports.ticket_queue.send(&serde_json::to_string(&next)?).await?;
        Ok(())
    }

    /// Keeps what lists show of the conversation's newest message on the conversation:
    /// when we received it (also the list order, `gsi1sk`), its text shortened, the
    /// channel; a customer's new message wakes a snoozed conversation. Only a message
    /// newer than the one recorded changes it, so arrival order does not matter.
    async fn note_activity(&self, conv: &str, m: &Message, outbound: bool, kind: &str) -> anyhow::Result<()> {
        let received = m.received().unwrap_or_else(|| self.ports.clock.now());
        let at = received.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let snippet: String = m.preview.as_deref().unwrap_or_default().chars().take(160).collect();
        let mut actions = vec![
            Update::Set("last_activity".into(), json!(at)),
            Update::Set("gsi1sk".into(), json!(format!("{at}#{conv}"))),
            Update::Set("snippet".into(), json!(snippet)),
            Update::SetIfAbsent("channel".into(), json!(m.channel.as_deref().unwrap_or("email"))),
        ];
        if !outbound && kind == "normal" {
            actions.push(Update::Remove("snoozed_until".into()));
        }
        let newer = Cond::Or(vec![
            Cond::AttrNotExists("last_activity".into()),
            Cond::Lt("last_activity".into(), json!(at)),
        ]);
        let cond = Cond::And(vec![Cond::Exists, Cond::AttrNotExists("parent".into()), newer]);
        match self.ports.table.update(&keys::conv_key(conv), actions, Some(cond)).await {
            Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn route(
        &self,
        message_id: &str,
        msg: &Item,
        conv: &str,
        inbox: &str,
        kind: &str,
        customer: Option<&str>,
        router: &Router,
        ws: &Workspace,
    ) -> anyhow::Result<Decision> {
        let ctx = route_context(&self.ports, msg, inbox, kind, customer).await?;
        let d = router.route(&ctx);
        // List mail is routed to a team but never assigned to a person.
        let assignee = if kind == "normal" { self.assignee(&d, conv, ws, &ctx).await? } else { None };
        let res = self
            .ports
            .table
            .update(
                &conv_key(conv),
                [
                    vec![
                        Update::Set("routed".into(), json!(true)),
                        Update::Set("routed_by".into(), json!(message_id)),
                        Update::Set("assignee".into(), json!(assignee)),
                    ],
                    decision_updates(&d),
                ]
                .concat(),
                Some(Cond::AttrNotExists("routed".into())),
            )
            .await;
        match res {
            Ok(_) => {
                tracing::info!(conversation = conv, team = ?d.team, assignee = ?assignee, "conversation routed");
            }
            // Another delivery routed it first: its decision stands.
            Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e.into()),
        }
        // Open conversations per agent, for least-loaded assignment.
        crate::load::settle(&self.ports, conv).await?;
        Ok(d)
    }

    /// The user a decision assigns: explicit, or by strategy among the team's available
    /// members. The round-robin pick is stored per conversation before it is used, so a
    /// redelivered message picks the same agent and the counter advances once.
    async fn assignee(
        &self,
        d: &Decision,
        conv: &str,
        ws: &Workspace,
        ctx: &RouteContext,
    ) -> anyhow::Result<Option<String>> {
        if let Some(u) = &d.user {
            return Ok(Some(u.clone()));
        }
        let Some(team) = d.team.as_ref().and_then(|t| ws.teams.iter().find(|x| &x.id == t)) else {
            return Ok(None);
        };
        let members: Vec<&String> = team
            .members
            .iter()
            .filter(|m| ws.users.iter().any(|u| u.email.eq_ignore_ascii_case(m) && u.available))
            .collect();
        if members.is_empty() {
            return Ok(None);
        }
        let table = &self.ports.table;
        match d.assign.or(team.assign) {
            None => Ok(None),
            Some(Assign::ContactOwner) => Ok(ctx.properties.get("contact.owner").cloned()),
            Some(Assign::RoundRobin) => {
                let pick_key = Key::new(format!("pick#{conv}"), "pick");
                let n = match table.get(&pick_key).await? {
                    Some(p) => p.get("n").and_then(Value::as_i64).unwrap_or(1),
                    None => {
                        let counter = table
                            .update(
                                &Key::new(format!("rr#{}", team.id), "rr"),
                                vec![Update::Add("next".into(), 1)],
                                None,
                            )
                            .await?;
                        let n = counter.get("next").and_then(Value::as_i64).unwrap_or(1);
                        let mut item = pick_key.item();
                        item.insert("n".into(), json!(n));
                        match table.put(item, Some(Cond::NotExists)).await {
                            Ok(()) => n,
                            Err(StoreError::ConditionFailed) => table
                                .get(&pick_key)
                                .await?
                                .and_then(|p| p.get("n").and_then(Value::as_i64))
                                .unwrap_or(n),
                            Err(e) => return Err(e.into()),
                        }
                    }
                };
                let i = ((n - 1).max(0) as usize) % members.len();
                Ok(Some(members[i].to_lowercase()))
            }
            Some(Assign::LeastLoaded) => {
                let members: Vec<String> = members.into_iter().cloned().collect();
                crate::load::pick_least_loaded(&self.ports, conv, &members).await
            }
        }
    }
}

/// What a routing decision writes on the conversation (besides the assignee).
pub fn decision_updates(d: &Decision) -> Vec<Update> {
    vec![
        Update::Set("team".into(), json!(d.team)),
        Update::Set("priority".into(), json!(d.priority)),
        Update::Set("tags".into(), json!(d.tags)),
        Update::Set("rule_pipeline".into(), json!(d.pipeline)),
        Update::Set("rule_stage".into(), json!(d.stage)),
        Update::Set("no_ticket".into(), json!(d.no_ticket)),
        Update::Set("matched_rules".into(), json!(d.matched)),
    ]
}

/// What the rules look at for a conversation's first customer message `msg`: its inbox,
/// subject, body, sender and kind, and the properties of its customer and their company.
pub async fn route_context(
    ports: &Ports,
    msg: &Item,
    inbox: &str,
    kind: &str,
    customer: Option<&str>,
) -> anyhow::Result<RouteContext> {
    let mut ctx = RouteContext {
        inbox: inbox.to_string(),
        subject: s(msg, "subject").unwrap_or_default(),
        body: message_text(ports, msg).await?,
        sender_email: s(msg, "from").unwrap_or_default(),
        kind: kind.to_string(),
        ..RouteContext::default()
    };
    if let Some(c) = customer {
        customer_properties(ports, &mut ctx, c).await?;
    }
    Ok(ctx)
}

/// The `contact.*` and `company.*` properties of `email`'s contact and its company:
/// stored attributes and the configured `properties` map.
pub async fn customer_properties(ports: &Ports, ctx: &mut RouteContext, email: &str) -> anyhow::Result<()> {
    if let Some(contact) = ports.table.get(&keys::contact_key(email)).await? {
        add_properties(ctx, "contact", &contact);
        if let Some(domain) = s(&contact, "company_domain")
            && let Some(company) = ports.table.get(&keys::company_key(&domain)).await?
        {
            add_properties(ctx, "company", &company);
        }
    }
    Ok(())
}

/// `prefix.attr` for every string attribute, and `prefix.name` for each entry of a
/// `properties` map.
fn add_properties(ctx: &mut RouteContext, prefix: &str, item: &Item) {
    for (k, v) in item {
        if let Some(v) = v.as_str() {
            ctx.properties.insert(format!("{prefix}.{k}"), v.to_string());
        }
    }
    if let Some(props) = item.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            if let Some(v) = v.as_str() {
                ctx.properties.insert(format!("{prefix}.{k}"), v.to_string());
            }
        }
    }
}

#[async_trait]
impl MessageHandler for RouteHandler {
    async fn handle(&self, body: &str) -> anyhow::Result<()> {
        let ptr: StagePointer =
            serde_json::from_str(body).context("route queue message is not a stage pointer")?;
        self.process(&ptr).await
    }
}
