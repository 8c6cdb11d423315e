use super::*;

const ACME: &str = include_str!("../../../../examples/acme-corp.toml");

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
    let fallback =
        |a: &str| ws.inboxes.iter().find(|i| i.address == a).and_then(|i| i.fallback_team.clone()).unwrap();
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
    assert_eq!(
        ws.reports,
        ReportSettings { calendar: Some("berlin".into()), stale_after: "24h".into(), shards: None }
    );
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
    let ws = parse_toml(include_str!("../../../../examples/demo/workspace.toml"))
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
    for bad in
        ["", " ", "4", "h", "-4h", "+4h", "4 h", "4H", "4hours", "1.5h", "4h4h", "30m1h", "0s", "0d0h", "1w"]
    {
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
    assert_eq!(by_path("sla_policies[0].inboxes[0]"), "unknown inbox help@acme.example: not in [[inboxes]]");
    assert!(by_path("sla_policies[0].priorities[1]").starts_with("unknown priority \"critical\""));
    assert!(by_path("sla_policies[0].first_response").starts_with("invalid duration \"4 hours\""));
    assert_eq!(by_path("sla_policies[0].calendar"), "unknown calendar \"paris\" (calendars: berlin, berlin)");
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
    assert!(by_path("inboxes[2].tickets.stage").contains("stage \"waiting\" is not in pipeline \"support\""));
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
