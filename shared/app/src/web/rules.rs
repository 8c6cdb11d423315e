//! The routing-rules settings page (docs/inbox-setup.md): the rules in the order they run,
//! moved up and down, added, edited and deleted through the admin API's `edit` (validated
//! as `mailroom apply` validates), and "try it": a pasted email run through the rules as
//! the route stage would, with each rule's and each condition's result.

use super::WebState;
use super::admin::*;
use super::ctx::*;
use crate::api::ApiError;
use crate::api::admin::edit;
use crate::runtime::http::notice_query;
use askama::Template;
use axum::extract::Path;
use axum::response::{IntoResponse, Redirect, Response};
use mailroom_core::routing::{RouteContext, Router};
use mailroom_core::workspace::{Actions, Assign, Condition, Field, MatchMode, Op, Rule, Workspace};

pub(super) struct RuleRow {
    pub pos: usize,
    pub index: usize,
    pub name: String,
    pub when: String,
    pub then: String,
    pub moves: Vec<(&'static str, &'static str)>,
}

pub(super) struct TraceView {
    pub outcome: String,
    pub sender: String,
    pub subject: String,
    pub kind: String,
    pub lines: Vec<String>,
}

#[derive(Template)]
#[template(path = "web/settings/rules.html")]
struct RulesTpl {
    /// The workspace version the page shows: a change by position applies only to it.
    version: u64,
    csrf: String,
    name: String,
    admin: bool,
    section: &'static str,
    notice: Option<String>,
    rules: Vec<RuleRow>,
    inboxes: Vec<String>,
    /// (message id, label) of recent customer messages.
    recent: Vec<(String, String)>,
    try_inbox: String,
    try_raw: String,
    trace: Option<TraceView>,
}

pub(super) struct CondForm {
    pub n: usize,
    pub field: String,
    pub property: String,
    pub op: String,
    pub values: String,
}

pub(super) struct RuleForm {
    pub name: String,
    pub inboxes: Vec<(String, bool)>,
    pub match_any: bool,
    pub conditions: Vec<CondForm>,
    pub team: String,
    pub user: String,
    pub assign: String,
    pub priority: String,
    pub stage: String,
    pub tags: String,
    pub no_ticket: bool,
    pub cont: bool,
    pub deal: String,
}

#[derive(Template)]
#[template(path = "web/settings/rule.html")]
struct RuleTpl {
    version: u64,
    csrf: String,
    name: String,
    admin: bool,
    section: &'static str,
    heading: String,
    action: String,
    error: Option<String>,
    v: RuleForm,
    fields: Vec<(String, String)>,
    ops: Vec<(String, String)>,
    teams: Vec<(String, String)>,
    deals: Vec<(String, String)>,
    users: Vec<(String, String)>,
    assigns: Vec<(String, String)>,
    stages: Vec<(String, String)>,
}

const CONDITION_ROWS: usize = 3;

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

fn field_name(f: &Field) -> (String, String) {
    match f {
        Field::Property(p) => ("property".into(), p.clone()),
        other => (
            serde_json::to_value(other).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
            String::new(),
        ),
    }
}

