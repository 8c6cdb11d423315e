//! The settings pages an admin sets an inbox up with (docs/inbox-setup.md): the inboxes
//! and their health, a new inbox (IMAP and SMTP with the login tried on both before
//! anything is kept; Gmail and Microsoft 365 through their sign-in), an inbox's tickets,
//! access and signature, and "send a test email" (`crate::verify`) with its steps
//! followed live. Anyone but an admin gets 404. Every change goes through the admin
//! API's services (`api::admin::edit`, `connect_imap_as`, `api::verify`): the same
//! validation as `mailroom apply`.

use super::WebState;
use super::admin::*;
use super::ctx::*;
use crate::api::admin::{ImapConnectBody, SmtpBody, connect_imap_as, edit};
use crate::api::{ApiError, verify as api_verify};
use crate::mailbox::connection::{self, Connection};
use crate::verify::{Run, StepStatus};
use askama::Template;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use mailroom_core::workspace::{Inbox, InboxType, Members, Provider as WsProvider};
use std::sync::Arc;

pub(super) struct Row {
    pub address: String,
    pub kind: &'static str,
    pub provider: String,
    pub state: String,
    pub state_class: &'static str,
    pub last_sync: String,
    pub last_error: Option<String>,
    pub members: String,
    pub tickets_on: bool,
    pub stage_value: String,
    pub signature: String,
    /// Push (Gmail watch, Graph subscriptions): when it lapses, or that it has.
    pub push: Option<String>,
    /// When the newest message of the inbox reached Mailroom.
    pub last_message: String,
    pub tracking: bool,
    /// Connected through a provider's sign-in (Gmail, Microsoft 365).
    pub oauth: bool,
    pub provider_name: &'static str,
}

fn row(i: &Inbox, c: Option<&Connection>) -> Row {
    let now = Utc::now();
    let (state, class) = match c {
        None => ("not connected".to_string(), "failed"),
        Some(c) => (
            c.state.as_str().replace('_', " "),
            match c.state {
                connection::State::Connected => "open",
                connection::State::Degraded => "due",
                connection::State::ReconnectRequired => "failed",
            },
        ),
    };
    let mut members: Vec<String> = i.members.users.clone();
    members.extend(i.members.teams.iter().map(|t| format!("team {t}")));
    Row {
        address: i.address.clone(),
        kind: if i.kind == InboxType::Individual { "Individual" } else { "Team" },
        provider: c
            .map(|c| c.provider.as_str().to_string())
            .unwrap_or_else(|| format!("{:?}", i.provider).to_lowercase()),
        state,
        state_class: class,
        last_sync: c
            .and_then(|c| c.last_success)
            .map(|t| format!("{} min ago", (now - t).num_minutes()))
            .unwrap_or_else(|| "never".into()),
        last_error: c.and_then(|c| c.last_error.clone()),
        members: if members.is_empty() { "admins only".into() } else { members.join(", ") },
        tickets_on: i.tickets.enabled,
        stage_value: format!(
            "{}/{}",
            i.tickets.pipeline.clone().unwrap_or_default(),
            i.tickets.stage.clone().unwrap_or_default()
        ),
        signature: i.signature.clone().unwrap_or_default(),
        push: c.and_then(|c| push_state(c, now)),
        last_message: "-".into(),
        tracking: i.tracking,
        oauth: matches!(i.provider, WsProvider::Gmail | WsProvider::Microsoft),
        provider_name: match i.provider {
            WsProvider::Gmail => "Google",
            WsProvider::Microsoft => "Microsoft",
            _ => "IMAP",
        },
    }
}

/// A push connection's subscription: "push renews within 6 days" / "push subscription
/// expired ... ago" (Gmail's watch, the earliest of Graph's subscriptions).
fn push_state(c: &Connection, now: chrono::DateTime<Utc>) -> Option<String> {
    if c.provider == crate::mailbox::connection::Provider::Imap {
        return None;
    }
    let until = c.push_expires();
    Some(match until {
        None => "no push subscription yet".into(),
        Some(t) if t <= now => format!("push subscription expired {} h ago", (now - t).num_hours()),
        Some(t) if t - now < chrono::Duration::hours(24) => {
            format!("push subscription expiring in {} h", (t - now).num_hours())
        }
        Some(t) => format!("push subscription valid for {} days", (t - now).num_days()),
    })
}

