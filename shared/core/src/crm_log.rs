//! Which messages are logged on the CRM, and why one is not: the workspace's `[logging]`
//! settings with per-inbox overrides, the never-log list, internal mail and noise
//! (docs/crm-and-routing.md, "What is logged"). Pure: the route stage gives the facts
//! (participants, kind, whether the message is tracked) and applies the answer.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What an inbox logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LogMode {
    /// Every customer message, creating the contacts that are missing.
    #[default]
    CreateContacts,
    /// Messages with people who are contacts already; none is created.
    KnownContacts,
    /// Only what the rep marks as tracked (sent through Mailroom, or copied to the
    /// workspace's logging address); contacts are created for it.
    TrackedOnly,
}

impl LogMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LogMode::CreateContacts => "create_contacts",
            LogMode::KnownContacts => "known_contacts",
            LogMode::TrackedOnly => "tracked_only",
        }
    }
}

/// `[logging]` in the workspace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoggingSettings {
    /// For every inbox without its own `logging`.
    #[serde(default)]
    pub mode: LogMode,
    /// Addresses (`a@b.example`) and domains (`b.example`, which also covers its
    /// subdomains) whose mail is never logged, whether they wrote it or received it.
    #[serde(default)]
    pub never_log: Vec<String>,
    /// The company's own domains beyond those of its inboxes: mail among them only is
    /// internal and never logged, and no contact is made for them.
    #[serde(default)]
    pub internal_domains: Vec<String>,
    /// An address a rep puts in Bcc (or Cc, or To) to have a message logged in a
    /// `tracked_only` inbox.
    #[serde(default)]
    pub logging_address: Option<String>,
}

/// Why a message was not logged. Every message that is not logged records one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotLogged {
    /// A participant is on the never-log list.
    NeverLog,
    /// Every participant is the company's own.
    Internal,
    /// A `tracked_only` inbox and the message was not marked as tracked.
    NotTracked,
    Bounce,
    AutoReply,
    /// List or bulk mail (newsletters).
    List,
    /// No participant is a contact, and the inbox creates none.
    NoContact,
}

impl NotLogged {
    pub const ALL: [NotLogged; 7] = [
        NotLogged::NeverLog,
        NotLogged::Internal,
        NotLogged::NotTracked,
        NotLogged::Bounce,
        NotLogged::AutoReply,
        NotLogged::List,
        NotLogged::NoContact,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotLogged::NeverLog => "never_log",
            NotLogged::Internal => "internal",
            NotLogged::NotTracked => "not_tracked",
            NotLogged::Bounce => "bounce",
            NotLogged::AutoReply => "auto_reply",
            NotLogged::List => "list",
            NotLogged::NoContact => "no_contact",
        }
    }

    pub fn parse(s: &str) -> Option<NotLogged> {
        NotLogged::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// In words, for the conversation view.
    pub fn describe(self) -> &'static str {
        match self {
            NotLogged::NeverLog => "someone on it is on the never-log list",
            NotLogged::Internal => "internal mail (only the company's own addresses)",
            NotLogged::NotTracked => "this inbox logs tracked mail only, and it was not tracked",
            NotLogged::Bounce => "a bounce",
            NotLogged::AutoReply => "an auto-reply",
            NotLogged::List => "list or bulk mail",
            NotLogged::NoContact => "no one on it is a contact, and this inbox creates none",
        }
    }
}

impl fmt::Display for NotLogged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the route stage knows of a message when it decides.
#[derive(Debug, Clone)]
pub struct LogFacts<'a> {
    /// `normal`, `auto_reply`, `bounce`, `list`.
    pub kind: &'a str,
    /// Every address on the message (From, To, Cc, Bcc), lower-case.
    pub participants: &'a [String],
    /// Those of them that are not the company's own.
    pub external: &'a [String],
    /// Sent through Mailroom, or addressed to the logging address.
    pub tracked: bool,
}

/// The decision before contacts are looked up: log (creating missing contacts or not),
/// or the reason not to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogPolicy {
    Log { create: bool },
    Skip(NotLogged),
}

/// Decides for one message in an inbox logging by `mode`. In this order: noise, the
/// never-log list (any participant, either direction), internal mail, tracking.
pub fn policy(settings: &LoggingSettings, mode: LogMode, facts: &LogFacts<'_>) -> LogPolicy {
    match facts.kind {
        "bounce" => return LogPolicy::Skip(NotLogged::Bounce),
        "auto_reply" => return LogPolicy::Skip(NotLogged::AutoReply),
        "list" => return LogPolicy::Skip(NotLogged::List),
        _ => {}
    }
    if facts.participants.iter().any(|a| never_log(&settings.never_log, a)) {
        return LogPolicy::Skip(NotLogged::NeverLog);
    }
    if facts.external.is_empty() {
        return LogPolicy::Skip(NotLogged::Internal);
    }
    match mode {
        LogMode::CreateContacts => LogPolicy::Log { create: true },
        LogMode::KnownContacts => LogPolicy::Log { create: false },
        LogMode::TrackedOnly if facts.tracked => LogPolicy::Log { create: true },
        LogMode::TrackedOnly => LogPolicy::Skip(NotLogged::NotTracked),
    }
}

