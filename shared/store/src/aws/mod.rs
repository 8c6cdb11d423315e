//! AWS adapters: S3, SQS, DynamoDB, KMS, EventBridge, SES. Clients are built once per process from the standard
//! AWS environment, so `AWS_ENDPOINT_URL` points every client at moto in tests.

mod dynamodb;
mod eventbridge;
mod kms;
mod s3;
mod ses;
mod sqs;

pub use dynamodb::DynamoTable;
pub use eventbridge::EventBridgeBus;
pub use kms::{KmsSecrets, NoSecrets};
pub use s3::S3BlobStore;
pub use ses::SesSender;
pub use sqs::SqsQueue;

/// The SDK clients of one process.
#[derive(Clone, Debug)]
pub struct AwsClients {
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub secretsmanager: aws_sdk_secretsmanager::Client,
}

impl AwsClients {
    /// Loads region, credentials and endpoint from the environment. S3 uses path-style
    /// addressing when a custom endpoint is set (moto, MinIO) or `MAILROOM_S3_PATH_STYLE=1`.
    pub async fn from_env() -> AwsClients {
        let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let custom_endpoint = std::env::var_os("AWS_ENDPOINT_URL").is_some()
            || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
            || std::env::var("MAILROOM_S3_PATH_STYLE").is_ok_and(|v| v == "1");
        AwsClients::from_conf(&conf, custom_endpoint)
    }

    pub fn from_conf(conf: &aws_config::SdkConfig, s3_path_style: bool) -> AwsClients {
        let s3conf = aws_sdk_s3::config::Builder::from(conf).force_path_style(s3_path_style).build();
        AwsClients {
            s3: aws_sdk_s3::Client::from_conf(s3conf),
            sqs: aws_sdk_sqs::Client::new(conf),
            dynamodb: aws_sdk_dynamodb::Client::new(conf),
            kms: aws_sdk_kms::Client::new(conf),
            secretsmanager: aws_sdk_secretsmanager::Client::new(conf),
        }
    }

    /// The `SecretString` of a Secrets Manager secret (by ARN or name): configuration
    /// secrets are read once at start, never kept in the environment (docs/security.md).
    pub async fn secret_string(&self, id: &str) -> Result<String, crate::StoreError> {
        let out = self
            .secretsmanager
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| crate::StoreError::Backend(format!("secret {id}: {}", describe(&e))))?;
        out.secret_string()
            .map(str::to_string)
            .ok_or_else(|| crate::StoreError::Backend(format!("secret {id} has no SecretString")))
    }
}

/// The message of an SDK error with its source chain, for logs and `StoreError::Backend`.
pub(crate) fn describe<E: std::error::Error>(e: &E) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}