fn op_name(o: Op) -> String {
    serde_json::to_value(o).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// A rule in words, for the list.
fn describe(r: &Rule) -> (String, String) {
    let conds: Vec<String> = r
        .conditions
        .iter()
        .map(|c| {
            let (f, p) = field_name(&c.field);
            let values: Vec<&str> = c.value.iter().chain(&c.values).map(String::as_str).collect();
            format!(
                "{} {} {}",
                if p.is_empty() { f } else { p },
                op_name(c.op).replace('_', " "),
                values.join(", ")
            )
        })
        .collect();
    let join = if r.r#match == MatchMode::Any { " or " } else { " and " };
    let scope = if r.inboxes.is_empty() { "any inbox".to_string() } else { r.inboxes.join(", ") };
    let when = format!("{scope}: {}", if conds.is_empty() { "always".into() } else { conds.join(join) });
    let a = &r.actions;
    let mut then = Vec::new();
    if let Some(t) = &a.team {
        then.push(format!("team {t}"));
    }
    if let Some(u) = &a.user {
        then.push(format!("assign {u}"));
    }
    if let Some(s) = a.assign {
        then.push(op_like(&s));
    }
    if let Some(p) = &a.priority {
        then.push(format!("priority {p}"));
    }
    if let Some(p) = &a.pipeline {
        then.push(format!("ticket in {p}{}", a.stage.as_ref().map(|s| format!("/{s}")).unwrap_or_default()));
    }
    if !a.tags.is_empty() {
        then.push(format!("tags {}", a.tags.join(", ")));
    }
    if a.no_ticket {
        then.push("no ticket".into());
    }
    if let Some(d) = &a.deal {
        then.push(format!("log on deal {d}"));
    }
    if r.r#continue {
        then.push("then continue".into());
    }
    (when, then.join("; "))
}

fn op_like(a: &Assign) -> String {
    serde_json::to_value(a).ok().and_then(|v| v.as_str().map(|s| s.replace('_', " "))).unwrap_or_default()
}

