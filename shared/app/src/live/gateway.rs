//! The chat function: API Gateway's WebSocket API calls it for `$connect`, `$disconnect`
//! and every frame (`$default`), and it answers through the management API. The same
//! protocol as `mailroom serve` (`protocol.rs`); what API Gateway holds in memory there
//! is in the table here (`chat::push`): connections, and rate limits in one-minute
//! windows. Agents' pages keep polling on AWS (docs/chat.md).

use super::limit::{CONNECTS_PER_IP, Rate};
use super::protocol::{Side, Visitor, error};
use crate::chat::push::{self, Push};
use crate::chat::{self, Session};
use crate::pipeline::ingest::Ingestor;
use crate::runtime::ports::Ports;
use async_trait::async_trait;
use aws_lambda_events::apigw::{ApiGatewayProxyResponse, ApiGatewayWebsocketProxyRequest};
use aws_lambda_events::encodings::Body;

/// The table's side of the protocol.
struct TableSide<'a> {
    ports: &'a Ports,
    connection: &'a str,
}

#[async_trait]
impl Side for TableSide<'_> {
    async fn allow(&self, key: &str, rate: Rate) -> bool {
        match push::allow(self.ports, key, rate.per_minute).await {
            Ok(ok) => ok,
            Err(e) => {
                // The limit cannot be read: let the visitor through rather than lose mail.
                tracing::warn!(error = %format!("{e:#}"), "chat: the rate counter failed");
                true
            }
        }
    }

    async fn attach(&mut self, _previous: Option<&Session>, session: &Session) -> anyhow::Result<()> {
        push::attach(self.ports, self.connection, &session.id).await
    }

    async fn agents_online(&self, _inbox: &str) -> Option<bool> {
        None
    }

    async fn typing(&self, _session: &Session, _inbox: &str, _name: &str) {}
}

fn answer(status: i64, body: &str) -> ApiGatewayProxyResponse {
    let mut r = ApiGatewayProxyResponse::default();
    r.status_code = status;
    r.body = Some(Body::Text(body.to_string()));
    r
}

fn header<'a>(req: &'a ApiGatewayWebsocketProxyRequest, name: &str) -> Option<&'a str> {
    req.headers.get(name).and_then(|v| v.to_str().ok())
}

/// One event of the WebSocket API.
pub async fn handle(
    ports: &Ports,
    ingestor: &Ingestor,
    out: &dyn Push,
    req: ApiGatewayWebsocketProxyRequest,
) -> anyhow::Result<ApiGatewayProxyResponse> {
    let ctx = &req.request_context;
    let connection = ctx.connection_id.clone().unwrap_or_default();
    let ip = ctx.identity.source_ip.clone().unwrap_or_default();
    match ctx.route_key.as_deref().unwrap_or_default() {
        "$connect" => {
            let widget_id = req.query_string_parameters.first("widget").unwrap_or_default().to_string();
            let ws = crate::workspace::load(ports).await?.unwrap_or_default();
            let Some(widget) = ws.chat_widget(&widget_id) else {
                return Ok(answer(404, "unknown chat widget"));
            };
            let origin = header(&req, "origin");
            if !super::visitor::origin_allowed(widget, origin) {
                tracing::warn!(widget = %widget.id, origin = ?origin, "chat connection from an origin the widget does not allow");
                return Ok(answer(403, "this site may not open chats of this widget"));
            }
            if !push::allow(ports, &format!("connect|{ip}"), CONNECTS_PER_IP.per_minute).await? {
                return Ok(answer(429, "too many chat connections from this address"));
            }
            push::open(ports, &connection, &widget.id, &ip).await?;
            Ok(answer(200, ""))
        }
        "$disconnect" => {
            push::close(ports, &connection).await?;
            Ok(answer(200, ""))
        }
        _ => {
            let Some((widget_id, ip, session_id)) = push::connection(ports, &connection).await? else {
                out.post(&connection, &error("session", "Reconnect, please.")).await?;
                return Ok(answer(200, ""));
            };
            let ws = crate::workspace::load(ports).await?.unwrap_or_default();
            let Some(widget) = ws.chat_widget(&widget_id).cloned() else {
                return Ok(answer(410, "the widget is gone"));
            };
            let session = match session_id {
                Some(id) => chat::load(ports, &widget.id, &id).await?,
                None => None,
            };
            let side = TableSide { ports, connection: &connection };
            let mut v = Visitor { ports: ports.clone(), widget, ip, session, side };
            let text = req.body.as_deref().unwrap_or_default();
            let reply = match v.handle(ingestor, text).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "chat frame failed");
                    Some(error("server", "Something went wrong on our side; try again."))
                }
            };
            if let Some(r) = reply
                && !out.post(&connection, &r).await?
            {
                push::close(ports, &connection).await?;
            }
            Ok(answer(200, ""))
        }
    }
}
