//! The workspace model: inboxes, users, teams, pipelines, routing rules, ticket automation,
//! signatures, deals, business-hours calendars, SLA policies and report settings.
//! `mailroom apply FILE` reads it from TOML (see docs/workspace.md);
//! the API will edit the same model. Pure types and validation: no I/O.

use crate::EmailAddress;
use crate::calendar::Calendar;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use toml::de::{DeTable, DeValue};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workspace {
    #[serde(default)]
    pub name: Option<String>,
    /// Domains never turned into companies, on top of the built-in freemail list.
    #[serde(default)]
    pub company_exclusions: Vec<String>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub teams: Vec<Team>,
    #[serde(default)]
    pub pipelines: Vec<Pipeline>,
    #[serde(default)]
    pub inboxes: Vec<Inbox>,
    /// Ordered; the first that matches wins unless it says `continue = true`.
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub contacts: Vec<ContactSeed>,
    #[serde(default)]
    pub deals: Vec<Deal>,
    /// Business-hours calendars, referred to by SLA policies and `[reports]`.
    #[serde(default)]
    pub calendars: Vec<CalendarSpec>,
    /// Ordered; a conversation gets the first that matches its inbox and priority.
    #[serde(default)]
    pub sla_policies: Vec<SlaPolicy>,
    #[serde(default)]
    pub reports: ReportSettings,
    /// Web forms that open conversations in an inbox (their secrets are not here).
    #[serde(default)]
    pub forms: Vec<Form>,
    #[serde(default)]
    pub security: SecuritySettings,
}

/// `[security]`: what the workspace trusts (docs/security.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// Receiving hosts (the authserv-id of their `Authentication-Results` header, such as
    /// `mx.google.com`) whose DMARC verdict is believed: an inbound message claiming one
    /// of our addresses in From is ours only when one of them saw DMARC pass for it.
    #[serde(default)]
    pub trusted_receivers: Vec<String>,
    /// Whether IMAP and SMTP servers on loopback, link-local or private addresses may be
    /// connected (off: such a host is refused, so the API cannot be used to probe the
    /// network it runs in).
    #[serde(default)]
    pub allow_private_mail_hosts: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    #[default]
    Agent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub role: Role,
    /// Unavailable agents are skipped by round-robin and least-loaded assignment.
    #[serde(default = "yes")]
    pub available: bool,
    #[serde(default)]
    pub signature: Option<String>,
    /// How the user hears of what concerns them (default: email for everything).
    #[serde(default)]
    pub notifications: NotificationSettings,
}

fn yes() -> bool {
    true
}

/// How one kind of notification reaches a user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyBy {
    #[default]
    Email,
    None,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    /// A conversation was assigned to the user.
    #[serde(default)]
    pub assigned: NotifyBy,
    /// A customer wrote in a conversation assigned to the user.
    #[serde(default)]
    pub customer_reply: NotifyBy,
    /// Someone mentioned the user in a comment.
    #[serde(default)]
    pub mention: NotifyBy,
    /// A conversation assigned to the user (or, unassigned, to their team) breached its SLA.
    #[serde(default)]
    pub sla_breach: NotifyBy,
}