/// When the inbox's newest message reached Mailroom.
async fn last_message(st: &WebState, address: &str) -> String {
    let Ok(addr) = mailroom_core::EmailAddress::parse(address) else { return "-".into() };
    let newest = crate::views::conversations::newest(&st.api.ports, &addr, 1).await.ok().unwrap_or_default();
    match newest.first().and_then(|m| m.received()) {
        Some(t) => {
            let mins = (Utc::now() - t).num_minutes();
            if mins < 120 { format!("{mins} min ago") } else { format!("{} h ago", mins / 60) }
        }
        None => "none yet".into(),
    }
}

#[derive(Template)]
#[template(path = "web/settings/inboxes.html")]
struct InboxesTpl {
    csrf: String,
    name: String,
    admin: bool,
    section: &'static str,
    notice: Option<String>,
    rows: Vec<Row>,
}

#[derive(Default)]
pub(super) struct NewValues {
    pub address: String,
    pub kind: String,
    pub provider: String,
    pub host: String,
    pub port: String,
    pub security: String,
    pub user: String,
    pub smtp_host: String,
    pub smtp_port: String,
    pub smtp_security: String,
    pub ca_pem: String,
    pub sent_folder: String,
}

#[derive(Template)]
#[template(path = "web/settings/new.html")]
struct NewTpl {
    csrf: String,
    name: String,
    admin: bool,
    section: &'static str,
    error: Option<String>,
    v: NewValues,
    presets: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "web/settings/inbox.html")]
struct InboxTpl {
    csrf: String,
    name: String,
    admin: bool,
    section: &'static str,
    i: Row,
    notice: Option<String>,
    last_run: Option<(String, String)>,
    /// (pipeline/stage, label) of every stage a ticket may start in.
    stages: Vec<(String, String)>,
    users: Vec<(String, String, bool)>,
    teams: Vec<(String, String, bool)>,
}

pub(super) struct StepView {
    pub key: String,
    pub label: String,
    pub status: &'static str,
    pub took: String,
    pub detail: String,
}

/// A verification run as its page and its polled part show it.
pub(super) struct RunView {
    pub address: String,
    pub run_id: String,
    pub outcome: String,
    pub running: bool,
    pub steps: Vec<StepView>,
}

#[derive(Template)]
#[template(path = "web/settings/verify.html")]
struct VerifyTpl {
    csrf: String,
    name: String,
    admin: bool,
    section: &'static str,
    r: RunView,
}

#[derive(Template)]
#[template(path = "web/settings/steps.html")]
struct StepsTpl {
    r: RunView,
}

#[derive(Template)]
#[template(path = "web/settings/oauth.html")]
struct OAuthTpl {
    csrf: String,
    name: String,
    admin: bool,
    section: &'static str,
    provider: &'static str,
    address: String,
    url: String,
}

/// The provider's sign-in, started: a page with the way there. Not a redirect: the
/// pages' `form-action 'self'` policy stops a form post from redirecting to another
/// origin, and the page says which mailbox to sign in as.
async fn to_provider(
    st: &WebState,
    c: &Ctx,
    provider: crate::mailbox::connection::Provider,
    addr: &mailroom_core::EmailAddress,
) -> Result<Response, String> {
    use crate::mailbox::connection::Provider;
    let back = format!("/app/settings/inboxes/{}", addr.key());
    let url =
        crate::mailbox::oauth::start_returning(&st.api.ports, &st.api.providers, provider, addr, Some(&back))
            .await
            .map_err(|e| e.to_string())?;
    st.api.ports.flush().map_err(|e| e.to_string())?;
    Ok(page(OAuthTpl {
        csrf: c.session.csrf.clone(),
        name: c.viewer.name.clone(),
        admin: true,
        section: "settings",
        provider: if provider == Provider::Graph { "Microsoft" } else { "Google" },
        address: addr.key(),
        url,
    }))
}

/// `GET /app/settings`: every inbox with its kind, provider, health and members.
pub(super) async fn inboxes(p: AdminPage) -> Response {
    let AdminPage { st, c, notice } = p;
    let conns = match connection::list(&st.api.ports).await {
        Ok(l) => l,
        Err(e) => return internal(e),
    };
    let mut rows: Vec<Row> = c
        .viewer
        .ws
        .inboxes
        .iter()
        .map(|i| row(i, conns.iter().find(|x| x.inbox.eq_ignore_ascii_case(&i.address))))
        .collect();
    for r in &mut rows {
        r.last_message = last_message(&st, &r.address).await;
    }
    page(InboxesTpl {
        csrf: c.session.csrf.clone(),
        name: c.viewer.name.clone(),
        admin: true,
        section: "settings",
        notice,
        rows,
    })
}

