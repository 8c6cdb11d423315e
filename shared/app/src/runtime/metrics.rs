//! Metrics as CloudWatch embedded metric format (EMF) log lines: in Lambda a log line
//! becomes the metric, with no API call and no extra permission.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

/// Prints one CloudWatch embedded-metric-format line (namespace `Mailroom`) when running
/// in Lambda, where the log line becomes the metrics; elsewhere nothing. `dims` are the
/// dimension sets, `props` the dimension values, `metrics` (name, value, unit).
pub fn emf(now: DateTime<Utc>, dims: Value, props: &[(&str, Value)], metrics: &[(&str, Value, &str)]) {
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_none() || metrics.is_empty() {
        return;
    }
    let mut line = serde_json::Map::new();
    line.insert(
        "_aws".into(),
        json!({
            "Timestamp": now.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": "Mailroom",
                "Dimensions": dims,
                "Metrics": metrics.iter().map(|m| json!({"Name": m.0, "Unit": m.2})).collect::<Vec<_>>(),
            }],
        }),
    );
    for (k, v) in props {
        line.insert((*k).into(), v.clone());
    }
    for (name, v, _) in metrics {
        line.insert((*name).into(), v.clone());
    }
    println!("{}", Value::Object(line));
}
