//! The form channel: `POST /forms/{id}/submissions` turns a web form's submission into an
//! email to the form's inbox (RFC 5322, From the submitter) and hands it to the
//! [`Ingestor`] like every other source: raw bytes first, then the same match, routing
//! and ticket stages. Forms are declared in the workspace (`[[forms]]`); each has a
//! secret, sealed in the table, that only [`rotate_form_secret`] shows (once).
//! docs/forms.md has the contract.

use crate::keys;
use crate::pipeline::ingest::{IngestOutcome, Ingestor, RawMail};
use crate::runtime::http::problem;
use crate::runtime::ports::Ports;
use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use mailroom_core::{EmailAddress, Folder};
use mailroom_store::{Cond, Key, StoreError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// The `source` of form submissions (the message's reports channel is `form`).
pub use crate::pipeline::ingest::FORM_SOURCE as SOURCE;
pub const BODY_LIMIT: usize = 256 * 1024;

fn secret_context(form: &str) -> String {
    format!("form/{form}")
}

/// Makes a new secret for a form (32 random bytes, hex), stores it sealed and returns it:
/// the only time it is shown. The previous secret stops working at once.
pub async fn rotate_form_secret(ports: &Ports, form_id: &str) -> anyhow::Result<String> {
    use base64::Engine;
    let ws = crate::workspace::load(ports).await?.unwrap_or_default();
    if ws.form(form_id).is_none() {
        anyhow::bail!(
            "unknown form {form_id:?}: declare it in [[forms]] of the workspace and apply it first"
        );
    }
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let sealed = ports.secrets.seal(&secret_context(form_id), secret.as_bytes()).await?;
    let mut item = keys::form_secret_key(form_id).item();
    item.insert("sealed".into(), json!(base64::engine::general_purpose::STANDARD.encode(sealed)));
    item.insert("updated_at".into(), json!(ports.clock.now().to_rfc3339()));
    ports.table.put(item, None).await.with_context(|| format!("storing the secret of form {form_id}"))?;
    ports.flush()?;
    Ok(secret)
}

async fn form_secret(ports: &Ports, form_id: &str) -> anyhow::Result<Option<Vec<u8>>> {
    use base64::Engine;
    let Some(item) = ports.table.get(&keys::form_secret_key(form_id)).await? else { return Ok(None) };
    let sealed = item
        .get("sealed")
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .with_context(|| format!("the secret of form {form_id} is corrupt: rotate it"))?;
    Ok(Some(ports.secrets.open(&secret_context(form_id), &sealed).await?))
}

struct FormState {
    ports: Ports,
    ingestor: Ingestor,
}

pub fn router(ports: Ports) -> Router {
    let st = Arc::new(FormState { ingestor: Ingestor::new(ports.clone()), ports });
    Router::new()
        .route("/forms/{id}/submissions", post(submit))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(st)
}

/// The fields of a submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    pub email: EmailAddress,
    pub name: Option<String>,
    pub subject: Option<String>,
    pub message: String,
    /// Every other field, in the order given.
    pub extra: Vec<(String, String)>,
}

/// Reads a JSON object or an `application/x-www-form-urlencoded` body.
pub fn parse_submission(content_type: &str, body: &[u8]) -> Result<Submission, String> {
    let mut fields: Vec<(String, String)> = Vec::new();
    if content_type.starts_with("application/json") {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
        let Value::Object(map) = v else { return Err("the JSON body must be an object of fields".into()) };
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s,
                Value::Null => continue,
                Value::Number(_) | Value::Bool(_) => v.to_string(),
                other => serde_json::to_string(&other).unwrap_or_default(),
            };
            fields.push((k, text));
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        fields.extend(form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    } else {
        return Err(format!(
            "unsupported content type {content_type:?}: send application/json or application/x-www-form-urlencoded"
        ));
    }
    let mut take = |name: &str| -> Option<String> {
        let i = fields.iter().position(|(k, _)| k == name)?;
        Some(fields.remove(i).1.trim().to_string()).filter(|v| !v.is_empty())
    };
    let email = take("email").ok_or("the field \"email\" is required")?;
    let email =
        EmailAddress::parse(&email).map_err(|_| format!("\"email\" is not a valid address: {email:?}"))?;
    let message = take("message").ok_or("the field \"message\" is required")?;
    let name = take("name");
    let subject = take("subject");
    // Header injection: names and subjects are single lines.
    let one_line = |v: Option<String>| v.map(|s| s.split(['\r', '\n']).collect::<Vec<_>>().join(" "));
    Ok(Submission { email, name: one_line(name), subject: one_line(subject), message, extra: fields })
}