/// `GET /app/settings/inboxes/new`.
pub(super) async fn new_form(AdminPage { c, .. }: AdminPage) -> Response {
    let v = NewValues {
        kind: "team".into(),
        provider: "imap".into(),
        security: "tls".into(),
        smtp_security: "starttls".into(),
        ..NewValues::default()
    };
    new_page(&c, None, v)
}

/// Common IMAP/SMTP settings. An empty host: the organisation's own server (Exchange
/// on-premises).
struct Preset(&'static str, &'static str, &'static str, u16, &'static str, &'static str, u16, &'static str);

/// (id, label, IMAP host, port, security, SMTP host, port, security).
const PRESETS: &[Preset] = &[
    Preset("exchange", "Exchange on-premises", "", 993, "tls", "", 587, "starttls"),
    Preset("fastmail", "Fastmail", "imap.fastmail.com", 993, "tls", "smtp.fastmail.com", 465, "tls"),
    Preset("icloud", "iCloud Mail", "imap.mail.me.com", 993, "tls", "smtp.mail.me.com", 587, "starttls"),
    Preset("yahoo", "Yahoo Mail", "imap.mail.yahoo.com", 993, "tls", "smtp.mail.yahoo.com", 465, "tls"),
    Preset("zoho", "Zoho Mail", "imap.zoho.com", 993, "tls", "smtp.zoho.com", 465, "tls"),
];

/// Fills what the admin left empty from the preset they picked (what they typed wins);
/// an Exchange server's SMTP host defaults to its IMAP host.
fn apply_preset(v: &mut NewValues, preset: &str) {
    let Some(&Preset(_, _, host, port, sec, smtp, smtp_port, smtp_sec)) =
        PRESETS.iter().find(|p| p.0 == preset)
    else {
        return;
    };
    let fill = |slot: &mut String, value: &str| {
        if slot.is_empty() {
            *slot = value.to_string();
        }
    };
    fill(&mut v.host, host);
    fill(&mut v.port, &port.to_string());
    fill(&mut v.security, sec);
    let smtp_host = if smtp.is_empty() { v.host.clone() } else { smtp.to_string() };
    fill(&mut v.smtp_host, &smtp_host);
    fill(&mut v.smtp_port, &smtp_port.to_string());
    fill(&mut v.smtp_security, smtp_sec);
}

fn new_page(c: &Ctx, error: Option<String>, v: NewValues) -> Response {
    page(NewTpl {
        csrf: c.session.csrf.clone(),
        name: c.viewer.name.clone(),
        admin: true,
        section: "settings",
        error,
        v,
        presets: PRESETS.iter().map(|p| (p.0.to_string(), p.1.to_string())).collect(),
    })
}

