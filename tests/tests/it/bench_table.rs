//! scripts/bench_table.py: the one table of `scripts/bench.sh` (issue 23, target 6). Its
//! figures are read, not asserted, but what it says about them must be right: a figure
//! beside its target, met or missed by the right comparison, and a step that did not run
//! never shown as met.

use mailroom_tests::repo_root;
use std::process::Command;

fn table(dir: &std::path::Path, extra: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(repo_root().join("scripts/bench_table.py"))
        .arg(dir)
        .args(extra)
        .output()
        .expect("python3 runs (it is what scripts/bench.sh runs the table with)");
    assert!(out.status.success(), "bench_table.py failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn row<'a>(table: &'a str, figure: &str) -> Vec<&'a str> {
    let line = table.lines().find(|l| l.starts_with(&format!("| {figure}"))).unwrap_or_else(|| {
        panic!("no row {figure:?} in\n{table}");
    });
    line.trim_matches('|').split('|').map(str::trim).collect()
}

#[test]
fn the_bench_table_puts_each_figure_beside_its_target_and_never_calls_a_missing_step_met() {
    let dir = tempfile::tempdir().unwrap();
    let write =
        |name: &str, v: serde_json::Value| std::fs::write(dir.path().join(name), v.to_string()).unwrap();
    write(
        "bench.json",
        serde_json::json!({
            "floor": {"messages_per_s": 6000.0},
            "pipeline": {"messages_per_s": 2400.0},
            "latency": {"p50_ms": 1.5, "p99_ms": 4.0},
            "operations_per_message": {"embedded-table:GetItem": 12.5, "embedded-table:PutItem": 8.0},
        }),
    );
    write(
        "report.json",
        serde_json::json!([
            {"conversations": 10000, "reports": [["all 30 days", 60.0, 1], ["one inbox", 20.0, 1]]},
            {"conversations": 100000, "reports": [["all 30 days", 99.0, 1], ["one inbox", 40.0, 1]]},
        ]),
    );
    write(
        "lambda.json",
        serde_json::json!({"functions": [
            {"function": "mailroom-api", "zip_mib": 11.88},
            {"function": "mailroom-match", "zip_mib": 7.9},
        ]}),
    );
    let t = table(dir.path(), &[]);

    assert_eq!(row(&t, "1. embedded pipeline")[1..3], ["2,400", ">= 2,000"]);
    assert_eq!(row(&t, "1. embedded pipeline")[4], "met");
    // 6,000 / 2,400 = 2.5x, within 3x.
    assert_eq!(row(&t, "1. floor / pipeline")[1..], ["2.5x", "<= 3x", "", "met"]);
    // 20.5 operations: not under 20.
    assert_eq!(row(&t, "1. storage operations")[1], "20.5");
    assert_eq!(row(&t, "1. storage operations")[4], "**missed**");
    assert_eq!(row(&t, "3. report 'all 30 days' at 100,000")[4], "met");
    // 99 / 60 = 1.65x: missed; 40 / 20 = 2x: missed.
    assert_eq!(
        row(&t, "3. report 'all 30 days', 100,000 over 10,000")[1..],
        ["1.65x", "<= 1.5x", "", "**missed**"]
    );
    assert_eq!(row(&t, "5. largest Lambda zip")[1..], ["11.88", "< 10", "mailroom-api", "**missed**"]);
    // The steps that wrote nothing.
    for figure in ["2. AWS US$ per 100,000 messages, full", "4. 2 GiB", "5. 25 MB message", "5. Lambda init"]
    {
        let r = row(&t, figure);
        assert_eq!((r[1], r[4]), ("not run", "not run"), "{figure}");
    }

    let history = table(dir.path(), &["--history"]);
    let cells: Vec<&str> = history.trim().trim_matches('|').split('|').map(str::trim).collect();
    assert_eq!(cells[2..8], ["2,400", "20.5", "not run", "not run", "99.0", "not run"]);
    let met = t.lines().filter(|l| l.ends_with("| met |")).count();
    // Rows with a target: met, missed or not run (the latency has none).
    let rows = t
        .lines()
        .filter(|l| ["| met |", "| **missed** |", "| not run |"].iter().any(|e| l.ends_with(e)))
        .count();
    assert_eq!(cells[8], format!("{met} of {rows}"));
}
