//! Uploads of reply attachments (`crate::outbound::attach`): the file's bytes as the
//! request body, its name in the query. One request per file; the answer's `id` goes into
//! a reply's `attachments`.

use super::{ApiError, ApiResult, ApiState, Caller};
use crate::outbound::attach::{self, AttachError, Upload};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Json;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<Arc<ApiState>> {
    // The file's bytes, plus room for nothing else: the body is the file.
    OpenApiRouter::new().routes(routes!(upload)).layer(DefaultBodyLimit::max(attach::MAX_FILE))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// The file's name as the recipient will see it (path parts are dropped).
    pub filename: Option<String>,
}

/// Upload a file to attach to a reply
///
/// The request body is the file (at most 10 MiB), its `Content-Type` the file's type.
/// Answers the upload; a reply names it with `{"upload": id}`. Only its uploader may
/// attach it. Behind API Gateway and Lambda a request body is capped lower (6 MB).
#[utoipa::path(post, path = "/uploads", tag = "conversations", params(UploadParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = Upload), (status = 413, description = "Over 10 MiB"), (status = 422, body = super::Problem)))]
async fn upload(
    State(st): State<Arc<ApiState>>,
    caller: Caller,
    Query(q): Query<UploadParams>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Upload>)> {
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let name = q.filename.unwrap_or_default();
    let up = attach::upload(&st.ports, &caller.email, &name, ctype, body).await.map_err(|e| match e {
        AttachError::Invalid(m) => ApiError::Invalid(m, vec![]),
        AttachError::Other(e) => ApiError::Internal(e),
    })?;
    st.ports.flush()?;
    Ok((StatusCode::CREATED, Json(up)))
}
