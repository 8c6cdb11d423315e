//! `mailroom bench-partitions`: the pipeline's write pattern per DynamoDB partition, and
//! which partition key would pass DynamoDB's limit first at a given daily volume
//! (issue 24, docs/scale.md).
//!
//! Method: every message of a gen_corpus.py mailbox goes through ingest, match, route and
//! ticket on embedded storage (as `mailroom import` runs them), with the table behind a
//! recorder that charges each write the write units DynamoDB would: one per started KB of
//! the item written, twice inside a transaction, a failed conditional write too, and the
//! same again on the `gsi1` partition when the item carries a `gsi1pk` (the index projects
//! every attribute). Dates and hours in a key are folded into `{time}`: live traffic
//! arrives today, so every message writes the same day's bucket, whatever day the
//! corpus's message is dated. A partition's rate at the target volume is then its write
//! units per message times the messages per second: the corpus's mix stands for the
//! traffic's (4 shared inboxes, 8 agents; a workspace with more inboxes spreads the
//! per-inbox keys thinner, one busy inbox concentrates them).
//!
//! The limit is DynamoDB's 1,000 write units per second per partition (on-demand and
//! provisioned alike); adaptive capacity can split a partition's sort-key range, but not
//! a single item.

use super::pipeline;
use anyhow::{Result, bail};
use async_trait::async_trait;
use mailroom_app::Ports;
use mailroom_store::error::Result as StoreResult;
use mailroom_store::{Cond, Item, Key, Page, Query, Table, TransactOp, Update};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// DynamoDB's write units per second on one partition.
const PARTITION_WCU_PER_S: f64 = 1000.0;