/// A web form feeding an inbox (`POST /forms/{id}/submissions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Form {
    pub id: String,
    /// The inbox its submissions arrive in, like an email to that address.
    pub inbox: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    /// Short id used by rules and inboxes ("support").
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// User emails, in round-robin order.
    #[serde(default)]
    pub members: Vec<String>,
    /// How conversations routed to this team without an assignment of their own (e.g. by
    /// an inbox's fallback) are assigned.
    #[serde(default)]
    pub assign: Option<Assign>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Ordered stages; the first is the default initial stage.
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// A ticket in a closed stage is closed; a customer reply reopens it.
    #[serde(default)]
    pub closed: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InboxType {
    #[default]
    Shared,
    Individual,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    #[default]
    None,
    Imap,
    Gmail,
    Microsoft,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inbox {
    pub address: String,
    #[serde(default, rename = "type")]
    pub kind: InboxType,
    #[serde(default)]
    pub provider: Provider,
    /// The user who owns an individual inbox.
    #[serde(default)]
    pub owner: Option<String>,
    /// Who may see the inbox: user emails and team ids.
    #[serde(default)]
    pub members: Members,
    #[serde(default)]
    pub tickets: TicketAutomation,
    /// Shared signature added to replies sent from this inbox.
    #[serde(default)]
    pub signature: Option<String>,
    /// Where a conversation goes when no rule assigns a team.
    #[serde(default)]
    pub fallback_team: Option<String>,
    /// Create contacts for external Cc addresses (otherwise they are linked only when they
    /// exist already).
    #[serde(default)]
    pub create_cc_contacts: bool,
    /// Add an open pixel and click tracking to the HTML of replies sent from this inbox
    /// (docs/replies.md).
    #[serde(default)]
    pub tracking: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketAutomation {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub pipeline: Option<String>,
    /// Initial stage; the pipeline's first stage when absent.
    #[serde(default)]
    pub stage: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// Limit the rule to these inbox addresses (empty: every inbox).
    #[serde(default)]
    pub inboxes: Vec<String>,
    /// `all` (default) or `any` of the conditions must hold.
    #[serde(default)]
    pub r#match: MatchMode,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub actions: Actions,
    /// Keep evaluating later rules after this one matched (their actions fill in what
    /// this one left unset).
    #[serde(default)]
    pub r#continue: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    #[default]
    All,
    Any,
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Inbox,
    Subject,
    Body,
    SenderEmail,
    SenderDomain,
    /// `normal`, `auto_reply`, `bounce`, `list`.
    Kind,
    /// A property of the contact (`contact.owner`, `contact.name`, or a custom one).
    #[serde(untagged)]
    Property(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Any of `values` as a whole word, case-insensitive.
    ContainsAnyWord,
    /// Any of `values` as a substring, case-insensitive.
    Contains,
    /// Equal to `value` (or any of `values`), case-insensitive.
    Equals,
    /// The value is one of `values`, case-insensitive (same as equals with a list).
    InList,
    /// `value` is a regular expression.
    Regex,
    /// Negations.
    NotContainsAnyWord,
    NotEquals,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: Field,
    pub op: Op,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assign {
    /// Next available member of the team, in turn (persisted, fair under concurrency).
    RoundRobin,
    /// The available member of the team with the fewest open conversations.
    LeastLoaded,
    /// The contact's owner, when the contact has one.
    ContactOwner,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actions {
    #[serde(default)]
    pub team: Option<String>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub assign: Option<Assign>,
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub pipeline: Option<String>,
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub no_ticket: bool,
}

/// A contact configured up front (e.g. with an owner for `assign = "contact_owner"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactSeed {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DealStatus {
    #[default]
    Open,
    Won,
    Lost,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deal {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub status: DealStatus,
    /// Associated by contact email and/or company domain.
    #[serde(default)]
    pub contacts: Vec<String>,
    #[serde(default)]
    pub companies: Vec<String>,
    #[serde(default)]
    pub amount: Option<f64>,
}

/// A business-hours calendar ([`Calendar::new`] reads it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSpec {
    pub id: String,
    /// An IANA time zone name (`Europe/Berlin`).
    pub time_zone: String,
    /// Open hours per day: `mon` .. `sun` → `"08:00-18:00"`, `"08:00-12:00,13:00-18:00"`,
    /// `"00:00-24:00"` or `""`; a missing day is closed.
    #[serde(default)]
    pub hours: BTreeMap<String, String>,
    /// Local dates (`YYYY-MM-DD`) closed all day.
    #[serde(default)]
    pub holidays: Vec<String>,
}

/// First-response and time-to-close targets for the conversations of some inboxes and
/// priorities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaPolicy {
    pub id: String,
    /// Inbox addresses (empty: every inbox).
    #[serde(default)]
    pub inboxes: Vec<String>,
    /// Priorities (empty: every conversation, with a priority or without).
    #[serde(default)]
    pub priorities: Vec<String>,
    /// A duration ([`parse_duration`]) of business time.
    #[serde(default)]
    pub first_response: Option<String>,
    /// A duration ([`parse_duration`]) of business time.
    #[serde(default)]
    pub time_to_close: Option<String>,
    /// The calendar the targets are measured in (absent: calendar time, 24x7).
    #[serde(default)]
    pub calendar: Option<String>,
    /// Stage ids during which the clocks stop (e.g. waiting on the customer).
    #[serde(default)]
    pub pause_stages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// The calendar of the business-hours metrics (absent: calendar time, 24x7).
    #[serde(default)]
    pub calendar: Option<String>,
    /// How long an open conversation waits for the team before it counts as stale.
    #[serde(default = "default_stale_after")]
    pub stale_after: String,
}

fn default_stale_after() -> String {
    "24h".into()
}

impl Default for ReportSettings {
    fn default() -> ReportSettings {
        ReportSettings { calendar: None, stale_after: default_stale_after() }
    }
}

/// A duration in seconds: numbers with units `d`, `h`, `m`, `s`, largest unit first, each
/// unit at most once, no spaces: `"45s"`, `"30m"`, `"4h"`, `"2d"`, `"1h30m"`, `"1d12h"`.
/// Zero, negative, unitless and empty durations are errors.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    const UNITS: [(char, i64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let bad =
        || format!("invalid duration {s:?}: use a number and a unit (d, h, m, s), e.g. \"4h\" or \"1h30m\"");
    let text = s.trim();
    if text.is_empty() {
        return Err(bad());
    }
    let mut total: i64 = 0;
    let mut rest = text;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit = rest[digits..].chars().next().ok_or_else(bad)?;
        let Some(k) = UNITS.iter().position(|&(c, _)| c == unit) else { return Err(bad()) };
        if k < next_unit {
            return Err(format!("invalid duration {s:?}: give each unit once, largest first (d, h, m, s)"));
        }
        next_unit = k + 1;
        total = n.checked_mul(UNITS[k].1).and_then(|x| total.checked_add(x)).ok_or_else(bad)?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    if total == 0 {
        return Err(format!("invalid duration {s:?}: must be longer than zero"));
    }
    Ok(total)
}

// ------------------------------------------------------------------ parsing and validation

/// One problem in a workspace file: where (1-based line when read from text, and the path
/// of the offending value, e.g. `rules[2].actions.team`, with 0-based indices) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigError {
    pub line: Option<usize>,
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(n) => write!(f, "line {n}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The path of a TOML syntax error (the document could not be read as TOML at all).
pub const SYNTAX_PATH: &str = "(syntax)";
/// The path of an error about the document as a whole.
pub const DOCUMENT_PATH: &str = "(document)";

/// Ticket and rule priorities.
pub const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];
/// The values of the `kind` condition field.
pub const KINDS: [&str; 4] = ["normal", "auto_reply", "bounce", "list"];

/// Reads a workspace from TOML text, normalises it ([`Workspace::normalize`]) and
/// validates it ([`validate`]). Every error carries the line it is about: syntax and type
/// errors from the span the `toml` crate reports, semantic errors by following their path
/// through the spanned document tree (`toml::de::DeTable`).
pub fn parse_toml(text: &str) -> Result<Workspace, Vec<ConfigError>> {
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let mut errs: Vec<ConfigError> = syntax
            .iter()
            .map(|e| ConfigError {
                line: e.span().map(|s| line_at(text, s.start)),
                path: SYNTAX_PATH.into(),
                message: e.message().to_string(),
            })
            .collect();
        sort_errors(&mut errs);
        return Err(errs);
    }
    let root = DeValue::Table(doc.into_inner());
    let mut ws: Workspace = toml::from_str(text).map_err(|e| {
        let (line, path) = match e.span() {
            Some(s) => (Some(line_at(text, s.start)), path_at(&root, s.start)),
            None => (None, String::new()),
        };
        let path = if path.is_empty() { DOCUMENT_PATH.to_string() } else { path };
        vec![ConfigError { line, path, message: e.message().to_string() }]
    })?;
    ws.normalize();
    let mut errs = validate(&ws);
    if errs.is_empty() {
        return Ok(ws);
    }
    for e in &mut errs {
        e.line = locate(&root, &e.path).map(|off| line_at(text, off));
    }
    sort_errors(&mut errs);
    Err(errs)
}

fn sort_errors(errs: &mut Vec<ConfigError>) {
    // Stable: errors of one line keep the order validation found them in.
    errs.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    errs.dedup();
}

/// The 1-based line of a byte offset.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// `rules[2].actions.team` → rules, 2, actions, team.
fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        while let Some(close) = rest.find(']') {
            match rest.get(1..close).and_then(|n| n.parse().ok()) {
                Some(n) => out.push(Seg::Index(n)),
                None => return out,
            }
            rest = &rest[close + 1..];
        }
    }
    out
}

/// The byte offset of the deepest part of `path` present in the document: the key of a
/// `key = value`, the header of an `[[array]]` element, an element of an inline array.
/// A path whose last part is absent (a missing key) gives its parent's position.
fn locate(root: &DeValue<'_>, path: &str) -> Option<usize> {
    let mut cur = root;
    let mut best = None;
    for seg in segments(path) {
        match (seg, cur) {
            (Seg::Key(k), DeValue::Table(t)) => {
                let Some((key, val)) = t.iter().find(|(key, _)| key.get_ref() == k) else { break };
                best = Some(key.span().start);
                cur = val.get_ref();
            }
            (Seg::Index(i), DeValue::Array(a)) => {
                let Some(v) = a.get(i) else { break };
                best = Some(v.span().start);
                cur = v.get_ref();
            }
            _ => break,
        }
    }
    best
}

/// The path of the deepest key or element whose span holds `offset` ("" when none does).
fn path_at(root: &DeValue<'_>, offset: usize) -> String {
    fn walk(v: &DeValue<'_>, offset: usize, out: &mut String) -> bool {
        let inside = |s: std::ops::Range<usize>| s.start <= offset && offset < s.end.max(s.start + 1);
        match v {
            DeValue::Table(t) => {
                for (k, val) in t.iter() {
                    let len = out.len();
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k.get_ref());
                    if inside(k.span()) || walk(val.get_ref(), offset, out) || inside(val.span()) {
                        return true;
                    }
                    out.truncate(len);
                }
                false
            }
            DeValue::Array(a) => {
                for (i, val) in a.iter().enumerate() {
                    let len = out.len();
                    out.push_str(&format!("[{i}]"));
                    if walk(val.get_ref(), offset, out) || inside(val.span()) {
                        return true;
                    }
                    out.truncate(len);
                }
                false
            }
            _ => false,
        }
    }
    let mut out = String::new();
    walk(root, offset, &mut out);
    out
}

impl Workspace {
    /// Lower-cases every email address (users, team members, inbox addresses, owners and
    /// members, rule inboxes and users, contacts and their owners, deal contacts) and
    /// every domain (company exclusions, deal companies). Values that are not addresses
    /// are left as they are, for [`validate`] to report.
    pub fn normalize(&mut self) {
        fn email(s: &mut String) {
            if let Ok(a) = EmailAddress::parse(s) {
                *s = a.key();
            }
        }
        fn domain(s: &mut String) {
            *s = s.trim().to_lowercase();
        }
        self.company_exclusions.iter_mut().for_each(domain);
        for u in &mut self.users {
            email(&mut u.email);
        }
        for t in &mut self.teams {
            t.members.iter_mut().for_each(email);
        }
        for i in &mut self.inboxes {
            email(&mut i.address);
            i.owner.iter_mut().for_each(email);
            i.members.users.iter_mut().for_each(email);
        }
        for r in &mut self.rules {
            r.inboxes.iter_mut().for_each(email);
            r.actions.user.iter_mut().for_each(email);
        }
        for c in &mut self.contacts {
            email(&mut c.email);
            c.owner.iter_mut().for_each(email);
        }
        for d in &mut self.deals {
            d.contacts.iter_mut().for_each(email);
            d.companies.iter_mut().for_each(domain);
        }
        for p in &mut self.sla_policies {
            p.inboxes.iter_mut().for_each(email);
        }
        for f in &mut self.forms {
            email(&mut f.inbox);
        }
    }

