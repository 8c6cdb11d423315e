//! The admins' live-chat settings (`/app/settings/chat`): every widget with its inbox,
//! greeting, away message, colour and the sites allowed to embed it, and the code to paste
//! into the site. Changes go through the admin `edit` (validated like `apply`);
//! docs/chat.md has the widget.

use super::admin::*;
use crate::api::ApiError;
use crate::api::admin::edit;
use askama::Template;
use axum::response::Response;
use mailroom_core::workspace::{ChatWidget, InboxType};

pub(super) struct WidgetRow {
    pub id: String,
    pub inbox: String,
    pub greeting: String,
    pub away: String,
    pub hours: String,
    pub colour: String,
    pub origins: String,
    pub embed: String,
}

#[derive(Template)]
#[template(path = "web/settings/chat.html")]
struct ChatTpl {
    csrf: String,
    name: String,
    admin: bool,
    section: &'static str,
    notice: Option<String>,
    widgets: Vec<WidgetRow>,
    inboxes: Vec<String>,
    calendars: Vec<String>,
}

/// The script tag a site pastes: our script, the widget, and on AWS the chat's socket
/// (the stack's `ChatSocketUrl`, given to the API function as `MAILROOM_CHAT_SOCKET_URL`).
pub(super) fn embed_code(public_url: &str, widget: &str) -> String {
    let socket = std::env::var("MAILROOM_CHAT_SOCKET_URL").ok().filter(|s| !s.is_empty());
    let socket = socket.map(|s| format!(" data-socket=\"{s}\"")).unwrap_or_default();
    format!(
        "<script src=\"{}/chat/v1/widget.js\" data-widget=\"{widget}\"{socket} async></script>",
        public_url.trim_end_matches('/')
    )
}

/// `GET /app/settings/chat` (admins).
pub(super) async fn page_of(AdminPage { st, c, notice }: AdminPage) -> Response {
    let ws = &c.viewer.ws;
    let widgets = ws
        .chat_widgets
        .iter()
        .map(|w| WidgetRow {
            id: w.id.clone(),
            inbox: w.inbox.clone(),
            greeting: w.greeting.clone().unwrap_or_default(),
            away: w.away_message.clone().unwrap_or_default(),
            hours: w.business_hours.clone().unwrap_or_default(),
            colour: w.colour.clone().unwrap_or_else(|| "#1f4fd1".into()),
            origins: w.allowed_origins.join("\n"),
            embed: embed_code(&st.api.public_url, &w.id),
        })
        .collect();
    page(ChatTpl {
        csrf: c.session.csrf.clone(),
        name: c.viewer.name.clone(),
        admin: true,
        section: "settings",
        notice,
        widgets,
        calendars: ws.calendars.iter().map(|c| c.id.clone()).collect(),
        inboxes: ws
            .inboxes
            .iter()
            .filter(|i| i.kind == InboxType::Shared)
            .map(|i| i.address.clone())
            .collect(),
    })
}

/// `POST /app/settings/chat`: adds or changes a widget; `remove` takes it away.
pub(super) async fn save(form: AdminForm) -> Response {
    let AdminForm { st, c, .. } = &form;
    let f = |k: &str| form.get(k);
    let opt = |k: &str| Some(form.get(k)).filter(|v| !v.is_empty());
    let id = f("id");
    let r = edit(&st.api, &c.viewer, |ws| {
        if !f("remove").is_empty() {
            let before = ws.chat_widgets.len();
            ws.chat_widgets.retain(|w| w.id != id);
            return if ws.chat_widgets.len() < before {
                Ok(format!("Removed chat widget {id}: sites embedding it can no longer open chats."))
            } else {
                Err(ApiError::NotFound(format!("no chat widget {id}")))
            };
        }
        let origins: Vec<String> = f("allowed_origins")
            .split(['\n', ',', ' '])
            .map(|o| o.trim().trim_end_matches('/').to_string())
            .filter(|o| !o.is_empty())
            .collect();
        let widget = ChatWidget {
            id: id.clone(),
            inbox: f("inbox"),
            greeting: opt("greeting"),
            away_message: opt("away_message"),
            business_hours: opt("business_hours"),
            colour: opt("colour"),
            allowed_origins: origins,
        };
        match ws.chat_widgets.iter_mut().find(|w| w.id == id) {
            Some(w) => *w = widget,
            None => ws.chat_widgets.push(widget),
        }
        Ok(format!("Saved chat widget {id}."))
    })
    .await;
    let text = match r {
        Ok(t) => t,
        Err(e) => format!("Not saved: {}", problem(e)),
    };
    with_notice(st, "/app/settings/chat", &text)
}
