//! The SQL layer under [`super::Store`]: one connection to SQLite or PostgreSQL behind the same
//! small API (execute, query, transactions), so the store's SQL is written once.
//!
//! SQL is written in the common subset of both dialects with `?N` placeholders (rewritten to
//! `$N` for PostgreSQL); the few differences (clock, row locks, migrations) are asked of
//! [`Conn::dialect`]. Values cross the boundary as [`Val`]: integers are 64-bit on both sides
//! (PostgreSQL columns are BIGINT), reals are doubles, text is UTF-8.
//!
//! Invariants:
//! * a write transaction ([`TxKind::Write`]) is exclusive among writers on both backends
//!   (SQLite `BEGIN IMMEDIATE`; PostgreSQL a transaction-scoped advisory lock), so read-then-write
//!   sequences such as the audit chain's append cannot interleave and fork the chain;
//! * a transaction not committed is rolled back when its guard is dropped;
//! * the synchronous PostgreSQL client is never driven from a thread that runs async tasks
//!   (its internal runtime would panic there): such calls hop to a short-lived plain thread.

use super::{Result, StoreError};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Key of the PostgreSQL advisory lock that serialises writing transactions (any constant unique
/// to rekap; "rekap" in ASCII).
const PG_WRITE_LOCK: i64 = 0x72_656b_6170;
/// Key of the PostgreSQL advisory lock held while migrations run (two servers starting at once
/// must not both apply the same migration).
const PG_MIGRATE_LOCK: i64 = 0x72_656b_6171;
/// How long a PostgreSQL connection attempt may take before it counts as unreachable.
const PG_CONNECT_TIMEOUT_SECS: u64 = 10;

/// A value passed to or read from SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(v)
    }
}
impl From<f64> for Val {
    fn from(v: f64) -> Val {
        Val::Real(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Val {
        Val::Int(v as i64)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(v.to_string())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(v.clone())
    }
}
impl<T: Into<Val>> From<Option<T>> for Val {
    fn from(v: Option<T>) -> Val {
        v.map_or(Val::Null, Into::into)
    }
}

/// `args![a, b, c]`: a slice of [`Val`]s for a statement's `?1, ?2, ?3`.
macro_rules! args {
    ($($x:expr),* $(,)?) => { &[$($crate::store::db::Val::from($x)),*][..] };
}
pub(crate) use args;

/// Conversion of a column value to a Rust type.
pub trait FromVal: Sized {
    fn from_val(v: &Val) -> Option<Self>;
}
impl FromVal for i64 {
    fn from_val(v: &Val) -> Option<i64> {
        match v {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromVal for f64 {
    fn from_val(v: &Val) -> Option<f64> {
        match v {
            Val::Real(f) => Some(*f),
            Val::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}
impl FromVal for String {
    fn from_val(v: &Val) -> Option<String> {
        match v {
            Val::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl<T: FromVal> FromVal for Option<T> {
    fn from_val(v: &Val) -> Option<Option<T>> {
        match v {
            Val::Null => Some(None),
            other => T::from_val(other).map(Some),
        }
    }
}

/// One result row.
#[derive(Debug, Clone)]
pub struct Row(Vec<Val>);

impl Row {
    /// Column `i` as `T`; a NULL or a value of another type is an error (use `Option<T>`).
    pub fn get<T: FromVal>(&self, i: usize) -> Result<T> {
        let v = self
            .0
            .get(i)
            .ok_or_else(|| StoreError::Decode(format!("no column {i}")))?;
        T::from_val(v).ok_or_else(|| {
            StoreError::Decode(format!(
                "column {i}: unexpected value {v:?} for {}",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// Which SQL dialect a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// SQL expression for the database server's clock in milliseconds since the Unix epoch.
    /// Queue leases use the server's clock so workers on machines with skewed clocks agree.
    pub fn now_ms(self) -> &'static str {
        match self {
            Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Dialect::Postgres => "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// Suffix of a SELECT that row-locks what it reads for the rest of the transaction
    /// (SQLite's write transactions lock the whole database already).
    pub fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Like [`Dialect::for_update`], skipping rows other transactions hold (queue claims).
    pub fn for_update_skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// Kinds of transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    /// Exclusive among writers (see the module invariants).
    Write,
    /// Row-level locking only (PostgreSQL); the queue's claims, which must not wait for each
    /// other. On SQLite the same as `Write`.
    Rows,
}

pub struct Pg {
    /// Always `Some` until dropped (taken out so it can be closed off the async runtime).
    client: Option<postgres::Client>,
    config: postgres::Config,
    /// Prepared statements by SQL text (PostgreSQL plans once per connection).
    statements: HashMap<String, postgres::Statement>,
}

pub enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres {
        pg: Box<RefCell<Pg>>,
        in_tx: Cell<bool>,
    },
}

/// Run `f` where the synchronous PostgreSQL client may block: on this thread, or, when this
/// thread drives async tasks, on a short-lived plain thread (see the module invariants).
fn off_runtime<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// `?N` placeholders to PostgreSQL's `$N` (our SQL has no `?` inside string literals).
fn pg_sql(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Val::Null => ValueRef::Null,
            Val::Int(i) => ValueRef::Integer(*i),
            Val::Real(f) => ValueRef::Real(*f),
            Val::Text(s) => ValueRef::Text(s.as_bytes()),
        }))
    }
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl postgres::types::ToSql for Val {
    /// Integers and reals adapt to the parameter type PostgreSQL inferred (a literal compared
    /// with `?2 = 0` makes `$2` an INT4), failing on overflow rather than truncating.
    fn to_sql(
        &self,
        ty: &postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres::types::IsNull, BoxError> {
        use postgres::types::{IsNull, Type};
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::Int(i) => match *ty {
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => i.to_sql(ty, out),
            },
            Val::Real(f) => match *ty {
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => f.to_sql(ty, out),
            },
            Val::Text(s) => s.to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres::types::Type) -> bool {
        true
    }

    postgres::types::to_sql_checked!();
}

fn pg_row(row: &postgres::Row) -> Result<Row> {
    use postgres::types::Type;
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let v = match *col.type_() {
            Type::INT8 => row.try_get::<_, Option<i64>>(i)?.map(Val::Int),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)?
                .map(|x| Val::Int(x.into())),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)?
                .map(|x| Val::Int(x.into())),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)?
                .map(|x| Val::Int(x.into())),
            Type::FLOAT8 => row.try_get::<_, Option<f64>>(i)?.map(Val::Real),
            Type::FLOAT4 => row
                .try_get::<_, Option<f32>>(i)?
                .map(|x| Val::Real(x.into())),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR => {
                row.try_get::<_, Option<String>>(i)?.map(Val::Text)
            }
            ref other => {
                return Err(StoreError::Decode(format!(
                    "column {} has type {other}, which the store does not read",
                    col.name()
                )));
            }
        };
        out.push(v.unwrap_or(Val::Null));
    }
    Ok(Row(out))
}

fn sqlite_row(r: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Row> {
    use rusqlite::types::ValueRef;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(match r.get_ref(i)? {
            ValueRef::Null => Val::Null,
            ValueRef::Integer(i) => Val::Int(i),
            ValueRef::Real(f) => Val::Real(f),
            ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Val::Text(hex::encode(b)),
        });
    }
    Ok(Row(out))
}

impl Drop for Pg {
    /// Closing the client blocks on its internal runtime, which must not happen on a thread
    /// driving async tasks (a server dropping its store at shutdown).
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            off_runtime(move || drop(client));
        }
    }
}

impl Pg {
    fn client(&mut self) -> Result<&mut postgres::Client> {
        self.client
            .as_mut()
            .ok_or_else(|| StoreError::Decode("the database connection is closed".into()))
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        let st = self.client()?.prepare(&pg_sql(sql))?;
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    fn params(args: &[Val]) -> Vec<&(dyn postgres::types::ToSql + Sync)> {
        args.iter()
            .map(|a| a as &(dyn postgres::types::ToSql + Sync))
            .collect()
    }

    fn execute(&mut self, sql: &str, args: &[Val]) -> Result<u64> {
        let st = self.statement(sql)?;
        Ok(self.client()?.execute(&st, &Self::params(args))?)
    }

    fn query(&mut self, sql: &str, args: &[Val]) -> Result<Vec<Row>> {
        let st = self.statement(sql)?;
        let rows = self.client()?.query(&st, &Self::params(args))?;
        rows.iter().map(pg_row).collect()
    }

    /// Reconnect after the server closed the connection (restart, failover, idle timeout).
    fn ensure_open(&mut self) -> Result<()> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            tracing::warn!("store: the PostgreSQL connection was closed; reconnecting");
            self.client = Some(self.config.connect(postgres::NoTls)?);
            self.statements.clear();
        }
        Ok(())
    }
}

/// `url` (a PostgreSQL URL) with its database name replaced by `db`; query parameters kept.
pub fn postgres_url_with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{db}?{q}"),
        None => format!("{host_part}/{db}"),
    }
}

/// A safe description of a PostgreSQL URL for messages (host, port, database, user; never the
/// password).
pub fn describe_postgres_url(url: &str) -> String {
    match url.parse::<postgres::Config>() {
        Ok(c) => {
            let hosts: Vec<String> = c
                .get_hosts()
                .iter()
                .map(|h| match h {
                    postgres::config::Host::Tcp(s) => s.clone(),
                    postgres::config::Host::Unix(p) => p.display().to_string(),
                })
                .collect();
            let ports: Vec<String> = c.get_ports().iter().map(|p| p.to_string()).collect();
            format!(
                "PostgreSQL at {}:{} database {} user {}",
                if hosts.is_empty() {
                    "localhost".to_string()
                } else {
                    hosts.join(",")
                },
                if ports.is_empty() {
                    "5432".to_string()
                } else {
                    ports.join(",")
                },
                c.get_dbname().unwrap_or("(default)"),
                c.get_user().unwrap_or("(default)")
            )
        }
        Err(_) => "PostgreSQL (unparsable URL)".to_string(),
    }
}

impl Conn {
    pub fn sqlite(conn: rusqlite::Connection) -> Conn {
        Conn::Sqlite(conn)
    }

    /// Connect to PostgreSQL at `url` (`postgres://user:pass@host:port/db?...`).
    pub fn postgres(url: &str) -> Result<Conn> {
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| StoreError::Invalid(format!("database URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(PG_CONNECT_TIMEOUT_SECS));
        }
        if config.get_application_name().is_none() {
            config.application_name("rekap");
        }
        let client = off_runtime(|| config.connect(postgres::NoTls))?;
        Ok(Conn::Postgres {
            pg: Box::new(RefCell::new(Pg {
                client: Some(client),
                config,
                statements: HashMap::new(),
            })),
            in_tx: Cell::new(false),
        })
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres { .. } => Dialect::Postgres,
        }
    }

    fn with_pg<R: Send>(
        pg: &RefCell<Pg>,
        in_tx: bool,
        f: impl FnOnce(&mut Pg) -> Result<R> + Send,
    ) -> Result<R> {
        let mut guard = pg
            .try_borrow_mut()
            .map_err(|_| StoreError::Decode("re-entrant use of the database connection".into()))?;
        let pg: &mut Pg = &mut guard;
        off_runtime(move || {
            if !in_tx {
                pg.ensure_open()?;
            }
            f(pg)
        })
    }

    /// Run one statement; returns the number of rows changed.
    pub fn execute(&self, sql: &str, args: &[Val]) -> Result<u64> {
        match self {
            Conn::Sqlite(c) => {
                Ok(c.prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(args))? as u64)
            }
            Conn::Postgres { pg, in_tx } => {
                Self::with_pg(pg, in_tx.get(), |p| p.execute(sql, args))
            }
        }
    }

    /// Run a query; all rows.
    pub fn query(&self, sql: &str, args: &[Val]) -> Result<Vec<Row>> {
        match self {
            Conn::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let n = st.column_count();
                let rows = st.query_map(rusqlite::params_from_iter(args), |r| sqlite_row(r, n))?;
                Ok(rows.collect::<rusqlite::Result<_>>()?)
            }
            Conn::Postgres { pg, in_tx } => Self::with_pg(pg, in_tx.get(), |p| p.query(sql, args)),
        }
    }

    /// The first row, if any.
    pub fn query_opt(&self, sql: &str, args: &[Val]) -> Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// The first row; none is an error.
    pub fn query_one(&self, sql: &str, args: &[Val]) -> Result<Row> {
        self.query_opt(sql, args)?
            .ok_or_else(|| StoreError::Decode(format!("no row from: {sql}")))
    }

    /// Several statements without parameters (DDL, tests).
    pub fn batch(&self, sql: &str) -> Result<()> {
        match self {
            Conn::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Conn::Postgres { pg, in_tx } => Self::with_pg(pg, in_tx.get(), |p| {
                p.client()?.batch_execute(sql)?;
                // DDL may change what prepared statements return.
                p.statements.clear();
                Ok(())
            }),
        }
    }

    /// COMMIT or ROLLBACK (no DDL: prepared statements stay valid).
    fn end_tx(&self, sql: &'static str) -> Result<()> {
        let r = match self {
            Conn::Sqlite(c) => c.execute_batch(sql).map_err(StoreError::from),
            Conn::Postgres { pg, .. } => {
                Self::with_pg(pg, true, move |p| Ok(p.client()?.batch_execute(sql)?))
            }
        };
        if let Conn::Postgres { in_tx, .. } = self {
            in_tx.set(false);
        }
        r
    }

    /// Begin a transaction; it commits only through [`Tx::commit`].
    pub fn begin(&self, kind: TxKind) -> Result<Tx<'_>> {
        match self {
            Conn::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE")?,
            Conn::Postgres { pg, in_tx } => {
                let sql = match kind {
                    TxKind::Write => {
                        format!("BEGIN; SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})")
                    }
                    TxKind::Rows => "BEGIN".to_string(),
                };
                Self::with_pg(pg, false, move |p| Ok(p.client()?.batch_execute(&sql)?))?;
                in_tx.set(true);
            }
        }
        Ok(Tx {
            conn: self,
            done: false,
        })
    }

    /// The schema version (number of migrations applied).
    pub fn schema_version(&self) -> Result<i64> {
        match self {
            Conn::Sqlite(c) => Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))?),
            Conn::Postgres { .. } => {
                let exists: Option<String> = self
                    .query_one("SELECT CAST(to_regclass('rekap_schema') AS TEXT)", &[])?
                    .get(0)?;
                if exists.is_none() {
                    return Ok(0);
                }
                self.query_one("SELECT version FROM rekap_schema", &[])?
                    .get(0)
            }
        }
    }

    /// Apply the migrations in `list` not applied yet (each in its own transaction).
    pub fn migrate(&self, sqlite: &[&str], postgres: &[&str]) -> Result<()> {
        match self {
            Conn::Sqlite(c) => {
                let version = self.schema_version()?;
                if version > sqlite.len() as i64 {
                    return Err(StoreError::Schema {
                        found: version,
                        expected: sqlite.len() as i64,
                    });
                }
                for (i, sql) in sqlite.iter().enumerate().skip(version.max(0) as usize) {
                    c.execute_batch("BEGIN IMMEDIATE")?;
                    let r = c
                        .execute_batch(sql)
                        .and_then(|_| c.pragma_update(None, "user_version", (i + 1) as i64))
                        .and_then(|_| c.execute_batch("COMMIT"));
                    if let Err(e) = r {
                        let _ = c.execute_batch("ROLLBACK");
                        return Err(e.into());
                    }
                    tracing::info!("store: applied migration {}", i + 1);
                }
                Ok(())
            }
            Conn::Postgres { .. } => {
                self.batch(&format!("SELECT pg_advisory_lock({PG_MIGRATE_LOCK})"))?;
                let r = self.migrate_pg(postgres);
                let unlock = self.batch(&format!("SELECT pg_advisory_unlock({PG_MIGRATE_LOCK})"));
                r.and(unlock)
            }
        }
    }

    fn migrate_pg(&self, list: &[&str]) -> Result<()> {
        let version = self.schema_version()?;
        if version > list.len() as i64 {
            return Err(StoreError::Schema {
                found: version,
                expected: list.len() as i64,
            });
        }
        if version == 0 {
            self.batch("CREATE TABLE IF NOT EXISTS rekap_schema (version BIGINT NOT NULL); \
                        INSERT INTO rekap_schema (version) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM rekap_schema)")?;
        }
        for (i, sql) in list.iter().enumerate().skip(version.max(0) as usize) {
            let tx = self.begin(TxKind::Write)?;
            tx.batch(sql)?;
            tx.execute(
                "UPDATE rekap_schema SET version = ?1",
                args![(i + 1) as i64],
            )?;
            tx.commit()?;
            tracing::info!("store: applied PostgreSQL migration {}", i + 1);
        }
        Ok(())
    }
}

