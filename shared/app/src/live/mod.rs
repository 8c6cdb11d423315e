//! Live updates over WebSockets, for `mailroom serve`: the chat widget's visitors
//! (`visitor.rs`, `/chat/v1/ws`) and the agents' browsers (`agent.rs`, `/app/live`) meet in
//! one [`Hub`]. The hub follows the event feed (every [`TICK`], a few seconds back, each
//! event once) and pushes each event to the agents allowed to see its inbox, and an agent's
//! reply to the chat visitor it answers; typing goes from one side to the other without
//! being stored. The protocol and the decisions are in docs/chat.md.

pub mod agent;
pub mod gateway;
mod limit;
pub mod protocol;
pub mod visitor;

use crate::access::Viewer;
use crate::feed::Event;
use crate::keys::item_str as s;
use crate::pipeline::ingest::Ingestor;
use crate::runtime::ports::Ports;
use chrono::{Duration, SecondsFormat};
use mailroom_core::workspace::Workspace;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub use limit::Limiter;

/// How often the hub reads the feed.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(250);
/// How far back each read goes, for events whose transaction took its time a moment
/// before it committed (ids already pushed are remembered, so each goes out once).
const LOOK_BACK: Duration = Duration::seconds(10);
/// Frames waiting for one slow socket; past that its frames are dropped (it catches up
/// from the pages' own refresh or the chat history on reconnect).
const QUEUE: usize = 256;

type Tx = mpsc::Sender<String>;

struct VisitorConn {
    id: u64,
    inbox: String,
    tx: Tx,
}

struct AgentConn {
    email: String,
    name: String,
    /// The inbox whose list the page shows (`None`: every inbox the agent sees).
    inbox: Option<String>,
    /// The conversation the page has open.
    conversation: Option<String>,
    tx: Tx,
}

#[derive(Default)]
struct Conns {
    visitors: HashMap<String, Vec<VisitorConn>>,
    agents: HashMap<u64, AgentConn>,
    /// Conversation root -> chat session, learnt from the feed.
    sessions: HashMap<String, String>,
}

/// Where live sockets meet.
pub struct Hub {
    pub ports: Ports,
    pub ingestor: Ingestor,
    pub limiter: Limiter,
    conns: Mutex<Conns>,
    next: AtomicU64,
}

fn frame(v: Value) -> String {
    v.to_string()
}

