//! Helpers for the integration tests: the moto server, AWS resources on it, a private
//! dovecot (`dovecot`), paths.
//!
//! Services are never skipped: a test that needs moto and cannot find it fails with a
//! message that says how to get it.

pub mod dovecot;
pub mod mock_apigw;
pub mod mock_google;
pub mod mock_graph;
pub mod serve;
pub mod smtp;
pub mod smtp_sink;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use aws_sdk_sqs::types::QueueAttributeName;
use mailroom_app::Ports;
use mailroom_store::SystemClock;
use mailroom_store::aws::{AwsClients, DynamoTable, S3BlobStore, SqsQueue};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// `../shared` beside the repository: the corpora and the traffic generator.
pub fn shared_dir() -> PathBuf {
    let p = repo_root().parent().expect("repo has a parent").join("shared");
    assert!(
        p.join("tools/gen_corpus.py").is_file(),
        "../shared/tools/gen_corpus.py not found beside the repository at {}",
        p.display()
    );
    p
}

/// A built binary of the workspace (nextest and cargo test build them first).
pub fn bin(name: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    let p = target.join("debug").join(name);
    assert!(
        p.is_file(),
        "{} is not built: run `cargo build --workspace` first (scripts/test.sh does)",
        p.display()
    );
    p
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on loopback")
}

struct Moto {
    endpoint: String,
    _child: Option<Child>,
}

static MOTO: OnceLock<Moto> = OnceLock::new();

/// The endpoint of a running moto server: the one scripts/test.sh started
/// (`MAILROOM_TEST_MOTO`), or one started here from the project's `.venv`.
pub fn moto_endpoint() -> String {
    MOTO.get_or_init(|| {
        if let Ok(ep) = std::env::var("MAILROOM_TEST_MOTO") {
            return Moto { endpoint: ep, _child: None };
        }
        let exe = repo_root().join(".venv/bin/moto_server");
        let python = repo_root().join(".venv/bin/python");
        let launcher = repo_root().join("scripts/moto_server.py");
        assert!(
            exe.is_file(),
            "moto is not installed: {} is missing. Run scripts/test.sh (it creates .venv and installs moto[server]), \
             or set MAILROOM_TEST_MOTO to the URL of a running moto server",
            exe.display()
        );
        let port = free_port();
        // A static is never dropped: a watchdog shell stops moto when this test process ends.
        let script = format!(
            "\"{}\" \"{}\" -H 127.0.0.1 -p {port} & m=$!; while kill -0 {} 2>/dev/null; do sleep 1; done; kill $m",
            python.display(),
            launcher.display(),
            std::process::id()
        );
        let child = Command::new("bash")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        wait_for_port(port, Duration::from_secs(30));
        Moto { endpoint, _child: Some(child) }
    })
    .endpoint
    .clone()
}

pub fn wait_for_port(port: u16, max: Duration) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < max, "nothing listens on 127.0.0.1:{port} after {max:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Environment for a child process that talks to moto.
pub fn moto_env() -> Vec<(String, String)> {
    vec![
        ("AWS_ENDPOINT_URL".into(), moto_endpoint()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ]
}

/// The AWS SDK configuration for the moto server.
pub async fn moto_conf() -> aws_config::SdkConfig {
    let creds = aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "moto");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(moto_endpoint())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .load()
        .await
}

pub async fn moto_clients() -> AwsClients {
    AwsClients::from_conf(&moto_conf().await, true)
}

/// A fresh EventBridge bus on moto whose every `mailroom` event lands in a fresh SQS
/// queue, where a test can read what was published: `(bus name, queue URL)`.
pub async fn event_bus_into_queue(conf: &aws_config::SdkConfig) -> (String, String) {
    let (eb, sqs) = (aws_sdk_eventbridge::Client::new(conf), aws_sdk_sqs::Client::new(conf));
    let bus = unique("bus");
    eb.create_event_bus().name(&bus).send().await.unwrap();
    let q = sqs.create_queue().queue_name(unique("bus-q")).send().await.unwrap();
    let q_url = q.queue_url().unwrap().to_string();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&q_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let q_arn = attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
    eb.put_rule()
        .name("all")
        .event_bus_name(&bus)
        .event_pattern(r#"{"source":["mailroom"]}"#)
        .send()
        .await
        .unwrap();
    eb.put_targets()
        .rule("all")
        .event_bus_name(&bus)
        .targets(aws_sdk_eventbridge::types::Target::builder().id("q").arn(&q_arn).build().unwrap())
        .send()
        .await
        .unwrap();
    (bus, q_url)
}

/// A fresh bucket, table (with gsi1), ingest queue and its DLQ on moto.
pub struct AwsStack {
    pub clients: AwsClients,
    pub bucket: String,
    pub table: String,
    pub queue_url: String,
    pub dlq_url: String,
    pub route_url: String,
    pub route_dlq_url: String,
    pub ticket_url: String,
    pub ticket_dlq_url: String,
    pub sync_url: String,
    pub sync_dlq_url: String,
    pub send_url: String,
    pub send_dlq_url: String,
    /// The KMS key that seals mailbox credentials.
    pub kms_key: String,
    /// The Secrets Manager secret holding [`TEST_THREAD_KEY`] (the template's
    /// `ThreadKeySecret`): functions get its ARN, never the key, in their environment.
    pub thread_key_secret: String,
}

/// A queue with a dead-letter queue after 5 receives (the template's redrive policy).
async fn create_queue_pair(clients: &AwsClients, stage: &str) -> (String, String) {
    let qname = unique(stage);
    let dlq_url = clients
        .sqs
        .create_queue()
        .queue_name(format!("{qname}-dlq"))
        .send()
        .await
        .expect("create dlq")
        .queue_url()
        .expect("dlq url")
        .to_string();
    let dlq_arn = clients
        .sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("dlq arn")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .expect("dlq arn attribute");
    let queue_url = clients
        .sqs
        .create_queue()
        .queue_name(&qname)
        .attributes(
            QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}).to_string(),
        )
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string();
    (queue_url, dlq_url)
}

