//! Every item key, index partition and attribute reader of the main table, in one place,
//! grouped by the record they address. The layout is documented in docs/storage.md; a
//! module that writes or reads an item asks this file for its key, so a key is spelled
//! once.

use mailroom_core::{EmailAddress, Folder, Sha256};
use mailroom_store::{Item, Key};

// ------------------------------------------------------------------ mail

pub fn inbox(addr: &EmailAddress) -> Key {
    Key::new(format!("inbox#{}", addr.key()), "inbox")
}
pub const INBOXES_INDEX_PK: &str = "inboxes";

/// One stored copy of raw bytes in one inbox folder; every copy of the same bytes shares
/// the partition `raw#{sha}`.
pub fn raw_copies_pk(sha: &Sha256) -> String {
    format!("raw#{sha}")
}
pub fn raw_copy(sha: &Sha256, inbox: &EmailAddress, folder: Folder) -> Key {
    Key::new(raw_copies_pk(sha), format!("copy#{}#{}", inbox.key(), folder.as_str()))
}
pub fn copies_index_pk(inbox: &EmailAddress) -> String {
    format!("copies#{}", inbox.key())
}

pub fn message(message_id: &str) -> Key {
    Key::new(format!("msg#{message_id}"), "msg")
}
/// Shards of an inbox's message index: one busy inbox's messages under one index key
/// passed 1,000 write units a second first after the feed (docs/scale.md).
pub const MESSAGES_INDEX_SHARDS: u8 = 4;
/// The index key of message `message_id` in `inbox`'s message index
/// (`messages#{inbox}#0`..`#3`, by a hash of the Message-ID: a retried write lands in the
/// same shard).
pub fn messages_index_pk(inbox: &EmailAddress, message_id: &str) -> String {
    format!("messages#{}#{}", inbox.key(), shard_of(message_id, MESSAGES_INDEX_SHARDS))
}
/// Every index key of `inbox`'s messages a reader merges: the shards, and the unsharded
/// key older versions wrote.
pub fn messages_index_pks(inbox: &EmailAddress) -> Vec<String> {
    let base = format!("messages#{}", inbox.key());
    std::iter::once(base.clone()).chain((0..MESSAGES_INDEX_SHARDS).map(|n| format!("{base}#{n}"))).collect()
}
/// `base` and its `shards` shards `{base}#00`.. (two digits): every key a reader of a
/// sharded index merges, with the unsharded key older versions wrote.
fn with_shards(base: &str, shards: u8) -> Vec<String> {
    std::iter::once(base.to_string()).chain((0..shards).map(|n| format!("{base}#{n:02}"))).collect()
}
/// A stable shard number in `0..shards` for `key`.
fn shard_of(key: &str, shards: u8) -> u8 {
    let h = mailroom_core::sha256(key.as_bytes()).0;
    u8::from_str_radix(&h[..2], 16).unwrap_or(0) % shards
}

/// Blob key of an attachment body: content-addressed, shared by every message carrying it.
pub fn attachment_key(sha256: &str) -> String {
    format!("att/{}/{sha256}", &sha256[..2.min(sha256.len())])
}

// ------------------------------------------------------------------ conversations

