//! The route stage's first half: log a message on the CRM, or record why not. It finds or
//! creates the contacts and companies the inbox's logging mode allows, writes their
//! timeline entries, picks the deal, and stores the message's email-log confirmation
//! ([`LogEntry`]) on its record. What to log is decided by `mailroom_core::crm_log`.
//!
//! Idempotent: contacts and companies are created with conditional puts, timeline entries
//! are keyed by message, and the confirmation is overwritten with the same answer.

use crate::keys;
use crate::keys::item_str as s;
use crate::records::{LogEntry, Message};
use crate::runtime::ports::Ports;
use mailroom_core::EmailAddress;
use mailroom_core::crm::{company_domain, company_name};
use mailroom_core::crm_log::{LogFacts, LogPolicy, NotLogged, in_domain, policy};
use mailroom_core::workspace::Workspace;
use mailroom_store::{Cond, Item, Query, StoreError, Update};
use serde_json::{Value, json};

/// What logging one message found out, for the rest of the route stage.
pub struct Logged {
    pub entry: LogEntry,
    /// The conversation's customer as this message tells it: the first contact it was
    /// logged on among its sender (inbound) or To recipients (sent).
    pub customer: Option<String>,
    /// The open deals of the customer and their company.
    pub open_deals: Vec<String>,
}

pub struct Logbook<'a> {
    pub ports: &'a Ports,
    pub ws: &'a Workspace,
}

