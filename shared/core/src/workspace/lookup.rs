//! Lookups on a loaded workspace: calendars, SLA policies, pipelines, inboxes.

use super::*;

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

    pub fn chat_widget(&self, id: &str) -> Option<&ChatWidget> {
        self.chat_widgets.iter().find(|w| w.id == id)
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
    /// A new inbox with nothing configured beyond its kind, provider and owner (no
    /// members, tickets, signature, fallback team or tracking; logging by `[logging]`).
    pub fn new(address: &str, kind: InboxType, provider: Provider, owner: Option<String>) -> Inbox {
        Inbox {
            address: address.to_string(),
            kind,
            provider,
            owner,
            members: Members::default(),
            tickets: Default::default(),
            signature: None,
            fallback_team: None,
            create_cc_contacts: false,
            tracking: false,
            logging: None,
        }
    }

    /// What the inbox logs: its own `logging`, else the workspace's `[logging] mode`.
    pub fn log_mode(&self, ws: &Workspace) -> crate::crm_log::LogMode {
        self.logging.unwrap_or(ws.logging.mode)
    }

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
