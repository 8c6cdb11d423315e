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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Live-chat widgets that open conversations in an inbox (docs/chat.md).
    #[serde(default)]
    pub chat_widgets: Vec<ChatWidget>,
    #[serde(default)]
    pub security: SecuritySettings,
    /// `[logging]`: what is logged on the CRM (docs/crm-and-routing.md).
    #[serde(default)]
    pub logging: crate::crm_log::LoggingSettings,
}

/// `[security]`: what the workspace trusts (docs/security.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    #[default]
    Agent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum NotifyBy {
    #[default]
    Email,
    None,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// An inbox must be connected again: its owner for an individual inbox, the admins
    /// for a shared one.
    #[serde(default)]
    pub reconnect_required: NotifyBy,
    /// One email a day with where the user's day starts (off unless asked for).
    #[serde(default)]
    pub digest: bool,
}

/// A web form feeding an inbox (`POST /forms/{id}/submissions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Form {
    pub id: String,
    /// The inbox its submissions arrive in, like an email to that address.
    pub inbox: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// A live-chat widget feeding an inbox (`[[chat_widgets]]`, docs/chat.md).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ChatWidget {
    pub id: String,
    /// The inbox its chats arrive in, like an email to that address.
    pub inbox: String,
    /// The first line the visitor reads.
    #[serde(default)]
    pub greeting: Option<String>,
    /// What the visitor reads when no agent is online (the chat goes on by email).
    #[serde(default)]
    pub away_message: Option<String>,
    /// A calendar's id (`[[calendars]]`): outside its hours the widget says the team is
    /// away, whoever is online. None: always open.
    #[serde(default)]
    pub business_hours: Option<String>,
    /// The widget's colour, `#rrggbb`.
    #[serde(default)]
    pub colour: Option<String>,
    /// The site origins (`https://www.example.com`) allowed to open a chat; none allows
    /// none.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Ordered stages; the first is the default initial stage.
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InboxType {
    #[default]
    Shared,
    Individual,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    #[default]
    None,
    Imap,
    Gmail,
    Microsoft,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// What this inbox logs on the CRM, instead of `[logging] mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<crate::crm_log::LogMode>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Members {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub teams: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    #[default]
    All,
    Any,
}

/// What a condition looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// The deal the conversation's messages are logged on, when it is one of the open
    /// deals of its customer or their company (otherwise the most recently active one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deal: Option<String>,
}

/// A contact configured up front (e.g. with an owner for `assign = "contact_owner"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DealStatus {
    #[default]
    Open,
    Won,
    Lost,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    /// The calendar of the business-hours metrics (absent: calendar time, 24x7).
    #[serde(default)]
    pub calendar: Option<String>,
    /// How long an open conversation waits for the team before it counts as stale.
    #[serde(default = "default_stale_after")]
    pub stale_after: String,
    /// Partitions per inbox and day the report buckets are spread over (1 to 16; absent:
    /// 1). More spread a busy inbox's writes (DynamoDB takes 1,000 write units a second per
    /// partition; docs/scale.md) and make every report read that many more partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shards: Option<u8>,
}

impl ReportSettings {
    /// The report buckets' partitions per inbox and day (`shards`, 1 when absent).
    pub fn shards(&self) -> u8 {
        self.shards.unwrap_or(1).clamp(1, 16)
    }
}

fn default_stale_after() -> String {
    "24h".into()
}

impl Default for ReportSettings {
    fn default() -> ReportSettings {
        ReportSettings { calendar: None, stale_after: default_stale_after(), shards: None }
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

mod lookup;
mod parse;
mod validate;
pub use parse::*;
pub use validate::*;

#[cfg(test)]
mod tests;