/// `POST /app/settings/inboxes/new`: adds the inbox to the workspace and connects it.
/// IMAP: the login is tried on IMAP and SMTP first; a refusal takes the inbox out again
/// and shows the server's reason. Gmail and Microsoft 365: on to the provider's sign-in.
pub(super) async fn create(f: AdminForm) -> Response {
    let AdminForm { st, c, fields } = f;
    let f = |k: &str| field(&fields, k).unwrap_or_default().trim().to_string();
    let mut v = NewValues {
        address: f("address").to_lowercase(),
        kind: f("kind"),
        provider: f("provider"),
        host: f("host"),
        port: f("port"),
        security: f("security"),
        user: f("user"),
        smtp_host: f("smtp_host"),
        smtp_port: f("smtp_port"),
        smtp_security: f("smtp_security"),
        ca_pem: field(&fields, "ca_pem").unwrap_or_default().to_string(),
        sent_folder: f("sent_folder"),
    };
    apply_preset(&mut v, &f("preset"));
    if mailroom_core::EmailAddress::parse(&v.address).is_err() {
        return new_page(&c, Some(format!("{:?} is not an email address", v.address)), v);
    }
    if c.viewer.ws.inboxes.iter().any(|i| i.address.eq_ignore_ascii_case(&v.address)) {
        return new_page(&c, Some(format!("{} is an inbox already: open it from the list", v.address)), v);
    }
    let port = |s: &str, what: &str| -> Result<Option<u16>, String> {
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse().map(Some).map_err(|_| format!("{what} {s:?} is not a port number"))
        }
    };
    let imap_body = if v.provider == "imap" {
        let parsed = (|| -> Result<ImapConnectBody, String> {
            if v.host.is_empty() || v.user.is_empty() || field(&fields, "password").is_none() {
                return Err("IMAP host, user and password are required".into());
            }
            if v.smtp_host.is_empty() {
                return Err("the SMTP host is required: without it the inbox cannot send replies".into());
            }
            Ok(ImapConnectBody {
                host: v.host.clone(),
                port: port(&v.port, "IMAP port")?,
                security: Some(v.security.parse().map_err(|e: String| e)?),
                user: v.user.clone(),
                password: field(&fields, "password").unwrap_or_default().to_string(),
                backfill_days: None,
                ca_pem: Some(v.ca_pem.clone()).filter(|p| !p.trim().is_empty()),
                smtp: Some(SmtpBody {
                    host: v.smtp_host.clone(),
                    port: port(&v.smtp_port, "SMTP port")?,
                    security: Some(v.smtp_security.parse().map_err(|e: String| e)?),
                    user: None,
                    append_sent: None,
                }),
                sent_folder: Some(v.sent_folder.clone()).filter(|s| !s.is_empty()),
            })
        })();
        match parsed {
            Ok(b) => Some(b),
            Err(e) => return new_page(&c, Some(e), v),
        }
    } else {
        None
    };
    let kind = if v.kind == "individual" { InboxType::Individual } else { InboxType::Shared };
    let me = c.viewer.email.clone();
    use mailroom_core::workspace::Provider as Kind;
    let provider = match v.provider.as_str() {
        "gmail" => Kind::Gmail,
        "graph" => Kind::Microsoft,
        _ => Kind::Imap,
    };
    let inbox = Inbox::new(&v.address, kind, provider, (kind == InboxType::Individual).then(|| me.clone()));
    if let Err(e) = edit(&st.api, &c.viewer, |ws| {
        ws.inboxes.push(inbox);
        Ok(())
    })
    .await
    {
        return new_page(&c, Some(problem(e)), v);
    }
    // The caller as the API sees them after the change (the new inbox included).
    let viewer = match reload(&st, &c).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let address = v.address.clone();
    // Takes the inbox out again; says so when that fails too (it then stays, listed as
    // not connected, for the admin to archive).
    let undo = || async {
        match edit(&st.api, &viewer, |ws| {
            ws.inboxes.retain(|i| !i.address.eq_ignore_ascii_case(&address));
            Ok(())
        })
        .await
        {
            Ok(()) => String::new(),
            Err(e) => {
                format!(" The inbox could not be taken out again ({}): archive it from the list.", problem(e))
            }
        }
    };
    match imap_body {
        Some(body) => match connect_imap_as(&st.api, &viewer, &v.address, body, true).await {
            Ok(done) => {
                let sent = done
                    .sent_folder
                    .map(|s| format!("Sent folder {s:?}"))
                    .unwrap_or_else(|| "no Sent folder (sent mail is not synced)".into());
                let notice = format!("Connected: folders found INBOX {:?} and {sent}.", done.inbox_folder);
                with_notice(&st, &format!("/app/settings/inboxes/{}", v.address), &notice)
            }
            Err(e) => {
                let left = undo().await;
                new_page(&c, Some(format!("{}{left}", problem(e))), v)
            }
        },
        None => {
            use crate::mailbox::connection::Provider;
            let provider = if v.provider == "graph" { Provider::Graph } else { Provider::Gmail };
            let Ok(addr) = mailroom_core::EmailAddress::parse(&v.address) else { return internal("address") };
            match to_provider(&st, &c, provider, &addr).await {
                Ok(r) => r,
                Err(e) => {
                    let left = undo().await;
                    new_page(&c, Some(format!("{e}{left}")), v)
                }
            }
        }
    }
}

/// The signed-in admin against the workspace as it is now.
async fn reload(st: &WebState, c: &Ctx) -> Result<crate::access::Viewer, Response> {
    let ws = crate::workspace::load(&st.api.ports).await.map_err(internal)?.unwrap_or_default();
    let user = ws.users.iter().find(|u| u.email.eq_ignore_ascii_case(&c.viewer.email)).cloned();
    let user = user.ok_or_else(|| not_found(c))?;
    Ok(crate::access::Viewer::of(&user, &Arc::new(ws)))
}