pub fn conv_key(id: &str) -> Key {
    Key::new(format!("conv#{id}"), "conv")
}
/// The conversations index's key before docs/scale.md's change 2 (one key for all).
pub const CONVERSATIONS_INDEX_PK: &str = "conversations";
pub const CONVERSATIONS_INDEX_SHARDS: u8 = 16;
/// The index key of conversation `id` (`conversations#00`..`#15`, by a hash of its id, so
/// it never moves; the sort key is its last activity, `{ms}#{id}`).
pub fn conversations_index_pk(id: &str) -> String {
    format!("{CONVERSATIONS_INDEX_PK}#{:02}", shard_of(id, CONVERSATIONS_INDEX_SHARDS))
}
/// Every index key a reader of the conversations merges: the shards, and the unsharded
/// key older versions wrote (their conversations stay listed after an upgrade).
pub fn conversations_index_pks() -> Vec<String> {
    with_shards(CONVERSATIONS_INDEX_PK, CONVERSATIONS_INDEX_SHARDS)
}
/// The audit log: one item per admin operation on history (`crate::replay`), sort key
/// `{time}#{action}#{random}`.
pub const AUDIT_PK: &str = "audit";
/// One item per day the email-log alerts were judged (`reports::log_alert`).
pub const LOG_ALERT_CHECK_PK: &str = "log-alert-check";
/// A message id (or a parent id) claimed by a conversation.
pub fn ref_key(message_id: &str) -> Key {
    Key::new(format!("ref#{message_id}"), "ref")
}
/// A provider thread (Gmail threadId, Graph conversationId) of an inbox.
pub fn provider_thread_key(inbox: &str, thread_hash: &str) -> Key {
    Key::new(format!("pthread#{inbox}#{thread_hash}"), "pthread")
}
/// Subject links: every message under its (subject, party), and header-less replies.
pub fn subject_pk(subject_hash: &str, party: &str) -> String {
    format!("subj#{subject_hash}#{party}")
}
pub fn subject_wait_pk(subject_hash: &str, party: &str) -> String {
    format!("subjwait#{subject_hash}#{party}")
}
/// Internal comments of a conversation.
pub fn comments_pk(conv: &str) -> String {
    format!("comments#{conv}")
}
/// A conversation's report state (facts, contribution, figures).
pub fn conv_owner(conv: &str) -> Key {
    Key::new(format!("rpt-conv#{conv}"), "rpt")
}
/// A message past the report state's cap, counted once (`reports::MAX_FACTS`).
pub fn report_overflow(conv: &str, message_id: &str) -> Key {
    Key::new(format!("rpt-over#{conv}"), message_id)
}
/// The report's day list: one item per bucket partition (see [`report_day_entry`]),
/// written once per process.
pub const REPORT_DAYS_PK: &str = "rpt-days";
/// The partition of a day's report buckets (`day` is `YYYY-MM-DD`) of one inbox:
/// `rpt#{day}#{inbox}`, or with `shards` > 1 (`[reports] shards`) one of that many,
/// `rpt#{day}#{inbox}#{n}`, chosen by a hash of the conversation, so that a
/// conversation's contribution always lands in (and is retracted from) the same one.
/// docs/scale.md, change 4: a day's buckets of every inbox under one key passed DynamoDB's
/// per-partition write limit at the simulated peak, and one busy inbox's alone did too.
/// Versions before it wrote `rpt#{day}` for all inboxes; the report still reads such a
/// partition where the day list names it, and a conversation's contribution to it is
/// retracted there.
pub fn report_pk(day: &str, inbox: &str, conversation: &str, shards: u8) -> String {
    match shards {
        0 | 1 => format!("rpt#{day}#{inbox}"),
        n => format!("rpt#{day}#{inbox}#{}", shard_of(conversation, n)),
    }
}
/// The report day list's entry for partition `pk`: the key without `rpt#`.
pub fn report_day_entry(pk: &str) -> Option<&str> {
    pk.strip_prefix("rpt#")
}
/// The day and the inbox (none for an old shared partition) of a day-list entry
/// (`{day}`, `{day}#{inbox}` or `{day}#{inbox}#{n}`: a shard number follows the address's
/// domain, which never holds a `#`).
pub fn report_entry(entry: &str) -> (&str, Option<&str>) {
    let Some((day, rest)) = entry.split_once('#') else { return (entry, None) };
    let inbox = match rest.rsplit_once('#') {
        Some((inbox, n))
            if inbox.contains('@') && !n.contains('@') && n.bytes().all(|b| b.is_ascii_digit()) =>
        {
            inbox
        }
        _ => rest,
    };
    (day, Some(inbox))
}
pub const SLA_DUE_INDEX_PK: &str = "sla-due";

// ------------------------------------------------------------------ live chat

/// A chat session (`crate::chat`): its visitor, widget and message count.
pub fn chat_session_key(session: &str) -> Key {
    Key::new(format!("chat#{session}"), "session")
}
/// When the visitor of a chat session was last connected (absent once they left).
pub fn chat_online_key(session: &str) -> Key {
    Key::new(format!("chat#{session}"), "online")
}

// ------------------------------------------------------------------ event feed

/// A conversation's events; every event is also in the `events` index partition.
pub fn conversation_events_pk(conv: &str) -> String {
    format!("events#{conv}")
}
/// The event feed's index key before it was sharded: still read, never written.
pub const EVENTS_INDEX_PK: &str = "events";
/// Shards of the event feed's index: one index partition for every event of the
/// workspace passed DynamoDB's 1,000 write units a second at about 2,500 messages a
/// second (docs/scale.md); 16 shards keep the hottest near 300 at ten million a day.
pub const EVENTS_INDEX_SHARDS: u8 = 16;
/// The index key of an event (`events#00`..`events#15`, in the index's own key space):
/// chosen by a hash of the event's table key, so a retried write lands in the same shard.
pub fn events_index_pk(event_sk: &str) -> String {
    format!("{EVENTS_INDEX_PK}#{:02}", shard_of(event_sk, EVENTS_INDEX_SHARDS))
}
/// Every index key a reader of the feed merges: the shards, and the unsharded key that
/// older versions wrote (its events stay readable after an upgrade).
pub fn events_index_pks() -> Vec<String> {
    with_shards(EVENTS_INDEX_PK, EVENTS_INDEX_SHARDS)
}
/// A connected inbox's events.
pub fn inbox_events_pk(inbox: &EmailAddress) -> String {
    format!("conn-events#{}", inbox.key())
}
/// How far a listener of the feed has read.
pub fn feed_cursor_key(listener: &str) -> Key {
    Key::new(format!("relay#{listener}"), "cursor")
}
/// One notification of one event to one user, sent once.
pub fn notified_key(event_id: &str, user: &str) -> Key {
    Key::new(format!("notified#{event_id}"), user.to_lowercase())
}

