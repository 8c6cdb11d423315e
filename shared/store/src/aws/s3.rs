use super::describe;
use crate::blob::{BlobStore, PutOutcome};
use crate::error::{Result, StoreError};
use crate::meter;
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::SdkError;
use bytes::Bytes;

#[derive(Clone, Debug)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
}

impl S3BlobStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        S3BlobStore { client, bucket: bucket.into() }
    }
}

fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    match e {
        SdkError::ServiceError(se) => Some(se.raw().status().as_u16()),
        _ => None,
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put_if_absent(&self, key: &str, body: Bytes, content_type: &str) -> Result<PutOutcome> {
        meter::record("s3", "PutObject", 1.0, body.len() as u64);
        // `If-None-Match: *` makes S3 refuse to overwrite (412) or report a concurrent
        // conditional write (409): either way the object is there and content-addressed.
        let res = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .if_none_match("*")
            .body(body.into())
            .send()
            .await;
        match res {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) if matches!(status(&e), Some(412 | 409)) => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(StoreError::Backend(format!("s3 put {key}: {}", describe(&e)))),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        meter::record("s3", "GetObject", 1.0, 0);
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                let data = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| StoreError::Backend(format!("s3 read {key}: {e}")))?;
                Ok(Some(data.into_bytes()))
            }
            Err(e) if status(&e) == Some(404) => Ok(None),
            Err(e) => Err(StoreError::Backend(format!("s3 get {key}: {}", describe(&e)))),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        meter::record("s3", "HeadObject", 1.0, 0);
        match self.client.head_object().bucket(&self.bucket).key(key).send().await {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(404) => Ok(false),
            Err(e) => Err(StoreError::Backend(format!("s3 head {key}: {}", describe(&e)))),
        }
    }

    /// A presigned GetObject: S3 answers it with the given Content-Disposition and
    /// Content-Type (the `response-*` overrides are part of the signature), on S3's own
    /// origin, so an attachment never renders as a page of ours.
    async fn download_url(
        &self,
        key: &str,
        ttl: std::time::Duration,
        filename: &str,
        content_type: &str,
    ) -> Result<Option<String>> {
        let conf = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl)
            .map_err(|e| StoreError::Backend(format!("s3 presign {key}: {e}")))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(format!("attachment; filename=\"{filename}\""))
            .response_content_type(content_type)
            .presigned(conf)
            .await
            .map_err(|e| StoreError::Backend(format!("s3 presign {key}: {}", describe(&e))))?;
        Ok(Some(req.uri().to_string()))
    }
}