/// Whether `email` is on the never-log list: the address itself, or its domain or a
/// parent domain of it (`example.com` covers `mail.example.com`).
pub fn never_log(list: &[String], email: &str) -> bool {
    let email = email.trim().to_lowercase();
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    list.iter()
        .map(|e| e.trim().trim_start_matches('@').to_lowercase())
        .any(|e| if e.contains('@') { e == email } else { in_domain(domain, &e) })
}

/// Whether `domain` is `parent` or one of its subdomains.
pub fn in_domain(domain: &str, parent: &str) -> bool {
    !parent.is_empty()
        && (domain.eq_ignore_ascii_case(parent)
            || domain.len() > parent.len()
                && domain[domain.len() - parent.len()..].eq_ignore_ascii_case(parent)
                && domain.as_bytes()[domain.len() - parent.len() - 1] == b'.')
}

/// The problems of a `[logging]` table, as (field, message).
pub fn check(settings: &LoggingSettings) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, e) in settings.never_log.iter().enumerate() {
        if !plausible(e.trim().trim_start_matches('@')) {
            out.push((
                format!("logging.never_log[{i}]"),
                format!("{e:?} is neither an address nor a domain"),
            ));
        }
    }
    for (i, d) in settings.internal_domains.iter().enumerate() {
        if d.contains('@') || !plausible(d.trim()) {
            out.push((format!("logging.internal_domains[{i}]"), format!("{d:?} is not a domain")));
        }
    }
    if let Some(a) = &settings.logging_address
        && crate::EmailAddress::parse(a).is_err()
    {
        out.push(("logging.logging_address".into(), format!("{a:?} is not an email address")));
    }
    out
}

fn plausible(entry: &str) -> bool {
    let domain = match entry.split_once('@') {
        Some((local, d)) if !local.is_empty() => d,
        Some(_) => return false,
        None => entry,
    };
    domain.contains('.')
        && domain.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_alphanumeric() || c == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LoggingSettings {
        LoggingSettings {
            never_log: vec!["family.example".into(), "boss@partner.example".into()],
            ..Default::default()
        }
    }

    fn decide(mode: LogMode, kind: &str, all: &[&str], external: &[&str], tracked: bool) -> LogPolicy {
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        let external: Vec<String> = external.iter().map(|s| s.to_string()).collect();
        policy(&settings(), mode, &LogFacts { kind, participants: &all, external: &external, tracked })
    }

    #[test]
    fn each_mode() {
        let (all, ext) = (["rep@acme.example", "jo@cust.example"], ["jo@cust.example"]);
        assert_eq!(
            decide(LogMode::CreateContacts, "normal", &all, &ext, false),
            LogPolicy::Log { create: true }
        );
        assert_eq!(
            decide(LogMode::KnownContacts, "normal", &all, &ext, false),
            LogPolicy::Log { create: false }
        );
        assert_eq!(
            decide(LogMode::TrackedOnly, "normal", &all, &ext, false),
            LogPolicy::Skip(NotLogged::NotTracked)
        );
        assert_eq!(decide(LogMode::TrackedOnly, "normal", &all, &ext, true), LogPolicy::Log { create: true });
    }

    #[test]
    fn never_log_either_direction_and_before_tracking() {
        // From a never-log domain (a subdomain of it), and to a never-log address.
        let from = ["mum@home.family.example", "rep@acme.example"];
        assert_eq!(
            decide(LogMode::CreateContacts, "normal", &from, &from[..1], true),
            LogPolicy::Skip(NotLogged::NeverLog)
        );
        let to = ["rep@acme.example", "Boss@Partner.example", "jo@cust.example"];
        assert_eq!(
            decide(LogMode::TrackedOnly, "normal", &to, &to[1..], true),
            LogPolicy::Skip(NotLogged::NeverLog)
        );
        // Not a suffix match on a label: notfamily.example is someone else.
        let other = ["x@notfamily.example"];
        assert_eq!(
            decide(LogMode::CreateContacts, "normal", &other, &other, false),
            LogPolicy::Log { create: true }
        );
    }

    #[test]
    fn noise_and_internal() {
        let all = ["a@acme.example", "b@acme.example"];
        assert_eq!(
            decide(LogMode::CreateContacts, "normal", &all, &[], true),
            LogPolicy::Skip(NotLogged::Internal)
        );
        for (kind, r) in
            [("bounce", NotLogged::Bounce), ("auto_reply", NotLogged::AutoReply), ("list", NotLogged::List)]
        {
            assert_eq!(
                decide(LogMode::CreateContacts, kind, &["x@c.example"], &["x@c.example"], true),
                LogPolicy::Skip(r)
            );
        }
    }

    #[test]
    fn reasons_round_trip_and_settings_are_checked() {
        for r in NotLogged::ALL {
            assert_eq!(NotLogged::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_value(r).ok(), Some(serde_json::json!(r.as_str())));
        }
        let bad = LoggingSettings {
            never_log: vec!["ok.example".into(), "@ok.example".into(), "nodot".into(), "@".into()],
            internal_domains: vec!["a@b.example".into()],
            logging_address: Some("not an address".into()),
            ..Default::default()
        };
        let fields: Vec<String> = check(&bad).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "logging.never_log[2]",
                "logging.never_log[3]",
                "logging.internal_domains[0]",
                "logging.logging_address"
            ]
        );
        assert!(check(&settings()).is_empty());
    }
}