// ------------------------------------------------------------------ tickets and routing

pub fn ticket_key(conversation: &str) -> Key {
    Key::new(format!("ticket#{conversation}"), "ticket")
}
pub const TICKETS_INDEX_PK: &str = "tickets";
/// Open conversations assigned to an agent (`load.rs`).
pub fn load_key(agent: &str) -> Key {
    Key::new(format!("load#{}", agent.to_lowercase()), "load")
}
/// An inbox's tally: its open and open-unassigned conversations (`load.rs`).
pub fn inbox_tally_key(inbox: &str) -> Key {
    Key::new(format!("tally#{inbox}"), "tally")
}
/// The agent (least-loaded) or the turn (round-robin) picked for a conversation.
pub fn pick_key(conv: &str) -> Key {
    Key::new(format!("pick#{conv}"), "pick")
}
/// A team's round-robin counter.
pub fn round_robin_key(team: &str) -> Key {
    Key::new(format!("rr#{team}"), "rr")
}

// ------------------------------------------------------------------ CRM

/// A contact, by lower-case email.
pub fn contact_key(email: &str) -> Key {
    Key::new(format!("contact#{}", email.to_lowercase()), "contact")
}
pub fn company_key(domain: &str) -> Key {
    Key::new(format!("company#{}", domain.to_lowercase()), "company")
}
pub const CONTACTS_INDEX_PK: &str = "contacts";
pub const COMPANIES_INDEX_PK: &str = "companies";
/// A contact's timeline (messages logged on them, opens and clicks).
pub fn timeline_pk(email: &str) -> String {
    format!("timeline#{email}")
}
pub fn deal_key(id: &str) -> Key {
    Key::new(format!("deal#{id}"), "deal")
}
pub const DEALS_INDEX_PK: &str = "deals";
/// The deals of a contact (by lower-case email) or company (by domain): query the
/// partition `deals#{email or domain}`; the sort key is the deal id.
pub fn deals_pk(contact_or_domain: &str) -> String {
    format!("deals#{}", contact_or_domain.to_lowercase())
}
pub fn deal_link_key(contact_or_domain: &str, deal_id: &str) -> Key {
    Key::new(deals_pk(contact_or_domain), deal_id)
}

// ------------------------------------------------------------------ workspace

/// A workspace user (agent or admin), by email; written by the workspace configuration.
pub fn user(addr: &EmailAddress) -> Key {
    Key::new(format!("user#{}", addr.key()), "user")
}
pub const USERS_INDEX_PK: &str = "users";
/// `workspace`/`current`: the model in force.
pub fn workspace_key() -> Key {
    Key::new("workspace", "current")
}
pub fn team_key(id: &str) -> Key {
    Key::new(format!("team#{id}"), "team")
}
pub const TEAMS_INDEX_PK: &str = "teams";
pub fn pipeline_key(id: &str) -> Key {
    Key::new(format!("pipeline#{id}"), "pipeline")
}
pub const PIPELINES_INDEX_PK: &str = "pipelines";
/// All rules share one partition, in evaluation order: `rules`/`0000`, `rules`/`0001`, ...
pub const RULES_PK: &str = "rules";
pub fn rule_key(position: usize) -> Key {
    Key::new(RULES_PK, format!("{position:04}"))
}
/// A web form's secret.
pub fn form_secret_key(form: &str) -> Key {
    Key::new(format!("form#{form}"), "secret")
}
/// An OIDC subject bound to its user, and the user's binding (`api/identity.rs`).
pub fn identity_subject_key(issuer: &str, subject: &str) -> Key {
    Key::new(format!("idsub#{issuer}#{subject}"), "id")
}
pub fn identity_user_key(issuer: &str, email: &str) -> Key {
    Key::new(format!("iduser#{issuer}#{}", email.to_lowercase()), "id")
}

