//! A conversation: the thread (mail HTML in sandboxed frames of its own), the CRM side
//! panel, the composer, the live part polled while it is open, presence.

use super::WebState;
use super::view::*;
use crate::access::Viewer;
use crate::api::conversations::{
    ConversationDetail, ListParams, detail_of, list_page, message_detail, visible_root,
};
use crate::keys;
use crate::keys::item_str as s;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::Utc;
use mailroom_core::html::RemoteImages;
use mailroom_store::Item;
use serde_json::Value;
use std::sync::Arc;

use super::ctx::*;
use super::list::*;

// ------------------------------------------------------------------ a conversation

pub(super) fn images_of(q: &ListQuery) -> RemoteImages {
    if q.images.as_deref() == Some("show") { RemoteImages::Allow } else { RemoteImages::Block }
}

/// Who else is on the conversation now (present in the last 30 seconds).
pub(super) async fn others(st: &WebState, conv: &str, me: &str) -> Vec<String> {
    let Ok(Some(item)) = st.api.ports.table.get(&keys::presence_key(conv)).await else { return vec![] };
    let now = Utc::now().timestamp();
    let mut out = Vec::new();
    for (k, v) in &item {
        let Some(user) = k.strip_prefix("u:") else { continue };
        let Some((state, at)) = v.as_str().and_then(|v| v.split_once('|')) else { continue };
        let fresh = at.parse::<i64>().is_ok_and(|t| now - t <= 30);
        if fresh && !user.eq_ignore_ascii_case(me) {
            out.push(format!("{user} is {}", if state == "replying" { "replying" } else { "viewing" }));
        }
    }
    out
}

