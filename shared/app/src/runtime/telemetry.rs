use tracing_subscriber::EnvFilter;

/// JSON logs in Lambda (CloudWatch parses them), compact text on a terminal. The level
/// comes from `RUST_LOG`, else `default_level`.
pub fn init(json: bool, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let res = if json {
        b.json().with_current_span(true).without_time().try_init()
    } else {
        b.compact().try_init()
    };
    // A second init (tests) keeps the first subscriber.
    drop(res);
}