    pub fn form(&self, id: &str) -> Option<&Form> {
        self.forms.iter().find(|f| f.id == id)
    }

    pub fn user(&self, email: &str) -> Option<&User> {
        self.users.iter().find(|u| u.email.eq_ignore_ascii_case(email))
    }

    /// The ids of the teams a user (by address, any case) is a member of, in file order.
    pub fn teams_of(&self, user: &str) -> Vec<String> {
        let key = user.to_lowercase();
        self.teams
            .iter()
            .filter(|t| t.members.iter().any(|m| m.to_lowercase() == key))
            .map(|t| t.id.clone())
            .collect()
    }

    pub fn pipeline(&self, id: &str) -> Option<&Pipeline> {
        self.pipelines.iter().find(|p| p.id == id)
    }

    /// The calendar with this id; [`Calendar::always`] (24x7) for `None`, an unknown id or
    /// an invalid calendar (which [`validate`] reports).
    pub fn calendar(&self, id: Option<&str>) -> Calendar {
        id.and_then(|id| self.calendars.iter().find(|c| c.id == id))
            .and_then(|c| Calendar::new(&c.time_zone, &c.hours, &c.holidays).ok())
            .unwrap_or_else(Calendar::always)
    }

    /// The SLA policy of a conversation: the first in file order whose `inboxes` holds
    /// the inbox (case-insensitively) and whose `priorities` holds the priority
    /// (case-insensitively); an empty list matches everything, and a conversation
    /// without priority matches only policies without `priorities`.
    pub fn sla_policy(&self, inbox: &str, priority: Option<&str>) -> Option<&SlaPolicy> {
        let inbox = inbox.trim();
        self.sla_policies.iter().find(|p| {
            (p.inboxes.is_empty() || p.inboxes.iter().any(|i| i.trim().eq_ignore_ascii_case(inbox)))
                && (p.priorities.is_empty()
                    || priority.is_some_and(|pr| p.priorities.iter().any(|x| x.eq_ignore_ascii_case(pr))))
        })
    }

    /// `[reports] stale_after` in seconds (24 hours when it is invalid, which [`validate`]
    /// reports).
    pub fn stale_after_secs(&self) -> i64 {
        parse_duration(&self.reports.stale_after).unwrap_or(86_400)
    }
}

impl SlaPolicy {
    /// `first_response` in seconds (`None` when absent or invalid).
    pub fn first_response_secs(&self) -> Option<i64> {
        self.first_response.as_deref().and_then(|d| parse_duration(d).ok())
    }

    /// `time_to_close` in seconds (`None` when absent or invalid).
    pub fn time_to_close_secs(&self) -> Option<i64> {
        self.time_to_close.as_deref().and_then(|d| parse_duration(d).ok())
    }
}

impl Pipeline {
    /// The default initial stage: the first.
    pub fn initial_stage(&self) -> Option<&Stage> {
        self.stages.first()
    }

    pub fn stage(&self, id: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }
}

impl Inbox {
    /// The stage a new ticket of this inbox starts in: the configured one, else the first
    /// stage of its pipeline; `None` without ticket automation.
    pub fn initial_stage<'w>(&self, ws: &'w Workspace) -> Option<&'w Stage> {
        if !self.tickets.enabled {
            return None;
        }
        let p = ws.pipeline(self.tickets.pipeline.as_deref()?)?;
        match &self.tickets.stage {
            Some(s) => p.stage(s),
            None => p.initial_stage(),
        }
    }
}

/// An id of a team, pipeline, stage, deal, calendar or SLA policy: letters, digits, `_`, `-` and `.`, starting
/// with a letter or digit, at most 64 characters.
pub fn valid_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A domain name: dot-separated labels of letters, digits and `-` (not at either end of
/// a label), at least two labels.
pub fn valid_domain(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && s.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

struct Validator<'w> {
    ws: &'w Workspace,
    errs: Vec<ConfigError>,
    users: HashMap<String, usize>,
    teams: HashMap<&'w str, usize>,
    pipelines: HashMap<&'w str, usize>,
    inboxes: HashMap<String, usize>,
}

impl<'w> Validator<'w> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errs.push(ConfigError { line: None, path: path.into(), message: message.into() });
    }

    /// The lower-cased address, or an error.
    fn email(&mut self, path: &str, s: &str) -> Option<String> {
        match EmailAddress::parse(s) {
            Ok(a) if a.key() == s.trim().to_lowercase() => Some(a.key()),
            _ => {
                self.err(path, format!("not a valid email address: {s:?}"));
                None
            }
        }
    }

    fn id(&mut self, path: &str, what: &str, s: &str) -> bool {
        if valid_id(s) {
            return true;
        }
        self.err(
            path,
            format!(
                "invalid {what} id {s:?}: use letters, digits, '_', '-' and '.', starting with a letter or digit"
            ),
        );
        false
    }

    fn user(&mut self, path: &str, s: &str) {
        if let Some(k) = self.email(path, s)
            && !self.users.contains_key(&k)
        {
            self.err(path, format!("unknown user {k}: not in [[users]]"));
        }
    }

    fn team(&mut self, path: &str, id: &str) {
        if !self.teams.contains_key(id) {
            let known = self.list(self.ws.teams.iter().map(|t| t.id.as_str()));
            self.err(path, format!("unknown team {id:?} (teams: {known})"));
        }
    }

    fn pipeline(&mut self, path: &str, id: &str) -> Option<&'w Pipeline> {
        match self.pipelines.get(id) {
            Some(&i) => self.ws.pipelines.get(i),
            None => {
                let known = self.list(self.ws.pipelines.iter().map(|p| p.id.as_str()));
                self.err(path, format!("unknown pipeline {id:?} (pipelines: {known})"));
                None
            }
        }
    }

    fn stage(&mut self, path: &str, p: &Pipeline, stage: &str) {
        if p.stage(stage).is_none() {
            let known = self.list(p.stages.iter().map(|s| s.id.as_str()));
            self.err(path, format!("stage {stage:?} is not in pipeline {:?} (stages: {known})", p.id));
        }
    }

    fn inbox(&mut self, path: &str, addr: &str) {
        if let Some(k) = self.email(path, addr)
            && !self.inboxes.contains_key(&k)
        {
            self.err(path, format!("unknown inbox {k}: not in [[inboxes]]"));
        }
    }

    fn list<'a>(&self, ids: impl Iterator<Item = &'a str>) -> String {
        let mut v: Vec<&str> = ids.collect();
        if v.is_empty() {
            return "none".into();
        }
        v.sort_unstable();
        v.join(", ")
    }
}