/// The newest customer messages of every inbox the admin sees the mail of (five each,
/// twenty at most; others' individual inboxes stay private), for "try it":
/// (message id, what the list shows).
async fn recent(st: &WebState, c: &Ctx, ws: &Workspace) -> Vec<(String, String)> {
    let mut found: Vec<(String, String, String)> = Vec::new();
    for i in ws.inboxes.iter().filter(|i| c.viewer.can_see(&i.address)) {
        let Ok(addr) = mailroom_core::EmailAddress::parse(&i.address) else { continue };
        let Ok(newest) = crate::views::conversations::newest(&st.api.ports, &addr, 5).await else { continue };
        for msg in newest.iter().filter(|m| m.test.is_none() && !m.is_outbound()) {
            let label = format!(
                "{} · {} · {}",
                i.address,
                msg.from.as_deref().unwrap_or("(no sender)"),
                msg.subject.chars().take(80).collect::<String>()
            );
            found.push((msg.gsi1sk.clone().unwrap_or_default(), msg.message_id.clone(), label));
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().take(20).map(|(_, id, label)| (id, label)).collect()
}

#[allow(clippy::too_many_arguments)]
async fn list_page(
    st: &WebState,
    c: &Ctx,
    ws: &Workspace,
    notice: Option<String>,
    try_inbox: String,
    try_raw: String,
    trace: Option<TraceView>,
) -> Response {
    let recent = recent(st, c, ws).await;
    let version = match crate::workspace::version(&st.api.ports).await {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    let n = ws.rules.len();
    let rules = ws
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (when, then) = describe(r);
            let mut moves = Vec::new();
            if i > 0 {
                moves.push(("up", "Move up"));
            }
            if i + 1 < n {
                moves.push(("down", "Move down"));
            }
            moves.push(("delete", "Delete"));
            RuleRow { pos: i + 1, index: i, name: r.name.clone(), when, then, moves }
        })
        .collect();
    page(RulesTpl {
        version,
        csrf: c.session.csrf.clone(),
        name: c.viewer.name.clone(),
        admin: true,
        section: "settings",
        notice,
        rules,
        inboxes: ws.inboxes.iter().map(|i| i.address.clone()).collect(),
        recent,
        try_inbox,
        try_raw,
        trace,
    })
}

/// `GET /app/settings/rules`.
pub(super) async fn list(AdminPage { st, c, notice }: AdminPage) -> Response {
    let ws = c.viewer.ws.clone();
    list_page(&st, &c, &ws, notice, String::new(), String::new(), None).await
}

/// `POST /app/settings/rules/try`: the pasted email through the rules, with the reasons.
pub(super) async fn try_it(f: AdminForm) -> Response {
    let AdminForm { st, c, fields } = f;
    let ws = c.viewer.ws.clone();
    let mut inbox = field(&fields, "inbox").unwrap_or_default().to_string();
    let mut raw = field(&fields, "raw").unwrap_or_default().replace("\r\n", "\n").replace('\n', "\r\n");
    // One of the recent messages: its stored raw bytes, in its own inbox.
    if let Some(mid) = field(&fields, "message") {
        let item = st.api.ports.table.get(&crate::keys::message(mid)).await.ok().flatten();
        let Some(item) = item.filter(|m| m.get("test").is_none()) else { return not_found(&c) };
        let m = crate::records::Message::from_item(&item);
        if !c.viewer.can_see(&m.inbox) {
            return not_found(&c);
        }
        let bytes = match &m.raw_key {
            Some(k) => st.api.ports.blobs.get(k).await.ok().flatten(),
            None => None,
        };
        let Some(bytes) = bytes else { return internal(format!("the raw bytes of {mid} are missing")) };
        inbox = m.inbox.clone();
        raw = String::from_utf8_lossy(&bytes).into_owned();
    }
    if raw.len() > 1_000_000 {
        return list_page(
            &st,
            &c,
            &ws,
            Some("The email is over 1 MB: paste its headers and the start of its text.".into()),
            inbox,
            String::new(),
            None,
        )
        .await;
    }
    let parsed = match mailroom_core::understand(raw.as_bytes()) {
        Ok(u) => u.message,
        Err(e) => {
            let why = format!("That is not an email Mailroom can read: {e}");
            return list_page(&st, &c, &ws, Some(why), inbox, raw, None).await;
        }
    };
    let sender = parsed.from.as_ref().map(|f| f.email.to_lowercase()).unwrap_or_default();
    let kind = serde_json::to_value(parsed.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut ctx = RouteContext {
        inbox: inbox.clone(),
        subject: parsed.subject.clone(),
        body: mailroom_core::text_body(raw.as_bytes()),
        sender_email: sender.clone(),
        kind: kind.clone(),
        ..RouteContext::default()
    };
    // The sender's contact and company properties, as the route stage reads them.
    if let Err(e) = crate::pipeline::route::customer_properties(&st.api.ports, &mut ctx, &sender).await {
        tracing::warn!(error = %e, "try-it: the sender's properties could not be read");
    }
    let (d, traces) = Router::new(&ws).explain(&ctx);
    let mut lines = Vec::new();
    for (t, r) in traces.iter().zip(&ws.rules) {
        let line = if t.other_inbox {
            format!("{}: not for {inbox} (only {})", t.rule, r.inboxes.join(", "))
        } else if !t.reached {
            format!("{}: not reached (an earlier rule matched and stopped)", t.rule)
        } else {
            let conds: Vec<String> = r
                .conditions
                .iter()
                .zip(&t.conditions)
                .map(|(c, ok)| {
                    let (f, p) = field_name(&c.field);
                    format!(
                        "{} {} {}",
                        if p.is_empty() { f } else { p },
                        op_name(c.op).replace('_', " "),
                        if *ok { "holds" } else { "does not hold" }
                    )
                })
                .collect();
            format!(
                "{}: {} ({})",
                t.rule,
                if t.matched { "matches" } else { "does not match" },
                conds.join("; ")
            )
        };
        lines.push(line);
    }
    let who = match (&d.team, &d.user) {
        (Some(t), Some(u)) => format!("team {t}, assigned to {u}"),
        (Some(t), None) => format!("team {t}"),
        (None, Some(u)) => format!("assigned to {u}"),
        (None, None) => "no team: the conversation stays unassigned".into(),
    };
    let outcome = match d.matched.as_slice() {
        [] => format!("No rule matches: {who}."),
        [f] if f == "fallback" => format!("No rule matches; the inbox's fallback team applies: {who}."),
        names => format!(
            "Rule {} decides: {who}.",
            names.iter().filter(|n| *n != "fallback").cloned().collect::<Vec<_>>().join(", then ")
        ),
    };
    let trace = TraceView { outcome, sender, subject: parsed.subject, kind, lines };
    list_page(&st, &c, &ws, None, inbox, raw, Some(trace)).await
}

/// `POST /app/settings/rules/{n}/{up|down|delete}`.
/// A change by position, refused when the rules may have moved since the page was shown.
async fn stale(st: &WebState, shown: u64, by_position: bool) -> Option<String> {
    let now = crate::workspace::version(&st.api.ports).await.ok()?;
    (by_position && now != shown).then(|| {
        "the workspace changed since this page was shown (another admin's edit?): reload it and make the change again".to_string()
    })
}

pub(super) async fn reorder(Path((n, op)): Path<(usize, String)>, f: AdminForm) -> Response {
    let AdminForm { st, c, fields } = f;
    let shown: u64 = field(&fields, "version").and_then(|v| v.parse().ok()).unwrap_or(0);
    if let Some(e) = stale(&st, shown, true).await {
        return Redirect::to(&format!(
            "/app/settings/rules?{}",
            notice_query(&st.api.ports.signer, &format!("Not changed: {e}"))
        ))
        .into_response();
    }
    let r = edit(&st.api, &c.viewer, |ws| {
        let len = ws.rules.len();
        if n >= len {
            return Err(ApiError::NotFound(format!("no rule {n}")));
        }
        match op.as_str() {
            "up" if n > 0 => ws.rules.swap(n, n - 1),
            "down" if n + 1 < len => ws.rules.swap(n, n + 1),
            "delete" => {
                ws.rules.remove(n);
            }
            _ => return Err(ApiError::BadRequest(format!("cannot {op} rule {}", n + 1))),
        }
        Ok(())
    })
    .await;
    let text = match r {
        Ok(()) => format!("Rule {} {}.", n + 1, if op == "delete" { "deleted" } else { "moved" }),
        Err(ApiError::NotFound(_)) => return not_found(&c),
        Err(e) => format!("Not changed: {}", problem(e)),
    };
    Redirect::to(&format!("/app/settings/rules?{}", notice_query(&st.api.ports.signer, &text)))
        .into_response()
}

fn form_of(ws: &Workspace, r: Option<&Rule>) -> RuleForm {
    let mut conditions: Vec<CondForm> = r
        .map(|r| r.conditions.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (field, property) = field_name(&c.field);
            let values: Vec<&str> = c.value.iter().chain(&c.values).map(String::as_str).collect();
            CondForm { n: i + 1, field, property, op: op_name(c.op), values: values.join(", ") }
        })
        .collect();
    while conditions.len() < CONDITION_ROWS {
        let n = conditions.len() + 1;
        conditions.push(CondForm {
            n,
            field: "subject".into(),
            property: String::new(),
            op: "contains_any_word".into(),
            values: String::new(),
        });
    }
    let a = r.map(|r| r.actions.clone()).unwrap_or_default();
    RuleForm {
        name: r.map(|r| r.name.clone()).unwrap_or_default(),
        inboxes: ws
            .inboxes
            .iter()
            .map(|i| {
                (
                    i.address.clone(),
                    r.is_some_and(|r| r.inboxes.iter().any(|x| x.eq_ignore_ascii_case(&i.address))),
                )
            })
            .collect(),
        match_any: r.is_some_and(|r| r.r#match == MatchMode::Any),
        conditions,
        team: a.team.unwrap_or_default(),
        user: a.user.unwrap_or_default(),
        assign: a.assign.map(|s| op_like(&s).replace(' ', "_")).unwrap_or_default(),
        priority: a.priority.unwrap_or_default(),
        stage: format!("{}/{}", a.pipeline.unwrap_or_default(), a.stage.unwrap_or_default()),
        tags: a.tags.join(", "),
        no_ticket: a.no_ticket,
        cont: r.is_some_and(|r| r.r#continue),
        deal: a.deal.unwrap_or_default(),
    }
}

fn rule_page(
    c: &Ctx,
    ws: &Workspace,
    version: u64,
    n: Option<usize>,
    error: Option<String>,
    v: RuleForm,
) -> Response {
    let mut stages = vec![("/".to_string(), "(the inbox's)".to_string())];
    for p in &ws.pipelines {
        for s in &p.stages {
            stages.push((
                format!("{}/{}", p.id, s.id),
                format!("{}: {}", p.name.as_deref().unwrap_or(&p.id), s.name.as_deref().unwrap_or(&s.id)),
            ));
        }
    }
    page(RuleTpl {
        version,
        csrf: c.session.csrf.clone(),
        name: c.viewer.name.clone(),
        admin: true,
        section: "settings",
        heading: if n.is_some() { format!("Rule: {}", v.name) } else { "New rule".into() },
        action: match n {
            Some(n) => format!("/app/settings/rules/{n}"),
            None => "/app/settings/rules/new".into(),
        },
        error,
        v,
        fields: pairs(&[
            ("subject", "Subject"),
            ("body", "Body text"),
            ("sender_email", "Sender address"),
            ("sender_domain", "Sender domain"),
            ("inbox", "Inbox address"),
            ("kind", "Kind (normal, auto_reply, bounce, list)"),
            ("property", "A contact or company property"),
        ]),
        ops: pairs(&[
            ("contains_any_word", "contains any of the words"),
            ("not_contains_any_word", "contains none of the words"),
            ("contains", "contains the text"),
            ("equals", "equals one of"),
            ("not_equals", "equals none of"),
            ("regex", "matches the regular expression"),
        ]),
        teams: ws
            .teams
            .iter()
            .map(|t| (t.id.clone(), t.name.clone().unwrap_or_else(|| t.id.clone())))
            .collect(),
        deals: ws.deals.iter().map(|d| (d.id.clone(), format!("{} ({})", d.name, d.id))).collect(),
        users: ws.users.iter().map(|u| (u.email.clone(), format!("{} ({})", u.name, u.email))).collect(),
        assigns: pairs(&[
            ("", "(the team's)"),
            ("round_robin", "Round robin"),
            ("least_loaded", "Least loaded"),
            ("contact_owner", "The contact's owner"),
        ]),
        stages,
    })
}

/// `GET /app/settings/rules/new` and `GET /app/settings/rules/{n}`.
pub(super) async fn form(n: Option<Path<usize>>, AdminPage { st, c, .. }: AdminPage) -> Response {
    let ws = c.viewer.ws.clone();
    let n = n.map(|Path(n)| n);
    let rule = match n {
        Some(i) => match ws.rules.get(i) {
            Some(r) => Some(r),
            None => return not_found(&c),
        },
        None => None,
    };
    let v = form_of(&ws, rule);
    let version = match crate::workspace::version(&st.api.ports).await {
        Ok(v) => v,
        Err(e) => return internal(e),
    };
    rule_page(&c, &ws, version, n, None, v)
}

/// The form as it was sent, to show again with what is wrong.
fn form_from(ws: &Workspace, fields: &Fields) -> RuleForm {
    let f = |k: &str| field(fields, k).unwrap_or_default().to_string();
    let ticked: Vec<&String> = fields.iter().filter(|(k, _)| k == "inbox").map(|(_, v)| v).collect();
    RuleForm {
        name: f("name"),
        inboxes: ws.inboxes.iter().map(|i| (i.address.clone(), ticked.contains(&&i.address))).collect(),
        match_any: f("match") == "any",
        conditions: (1..=CONDITION_ROWS)
            .map(|n| CondForm {
                n,
                field: f(&format!("field{n}")),
                property: f(&format!("property{n}")),
                op: f(&format!("op{n}")),
                values: f(&format!("values{n}")),
            })
            .collect(),
        team: f("team"),
        user: f("user"),
        assign: f("assign"),
        priority: f("priority"),
        stage: f("stage"),
        tags: f("tags"),
        no_ticket: field(fields, "no_ticket").is_some(),
        cont: field(fields, "continue").is_some(),
        deal: f("deal"),
    }
}

/// The rule a submitted form describes, or what is wrong with it.
fn rule_of(fields: &Fields) -> Result<Rule, String> {
    let f = |k: &str| field(fields, k).unwrap_or_default().trim().to_string();
    let list = |k: &str| -> Vec<String> {
        f(k).split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    };
    let name = f("name");
    if name.is_empty() {
        return Err("a rule needs a name".into());
    }
    let mut conditions = Vec::new();
    for n in 1..=CONDITION_ROWS {
        let values = list(&format!("values{n}"));
        if values.is_empty() {
            continue;
        }
        let field_s = f(&format!("field{n}"));
        let field = if field_s == "property" {
            let p = f(&format!("property{n}"));
            if p.is_empty() {
                return Err(format!("condition {n}: name the property (contact.tier, company.plan)"));
            }
            Field::Property(p)
        } else {
            serde_json::from_value(serde_json::json!(field_s))
                .map_err(|_| format!("condition {n}: unknown field {field_s:?}"))?
        };
        let op_s = f(&format!("op{n}"));
        let op: Op = serde_json::from_value(serde_json::json!(op_s))
            .map_err(|_| format!("condition {n}: unknown test {op_s:?}"))?;
        let (value, values) =
            if op == Op::Regex { (Some(f(&format!("values{n}"))), vec![]) } else { (None, values) };
        conditions.push(Condition { field, op, value, values });
    }
    let assign = match f("assign").as_str() {
        "" => None,
        s => Some(
            serde_json::from_value(serde_json::json!(s)).map_err(|_| format!("unknown strategy {s:?}"))?,
        ),
    };
    let (pipeline, stage) =
        f("stage").split_once('/').map(|(p, s)| (p.to_string(), s.to_string())).unwrap_or_default();
    let some = |s: String| Some(s).filter(|s| !s.is_empty());
    Ok(Rule {
        name,
        inboxes: fields.iter().filter(|(k, _)| k == "inbox").map(|(_, v)| v.clone()).collect(),
        r#match: if f("match") == "any" { MatchMode::Any } else { MatchMode::All },
        conditions,
        actions: Actions {
            team: some(f("team")),
            user: some(f("user")),
            assign,
            priority: some(f("priority")),
            pipeline: some(pipeline),
            stage: some(stage),
            tags: list("tags"),
            no_ticket: field(fields, "no_ticket").is_some(),
            deal: some(f("deal")),
        },
        r#continue: field(fields, "continue").is_some(),
    })
}

/// `POST /app/settings/rules/new` and `POST /app/settings/rules/{n}`: saved when the
/// workspace validates with it (a rule naming a team that does not exist, a bad regular
/// expression... are refused with the reasons).
pub(super) async fn save(n: Option<Path<usize>>, f: AdminForm) -> Response {
    let AdminForm { st, c, fields } = f;
    let n = n.map(|Path(n)| n);
    let ws = c.viewer.ws.clone();
    let shown: u64 = field(&fields, "version").and_then(|v| v.parse().ok()).unwrap_or(0);
    let again = |e: String| rule_page(&c, &ws, shown, n, Some(e), form_from(&ws, &fields));
    if let Some(e) = stale(&st, shown, n.is_some()).await {
        return again(e);
    }
    let rule = match rule_of(&fields) {
        Ok(r) => r,
        Err(e) => return again(e),
    };
    let keep = rule.clone();
    let r = edit(&st.api, &c.viewer, |w| {
        match n {
            Some(i) if i < w.rules.len() => w.rules[i] = rule,
            Some(i) => return Err(ApiError::NotFound(format!("no rule {i}"))),
            None => w.rules.push(rule),
        }
        Ok(())
    })
    .await;
    match r {
        Ok(()) => {
            let text = format!("Saved rule {:?}.", keep.name);
            Redirect::to(&format!("/app/settings/rules?{}", notice_query(&st.api.ports.signer, &text)))
                .into_response()
        }
        Err(ApiError::NotFound(_)) => not_found(&c),
        Err(e) => again(problem(e)),
    }
}
