//! Reply attachments (docs/replies.md, "Attachments"): a file uploaded by the agent
//! (`POST /uploads`), or an attachment of a message in the conversation, forwarded as it
//! is stored without uploading it again. Both live in the content-addressed attachment
//! store (`att/{xx}/{sha256}`, where the match stage keeps received attachments), so a
//! file is stored once however often it is sent.
//!
//! Items: `upload#{id}` / `upload`: who uploaded it, its name, type, size and sha256.
//!
//! Limits, on the attachments' own bytes (the message around them adds about a third for
//! base64): at most [`MAX_ATTACHMENTS`] files of [`MAX_FILE`] each and [`MAX_TOTAL`]
//! together; [`MAX_TOTAL_MICROSOFT`] together for a Microsoft 365 inbox, whose
//! `sendMail` carries the whole message base64-encoded in a request Graph caps at 4 MB.

use crate::keys;
use crate::keys::item_str as s;
use crate::runtime::ports::Ports;
use bytes::Bytes;
use mailroom_core::sha256;
use mailroom_core::workspace::Provider;
use mailroom_store::Key;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const MAX_FILE: usize = 10 * 1024 * 1024;
pub const MAX_TOTAL: usize = 10 * 1024 * 1024;
pub const MAX_TOTAL_MICROSOFT: usize = 2_500_000;
pub const MAX_ATTACHMENTS: usize = 20;

/// Why an attachment cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The request is wrong (422): the message says what to change.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<mailroom_store::StoreError> for AttachError {
    fn from(e: mailroom_store::StoreError) -> Self {
        AttachError::Other(e.into())
    }
}

/// One attachment of a reply: an upload's id, or the sha256 of an attachment of a message
/// in the conversation (forwarded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyAttachment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// A stored upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Upload {
    /// What a reply names it by (`{"upload": id}`).
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

/// An attachment ready for the MIME.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub name: String,
    pub content_type: String,
    pub bytes: Bytes,
    pub sha256: String,
}

/// What an outbox entry says of a file it carries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SentFile {
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
}

impl Resolved {
    pub fn sent_file(&self) -> SentFile {
        SentFile {
            name: self.name.clone(),
            content_type: self.content_type.clone(),
            size: self.bytes.len() as u64,
            sha256: self.sha256.clone(),
        }
    }
}

fn upload_key(id: &str) -> Key {
    Key::new(format!("upload#{id}"), "upload")
}

/// A file name fit for a MIME header and a recipient's disk: no path, no control
/// characters, at most 200 characters; `attachment` when nothing is left.
pub fn clean_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base.chars().filter(|c| !c.is_control()).take(200).collect();
    let clean = clean.trim().trim_start_matches('.').trim().to_string();
    if clean.is_empty() { "attachment".into() } else { clean }
}

/// A MIME type as `type/subtype` (lower-case), else `application/octet-stream`.
pub fn clean_type(content_type: &str) -> String {
    let t = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let token =
        |p: &str| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c));
    match t.split_once('/') {
        Some((a, b)) if token(a) && token(b) => t,
        _ => "application/octet-stream".into(),
    }
}

/// Stores an upload by `owner` (a workspace user); only they may attach it.
pub async fn upload(
    ports: &Ports,
    owner: &str,
    name: &str,
    content_type: &str,
    bytes: Bytes,
) -> Result<Upload, AttachError> {
    if bytes.is_empty() {
        return Err(AttachError::Invalid("the upload is empty".into()));
    }
    if bytes.len() > MAX_FILE {
        return Err(AttachError::Invalid(format!(
            "the upload has {} bytes; a file may have at most {MAX_FILE}",
            bytes.len()
        )));
    }
    let sha = sha256(&bytes).to_string();
    let up = Upload {
        id: format!("u{}", hex::encode(rand::random::<[u8; 12]>())),
        name: clean_name(name),
        content_type: clean_type(content_type),
        size: bytes.len() as u64,
        sha256: sha.clone(),
    };
    ports.blobs.put_if_absent(&keys::attachment_key(&sha), bytes, &up.content_type).await?;
    let mut item = upload_key(&up.id).item();
    if let Value::Object(m) = serde_json::to_value(&up).map_err(anyhow::Error::from)? {
        item.extend(m);
    }
    item.insert("owner".into(), json!(owner.to_lowercase()));
    item.insert("created_at".into(), json!(ports.clock.now().to_rfc3339()));
    ports.table.put(item, None).await?;
    Ok(up)
}

