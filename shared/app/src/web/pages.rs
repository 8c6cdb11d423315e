//! The pages besides the inbox and settings: reports (headline figures).

use super::WebState;
use axum::extract::State;
use axum::response::Response;
use chrono::Utc;
use std::sync::Arc;

use super::ctx::*;

// ------------------------------------------------------------------ other pages

/// The report's headline figures over the inboxes the user sees; the charts are the
/// reports dashboard (`/dashboard` with an API token).
pub(super) async fn reports(State(st): State<Arc<WebState>>, c: Ctx) -> Response {
    let mut f = crate::reports::Filter::default();
    if !c.viewer.is_admin() {
        f.visible = Some(c.viewer.visible_inboxes());
    }
    let r = match crate::reports::report(&st.api.ports, &c.viewer.ws, &f, Utc::now()).await {
        Ok(r) => r,
        Err(e) => return internal(e),
    };
    let median =
        r.first_response.median_s.map(|s| format!("{:.1} h", s / 3600.0)).unwrap_or_else(|| "-".into());
    simple_page(
        &c,
        "reports",
        "Reports",
        vec![
            format!("Open conversations: {}; unassigned: {}; stale: {}.", r.open, r.unassigned, r.stale),
            format!(
                "Messages in: {}; out: {}. Median first response: {median}.",
                r.messages.inbound, r.messages.outbound
            ),
            format!("SLA: {} met, {} breached, {} due.", r.sla.all.met, r.sla.all.breached, r.sla.all.due),
            "The charts are on the reports dashboard (/dashboard, with an API token).".into(),
        ],
    )
}