/// A web sign-in link, by the hash of its token (single use).
pub fn login_link_key(token_hash: &str) -> Key {
    Key::new(format!("login#{token_hash}"), "login")
}
/// A browser's OIDC sign-in in progress, by the hash of its state.
pub fn web_auth_state_key(state_hash: &str) -> Key {
    Key::new(format!("webauth#{state_hash}"), "state")
}
/// A web session, by the hash of its id.
pub fn session_key(id_hash: &str) -> Key {
    Key::new(format!("session#{id_hash}"), "session")
}
/// When a user last read each conversation (`web/`: unread marks), one item per user.
pub fn read_marks_key(email: &str) -> Key {
    Key::new(format!("read#{}", email.to_lowercase()), "read")
}
/// Who is looking at or replying to a conversation now (`web/`: presence).
pub fn presence_key(conv: &str) -> Key {
    Key::new(format!("presence#{conv}"), "presence")
}

// ------------------------------------------------------------------ mailbox connections

/// The partition of everything of one connection (settings, secrets, cursors, lease).
pub fn conn_pk(inbox: &EmailAddress) -> String {
    format!("conn#{}", inbox.key())
}
pub fn connection_key(inbox: &EmailAddress) -> Key {
    Key::new(conn_pk(inbox), "conn")
}
pub const CONNECTIONS_INDEX_PK: &str = "connections";
pub fn connection_secret_key(inbox: &EmailAddress, name: &str) -> Key {
    Key::new(conn_pk(inbox), format!("secret#{name}"))
}
pub fn connection_cursor_key(inbox: &EmailAddress, folder: &str) -> Key {
    Key::new(conn_pk(inbox), format!("cursor#{folder}"))
}
pub fn connection_lease_key(inbox: &EmailAddress) -> Key {
    Key::new(conn_pk(inbox), "lease")
}
/// A Gmail push whose sync is still to run.
pub fn gmail_pending_key(inbox: &EmailAddress) -> Key {
    Key::new(conn_pk(inbox), "gmail#pending")
}
pub fn graph_subscription_key(id: &str) -> Key {
    Key::new(format!("graph-sub#{id}"), "sub")
}
pub fn graph_pending_key(inbox: &EmailAddress) -> Key {
    Key::new(format!("graph-pending#{}", inbox.key()), "pending")
}
/// An OAuth authorization in progress (its PKCE verifier, sealed), used once.
pub fn oauth_state_key(nonce: &str) -> Key {
    Key::new(format!("oauth-state#{nonce}"), "state")
}

// ------------------------------------------------------------------ outbound

/// A reply's outbox entry, per conversation and client request id.
pub fn outbox_key(conversation: &str, request_id: &str) -> Key {
    Key::new(format!("outbox#{conversation}"), format!("req#{request_id}"))
}
/// Who wrote the reply with this Message-ID (the From of a shared inbox's reply is the
/// inbox, not the agent).
pub fn sent_key(message_id: &str) -> Key {
    Key::new(format!("sent#{message_id}"), "sent")
}
/// A sent message's tracking partition: its summary and its hits.
pub fn tracking_pk(message_id: &str) -> String {
    format!("track#{message_id}")
}
pub fn tracking_summary_key(message_id: &str) -> Key {
    Key::new(tracking_pk(message_id), "sum")
}

// ------------------------------------------------------------------ inbox verification

/// One verification run of an inbox ("send a test email"), newest last by id.
pub fn verify_run_key(inbox: &EmailAddress, run: &str) -> Key {
    Key::new(verify_runs_pk(inbox), format!("run#{run}"))
}
pub fn verify_runs_pk(inbox: &EmailAddress) -> String {
    format!("verify#{}", inbox.key())
}
/// The record that makes a test message a test message: written before it is sent, read
/// by the match stage for Message-IDs with the verification prefix only.
pub fn verify_message_key(message_id: &str) -> Key {
    Key::new(format!("verifymsg#{message_id}"), "v")
}
/// The Message-ID prefix of verification test messages.
pub const VERIFY_MID_PREFIX: &str = "mailroom-verify.";
/// The index partition test conversations and tickets move to, out of every list.
pub const TEST_INDEX_PK: &str = "verify-test";

// ------------------------------------------------------------------ attributes

/// A string attribute of an item.
pub fn item_str(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(serde_json::Value::as_str).map(str::to_string)
}

/// A list of strings attribute (absent or mistyped: empty).
pub fn item_strings(item: &Item, k: &str) -> Vec<String> {
    item.get(k)
        .and_then(serde_json::Value::as_array)
        .map(|a| a.iter().filter_map(serde_json::Value::as_str).map(str::to_string).collect())
        .unwrap_or_default()
}