pub(super) async fn live_tpl(
    st: &WebState,
    c: &Ctx,
    root: &str,
    d: ConversationDetail,
    images: RemoteImages,
) -> LiveTpl {
    let now = Utc::now();
    let ws = &c.viewer.ws;
    let sum = &d.summary;
    let show = if images == RemoteImages::Allow { "?images=show" } else { "" };
    let messages = d
        .messages
        .iter()
        .enumerate()
        .map(|(idx, m)| {
            let (at_iso, at_exact, _) = when(parse_time(m.date.as_deref()), now);
            MsgView {
                idx,
                side: if m.direction == "outbound" { "outbound" } else { "inbound" },
                from_label: m
                    .from_name
                    .clone()
                    .or_else(|| m.from.clone())
                    .unwrap_or_else(|| "(no sender)".into()),
                from_email: m.from.clone().unwrap_or_default(),
                kind_label: match m.kind.as_str() {
                    "auto_reply" => Some("auto-reply".into()),
                    "bounce" => Some("bounce".into()),
                    "list" => Some("list mail".into()),
                    _ => None,
                },
                spoofed: m.spoofed,
                at_iso,
                at_exact,
                error: m.error.clone(),
                has_html: m.html.is_some(),
                height_hint: height_hint(&m.text),
                frame_src: format!("/app/c/{root}/m/{idx}{show}"),
                blocked_images: m.blocked_images,
                show_images_href: format!("/app/c/{root}?images=show"),
                text: m.text.clone(),
                new_text: if m.new_text.trim().is_empty() { m.text.clone() } else { m.new_text.clone() },
                quoted: m.quoted_text.clone().filter(|q| !q.trim().is_empty()),
                signature: m.signature.clone().filter(|q| !q.trim().is_empty()),
                attachments: m
                    .attachments
                    .iter()
                    .filter(|a| !a.inline)
                    .map(|a| AttView {
                        href: format!("/app/c/{root}/a/{}", a.sha256),
                        name: a.name.clone().unwrap_or_else(|| "attachment".into()),
                        size: size(a.size),
                    })
                    .collect(),
                log: log_line(m.log.as_ref()),
                tracking: m.tracking.as_ref().map(|t| {
                    format!(
                        "Opened {} time(s), links clicked {} time(s)",
                        t["opens"].as_i64().unwrap_or(0),
                        t["clicks"].as_i64().unwrap_or(0)
                    )
                }),
            }
        })
        .collect();
    // A reply shows at once with its delivery state, until its copy is in the thread.
    let in_thread: std::collections::HashSet<&str> =
        d.messages.iter().map(|m| m.message_id.trim_matches(['<', '>'])).collect();
    let outbox = d
        .outbox
        .iter()
        .filter(|o| {
            !in_thread.contains(o["message_id"].as_str().unwrap_or_default().trim_matches(['<', '>']))
        })
        .map(|o| OutView {
            author: o["author"].as_str().unwrap_or_default().to_string(),
            status: o["status"].as_str().unwrap_or_default().to_string(),
            to: o["to"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
            error: o["last_error"].as_str().map(str::to_string),
        })
        .collect();
    let comments = d
        .comments
        .iter()
        .map(|cm| {
            let (at_iso, at_exact, _) = when(parse_time(Some(&cm.created_at)), now);
            CommentView { author: cm.author.clone(), body: cm.body.clone(), at_iso, at_exact }
        })
        .collect();
    // The inbox's members; and the current assignee even when routing gave it to someone
    // outside them (a rule's team), so the select shows who has it.
    let assignable = ws
        .users
        .iter()
        .filter(|u| {
            Viewer::of(u, ws).can_see(&sum.inbox)
                || sum.assignee.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(&u.email))
        })
        .map(|u| (u.email.to_lowercase(), u.name.clone()))
        .collect();
    let field = |v: &Option<Value>, k: &str| v.as_ref().and_then(|c| c[k].as_str()).map(str::to_string);
    let contact = field(&d.contact, "email").map(|e| {
        let name = field(&d.contact, "name").unwrap_or_default();
        let href =
            format!("/app/?q={}&status=", form_urlencoded::byte_serialize(e.as_bytes()).collect::<String>());
        (e, name, href)
    });
    // Each record links to its conversations (the list's search matches contact and domain).
    let company = field(&d.company, "domain").map(|dm| {
        let href =
            format!("/app/?q={}&status=", form_urlencoded::byte_serialize(dm.as_bytes()).collect::<String>());
        (field(&d.company, "name").unwrap_or_default(), dm, href)
    });
    let deals = d
        .deals
        .iter()
        .map(|x| x["name"].as_str().or(x["id"].as_str()).unwrap_or_default().to_string())
        .collect();
    let n_logged = d.messages.iter().filter(|m| m.log.as_ref().is_some_and(|l| l.logged)).count();
    let logged = format!("{n_logged} of {} messages logged on the CRM", d.messages.len());
    let (ticket, stages) = match &d.ticket {
        Some(t) => {
            let p = ws.pipeline(&t.pipeline);
            let stage_name = p
                .and_then(|p| p.stage(&t.stage))
                .and_then(|s| s.name.clone())
                .unwrap_or_else(|| t.stage.clone());
            let stages = p
                .map(|p| {
                    p.stages
                        .iter()
                        .map(|s| (s.id.clone(), s.name.clone().unwrap_or_else(|| s.id.clone())))
                        .collect()
                })
                .unwrap_or_default();
            let pname = p.and_then(|p| p.name.clone()).unwrap_or_else(|| t.pipeline.clone());
            (Some((pname, stage_name, t.stage.clone())), stages)
        }
        None => (None, vec![]),
    };
    let earlier = match &sum.contact_email {
        Some(e) => {
            let q = ListParams { q: Some(e.clone()), limit: Some(6), ..ListParams::default() };
            list_page(&st.api.ports, &c.viewer, &q)
                .await
                .map(|p| {
                    p.items
                        .into_iter()
                        .filter(|x| x.id != root)
                        .take(5)
                        .map(|x| (format!("/app/c/{}", x.id), x.subject))
                        .collect()
                })
                .unwrap_or_default()
        }
        None => vec![],
    };
    // A chat: whether its visitor is on the site now (replies go live) and on which page.
    let chat = match d.messages.iter().find_map(|m| crate::chat::session_of_message_id(&m.message_id)) {
        Some(sid) => crate::chat::visitor_state(&st.api.ports, sid).await.ok(),
        None => None,
    };
    LiveTpl {
        id: root.to_string(),
        chat,
        csrf: c.session.csrf.clone(),
        subject: if sum.subject.trim().is_empty() { "(no subject)".into() } else { sum.subject.clone() },
        inbox: sum.inbox.clone(),
        status: sum.status.clone(),
        snoozed: sum
            .snoozed_until
            .as_deref()
            .and_then(|t| parse_time(Some(t)))
            .filter(|t| *t > now)
            .map(|t| (t.to_rfc3339(), t.format("%Y-%m-%d %H:%M UTC").to_string())),
        sla: sla_badge(sum.sla.as_deref(), parse_time(sum.sla_due_at.as_deref()), now),
        others: others(st, root, &c.viewer.email).await,
        notice: None,
        error: None,
        assignee: sum.assignee.clone(),
        assignable,
        team: sum.team.clone(),
        teams: ws.teams.iter().map(|t| t.id.clone()).collect(),
        messages,
        outbox,
        comments,
        contact,
        company,
        deals,
        logged,
        ticket,
        stages,
        earlier,
    }
}