impl Hub {
    pub fn new(ports: Ports) -> Arc<Hub> {
        Arc::new(Hub {
            ingestor: Ingestor::new(ports.clone()),
            ports,
            limiter: Limiter::default(),
            conns: Mutex::new(Conns::default()),
            next: AtomicU64::new(1),
        })
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        // A panic while holding the lock leaves plain maps behind: keep using them.
        self.conns.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    async fn workspace(&self) -> anyhow::Result<Arc<Workspace>> {
        Ok(Arc::new(crate::workspace::load(&self.ports).await?.unwrap_or_default()))
    }

    /// The inbox of a widget.
    async fn widget_inbox(&self, widget: &str) -> Option<String> {
        let ws = self.workspace().await.ok()?;
        ws.chat_widget(widget).map(|w| w.inbox.clone())
    }

    fn viewer(ws: &Arc<Workspace>, email: &str) -> Option<Viewer> {
        ws.user(email).map(|u| Viewer::of(u, ws))
    }

    // ---------------------------------------------------------------- visitors

    fn add_visitor(&self, session: &str, inbox: &str) -> (u64, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = self.id();
        self.conns().visitors.entry(session.to_string()).or_default().push(VisitorConn {
            id,
            inbox: inbox.to_string(),
            tx,
        });
        (id, rx)
    }

    fn remove_visitor(&self, session: &str, id: u64) -> bool {
        let mut c = self.conns();
        let left = c.visitors.get_mut(session).map(|v| {
            v.retain(|x| x.id != id);
            v.is_empty()
        });
        if left == Some(true) {
            c.visitors.remove(session);
        }
        left.unwrap_or(true)
    }

    fn to_visitor(&self, session: &str, text: &str) {
        if let Some(v) = self.conns().visitors.get(session) {
            for c in v {
                let _ = c.tx.try_send(text.to_string());
            }
        }
    }

    /// Whether an agent who may answer in `inbox` has the inbox open in a browser now.
    pub async fn agents_online(&self, inbox: &str) -> bool {
        let Ok(ws) = self.workspace().await else { return false };
        let emails: Vec<String> = self.conns().agents.values().map(|a| a.email.clone()).collect();
        emails.iter().any(|e| Self::viewer(&ws, e).is_some_and(|v| v.can_see(inbox)))
    }

    /// Tells every visitor whether someone is there to answer (after an agent came or went).
    async fn announce_agents(&self) {
        let inboxes: Vec<String> = {
            let c = self.conns();
            let mut v: Vec<String> = c.visitors.values().flatten().map(|x| x.inbox.clone()).collect();
            v.sort();
            v.dedup();
            v
        };
        for inbox in inboxes {
            let online = self.agents_online(&inbox).await;
            let f = frame(json!({"type": "agents", "online": online}));
            for v in self.conns().visitors.values().flatten().filter(|v| v.inbox == inbox) {
                let _ = v.tx.try_send(f.clone());
            }
        }
    }

    /// The conversation of a chat session, once known.
    fn conversation_of_session(&self, session: &str) -> Option<String> {
        self.conns().sessions.iter().find(|(_, s)| s.as_str() == session).map(|(c, _)| c.clone())
    }

    /// A visitor is typing: the agents on that conversation (or its inbox's list) see it.
    pub fn visitor_typing(&self, session: &str, inbox: &str, name: &str, ws: &Arc<Workspace>) {
        let Some(conv) = self.conversation_of_session(session) else { return };
        let f = frame(json!({"type": "typing", "conversation": conv, "name": name, "visitor": true}));
        let c = self.conns();
        for a in c.agents.values() {
            let sees = Self::viewer(ws, &a.email).is_some_and(|v| v.can_see(inbox));
            if sees && a.conversation.as_deref() == Some(conv.as_str()) {
                let _ = a.tx.try_send(f.clone());
            }
        }
    }

    // ---------------------------------------------------------------- agents

    fn add_agent(&self, email: &str, name: &str) -> (u64, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let id = self.id();
        self.conns().agents.insert(
            id,
            AgentConn {
                email: email.to_string(),
                name: name.to_string(),
                inbox: None,
                conversation: None,
                tx,
            },
        );
        (id, rx)
    }

    fn remove_agent(&self, id: u64) {
        self.conns().agents.remove(&id);
    }

    /// What an agent's page shows; the others on a conversation it opens hear that someone
    /// else is viewing it (their page shows who, from the presence marks).
    fn subscribe(&self, id: u64, inbox: Option<String>, conversation: Option<String>) {
        let mut c = self.conns();
        let Some(a) = c.agents.get_mut(&id) else { return };
        let opened = conversation.clone().filter(|conv| a.conversation.as_ref() != Some(conv));
        a.inbox = inbox;
        a.conversation = conversation;
        let name = a.name.clone();
        if let Some(conv) = opened {
            let f = frame(json!({"type": "presence", "conversation": conv, "name": name}));
            for (other, a) in &c.agents {
                if *other != id && a.conversation.as_deref() == Some(conv.as_str()) {
                    let _ = a.tx.try_send(f.clone());
                }
            }
        }
    }

    /// An agent is typing in a conversation they may see: its chat visitor and the other
    /// agents on it see that.
    async fn agent_typing(&self, id: u64, conv: &str) {
        let name = self.conns().agents.get(&id).map(|a| a.name.clone()).unwrap_or_default();
        let f = frame(json!({"type": "typing", "conversation": conv, "name": name}));
        {
            let c = self.conns();
            for (other, a) in &c.agents {
                if *other != id && a.conversation.as_deref() == Some(conv) {
                    let _ = a.tx.try_send(f.clone());
                }
            }
        }
        let cached = self.conns().sessions.get(conv).cloned();
        let session = match cached {
            Some(s) => Some(s),
            None => crate::chat::session_of_conversation(&self.ports, conv).await.ok().flatten(),
        };
        if let Some(session) = session {
            self.conns().sessions.insert(conv.to_string(), session.clone());
            self.to_visitor(&session, &frame(json!({"type": "typing", "name": name})));
        }
    }

    // ---------------------------------------------------------------- the feed

    /// Follows the feed until the process ends.
    pub async fn run(self: Arc<Self>) {
        let mut pushed: HashMap<String, chrono::DateTime<chrono::Utc>> = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.read_feed(&mut pushed).await {
                tracing::warn!(error = %format!("{e:#}"), "live: reading the event feed failed");
            }
        }
    }

