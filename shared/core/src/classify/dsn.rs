//! Bounces: RFC 3464 delivery-status fields.

use super::*;

// Bounces: RFC 3464 delivery-status fields

/// One per-recipient block of a delivery-status report, as read.
#[derive(Debug, Default)]
pub(super) struct DsnRecord {
    pub(super) final_recipient: Option<String>,
    pub(super) original_recipient: Option<String>,
    pub(super) action: Option<String>,
    pub(super) status: Option<String>,
    pub(super) diagnostic: Option<String>,
}

impl DsnRecord {
    fn has_recipient(&self) -> bool {
        self.final_recipient.is_some() || self.original_recipient.is_some()
    }

    fn into_recipient(self) -> Option<BounceRecipient> {
        let email = [&self.final_recipient, &self.original_recipient]
            .into_iter()
            .flatten()
            .find_map(|v| recipient_address(v))
            .or_else(|| self.final_recipient.as_deref().map(address_value).filter(|a| !a.is_empty()))?;
        let status = dsn_status(self.status.as_deref(), self.diagnostic.as_deref());
        let action = self.action.map(|a| header_token(&a)).filter(|a| !a.is_empty());
        let diagnostic = self.diagnostic.map(|d| strip_type(&d).to_string()).filter(|d| !d.is_empty());
        Some(BounceRecipient { email, status, action, diagnostic })
    }
}

/// The status of a delivery-status record. The remote server's own code in the
/// `Diagnostic-Code` is preferred over the `Status` field when both have the same class: the
/// reporting MTA often summarises (`5.0.0`, or `4.4.7` "delivery time expired" after a run of
/// `4.7.1` refusals, or even `5.1.1` for a `5.7.1` policy rejection), while the remote code says
/// what happened. When the diagnostic holds several codes (a relay quoting the next hop), the
/// last one is the innermost server's. Without a `Status` code the diagnostic's code or,
/// failing that, the class of its SMTP reply code is used.
pub(super) fn dsn_status(status: Option<&str>, diagnostic: Option<&str>) -> String {
    let stated = status.and_then(first_status_code);
    let remote = diagnostic.and_then(|d| failure_codes(d).pop());
    match (stated, remote) {
        (Some(s), Some(r)) if s[..1] == r[..1] => r,
        (Some(s), _) => s,
        (None, Some(r)) => r,
        (None, None) => diagnostic.and_then(|d| reply_code_class(strip_type(d))).unwrap_or_default(),
    }
}

/// Reads the per-recipient fields of delivery-status text (RFC 3464 §2.3). Hand-written
/// because the format is header-like but not a message: groups are separated by blank lines,
/// and real reports also run groups together or put `Action` before `Final-Recipient`.
pub(super) fn parse_dsn_fields(text: &str) -> Vec<BounceRecipient> {
    let lower = text.to_ascii_lowercase();
    if !lower.contains("final-recipient") && !lower.contains("original-recipient") {
        return Vec::new();
    }
    let mut records = Vec::new();
    let mut current = DsnRecord::default();
    for field in dsn_fields(text) {
        let Some((name, value)) = field else {
            finish_group(&mut current, &mut records);
            continue;
        };
        let starts_new = match name.as_str() {
            "final-recipient" => current.final_recipient.is_some(),
            "original-recipient" => current.original_recipient.is_some(),
            _ => false,
        };
        if starts_new {
            records.push(std::mem::take(&mut current));
        }
        set_dsn_field(&mut current, &name, value);
    }
    finish_group(&mut current, &mut records);
    records.into_iter().filter_map(DsnRecord::into_recipient).collect()
}

/// Ends a blank-line separated group: keeps it when it named a recipient.
pub(super) fn finish_group(current: &mut DsnRecord, records: &mut Vec<DsnRecord>) {
    let group = std::mem::take(current);
    if group.has_recipient() {
        records.push(group);
    }
}

/// Stores one field into the record (first value wins).
pub(super) fn set_dsn_field(record: &mut DsnRecord, name: &str, value: String) {
    let slot = match name {
        "final-recipient" => &mut record.final_recipient,
        "original-recipient" => &mut record.original_recipient,
        "action" => &mut record.action,
        "status" => &mut record.status,
        "diagnostic-code" => &mut record.diagnostic,
        _ => return,
    };
    if slot.is_none() {
        *slot = Some(value);
    }
}

/// The unfolded fields of delivery-status text: `Some((lower-case name, value))`, or `None`
/// for a blank line (a group separator).
pub(super) fn dsn_fields(text: &str) -> Vec<Option<(String, String)>> {
    let mut out: Vec<Option<(String, String)>> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            out.push(None);
        } else if line.starts_with([' ', '\t']) {
            if let Some(Some((_, value))) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(' ') {
                out.push(Some((name.to_ascii_lowercase(), value.trim().to_string())));
            }
        }
    }
    out
}

/// The address of a `Final-Recipient`/`Original-Recipient` value (`rfc822; <a@b>`).
pub(super) fn recipient_address(value: &str) -> Option<String> {
    find_addresses(strip_type(value)).into_iter().next().map(|(_, a)| a)
}

/// The value without its `type;` prefix, without angle brackets and quotes, lower-cased.
pub(super) fn address_value(value: &str) -> String {
    strip_type(value)
        .trim_matches(|c: char| c == '<' || c == '>' || c == '"' || c.is_whitespace())
        .to_lowercase()
}

/// The value without its RFC 3464 type prefix (`smtp; 550 ...` -> `550 ...`).
pub(super) fn strip_type(value: &str) -> &str {
    match value.split_once(';') {
        Some((t, rest))
            if !t.trim().is_empty() && t.trim().chars().all(|c| c.is_ascii_alphanumeric() || c == '-') =>
        {
            rest.trim()
        }
        _ => value.trim(),
    }
}

// ------------------------------------------------------------------------------------------
