//! The templates and what they are given: plain data, already shaped for display
//! (labels, relative times, hrefs). Every value is escaped by askama when rendered; the
//! only markup passed through (`|safe`) is the output of these same templates.

use askama::Template;
use chrono::{DateTime, Utc};

#[derive(Template)]
#[template(path = "web/inbox.html")]
pub struct InboxTpl {
    pub csrf: String,
    pub name: String,
    pub admin: bool,
    pub section: &'static str,
    pub title: Option<String>,
    pub views: Vec<ViewLink>,
    pub inboxes: Vec<InboxLink>,
    pub list_html: String,
    pub conv_html: Option<String>,
}

pub struct ViewLink {
    pub label: &'static str,
    pub href: String,
    pub count: Option<i64>,
    pub current: bool,
}

pub struct InboxLink {
    pub address: String,
    pub href: String,
    pub open: i64,
    pub unassigned: i64,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "web/list.html")]
pub struct ListTpl {
    pub selected: Option<String>,
    pub f: Filters,
    pub rows_html: String,
}

#[derive(Default, Clone)]
pub struct Filters {
    pub q: String,
    pub inbox: String,
    pub status: String,
    pub assignee: String,
    pub team: String,
    pub channel: String,
    pub stale: bool,
    pub snoozed: bool,
    pub inboxes: Vec<String>,
    pub users: Vec<(String, String)>,
    pub teams: Vec<String>,
}

/// A part of the page the browser polls: it asks `poll` with the version it shows
/// (`v`), and the server answers 204 when nothing changed (htmx then leaves it alone, so
/// the mail frames do not reload every 10 seconds). `mr-live` asks at once: app.js fires
/// it when the live socket says something changed (docs/chat.md).
///
/// The version leaves out the notice an action answers with ("Ticket moved"): a refresh
/// that finds nothing else changed answers 204 and the notice stays. A refresh also gives
/// way to a change the agent makes there: app.js drops its answer when a change was on
/// its way meanwhile, so a view read before the change never lands after it.
#[derive(Template)]
#[template(
    source = r#"<div id="{{ id }}" hx-get="{{ poll }}" hx-trigger="every 10s, mr-live" hx-swap="outerHTML">{{ inner|safe }}</div>"#,
    ext = "html"
)]
pub struct PolledTpl {
    pub id: &'static str,
    pub poll: String,
    pub inner: String,
}

impl PolledTpl {
    /// Wraps `inner`, polled at `base` (a URL with a query string, maybe empty) with the
    /// version of `inner`.
    pub fn new(id: &'static str, base: &str, inner: String) -> PolledTpl {
        let v = version(&inner);
        PolledTpl::versioned(id, base, inner, &v)
    }

    /// Wraps `inner` with a version computed by the caller (see the type's note).
    pub fn versioned(id: &'static str, base: &str, inner: String, v: &str) -> PolledTpl {
        let sep = if base.contains('?') { "&" } else { "?" };
        PolledTpl { id, poll: format!("{base}{sep}v={v}"), inner }
    }
}

/// The version of a rendered part: the start of its hash.
pub fn version(html: &str) -> String {
    mailroom_core::sha256(html.as_bytes()).to_string()[..16].to_string()
}

#[derive(Template)]
#[template(path = "web/rows.html")]
pub struct RowsTpl {
    pub items: Vec<Row>,
    pub next: Option<String>,
}

pub struct Row {
    pub href: String,
    pub unread: bool,
    pub selected: bool,
    pub contact: String,
    pub at_iso: String,
    pub at_exact: String,
    pub at_label: String,
    pub subject: String,
    pub snippet: String,
    pub inbox: String,
    pub channel: String,
    pub status: String,
    pub assignee: Option<String>,
    pub sla: Option<(String, String)>,
}

#[derive(Template)]
#[template(path = "web/conversation.html")]
pub struct ConvTpl {
    pub id: String,
    pub csrf: String,
    pub request_id: String,
    pub reply_to: Vec<(String, bool)>,
    pub signatures: String,
    pub live_html: String,
}

#[derive(Template)]
#[template(path = "web/live.html")]
pub struct LiveTpl {
    pub id: String,
    /// A chat's visitor: online now, and the page they were last on (their own text).
    pub chat: Option<(bool, Option<String>)>,
    pub csrf: String,
    pub subject: String,
    pub inbox: String,
    pub status: String,
    pub snoozed: Option<(String, String)>,
    pub sla: Option<(String, String)>,
    pub others: Vec<String>,
    pub notice: Option<String>,
    pub error: Option<String>,
    pub assignee: Option<String>,
    pub assignable: Vec<(String, String)>,
    pub team: Option<String>,
    pub teams: Vec<String>,
    pub messages: Vec<MsgView>,
    pub outbox: Vec<OutView>,
    pub comments: Vec<CommentView>,
    pub contact: Option<(String, String, String)>,
    /// Name, domain, link.
    pub company: Option<(String, String, String)>,
    pub deals: Vec<String>,
    pub logged: String,
    /// Pipeline name, stage name, stage id.
    pub ticket: Option<(String, String, String)>,
    pub stages: Vec<(String, String)>,
    pub earlier: Vec<(String, String)>,
}