/// The RFC 5322 message of a submission.
pub fn build_message(
    form: &mailroom_core::workspace::Form,
    sub: &Submission,
    submission_id: &str,
    date: DateTime<Utc>,
) -> anyhow::Result<Vec<u8>> {
    use lettre::message::Mailbox;
    use lettre::message::header::{ContentType, HeaderName, HeaderValue};
    let inbox: lettre::Address =
        form.inbox.parse().with_context(|| format!("form inbox {:?}", form.inbox))?;
    let from = Mailbox::new(sub.name.clone(), sub.email.key().parse().context("submitter address")?);
    let subject = sub
        .subject
        .clone()
        .unwrap_or_else(|| format!("Form submission: {}", form.name.as_deref().unwrap_or(&form.id)));
    let mut text = sub.message.clone();
    if !sub.extra.is_empty() {
        text.push_str("\n\n--\n");
        for (k, v) in &sub.extra {
            text.push_str(&format!("{k}: {v}\n"));
        }
    }
    let mut msg = lettre::Message::builder()
        .from(from)
        .to(Mailbox::new(None, inbox))
        .subject(subject)
        .date(date.into())
        .message_id(Some(format!(
            "<form.{submission_id}@{}>",
            form.inbox.rsplit_once('@').map_or("mailroom.invalid", |x| x.1)
        )))
        .header(ContentType::TEXT_PLAIN)
        .body(text)
        .context("building the submission's message")?;
    let raw = |name: &'static str, value: &str| {
        HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
    };
    msg.headers_mut().insert_raw(raw("X-Mailroom-Channel", "form"));
    msg.headers_mut().insert_raw(raw("X-Mailroom-Form", &form.id));
    Ok(msg.formatted())
}

/// The submission's id: from the `Idempotency-Key` when the client sends one, else from
/// the body and the hour (a client retrying the same body within the hour makes one
/// message).
pub fn submission_id(
    form_id: &str,
    idempotency_key: Option<&str>,
    body: &[u8],
    now: DateTime<Utc>,
) -> String {
    let mut h = Sha256::new();
    h.update(form_id.as_bytes());
    h.update(b"\0");
    match idempotency_key {
        Some(k) => {
            h.update(b"key\0");
            h.update(k.as_bytes());
        }
        None => {
            h.update(b"body\0");
            h.update(now.timestamp().div_euclid(3600).to_string().as_bytes());
            h.update(b"\0");
            h.update(body);
        }
    }
    hex::encode(&h.finalize()[..16])
}

enum Auth {
    Ok,
    Missing,
    Wrong,
}

fn check_auth(headers: &HeaderMap, secret: &[u8], body: &[u8]) -> Auth {
    use hmac::{Hmac, Mac};
    use subtle::ConstantTimeEq;
    if let Some(sig) = headers.get("x-mailroom-form-signature") {
        let Some(hexsig) = sig.to_str().ok().and_then(|s| s.trim().strip_prefix("sha256=")) else {
            return Auth::Wrong;
        };
        let (Ok(mut mac), Ok(sig)) = (Hmac::<Sha256>::new_from_slice(secret), hex::decode(hexsig)) else {
            return Auth::Wrong;
        };
        mac.update(body);
        return if mac.verify_slice(&sig).is_ok() { Auth::Ok } else { Auth::Wrong };
    }
    if let Some(given) = headers.get("x-mailroom-form-secret") {
        return if bool::from(given.as_bytes().trim_ascii().ct_eq(secret)) { Auth::Ok } else { Auth::Wrong };
    }
    Auth::Missing
}

async fn submit(
    State(st): State<Arc<FormState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match submit_inner(&st, &id, &headers, &body).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(form = %id, error = %format!("{e:#}"), "form submission failed");
            problem(StatusCode::INTERNAL_SERVER_ERROR, format!("the submission could not be stored: {e:#}"))
        }
    }
}

