//! The visitor's side of the chat protocol, whatever carries it: frames in, the answer
//! out. `visitor.rs` runs it over axum's WebSockets with the in-process hub
//! (`mailroom serve`); `gateway.rs` over API Gateway's WebSocket API in the chat
//! function, with connections and rate counters in the table. What differs between the two
//! is behind [`Side`].

use super::frame;
use super::limit::{FRAMES_PER_IP, MESSAGES_PER_IP, MESSAGES_PER_SESSION, Rate};
use crate::chat::{self, Session};
use crate::pipeline::ingest::Ingestor;
use crate::runtime::ports::Ports;
use async_trait::async_trait;
use mailroom_core::workspace::ChatWidget;
use serde_json::{Value, json};

/// What the transport does for the protocol.
#[async_trait]
pub trait Side: Send {
    /// One use of the rate bucket `key`; false when it is empty.
    async fn allow(&self, key: &str, rate: Rate) -> bool;
    /// From now on the connection speaks for `session` (replies and typing reach it);
    /// `previous` is the session it spoke for until now.
    async fn attach(&mut self, previous: Option<&Session>, session: &Session) -> anyhow::Result<()>;
    /// Whether an agent who may answer in `inbox` is there; `None` when this side cannot
    /// tell (the widget then shows no "away" note).
    async fn agents_online(&self, inbox: &str) -> Option<bool>;
    /// The visitor is typing.
    async fn typing(&self, session: &Session, inbox: &str, name: &str);
}

/// One visitor's connection.
pub struct Visitor<S: Side> {
    pub ports: Ports,
    pub widget: ChatWidget,
    pub ip: String,
    pub session: Option<Session>,
    pub side: S,
}

/// What the visitor reads when they open the chat, beside their history.
fn welcome(widget: &ChatWidget, agents_online: Option<bool>) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("greeting".into(), json!(widget.greeting.as_deref().unwrap_or("Hi! How can we help?")));
    m.insert("agents_online".into(), json!(agents_online));
    m.insert("away".into(), json!(widget.away_message));
    m.insert("colour".into(), json!(widget.colour));
    m
}

pub fn error(code: &str, message: &str) -> String {
    frame(json!({"type": "error", "code": code, "message": message}))
}

impl<S: Side> Visitor<S> {
    /// Whether someone can answer now: never outside the widget's business hours, else
    /// what the side knows of the agents.
    async fn answering(&self) -> Option<bool> {
        if let Some(id) = self.widget.business_hours.as_deref()
            && let Ok(Some(ws)) = crate::workspace::load(&self.ports).await
            && !ws.calendar(Some(id)).is_open(self.ports.clock.now())
        {
            return Some(false);
        }
        self.side.agents_online(&self.widget.inbox).await
    }

    async fn ready(&mut self, session: Session) -> anyhow::Result<String> {
        self.side.attach(self.session.as_ref(), &session).await?;
        let history = chat::history(&self.ports, &self.widget, &session.id).await?;
        let mut m = welcome(&self.widget, self.answering().await);
        m.insert("type".into(), json!("ready"));
        m.insert("token".into(), json!(chat::token(&self.ports, &self.widget.id, &session.id)));
        m.insert("name".into(), json!(session.name));
        m.insert("email".into(), json!(session.email.key()));
        m.insert("history".into(), json!(history));
        self.session = Some(session);
        Ok(frame(Value::Object(m)))
    }

    async fn need_identity(&self) -> String {
        let mut m = welcome(&self.widget, self.answering().await);
        m.insert("type".into(), json!("need_identity"));
        frame(Value::Object(m))
    }

    /// The answer to one frame, if any.
    pub async fn handle(&mut self, ingestor: &Ingestor, text: &str) -> anyhow::Result<Option<String>> {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return Ok(Some(error("bad_request", "frames are JSON objects")));
        };
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let kind = field("type");
        if kind != "message" && !self.side.allow(&format!("frame|{}", self.ip), FRAMES_PER_IP).await {
            return Ok(Some(error("rate_limited", "Slow down a little, please.")));
        }
        match kind.as_str() {
            "hello" => Ok(Some(self.need_identity().await)),
            "resume" => {
                let token = field("token");
                let found = match chat::verify_token(&self.ports, &self.widget.id, &token) {
                    Some(id) => chat::load(&self.ports, &self.widget.id, &id).await?,
                    None => None,
                };
                match found {
                    Some(s) => Ok(Some(self.ready(s).await?)),
                    None => Ok(Some(self.need_identity().await)),
                }
            }
            "start" => {
                if !self.side.allow(&format!("msg|{}", self.ip), MESSAGES_PER_IP).await {
                    return Ok(Some(error(
                        "rate_limited",
                        "Too many chats from here; try again in a minute.",
                    )));
                }
                match chat::start(&self.ports, &self.widget, &field("name"), &field("email")).await {
                    Ok(s) => Ok(Some(self.ready(s).await?)),
                    Err(e) => Ok(Some(error("bad_email", &e))),
                }
            }
            "message" => self.message(ingestor, &field("text"), v.get("page").and_then(Value::as_str)).await,
            "typing" => {
                if let Some(s) = &self.session {
                    let name = s.name.clone().unwrap_or_else(|| s.email.key());
                    self.side.typing(s, &self.widget.inbox, &name).await;
                }
                Ok(None)
            }
            // The widget's keep-alive: the visitor is still here.
            "ping" => {
                if let Some(s) = &self.session {
                    chat::mark_online(&self.ports, &s.id).await?;
                }
                Ok(Some(frame(json!({"type": "pong"}))))
            }
            other => Ok(Some(error("bad_request", &format!("unknown frame type {other:?}")))),
        }
    }

    async fn message(
        &mut self,
        ingestor: &Ingestor,
        text: &str,
        page: Option<&str>,
    ) -> anyhow::Result<Option<String>> {
        let Some(session) = &self.session else {
            return Ok(Some(error("no_session", "Tell us your email first.")));
        };
        let text = text.trim();
        if text.is_empty() {
            return Ok(Some(error("empty", "The message is empty.")));
        }
        if text.chars().count() > chat::MAX_TEXT {
            return Ok(Some(error(
                "too_long",
                &format!("A message can have at most {} characters.", chat::MAX_TEXT),
            )));
        }
        // Both buckets are asked: a flood from one address cannot hide behind new sessions.
        let by_ip = self.side.allow(&format!("msg|{}", self.ip), MESSAGES_PER_IP).await;
        let by_session = self.side.allow(&format!("session|{}", session.id), MESSAGES_PER_SESSION).await;
        if !(by_ip && by_session) {
            return Ok(Some(error(
                "rate_limited",
                "You are sending messages too fast; this one was not sent.",
            )));
        }
        match chat::post(&self.ports, ingestor, &self.widget, session, text, page).await {
            Ok(mid) => Ok(Some(frame(json!({"type": "ack", "message_id": mid})))),
            Err(e) => {
                tracing::error!(session = %session.id, error = %format!("{e:#}"), "a chat message could not be stored");
                Ok(Some(error("not_stored", "Your message could not be stored; please send it again.")))
            }
        }
    }
}