pub struct Options {
    pub corpus: pipeline::Options,
    /// Messages a day at the average rate.
    pub per_day: f64,
    /// The peak as a multiple of the average.
    pub peak: f64,
    /// Rows to print.
    pub top: usize,
    /// `[reports] shards` for the run, instead of the workspace's.
    pub report_shards: Option<u8>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Tally {
    writes: u64,
    wcu: f64,
}

/// The table port with every write charged to its partition (see the module's note).
struct Recorder {
    inner: Arc<dyn Table>,
    /// By `table:{pk class}` and `gsi1:{gsi1pk class}`.
    tally: Mutex<BTreeMap<String, Tally>>,
}

impl Recorder {
    fn charge(&self, key: (&str, &str), item: Option<&Item>, factor: f64) {
        let (pk, sk) = key;
        let size = item.map(|i| serde_json::to_string(i).map(|s| s.len()).unwrap_or(0)).unwrap_or(0);
        let wcu = ((size as f64) / 1024.0).ceil().max(1.0) * factor;
        let Ok(mut t) = self.tally.lock() else { return };
        let e = t.entry(format!("table {}", fold_time(pk))).or_default();
        e.writes += 1;
        e.wcu += wcu;
        // One item's writes cannot be spread over partitions at all (a partition key's
        // items can, by sort key ranges, when DynamoDB splits a hot partition).
        let e = t.entry(format!("item  {} / {}", fold_time(pk), fold_time(sk))).or_default();
        e.writes += 1;
        e.wcu += wcu;
        if let Some(g) = item.and_then(|i| i.get("gsi1pk")).and_then(|v| v.as_str()) {
            let e = t.entry(format!("gsi1  {}", fold_time(g))).or_default();
            e.writes += 1;
            e.wcu += wcu;
        }
    }
}

#[async_trait]
impl Table for Recorder {
    async fn get(&self, key: &Key) -> StoreResult<Option<Item>> {
        self.inner.get(key).await
    }
    async fn put(&self, item: Item, cond: Option<Cond>) -> StoreResult<()> {
        if let Some(key) = Key::of(&item) {
            self.charge((&key.pk, &key.sk), Some(&item), 1.0);
        }
        self.inner.put(item, cond).await
    }
    async fn update(&self, key: &Key, actions: Vec<Update>, cond: Option<Cond>) -> StoreResult<Item> {
        let r = self.inner.update(key, actions, cond).await;
        self.charge((&key.pk, &key.sk), r.as_ref().ok(), 1.0);
        r
    }
    async fn delete(&self, key: &Key, cond: Option<Cond>) -> StoreResult<()> {
        self.charge((&key.pk, &key.sk), None, 1.0);
        self.inner.delete(key, cond).await
    }
    async fn query(&self, q: Query) -> StoreResult<Page> {
        self.inner.query(q).await
    }
    async fn transact_write(&self, ops: Vec<TransactOp>) -> StoreResult<()> {
        for op in &ops {
            match op {
                TransactOp::Put { item, .. } => {
                    if let Some(key) = Key::of(item) {
                        self.charge((&key.pk, &key.sk), Some(item), 2.0);
                    }
                }
                // The item's size after an update is not known here: one unit, doubled.
                TransactOp::Update { key, .. } | TransactOp::Delete { key, .. } => {
                    self.charge((&key.pk, &key.sk), None, 2.0)
                }
                TransactOp::Check { .. } => {}
            }
        }
        self.inner.transact_write(ops).await
    }
    fn flush(&self) -> StoreResult<()> {
        self.inner.flush()
    }
}

/// Folds dates and times (`2026-12-07`, `2026-12`, `2026-12-07T09`) into `{time}`.
fn fold_time(key: &str) -> String {
    let b = key.as_bytes();
    let mut out = String::with_capacity(key.len());
    let mut i = 0;
    while i < b.len() {
        let date = i + 7 <= b.len()
            && b[i..i + 4].iter().all(u8::is_ascii_digit)
            && b[i + 4] == b'-'
            && b[i + 5..i + 7].iter().all(u8::is_ascii_digit);
        if date {
            out.push_str("{time}");
            i += 7;
            while i < b.len() && (b[i].is_ascii_digit() || matches!(b[i], b'-' | b'T' | b':' | b'.' | b'Z')) {
                i += 1;
            }
        } else {
            let ch = key[i..].chars().next().unwrap_or('?');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[derive(Debug, Serialize)]
struct Row {
    partition: String,
    writes_per_message: f64,
    wcu_per_message: f64,
    wcu_per_s_average: f64,
    wcu_per_s_peak: f64,
    over_limit: bool,
}

pub async fn run(o: Options) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("mailroom-partitions-").tempdir()?;
    let dir = pipeline::corpus_dir(&o.corpus, tmp.path())?;
    let mut ws = pipeline::workspace(&o.corpus)?;
    if o.report_shards.is_some() {
        ws.reports.shards = o.report_shards;
    }
    let mut ports = Ports::embedded(&tmp.path().join("data"))?;
    mailroom_app::workspace::apply(&ports, &ws).await?;
    let recorder = Arc::new(Recorder { inner: ports.table.clone(), tally: Mutex::new(BTreeMap::new()) });
    ports.table = recorder.clone();
    let summary = crate::import::import(&ports, &dir, None, None, &Default::default()).await?;
    if summary.failed + summary.dead_lettered > 0 {
        bail!(
            "{} messages failed, {} dead-lettered: the figures would be short",
            summary.failed,
            summary.dead_lettered
        );
    }
    let messages = summary.read as f64;
    if messages == 0.0 {
        bail!("no messages in {}", dir.display());
    }
    let average = o.per_day / 86_400.0;
    let peak = average * o.peak;
    let tally = recorder.tally.lock().map_err(|_| anyhow::anyhow!("tally lock"))?.clone();
    let mut rows: Vec<Row> = tally
        .iter()
        .map(|(k, t)| {
            let per = t.wcu / messages;
            Row {
                partition: k.clone(),
                writes_per_message: t.writes as f64 / messages,
                wcu_per_message: per,
                wcu_per_s_average: per * average,
                wcu_per_s_peak: per * peak,
                over_limit: per * peak > PARTITION_WCU_PER_S,
            }
        })
        .collect();
    rows.sort_by(|a, b| b.wcu_per_message.total_cmp(&a.wcu_per_message));
    let total: f64 =
        tally.iter().filter(|(k, _)| k.starts_with("table")).map(|(_, t)| t.wcu).sum::<f64>() / messages;
    let over = rows.iter().filter(|r| r.over_limit).count();
    if o.corpus.json {
        let out = serde_json::json!({
            "messages": messages, "per_day": o.per_day, "average_per_s": average, "peak_per_s": peak,
            "table_wcu_per_message": total, "partitions_over_limit": over, "rows": rows,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{messages:.0} messages; {:.0} a day = {average:.1}/s average, {peak:.0}/s at {}x; {total:.2} table write units per message",
        o.per_day, o.peak
    );
    println!(
        "{:<58} {:>9} {:>9} {:>10} {:>10}",
        "partition (dates folded)", "writes/msg", "WCU/msg", "WCU/s avg", "WCU/s peak"
    );
    for r in rows.iter().take(o.top) {
        println!(
            "{:<58} {:>9.3} {:>9.3} {:>10.1} {:>10.1}{}",
            r.partition.chars().take(58).collect::<String>(),
            r.writes_per_message,
            r.wcu_per_message,
            r.wcu_per_s_average,
            r.wcu_per_s_peak,
            if r.over_limit { "  OVER 1,000" } else { "" }
        );
    }
    println!("{over} partition(s) over {PARTITION_WCU_PER_S:.0} write units/s at the peak");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_and_hours_fold_and_nothing_else_does() {
        assert_eq!(super::fold_time("rpt#2026-12-07#support@x"), "rpt#{time}#support@x");
        assert_eq!(super::fold_time("h#2026-12-07T09#a"), "h#{time}#a");
        assert_eq!(super::fold_time("conv#c508ac0c036bf48b5"), "conv#c508ac0c036bf48b5");
        assert_eq!(super::fold_time("inbox#1234-x"), "inbox#1234-x");
        assert_eq!(super::fold_time("ünï#2026-01"), "ünï#{time}");
    }
}
