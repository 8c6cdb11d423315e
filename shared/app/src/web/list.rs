//! The inbox page: the views and inboxes on the left, the filtered list (polled every 10
//! seconds, answered 204 when unchanged) and the unread marks.

use super::WebState;
use super::view::*;
use crate::api::conversations::{ConversationSummary, ListParams, list_page};
use crate::keys;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

use super::ctx::*;

// ------------------------------------------------------------------ list

#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct ListQuery {
    pub q: Option<String>,
    pub inbox: Option<String>,
    pub status: Option<String>,
    pub assignee: Option<String>,
    pub team: Option<String>,
    pub channel: Option<String>,
    pub stale: Option<bool>,
    pub snoozed: Option<bool>,
    pub cursor: Option<String>,
    /// The selected conversation (kept while filtering).
    pub c: Option<String>,
    /// `rows`: only the rows (the list's polling).
    pub part: Option<String>,
    /// `show`: remote images of the selected conversation's messages.
    pub images: Option<String>,
    /// The version of the polled part the browser shows (`view::PolledTpl`).
    pub v: Option<String>,
}

impl ListQuery {
    fn nonempty(v: &Option<String>) -> Option<String> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_string)
    }

    /// Nothing asked: the open conversations.
    pub(super) fn or_default(mut self) -> ListQuery {
        let any = [&self.q, &self.inbox, &self.status, &self.assignee, &self.team, &self.channel]
            .iter()
            .any(|v| Self::nonempty(v).is_some())
            || self.stale.is_some()
            || self.snoozed.is_some();
        if !any {
            self.status = Some("open".into());
        }
        self
    }

    fn params(&self) -> ListParams {
        let assignee = Self::nonempty(&self.assignee);
        ListParams {
            inbox: Self::nonempty(&self.inbox),
            status: Self::nonempty(&self.status),
            unassigned: (assignee.as_deref() == Some("none")).then_some(true),
            assignee: assignee.filter(|a| a != "none"),
            team: Self::nonempty(&self.team),
            stale: self.stale.filter(|s| *s),
            channel: Self::nonempty(&self.channel),
            snoozed: self.snoozed.filter(|s| *s),
            q: Self::nonempty(&self.q),
            limit: Some(50),
            cursor: Self::nonempty(&self.cursor),
        }
    }

    /// The query string of these filters (without the cursor), for links.
    fn query(&self, extra: &[(&str, &str)]) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        let pairs: [(&str, Option<String>); 6] = [
            ("q", Self::nonempty(&self.q)),
            ("inbox", Self::nonempty(&self.inbox)),
            ("status", Self::nonempty(&self.status)),
            ("assignee", Self::nonempty(&self.assignee)),
            ("team", Self::nonempty(&self.team)),
            ("channel", Self::nonempty(&self.channel)),
        ];
        for (k, v) in pairs {
            if let Some(v) = v {
                ser.append_pair(k, &v);
            }
        }
        if self.stale == Some(true) {
            ser.append_pair("stale", "true");
        }
        if self.snoozed == Some(true) {
            ser.append_pair("snoozed", "true");
        }
        for (k, v) in extra {
            ser.append_pair(k, v);
        }
        ser.finish()
    }
}

/// When the user last read each conversation (capped, the oldest marks dropped).
pub(super) async fn read_marks(st: &WebState, email: &str) -> BTreeMap<String, String> {
    let item = st.api.ports.table.get(&keys::read_marks_key(email)).await.ok().flatten();
    item.and_then(|i| i.get("marks").cloned())
        .and_then(|m| serde_json::from_value(m).ok())
        .unwrap_or_default()
}

pub(super) const MAX_READ_MARKS: usize = 2000;

pub(super) async fn mark_read(st: &WebState, email: &str, conv: &str, seen: &str) {
    let mut marks = read_marks(st, email).await;
    marks.insert(conv.to_string(), seen.to_string());
    while marks.len() > MAX_READ_MARKS {
        let Some(oldest) = marks.iter().min_by(|a, b| a.1.cmp(b.1)).map(|(k, _)| k.clone()) else { break };
        marks.remove(&oldest);
    }
    let mut item = keys::read_marks_key(email).item();
    item.insert("marks".into(), json!(marks));
    if let Err(e) = st.api.ports.table.put(item, None).await {
        tracing::warn!(error = %e, "could not record a read mark");
    }
}

pub(super) fn row(
    s: &ConversationSummary,
    marks: &BTreeMap<String, String>,
    selected: Option<&str>,
    q: &ListQuery,
) -> Row {
    let now = Utc::now();
    let at = parse_time(s.last_activity.as_deref()).or_else(|| parse_time(Some(&s.first_date)));
    let (at_iso, at_exact, at_label) = when(at, now);
    let unread = match (&s.last_activity, marks.get(&s.id)) {
        (Some(a), Some(seen)) => a > seen,
        (Some(_), None) => true,
        (None, _) => false,
    };
    Row {
        href: format!("/app/c/{}?{}", s.id, q.query(&[])),
        unread,
        selected: selected == Some(s.id.as_str()),
        contact: s.contact_email.clone().unwrap_or_else(|| s.inbox.clone()),
        at_iso,
        at_exact,
        at_label,
        subject: if s.subject.trim().is_empty() { "(no subject)".into() } else { s.subject.clone() },
        snippet: s.snippet.clone().unwrap_or_default(),
        inbox: s.inbox.clone(),
        channel: s.channel.clone().unwrap_or_else(|| "email".into()),
        status: s.status.clone(),
        assignee: s.assignee.clone(),
        sla: sla_badge(s.sla.as_deref(), parse_time(s.sla_due_at.as_deref()), now),
    }
}

