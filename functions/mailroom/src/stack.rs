//! `--stack NAME`: the storage of a deployed stack, found from its CloudFormation outputs
//! (`MainTableName`, `MailBucketName`, `KeyArn`, `ThreadKeySecretArn`), with the caller's
//! own AWS credentials (the `AWS_PROFILE`/`AWS_REGION` chain). What `mailroom apply` writes
//! there is what the deployed functions read.

use anyhow::{Context, Result};
use mailroom_app::Ports;
use mailroom_app::runtime::config::AwsConfig;
use mailroom_store::aws::AwsClients;
use std::collections::HashMap;

pub async fn ports(name: &str) -> Result<Ports> {
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let cfn = aws_sdk_cloudformation::Client::new(&conf);
    let found = cfn
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .with_context(|| format!("reading stack {name} (check AWS_PROFILE and AWS_REGION)"))?;
    let stack = found.stacks().first().with_context(|| format!("no stack named {name}"))?;
    let outputs: HashMap<&str, &str> =
        stack.outputs().iter().filter_map(|o| Some((o.output_key()?, o.output_value()?))).collect();
    let need = |k: &str| -> Result<String> {
        outputs.get(k).map(|v| v.to_string()).with_context(|| {
            format!("stack {name} has no output {k}: deploy this version's infra/template.yaml first")
        })
    };
    let clients = AwsClients::from_env().await;
    let secret = need("ThreadKeySecretArn")?;
    let thread_key = clients.secret_string(&secret).await.with_context(|| format!("reading {secret}"))?;
    let cfg = AwsConfig {
        bucket: need("MailBucketName")?,
        table: need("MainTableName")?,
        ingest_queue_url: None,
        route_queue_url: None,
        ticket_queue_url: None,
        sync_queue_url: None,
        send_queue_url: None,
        thread_key: thread_key.into_bytes(),
        kms_key_id: Some(need("KeyArn")?),
    };
    Ok(Ports::aws(&clients, &cfg))
}
