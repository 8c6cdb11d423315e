use super::describe;
use crate::error::{Result, StoreError};
use crate::meter;
use crate::table::{
    Cond, GSI1, GSI1PK, GSI1SK, Item, Key, PK, Page, Query, SK, SkCond, Table, TransactOp, Update,
    require_key,
};
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, Put, ReturnValue, TransactWriteItem, Update as DynUpdate,
};
use serde_json::{Number, Value};
use std::collections::HashMap;

/// A DynamoDB table with `pk`/`sk` string keys and the `gsi1` index (`gsi1pk`/`gsi1sk`).
#[derive(Clone, Debug)]
pub struct DynamoTable {
    client: Client,
    name: String,
}

impl DynamoTable {
    pub fn new(client: Client, name: impl Into<String>) -> Self {
        DynamoTable { client, name: name.into() }
    }
}

pub(crate) fn to_av(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(to_av).collect()),
        Value::Object(m) => AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), to_av(v))).collect()),
    }
}

pub(crate) fn from_av(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(n) => n
            .parse::<i64>()
            .map(Value::from)
            .ok()
            .or_else(|| n.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number))
            .unwrap_or_else(|| Value::String(n.clone())),
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::L(l) => Value::Array(l.iter().map(from_av).collect()),
        AttributeValue::M(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), from_av(v))).collect()),
        AttributeValue::Ss(ss) => Value::Array(ss.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(ns) => {
            Value::Array(ns.iter().map(|n| from_av(&AttributeValue::N(n.clone()))).collect())
        }
        // Binary and sets of binary are never written by Mailroom.
        _ => Value::Null,
    }
}

fn to_item(m: &HashMap<String, AttributeValue>) -> Item {
    m.iter().map(|(k, v)| (k.clone(), from_av(v))).collect()
}

fn key_map(k: &Key) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(k.pk.clone())),
        (SK.to_string(), AttributeValue::S(k.sk.clone())),
    ])
}

/// Builds expression strings with `#nN` / `:vN` placeholders.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        if let Some((p, _)) = self.names.iter().find(|(_, a)| a.as_str() == attr) {
            return p.clone();
        }
        let p = format!("#n{}", self.names.len());
        self.names.insert(p.clone(), attr.to_string());
        p
    }
    fn value(&mut self, v: AttributeValue) -> String {
        let p = format!(":v{}", self.values.len());
        self.values.insert(p.clone(), v);
        p
    }
    fn cond(&mut self, c: &Cond) -> String {
        let mut bin = |a: &str, op: &str, v: &Value| {
            let n = self.name(a);
            let p = self.value(to_av(v));
            format!("{n} {op} {p}")
        };
        match c {
            Cond::Exists => format!("attribute_exists({})", self.name(PK)),
            Cond::NotExists => format!("attribute_not_exists({})", self.name(PK)),
            Cond::AttrExists(a) => format!("attribute_exists({})", self.name(a)),
            Cond::AttrNotExists(a) => format!("attribute_not_exists({})", self.name(a)),
            Cond::Eq(a, v) => bin(a, "=", v),
            Cond::Ne(a, v) => bin(a, "<>", v),
            Cond::Lt(a, v) => bin(a, "<", v),
            Cond::Le(a, v) => bin(a, "<=", v),
            Cond::Gt(a, v) => bin(a, ">", v),
            Cond::Ge(a, v) => bin(a, ">=", v),
            Cond::And(cs) if cs.is_empty() => self.cond(&Cond::Or(vec![Cond::Exists, Cond::NotExists])),
            Cond::Or(cs) if cs.is_empty() => self.cond(&Cond::And(vec![Cond::Exists, Cond::NotExists])),
            Cond::And(cs) => {
                cs.iter().map(|c| format!("({})", self.cond(c))).collect::<Vec<_>>().join(" AND ")
            }
            Cond::Or(cs) => cs.iter().map(|c| format!("({})", self.cond(c))).collect::<Vec<_>>().join(" OR "),
        }
    }
    fn update(&mut self, actions: &[Update]) -> String {
        let (mut set, mut add, mut rem) = (vec![], vec![], vec![]);
        for a in actions {
            match a {
                Update::Set(k, v) => {
                    let n = self.name(k);
                    let p = self.value(to_av(v));
                    set.push(format!("{n} = {p}"));
                }
                Update::SetIfAbsent(k, v) => {
                    let n = self.name(k);
                    let p = self.value(to_av(v));
                    set.push(format!("{n} = if_not_exists({n}, {p})"));
                }
                Update::Add(k, by) => {
                    let n = self.name(k);
                    let p = self.value(AttributeValue::N(by.to_string()));
                    add.push(format!("{n} {p}"));
                }
                Update::Append(k, vs) => {
                    let n = self.name(k);
                    let empty = self.value(AttributeValue::L(vec![]));
                    let p = self.value(AttributeValue::L(vs.iter().map(to_av).collect()));
                    set.push(format!("{n} = list_append(if_not_exists({n}, {empty}), {p})"));
                }
                Update::Remove(k) => rem.push(self.name(k)),
            }
        }
        let mut parts = vec![];
        if !set.is_empty() {
            parts.push(format!("SET {}", set.join(", ")));
        }
        if !add.is_empty() {
            parts.push(format!("ADD {}", add.join(", ")));
        }
        if !rem.is_empty() {
            parts.push(format!("REMOVE {}", rem.join(", ")));
        }
        parts.join(" ")
    }
    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }
    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