/// Every semantic problem of a workspace (an empty list when it is valid). Addresses are
/// compared case-insensitively, so a model that was not normalised validates the same.
/// The errors carry paths but no lines; [`parse_toml`] adds the lines.
pub fn validate(ws: &Workspace) -> Vec<ConfigError> {
    let mut v = Validator {
        ws,
        errs: Vec::new(),
        users: HashMap::new(),
        teams: HashMap::new(),
        pipelines: HashMap::new(),
        inboxes: HashMap::new(),
    };
    for (i, d) in ws.company_exclusions.iter().enumerate() {
        if !valid_domain(d) {
            v.err(format!("company_exclusions[{i}]"), format!("not a valid domain: {d:?}"));
        }
    }

    // Declarations first (so references may point forwards), then references.
    for (i, u) in ws.users.iter().enumerate() {
        let p = format!("users[{i}]");
        if let Some(k) = v.email(&format!("{p}.email"), &u.email) {
            match v.users.get(&k) {
                Some(j) => v.err(format!("{p}.email"), format!("duplicate user {k} (also users[{j}])")),
                None => {
                    v.users.insert(k, i);
                }
            }
        }
        if u.name.trim().is_empty() {
            v.err(format!("{p}.name"), "a user needs a name");
        }
    }
    for (i, t) in ws.teams.iter().enumerate() {
        let p = format!("teams[{i}].id");
        if v.id(&p, "team", &t.id) {
            match v.teams.get(t.id.as_str()) {
                Some(j) => v.err(p, format!("duplicate team {:?} (also teams[{j}])", t.id)),
                None => {
                    v.teams.insert(&t.id, i);
                }
            }
        }
    }
    for (i, pl) in ws.pipelines.iter().enumerate() {
        let p = format!("pipelines[{i}]");
        if v.id(&format!("{p}.id"), "pipeline", &pl.id) {
            match v.pipelines.get(pl.id.as_str()) {
                Some(j) => {
                    v.err(format!("{p}.id"), format!("duplicate pipeline {:?} (also pipelines[{j}])", pl.id))
                }
                None => {
                    v.pipelines.insert(&pl.id, i);
                }
            }
        }
        if pl.stages.is_empty() {
            v.err(format!("{p}.stages"), "a pipeline needs at least one stage");
        }
        let mut seen = HashSet::new();
        for (j, s) in pl.stages.iter().enumerate() {
            let sp = format!("{p}.stages[{j}].id");
            if v.id(&sp, "stage", &s.id) && !seen.insert(s.id.as_str()) {
                v.err(sp, format!("duplicate stage {:?} in pipeline {:?}", s.id, pl.id));
            }
        }
        if pl.stages.first().is_some_and(|s| s.closed) {
            v.err(
                format!("{p}.stages[0].closed"),
                "the first stage is the default initial stage: it cannot be closed",
            );
        }
    }
    for (i, inbox) in ws.inboxes.iter().enumerate() {
        let p = format!("inboxes[{i}].address");
        if let Some(k) = v.email(&p, &inbox.address) {
            match v.inboxes.get(&k) {
                Some(j) => v.err(p, format!("duplicate inbox {k} (also inboxes[{j}])")),
                None => {
                    v.inboxes.insert(k, i);
                }
            }
        }
    }

    for (i, t) in ws.teams.iter().enumerate() {
        let mut seen = HashSet::new();
        for (j, m) in t.members.iter().enumerate() {
            let p = format!("teams[{i}].members[{j}]");
            v.user(&p, m);
            if !seen.insert(m.to_lowercase()) {
                v.err(p, format!("{m} is listed twice"));
            }
        }
    }
    for (i, inbox) in ws.inboxes.iter().enumerate() {
        validate_inbox(&mut v, i, inbox);
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, r) in ws.rules.iter().enumerate() {
        if r.name.trim().is_empty() {
            v.err(format!("rules[{i}].name"), "a rule needs a name");
        } else if let Some(j) = names.insert(&r.name, i) {
            v.err(format!("rules[{i}].name"), format!("duplicate rule name {:?} (also rules[{j}])", r.name));
        }
        validate_rule(&mut v, i, r);
    }
    let mut contacts: HashMap<String, usize> = HashMap::new();
    for (i, c) in ws.contacts.iter().enumerate() {
        let p = format!("contacts[{i}]");
        if let Some(k) = v.email(&format!("{p}.email"), &c.email) {
            match contacts.get(&k) {
                Some(j) => v.err(format!("{p}.email"), format!("duplicate contact {k} (also contacts[{j}])")),
                None => {
                    contacts.insert(k, i);
                }
            }
        }
        if let Some(o) = &c.owner {
            v.user(&format!("{p}.owner"), o);
        }
        for k in c.properties.keys() {
            if k.trim().is_empty() || matches!(k.as_str(), "email" | "name" | "owner") {
                v.err(format!("{p}.properties"), format!("invalid property name {k:?}"));
            }
        }
    }
    let mut deals: HashMap<&str, usize> = HashMap::new();
    for (i, d) in ws.deals.iter().enumerate() {
        let p = format!("deals[{i}]");
        if v.id(&format!("{p}.id"), "deal", &d.id)
            && let Some(j) = deals.insert(&d.id, i)
        {
            v.err(format!("{p}.id"), format!("duplicate deal {:?} (also deals[{j}])", d.id));
        }
        if d.name.trim().is_empty() {
            v.err(format!("{p}.name"), "a deal needs a name");
        }
        if d.contacts.is_empty() && d.companies.is_empty() {
            v.err(p.clone(), "a deal must reference at least one contact or company");
        }
        for (j, c) in d.contacts.iter().enumerate() {
            v.email(&format!("{p}.contacts[{j}]"), c);
        }
        for (j, c) in d.companies.iter().enumerate() {
            if !valid_domain(c) {
                v.err(format!("{p}.companies[{j}]"), format!("not a valid company domain: {c:?}"));
            }
        }
        if let Some(a) = d.amount
            && !(a.is_finite() && a >= 0.0)
        {
            v.err(format!("{p}.amount"), "the amount must be a number >= 0");
        }
    }
    validate_sla(&mut v);
    let mut forms: HashMap<&str, usize> = HashMap::new();
    for (i, f) in ws.forms.iter().enumerate() {
        let p = format!("forms[{i}]");
        if v.id(&format!("{p}.id"), "form", &f.id)
            && let Some(j) = forms.insert(&f.id, i)
        {
            v.err(format!("{p}.id"), format!("duplicate form {:?} (also forms[{j}])", f.id));
        }
        v.inbox(&format!("{p}.inbox"), &f.inbox);
    }
    v.errs
}

/// Calendars, SLA policies and `[reports]`.
fn validate_sla(v: &mut Validator<'_>) {
    let ws = v.ws;
    let no_hours = BTreeMap::new();
    let mut calendars: HashMap<&str, usize> = HashMap::new();
    for (i, c) in ws.calendars.iter().enumerate() {
        let p = format!("calendars[{i}]");
        if v.id(&format!("{p}.id"), "calendar", &c.id)
            && let Some(j) = calendars.insert(&c.id, i)
        {
            v.err(format!("{p}.id"), format!("duplicate calendar {:?} (also calendars[{j}])", c.id));
        }
        // Each part on its own, for the line of the error.
        if let Err(e) = Calendar::new(&c.time_zone, &no_hours, &[]) {
            v.err(format!("{p}.time_zone"), e);
        }
        for (day, spec) in &c.hours {
            let one = BTreeMap::from([(day.clone(), spec.clone())]);
            if let Err(e) = Calendar::new("UTC", &one, &[]) {
                v.err(format!("{p}.hours.{day}"), e);
            }
        }
        for (j, h) in c.holidays.iter().enumerate() {
            if let Err(e) = Calendar::new("UTC", &no_hours, std::slice::from_ref(h)) {
                v.err(format!("{p}.holidays[{j}]"), e);
            }
        }
    }
    let calendar = |v: &mut Validator<'_>, path: String, id: &Option<String>| {
        if let Some(id) = id
            && !calendars.contains_key(id.as_str())
        {
            let known = v.list(ws.calendars.iter().map(|c| c.id.as_str()));
            v.err(path, format!("unknown calendar {id:?} (calendars: {known})"));
        }
    };
    let mut policies: HashMap<&str, usize> = HashMap::new();
    for (i, pol) in ws.sla_policies.iter().enumerate() {
        let p = format!("sla_policies[{i}]");
        if v.id(&format!("{p}.id"), "SLA policy", &pol.id)
            && let Some(j) = policies.insert(&pol.id, i)
        {
            v.err(format!("{p}.id"), format!("duplicate SLA policy {:?} (also sla_policies[{j}])", pol.id));
        }
        for (j, addr) in pol.inboxes.iter().enumerate() {
            v.inbox(&format!("{p}.inboxes[{j}]"), addr);
        }
        for (j, pr) in pol.priorities.iter().enumerate() {
            if !PRIORITIES.contains(&pr.as_str()) {
                v.err(
                    format!("{p}.priorities[{j}]"),
                    format!("unknown priority {pr:?} (use {})", PRIORITIES.join(", ")),
                );
            }
        }
        if pol.first_response.is_none() && pol.time_to_close.is_none() {
            v.err(p.clone(), "an SLA policy needs `first_response` or `time_to_close`");
        }
        for (key, d) in [("first_response", &pol.first_response), ("time_to_close", &pol.time_to_close)] {
            if let Some(d) = d
                && let Err(e) = parse_duration(d)
            {
                v.err(format!("{p}.{key}"), e);
            }
        }
        calendar(v, format!("{p}.calendar"), &pol.calendar);
        for (j, st) in pol.pause_stages.iter().enumerate() {
            let sp = format!("{p}.pause_stages[{j}]");
            let found: Vec<(&Pipeline, &Stage)> =
                ws.pipelines.iter().filter_map(|pl| pl.stage(st).map(|s| (pl, s))).collect();
            match found.iter().find(|(_, s)| s.closed) {
                _ if found.is_empty() => {
                    let mut known: Vec<&str> =
                        ws.pipelines.iter().flat_map(|pl| pl.stages.iter().map(|s| s.id.as_str())).collect();
                    known.sort_unstable();
                    known.dedup();
                    let known = v.list(known.into_iter());
                    v.err(sp, format!("stage {st:?} is not a stage of any pipeline (stages: {known})"));
                }
                Some((pl, _)) => v.err(
                    sp,
                    format!(
                        "stage {st:?} is closed in pipeline {:?}: only open stages can pause the clock",
                        pl.id
                    ),
                ),
                None => {}
            }
        }
    }
    calendar(v, "reports.calendar".into(), &ws.reports.calendar);
    if let Err(e) = parse_duration(&ws.reports.stale_after) {
        v.err("reports.stale_after", e);
    }
}

