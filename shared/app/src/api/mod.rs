//! The HTTP API agents and admins use: one axum router for the `api` Lambda (behind API
//! Gateway) and for `mailroom serve`. See docs/api.md.
//!
//! - Every route but `/openapi.json` needs a bearer token ([`auth`]); the caller is a
//!   workspace user with a role (admin or agent).
//! - Permissions ([`Caller::can_see`]): admins see every inbox; an agent sees the inboxes
//!   they are a member of (as a user, through a team, or as the owner of an individual
//!   inbox). Anything in an inbox an agent cannot see answers 404, exactly like something
//!   that does not exist, and no list includes it.
//! - Errors are RFC 9457 problem details; the OpenAPI document is generated from the
//!   handlers (utoipa) and served at `/openapi.json`.

pub mod admin;
pub mod auth;
pub mod connect;
pub mod conversations;
pub mod directory;
pub mod identity;
pub mod mine;
pub mod replay;
pub mod uploads;
pub mod verify;

use crate::runtime::ports::Ports;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use serde::Serialize;
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;

/// What every API handler shares.
pub struct ApiState {
    pub ports: Ports,
    pub auth: auth::Authenticator,
    pub providers: crate::runtime::config::ProvidersConfig,
    /// Where tracking links and signed attachment URLs point (the public base URL).
    pub public_url: String,
}

/// An RFC 9457 problem document.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Validation errors, one per problem found.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

/// Every way an API call fails.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    BadRequest(String),
    Conflict(String),
    /// The request is well-formed but invalid (a workspace that does not validate).
    Invalid(String, Vec<String>),
    Unavailable(String),
    Internal(anyhow::Error),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Invalid(..) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl<E: Into<anyhow::Error>> From<E> for ApiError {
    fn from(e: E) -> ApiError {
        ApiError::Internal(e.into())
    }
}

impl ApiError {
    /// What the caller is told: the detail and the list of errors. An internal error's
    /// cause goes to the log, not to the caller.
    pub fn detail(self) -> (String, Vec<String>) {
        match self {
            ApiError::Internal(e) => {
                // The cause goes to the logs, not to the caller.
                tracing::error!(error = %format!("{e:#}"), "API request failed");
                ("an internal error occurred; the server log has the cause".to_string(), vec![])
            }
            ApiError::Invalid(d, errs) => (d, errs),
            ApiError::Unauthorized(d)
            | ApiError::Forbidden(d)
            | ApiError::NotFound(d)
            | ApiError::BadRequest(d)
            | ApiError::Conflict(d)
            | ApiError::Unavailable(d) => (d, vec![]),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let (detail, errors) = self.detail();
        let body = Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail,
            errors,
        };
        let mut resp = (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            serde_json::to_string(&body).unwrap_or_default(),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        resp
    }
}

/// The authenticated caller: a workspace user (`access::Viewer`).
pub use crate::access::Viewer as Caller;

/// 403 unless the caller is an admin.
pub fn require_admin(caller: &Caller) -> ApiResult<()> {
    if caller.is_admin() { Ok(()) } else { Err(ApiError::Forbidden("this needs the admin role".into())) }
}

pub use crate::runtime::http::bearer;

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<ApiState>) -> ApiResult<Caller> {
        caller_from_headers(st, &parts.headers).await
    }
}

/// The caller a request's bearer token names: verified, mapped to a workspace user
/// ([`identity`]), with that user's role and teams.
pub async fn caller_from_headers(st: &ApiState, headers: &axum::http::HeaderMap) -> ApiResult<Caller> {
    let token =
        bearer(headers).ok_or_else(|| ApiError::Unauthorized(auth::AuthError::Missing.to_string()))?;
    let id = st.auth.verify(token).await.map_err(|e| match e {
        auth::AuthError::Unavailable(_) => ApiError::Unavailable(e.to_string()),
        e => ApiError::Unauthorized(e.to_string()),
    })?;
    let email = identity::user_of(&st.ports, &id).await?;
    let ws = crate::workspace::load(&st.ports).await?.unwrap_or_default();
    let Some(user) = ws.users.iter().find(|u| u.email.eq_ignore_ascii_case(&email)) else {
        return Err(ApiError::Forbidden(format!("{email} is not a user of this workspace")));
    };
    Ok(Caller::of(user, &Arc::new(ws.clone())))
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Mailroom API", description = "Shared inboxes, conversations, replies and the CRM records they are logged on. Errors are RFC 9457 problem details."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    components(schemas(Problem))
)]
struct ApiDoc;

