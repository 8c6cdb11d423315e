//! A small DynamoDB-shaped item API. Items are JSON objects; every item has the string
//! attributes `pk` and `sk`, and may carry `gsi1pk`/`gsi1sk` to appear in the `gsi1`
//! secondary index. The domain repositories are written once on top of this.

use crate::error::Result;
use async_trait::async_trait;
use serde_json::Value;

pub type Item = serde_json::Map<String, Value>;

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1: &str = "gsi1";
pub const GSI1PK: &str = "gsi1pk";
pub const GSI1SK: &str = "gsi1sk";

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Key { pk: pk.into(), sk: sk.into() }
    }

    /// The key of an item, if it has string `pk` and `sk` attributes.
    pub fn of(item: &Item) -> Option<Key> {
        Some(Key::new(item.get(PK)?.as_str()?, item.get(SK)?.as_str()?))
    }

    /// A new item holding just this key.
    pub fn item(&self) -> Item {
        let mut m = Item::new();
        m.insert(PK.into(), Value::String(self.pk.clone()));
        m.insert(SK.into(), Value::String(self.sk.clone()));
        m
    }
}

/// A condition on the item currently stored under a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Cond {
    /// There is an item under the key.
    Exists,
    /// There is no item under the key.
    NotExists,
    AttrExists(String),
    AttrNotExists(String),
    Eq(String, Value),
    Ne(String, Value),
    Lt(String, Value),
    Le(String, Value),
    Gt(String, Value),
    Ge(String, Value),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

impl Cond {
    /// Evaluates the condition against the stored item (`None` when there is none), the
    /// way DynamoDB does: comparisons against a missing attribute are false.
    pub fn eval(&self, item: Option<&Item>) -> bool {
        let attr = |a: &str| item.and_then(|i| i.get(a));
        match self {
            Cond::Exists => item.is_some(),
            Cond::NotExists => item.is_none(),
            Cond::AttrExists(a) => attr(a).is_some(),
            Cond::AttrNotExists(a) => attr(a).is_none(),
            Cond::Eq(a, v) => attr(a) == Some(v),
            Cond::Ne(a, v) => attr(a) != Some(v),
            Cond::Lt(a, v) => cmp(attr(a), v).is_some_and(|o| o.is_lt()),
            Cond::Le(a, v) => cmp(attr(a), v).is_some_and(|o| o.is_le()),
            Cond::Gt(a, v) => cmp(attr(a), v).is_some_and(|o| o.is_gt()),
            Cond::Ge(a, v) => cmp(attr(a), v).is_some_and(|o| o.is_ge()),
            Cond::And(cs) => cs.iter().all(|c| c.eval(item)),
            Cond::Or(cs) => cs.iter().any(|c| c.eval(item)),
        }
    }
}

fn cmp(a: Option<&Value>, b: &Value) -> Option<std::cmp::Ordering> {
    match (a?, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.as_str().cmp(y.as_str())),
        _ => None,
    }
}

/// One action of an update; an update applies them in order to the stored item (or to a
/// new item holding just the key).
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    Set(String, Value),
    /// Sets the attribute only when it is absent (`if_not_exists`).
    SetIfAbsent(String, Value),
    /// Adds to a number attribute (absent counts as 0).
    Add(String, i64),
    /// Appends to a list attribute (absent counts as empty).
    Append(String, Vec<Value>),
    Remove(String),
}

impl Update {
    /// The attribute an action touches.
    pub fn attr(&self) -> &str {
        match self {
            Update::Set(k, _)
            | Update::SetIfAbsent(k, _)
            | Update::Add(k, _)
            | Update::Append(k, _)
            | Update::Remove(k) => k,
        }
    }

