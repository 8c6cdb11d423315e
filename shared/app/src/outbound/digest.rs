//! The daily digest (docs/events.md, "Notifications"): once a day, from
//! `MAILROOM_DIGEST_HOUR` (8) UTC on, every user who asked for it
//! (`notifications.digest = true`) gets one email with where their day starts: the open
//! conversations assigned to them, and over the inboxes they see the open, unassigned
//! and stale ones, the SLA breaches still open, and yesterday's volume. The relay sends
//! it (the `events` function in AWS, `mailroom serve` locally), so it goes wherever the
//! other notification emails go.
//!
//! Once per user and day: a marker (`digest#{user}` / the day) is put before the email
//! goes; when the send fails the marker is taken back, so the next run tries again.

use crate::outbound::notify::{Notification, Notifier};
use crate::runtime::ports::Ports;
use chrono::{DateTime, Duration, Timelike, Utc};
use mailroom_core::workspace::{User, Workspace};
use mailroom_store::{Cond, Key, StoreError};
use serde_json::json;
use std::sync::Arc;

/// The hour (UTC) from which the day's digests go.
pub fn digest_hour() -> u32 {
    std::env::var("MAILROOM_DIGEST_HOUR")
        .ok()
        .and_then(|h| h.trim().parse().ok())
        .filter(|h| *h < 24)
        .unwrap_or(8)
}

fn marker(user: &str, day: &str) -> Key {
    Key::new(format!("digest#{}", user.to_lowercase()), day.to_string())
}

/// Sends the digests due at `now`; returns how many went.
pub async fn send_due(ports: &Ports, notifier: &dyn Notifier, now: DateTime<Utc>) -> anyhow::Result<usize> {
    if now.hour() < digest_hour() {
        return Ok(0);
    }
    let ws = crate::workspace::load(ports).await?.unwrap_or_default();
    let day = now.date_naive().to_string();
    let mut sent = 0;
    for u in ws.users.iter().filter(|u| u.notifications.digest) {
        let key = marker(&u.email, &day);
        if ports.table.get(&key).await?.is_some() {
            continue;
        }
        let n = compose(ports, &ws, u, now, &day).await?;
        let mut item = key.item();
        item.insert("at".into(), json!(now.to_rfc3339()));
        match ports.table.put(item, Some(Cond::NotExists)).await {
            Ok(()) => {}
            Err(StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
        // One address that cannot be reached holds nobody else's digest back.
        if let Err(e) = notifier.send(&n).await {
            ports.table.delete(&key, None).await?;
            tracing::error!(to = %u.email, error = %format!("{e:#}"), "daily digest not sent; tried again next run");
            continue;
        }
        ports.flush()?;
        tracing::info!(to = %u.email, day, "daily digest sent");
        sent += 1;
    }
    Ok(sent)
}

async fn compose(
    ports: &Ports,
    ws: &Workspace,
    u: &User,
    now: DateTime<Utc>,
    day: &str,
) -> anyhow::Result<Notification> {
    let viewer = crate::access::Viewer::of(u, &Arc::new(ws.clone()));
    let visible = viewer.visible_inboxes();
    let mine = crate::load::load_of(ports, &u.email).await?;
    // Where things stand (the sweep's gauge window), and yesterday's volume.
    let window = crate::reports::Filter {
        from: Some((now - Duration::days(crate::reports::GAUGE_DAYS)).date_naive()),
        visible: Some(visible.clone()),
        ..crate::reports::Filter::default()
    };
    let r = crate::reports::report(ports, ws, &window, now).await?;
    let yesterday = Some((now - Duration::days(1)).date_naive());
    let f = crate::reports::Filter {
        from: yesterday,
        to: yesterday,
        visible: Some(visible.clone()),
        ..Default::default()
    };
    let y = crate::reports::report(ports, ws, &f, now).await?;
    let text = format!(
        "Good morning {name},\n\n\
         Assigned to you and open: {mine}\n\n\
         In your inboxes ({inboxes}):\n\
         - open: {open}\n- unassigned: {unassigned}\n- waiting for a reply for too long (stale): {stale}\n\
         - SLA breached and still open: {breached}\n\n\
         Yesterday: {inbound} messages in, {outbound} out.\n\n\
         You get this email because you asked for the daily digest in Mailroom (My notifications).\n",
        name = u.name,
        inboxes = if visible.is_empty() { "none".to_string() } else { visible.join(", ") },
        open = r.open,
        unassigned = r.unassigned,
        stale = r.stale,
        breached = r.sla.all.breached,
        inbound = y.messages.inbound,
        outbound = y.messages.outbound,
    );
    Ok(Notification {
        to: u.email.to_lowercase(),
        reason: "digest",
        subject: format!("[Mailroom] Your day: {mine} open for you, {} unassigned", r.unassigned),
        text,
        event_id: format!("digest-{day}"),
    })
}
