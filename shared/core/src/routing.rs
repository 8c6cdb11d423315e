//! Routing rules, evaluated in order against one message: conditions on inbox, subject,
//! body, sender, classification and contact properties; actions assign a team or user
//! (or a strategy), priority, pipeline and stage, tags, no-ticket. The first rule that
//! matches wins unless it says `continue`, in which case later matches fill in what it
//! left unset. The inbox's fallback team applies when no rule gave a team.

use crate::workspace::{Actions, Assign, Condition, Field, MatchMode, Op, Rule, Workspace};
use regex::Regex;
use serde::Serialize;
use std::collections::BTreeMap;

/// What a rule can look at.
#[derive(Debug, Clone, Default)]
pub struct RouteContext {
    pub inbox: String,
    pub subject: String,
    pub body: String,
    pub sender_email: String,
    pub kind: String,
    /// Contact (and company, as `company.x`) properties: `contact.owner`, `contact.name`…
    pub properties: BTreeMap<String, String>,
}

impl RouteContext {
    fn sender_domain(&self) -> &str {
        self.sender_email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

/// The outcome of routing one conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Decision {
    pub team: Option<String>,
    pub user: Option<String>,
    pub assign: Option<Assign>,
    pub priority: Option<String>,
    pub pipeline: Option<String>,
    pub stage: Option<String>,
    pub tags: Vec<String>,
    pub no_ticket: bool,
    /// The deal a rule names for the conversation.
    pub deal: Option<String>,
    /// Names of the rules that matched, in order; `fallback` when the inbox's fallback
    /// team was used.
    pub matched: Vec<String>,
}

/// Rules with their regular expressions compiled once.
pub struct Router {
    rules: Vec<(Rule, Vec<Option<Regex>>)>,
    fallback: BTreeMap<String, String>,
}

impl Router {
    /// Compiles the workspace's rules. Invalid regexes never match (validation reports
    /// them when the workspace is applied).
    pub fn new(ws: &Workspace) -> Router {
        let rules = ws
            .rules
            .iter()
            .map(|r| {
                let res = r
                    .conditions
                    .iter()
                    .map(|c| match c.op {
                        Op::Regex => c.value.as_deref().and_then(|v| Regex::new(&format!("(?i){v}")).ok()),
                        _ => None,
                    })
                    .collect();
                (r.clone(), res)
            })
            .collect();
        let fallback = ws
            .inboxes
            .iter()
            .filter_map(|i| i.fallback_team.clone().map(|t| (i.address.to_lowercase(), t)))
            .collect();
        Router { rules, fallback }
    }

    pub fn route(&self, ctx: &RouteContext) -> Decision {
        let mut d = Decision::default();
        let inbox = ctx.inbox.to_lowercase();
        for (rule, regexes) in &self.rules {
            if !rule.inboxes.is_empty() && !rule.inboxes.iter().any(|i| i.eq_ignore_ascii_case(&inbox)) {
                continue;
            }
            let mut results = rule.conditions.iter().zip(regexes).map(|(c, re)| holds(c, re.as_ref(), ctx));
            let matched = match rule.r#match {
                MatchMode::All => results.all(|x| x),
                MatchMode::Any => results.any(|x| x),
            };
            if !matched {
                continue;
            }
            d.matched.push(rule.name.clone());
            fill(&mut d, &rule.actions);
            if !rule.r#continue {
                break;
            }
        }
        if d.team.is_none()
            && d.user.is_none()
            && let Some(t) = self.fallback.get(&inbox)
        {
            d.team = Some(t.clone());
            d.matched.push("fallback".into());
        }
        d
    }
}

/// How one rule fared on a message: "try it" on the rules page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleTrace {
    pub rule: String,
    /// The rule is for other inboxes: its conditions were not looked at.
    pub other_inbox: bool,
    /// Each condition, in order: whether it held.
    pub conditions: Vec<bool>,
    pub matched: bool,
    /// Reached: an earlier matching rule without `continue` stopped before this one.
    pub reached: bool,
}

