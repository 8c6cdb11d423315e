//! Request metering of the storage adapters: every S3, SQS and DynamoDB call is counted
//! per service and operation, with the billing units AWS charges for it (DynamoDB read and
//! write request units from item sizes, SQS 64 KiB payload chunks); the embedded adapters
//! count their operations (`embedded-*` services). The cost benchmark (tests/src/bin/cost.rs)
//! and `mailroom bench` read it to print requests per message; it costs one uncontended
//! mutex per operation.
//!
//! Units are computed here from the items themselves rather than asked of DynamoDB with
//! `ReturnConsumedCapacity`: the figures must be right against moto too, which reports a
//! flat 1.0 whatever the item size.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Calls and billing units of one operation.
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize)]
pub struct OpCount {
    pub requests: u64,
    /// DynamoDB: read or write request units; SQS: 64 KiB chunks; S3: requests.
    pub units: f64,
    /// Payload bytes sent (S3 PUT bodies, SQS bodies, DynamoDB items written).
    pub bytes: u64,
}

/// `service -> operation -> counts`.
pub type Snapshot = BTreeMap<String, BTreeMap<String, OpCount>>;

static METER: Mutex<BTreeMap<(&'static str, &'static str), OpCount>> = Mutex::new(BTreeMap::new());

/// Counts one request.
pub fn record(service: &'static str, op: &'static str, units: f64, bytes: u64) {
    let mut m = METER.lock().unwrap_or_else(|p| p.into_inner());
    let c = m.entry((service, op)).or_default();
    c.requests += 1;
    c.units += units;
    c.bytes += bytes;
}

/// The counts since the start of the process or the last `reset`.
pub fn snapshot() -> Snapshot {
    let m = METER.lock().unwrap_or_else(|p| p.into_inner());
    let mut out = Snapshot::new();
    for ((svc, op), c) in m.iter() {
        out.entry(svc.to_string()).or_default().insert(op.to_string(), *c);
    }
    out
}

pub fn reset() {
    METER.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// DynamoDB's size of an item: attribute names plus values, by the rules of
/// <https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html>.
pub fn dynamo_item_size(
    item: &std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
) -> u64 {
    item.iter().map(|(k, v)| k.len() as u64 + av_size(v)).sum()
}

fn av_size(v: &aws_sdk_dynamodb::types::AttributeValue) -> u64 {
    use aws_sdk_dynamodb::types::AttributeValue as A;
    match v {
        A::S(s) => s.len() as u64,
        // Numbers: about one byte per two significant digits, plus one.
        A::N(n) => (n.trim_start_matches('-').len() as u64).div_ceil(2) + 1,
        A::B(b) => b.as_ref().len() as u64,
        A::Bool(_) | A::Null(_) => 1,
        A::L(l) => 3 + l.iter().map(|x| 1 + av_size(x)).sum::<u64>(),
        A::M(m) => 3 + m.iter().map(|(k, x)| 1 + k.len() as u64 + av_size(x)).sum::<u64>(),
        A::Ss(l) => l.iter().map(|s| s.len() as u64).sum(),
        A::Ns(l) => l.iter().map(|n| (n.len() as u64).div_ceil(2) + 1).sum(),
        A::Bs(l) => l.iter().map(|b| b.as_ref().len() as u64).sum(),
        _ => 1,
    }
}

/// Write request units of one item write: one per started KiB, at least one.
pub fn write_units(size: u64) -> f64 {
    size.div_ceil(1024).max(1) as f64
}

/// Read request units of a read returning `size` bytes: one per started 4 KiB
/// (strongly consistent), half of that when eventually consistent; at least one unit
/// (or half) even when nothing is found.
pub fn read_units(size: u64, consistent: bool) -> f64 {
    let u = size.div_ceil(4096).max(1) as f64;
    if consistent { u } else { u / 2.0 }
}

/// SQS bills one request per started 64 KiB of payload.
pub fn sqs_units(bytes: u64) -> f64 {
    bytes.div_ceil(64 * 1024).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::types::AttributeValue as A;
    use std::collections::HashMap;

    #[test]
    fn item_sizes_follow_dynamodb_rules() {
        let mut item = HashMap::new();
        item.insert("pk".to_string(), A::S("msg#1".into())); // 2 + 5
        item.insert("n".to_string(), A::N("12345".into())); // 1 + 4
        item.insert("ok".to_string(), A::Bool(true)); // 2 + 1
        item.insert("l".to_string(), A::L(vec![A::S("ab".into())])); // 1 + 3 + 1 + 2
        assert_eq!(dynamo_item_size(&item), 7 + 5 + 3 + 7);
        assert_eq!(write_units(0), 1.0);
        assert_eq!(write_units(1024), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(read_units(4097, true), 2.0);
        assert_eq!(read_units(10, false), 0.5);
        assert_eq!(sqs_units(65 * 1024), 2.0);
    }

    #[test]
    fn records_per_service_and_operation() {
        record("test-svc", "Op", 2.0, 10);
        record("test-svc", "Op", 1.0, 5);
        let s = snapshot();
        let c = s["test-svc"]["Op"];
        assert!(c.requests >= 2 && c.units >= 3.0 && c.bytes >= 15);
    }
}