    /// One read of the feed: every event of the last [`LOOK_BACK`] not pushed yet.
    pub async fn read_feed(
        &self,
        pushed: &mut HashMap<String, chrono::DateTime<chrono::Utc>>,
    ) -> anyhow::Result<usize> {
        let now = self.ports.clock.now();
        pushed.retain(|_, at| now - *at < LOOK_BACK * 2);
        let from = (now - LOOK_BACK).to_rfc3339_opts(SecondsFormat::Millis, true);
        let items = crate::feed::between(&self.ports, &from, "~", usize::MAX).await?;
        let fresh: Vec<Event> =
            items.iter().filter_map(Event::from_item).filter(|e| !pushed.contains_key(&e.id)).collect();
        if fresh.is_empty() {
            return Ok(0);
        }
        let ws = self.workspace().await?;
        for e in &fresh {
            pushed.insert(e.id.clone(), now);
            if let Err(err) = self.dispatch(e, &ws).await {
                tracing::warn!(event = %e.id, error = %format!("{err:#}"), "live: pushing an event failed");
            }
        }
        Ok(fresh.len())
    }

    async fn dispatch(&self, e: &Event, ws: &Arc<Workspace>) -> anyhow::Result<()> {
        let Some(conv) = &e.conversation else { return Ok(()) };
        let root = crate::thread::Threader::new(&self.ports).find(conv).await?;
        let inbox = s(&root.item, "inbox").unwrap_or_default();
        let data = &e.data;
        let mid = data.get("message_id").and_then(Value::as_str).unwrap_or_default();
        if e.kind == "message_logged"
            && let Some(session) = crate::chat::session_of_message_id(mid)
        {
            self.conns().sessions.insert(root.id.clone(), session.to_string());
        }
        // Agents: whoever may see the inbox and shows it (or the conversation).
        let mut ev = json!({"type": "event", "kind": e.kind, "conversation": root.id, "inbox": inbox});
        if !mid.is_empty() {
            ev["message_id"] = json!(mid);
        }
        let f = frame(ev);
        {
            let c = self.conns();
            for a in c.agents.values() {
                let shows = a.conversation.as_deref() == Some(root.id.as_str())
                    || a.inbox.as_deref().is_none_or(|i| i.eq_ignore_ascii_case(&inbox));
                if shows && Self::viewer(ws, &a.email).is_some_and(|v| v.can_see(&inbox)) {
                    let _ = a.tx.try_send(f.clone());
                }
            }
        }
        // The chat visitor: an agent's reply delivered in the chat (one sent by email stays
        // out of the chat: chat::in_chat).
        let outbound = data.get("direction").and_then(Value::as_str) == Some("outbound");
        let chat = data.get("channel").and_then(Value::as_str) == Some("chat");
        if e.kind == "message_logged" && outbound && chat {
            let session = self.conns().sessions.get(&root.id).cloned();
            let session = match session {
                Some(s) => Some(s),
                None => crate::chat::session_to_answer(&self.ports, &root.id).await?,
            };
            let Some(session) = session else { return Ok(()) };
            if !self.conns().visitors.contains_key(&session) {
                return Ok(());
            }
            if let Some(m) = self.ports.table.get(&crate::keys::message(mid)).await?
                && let Some(line) = crate::chat::line_of(&self.ports, &m).await
            {
                self.to_visitor(&session, &crate::chat::line_frame(&line));
            }
        }
        Ok(())
    }
}