    /// Applies the actions in order. Like DynamoDB, refuses two actions on one attribute.
    pub fn apply(actions: &[Update], item: &mut Item) -> Result<()> {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = actions.iter().map(Update::attr).find(|a| !seen.insert(*a)) {
            return Err(crate::StoreError::Invalid(format!("two actions on attribute {dup} in one update")));
        }
        for a in actions {
            match a {
                Update::Set(k, v) => {
                    item.insert(k.clone(), v.clone());
                }
                Update::SetIfAbsent(k, v) => {
                    item.entry(k.clone()).or_insert_with(|| v.clone());
                }
                Update::Add(k, n) => {
                    let cur = match item.get(k) {
                        None => 0,
                        Some(v) => v.as_i64().ok_or_else(|| {
                            crate::StoreError::Invalid(format!("ADD to non-integer attribute {k}"))
                        })?,
                    };
                    item.insert(k.clone(), Value::from(cur + n));
                }
                Update::Append(k, vs) => {
                    let entry = item.entry(k.clone()).or_insert_with(|| Value::Array(vec![]));
                    match entry {
                        Value::Array(list) => list.extend(vs.iter().cloned()),
                        _ => {
                            return Err(crate::StoreError::Invalid(format!(
                                "append to non-list attribute {k}"
                            )));
                        }
                    }
                }
                Update::Remove(k) => {
                    item.remove(k);
                }
            }
        }
        Ok(())
    }
}

/// A sort-key condition for queries.
#[derive(Debug, Clone, PartialEq)]
pub enum SkCond {
    All,
    Eq(String),
    BeginsWith(String),
    /// Inclusive on both ends.
    Between(String, String),
    Lt(String),
    Le(String),
    Gt(String),
    Ge(String),
}