/// An open transaction; rolled back on drop unless committed.
pub struct Tx<'a> {
    conn: &'a Conn,
    done: bool,
}

impl std::ops::Deref for Tx<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
    }
}

impl Tx<'_> {
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        self.conn.end_tx("COMMIT")
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = self.conn.end_tx("ROLLBACK")
        {
            tracing::warn!("store: rollback failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars() {
        assert_eq!(
            pg_sql("SELECT a FROM t WHERE x = ?1 AND y = ?12 AND z = '?'"),
            "SELECT a FROM t WHERE x = $1 AND y = $12 AND z = '?'"
        );
    }

    #[test]
    fn sqlite_roundtrip_and_rollback() {
        let c = Conn::sqlite(rusqlite::Connection::open_in_memory().unwrap());
        c.batch("CREATE TABLE t (a INTEGER, b TEXT, c REAL)")
            .unwrap();
        c.execute("INSERT INTO t VALUES (?1, ?2, ?3)", args![1i64, "x", 0.5])
            .unwrap();
        {
            let tx = c.begin(TxKind::Write).unwrap();
            tx.execute("INSERT INTO t VALUES (2, NULL, NULL)", &[])
                .unwrap();
        }
        let rows = c.query("SELECT a, b, c FROM t ORDER BY a", &[]).unwrap();
        assert_eq!(rows.len(), 1, "the dropped transaction was rolled back");
        assert_eq!(rows[0].get::<i64>(0).unwrap(), 1);
        assert_eq!(rows[0].get::<String>(1).unwrap(), "x");
        assert_eq!(rows[0].get::<Option<f64>>(2).unwrap(), Some(0.5));
        assert!(rows[0].get::<i64>(1).is_err());
    }
}