impl Router {
    /// [`Router::route`] with the reasons: every rule in order, each condition's result,
    /// and whether the rule was reached at all.
    pub fn explain(&self, ctx: &RouteContext) -> (Decision, Vec<RuleTrace>) {
        let inbox = ctx.inbox.to_lowercase();
        let mut stopped = false;
        let mut traces = Vec::new();
        for (rule, regexes) in &self.rules {
            let other_inbox =
                !rule.inboxes.is_empty() && !rule.inboxes.iter().any(|i| i.eq_ignore_ascii_case(&inbox));
            let conditions: Vec<bool> = if other_inbox {
                vec![]
            } else {
                rule.conditions.iter().zip(regexes).map(|(c, re)| holds(c, re.as_ref(), ctx)).collect()
            };
            let matched = !other_inbox
                && match rule.r#match {
                    MatchMode::All => conditions.iter().all(|x| *x),
                    MatchMode::Any => conditions.iter().any(|x| *x),
                };
            traces.push(RuleTrace {
                rule: rule.name.clone(),
                other_inbox,
                conditions,
                matched,
                reached: !stopped,
            });
            if matched && !stopped && !rule.r#continue {
                stopped = true;
            }
        }
        (self.route(ctx), traces)
    }
}

fn fill(d: &mut Decision, a: &Actions) {
    fn set<T: Clone>(slot: &mut Option<T>, v: &Option<T>) {
        if slot.is_none() {
            slot.clone_from(v);
        }
    }
    set(&mut d.team, &a.team);
    set(&mut d.user, &a.user);
    set(&mut d.assign, &a.assign);
    set(&mut d.priority, &a.priority);
    set(&mut d.pipeline, &a.pipeline);
    set(&mut d.stage, &a.stage);
    set(&mut d.deal, &a.deal);
    for t in &a.tags {
        if !d.tags.contains(t) {
            d.tags.push(t.clone());
        }
    }
    d.no_ticket |= a.no_ticket;
}

fn holds(c: &Condition, re: Option<&Regex>, ctx: &RouteContext) -> bool {
    let owned;
    let hay: &str = match &c.field {
        Field::Inbox => &ctx.inbox,
        Field::Subject => &ctx.subject,
        Field::Body => &ctx.body,
        Field::SenderEmail => &ctx.sender_email,
        Field::SenderDomain => ctx.sender_domain(),
        Field::Kind => &ctx.kind,
        Field::Property(p) => {
            owned = ctx.properties.get(p).cloned().unwrap_or_default();
            &owned
        }
    };
    let values: Vec<&str> = c.value.iter().chain(&c.values).map(String::as_str).collect();
    let lower = hay.to_lowercase();
    match c.op {
        Op::ContainsAnyWord => values.iter().any(|v| contains_word(&lower, &v.to_lowercase())),
        Op::NotContainsAnyWord => !values.iter().any(|v| contains_word(&lower, &v.to_lowercase())),
        Op::Contains => values.iter().any(|v| lower.contains(&v.to_lowercase())),
        Op::Equals | Op::InList => values.iter().any(|v| lower == v.to_lowercase()),
        Op::NotEquals => !values.iter().any(|v| lower == v.to_lowercase()),
        Op::Regex => re.is_some_and(|r| r.is_match(hay)),
    }
}

