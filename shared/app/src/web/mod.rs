//! The web inbox: server-rendered pages (askama templates compiled in) over the same
//! application services as the JSON API, with htmx for partial updates and a small
//! script of our own (keyboard, drafts, local times). Served at `/app/` by `mailroom
//! serve` and by the API function in AWS; nothing to build or deploy apart (docs/web.md).
//!
//! Every page is sent with a strict Content-Security-Policy (scripts and styles from our
//! origin only, no inline script, no framing); mail HTML is shown only inside a
//! sandboxed frame whose own document has an even stricter policy (`thread::message_body`).

// Handlers return `Result<_, Response>`: the error is the ready answer (a redirect to
// sign in, a 404 page), built once per request; boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod actions;
mod admin;
mod chat;
mod ctx;
mod list;
pub mod oidc;
mod pages;
mod people;
mod rules;
pub mod session;
mod settings;
mod signin;
mod thread;
mod view;

use crate::api::ApiState;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

/// What the pages share: the API's state (ports, authenticator, providers, public URL).
pub struct WebState {
    pub api: Arc<ApiState>,
    /// Browser sign-in through the OIDC provider, when configured.
    pub oidc: Option<oidc::WebOidc>,
}

impl WebState {
    /// Whether the public URL is https (the session cookie is then `Secure`).
    fn secure(&self) -> bool {
        self.api.public_url.starts_with("https://")
    }
}

/// The policy of every page: our scripts and styles only, no inline script or handler,
/// mail frames from our origin, no plugins, never framed, no `<base>`.
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn router(api: Arc<ApiState>, oidc: Option<oidc::WebOidc>) -> Router {
    let st = Arc::new(WebState { api, oidc });
    Router::new()
        .route("/app", get(|| async { axum::response::Redirect::permanent("/app/") }))
        .route("/app/", get(list::inbox))
        .route("/app/list", get(list::list))
        .route("/app/c/{id}", get(thread::conversation))
        .route("/app/c/{id}/live", get(thread::live))
        .route("/app/c/{id}/m/{idx}", get(thread::message_body))
        .route("/app/c/{id}/a/{sha}", get(thread::attachment))
        .route("/app/c/{id}/reply", post(actions::reply))
        .route("/app/c/{id}/comment", post(actions::comment))
        .route("/app/c/{id}/assign", post(actions::assign))
        .route("/app/c/{id}/close", post(actions::close))
        .route("/app/c/{id}/reopen", post(actions::reopen))
        .route("/app/c/{id}/snooze", post(actions::snooze))
        .route("/app/c/{id}/stage", post(actions::stage))
        .route("/app/c/{id}/presence", post(actions::presence))
        .route("/app/signin", get(signin::signin))
        .route("/app/login/{token}", get(signin::login))
        .route("/app/auth/start", get(signin::auth_start))
        .route("/app/auth/callback", get(signin::auth_callback))
        .route("/app/logout", post(signin::logout))
        .route("/app/settings", get(settings::inboxes))
        .route("/app/settings/inboxes/new", get(settings::new_form).post(settings::create))
        .route("/app/settings/notifications", get(people::notifications).post(people::save_notifications))
        .route("/app/settings/chat", get(chat::page_of).post(chat::save))
        .route("/app/settings/people", get(people::people))
        .route("/app/settings/people/{what}", post(people::change))
        .route("/app/settings/rules", get(rules::list))
        .route("/app/settings/rules/try", post(rules::try_it))
        .route("/app/settings/rules/new", get(rules::form).post(rules::save))
        .route("/app/settings/rules/{n}", get(rules::form).post(rules::save))
        .route("/app/settings/rules/{n}/{op}", post(rules::reorder))
        .route("/app/settings/inboxes/{address}", get(settings::inbox))
        .route("/app/settings/inboxes/{address}/verify", post(settings::verify_start))
        .route("/app/settings/inboxes/{address}/connect", post(settings::connect))
        .route("/app/settings/inboxes/{address}/verify/{run}", get(settings::verify_page))
        .route("/app/settings/inboxes/{address}/{part}", post(settings::save))
        .route("/app/reports", get(pages::reports))
        .route("/app/static/{file}", get(asset))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(st)
}

/// Headers every `/app` response carries (a handler may set a stricter CSP first).
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.entry(header::CONTENT_SECURITY_POLICY).or_insert(HeaderValue::from_static(PAGE_CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.entry(header::X_FRAME_OPTIONS).or_insert(HeaderValue::from_static("DENY"));
    h.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    resp
}

/// The vendored and our own static files, compiled in.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, ctype): (&'static [u8], &str) = match file.as_str() {
        "htmx-2.0.11.min.js" => {
            (include_bytes!("static/htmx-2.0.11.min.js"), "text/javascript; charset=utf-8")
        }
        "app.js" => (include_bytes!("static/app.js"), "text/javascript; charset=utf-8"),
        "app.css" => (include_bytes!("static/app.css"), "text/css; charset=utf-8"),
        "LICENSE-htmx.txt" => (include_bytes!("static/LICENSE-htmx.txt"), "text/plain; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, ctype), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}
