//! Bounces: Amazon SES notifications delivered as mail.

use super::*;

// Bounces: Amazon SES notifications

/// Recipients of an Amazon SES bounce, complaint or delivery notification delivered as a
/// JSON e-mail body (SNS e-mail subscription).
pub(super) fn ses_notification(text: &str) -> Option<Vec<BounceRecipient>> {
    let start = text.find('{')?;
    if !text[..start].trim().is_empty() || !text.contains("notificationType") {
        return None;
    }
    let value = first_json_value(&text[start..])
        .or_else(|| first_json_value(&text[start..].replace(['\r', '\n'], "")))?;
    let value = match value.get("Message").and_then(|m| m.as_str()) {
        // An SNS envelope: the notification is a JSON string inside it.
        Some(inner) => first_json_value(inner)?,
        None => value,
    };
    let kind = value.get("notificationType")?.as_str()?;
    let list = match kind {
        "Bounce" => ses_recipients(value.get("bounce")?, "bouncedRecipients"),
        "Complaint" => ses_recipients(value.get("complaint")?, "complainedRecipients"),
        "Delivery" => ses_deliveries(value.get("delivery")?),
        _ => return None,
    };
    Some(list)
}

/// The first JSON value at the start of `text`, ignoring what follows it.
pub(super) fn first_json_value(text: &str) -> Option<serde_json::Value> {
    serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>().next()?.ok()
}

/// `bouncedRecipients` / `complainedRecipients` of an SES notification.
pub(super) fn ses_recipients(section: &serde_json::Value, key: &str) -> Vec<BounceRecipient> {
    let text = |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    section
        .get(key)
        .and_then(|l| l.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|item| {
                    let email = text(item, "emailAddress").and_then(|a| recipient_address(&a))?;
                    let diagnostic = text(item, "diagnosticCode").map(|d| strip_type(&d).to_string());
                    let status = text(item, "status")
                        .and_then(|s| first_status_code(&s))
                        .or_else(|| diagnostic.as_deref().and_then(first_status_code))
                        .unwrap_or_default();
                    Some(BounceRecipient { email, status, action: text(item, "action"), diagnostic })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The recipients of an SES delivery notification, with the status of its SMTP response.
pub(super) fn ses_deliveries(section: &serde_json::Value) -> Vec<BounceRecipient> {
    let response = section.get("smtpResponse").and_then(|r| r.as_str()).unwrap_or("");
    let status = first_status_code(response).unwrap_or_default();
    section
        .get("recipients")
        .and_then(|l| l.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.as_str().and_then(recipient_address))
                .map(|email| BounceRecipient {
                    email,
                    status: status.clone(),
                    action: Some("delivered".to_string()),
                    diagnostic: (!response.is_empty()).then(|| response.to_string()),
                })
                .collect()
        })
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------------------