/// The API's routes and its OpenAPI document (served at `/openapi.json`).
pub fn router(state: Arc<ApiState>) -> axum::Router {
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(conversations::routes())
        .merge(directory::routes())
        .merge(admin::routes())
        .merge(verify::routes())
        .merge(replay::routes())
        .merge(uploads::routes())
        .merge(mine::routes())
        .split_for_parts();
    let doc = Arc::new(doc);
    router
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .with_state(state)
}

/// CORS for a web client served from another origin: `MAILROOM_CORS_ORIGINS`, exact
/// origins separated by commas (`https://app.example.com`), or `*`. Unset: no CORS
/// headers, so browsers allow only same-origin calls. Tokens travel in the
/// `Authorization` header, never in cookies, so no credentials mode is needed. In AWS,
/// API Gateway answers CORS itself (the template's `ApiAllowedOrigins`).
pub fn cors_from_env() -> anyhow::Result<Option<tower_http::cors::CorsLayer>> {
    use axum::http::{HeaderName, HeaderValue, Method};
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let Some(raw) = std::env::var("MAILROOM_CORS_ORIGINS").ok().filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let origins: Vec<&str> = raw.split(',').map(str::trim).filter(|o| !o.is_empty()).collect();
    let allow = if origins == ["*"] {
        AllowOrigin::any()
    } else {
        let mut list = Vec::new();
        for o in origins {
            let ok = (o.starts_with("https://") || o.starts_with("http://"))
                && !o.trim_end_matches('/').contains(|c: char| c == '*' || c.is_whitespace())
                && o.matches('/').count() == 2;
            if !ok {
                anyhow::bail!(
                    "MAILROOM_CORS_ORIGINS: {o:?} is not an origin (scheme://host[:port], no path), nor *"
                );
            }
            list.push(HeaderValue::from_str(o)?);
        }
        AllowOrigin::list(list)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::PUT, Method::PATCH, Method::POST, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([header::ETAG, header::LOCATION])
            .max_age(std::time::Duration::from_secs(600)),
    ))
}

/// The document alone (for `mailroom openapi` and the tests).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = OpenApiRouter::<Arc<ApiState>>::with_openapi(ApiDoc::openapi())
        .merge(conversations::routes())
        .merge(directory::routes())
        .merge(admin::routes())
        .merge(verify::routes())
        .merge(replay::routes())
        .merge(uploads::routes())
        .merge(mine::routes())
        .split_for_parts();
    doc
}

/// A cursor for paged lists: the sort key to continue after, base64url-encoded so
/// clients treat it as opaque.
pub(crate) fn encode_cursor(sk: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk)
}

/// A page size from `limit`: 1 to 100, `default` when absent.
pub(crate) fn page_limit(limit: Option<u32>, default: u32) -> ApiResult<usize> {
    let limit = limit.unwrap_or(default);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be between 1 and 100".into()));
    }
    Ok(limit as usize)
}

/// Walks `gsi1` partitions that share one sort order (one key, or the shards of a key
/// spread for write load: their sort keys compare across shards) an index page at a
/// time, merged by sort key, from a list call's cursor, for a list that filters as it
/// goes. The cursor is the sort key of the last item handed out, which serves every shard.
/// It stops at the end of the partitions or, when a shard needs its next page, once
/// `budget` items were read: a rare filter then returns a short page with a cursor rather
/// than reading the whole table.
pub(crate) struct IndexScan<'a> {
    ports: &'a Ports,
    shards: Vec<Shard>,
    newest_first: bool,
    /// Items per page of one shard.
    page_size: u32,
    budget: usize,
    /// The sort key of the last item handed out (or the cursor it started from).
    position: Option<String>,
    scanned: usize,
    over_budget: bool,
    /// Read only these attributes of each item.
    attrs: Option<&'static [&'static str]>,
}

