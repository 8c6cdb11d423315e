//! Mailing-list evidence (RFC 2369/2919 headers and the marks of older list managers).

use super::*;

// Mailing lists

/// Records list evidence; true when there is any: the RFC 2369/2919 headers (`List-Id`,
/// `List-Unsubscribe`, `List-Post`), `Precedence: list`, and the marks of list managers that
/// predate those headers or add their own: ezmlm's and Google Groups' `Mailing-List`,
/// Mailman's `X-Mailman-Version`, and a `Sender` that is a list-owner address (Majordomo's
/// `owner-<list>@`, `<list>-owner@`, `<list>-bounces@`). Old Majordomo lists send
/// `Precedence: bulk` with only the `Sender`; without it their posts would look like weak
/// auto-replies.
pub(super) fn list_signals(headers: &Headers, signals: &mut Vec<String>) -> bool {
    let before = signals.len();
    for name in ["list-id", "list-unsubscribe", "list-post", "mailing-list", "x-mailman-version"] {
        if headers.has(name) {
            signals.push(format!("header:{name}"));
        }
    }
    for name in ["precedence", "x-precedence"] {
        if headers.values(name).any(|v| header_token(v) == "list") {
            signals.push(format!("header:{name}=list"));
        }
    }
    if headers.values("sender").flat_map(find_addresses).any(|(_, a)| is_list_owner(&a)) {
        signals.push("header:sender=list-owner".to_string());
    }
    signals.len() > before
}

/// Whether an address is a mailing-list manager's own (`owner-x@`, `x-owner@`, `x-admin@`,
/// `x-bounces@`, `x-request@`).
pub(super) fn is_list_owner(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or("");
    local.starts_with("owner-")
        || ["-owner", "-admin", "-bounces", "-request"].iter().any(|s| local.ends_with(s))
}

/// The identifier of the first `List-Id` header.
pub(super) fn list_id(headers: &Headers) -> Option<String> {
    let value = headers.first("list-id")?.trim();
    let id = match (value.rfind('<'), value.rfind('>')) {
        (Some(start), Some(end)) if start < end => &value[start + 1..end],
        _ => value,
    };
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

// ------------------------------------------------------------------------------------------
