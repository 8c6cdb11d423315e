use super::Db;
use crate::error::{Result, StoreError};
use crate::meter;
use crate::table::{
    Cond, GSI1, GSI1PK, GSI1SK, Item, Key, Page, Query, SkCond, Table, TransactOp, Update, require_key,
};
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;

/// A DynamoDB-shaped table stored as rows of one SQLite table (`tbl` separates tables).
#[derive(Clone)]
pub struct SqliteTable {
    db: Db,
    name: String,
}

impl SqliteTable {
    pub fn new(db: Db, name: &str) -> Self {
        SqliteTable { db, name: name.to_string() }
    }
}

fn load(conn: &Connection, tbl: &str, key: &Key) -> Result<Option<Item>> {
    let data: Option<String> = conn
        .prepare_cached("SELECT data FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")?
        .query_row(params![tbl, key.pk, key.sk], |r| r.get(0))
        .optional()?;
    data.map(|d| serde_json::from_str(&d).map_err(|e| StoreError::Backend(format!("corrupt item: {e}"))))
        .transpose()
}

fn store(conn: &Connection, tbl: &str, item: &Item) -> Result<()> {
    let key = require_key(item)?;
    let s = |k: &str| item.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let data = serde_json::to_string(item).map_err(StoreError::backend)?;
    conn.prepare_cached(
        "INSERT INTO items (tbl, pk, sk, gsi1pk, gsi1sk, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (tbl, pk, sk) DO UPDATE SET gsi1pk = ?4, gsi1sk = ?5, data = ?6",
    )?
    .execute(params![tbl, key.pk, key.sk, s(GSI1PK), s(GSI1SK), data])?;
    Ok(())
}

fn remove(conn: &Connection, tbl: &str, key: &Key) -> Result<()> {
    conn.prepare_cached("DELETE FROM items WHERE tbl = ?1 AND pk = ?2 AND sk = ?3")?
        .execute(params![tbl, key.pk, key.sk])?;
    Ok(())
}

fn check(cond: &Option<Cond>, current: Option<&Item>) -> Result<()> {
    match cond {
        Some(c) if !c.eval(current) => Err(StoreError::ConditionFailed),
        _ => Ok(()),
    }
}

fn updated(key: &Key, current: Option<Item>, actions: &[Update]) -> Result<Item> {
    let mut item = current.unwrap_or_else(|| key.item());
    Update::apply(actions, &mut item)?;
    if Key::of(&item).as_ref() != Some(key) {
        return Err(StoreError::Invalid("an update cannot change pk or sk".into()));
    }
    Ok(item)
}