/// One partition of an [`IndexScan`]: what its pages gave that was not handed out yet.
struct Shard {
    pk: String,
    buffered: std::collections::VecDeque<mailroom_store::Item>,
    /// The sort key its next page starts after.
    after: Option<String>,
    done: bool,
}

impl<'a> IndexScan<'a> {
    /// A scan of `pks`, reading about `page_size` items a round from all of them together
    /// (at least 10 from each).
    pub(crate) fn new(
        ports: &'a Ports,
        pks: Vec<String>,
        cursor: Option<&str>,
        newest_first: bool,
        page_size: u32,
        budget: usize,
    ) -> ApiResult<IndexScan<'a>> {
        let position = decode_cursor(cursor)?;
        let per_shard = (page_size / pks.len().max(1) as u32).clamp(10.min(page_size), page_size);
        let shards = pks
            .into_iter()
            .map(|pk| Shard { pk, buffered: Default::default(), after: position.clone(), done: false })
            .collect();
        Ok(IndexScan {
            ports,
            shards,
            newest_first,
            page_size: per_shard,
            budget,
            position,
            scanned: 0,
            over_budget: false,
            attrs: None,
        })
    }

    /// Reads only `attrs` of each item (and its keys).
    pub(crate) fn project(mut self, attrs: &'static [&'static str]) -> IndexScan<'a> {
        self.attrs = Some(attrs);
        self
    }

    /// The next page of every shard that has handed out all it read, concurrently.
    async fn refill(&mut self) -> ApiResult<()> {
        use mailroom_store::{Query, SkCond};
        let (table, newest_first, limit, attrs) =
            (&self.ports.table, self.newest_first, self.page_size, self.attrs);
        let pages =
            self.shards.iter().enumerate().filter(|(_, s)| s.buffered.is_empty() && !s.done).map(|(i, s)| {
                let sk = match (&s.after, newest_first) {
                    (Some(c), true) => SkCond::Lt(c.clone()),
                    (Some(c), false) => SkCond::Gt(c.clone()),
                    (None, _) => SkCond::All,
                };
                let mut q = Query::new(s.pk.clone()).index("gsi1").sk(sk).limit(limit);
                if let Some(a) = attrs {
                    q = q.project(a);
                }
                if newest_first {
                    q = q.backward();
                }
                async move { table.query(q).await.map(|page| (i, page)) }
            });
        for (i, page) in futures::future::try_join_all(pages).await? {
            let shard = &mut self.shards[i];
            shard.done = page.next.is_none() || page.items.is_empty();
            if let Some(last) = page.items.last() {
                shard.after = crate::keys::item_str(last, "gsi1sk");
            }
            shard.buffered.extend(page.items);
        }
        Ok(())
    }

    /// The next item, or `None` at the end of the partitions or of the budget.
    pub(crate) async fn next(&mut self) -> ApiResult<Option<mailroom_store::Item>> {
        if self.shards.iter().any(|s| s.buffered.is_empty() && !s.done) {
            if self.scanned >= self.budget {
                self.over_budget = true;
                return Ok(None);
            }
            self.refill().await?;
        }
        let sort_key = |i: &mailroom_store::Item| crate::keys::item_str(i, "gsi1sk").unwrap_or_default();
        let heads =
            self.shards.iter().enumerate().filter_map(|(n, s)| Some((sort_key(s.buffered.front()?), n)));
        let pick = if self.newest_first { heads.max() } else { heads.min() };
        let Some((position, n)) = pick else { return Ok(None) };
        self.scanned += 1;
        self.position = Some(position);
        Ok(self.shards[n].buffered.pop_front())
    }

    /// The cursor of the next page: after the last item handed out when the caller's page
    /// is full (`full`) or the budget ran out; `None` when the partitions are exhausted.
    pub(crate) fn next_cursor(&self, full: bool) -> Option<String> {
        (full || self.over_budget).then(|| self.position.as_deref().map(encode_cursor)).flatten()
    }
}

