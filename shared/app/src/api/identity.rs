//! From a verified token to a workspace user.
//!
//! A development token names its user (we issued it). An OIDC token is mapped by its
//! issuer's stable subject (`sub`), never by its email claim alone: in a Cognito pool a
//! user may be able to change their own email, and an email claim the issuer has not
//! verified proves nothing. The first sign-in binds the subject to the workspace user
//! whose address the token carries, and only when the issuer says it verified that
//! address; from then on the subject decides, whatever the email claim says. A user is
//! bound to one subject per issuer: another account claiming the same address is refused.
//!
//! Items (docs/storage.md): `idsub#{issuer}#{subject}` / `id` -> the user's email, and
//! `iduser#{issuer}#{email}` / `id` -> the subject, written together with conditional
//! puts. Nothing unlinks a binding yet (docs/security.md).

use super::auth::Identity;
use super::{ApiError, ApiResult};
use crate::keys;
use crate::keys::item_str as s;
use crate::runtime::ports::Ports;
use mailroom_store::{Cond, StoreError, TransactOp};
use serde_json::json;

/// The workspace user's email a token speaks for (not yet checked against the workspace's
/// user list: the caller does that).
pub async fn user_of(ports: &Ports, id: &Identity) -> ApiResult<String> {
    let (issuer, subject, email, verified) = match id {
        Identity::Local { email } => return Ok(email.clone()),
        Identity::Oidc { issuer, subject, email, email_verified } => {
            (issuer, subject, email, *email_verified)
        }
    };
    let skey = keys::identity_subject_key(issuer, subject);
    for _ in 0..3 {
        if let Some(bound) = ports.table.get(&skey).await?.and_then(|i| s(&i, "email")) {
            return Ok(bound);
        }
        let Some(email) = email.as_deref() else {
            return Err(ApiError::Forbidden(
                "the token carries no email to link this sign-in to a user".into(),
            ));
        };
        if !verified {
            return Err(ApiError::Forbidden(format!(
                "the identity provider has not verified {email}: verify the address there, then sign in again"
            )));
        }
        let ukey = keys::identity_user_key(issuer, email);
        if let Some(other) = ports.table.get(&ukey).await?.and_then(|i| s(&i, "subject"))
            && &other != subject
        {
            return Err(ApiError::Forbidden(format!(
                "{email} is already linked to another sign-in of this identity provider"
            )));
        }
        let now = ports.clock.now().to_rfc3339();
        let mut a = skey.item();
        a.insert("email".into(), json!(email));
        a.insert("bound_at".into(), json!(now));
        let mut b = ukey.item();
        b.insert("subject".into(), json!(subject));
        b.insert("bound_at".into(), json!(now));
        let ops = vec![
            TransactOp::Put { item: a, cond: Some(Cond::NotExists) },
            TransactOp::Put { item: b, cond: Some(Cond::NotExists) },
        ];
        match ports.table.transact_write(ops).await {
            Ok(()) => {
                tracing::info!(%issuer, %subject, %email, "sign-in linked to its workspace user");
                ports.flush()?;
                return Ok(email.to_string());
            }
            // A concurrent first sign-in: read again.
            Err(StoreError::TransactionCanceled { .. } | StoreError::ConditionFailed) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::Unavailable("the sign-in could not be linked to its user: try again".into()))
}