async fn submit_inner(
    st: &FormState,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> anyhow::Result<Response> {
    let ports = &st.ports;
    let ws = crate::workspace::load(ports).await?.unwrap_or_default();
    let Some(form) = ws.form(id) else {
        return Ok(problem(StatusCode::NOT_FOUND, format!("unknown form {id:?}")));
    };
    let Some(secret) = form_secret(ports, id).await? else {
        return Ok(problem(
            StatusCode::FORBIDDEN,
            format!("form {id:?} has no secret yet: an admin makes one with `mailroom form secret {id}`"),
        ));
    };
    match check_auth(headers, &secret, body) {
        Auth::Ok => {}
        Auth::Missing => {
            return Ok(problem(
                StatusCode::UNAUTHORIZED,
                "send X-Mailroom-Form-Signature: sha256=<hex HMAC-SHA256 of the body with the form secret> or X-Mailroom-Form-Secret",
            ));
        }
        Auth::Wrong => {
            return Ok(problem(StatusCode::FORBIDDEN, "the form signature or secret does not match"));
        }
    }
    let ctype =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let sub = match parse_submission(&ctype, body) {
        Ok(s) => s,
        Err(e) if e.starts_with("unsupported content type") => {
            return Ok(problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, e));
        }
        Err(e) if e.starts_with("the body is not") || e.starts_with("the JSON body") => {
            return Ok(problem(StatusCode::BAD_REQUEST, e));
        }
        Err(e) => return Ok(problem(StatusCode::UNPROCESSABLE_ENTITY, e)),
    };
    let now = ports.clock.now();
    let key =
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|k| !k.is_empty());
    let sid = submission_id(id, key, body, now);
    // The first attempt's date, so that a retry builds the very same bytes (stored once).
    let date = submission_date(ports, id, &sid, now).await?;
    let raw = build_message(form, &sub, &sid, date)?;
    let inbox = EmailAddress::parse(&form.inbox).map_err(|e| anyhow::anyhow!("form inbox: {e}"))?;
    let mut mail = RawMail::new(raw, SOURCE);
    mail.inbox = Some(inbox);
    mail.folder = Some(Folder::Inbox);
    mail.source_id = Some(sid.clone());
    mail.received_at = Some(date);
    let outcome = st.ingestor.ingest(mail).await?;
    // Durable before the 202: the form's server will not send it again.
    ports.flush()?;
    let duplicate = matches!(outcome, IngestOutcome::Duplicate);
    let domain = form.inbox.rsplit_once('@').map_or("mailroom.invalid", |x| x.1);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "submission_id": sid,
            "message_id": format!("form.{sid}@{domain}"),
            "duplicate": duplicate,
        })),
    )
        .into_response())
}

async fn submission_date(
    ports: &Ports,
    form: &str,
    sid: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<DateTime<Utc>> {
    let key = Key::new(format!("form-sub#{form}#{sid}"), "sub");
    let mut item = key.item();
    // Whole seconds: the Date header carries no more.
    let now = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    item.insert("date".into(), json!(now.to_rfc3339()));
    match ports.table.put(item, Some(Cond::NotExists)).await {
        Ok(()) => Ok(now),
        Err(StoreError::ConditionFailed) => {
            let first = ports.table.get(&key).await?;
            Ok(first
                .as_ref()
                .and_then(|i| i.get("date"))
                .and_then(Value::as_str)
                .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
                .map(|d| d.with_timezone(&Utc))
                .unwrap_or(now))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_encodings_and_refuses_bad_input() {
        let s = parse_submission(
            "application/x-www-form-urlencoded",
            b"email=Ann%40Example.com&name=Ann&message=Hi+there&plan=pro",
        )
        .unwrap();
        assert_eq!(s.email.key(), "ann@example.com");
        assert_eq!(s.extra, vec![("plan".to_string(), "pro".to_string())]);
        let j = parse_submission(
            "application/json",
            br#"{"email":"a@b.example","message":"x","subject":"A\r\nBcc: x@y"}"#,
        )
        .unwrap();
        assert_eq!(j.subject.as_deref(), Some("A  Bcc: x@y"));
        assert!(parse_submission("application/json", br#"{"email":"nope","message":"x"}"#).is_err());
        assert!(parse_submission("application/json", br#"{"email":"a@b.example"}"#).is_err());
        assert!(parse_submission("text/plain", b"x").is_err());
    }
}