/// `GET /app/settings/inboxes/{address}`.
pub(super) async fn inbox(Path(address): Path<String>, p: AdminPage) -> Response {
    let AdminPage { st, c, notice } = p;
    let ws = &c.viewer.ws;
    let Some(i) = ws.inboxes.iter().find(|i| i.address.eq_ignore_ascii_case(&address)) else {
        return not_found(&c);
    };
    let Ok(addr) = mailroom_core::EmailAddress::parse(&i.address) else { return not_found(&c) };
    let conn = match connection::get(&st.api.ports, &addr).await {
        Ok(x) => x,
        Err(e) => return internal(e),
    };
    let last_run = match crate::verify::latest(&st.api.ports, &addr).await {
        Ok(r) => r.map(|r| (r.id, r.outcome)),
        Err(e) => return internal(e),
    };
    let mut stages = vec![("/".to_string(), "the inbox's default".to_string())];
    for p in &ws.pipelines {
        for s in &p.stages {
            stages.push((
                format!("{}/{}", p.id, s.id),
                format!("{}: {}", p.name.as_deref().unwrap_or(&p.id), s.name.as_deref().unwrap_or(&s.id)),
            ));
        }
    }
    let users = ws
        .users
        .iter()
        .map(|u| {
            (
                u.email.clone(),
                u.name.clone(),
                i.members.users.iter().any(|m| m.eq_ignore_ascii_case(&u.email)),
            )
        })
        .collect();
    let teams = ws
        .teams
        .iter()
        .map(|t| {
            (t.id.clone(), t.name.clone().unwrap_or_else(|| t.id.clone()), i.members.teams.contains(&t.id))
        })
        .collect();
    let mut i = row(i, conn.as_ref());
    i.last_message = last_message(&st, &i.address).await;
    page(InboxTpl {
        csrf: c.session.csrf.clone(),
        name: c.viewer.name.clone(),
        admin: true,
        section: "settings",
        i,
        notice,
        last_run,
        stages,
        users,
        teams,
    })
}

/// `POST /app/settings/inboxes/{address}/{part}`: tickets, members or signature.
pub(super) async fn save(Path((address, part)): Path<(String, String)>, f: AdminForm) -> Response {
    let AdminForm { st, c, fields } = f;
    let all =
        |k: &str| -> Vec<String> { fields.iter().filter(|(n, _)| n == k).map(|(_, v)| v.clone()).collect() };
    let r = edit(&st.api, &c.viewer, |ws| {
        let i = ws
            .inboxes
            .iter_mut()
            .find(|i| i.address.eq_ignore_ascii_case(&address))
            .ok_or_else(|| ApiError::NotFound(format!("no inbox {address}")))?;
        match part.as_str() {
            "tickets" => {
                let (p, s) = field(&fields, "stage").unwrap_or("/").split_once('/').unwrap_or(("", ""));
                i.tickets.enabled = field(&fields, "enabled").is_some();
                i.tickets.pipeline = Some(p.to_string()).filter(|p| !p.is_empty());
                i.tickets.stage = Some(s.to_string()).filter(|s| !s.is_empty());
            }
            "members" => i.members = Members { users: all("user"), teams: all("team") },
            "tracking" => i.tracking = field(&fields, "tracking").is_some(),
            "signature" => {
                let sig = field(&fields, "signature").unwrap_or_default();
                if sig.len() > 10_000 {
                    return Err(ApiError::BadRequest("a signature is at most 10000 characters".into()));
                }
                i.signature = Some(sig.to_string()).filter(|s| !s.trim().is_empty());
            }
            "archive" => {
                // Out of the model; its messages stay (docs/workspace.md, archiving).
                let addr = i.address.clone();
                ws.inboxes.retain(|x| !x.address.eq_ignore_ascii_case(&addr));
            }
            other => return Err(ApiError::NotFound(format!("no settings part {other}"))),
        }
        Ok(())
    })
    .await;
    if part == "archive" && r.is_ok() {
        let n = format!("Archived {address}: it is out of the inbox list; its conversations stay.");
        return with_notice(&st, "/app/settings", &n);
    }
    let notice = match r {
        Ok(()) => format!("Saved {part}."),
        Err(ApiError::NotFound(_)) => return not_found(&c),
        Err(e) => format!("Not saved: {}", problem(e)),
    };
    with_notice(&st, &format!("/app/settings/inboxes/{address}"), &notice)
}