#[async_trait]
impl Table for SqliteTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>> {
        meter::record("embedded-table", "GetItem", 1.0, 0);
        self.db.read(|c| load(c, &self.name, key))
    }

    async fn put(&self, item: Item, cond: Option<Cond>) -> Result<()> {
        meter::record("embedded-table", "PutItem", 1.0, 0);
        let key = require_key(&item)?;
        self.db.write(|c| {
            check(&cond, load(c, &self.name, &key)?.as_ref())?;
            store(c, &self.name, &item)
        })
    }

    async fn update(&self, key: &Key, actions: Vec<Update>, cond: Option<Cond>) -> Result<Item> {
        meter::record("embedded-table", "UpdateItem", 1.0, 0);
        self.db.write(|c| {
            let cur = load(c, &self.name, key)?;
            check(&cond, cur.as_ref())?;
            let item = updated(key, cur, &actions)?;
            store(c, &self.name, &item)?;
            Ok(item)
        })
    }

    async fn delete(&self, key: &Key, cond: Option<Cond>) -> Result<()> {
        meter::record("embedded-table", "DeleteItem", 1.0, 0);
        self.db.write(|c| {
            check(&cond, load(c, &self.name, key)?.as_ref())?;
            remove(c, &self.name, key)
        })
    }

    async fn query(&self, q: Query) -> Result<Page> {
        let attrs = q.attrs.clone();
        let (items, next) = self.select(q, |data| {
            let mut item: Item =
                serde_json::from_str(&data).map_err(|e| StoreError::Backend(format!("corrupt item: {e}")))?;
            if let Some(attrs) = &attrs {
                crate::table::project(&mut item, attrs);
            }
            Ok(item)
        })?;
        Ok(Page { items, next })
    }

    /// The stored text as it is: no map is built per item.
    async fn query_all_json(&self, mut q: Query) -> Result<Vec<String>> {
        if q.attrs.is_some() {
            return crate::table::query_all_json_of(self, q).await;
        }
        let mut out = Vec::new();
        loop {
            let (items, next) = self.select(q.clone(), Ok)?;
            out.extend(items);
            match next {
                Some(c) => q.cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()
    }

    async fn transact_write(&self, ops: Vec<TransactOp>) -> Result<()> {
        meter::record("embedded-table", "TransactWriteItems", 1.0, 0);
        if ops.len() > 100 {
            return Err(StoreError::Invalid("at most 100 operations per transaction".into()));
        }
        let keys: Vec<Key> = ops
            .iter()
            .map(|op| match op {
                TransactOp::Put { item, .. } => require_key(item),
                TransactOp::Update { key, .. }
                | TransactOp::Delete { key, .. }
                | TransactOp::Check { key, .. } => Ok(key.clone()),
            })
            .collect::<Result<_>>()?;
        if keys.iter().collect::<HashSet<_>>().len() != keys.len() {
            return Err(StoreError::Invalid("a transaction names the same key twice".into()));
        }
        self.db.write(|c| {
            // First evaluate every condition against the state before the transaction, as
            // DynamoDB does; only if all hold, apply every write.
            let mut reasons = Vec::with_capacity(ops.len());
            let mut current = Vec::with_capacity(ops.len());
            for (op, key) in ops.iter().zip(&keys) {
                let cur = load(c, &self.name, key)?;
                let cond = match op {
                    TransactOp::Put { cond, .. }
                    | TransactOp::Update { cond, .. }
                    | TransactOp::Delete { cond, .. } => cond.clone(),
                    TransactOp::Check { cond, .. } => Some(cond.clone()),
                };
                let ok = cond.as_ref().is_none_or(|cd| cd.eval(cur.as_ref()));
                reasons.push((!ok).then(|| "ConditionalCheckFailed".to_string()));
                current.push(cur);
            }
            if reasons.iter().any(Option::is_some) {
                return Err(StoreError::TransactionCanceled { reasons });
            }
            for ((op, key), cur) in ops.into_iter().zip(&keys).zip(current) {
                match op {
                    TransactOp::Put { item, .. } => store(c, &self.name, &item)?,
                    TransactOp::Update { actions, .. } => {
                        store(c, &self.name, &updated(key, cur, &actions)?)?
                    }
                    TransactOp::Delete { .. } => remove(c, &self.name, key)?,
                    TransactOp::Check { .. } => {}
                }
            }
            Ok(())
        })
    }
}

/// A bound of a sort-key range: the value, and whether it is included.
type Bound = Option<(String, bool)>;

impl SqliteTable {
    /// One page of a query: each item's stored JSON text through `each`, and the cursor
    /// of the next page.
    fn select<T>(
        &self,
        q: Query,
        mut each: impl FnMut(String) -> Result<T>,
    ) -> Result<(Vec<T>, Option<String>)> {
        meter::record("embedded-table", "Query", 1.0, 0);
        let (pkcol, skcol, tiebreak) = match q.index.as_deref() {
            None => ("pk", "sk", ""),
            Some(GSI1) => ("gsi1pk", "gsi1sk", ", pk, sk"),
            Some(other) => return Err(StoreError::Invalid(format!("no index {other}"))),
        };
        let dir = if q.forward { "ASC" } else { "DESC" };
        let order = if tiebreak.is_empty() {
            format!("{skcol} {dir}")
        } else {
            format!("{skcol} {dir}, pk {dir}, sk {dir}")
        };
        // Cursor: the (sort key, pk, sk) of the last item returned.
        let cursor: Option<(String, String, String)> = match &q.cursor {
            Some(c) => Some(serde_json::from_str(c).map_err(|_| StoreError::Invalid("bad cursor".into()))?),
            None => None,
        };
        let (lo, hi, prefix): (Bound, Bound, Option<String>) = match &q.sk {
            SkCond::All => (None, None, None),
            SkCond::Eq(v) => (Some((v.clone(), true)), Some((v.clone(), true)), None),
            SkCond::BeginsWith(p) => (None, None, Some(p.clone())),
            SkCond::Between(a, b) => (Some((a.clone(), true)), Some((b.clone(), true)), None),
            SkCond::Lt(v) => (None, Some((v.clone(), false)), None),
            SkCond::Le(v) => (None, Some((v.clone(), true)), None),
            SkCond::Gt(v) => (Some((v.clone(), false)), None, None),
            SkCond::Ge(v) => (Some((v.clone(), true)), None, None),
        };
        let mut sql = format!("SELECT data, {skcol}, pk, sk FROM items WHERE tbl = ?1 AND {pkcol} = ?2");
        let mut args: Vec<String> = vec![self.name.clone(), q.pk.clone()];
        let mut bind = |sql: &mut String, clause: &str, v: String| {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
        };
        if let Some((v, incl)) = lo {
            bind(&mut sql, &format!(" AND {skcol} {} ?", if incl { ">=" } else { ">" }), v);
        }
        if let Some((v, incl)) = hi {
            bind(&mut sql, &format!(" AND {skcol} {} ?", if incl { "<=" } else { "<" }), v);
        }
        if let Some(p) = &prefix {
            // Range instead of LIKE: exact byte semantics, and it uses the index.
            bind(&mut sql, &format!(" AND {skcol} >= ?"), p.clone());
        }
        if let Some((csk, cpk, csk2)) = cursor {
            let op = if q.forward { ">" } else { "<" };
            if tiebreak.is_empty() {
                bind(&mut sql, &format!(" AND {skcol} {op} ?"), csk);
            } else {
                let a = args.len();
                args.extend([csk, cpk, csk2]);
                sql.push_str(&format!(" AND ({skcol}, pk, sk) {op} (?{}, ?{}, ?{})", a + 1, a + 2, a + 3));
            }
        }
        sql.push_str(&format!(" ORDER BY {order}"));
        let limit = q.limit.map(|l| l.max(1) as usize);
        self.db.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
            let mut items = Vec::new();
            let mut last = None;
            let mut more = false;
            while let Some(r) = rows.next()? {
                let skv: String = r.get(1)?;
                if let Some(p) = &prefix
                    && !skv.starts_with(p.as_str())
                {
                    if q.forward {
                        break;
                    }
                    continue;
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    more = true;
                    break;
                }
                items.push(each(r.get(0)?)?);
                last = Some((skv, r.get::<_, String>(2)?, r.get::<_, String>(3)?));
            }
            let next = if more { last.map(|l| serde_json::to_string(&l).unwrap_or_default()) } else { None };
            Ok((items, next))
        })
    }
}