/// A message's email-log confirmation in words: where it was logged, or why not.
pub(super) fn log_line(log: Option<&crate::records::LogEntry>) -> String {
    let Some(l) = log else {
        return "Not logged yet".into();
    };
    if l.logged {
        let mut parts = vec![format!("Logged on {}", l.contacts.join(", "))];
        if let Some(c) = &l.company {
            parts.push(format!("company {c}"));
        }
        if let Some(d) = &l.deal {
            parts.push(format!("deal {d}"));
        }
        if let Some(t) = &l.ticket {
            parts.push(format!("ticket {t}"));
        }
        return parts.join(" · ");
    }
    let why = l
        .reason
        .as_deref()
        .and_then(mailroom_core::crm_log::NotLogged::parse)
        .map(|r| r.describe().to_string())
        .unwrap_or_else(|| l.reason.clone().unwrap_or_else(|| "no reason recorded".into()));
    format!("Not logged: {why}")
}

/// How many lines the frame of a message needs, guessed from its text (the page cannot
/// measure a frame with an opaque origin): app.js sets the frame's height from it.
fn height_hint(text: &str) -> usize {
    let lines: usize = text.lines().map(|l| 1 + l.chars().count() / 90).sum();
    (lines + 2).clamp(4, 60)
}

pub(super) async fn conversation_detail(
    st: &WebState,
    c: &Ctx,
    id: &str,
    images: RemoteImages,
) -> Result<(String, Item, ConversationDetail), Response> {
    let (root, item) = visible_root(&st.api, &c.viewer, id).await.map_err(|e| api_error(c, e))?;
    let d = detail_of(&st.api, &c.viewer, &root, &item, images).await.map_err(|e| api_error(c, e))?;
    Ok((root, item, d))
}

/// The live part of a conversation, wrapped to be polled: `None` when the browser
/// already shows this version (`known`).
pub(super) async fn live_part(
    st: &WebState,
    c: &Ctx,
    id: &str,
    images: RemoteImages,
    said: (Option<String>, Option<String>),
    known: Option<&str>,
) -> Result<Option<String>, Response> {
    let (root, item, d) = conversation_detail(st, c, id, images).await?;
    let mut t = live_tpl(st, c, &root, d, images).await;
    // The version is that of the state alone, without what the action said (PolledTpl).
    let plain = if said == (None, None) { None } else { Some(render(&t)?) };
    (t.notice, t.error) = said;
    let inner = render(t)?;
    let v = version(plain.as_deref().unwrap_or(&inner));
    if known == Some(v.as_str()) {
        return Ok(None);
    }
    if let Some(seen) = s(&item, "last_activity") {
        mark_read(st, &c.viewer.email, &root, &seen).await;
    }
    wrap_live(&root, images, inner, &v).map(Some)
}

fn wrap_live(root: &str, images: RemoteImages, inner: String, v: &str) -> Result<String, Response> {
    let show = if images == RemoteImages::Allow { "?images=show" } else { "" };
    render(PolledTpl::versioned("conv-live", &format!("/app/c/{root}/live{show}"), inner, v))
}

