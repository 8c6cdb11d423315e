//! `mailroom bench-partitions` (docs/scale.md): the simulation of the pipeline's writes
//! per DynamoDB partition finds the hot keys, and its verdict follows the volume.

use mailroom_tests::{gen_corpus, mailroom_json};
use serde_json::Value;

fn run(corpus: &std::path::Path, per_day: &str) -> Value {
    let data = tempfile::tempdir().unwrap();
    let corpus = corpus.to_str().unwrap();
    mailroom_json(
        data.path(),
        &["bench-partitions", "--corpus", corpus, "--per-day", per_day, "--top", "5", "--json"],
    )
}

fn row<'a>(v: &'a Value, partition: &str) -> &'a Value {
    v["rows"].as_array().unwrap().iter().find(|r| r["partition"] == partition).unwrap_or_else(|| {
        panic!("no row {partition:?} in {}", serde_json::to_string_pretty(&v["rows"]).unwrap())
    })
}

#[test]
fn the_partition_simulation_finds_the_hot_keys_and_scales_with_the_volume() {
    let corpus = tempfile::tempdir().unwrap();
    gen_corpus(corpus.path(), 60, 11);
    let big = run(corpus.path(), "10000000");
    let messages = big["messages"].as_f64().unwrap();
    assert!(messages > 100.0, "{big}");
    // Every message writes its conversation's list index entry and its inbox's message
    // index; the report's day list is one item whatever the date.
    let conversations = row(&big, "gsi1  conversations");
    assert!(conversations["writes_per_message"].as_f64().unwrap() >= 1.0, "{conversations}");
    let days = row(&big, "item  rpt-days / {time}");
    assert!(days["wcu_per_message"].as_f64().unwrap() > 0.0, "{days}");
    // 10 million a day at a peak of 10x: the shared index keys pass 1,000 WCU/s.
    assert_eq!(conversations["over_limit"], true, "{conversations}");
    assert!(big["partitions_over_limit"].as_u64().unwrap() >= 1, "{big}");
    // A hundredth of that: nothing does, and the rates are a hundredth.
    let small = run(corpus.path(), "100000");
    assert_eq!(small["partitions_over_limit"], 0, "{small}");
    let a = conversations["wcu_per_s_peak"].as_f64().unwrap();
    let b = row(&small, "gsi1  conversations")["wcu_per_s_peak"].as_f64().unwrap();
    assert!((a / b - 100.0).abs() < 1e-6, "{a} / {b}");
}