fn validate_inbox(v: &mut Validator<'_>, i: usize, inbox: &Inbox) {
    let p = format!("inboxes[{i}]");
    match (inbox.kind, &inbox.owner) {
        (InboxType::Individual, None) => v.err(p.clone(), "an individual inbox needs an `owner`"),
        (InboxType::Individual, Some(o)) => v.user(&format!("{p}.owner"), o),
        (InboxType::Shared, Some(_)) => {
            v.err(format!("{p}.owner"), "only an individual inbox has an owner (type = \"individual\")")
        }
        (InboxType::Shared, None) => {}
    }
    for (j, u) in inbox.members.users.iter().enumerate() {
        v.user(&format!("{p}.members.users[{j}]"), u);
    }
    for (j, t) in inbox.members.teams.iter().enumerate() {
        v.team(&format!("{p}.members.teams[{j}]"), t);
    }
    let t = &inbox.tickets;
    match &t.pipeline {
        Some(pid) => {
            if let Some(pl) = v.pipeline(&format!("{p}.tickets.pipeline"), pid)
                && let Some(s) = &t.stage
            {
                v.stage(&format!("{p}.tickets.stage"), pl, s);
                if pl.stage(s).is_some_and(|s| s.closed) {
                    v.err(
                        format!("{p}.tickets.stage"),
                        format!("stage {s:?} is closed: new tickets cannot start in it"),
                    );
                }
            }
        }
        None if t.enabled => v.err(format!("{p}.tickets"), "tickets.enabled needs a `pipeline`"),
        None if t.stage.is_some() => v.err(format!("{p}.tickets.stage"), "a stage needs a `pipeline`"),
        None => {}
    }
    if let Some(team) = &inbox.fallback_team {
        v.team(&format!("{p}.fallback_team"), team);
    }
}

fn validate_rule(v: &mut Validator<'_>, i: usize, r: &Rule) {
    let p = format!("rules[{i}]");
    for (j, addr) in r.inboxes.iter().enumerate() {
        v.inbox(&format!("{p}.inboxes[{j}]"), addr);
    }
    for (j, c) in r.conditions.iter().enumerate() {
        validate_condition(v, &format!("{p}.conditions[{j}]"), c);
    }
    let a = &r.actions;
    let ap = format!("{p}.actions");
    if let Some(t) = &a.team {
        v.team(&format!("{ap}.team"), t);
    }
    if let Some(u) = &a.user {
        v.user(&format!("{ap}.user"), u);
        if a.assign.is_some() {
            v.err(format!("{ap}.assign"), "give `user` or `assign`, not both");
        }
    }
    if let Some(how @ (Assign::RoundRobin | Assign::LeastLoaded)) = a.assign {
        let how = if how == Assign::RoundRobin { "round_robin" } else { "least_loaded" };
        match &a.team {
            None => v.err(format!("{ap}.assign"), format!("assign = \"{how}\" needs a `team`")),
            Some(t) => {
                if let Some(team) = v.teams.get(t.as_str()).and_then(|&k| v.ws.teams.get(k))
                    && team.members.is_empty()
                {
                    v.err(format!("{ap}.assign"), format!("team {t:?} has no members to assign"));
                }
            }
        }
    }
    if let Some(pr) = &a.priority
        && !PRIORITIES.contains(&pr.as_str())
    {
        v.err(format!("{ap}.priority"), format!("unknown priority {pr:?} (use {})", PRIORITIES.join(", ")));
    }
    if a.no_ticket && (a.pipeline.is_some() || a.stage.is_some()) {
        v.err(format!("{ap}.no_ticket"), "no_ticket contradicts `pipeline`/`stage`");
    }
    match (&a.pipeline, &a.stage) {
        (Some(pid), stage) => {
            if let Some(pl) = v.pipeline(&format!("{ap}.pipeline"), pid)
                && let Some(s) = stage
            {
                v.stage(&format!("{ap}.stage"), pl, s);
            }
        }
        (None, Some(s)) => {
            // The stage of the inbox's own pipeline: it must exist in every pipeline of the
            // inboxes this rule applies to.
            let ws = v.ws;
            let applies = |inbox: &&Inbox| {
                r.inboxes.is_empty() || r.inboxes.iter().any(|a| a.eq_ignore_ascii_case(&inbox.address))
            };
            let pipelines: Vec<&Pipeline> = ws
                .inboxes
                .iter()
                .filter(applies)
                .filter(|inbox| inbox.tickets.enabled)
                .filter_map(|inbox| ws.pipeline(inbox.tickets.pipeline.as_deref()?))
                .collect();
            if pipelines.is_empty() {
                v.err(
                    format!("{ap}.stage"),
                    "no inbox this rule applies to has ticket automation: name a `pipeline` with the stage",
                );
            }
            let mut seen = HashSet::new();
            for pl in pipelines {
                if seen.insert(pl.id.as_str()) {
                    v.stage(&format!("{ap}.stage"), pl, s);
                }
            }
        }
        (None, None) => {}
    }
    for (j, t) in a.tags.iter().enumerate() {
        if t.trim().is_empty() {
            v.err(format!("{ap}.tags[{j}]"), "empty tag");
        }
    }
}