impl AwsStack {
    pub async fn create() -> AwsStack {
        let clients = moto_clients().await;
        let bucket = unique("mailroom-test");
        let table = unique("mailroom-main");
        clients.s3.create_bucket().bucket(&bucket).send().await.expect("create bucket on moto");
        let s = |n: &str| {
            AttributeDefinition::builder()
                .attribute_name(n)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attr")
        };
        let k = |n: &str, t: KeyType| {
            KeySchemaElement::builder().attribute_name(n).key_type(t).build().expect("key")
        };
        clients
            .dynamodb
            .create_table()
            .table_name(&table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(s("pk"))
            .attribute_definitions(s("sk"))
            .attribute_definitions(s("gsi1pk"))
            .attribute_definitions(s("gsi1sk"))
            .key_schema(k("pk", KeyType::Hash))
            .key_schema(k("sk", KeyType::Range))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name("gsi1")
                    .key_schema(k("gsi1pk", KeyType::Hash))
                    .key_schema(k("gsi1sk", KeyType::Range))
                    .projection(Projection::builder().projection_type(ProjectionType::All).build())
                    .build()
                    .expect("gsi"),
            )
            .send()
            .await
            .expect("create table on moto");
        let (queue_url, dlq_url) = create_queue_pair(&clients, "ingest").await;
        let (route_url, route_dlq_url) = create_queue_pair(&clients, "route").await;
        let (ticket_url, ticket_dlq_url) = create_queue_pair(&clients, "ticket").await;
        let (sync_url, sync_dlq_url) = create_queue_pair(&clients, "sync").await;
        let (send_url, send_dlq_url) = create_queue_pair(&clients, "send").await;
        let kms_key = clients
            .kms
            .create_key()
            .description("mailroom test secrets")
            .send()
            .await
            .expect("create KMS key on moto")
            .key_metadata
            .map(|m| m.key_id)
            .expect("KMS key id");
        let thread_key_secret = clients
            .secretsmanager
            .create_secret()
            .name(unique("thread-key"))
            .secret_string(TEST_THREAD_KEY)
            .send()
            .await
            .expect("creating the thread key secret on moto")
            .arn()
            .expect("secret ARN")
            .to_string();
        AwsStack {
            kms_key,
            thread_key_secret,
            clients,
            bucket,
            table,
            queue_url,
            dlq_url,
            route_url,
            route_dlq_url,
            ticket_url,
            ticket_dlq_url,
            sync_url,
            sync_dlq_url,
            send_url,
            send_dlq_url,
        }
    }

    pub fn ports(&self) -> Ports {
        Ports {
            blobs: Arc::new(S3BlobStore::new(self.clients.s3.clone(), &self.bucket)),
            table: Arc::new(DynamoTable::new(self.clients.dynamodb.clone(), &self.table)),
            ingest_queue: Arc::new(SqsQueue::new(self.clients.sqs.clone(), &self.queue_url)),
            ingest_dlq: Some(Arc::new(SqsQueue::new(self.clients.sqs.clone(), &self.dlq_url))),
            route_queue: Arc::new(SqsQueue::new(self.clients.sqs.clone(), &self.route_url)),
            route_dlq: Some(Arc::new(SqsQueue::new(self.clients.sqs.clone(), &self.route_dlq_url))),
            ticket_queue: Arc::new(SqsQueue::new(self.clients.sqs.clone(), &self.ticket_url)),
            ticket_dlq: Some(Arc::new(SqsQueue::new(self.clients.sqs.clone(), &self.ticket_dlq_url))),
            sync_queue: Arc::new(SqsQueue::new(self.clients.sqs.clone(), &self.sync_url)),
            sync_dlq: Some(Arc::new(SqsQueue::new(self.clients.sqs.clone(), &self.sync_dlq_url))),
            send_queue: Arc::new(SqsQueue::new(self.clients.sqs.clone(), &self.send_url)),
            send_dlq: Some(Arc::new(SqsQueue::new(self.clients.sqs.clone(), &self.send_dlq_url))),
            clock: Arc::new(SystemClock),
            signer: mailroom_core::ThreadSigner::new(TEST_THREAD_KEY.as_bytes().to_vec()),
            secrets: Arc::new(mailroom_store::aws::KmsSecrets::new(self.clients.kms.clone(), &self.kms_key)),
            written: Arc::default(),
        }
    }

