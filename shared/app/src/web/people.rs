//! Who does what: every user's own notifications page (`/app/settings/notifications`;
//! admins also see the team's), and the admins' users and teams page
//! (`/app/settings/people`: add, change the role of and remove users; add teams and set
//! their members and assignment). Changes go through the API's services: the user's own
//! settings change (`api::directory`) and the admin `edit` (validated like `apply`).

use super::WebState;
use super::admin::*;
use super::ctx::*;
use crate::api::ApiError;
use crate::api::admin::edit;
use crate::api::directory::{MySettings, change_my_settings_as};
use crate::runtime::http::read_notice;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use mailroom_core::workspace::{NotifyBy, Role, Team, User};
use std::sync::Arc;

/// The notification events a user chooses email or nothing for.
const EVENTS: &[(&str, &str)] = &[
    ("assigned", "a conversation is assigned to me"),
    ("customer_reply", "a customer writes on my conversation"),
    ("mention", "someone mentions me in a comment"),
    ("sla_breach", "an SLA of my conversation is breached"),
    ("reconnect_required", "an inbox I own (admins: a shared inbox) must be connected again"),
];

fn on(u: &User) -> Vec<bool> {
    let n = u.notifications;
    [n.assigned, n.customer_reply, n.mention, n.sla_breach, n.reconnect_required]
        .iter()
        .map(|b| *b == NotifyBy::Email)
        .collect()
}

#[derive(Template)]
#[template(path = "web/settings/notifications.html")]
struct NotificationsTpl {
    csrf: String,
    name: String,
    admin: bool,
    section: &'static str,
    notice: Option<String>,
    mine: Vec<(String, String, bool)>,
    digest: bool,
    available: bool,
    team: Vec<(String, Vec<bool>, bool)>,
}

pub(super) struct UserRow {
    pub email: String,
    pub name: String,
    pub admin: bool,
    pub teams: String,
}

pub(super) struct TeamRow {
    pub id: String,
    pub name: String,
    pub members: Vec<(String, String, bool)>,
    pub assign: String,
}

#[derive(Template)]
#[template(path = "web/settings/people.html")]
struct PeopleTpl {
    csrf: String,
    name: String,
    admin: bool,
    section: &'static str,
    notice: Option<String>,
    users: Vec<UserRow>,
    teams: Vec<TeamRow>,
    assigns: Vec<(String, String)>,
}

/// `GET /app/settings/notifications`: anyone's own; admins also see everyone's.
pub(super) async fn notifications(
    State(st): State<Arc<WebState>>,
    c: Ctx,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let ws = &c.viewer.ws;
    let Some(me) = ws.users.iter().find(|u| u.email.eq_ignore_ascii_case(&c.viewer.email)) else {
        return not_found(&c);
    };
    let mine = EVENTS.iter().zip(on(me)).map(|((k, l), b)| (k.to_string(), l.to_string(), b)).collect();
    let team = if c.viewer.is_admin() {
        ws.users.iter().map(|u| (format!("{} ({})", u.name, u.email), on(u), u.available)).collect()
    } else {
        vec![]
    };
    page(NotificationsTpl {
        csrf: c.session.csrf.clone(),
        name: c.viewer.name.clone(),
        admin: c.viewer.is_admin(),
        section: "settings",
        notice: read_notice(&st.api.ports.signer, &q),
        mine,
        digest: me.notifications.digest,
        available: me.available,
        team,
    })
}

/// `POST /app/settings/notifications`: the user's own choices.
pub(super) async fn save_notifications(
    State(st): State<Arc<WebState>>,
    c: Ctx,
    headers: HeaderMap,
    Form(fields): Form<Fields>,
) -> Response {
    if let Err(r) = csrf(&c, &headers, &fields) {
        return r;
    }
    let mut n = serde_json::Map::new();
    for (k, _) in EVENTS {
        n.insert(
            k.to_string(),
            serde_json::json!(if field(&fields, k).is_some() { "email" } else { "none" }),
        );
    }
    n.insert("digest".into(), serde_json::json!(field(&fields, "digest").is_some()));
    let change: MySettings = match serde_json::from_value(
        serde_json::json!({"notifications": n, "available": field(&fields, "available").is_some()}),
    ) {
        Ok(m) => m,
        Err(e) => return internal(e),
    };
    let text = match change_my_settings_as(&st.api, &c.viewer, change).await {
        Ok(_) => "Saved your notifications.".to_string(),
        Err(e) => format!("Not saved: {}", problem(e)),
    };
    with_notice(&st, "/app/settings/notifications", &text)
}