fn backend<E: std::error::Error>(what: &str, e: &E) -> StoreError {
    StoreError::Backend(format!("dynamodb {what}: {}", describe(e)))
}

#[async_trait]
impl Table for DynamoTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.name)
            .set_key(Some(key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend("get", &e))?;
        let size = out.item().map(meter::dynamo_item_size).unwrap_or(0);
        meter::record("dynamodb", "GetItem", meter::read_units(size, true), 0);
        Ok(out.item().map(to_item))
    }

    async fn put(&self, item: Item, cond: Option<Cond>) -> Result<()> {
        require_key(&item)?;
        let mut ex = Expr::default();
        let ce = cond.as_ref().map(|c| ex.cond(c));
        let av: HashMap<String, AttributeValue> = item.iter().map(|(k, v)| (k.clone(), to_av(v))).collect();
        // A failed condition is billed like a write too.
        let size = meter::dynamo_item_size(&av);
        meter::record("dynamodb", "PutItem", meter::write_units(size), size);
        let res = self
            .client
            .put_item()
            .table_name(&self.name)
            .set_item(Some(av))
            .set_condition_expression(ce)
            .set_expression_attribute_names(ex.names())
            .set_expression_attribute_values(ex.values())
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                se if se.is_conditional_check_failed_exception() => Err(StoreError::ConditionFailed),
                se => Err(backend("put", &se)),
            },
        }
    }

    async fn update(&self, key: &Key, actions: Vec<Update>, cond: Option<Cond>) -> Result<Item> {
        let mut ex = Expr::default();
        let ue = ex.update(&actions);
        let ce = cond.as_ref().map(|c| ex.cond(c));
        let mut req = self
            .client
            .update_item()
            .table_name(&self.name)
            .set_key(Some(key_map(key)))
            .set_condition_expression(ce)
            .return_values(ReturnValue::AllNew);
        if !ue.is_empty() {
            req = req.update_expression(ue);
        }
        let res = req
            .set_expression_attribute_names(ex.names())
            .set_expression_attribute_values(ex.values())
            .send()
            .await;
        // Billed on the item's size after the update (at least one unit when it failed).
        let size = res.as_ref().ok().and_then(|o| o.attributes()).map(meter::dynamo_item_size).unwrap_or(0);
        meter::record("dynamodb", "UpdateItem", meter::write_units(size), size);
        match res {
            Ok(out) => Ok(out.attributes().map(to_item).unwrap_or_else(|| key.item())),
            Err(e) => match e.into_service_error() {
                se if se.is_conditional_check_failed_exception() => Err(StoreError::ConditionFailed),
                se => Err(backend("update", &se)),
            },
        }
    }

    async fn delete(&self, key: &Key, cond: Option<Cond>) -> Result<()> {
        let mut ex = Expr::default();
        let ce = cond.as_ref().map(|c| ex.cond(c));
        meter::record("dynamodb", "DeleteItem", 1.0, 0);
        let res = self
            .client
            .delete_item()
            .table_name(&self.name)
            .set_key(Some(key_map(key)))
            .set_condition_expression(ce)
            .set_expression_attribute_names(ex.names())
            .set_expression_attribute_values(ex.values())
            .send()
            .await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                se if se.is_conditional_check_failed_exception() => Err(StoreError::ConditionFailed),
                se => Err(backend("delete", &se)),
            },
        }
    }

    async fn query(&self, q: Query) -> Result<Page> {
        let (pkn, skn) = match q.index.as_deref() {
            None => (PK, SK),
            Some(GSI1) => (GSI1PK, GSI1SK),
            Some(other) => return Err(StoreError::Invalid(format!("no index {other}"))),
        };
        let mut ex = Expr::default();
        let pn = ex.name(pkn);
        let pv = ex.value(AttributeValue::S(q.pk.clone()));
        let mut kce = format!("{pn} = {pv}");
        let mut sk = |op: &str, v: &str| {
            let n = ex.name(skn);
            let p = ex.value(AttributeValue::S(v.to_string()));
            format!(" AND {n} {op} {p}")
        };
        let skc = match &q.sk {
            SkCond::All => String::new(),
            SkCond::Eq(v) => sk("=", v),
            SkCond::Lt(v) => sk("<", v),
            SkCond::Le(v) => sk("<=", v),
            SkCond::Gt(v) => sk(">", v),
            SkCond::Ge(v) => sk(">=", v),
            SkCond::BeginsWith(p) => {
                let n = ex.name(skn);
                let v = ex.value(AttributeValue::S(p.clone()));
                format!(" AND begins_with({n}, {v})")
            }
            SkCond::Between(a, b) => {
                let n = ex.name(skn);
                let va = ex.value(AttributeValue::S(a.clone()));
                let vb = ex.value(AttributeValue::S(b.clone()));
                format!(" AND {n} BETWEEN {va} AND {vb}")
            }
        };
        kce.push_str(&skc);
        let projection = q.attrs.as_ref().map(|attrs| {
            let mut all: Vec<&str> = vec![PK, SK, GSI1PK, GSI1SK];
            all.extend(attrs.iter().map(String::as_str));
            all.into_iter().map(|a| ex.name(a)).collect::<Vec<_>>().join(", ")
        });
        let start = match &q.cursor {
            Some(c) => {
                let m: Item =
                    serde_json::from_str(c).map_err(|_| StoreError::Invalid("bad cursor".into()))?;
                Some(m.iter().map(|(k, v)| (k.clone(), to_av(v))).collect())
            }
            None => None,
        };
        let out = self
            .client
            .query()
            .table_name(&self.name)
            .set_index_name(q.index.clone())
            .key_condition_expression(kce)
            .set_projection_expression(projection)
            .set_expression_attribute_names(ex.names())
            .set_expression_attribute_values(ex.values())
            .scan_index_forward(q.forward)
            .set_limit(q.limit.map(|l| l.max(1) as i32))
            .set_exclusive_start_key(start)
            .set_consistent_read(q.index.is_none().then_some(true))
            .send()
            .await
            .map_err(|e| backend("query", &e))?;
        let size: u64 = out.items().iter().map(meter::dynamo_item_size).sum();
        // Strongly consistent on the table, eventually consistent on the index.
        meter::record("dynamodb", "Query", meter::read_units(size, q.index.is_none()), 0);
        let items = out.items().iter().map(to_item).collect();
        let next = out.last_evaluated_key().map(|k| serde_json::to_string(&to_item(k)).unwrap_or_default());
        Ok(Page { items, next })
    }

    async fn transact_write(&self, ops: Vec<TransactOp>) -> Result<()> {
        let mut items = Vec::with_capacity(ops.len());
        // Transactions bill two write units per KiB of each item.
        let (mut units, mut bytes) = (0.0, 0u64);
        for op in &ops {
            units += 2.0;
            let mut ex = Expr::default();
            let ti = match op {
                TransactOp::Put { item, cond } => {
                    require_key(item)?;
                    let ce = cond.as_ref().map(|c| ex.cond(c));
                    let av: HashMap<String, AttributeValue> =
                        item.iter().map(|(k, v)| (k.clone(), to_av(v))).collect();
                    let size = meter::dynamo_item_size(&av);
                    units += 2.0 * (meter::write_units(size) - 1.0);
                    bytes += size;
                    let put = Put::builder()
                        .table_name(&self.name)
                        .set_item(Some(av))
                        .set_condition_expression(ce)
                        .set_expression_attribute_names(ex.names())
                        .set_expression_attribute_values(ex.values())
                        .build()
                        .map_err(StoreError::backend)?;
                    TransactWriteItem::builder().put(put).build()
                }
                TransactOp::Update { key, actions, cond } => {
                    let ue = ex.update(actions);
                    let ce = cond.as_ref().map(|c| ex.cond(c));
                    let up = DynUpdate::builder()
                        .table_name(&self.name)
                        .set_key(Some(key_map(key)))
                        .update_expression(ue)
                        .set_condition_expression(ce)
                        .set_expression_attribute_names(ex.names())
                        .set_expression_attribute_values(ex.values())
                        .build()
                        .map_err(StoreError::backend)?;
                    TransactWriteItem::builder().update(up).build()
                }
                TransactOp::Delete { key, cond } => {
                    let ce = cond.as_ref().map(|c| ex.cond(c));
                    let del = Delete::builder()
                        .table_name(&self.name)
                        .set_key(Some(key_map(key)))
                        .set_condition_expression(ce)
                        .set_expression_attribute_names(ex.names())
                        .set_expression_attribute_values(ex.values())
                        .build()
                        .map_err(StoreError::backend)?;
                    TransactWriteItem::builder().delete(del).build()
                }
                TransactOp::Check { key, cond } => {
                    let ce = ex.cond(cond);
                    let chk = ConditionCheck::builder()
                        .table_name(&self.name)
                        .set_key(Some(key_map(key)))
                        .condition_expression(ce)
                        .set_expression_attribute_names(ex.names())
                        .set_expression_attribute_values(ex.values())
                        .build()
                        .map_err(StoreError::backend)?;
                    TransactWriteItem::builder().condition_check(chk).build()
                }
            };
            items.push(ti);
        }
        meter::record("dynamodb", "TransactWriteItems", units, bytes);
        let res = self.client.transact_write_items().set_transact_items(Some(items)).send().await;
        match res {
            Ok(_) => Ok(()),
            Err(e) => match e.into_service_error() {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(tc) => {
                    let reasons = tc
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().filter(|c| *c != "None").map(str::to_string))
                        .collect();
                    Err(StoreError::TransactionCanceled { reasons })
                }
                se => Err(backend("transact write", &se)),
            },
        }
    }
}
