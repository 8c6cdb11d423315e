//! Validation: every error of a workspace at once, each naming its place.

use super::*;

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

pub(super) struct Validator<'w> {
    pub(super) ws: &'w Workspace,
    pub(super) errs: Vec<ConfigError>,
    pub(super) users: HashMap<String, usize>,
    pub(super) teams: HashMap<&'w str, usize>,
    pub(super) pipelines: HashMap<&'w str, usize>,
    pub(super) inboxes: HashMap<String, usize>,
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
    for (path, msg) in crate::crm_log::check(&ws.logging) {
        v.err(path, msg);
    }
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
    let mut widgets: HashMap<&str, usize> = HashMap::new();
    for (i, w) in ws.chat_widgets.iter().enumerate() {
        let p = format!("chat_widgets[{i}]");
        if v.id(&format!("{p}.id"), "chat widget", &w.id)
            && let Some(j) = widgets.insert(&w.id, i)
        {
            v.err(format!("{p}.id"), format!("duplicate chat widget {:?} (also chat_widgets[{j}])", w.id));
        }
        v.inbox(&format!("{p}.inbox"), &w.inbox);
        if let Some(h) = &w.business_hours
            && !ws.calendars.iter().any(|c| c.id == *h)
        {
            let known = v.list(ws.calendars.iter().map(|c| c.id.as_str()));
            v.err(format!("{p}.business_hours"), format!("unknown calendar {h:?} (calendars: {known})"));
        }
        if let Some(c) = &w.colour
            && !(c.len() == 7 && c.starts_with('#') && c[1..].chars().all(|x| x.is_ascii_hexdigit()))
        {
            v.err(format!("{p}.colour"), format!("{c:?} is not a colour: write #rrggbb"));
        }
        for (k, o) in w.allowed_origins.iter().enumerate() {
            if !is_origin(o) {
                v.err(
                    format!("{p}.allowed_origins[{k}]"),
                    format!(
                        "{o:?} is not an origin: write scheme://host[:port], such as https://www.example.com"
                    ),
                );
            }
        }
    }
    v.errs
}

/// `http(s)://host[:port]` with nothing after it: what a browser sends as `Origin`.
fn is_origin(o: &str) -> bool {
    let Some(rest) = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://")) else { return false };
    let (host, port) = rest.rsplit_once(':').map_or((rest, None), |(h, p)| (h, Some(p)));
    !host.is_empty()
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && port.is_none_or(|p| p.parse::<u16>().is_ok())
}

/// Calendars, SLA policies and `[reports]`.
pub(super) fn validate_sla(v: &mut Validator<'_>) {
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
    if ws.reports.shards.is_some_and(|n| !(1..=16).contains(&n)) {
        v.err("reports.shards", "must be 1 to 16".to_string());
    }
    if let Err(e) = parse_duration(&ws.reports.stale_after) {
        v.err("reports.stale_after", e);
    }
}

pub(super) fn validate_inbox(v: &mut Validator<'_>, i: usize, inbox: &Inbox) {
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

pub(super) fn validate_rule(v: &mut Validator<'_>, i: usize, r: &Rule) {
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
    if let Some(deal) = &a.deal
        && !v.ws.deals.iter().any(|d| &d.id == deal)
    {
        v.err(format!("{ap}.deal"), format!("unknown deal {deal:?}"));
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

pub(super) fn validate_condition(v: &mut Validator<'_>, p: &str, c: &Condition) {
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
pub(super) fn regex_message(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}
