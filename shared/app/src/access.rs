//! Inbox permissions: who may see what. Admins see every inbox; an agent sees the inboxes
//! they are a member of (as a user, through a team, or as the owner of an individual
//! inbox). Everything in an inbox an agent cannot see is, to them, something that does
//! not exist (docs/api.md, "Permissions"). The API and the web pages both ask here.

use mailroom_core::workspace::{Role, Workspace};
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

    /// Whether the caller may see the inbox `address` (and everything in it).
    pub fn can_see(&self, address: &str) -> bool {
        if self.is_admin() {
            return true;
        }
        let Some(inbox) = self.ws.inboxes.iter().find(|i| i.address.eq_ignore_ascii_case(address)) else {
            return false;
        };
        inbox.owner.as_deref().is_some_and(|o| o.eq_ignore_ascii_case(&self.email))
            || inbox.members.users.iter().any(|u| u.eq_ignore_ascii_case(&self.email))
            || inbox.members.teams.iter().any(|t| self.teams.contains(t))
    }

    /// The configured inboxes the caller may see.
    pub fn visible_inboxes(&self) -> Vec<String> {
        self.ws.inboxes.iter().filter(|i| self.can_see(&i.address)).map(|i| i.address.clone()).collect()
    }
}