fn validate_condition(v: &mut Validator<'_>, p: &str, c: &Condition) {
    let values: Vec<(String, &String)> = match (&c.value, c.values.is_empty()) {
        (None, true) => {
            v.err(p, "a condition needs `value` or `values`");
            return;
        }
        (Some(_), false) => {
            v.err(format!("{p}.values"), "give `value` or `values`, not both");
            return;
        }
        (Some(x), true) => vec![(format!("{p}.value"), x)],
        (None, false) => c.values.iter().enumerate().map(|(j, x)| (format!("{p}.values[{j}]"), x)).collect(),
    };
    for (vp, x) in &values {
        if x.trim().is_empty() {
            v.err(vp.clone(), "empty value");
        }
    }
    match &c.field {
        Field::Property(name) => {
            let ok = ["contact.", "company."]
                .iter()
                .any(|pre| name.strip_prefix(pre).is_some_and(|rest| !rest.trim().is_empty()));
            if !ok {
                v.err(
                    format!("{p}.field"),
                    format!(
                        "unknown field {name:?}: use inbox, subject, body, sender_email, sender_domain, kind, \
                         contact.<property> or company.<property>"
                    ),
                );
            }
        }
        Field::Kind => {
            if !matches!(c.op, Op::Equals | Op::InList | Op::NotEquals) {
                v.err(format!("{p}.op"), "field \"kind\" takes op equals, in_list or not_equals");
            }
            for (vp, x) in &values {
                if !KINDS.contains(&x.as_str()) {
                    v.err(vp.clone(), format!("unknown kind {x:?} (use {})", KINDS.join(", ")));
                }
            }
        }
        Field::Inbox if matches!(c.op, Op::Equals | Op::InList | Op::NotEquals) => {
            for (vp, x) in &values {
                v.inbox(vp, x);
            }
        }
        _ => {}
    }
    if c.op == Op::Regex {
        match &c.value {
            // Compiled the way the router compiles it: case-insensitive.
            Some(x) => {
                if let Err(e) = regex::Regex::new(&format!("(?i){x}")) {
                    v.err(format!("{p}.value"), format!("invalid regex {x:?}: {}", regex_message(&e)));
                }
            }
            None => v.err(format!("{p}.values"), "op \"regex\" takes one `value` (a regular expression)"),
        }
    }
}