const ASSIGNS: &[(&str, &str)] =
    &[("", "Nobody (the team's queue)"), ("round_robin", "Round robin"), ("least_loaded", "Least loaded")];

/// `GET /app/settings/people` (admins).
pub(super) async fn people(AdminPage { c, notice, .. }: AdminPage) -> Response {
    let ws = &c.viewer.ws;
    let users = ws
        .users
        .iter()
        .map(|u| UserRow {
            email: u.email.clone(),
            name: u.name.clone(),
            admin: u.role == Role::Admin,
            teams: ws.teams_of(&u.email).join(", "),
        })
        .collect();
    let teams = ws
        .teams
        .iter()
        .map(|t| TeamRow {
            id: t.id.clone(),
            name: t.name.clone().unwrap_or_else(|| t.id.clone()),
            members: ws
                .users
                .iter()
                .map(|u| {
                    (
                        u.email.clone(),
                        u.name.clone(),
                        t.members.iter().any(|m| m.eq_ignore_ascii_case(&u.email)),
                    )
                })
                .collect(),
            assign: t
                .assign
                .and_then(|a| serde_json::to_value(a).ok())
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
        })
        .collect();
    page(PeopleTpl {
        csrf: c.session.csrf.clone(),
        name: c.viewer.name.clone(),
        admin: true,
        section: "settings",
        notice,
        users,
        teams,
        assigns: ASSIGNS.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
    })
}

/// `POST /app/settings/people/{user|remove|team}` (admins).
pub(super) async fn change(Path(what): Path<String>, form: AdminForm) -> Response {
    let AdminForm { st, c, .. } = &form;
    let f = |k: &str| form.get(k);
    let r = edit(&st.api, &c.viewer, |ws| {
        match what.as_str() {
            "user" => {
                let email = f("email").to_lowercase();
                if mailroom_core::EmailAddress::parse(&email).is_err() {
                    return Err(ApiError::BadRequest(format!("{email:?} is not an email address")));
                }
                let role = if f("role") == "admin" { Role::Admin } else { Role::Agent };
                match ws.users.iter_mut().find(|u| u.email.eq_ignore_ascii_case(&email)) {
                    Some(u) => u.role = role,
                    None => {
                        let name = Some(f("name")).filter(|n| !n.is_empty()).unwrap_or_else(|| email.clone());
                        let user: User =
                            serde_json::from_value(serde_json::json!({"email": email, "name": name}))
                                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
                        ws.users.push(User { role, ..user });
                    }
                }
                Ok(format!("Saved {email}."))
            }
            "remove" => {
                let email = f("email");
                let before = ws.users.len();
                ws.users.retain(|u| !u.email.eq_ignore_ascii_case(&email));
                if ws.users.len() == before {
                    return Err(ApiError::NotFound(format!("no user {email}")));
                }
                // Out of the teams too: a team may not name someone who is not a user.
                for t in &mut ws.teams {
                    t.members.retain(|m| !m.eq_ignore_ascii_case(&email));
                }
                for i in &mut ws.inboxes {
                    i.members.users.retain(|m| !m.eq_ignore_ascii_case(&email));
                }
                Ok(format!("Removed {email}: they are signed out at their next request."))
            }
            "team" => {
                let id = f("id");
                let name = Some(f("name")).filter(|n| !n.is_empty());
                let assign = match f("assign").as_str() {
                    "" => None,
                    a => Some(
                        serde_json::from_value(serde_json::json!(a))
                            .map_err(|_| ApiError::BadRequest(format!("unknown assignment {a:?}")))?,
                    ),
                };
                let members = form.all("member");
                match ws.teams.iter_mut().find(|t| t.id == id) {
                    Some(t) => {
                        t.name = name;
                        t.members = members;
                        t.assign = assign;
                    }
                    None => ws.teams.push(Team { id: id.clone(), name, members, assign }),
                }
                Ok(format!("Saved team {id}."))
            }
            other => Err(ApiError::NotFound(format!("no change {other}"))),
        }
    })
    .await;
    let text = match r {
        Ok(t) => t,
        Err(ApiError::NotFound(_)) if !matches!(what.as_str(), "user" | "remove" | "team") => {
            return not_found(c);
        }
        Err(e) => format!("Not saved: {}", problem(e)),
    };
    with_notice(st, "/app/settings/people", &text)
}