    /// The environment the SAM template gives a function, pointed at this stack.
    pub fn function_env(&self) -> Vec<(String, String)> {
        let mut env = moto_env();
        env.push(("MAILROOM_BUCKET".into(), self.bucket.clone()));
        env.push(("MAILROOM_TABLE".into(), self.table.clone()));
        env.push(("MAILROOM_INGEST_QUEUE_URL".into(), self.queue_url.clone()));
        env.push(("MAILROOM_ROUTE_QUEUE_URL".into(), self.route_url.clone()));
        env.push(("MAILROOM_TICKET_QUEUE_URL".into(), self.ticket_url.clone()));
        env.push(("MAILROOM_SYNC_QUEUE_URL".into(), self.sync_url.clone()));
        env.push(("MAILROOM_SEND_QUEUE_URL".into(), self.send_url.clone()));
        // As the template does it: the secret's ARN, read by the function at start.
        env.push(("MAILROOM_THREAD_KEY_SECRET_ARN".into(), self.thread_key_secret.clone()));
        env.push(("MAILROOM_KMS_KEY_ID".into(), self.kms_key.clone()));
        env
    }
}

/// `MAILROOM_INGEST_TOKEN` of the serve instances the tests start: `POST /ingest` needs it.
pub const INGEST_TOKEN: &str = "test-ingest-token-0123456789";

/// The thread-signing key the moto-backed tests give the functions.
pub const TEST_THREAD_KEY: &str = "test-thread-key-0123456789abcdef0123";

/// Runs gen_corpus.py into `out`.
pub fn gen_corpus(out: &Path, conversations: u32, seed: u32) {
    let st = Command::new("python3")
        .arg(shared_dir().join("tools/gen_corpus.py"))
        .args([
            "--out",
            &out.display().to_string(),
            "--conversations",
            &conversations.to_string(),
            "--seed",
            &seed.to_string(),
            "--quiet",
        ])
        .status()
        .expect("python3 is needed to run gen_corpus.py");
    assert!(st.success(), "gen_corpus.py failed");
}

/// The workspace of examples/acme-corp.toml (the rules gen_corpus.py's truth follows).
pub fn acme_workspace() -> mailroom_core::workspace::Workspace {
    let text = std::fs::read_to_string(repo_root().join("examples/acme-corp.toml"))
        .expect("reading examples/acme-corp.toml");
    mailroom_core::workspace::parse_toml(&text).expect("examples/acme-corp.toml is valid")
}

/// The Makefile's map from the template's functions to the workspace's binaries (its
/// `build-<LogicalId>: BIN = <bin>` lines, the ones `sam build` runs), in order.
pub fn makefile_functions() -> Vec<(String, String)> {
    let makefile = std::fs::read_to_string(repo_root().join("Makefile")).expect("reading the Makefile");
    makefile
        .lines()
        .filter_map(|l| l.strip_prefix("build-")?.split_once(": BIN = "))
        .map(|(id, bin)| (id.to_string(), bin.trim().to_string()))
        .collect()
}

/// [`acme_workspace`] with a chat widget `site` on sales@, allowed on `origin`.
pub fn acme_workspace_with_chat(origin: &str) -> mailroom_core::workspace::Workspace {
    let mut ws = acme_workspace();
    ws.chat_widgets.push(mailroom_core::workspace::ChatWidget {
        id: "site".into(),
        inbox: "sales@acme-corp.example".into(),
        allowed_origins: vec![origin.into()],
        ..Default::default()
    });
    ws
}

/// Runs `mailroom --data DATA ARGS...`, requires success, returns its standard output.
pub fn mailroom_ok(data: &Path, args: &[&str]) -> Vec<u8> {
    let out =
        Command::new(bin("mailroom")).arg("--data").arg(data).args(args).output().expect("running mailroom");
    assert!(out.status.success(), "mailroom {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// A development API token for `user` on the data directory (`mailroom token USER`).
pub fn dev_token(data: &Path, user: &str) -> String {
    String::from_utf8(mailroom_ok(data, &["token", user])).expect("a token is text").trim().to_string()
}

/// [`mailroom_ok`] for a command that prints JSON.
pub fn mailroom_json(data: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&mailroom_ok(data, args)).expect("mailroom printed JSON")
}