pub struct MsgView {
    pub idx: usize,
    pub side: &'static str,
    pub from_label: String,
    pub from_email: String,
    pub kind_label: Option<String>,
    pub spoofed: bool,
    pub at_iso: String,
    pub at_exact: String,
    pub error: Option<String>,
    pub has_html: bool,
    /// Lines the mail frame should show (`thread::height_hint`).
    pub height_hint: usize,
    pub frame_src: String,
    pub blocked_images: usize,
    pub show_images_href: String,
    pub text: String,
    pub new_text: String,
    pub quoted: Option<String>,
    pub signature: Option<String>,
    pub attachments: Vec<AttView>,
    pub tracking: Option<String>,
    /// The email-log confirmation in words (`thread::log_line`).
    pub log: String,
}

pub struct AttView {
    pub href: String,
    pub name: String,
    pub size: String,
}

pub struct OutView {
    pub author: String,
    pub status: String,
    pub to: String,
    pub error: Option<String>,
}

pub struct CommentView {
    pub author: String,
    pub body: String,
    pub at_iso: String,
    pub at_exact: String,
}

#[derive(Template)]
#[template(path = "web/signin.html")]
pub struct SigninTpl {
    pub oidc: bool,
    pub next: String,
    pub message: Option<String>,
}

#[derive(Template)]
#[template(path = "web/page.html")]
pub struct PageTpl {
    pub csrf: String,
    pub name: String,
    pub admin: bool,
    pub section: &'static str,
    pub heading: String,
    pub paragraphs: Vec<String>,
}

/// A time as the list and the thread show it: relative ("3 h ago"), the exact UTC time
/// for the tooltip, and RFC 3339 for `<time datetime>` (the script shows it in the
/// reader's time zone).
pub fn when(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> (String, String, String) {
    let Some(t) = t else { return (String::new(), String::new(), String::new()) };
    let secs = (now - t).num_seconds();
    let label = match secs {
        s if s < 60 => "just now".to_string(),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s if s < 7 * 86_400 => format!("{} d ago", s / 86_400),
        _ => t.format("%Y-%m-%d").to_string(),
    };
    (t.to_rfc3339(), t.format("%Y-%m-%d %H:%M UTC").to_string(), label)
}

/// Parses an RFC 3339 time.
pub fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

/// A byte count for people.
pub fn size(n: u64) -> String {
    match n {
        n if n < 1024 => format!("{n} B"),
        n if n < 1024 * 1024 => format!("{:.0} KB", n as f64 / 1024.0),
        n => format!("{:.1} MB", n as f64 / 1_048_576.0),
    }
}

/// The list badge of an SLA state: (css class, label).
pub fn sla_badge(
    sla: Option<&str>,
    due: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<(String, String)> {
    match sla? {
        "breached" => Some(("breached".into(), "SLA breached".into())),
        "due" => {
            let label = match due {
                Some(d) if d > now => {
                    let mins = (d - now).num_minutes();
                    if mins < 60 { format!("due in {mins} min") } else { format!("due in {} h", mins / 60) }
                }
                Some(_) => "SLA overdue".into(),
                None => "SLA due".into(),
            };
            Some(("due".into(), label))
        }
        "paused" => Some(("paused".into(), "SLA paused".into())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_sizes_read_well() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z").unwrap().with_timezone(&Utc);
        let t = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
        assert_eq!(when(t("2026-12-06T11:59:30Z"), now).2, "just now");
        assert_eq!(when(t("2026-12-06T11:30:00Z"), now).2, "30 min ago");
        assert_eq!(when(t("2026-12-06T09:00:00Z"), now).2, "3 h ago");
        assert_eq!(when(t("2026-12-01T12:00:00Z"), now).2, "5 d ago");
        assert_eq!(when(t("2026-10-01T12:00:00Z"), now).2, "2026-10-01");
        assert_eq!(size(2_500_000), "2.4 MB");
        assert_eq!(sla_badge(Some("due"), t("2026-12-06T12:45:00Z"), now).unwrap().1, "due in 45 min");
        assert_eq!(sla_badge(Some("met"), None, now), None);
    }

    #[test]
    fn hostile_values_are_escaped() {
        let tpl = RowsTpl {
            items: vec![Row {
                href: "/app/c/c1".into(),
                unread: true,
                selected: false,
                contact: "<img src=x onerror=alert(1)>".into(),
                at_iso: String::new(),
                at_exact: String::new(),
                at_label: String::new(),
                subject: "\"><script>alert(2)</script>".into(),
                snippet: "x".into(),
                inbox: "support@acme.example".into(),
                channel: "email".into(),
                status: "open".into(),
                assignee: None,
                sla: None,
            }],
            next: None,
        };
        let html = tpl.render().unwrap();
        assert!(!html.contains("<script>") && !html.contains("<img"), "{html}");
    }
}