/// The rows, polled: the wrapper asks again with their version.
pub(super) async fn rows_html(st: &WebState, c: &Ctx, q: &ListQuery) -> Result<String, Response> {
    let inner = rows_inner(st, c, q).await?;
    render(PolledTpl::new("rows", &rows_poll(q), inner))
}

fn rows_poll(q: &ListQuery) -> String {
    let mut extra = vec![("part", "rows")];
    if let Some(c) = q.c.as_deref() {
        extra.push(("c", c));
    }
    format!("/app/list?{}", q.query(&extra))
}

async fn rows_inner(st: &WebState, c: &Ctx, q: &ListQuery) -> Result<String, Response> {
    let page = list_page(&st.api.ports, &c.viewer, &q.params()).await.map_err(|e| api_error(c, e))?;
    let marks = read_marks(st, &c.viewer.email).await;
    let items = page.items.iter().map(|s| row(s, &marks, q.c.as_deref(), q)).collect();
    let next = page.next_cursor.map(|cur| format!("/app/?{}", q.query(&[("cursor", &cur)])));
    render(RowsTpl { items, next })
}

pub(super) async fn list_html(st: &WebState, c: &Ctx, q: &ListQuery) -> Result<String, Response> {
    let ws = &c.viewer.ws;
    let f = Filters {
        q: q.q.clone().unwrap_or_default(),
        inbox: q.inbox.clone().unwrap_or_default(),
        status: q.status.clone().unwrap_or_default(),
        assignee: q.assignee.clone().unwrap_or_default(),
        team: q.team.clone().unwrap_or_default(),
        channel: q.channel.clone().unwrap_or_default(),
        stale: q.stale == Some(true),
        snoozed: q.snoozed == Some(true),
        inboxes: c.viewer.visible_inboxes(),
        users: ws.users.iter().map(|u| (u.email.to_lowercase(), u.name.clone())).collect(),
        teams: ws.teams.iter().map(|t| t.id.clone()).collect(),
    };
    render(ListTpl { selected: q.c.clone(), f, rows_html: rows_html(st, c, q).await? })
}

pub(super) async fn inbox_page(
    st: &WebState,
    c: &Ctx,
    q: &ListQuery,
    conv_html: Option<String>,
    title: Option<String>,
) -> Response {
    let list = match list_html(st, c, q).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let ports = &st.api.ports;
    let visible = c.viewer.visible_inboxes();
    let mut inboxes = Vec::new();
    let (mut open, mut unassigned) = (0, 0);
    for address in visible {
        let (o, u) = crate::load::inbox_tally(ports, &address).await.unwrap_or((0, 0));
        open += o;
        unassigned += u;
        let current = q.inbox.as_deref().is_some_and(|i| i.eq_ignore_ascii_case(&address));
        let href = format!(
            "/app/?inbox={}&status=open",
            form_urlencoded::byte_serialize(address.as_bytes()).collect::<String>()
        );
        inboxes.push(InboxLink { address, href, open: o, unassigned: u, current });
    }
    let mine = crate::load::load_of(ports, &c.viewer.email).await.unwrap_or(0);
    let view = |label, href: &str, count, current| ViewLink { label, href: href.to_string(), count, current };
    let status = q.status.as_deref().unwrap_or_default();
    let assignee = q.assignee.as_deref().unwrap_or_default();
    let plain = q.inbox.is_none() && q.q.is_none();
    let views = vec![
        view(
            "Unassigned",
            "/app/?status=open&assignee=none",
            Some(unassigned),
            plain && status == "open" && assignee == "none",
        ),
        view(
            "Assigned to me",
            "/app/?status=open&assignee=me",
            Some(mine),
            plain && status == "open" && assignee == "me",
        ),
        view("All open", "/app/?status=open", Some(open), plain && status == "open" && assignee.is_empty()),
        view("Snoozed", "/app/?snoozed=true", None, q.snoozed == Some(true)),
        view("Closed", "/app/?status=closed", None, plain && status == "closed"),
    ];
    let page = InboxTpl {
        csrf: c.session.csrf.clone(),
        name: c.viewer.name.clone(),
        admin: c.viewer.is_admin(),
        section: "inbox",
        title,
        views,
        inboxes,
        list_html: list,
        conv_html,
    };
    match page.render() {
        Ok(h) => Html(h).into_response(),
        Err(e) => internal(e),
    }
}

pub(super) async fn inbox(State(st): State<Arc<WebState>>, c: Ctx, Query(q): Query<ListQuery>) -> Response {
    inbox_page(&st, &c, &q.or_default(), None, None).await
}

pub(super) async fn list(State(st): State<Arc<WebState>>, c: Ctx, Query(q): Query<ListQuery>) -> Response {
    let q = q.or_default();
    let html = if q.part.as_deref() == Some("rows") {
        match rows_inner(&st, &c, &q).await {
            Ok(inner) if q.v.as_deref() == Some(version(&inner).as_str()) => {
                return StatusCode::NO_CONTENT.into_response();
            }
            Ok(inner) => render(PolledTpl::new("rows", &rows_poll(&q), inner)),
            Err(r) => Err(r),
        }
    } else {
        list_html(&st, &c, &q).await
    };
    match html {
        Ok(h) => Html(h).into_response(),
        Err(r) => r,
    }
}