impl SkCond {
    pub fn matches(&self, sk: &str) -> bool {
        match self {
            SkCond::All => true,
            SkCond::Eq(v) => sk == v,
            SkCond::BeginsWith(p) => sk.starts_with(p.as_str()),
            SkCond::Between(a, b) => sk >= a.as_str() && sk <= b.as_str(),
            SkCond::Lt(v) => sk < v.as_str(),
            SkCond::Le(v) => sk <= v.as_str(),
            SkCond::Gt(v) => sk > v.as_str(),
            SkCond::Ge(v) => sk >= v.as_str(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Query {
    /// `None` queries the table's own key; `Some("gsi1")` the secondary index.
    pub index: Option<String>,
    pub pk: String,
    pub sk: SkCond,
    pub forward: bool,
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub cursor: Option<String>,
    /// Only these attributes of each item (and its keys); `None`: every attribute. A list
    /// reads what it shows. (DynamoDB still bills the read by the whole item's size: the
    /// saving is in what crosses the network and is parsed.)
    pub attrs: Option<Vec<String>>,
}

impl Query {
    pub fn new(pk: impl Into<String>) -> Self {
        Query {
            index: None,
            pk: pk.into(),
            sk: SkCond::All,
            forward: true,
            limit: None,
            cursor: None,
            attrs: None,
        }
    }
    /// Only these attributes (the item's keys always come too).
    pub fn project(mut self, attrs: &[&str]) -> Self {
        self.attrs = Some(attrs.iter().map(|a| a.to_string()).collect());
        self
    }
    pub fn index(mut self, name: &str) -> Self {
        self.index = Some(name.into());
        self
    }
    pub fn sk(mut self, sk: SkCond) -> Self {
        self.sk = sk;
        self
    }
    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }
    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }
    pub fn after(mut self, cursor: Option<String>) -> Self {
        self.cursor = cursor;
        self
    }
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// Present when there may be more items.
    pub next: Option<String>,
}

/// One operation of an all-or-nothing transact write.
#[derive(Debug, Clone)]
pub enum TransactOp {
    Put { item: Item, cond: Option<Cond> },
    Update { key: Key, actions: Vec<Update>, cond: Option<Cond> },
    Delete { key: Key, cond: Option<Cond> },
    Check { key: Key, cond: Cond },
}

#[async_trait]
pub trait Table: Send + Sync {
    async fn get(&self, key: &Key) -> Result<Option<Item>>;
    /// Writes the whole item; `ConditionFailed` when `cond` does not hold.
    async fn put(&self, item: Item, cond: Option<Cond>) -> Result<()>;
    /// Applies the actions and returns the item as it is afterwards.
    async fn update(&self, key: &Key, actions: Vec<Update>, cond: Option<Cond>) -> Result<Item>;
    async fn delete(&self, key: &Key, cond: Option<Cond>) -> Result<()>;
    async fn query(&self, q: Query) -> Result<Page>;
    /// All or nothing, at most 100 operations, each key at most once.
    async fn transact_write(&self, ops: Vec<TransactOp>) -> Result<()>;
    /// Makes every write so far durable and visible to other processes. DynamoDB writes
    /// are when acknowledged; the embedded table group-commits (`embedded::Db`), and its
    /// queues share its database, so this covers them too.
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Every page of a query.
    async fn query_all(&self, mut q: Query) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        loop {
            let page = self.query(q.clone()).await?;
            out.extend(page.items);
            match page.next {
                Some(c) => q.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Every item of a query as its JSON text, for a reader that decodes straight into
    /// its own type (a report's buckets: no map built per item and dropped). The embedded
    /// table hands back what it stores; others encode `query_all`'s items.
    async fn query_all_json(&self, q: Query) -> Result<Vec<String>> {
        query_all_json_of(self, q).await
    }
}

/// `query_all`'s items, each encoded as JSON text.
pub(crate) async fn query_all_json_of<T: Table + ?Sized>(t: &T, q: Query) -> Result<Vec<String>> {
    t.query_all(q)
        .await?
        .iter()
        .map(|i| serde_json::to_string(i).map_err(crate::StoreError::backend))
        .collect()
}

/// Calls `f` on every item of the query, `page` items at a time: memory holds one page,
/// however many items match (counting a whole index must not load it).
pub async fn for_each(t: &dyn Table, q: Query, page: u32, mut f: impl FnMut(Item) + Send) -> Result<()> {
    let mut q = q.limit(page);
    loop {
        let p = t.query(q.clone()).await?;
        p.items.into_iter().for_each(&mut f);
        match p.next {
            Some(c) => q.cursor = Some(c),
            None => return Ok(()),
        }
    }
}

/// One query over several partitions of the same table or index (the shards of one
/// hot key): `q` with each of `pks` as its partition key, every shard read concurrently
/// up to `limit` items, merged by the sort key attribute `sk` (ascending, or descending
/// when `q` is backward) and cut at `limit`.
pub async fn query_shards(
    t: &dyn Table,
    pks: &[String],
    q: &Query,
    sk: &str,
    limit: usize,
) -> Result<Vec<Item>> {
    let shard = |pk: &String| {
        let q = Query { pk: pk.clone(), cursor: None, ..q.clone() }.limit(limit.clamp(1, 1000) as u32);
        async move {
            let mut out = Vec::new();
            let mut q = q;
            loop {
                let page = t.query(q.clone()).await?;
                out.extend(page.items);
                match page.next {
                    Some(c) if out.len() < limit => q.cursor = Some(c),
                    _ => return Ok::<_, crate::StoreError>(out),
                }
            }
        }
    };
    let shards = futures::future::try_join_all(pks.iter().map(shard)).await?;
    let mut all: Vec<Item> = shards.into_iter().flatten().collect();
    let key = |i: &Item| i.get(sk).and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
    all.sort_by_cached_key(key);
    if !q.forward {
        all.reverse();
    }
    all.truncate(limit);
    Ok(all)
}

/// Keeps only `attrs` and the key attributes of `item` (a projection).
pub fn project(item: &mut Item, attrs: &[String]) {
    item.retain(|k, _| [PK, SK, GSI1PK, GSI1SK].contains(&k.as_str()) || attrs.iter().any(|a| a == k));
}

/// Checks an item has a string `pk` and `sk`.
pub fn require_key(item: &Item) -> Result<Key> {
    Key::of(item).ok_or_else(|| crate::StoreError::Invalid("item needs string pk and sk".into()))
}