/// `needle` (one or more words) in `hay` as whole words: the characters around the match
/// are not letters or digits. Both already lower-cased.
pub fn contains_word(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::{Inbox, InboxType};

    fn rule(name: &str, field: Field, values: &[&str], team: &str) -> Rule {
        Rule {
            name: name.into(),
            inboxes: vec![],
            r#match: MatchMode::All,
            conditions: vec![Condition {
                field,
                op: Op::ContainsAnyWord,
                value: None,
                values: values.iter().map(|s| s.to_string()).collect(),
            }],
            actions: Actions {
                team: Some(team.into()),
                assign: Some(Assign::RoundRobin),
                ..Actions::default()
            },
            r#continue: false,
        }
    }

    fn ws() -> Workspace {
        Workspace {
            rules: vec![
                rule("billing subject", Field::Subject, &["invoice", "refund"], "billing"),
                rule("onboarding subject", Field::Subject, &["getting started"], "onboarding"),
                rule("billing body", Field::Body, &["invoice"], "billing"),
            ],
            inboxes: vec![Inbox {
                address: "sales@acme.example".into(),
                kind: InboxType::Shared,
                provider: Default::default(),
                owner: None,
                members: Default::default(),
                tickets: Default::default(),
                signature: None,
                fallback_team: Some("sales".into()),
                create_cc_contacts: false,
                tracking: false,
                logging: None,
            }],
            ..Workspace::default()
        }
    }

    fn ctx(subject: &str, body: &str) -> RouteContext {
        RouteContext {
            inbox: "Sales@acme.example".into(),
            subject: subject.into(),
            body: body.into(),
            ..RouteContext::default()
        }
    }

    #[test]
    fn first_match_wins_then_fallback() {
        let r = Router::new(&ws());
        assert_eq!(r.route(&ctx("Invoice missing", "")).team.as_deref(), Some("billing"));
        assert_eq!(r.route(&ctx("Getting Started guide", "invoice")).team.as_deref(), Some("onboarding"));
        assert_eq!(r.route(&ctx("Hello", "where is my invoice?")).team.as_deref(), Some("billing"));
        let d = r.route(&ctx("Hello", "nothing"));
        assert_eq!((d.team.as_deref(), d.matched.as_slice()), (Some("sales"), &["fallback".to_string()][..]));
    }

    #[test]
    fn explain_gives_each_rule_and_condition_and_agrees_with_route() {
        let r = Router::new(&ws());
        let c = ctx("Getting Started guide", "invoice");
        let (d, traces) = r.explain(&c);
        assert_eq!(d, r.route(&c));
        let matched: Vec<&str> = traces.iter().filter(|t| t.matched).map(|t| t.rule.as_str()).collect();
        assert!(matched.len() >= 2, "the subject and the body rules both hold: {traces:?}");
        // The first matching rule stops the rest: later ones are marked not reached.
        let first = traces.iter().position(|t| t.matched).unwrap();
        assert!(traces[first].reached && traces[first + 1..].iter().all(|t| !t.reached), "{traces:?}");
        assert_eq!(d.matched, vec![traces[first].rule.clone()]);
        let (d, traces) = r.explain(&ctx("Hello", "nothing"));
        assert!(traces.iter().all(|t| !t.matched && t.conditions.iter().all(|c| !c)), "{traces:?}");
        assert_eq!(d.matched, vec!["fallback".to_string()]);
    }

    #[test]
    fn whole_words_only() {
        assert!(contains_word("the invoice.", "invoice"));
        assert!(!contains_word("invoices", "invoice"));
        assert!(!contains_word("reinvoice", "invoice"));
        assert!(contains_word("getting started now", "getting started"));
        assert!(contains_word("größe rechnung", "rechnung"));
    }

    #[test]
    fn continue_fills_unset_actions_and_scoping() {
        let mut w = ws();
        w.rules[0].r#continue = true;
        w.rules[0].actions.tags = vec!["money".into()];
        w.rules.insert(
            1,
            Rule {
                name: "vip".into(),
                inboxes: vec!["sales@acme.example".into()],
                r#match: MatchMode::Any,
                conditions: vec![Condition {
                    field: Field::SenderDomain,
                    op: Op::Regex,
                    value: Some("^big\\.".into()),
                    values: vec![],
                }],
                actions: Actions {
                    priority: Some("high".into()),
                    team: Some("sales".into()),
                    ..Actions::default()
                },
                r#continue: false,
            },
        );
        let r = Router::new(&w);
        let mut c = ctx("Refund please", "");
        c.sender_email = "x@BIG.example".into();
        let d = r.route(&c);
        assert_eq!(d.team.as_deref(), Some("billing"));
        assert_eq!(d.priority.as_deref(), Some("high"));
        assert_eq!(d.tags, ["money"]);
        assert_eq!(d.matched, ["billing subject", "vip"]);
        c.inbox = "support@acme.example".into();
        assert_eq!(r.route(&c).priority, None);
    }
}