/// The attachments of a reply by `author` in conversation `root` (whose messages are
/// `messages`), read and checked against the limits of the inbox's `provider`.
pub async fn resolve(
    ports: &Ports,
    author: &str,
    messages: &[mailroom_store::Item],
    list: &[ReplyAttachment],
    provider: Provider,
) -> Result<Vec<Resolved>, AttachError> {
    if list.len() > MAX_ATTACHMENTS {
        return Err(AttachError::Invalid(format!("at most {MAX_ATTACHMENTS} attachments per reply")));
    }
    let mut out: Vec<Resolved> = Vec::new();
    for a in list {
        let (name, content_type, sha) = match (&a.upload, &a.sha256) {
            (Some(id), None) => {
                let item = ports.table.get(&upload_key(id)).await?;
                let Some(item) =
                    item.filter(|i| s(i, "owner").is_some_and(|o| o.eq_ignore_ascii_case(author)))
                else {
                    return Err(AttachError::Invalid(format!("no upload {id} by {author}")));
                };
                (s(&item, "name"), s(&item, "content_type"), s(&item, "sha256").unwrap_or_default())
            }
            (None, Some(sha)) => {
                let found = messages
                    .iter()
                    .flat_map(|m| m.get("attachments").and_then(Value::as_array).cloned().unwrap_or_default())
                    .find(|x| x.get("sha256").and_then(Value::as_str) == Some(sha.as_str()));
                let Some(found) = found else {
                    return Err(AttachError::Invalid(format!("this conversation has no attachment {sha}")));
                };
                let str_of = |k: &str| found.get(k).and_then(Value::as_str).map(str::to_string);
                (str_of("name"), str_of("content_type"), sha.clone())
            }
            _ => {
                return Err(AttachError::Invalid(
                    "an attachment is either {\"upload\": id} or {\"sha256\": an attachment of this conversation}"
                        .into(),
                ));
            }
        };
        let bytes = ports
            .blobs
            .get(&keys::attachment_key(&sha))
            .await?
            .ok_or_else(|| AttachError::Invalid(format!("the bytes of attachment {sha} are gone")))?;
        if bytes.len() > MAX_FILE {
            return Err(AttachError::Invalid(format!("attachment {sha} has over {MAX_FILE} bytes")));
        }
        out.push(Resolved {
            name: clean_name(name.as_deref().unwrap_or_default()),
            content_type: clean_type(content_type.as_deref().unwrap_or_default()),
            bytes,
            sha256: sha,
        });
    }
    let total: usize = out.iter().map(|r| r.bytes.len()).sum();
    let cap = if provider == Provider::Microsoft { MAX_TOTAL_MICROSOFT } else { MAX_TOTAL };
    if total > cap {
        return Err(AttachError::Invalid(format!(
            "the attachments have {total} bytes together; a reply from this inbox may carry at most {cap}"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types_are_cleaned() {
        assert_eq!(clean_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_name("C:\\Users\\x\\Angebot für Müller.pdf"), "Angebot für Müller.pdf");
        assert_eq!(clean_name("a\r\nBcc: x@y.pdf"), "aBcc: x@y.pdf");
        assert_eq!(clean_name("..."), "attachment");
        assert_eq!(clean_type("Application/PDF; name=x"), "application/pdf");
        assert_eq!(clean_type("text/html\r\nX: y"), "application/octet-stream");
        assert_eq!(clean_type(""), "application/octet-stream");
    }
}