/// The one-line reason of a regex error (its Display spans several lines).
fn regex_message(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACME: &str = include_str!("../../../examples/acme-corp.toml");

    fn errors(text: &str) -> Vec<ConfigError> {
        match parse_toml(text) {
            Ok(ws) => panic!("expected errors, got {ws:?}"),
            Err(e) => e,
        }
    }

    /// The one error of a document, checked by line and path.
    fn one_error(text: &str, line: usize, path: &str, says: &str) {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let e = &errs[0];
        assert_eq!((e.line, e.path.as_str()), (Some(line), path), "{e}");
        assert!(e.message.contains(says), "{e}");
    }

    #[test]
    fn the_example_validates() {
        let ws = parse_toml(ACME).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(validate(&ws), vec![]);
        assert_eq!((ws.inboxes.len(), ws.users.len(), ws.teams.len()), (12, 8, 4));
        assert_eq!((ws.pipelines.len(), ws.rules.len(), ws.contacts.len(), ws.deals.len()), (2, 7, 1, 2));
        // gen_corpus.py's INBOX_TEAM, as fallbacks.
        let fallback = |a: &str| {
            ws.inboxes.iter().find(|i| i.address == a).and_then(|i| i.fallback_team.clone()).unwrap()
        };
        for (addr, team) in [
            ("support@acme-corp.example", "support"),
            ("billing@acme-corp.example", "billing"),
            ("onboarding@acme-corp.example", "onboarding"),
            ("sales@acme-corp.example", "sales"),
            ("maria.keller@acme-corp.example", "support"),
            ("tom.becker@acme-corp.example", "support"),
            ("priya.raman@acme-corp.example", "support"),
            ("lukas.schmidt@acme-corp.example", "billing"),
            ("aiko.tanaka@acme-corp.example", "billing"),
            ("sofia.rossi@acme-corp.example", "onboarding"),
            ("james.oconnor@acme-corp.example", "sales"),
            ("elena.petrova@acme-corp.example", "sales"),
        ] {
            assert_eq!(fallback(addr), team, "{addr}");
        }
        // Subject rules before body rules, each in the order billing, onboarding, sales.
        let order: Vec<(Field, Option<String>)> =
            ws.rules[..6].iter().map(|r| (r.conditions[0].field.clone(), r.actions.team.clone())).collect();
        let t = |s: &str| Some(s.to_string());
        assert_eq!(
            order,
            vec![
                (Field::Subject, t("billing")),
                (Field::Subject, t("onboarding")),
                (Field::Subject, t("sales")),
                (Field::Body, t("billing")),
                (Field::Body, t("onboarding")),
                (Field::Body, t("sales")),
            ]
        );
        assert!(ws.rules[1].conditions[0].values.contains(&"getting started".to_string()));
        assert!(ws.rules.iter().all(|r| r.actions.assign == Some(Assign::RoundRobin) && !r.r#continue));
        assert_eq!(ws.teams_of("Sofia.Rossi@acme-corp.example"), vec!["onboarding".to_string()]);
        let support = &ws.inboxes[0];
        assert_eq!(support.initial_stage(&ws).map(|s| s.id.as_str()), Some("new"));
        assert_eq!(ws.rules[6].conditions[0].field, Field::Inbox);
        assert_eq!(ws.contacts[0].properties.get("tier").map(String::as_str), Some("enterprise"));
        // Calendars, SLA policies, reports.
        assert_eq!(ws.calendars.len(), 1);
        assert_eq!(
            (ws.calendars[0].id.as_str(), ws.calendars[0].time_zone.as_str()),
            ("berlin", "Europe/Berlin")
        );
        assert_eq!(ws.calendars[0].holidays, vec!["2024-03-29", "2024-04-01"]);
        assert_eq!(ws.reports, ReportSettings { calendar: Some("berlin".into()), stale_after: "24h".into() });
        assert_eq!(ws.stale_after_secs(), 86_400);
        let ids: Vec<&str> = ws.sla_policies.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, vec!["urgent", "standard"]);
        let policy = |inbox: &str, pr: Option<&str>| ws.sla_policy(inbox, pr).map(|p| p.id.as_str());
        assert_eq!(policy("support@acme-corp.example", Some("high")), Some("urgent"));
        assert_eq!(policy("Billing@ACME-corp.example", Some("HIGH")), Some("urgent"));
        assert_eq!(policy("support@acme-corp.example", Some("normal")), Some("standard"));
        assert_eq!(policy("sales@acme-corp.example", None), Some("standard"));
        let urgent = &ws.sla_policies[0];
        assert_eq!((urgent.first_response_secs(), urgent.time_to_close_secs()), (Some(3600), Some(86_400)));
        assert_eq!(ws.sla_policies[1].pause_stages, vec!["waiting_on_contact"]);
        // Easter 2024 in Berlin: Thursday 28 March 18:00 CET (closing time) + 1 business
        // hour is Tuesday 2 April 09:00 CEST (07:00 UTC).
        let berlin = ws.calendar(ws.reports.calendar.as_deref());
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc);
        assert_eq!(
            berlin.add_business_seconds(at("2024-03-28T17:00:00Z"), 3600),
            Some(at("2024-04-02T07:00:00Z"))
        );
        assert_eq!(
            berlin.business_seconds(at("2024-03-25T00:00:00Z"), at("2024-04-08T00:00:00Z")),
            8 * 10 * 3600
        );
    }

    #[test]
    fn the_demo_validates() {
        let ws = parse_toml(include_str!("../../../examples/demo/workspace.toml"))
            .unwrap_or_else(|e| panic!("{e:#?}"));
        assert!(ws.calendars.is_empty() && ws.sla_policies.is_empty());
        assert_eq!(ws.reports, ReportSettings::default());
    }

    #[test]
    fn durations() {
        for (text, secs) in [
            ("45s", 45),
            ("30m", 1800),
            ("4h", 14_400),
            ("2d", 172_800),
            ("1h30m", 5400),
            ("1d12h", 129_600),
            ("1d2h3m4s", 93_784),
            (" 90m ", 5400),
            ("0h5m", 300),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
        for bad in [
            "", " ", "4", "h", "-4h", "+4h", "4 h", "4H", "4hours", "1.5h", "4h4h", "30m1h", "0s", "0d0h",
            "1w",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.starts_with(&format!("invalid duration {bad:?}")), "{bad}: {e}");
        }
        assert!(parse_duration("99999999999999999999d").is_err());
        assert!(parse_duration("9223372036854775807d").is_err());
    }

    #[test]
    fn sla_defaults_and_json_round_trip() {
        let ws = parse_toml("name = \"x\"\n").unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(ws.reports.stale_after, "24h");
        assert_eq!(ws.stale_after_secs(), 86_400);
        assert_eq!(ws.calendar(None), Calendar::always());
        assert_eq!(ws.calendar(Some("nope")), Calendar::always());
        assert_eq!(ws.sla_policy("a@b.example", None), None);
        // `[reports]` with only a calendar keeps the default stale_after.
        let text = "[[calendars]]\nid = \"c\"\ntime_zone = \"UTC\"\n[reports]\ncalendar = \"c\"\n";
        let ws = parse_toml(text).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(ws.reports.stale_after, "24h");
        // The model is stored as JSON (workspace::apply / load): the new sections
        // come back as they were, and a model stored before they existed still loads.
        let ws = parse_toml(ACME).unwrap_or_else(|e| panic!("{e:#?}"));
        let json = serde_json::to_value(&ws).unwrap();
        let back: Workspace = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, ws);
        assert_eq!(json["sla_policies"][1]["pause_stages"][0], "waiting_on_contact");
        let mut old = json;
        for k in ["calendars", "sla_policies", "reports"] {
            old.as_object_mut().unwrap().remove(k);
        }
        let back: Workspace = serde_json::from_value(old).unwrap();
        assert_eq!((back.calendars.len(), back.sla_policies.len()), (0, 0));
        assert_eq!(back.reports, ReportSettings::default());
    }

    #[test]
    fn sla_policy_matching() {
        let text = r#"
[[inboxes]]
address = "support@acme.example"
[[inboxes]]
address = "vip@acme.example"

[[sla_policies]]
id = "vip"
inboxes = ["VIP@acme.example"]
first_response = "15m"

[[sla_policies]]
id = "urgent"
priorities = ["urgent", "high"]
first_response = "1h"

[[sla_policies]]
id = "low"
inboxes = ["support@acme.example"]
priorities = ["low"]
time_to_close = "10d"
"#;
        let ws = parse_toml(text).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(ws.sla_policies[0].inboxes, vec!["vip@acme.example"]);
        let policy = |inbox: &str, pr: Option<&str>| ws.sla_policy(inbox, pr).map(|p| p.id.as_str());
        assert_eq!(policy("vip@acme.example", Some("low")), Some("vip"));
        assert_eq!(policy("Vip@Acme.Example", None), Some("vip"));
        assert_eq!(policy("support@acme.example", Some("High")), Some("urgent"));
        assert_eq!(policy("other@acme.example", Some("urgent")), Some("urgent"));
        assert_eq!(policy("support@acme.example", Some("low")), Some("low"));
        assert_eq!(policy("other@acme.example", Some("low")), None);
        // Without a priority only a policy without `priorities` matches.
        assert_eq!(policy("support@acme.example", None), None);
        assert_eq!(ws.sla_policies[2].first_response_secs(), None);
        assert_eq!(ws.sla_policies[2].time_to_close_secs(), Some(864_000));
    }

    #[test]
    fn sla_errors_point_at_their_line() {
        let text = r#"
[[pipelines]]
id = "support"
stages = [{ id = "new" }, { id = "waiting" }, { id = "done", closed = true }]

[[inboxes]]
address = "support@acme.example"

[[calendars]]
id = "berlin"
time_zone = "Europe/Berln"
hours = { mon = "08:00-18:00", tue = "18:00-08:00" }
holidays = ["2024-03-29", "2024-13-01"]

[[calendars]]
id = "berlin"
time_zone = "UTC"
[calendars.hours]
wed = "08:00-12:00,11:00-18:00"
monday = "08:00-18:00"

[[sla_policies]]
id = "standard"
inboxes = ["help@acme.example"]
priorities = ["normal", "critical"]
first_response = "4 hours"
time_to_close = "3d"
calendar = "paris"
pause_stages = ["waiting", "waitng", "done"]

[[sla_policies]]
id = "standard"

[reports]
calendar = "london"
stale_after = "-1h"
"#;
        let errs = errors(text);
        let got: Vec<(Option<usize>, &str)> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Some(11), "calendars[0].time_zone"),
                (Some(12), "calendars[0].hours.tue"),
                (Some(13), "calendars[0].holidays[1]"),
                (Some(16), "calendars[1].id"),
                (Some(19), "calendars[1].hours.wed"),
                (Some(20), "calendars[1].hours.monday"),
                (Some(24), "sla_policies[0].inboxes[0]"),
                (Some(25), "sla_policies[0].priorities[1]"),
                (Some(26), "sla_policies[0].first_response"),
                (Some(28), "sla_policies[0].calendar"),
                (Some(29), "sla_policies[0].pause_stages[1]"),
                (Some(29), "sla_policies[0].pause_stages[2]"),
                (Some(31), "sla_policies[1]"),
                (Some(32), "sla_policies[1].id"),
                (Some(35), "reports.calendar"),
                (Some(36), "reports.stale_after"),
            ]
        );
        let by_path = |p: &str| errs.iter().find(|e| e.path == p).map(|e| e.message.clone()).unwrap();
        assert!(by_path("calendars[0].time_zone").starts_with("unknown time zone \"Europe/Berln\""));
        assert_eq!(
            by_path("calendars[0].hours.tue"),
            "tue = \"18:00-08:00\": interval \"18:00-08:00\" ends before it starts"
        );
        assert!(by_path("calendars[0].holidays[1]").starts_with("invalid holiday \"2024-13-01\""));
        assert_eq!(by_path("calendars[1].id"), "duplicate calendar \"berlin\" (also calendars[0])");
        assert!(by_path("calendars[1].hours.wed").contains("overlaps"));
        assert!(by_path("calendars[1].hours.monday").starts_with("unknown day \"monday\""));
        assert_eq!(
            by_path("sla_policies[0].inboxes[0]"),
            "unknown inbox help@acme.example: not in [[inboxes]]"
        );
        assert!(by_path("sla_policies[0].priorities[1]").starts_with("unknown priority \"critical\""));
        assert!(by_path("sla_policies[0].first_response").starts_with("invalid duration \"4 hours\""));
        assert_eq!(
            by_path("sla_policies[0].calendar"),
            "unknown calendar \"paris\" (calendars: berlin, berlin)"
        );
        assert_eq!(
            by_path("sla_policies[0].pause_stages[1]"),
            "stage \"waitng\" is not a stage of any pipeline (stages: done, new, waiting)"
        );
        assert_eq!(
            by_path("sla_policies[0].pause_stages[2]"),
            "stage \"done\" is closed in pipeline \"support\": only open stages can pause the clock"
        );
        assert_eq!(by_path("sla_policies[1]"), "an SLA policy needs `first_response` or `time_to_close`");
        assert_eq!(by_path("sla_policies[1].id"), "duplicate SLA policy \"standard\" (also sla_policies[0])");
        assert_eq!(by_path("reports.calendar"), "unknown calendar \"london\" (calendars: berlin, berlin)");
        assert!(by_path("reports.stale_after").starts_with("invalid duration \"-1h\""));
    }

    #[test]
    fn unknown_keys_in_the_sla_sections() {
        one_error("[reports]\nstale = \"1h\"\n", 2, "reports.stale", "unknown field `stale`");
        one_error(
            "[[sla_policies]]\nid = \"p\"\nfirst_response = \"1h\"\npause = []\n",
            4,
            "sla_policies[0].pause",
            "unknown field `pause`",
        );
        one_error("[[calendars]]\nid = \"c\"\n", 1, "calendars[0]", "missing field `time_zone`");
    }

    #[test]
    fn unknown_team_in_a_rule_action() {
        let text = "[[teams]]\nid = \"support\"\n\n[[rules]]\nname = \"a\"\nactions = { team = \"support\" }\n\n\
                    [[rules]]\nname = \"b\"\n[rules.actions]\nteam = \"suport\"\n";
        one_error(text, 11, "rules[1].actions.team", "unknown team \"suport\" (teams: support)");
    }

    #[test]
    fn duplicate_inbox_in_any_case() {
        let text = "[[inboxes]]\naddress = \"support@acme.example\"\n\n[[inboxes]]\n# the same\n\
                    address = \"Support@ACME.example\"\n";
        one_error(text, 6, "inboxes[1].address", "duplicate inbox support@acme.example (also inboxes[0])");
    }

    #[test]
    fn bad_regex() {
        let text = "[[rules]]\nname = \"r\"\n\n[[rules.conditions]]\nfield = \"subject\"\nop = \"regex\"\n\
                    value = \"(unclosed\"\n";
        one_error(text, 7, "rules[0].conditions[0].value", "invalid regex \"(unclosed\": unclosed group");
    }

    #[test]
    fn toml_syntax_error() {
        let text = "name = \"Acme\"\n\n[[users]]\nemail = \"a@b.example\nname = \"A\"\n";
        let errs = errors(text);
        assert_eq!(errs[0].line, Some(4), "{errs:#?}");
        assert_eq!(errs[0].path, SYNTAX_PATH);
        assert!(errs[0].to_string().starts_with("line 4: (syntax): "), "{}", errs[0]);
    }

    #[test]
    fn unknown_key() {
        let text = "[[inboxes]]\naddress = \"a@b.example\"\nfallback = \"support\"\n";
        one_error(text, 3, "inboxes[0].fallback", "unknown field `fallback`");
        let text = "[[rules]]\nname = \"r\"\nactions = { tem = \"support\" }\n";
        one_error(text, 3, "rules[0].actions.tem", "unknown field `tem`");
    }

    #[test]
    fn type_errors_and_missing_keys() {
        one_error("[[users]]\nemail = \"a@b.example\"\nname = 7\n", 3, "users[0].name", "invalid type");
        one_error("\n[[users]]\nemail = \"a@b.example\"\n", 2, "users[0]", "missing field `name`");
        one_error(
            "[[rules]]\nname = \"r\"\nconditions = [{ field = \"subject\", op = \"has\", value = \"x\" }]\n",
            3,
            "rules[0].conditions[0].op",
            "unknown variant `has`",
        );
    }

    #[test]
    fn semantic_errors_point_at_their_line() {
        let text = r#"
[[users]]
email = "ann@acme.example"
name = "Ann"

[[users]]
email = "not an address"
name = "Bob"

[[teams]]
id = "support"
members = ["ann@acme.example", "carl@acme.example"]

[[pipelines]]
id = "support"
stages = [{ id = "new" }, { id = "done", closed = true }]

[[inboxes]]
address = "ann@acme.example"
type = "individual"

[[inboxes]]
address = "support@acme.example"
tickets = { enabled = true }

[[inboxes]]
address = "help@acme.example"
tickets = { enabled = true, pipeline = "support", stage = "waiting" }

[[rules]]
name = "no value"
conditions = [
    { field = "subject", op = "contains" },
    { field = "subjet", op = "contains", value = "x" },
]
actions = { team = "support", user = "ann@acme.example", assign = "round_robin" }

[[deals]]
id = "d1"
name = "Nothing"
"#;
        let errs = errors(text);
        let got: Vec<(Option<usize>, &str)> = errs.iter().map(|e| (e.line, e.path.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Some(7), "users[1].email"),
                (Some(12), "teams[0].members[1]"),
                (Some(18), "inboxes[0]"),
                (Some(24), "inboxes[1].tickets"),
                (Some(28), "inboxes[2].tickets.stage"),
                (Some(33), "rules[0].conditions[0]"),
                (Some(34), "rules[0].conditions[1].field"),
                (Some(36), "rules[0].actions.assign"),
                (Some(38), "deals[0]"),
            ]
        );
        let by_path = |p: &str| errs.iter().find(|e| e.path == p).map(|e| e.message.clone()).unwrap();
        assert_eq!(by_path("users[1].email"), "not a valid email address: \"not an address\"");
        assert_eq!(by_path("teams[0].members[1]"), "unknown user carl@acme.example: not in [[users]]");
        assert_eq!(by_path("inboxes[0]"), "an individual inbox needs an `owner`");
        assert_eq!(by_path("inboxes[1].tickets"), "tickets.enabled needs a `pipeline`");
        assert!(
            by_path("inboxes[2].tickets.stage").contains("stage \"waiting\" is not in pipeline \"support\"")
        );
        assert_eq!(by_path("rules[0].conditions[0]"), "a condition needs `value` or `values`");
        assert!(by_path("rules[0].conditions[1].field").starts_with("unknown field \"subjet\""));
        assert_eq!(by_path("rules[0].actions.assign"), "give `user` or `assign`, not both");
        assert_eq!(by_path("deals[0]"), "a deal must reference at least one contact or company");
    }

    #[test]
    fn addresses_are_lower_cased() {
        let text = r#"
[[users]]
email = "Ann.Lee@ACME.example"
name = "Ann"
[[teams]]
id = "t"
members = ["ANN.LEE@acme.example"]
[[inboxes]]
address = "Ann.Lee@Acme.Example"
type = "individual"
owner = "ann.lee@ACME.EXAMPLE"
[[contacts]]
email = "Jo@Example.ORG"
owner = "Ann.Lee@acme.example"
[[deals]]
id = "d"
name = "D"
contacts = ["JO@example.org"]
companies = ["Example.ORG"]
"#;
        let ws = parse_toml(text).unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(ws.users[0].email, "ann.lee@acme.example");
        assert_eq!(ws.teams[0].members, vec!["ann.lee@acme.example"]);
        assert_eq!(ws.inboxes[0].address, "ann.lee@acme.example");
        assert_eq!(ws.inboxes[0].owner.as_deref(), Some("ann.lee@acme.example"));
        assert_eq!(ws.contacts[0].email, "jo@example.org");
        assert_eq!(ws.contacts[0].owner.as_deref(), Some("ann.lee@acme.example"));
        assert_eq!(ws.deals[0].contacts, vec!["jo@example.org"]);
        assert_eq!(ws.deals[0].companies, vec!["example.org"]);
    }

    #[test]
    fn display_and_paths() {
        let e = ConfigError { line: Some(3), path: "rules[2].actions.team".into(), message: "boom".into() };
        assert_eq!(e.to_string(), "line 3: rules[2].actions.team: boom");
        let e = ConfigError { line: None, path: "users[0]".into(), message: "boom".into() };
        assert_eq!(e.to_string(), "users[0]: boom");
        let text = "a = 1\n[[rules]]\nx = 1\n[[rules]]\nx = { y = [1, 2] }\n";
        let (doc, errs) = DeTable::parse_recoverable(text);
        assert!(errs.is_empty());
        let root = DeValue::Table(doc.into_inner());
        assert_eq!(locate(&root, "rules[1].x.y[1]").map(|o| line_at(text, o)), Some(5));
        assert_eq!(locate(&root, "rules[1].missing").map(|o| line_at(text, o)), Some(4));
        assert_eq!(locate(&root, "nothing"), None);
        let at = text.find("2]").unwrap();
        assert_eq!(path_at(&root, at), "rules[1].x.y[1]");
    }

    #[test]
    fn a_programmatic_model_validates_without_lines() {
        let mut ws = parse_toml(ACME).unwrap_or_else(|e| panic!("{e:#?}"));
        ws.rules[0].actions.team = Some("nobody".into());
        ws.inboxes.push(ws.inboxes[0].clone());
        let errs = validate(&ws);
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["inboxes[12].address", "rules[0].actions.team"]);
        assert!(errs.iter().all(|e| e.line.is_none()));
    }
}