impl Logbook<'_> {
    /// Whether `email` is the company's own: a user, an inbox, the domain of the inbox
    /// holding the copy, or one of `[logging] internal_domains`.
    pub async fn is_own(&self, email: &str, inbox: &str) -> anyhow::Result<bool> {
        let ws = self.ws;
        let e = email.to_lowercase();
        let domain = e.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        let inbox_domain = inbox.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
        if domain.eq_ignore_ascii_case(inbox_domain)
            || ws.logging.internal_domains.iter().any(|d| in_domain(domain, d.trim()))
            || ws.users.iter().any(|u| u.email.eq_ignore_ascii_case(&e))
            || ws.inboxes.iter().any(|i| i.address.eq_ignore_ascii_case(&e))
        {
            return Ok(true);
        }
        Ok(match EmailAddress::parse(&e) {
            Ok(a) => self.ports.table.get(&keys::inbox(&a)).await?.is_some(),
            Err(_) => false,
        })
    }

    /// Decides where message `msg` is logged under today's settings: the confirmation
    /// without company, deal or ticket, and the customer side's primary addresses. With
    /// `write`, missing contacts the mode allows are created; without, they are counted
    /// as if they were (a dry run).
    pub async fn decide(
        &self,
        msg: &Item,
        m: &Message,
        write: bool,
    ) -> anyhow::Result<(LogEntry, Vec<String>)> {
        let ws = self.ws;
        let inbox = m.inbox.to_lowercase();
        let outbound = m.is_outbound();
        let lower = |l: &[String]| -> Vec<String> { l.iter().map(|a| a.to_lowercase()).collect() };
        let from = m.from.as_ref().map(|f| f.to_lowercase());
        let (to, cc, bcc) = (lower(&m.to), lower(&m.cc), lower(&m.bcc));

        // The customer side: the sender of inbound mail, the To of sent mail, then the
        // other external addresses (linked, or created where the inbox says so).
        let mut primary: Vec<String> = Vec::new();
        let mut others: Vec<String> = Vec::new();
        let heads: Vec<&String> = if outbound { to.iter().collect() } else { from.iter().collect() };
        for a in heads {
            if !primary.contains(a) && !self.is_own(a, &inbox).await? {
                primary.push(a.clone());
            }
        }
        let rest = if outbound {
            cc.iter().chain(bcc.iter()).collect::<Vec<_>>()
        } else {
            to.iter().chain(&cc).collect()
        };
        for a in rest {
            if !primary.contains(a) && !others.contains(a) && !self.is_own(a, &inbox).await? {
                others.push(a.clone());
            }
        }
        let inbox_cfg = ws.inboxes.iter().find(|i| i.address.eq_ignore_ascii_case(&inbox));
        let mode = inbox_cfg.map(|i| i.log_mode(ws)).unwrap_or(ws.logging.mode);
        let mut entry = LogEntry { mode: mode.as_str().into(), ..LogEntry::default() };

        let mut logged: Vec<String> = Vec::new();
        if let Some(tc) = s(msg, "test_contact").filter(|_| !outbound) {
            // A verification's test message (crate::verify) is logged on its run's test
            // contact, which no list shows and the run removes when it ends.
            if write {
                self.test_contact(&tc, &s(msg, "test").unwrap_or_default()).await?;
            }
            logged.push(tc);
        } else {
            let participants: Vec<String> = from.iter().chain(&to).chain(&cc).chain(&bcc).cloned().collect();
            let external: Vec<String> = primary.iter().chain(&others).cloned().collect();
            let logging_address = ws.logging.logging_address.as_deref().map(str::to_lowercase);
            let tracked = m.author.is_some()
                || logging_address.as_ref().is_some_and(|l| *l == inbox || participants.contains(l));
            let facts =
                LogFacts { kind: m.kind(), participants: &participants, external: &external, tracked };
            match policy(&ws.logging, mode, &facts) {
                LogPolicy::Skip(reason) => entry.reason = Some(reason.as_str().into()),
                LogPolicy::Log { create } => {
                    let name = if outbound { None } else { m.from_name.as_deref() };
                    let create_others = create && inbox_cfg.is_some_and(|i| i.create_cc_contacts);
                    let wanted = primary
                        .iter()
                        .map(|e| (e, name, create))
                        .chain(others.iter().map(|e| (e, None, create_others)));
                    for (email, name, create) in wanted {
                        let exists = if write {
                            self.contact(email, name, create).await?
                        } else {
                            create || self.ports.table.get(&keys::contact_key(email)).await?.is_some()
                        };
                        if exists {
                            logged.push(email.clone());
                        }
                    }
                    if logged.is_empty() {
                        entry.reason = Some(NotLogged::NoContact.as_str().into());
                    }
                }
            }
        }
        entry.logged = !logged.is_empty();
        entry.contacts = logged;
        Ok((entry, primary))
    }

    /// The key of message `m`'s entry on contact `email`'s timeline.
    pub fn timeline_key(email: &str, m: &Message) -> mailroom_store::Key {
        let date = m.date.clone().unwrap_or_default();
        mailroom_store::Key::new(keys::timeline_pk(email), format!("{date}#{}", m.message_id))
    }

    /// Puts message `m` of conversation `conv` on contact `email`'s timeline.
    pub async fn add_to_timeline(&self, email: &str, m: &Message, conv: &str) -> anyhow::Result<()> {
        let mut item = Self::timeline_key(email, m).item();
        item.insert("message_id".into(), json!(m.message_id));
        item.insert("conversation".into(), json!(conv));
        item.insert("direction".into(), json!(if m.is_outbound() { "outbound" } else { "inbound" }));
        item.insert("subject".into(), json!(m.subject));
        item.insert("kind".into(), json!(m.kind()));
        self.ports.table.put(item, None).await?;
        Ok(())
    }

    /// Logs the recorded message `msg` (of conversation `conv`, whose root item is
    /// `root`) and stores its confirmation.
    pub async fn log(&self, msg: &Item, m: &Message, conv: &str, root: &Item) -> anyhow::Result<Logged> {
        let ws = self.ws;
        let (mut entry, primary) = self.decide(msg, m, true).await?;
        let logged = entry.contacts.clone();
        let date = m.date.clone().unwrap_or_default();
        for email in &logged {
            self.add_to_timeline(email, m, conv).await?;
        }

        let customer = primary.iter().find(|p| logged.contains(p)).cloned().or_else(|| {
            // A verification's test contact stands for the customer.
            s(msg, "test_contact").filter(|tc| logged.contains(tc))
        });
        let mut open_deals = Vec::new();
        if let Some(c) = &customer {
            let domain = company_domain(c, &ws.company_exclusions).filter(|_| m.test.is_none());
            for owner in std::iter::once(c.clone()).chain(domain.clone()) {
                for d in self.ports.table.query_all(Query::new(keys::deals_pk(&owner))).await? {
                    if s(&d, "status").as_deref().unwrap_or("open") == "open"
                        && let Some(id) = s(&d, "sk")
                        && !open_deals.contains(&id)
                    {
                        open_deals.push(id);
                    }
                }
            }
            entry.company = s(root, "company_domain").or(domain);
            entry.deal = self.pick_deal(root, &open_deals, &date).await?;
        }
        self.ports
            .table
            .update(
                &keys::message(&m.message_id),
                vec![Update::Set("log".into(), serde_json::to_value(&entry)?)],
                None,
            )
            .await?;
        Ok(Logged { entry, customer, open_deals })
    }

    /// The deal a message is logged on: the conversation's while it is still open, else
    /// the open deal with the most recent logged message (the first listed when none has
    /// one: the contact's before the company's). The chosen deal's `last_logged` moves
    /// to the message's date when that is newer.
    async fn pick_deal(&self, root: &Item, open: &[String], date: &str) -> anyhow::Result<Option<String>> {
        let table = &self.ports.table;
        let chosen = match s(root, "deal").filter(|d| open.contains(d)) {
            Some(d) => Some(d),
            None => {
                let mut best: Option<(String, String)> = None;
                for id in open {
                    let last = table
                        .get(&keys::deal_key(id))
                        .await?
                        .and_then(|d| s(&d, "last_logged"))
                        .unwrap_or_default();
                    if best.as_ref().is_none_or(|(_, b)| last > *b) {
                        best = Some((id.clone(), last));
                    }
                }
                best.map(|(id, _)| id)
            }
        };
        if let Some(id) = &chosen {
            self.touch_deal(id, date).await?;
        }
        Ok(chosen)
    }

    /// Moves deal `id`'s `last_logged` to `date` when that is newer.
    async fn touch_deal(&self, id: &str, date: &str) -> anyhow::Result<()> {
        let newer = Cond::And(vec![
            Cond::Exists,
            Cond::Or(vec![
                Cond::AttrNotExists("last_logged".into()),
                Cond::Lt("last_logged".into(), json!(date)),
            ]),
        ]);
        let set = vec![Update::Set("last_logged".into(), json!(date))];
        match self.ports.table.update(&keys::deal_key(id), set, Some(newer)).await {
            Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Puts conversation `conv` and its message `m` (logged as `entry`) on `deal`, one
    /// of the customer's open deals that a routing rule names.
    pub async fn put_on_deal(
        &self,
        conv: &str,
        m: &Message,
        entry: &mut LogEntry,
        deal: &str,
    ) -> anyhow::Result<()> {
        self.ports
            .table
            .update(&keys::conv_key(conv), vec![Update::Set("deal".into(), json!(deal))], None)
            .await?;
        entry.deal = Some(deal.to_string());
        self.touch_deal(deal, m.date.as_deref().unwrap_or_default()).await?;
        let log = serde_json::to_value(&*entry)?;
        self.ports
            .table
            .update(&keys::message(&m.message_id), vec![Update::Set("log".into(), log)], None)
            .await?;
        Ok(())
    }

    /// A verification run's test contact: a contact item (so logging and routing on
    /// contact properties work as for anyone) without the index attributes that would
    /// put it in the contacts list, and without a company.
    async fn test_contact(&self, email: &str, run: &str) -> anyhow::Result<()> {
        let mut item = keys::contact_key(email).item();
        item.insert("email".into(), json!(email));
        item.insert("name".into(), json!("Mailroom verification"));
        item.insert("test".into(), json!(run));
        item.insert("created_at".into(), json!(self.ports.clock.now().to_rfc3339()));
        put_if_absent(self.ports.table.as_ref(), item).await
    }

    /// Finds or creates a contact; returns whether it exists now.
    async fn contact(&self, email: &str, name: Option<&str>, create: bool) -> anyhow::Result<bool> {
        let table = &self.ports.table;
        let key = keys::contact_key(email);
        let existing = table.get(&key).await?;
        if existing.is_none() && !create {
            return Ok(false);
        }
        let domain = company_domain(email, &self.ws.company_exclusions);
        let needs_company = existing.as_ref().is_none_or(|e| e.get("company_domain").is_none());
        if let Some(d) = domain.as_ref().filter(|_| needs_company) {
            let mut item = keys::company_key(d).item();
            item.insert("domain".into(), json!(d));
            item.insert("name".into(), json!(company_name(d)));
            item.insert("created_at".into(), json!(self.ports.clock.now().to_rfc3339()));
            item.insert("gsi1pk".into(), json!(keys::COMPANIES_INDEX_PK));
            item.insert("gsi1sk".into(), json!(d));
            put_if_absent(table.as_ref(), item).await?;
        }
        if let Some(existing) = existing {
            // A contact seeded by `mailroom apply` (or an older one) gets what the pipeline
            // adds: its company, its listing, the name from mail when it had none.
            let mut actions = vec![
                Update::SetIfAbsent("email".into(), json!(email.to_lowercase())),
                Update::SetIfAbsent("company_domain".into(), json!(domain)),
                Update::SetIfAbsent("created_at".into(), json!(self.ports.clock.now().to_rfc3339())),
                Update::SetIfAbsent("gsi1pk".into(), json!(keys::CONTACTS_INDEX_PK)),
                Update::SetIfAbsent("gsi1sk".into(), json!(email.to_lowercase())),
            ];
            if let Some(n) = name
                && existing.get("name").is_none_or(Value::is_null)
            {
                actions.push(Update::Set("name".into(), json!(n)));
            }
            if existing.get("gsi1pk").is_none()
                || existing.get("company_domain").is_none()
                || actions.len() > 5
            {
                table.update(&key, actions, None).await?;
            }
            return Ok(true);
        }
        let mut item = key.item();
        item.insert("email".into(), json!(email.to_lowercase()));
        item.insert("name".into(), json!(name));
        item.insert("company_domain".into(), json!(domain));
        item.insert("created_at".into(), json!(self.ports.clock.now().to_rfc3339()));
        item.insert("gsi1pk".into(), json!(keys::CONTACTS_INDEX_PK));
        item.insert("gsi1sk".into(), json!(email.to_lowercase()));
        put_if_absent(table.as_ref(), item).await?;
        Ok(true)
    }
}

pub(crate) async fn put_if_absent(table: &dyn mailroom_store::Table, item: Item) -> anyhow::Result<()> {
    match table.put(item, Some(Cond::NotExists)).await {
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