pub(crate) fn decode_cursor(c: Option<&str>) -> ApiResult<Option<String>> {
    use base64::Engine;
    match c.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c) => base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(c)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(Some)
            .ok_or_else(|| ApiError::BadRequest("cursor is not one this API returned".into())),
    }
}

/// Query parameters whose rejection is a problem document (axum's own is plain text).
pub struct Q<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> ApiResult<Q<T>> {
        axum::extract::Query::<T>::from_request_parts(parts, st)
            .await
            .map(|q| Q(q.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// A JSON body whose rejection is a problem document.
pub struct J<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for J<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, st: &S) -> ApiResult<J<T>> {
        match axum::Json::<T>::from_request(req, st).await {
            Ok(j) => Ok(J(j.0)),
            Err(axum::extract::rejection::JsonRejection::MissingJsonContentType(_)) => {
                Err(ApiError::BadRequest("send the body as JSON with Content-Type: application/json".into()))
            }
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// A path segment whose rejection is a problem document.
pub struct P<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &S) -> ApiResult<P<T>> {
        axum::extract::Path::<T>::from_request_parts(parts, st)
            .await
            .map(|p| P(p.0))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Items spread over shards (and the unsharded key) come out merged by sort key, page
    /// by page through the cursor, each once; a budget stops a page short with a cursor.
    #[tokio::test]
    async fn a_scan_merges_shards_by_sort_key_across_pages() {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::embedded(dir.path()).unwrap();
        let pks = crate::keys::conversations_index_pks();
        for n in 0..390u32 {
            let id = format!("c{n:03}");
            // A few in the unsharded key, as an older version wrote them.
            let pk = if n % 10 == 0 { pks[0].clone() } else { crate::keys::conversations_index_pk(&id) };
            let mut item = mailroom_store::Key::new(format!("conv#{id}"), "conv").item();
            item.insert("gsi1pk".into(), json!(pk));
            item.insert(
                "gsi1sk".into(),
                json!(format!("{:013}#{id}", 1_700_000_000_000u64 + u64::from(n) * 7)),
            );
            ports.table.put(item, None).await.unwrap();
        }
        let mut used = 0;
        for pk in &pks {
            let q = mailroom_store::Query::new(pk.clone()).index("gsi1");
            used += usize::from(!ports.table.query_all(q).await.unwrap().is_empty());
        }
        assert!(used > 10, "the items should spread over the shards: {used} used");

        let (mut seen, mut cursor, mut pages) = (Vec::new(), None::<String>, 0);
        loop {
            let mut scan = IndexScan::new(&ports, pks.clone(), cursor.as_deref(), true, 100, 1000).unwrap();
            let mut page = Vec::new();
            while let Some(i) = scan.next().await.unwrap() {
                page.push(crate::keys::item_str(&i, "gsi1sk").unwrap());
                if page.len() == 20 {
                    break;
                }
            }
            pages += 1;
            cursor = scan.next_cursor(page.len() == 20);
            seen.extend(page);
            if cursor.is_none() {
                break;
            }
        }
        assert_eq!(pages, 20, "390 items in pages of 20");
        let mut want = seen.clone();
        want.sort();
        want.reverse();
        want.dedup();
        assert_eq!(seen, want, "newest first, each once");
        assert_eq!(seen.len(), 390);

        // Oldest first, with a budget of 30: a short page, and a cursor to go on from.
        let mut scan = IndexScan::new(&ports, pks.clone(), None, false, 100, 30).unwrap();
        let mut first = Vec::new();
        while let Some(i) = scan.next().await.unwrap() {
            first.push(crate::keys::item_str(&i, "gsi1sk").unwrap());
        }
        assert!((30..390).contains(&first.len()), "{}", first.len());
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(first, sorted);
        let cursor = scan.next_cursor(false).expect("a cursor after the budget");
        let mut scan = IndexScan::new(&ports, pks, Some(&cursor), false, 100, 1000).unwrap();
        let mut rest = Vec::new();
        while let Some(i) = scan.next().await.unwrap() {
            rest.push(crate::keys::item_str(&i, "gsi1sk").unwrap());
        }
        assert_eq!(first.len() + rest.len(), 390);
        assert!(first.last() < rest.first());
    }
}
