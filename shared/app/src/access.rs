//! Inbox permissions: who may see what. An agent sees the inboxes they are a member of
//! (as a user, through a team, or as the owner of an individual inbox). Admins see every
//! shared inbox; an individual inbox is private to its owner and the members it is
//! shared with, so an admin sees that it exists and its health ([`Viewer::knows_inbox`])
//! but not its mail unless they are one of them. Everything in an inbox someone cannot
//! see is, to them, something that does not exist (docs/api.md, "Permissions"). The API
//! and the web pages both ask here.

use mailroom_core::workspace::{InboxType, Role, Workspace};
use std::sync::Arc;

/// Who is looking: a workspace user with their role and teams, and the workspace they
/// were checked against (read once per request).
#[derive(Debug, Clone)]
pub struct Viewer {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub teams: Vec<String>,
    pub ws: Arc<Workspace>,
}

impl Viewer {
    /// A workspace user as a caller (the token's user, or someone the caller names).
    pub fn of(user: &mailroom_core::workspace::User, ws: &Arc<Workspace>) -> Viewer {
        Viewer {
            email: user.email.to_lowercase(),
            name: user.name.clone(),
            role: user.role,
            teams: ws.teams_of(&user.email),
            ws: ws.clone(),
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may see the inbox `address` and the mail in it.
    pub fn can_see(&self, address: &str) -> bool {
        let inbox = self.ws.inboxes.iter().find(|i| i.address.eq_ignore_ascii_case(address));
        let member = inbox.is_some_and(|inbox| {
            inbox.owner.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(&self.email))
                || inbox.members.users.iter().any(|u| u.eq_ignore_ascii_case(&self.email))
                || inbox.members.teams.iter().any(|t| self.teams.contains(t))
        });
        // An inbox that is not (or no longer) configured holds mail nobody owns: admins'.
        let private = inbox.is_some_and(|i| i.kind == InboxType::Individual);
        member || (self.is_admin() && !private)
    }

    /// Whether the caller may know the inbox exists and see its health (not its mail):
    /// admins for every inbox, others for those they see.
    pub fn knows_inbox(&self, address: &str) -> bool {
        self.is_admin() || self.can_see(address)
    }

    /// The configured inboxes the caller may see.
    pub fn visible_inboxes(&self) -> Vec<String> {
        self.ws.inboxes.iter().filter(|i| self.can_see(&i.address)).map(|i| i.address.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom_core::workspace::parse_toml;

    const WS: &str = r#"
[[users]]
email = "boss@acme.example"
name = "Boss"
role = "admin"
[[users]]
email = "other.admin@acme.example"
name = "Other admin"
role = "admin"
[[users]]
email = "rep@acme.example"
name = "Rep"
[[users]]
email = "agent@acme.example"
name = "Agent"
[[teams]]
id = "support"
members = ["agent@acme.example"]
[[inboxes]]
address = "support@acme.example"
members = { teams = ["support"] }
[[inboxes]]
address = "rep@acme.example"
type = "individual"
owner = "rep@acme.example"
members = { users = ["other.admin@acme.example"] }
"#;

    fn viewer(ws: &Arc<Workspace>, email: &str) -> Viewer {
        Viewer::of(ws.users.iter().find(|u| u.email == email).unwrap(), ws)
    }

    #[test]
    fn an_individual_inbox_is_private_to_its_owner_and_whom_it_is_shared_with() {
        let ws = Arc::new(parse_toml(WS).unwrap());
        let (boss, shared_with, rep, agent) = (
            viewer(&ws, "boss@acme.example"),
            viewer(&ws, "other.admin@acme.example"),
            viewer(&ws, "rep@acme.example"),
            viewer(&ws, "agent@acme.example"),
        );
        assert!(rep.can_see("rep@acme.example") && shared_with.can_see("rep@acme.example"));
        assert!(!boss.can_see("rep@acme.example"), "an admin does not read a rep's own mail");
        assert!(boss.knows_inbox("rep@acme.example"), "but knows the inbox and its health");
        assert!(!agent.can_see("rep@acme.example") && !agent.knows_inbox("rep@acme.example"));
        assert!(boss.can_see("support@acme.example") && agent.can_see("support@acme.example"));
        assert!(!rep.can_see("support@acme.example"));
        // Mail of an inbox no longer configured: admins only.
        assert!(boss.can_see("gone@acme.example") && !agent.can_see("gone@acme.example"));
        assert_eq!(boss.visible_inboxes(), ["support@acme.example"]);
    }
}