pub(super) fn signatures(c: &Ctx, inbox: &str) -> String {
    let ws = &c.viewer.ws;
    let user = ws
        .users
        .iter()
        .find(|u| u.email.eq_ignore_ascii_case(&c.viewer.email))
        .and_then(|u| u.signature.clone());
    let shared =
        ws.inboxes.iter().find(|i| i.address.eq_ignore_ascii_case(inbox)).and_then(|i| i.signature.clone());
    [user, shared]
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

pub(super) async fn conversation(
    State(st): State<Arc<WebState>>,
    c: Ctx,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    let images = images_of(&q);
    let (root, item, d) = match conversation_detail(&st, &c, &id, images).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let title = Some(d.summary.subject.clone());
    let reply_to =
        d.reply_recipients.to.iter().map(|a| (a.clone(), d.reply_recipients.new.contains(a))).collect();
    let inbox = d.summary.inbox.clone();
    if let Some(seen) = s(&item, "last_activity") {
        mark_read(&st, &c.viewer.email, &root, &seen).await;
    }
    let live = match render(live_tpl(&st, &c, &root, d, images).await).and_then(|inner| {
        let v = version(&inner);
        wrap_live(&root, images, inner, &v)
    }) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let conv = ConvTpl {
        id: root.clone(),
        csrf: c.session.csrf.clone(),
        request_id: format!("web-{}", hex::encode(rand::random::<[u8; 8]>())),
        reply_to,
        signatures: signatures(&c, &inbox),
        live_html: live,
    };
    let conv_html = match render(conv) {
        Ok(h) => h,
        Err(r) => return r,
    };
    let q = ListQuery { c: Some(root), ..q }.or_default();
    inbox_page(&st, &c, &q, Some(conv_html), title).await
}

pub(super) async fn live(
    State(st): State<Arc<WebState>>,
    c: Ctx,
    Path(id): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    match live_part(&st, &c, &id, images_of(&q), (None, None), q.v.as_deref()).await {
        Ok(Some(h)) => Html(h).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

/// One message's HTML, for the sandboxed frame of the thread: a document of its own whose
/// policy allows no script, no request anywhere but `data:` and `cid:` images (and remote
/// ones once the reader asked), no form, and opens links in a new tab. The sandbox gives it
/// an opaque origin: nothing in it can reach the page, its cookies or its storage.
pub(super) async fn message_body(
    State(st): State<Arc<WebState>>,
    c: Ctx,
    Path((id, idx)): Path<(String, usize)>,
    Query(q): Query<ListQuery>,
) -> Response {
    let (root, _) = match visible_root(&st.api, &c.viewer, &id).await {
        Ok(x) => x,
        Err(e) => return api_error(&c, e),
    };
    let msgs = match crate::api::conversations::conversation_messages(&st.api.ports, &root).await {
        Ok(m) => m,
        Err(e) => return api_error(&c, e),
    };
    let Some(msg) = msgs.get(idx) else { return not_found(&c) };
    let images = images_of(&q);
    let d = message_detail(&st.api, msg, images).await;
    let body = d.html.unwrap_or_default();
    let doc = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><base target=\"_blank\"><meta name=\"referrer\" content=\"no-referrer\"></head><body>{body}</body></html>"
    );
    let img = if images == RemoteImages::Allow { "data: cid: https: http:" } else { "data: cid:" };
    let csp = format!(
        "default-src 'none'; style-src 'unsafe-inline'; img-src {img}; font-src 'none'; form-action 'none'; base-uri 'self'; frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox"
    );
    let mut r = Html(doc).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
    r
}

pub(super) async fn attachment(
    State(st): State<Arc<WebState>>,
    c: Ctx,
    Path((id, sha)): Path<(String, String)>,
) -> Response {
    let (root, _) = match visible_root(&st.api, &c.viewer, &id).await {
        Ok(x) => x,
        Err(e) => return api_error(&c, e),
    };
    match crate::api::conversations::signed_attachment_url(&st.api, &root, &sha).await {
        Ok(u) => Redirect::to(&u.url).into_response(),
        Err(e) => api_error(&c, e),
    }
}