/// `POST /app/settings/inboxes/{address}/connect`: (re)connects a Gmail or Microsoft
/// 365 inbox through the provider's sign-in, back to the inbox page.
pub(super) async fn connect(Path(address): Path<String>, f: AdminForm) -> Response {
    use crate::mailbox::connection::Provider;
    use mailroom_core::workspace::Provider as Kind;
    let AdminForm { st, c, .. } = f;
    let Some(i) = c.viewer.ws.inboxes.iter().find(|i| i.address.eq_ignore_ascii_case(&address)) else {
        return not_found(&c);
    };
    let provider = match i.provider {
        Kind::Gmail => Provider::Gmail,
        Kind::Microsoft => Provider::Graph,
        _ => {
            let n = "An IMAP inbox is connected again with its settings: archive it and add it anew, or use `mailroom inbox connect-imap`.";
            return with_notice(&st, &format!("/app/settings/inboxes/{address}"), n);
        }
    };
    let Ok(addr) = mailroom_core::EmailAddress::parse(&i.address) else { return not_found(&c) };
    match to_provider(&st, &c, provider, &addr).await {
        Ok(r) => r,
        Err(e) => {
            with_notice(&st, &format!("/app/settings/inboxes/{}", addr.key()), &format!("Not connected: {e}"))
        }
    }
}

/// `POST /app/settings/inboxes/{address}/verify`: starts a run and shows it.
pub(super) async fn verify_start(Path(address): Path<String>, f: AdminForm) -> Response {
    let AdminForm { st, c, .. } = f;
    match api_verify::start_as(&st.api, &c.viewer, &address).await {
        Ok(run) => {
            Redirect::to(&format!("/app/settings/inboxes/{address}/verify/{}", run.id)).into_response()
        }
        Err(e) => api_error(&c, e),
    }
}

fn step_views(run: &Run) -> Vec<StepView> {
    run.steps
        .iter()
        .map(|s| StepView {
            key: s.key.clone(),
            label: s.label.clone(),
            status: match s.status {
                StepStatus::Pending => "pending",
                StepStatus::Waiting => "waiting",
                StepStatus::Pass => "pass",
                StepStatus::Fail => "fail",
                StepStatus::Skipped => "skipped",
            },
            took: match (s.started_at, s.at) {
                (Some(a), Some(b)) => format!("{:.1} s", (b - a).num_milliseconds() as f64 / 1000.0),
                _ => String::new(),
            },
            detail: s.detail.clone().unwrap_or_default(),
        })
        .collect()
}

/// `GET /app/settings/inboxes/{address}/verify/{run}`: the run, moved on while it runs;
/// to htmx (the page's poll every 2 seconds) the steps part alone.
pub(super) async fn verify_page(
    headers: HeaderMap,
    Path((address, id)): Path<(String, String)>,
    AdminPage { st, c, .. }: AdminPage,
) -> Response {
    let run = match api_verify::run_as(&st.api, &c.viewer, &address, &id).await {
        Ok(run) => run,
        Err(e) => return api_error(&c, e),
    };
    let r = RunView {
        address,
        run_id: run.id.clone(),
        outcome: run.outcome.clone(),
        running: !run.finished(),
        steps: step_views(&run),
    };
    if is_htmx(&headers) {
        return page(StepsTpl { r });
    }
    page(VerifyTpl {
        csrf: c.session.csrf.clone(),
        name: c.viewer.name.clone(),
        admin: true,
        section: "settings",
        r,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preset_fills_only_what_was_left_empty() {
        let mut v = NewValues { port: "1993".into(), ..NewValues::default() };
        apply_preset(&mut v, "fastmail");
        assert_eq!(
            (v.host.as_str(), v.port.as_str(), v.security.as_str()),
            ("imap.fastmail.com", "1993", "tls")
        );
        assert_eq!(
            (v.smtp_host.as_str(), v.smtp_port.as_str(), v.smtp_security.as_str()),
            ("smtp.fastmail.com", "465", "tls")
        );
        let mut v = NewValues { host: "mail.acme.example".into(), ..NewValues::default() };
        apply_preset(&mut v, "exchange");
        assert_eq!(
            (v.smtp_host.as_str(), v.smtp_port.as_str(), v.smtp_security.as_str()),
            ("mail.acme.example", "587", "starttls")
        );
        let mut v = NewValues::default();
        apply_preset(&mut v, "no-such-preset");
        assert!(v.host.is_empty() && v.smtp_host.is_empty());
    }
}
