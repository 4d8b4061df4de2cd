//! The PostgreSQL side of the store: the connection (its statement cache, and one
//! reconnect when it was lost), write transactions serialized cluster-wide, the
//! migrations' version row, and how [`Value`] crosses the wire.
//!
//! Several controllers write one database. SQLite's store relies on a single writer;
//! here every write transaction takes one advisory lock first
//! (`pg_advisory_xact_lock(`[`WRITE_LOCK`]`)`, released at commit or rollback), so writes
//! run one at a time across all nodes exactly as on one SQLite node, and a
//! read-then-write (the next ticket number, the timeline's next entry, a token's single
//! use, a rate limit) sees every write committed before it — at READ COMMITTED each
//! statement sees what committed before it started, and the lock is taken before any.
//! Serializable isolation with retries would allow more concurrency but makes every
//! caller retry; the writes are short and few next to the reads, so one lock is the
//! simple, honest choice. Reads take no lock.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::sync::mpsc;
use std::time::Duration;

use bytes::BytesMut;
use postgres::config::{Host, SslMode};
use postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, NoTls, Statement};

use super::value::{Row, Value, to_dollar};
use super::{StoreError, StoreResult};

/// The advisory lock every write transaction holds ("deskside" in ASCII).
pub const WRITE_LOCK: i64 = 0x6465_736b_7369_6465;

/// Prepared statements kept per connection; the store has fewer distinct statements, so
/// the cache only empties if something builds SQL it should not.
const MAX_CACHED_STATEMENTS: usize = 512;

/// How long connecting may take before it is reported, when the URL sets no
/// `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The one-row table holding the schema version (SQLite keeps it in `user_version`).
const VERSION_TABLE: &str = "deskside_schema";

/// A validated `postgres://` URL. Shown and logged only without its password.
#[derive(Clone, PartialEq, Eq)]
pub struct PgUrl(String);

impl PgUrl {
    /// Checks a `[store] url`; the reason it is refused otherwise.
    pub fn parse(url: &str) -> Result<PgUrl, String> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(
                "must be a postgres:// URL, e.g. \"postgres://deskside@db.example:5432/deskside\""
                    .into(),
            );
        }
        let config: postgres::Config = url
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL: {e}"))?;
        if config.get_hosts().is_empty() {
            return Err("names no host (postgres://USER@HOST:PORT/DATABASE)".into());
        }
        if config.get_user().is_none() {
            return Err("names no user (postgres://USER@HOST:PORT/DATABASE)".into());
        }
        if config.get_dbname().is_none() {
            return Err("names no database (postgres://USER@HOST:PORT/DATABASE)".into());
        }
        if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
            return Err(
                "asks for TLS (sslmode), which the controller does not speak to PostgreSQL; \
                 reach the database over a trusted network or a local socket and drop sslmode"
                    .into(),
            );
        }
        Ok(PgUrl(url.to_owned()))
    }

    /// The whole URL, password included: for connecting, never for showing or logging.
    pub fn secret_url(&self) -> &str {
        &self.0
    }

    /// `url` with any password replaced by `***` (in the user part and as a
    /// `password=` parameter), for showing a URL that may not parse.
    pub fn hide_password(url: &str) -> String {
        let (head, query) = match url.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (url, None),
        };
        let mut out = match head.split_once("://") {
            Some((scheme, rest)) => {
                let (authority, path) = match rest.find('/') {
                    Some(i) => rest.split_at(i),
                    None => (rest, ""),
                };
                let authority = match authority.rsplit_once('@') {
                    Some((user, host)) => match user.split_once(':') {
                        Some((name, _)) => format!("{name}:***@{host}"),
                        None => format!("{user}@{host}"),
                    },
                    None => authority.to_owned(),
                };
                format!("{scheme}://{authority}{path}")
            }
            // Not a URL: it could be `key=value` pairs holding a password.
            None => return "(not shown: not a URL)".to_owned(),
        };
        if let Some(query) = query {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => p.to_owned(),
                })
                .collect();
            out.push('?');
            out.push_str(&params.join("&"));
        }
        out
    }

    fn config(&self) -> StoreResult<postgres::Config> {
        let mut config: postgres::Config = self.0.parse().map_err(|e| StoreError::Connect {
            target: self.to_string(),
            cause: e,
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("deskside");
        Ok(config)
    }
}

/// `postgres://user@host:port/database`: never the password.
impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Ok(config) = self.0.parse::<postgres::Config>() else {
            return f.write_str("postgres://(unreadable URL)");
        };
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let host = match h {
                    Host::Tcp(name) => name.clone(),
                    Host::Unix(path) => path.display().to_string(),
                };
                match config.get_ports().get(i).or(config.get_ports().first()) {
                    Some(port) => format!("{host}:{port}"),
                    None => host,
                }
            })
            .collect();
        write!(
            f,
            "postgres://{}@{}/{}",
            config.get_user().unwrap_or(""),
            hosts.join(","),
            config.get_dbname().unwrap_or("")
        )
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({self})")
    }
}

type Cache = HashMap<String, Statement>;

/// What the connection's thread is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Exec,
    Query,
    /// `BEGIN` and the write lock.
    Begin,
    Commit,
    Rollback,
}

#[derive(Debug)]
struct Request {
    op: Op,
    sql: String,
    args: Vec<Value>,
    /// Inside a transaction: a lost connection is reported, never retried.
    in_tx: bool,
}

#[derive(Debug)]
enum Reply {
    Done(u64),
    Rows(Vec<postgres::Row>),
}

/// An open connection to PostgreSQL, owned by a thread of its own.
///
/// The synchronous client drives its own small runtime, which may not be started on a
/// thread already inside one — and the store is called from async code (CLI commands,
/// the server's start), from the blocking pool and from plain threads. So the client
/// lives on one thread that never enters a runtime; each statement goes to it and its
/// result comes back (the rows are decoded on the caller's side).
pub struct PgConn {
    requests: mpsc::Sender<Request>,
    replies: mpsc::Receiver<StoreResult<Reply>>,
    url: PgUrl,
}

impl fmt::Debug for PgConn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConn").field("url", &self.url).finish()
    }
}

fn map_rows<T>(
    rows: &[postgres::Row],
    mut f: impl FnMut(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    rows.iter().map(|r| f(&Row::Pg(r))).collect()
}

/// Whether `e` says the connection is gone (rather than that the statement failed): the
/// client saw it close, or the server said it ends it (shutdown, restart, a terminated
/// backend) before running the statement.
fn is_lost(e: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    e.is_closed()
        || e.code().is_some_and(|c| {
            *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || c.code().starts_with("08")
        })
}

impl PgConn {
    /// Connects (on the connection's own thread) and brings the schema up to date.
    pub fn open(url: &PgUrl) -> StoreResult<PgConn> {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, replies) = mpsc::channel();
        let (opened_tx, opened) = mpsc::channel();
        let worker_url = url.clone();
        std::thread::Builder::new()
            .name("deskside-pg".into())
            .spawn(move || {
                let mut worker = match Worker::open(worker_url) {
                    Ok(w) => {
                        let _ = opened_tx.send(Ok(()));
                        w
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                for req in inbox {
                    if outbox.send(worker.handle(&req)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| {
                StoreError::Worker(format!("starting the PostgreSQL connection thread: {e}"))
            })?;
        opened.recv().map_err(|_| stopped())??;
        Ok(PgConn {
            requests,
            replies,
            url: url.clone(),
        })
    }

    fn call(&mut self, op: Op, sql: &str, args: &[Value], in_tx: bool) -> StoreResult<Reply> {
        self.requests
            .send(Request {
                op,
                sql: sql.to_owned(),
                args: args.to_vec(),
                in_tx,
            })
            .map_err(|_| stopped())?;
        self.replies.recv().map_err(|_| stopped())?
    }

    fn exec_in(&mut self, sql: &str, args: &[Value], in_tx: bool) -> StoreResult<u64> {
        match self.call(Op::Exec, sql, args, in_tx)? {
            Reply::Done(n) => Ok(n),
            Reply::Rows(_) => Err(mixed_up()),
        }
    }

    fn rows_in<T>(
        &mut self,
        sql: &str,
        args: &[Value],
        in_tx: bool,
        f: impl FnMut(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        match self.call(Op::Query, sql, args, in_tx)? {
            Reply::Rows(rows) => map_rows(&rows, f),
            Reply::Done(_) => Err(mixed_up()),
        }
    }

    pub fn exec(&mut self, sql: &str, args: &[Value]) -> StoreResult<u64> {
        self.exec_in(sql, args, false)
    }

    pub fn rows<T>(
        &mut self,
        sql: &str,
        args: &[Value],
        f: impl FnMut(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        self.rows_in(sql, args, false, f)
    }

    /// Begins a write transaction holding [`WRITE_LOCK`].
    pub fn write(&mut self) -> StoreResult<PgTx<'_>> {
        self.call(Op::Begin, "", &[], false)?;
        Ok(PgTx {
            conn: self,
            done: false,
        })
    }
}

fn stopped() -> StoreError {
    StoreError::Worker("the PostgreSQL connection thread stopped".into())
}

fn mixed_up() -> StoreError {
    StoreError::Worker("the PostgreSQL connection thread answered another request".into())
}

/// The connection's thread: the client, its prepared statements, and how to reconnect.
struct Worker {
    client: Client,
    cache: Cache,
    url: PgUrl,
}

impl Worker {
    fn open(url: PgUrl) -> StoreResult<Worker> {
        let mut client = connect(&url)?;
        migrate(&mut client)?;
        Ok(Worker {
            client,
            cache: Cache::new(),
            url,
        })
    }

    fn handle(&mut self, req: &Request) -> StoreResult<Reply> {
        if req.in_tx {
            return self.once(req);
        }
        // Outside a transaction: one more try on a fresh connection when this one is gone.
        if self.client.is_closed() {
            self.reconnect()?;
        }
        match self.once(req) {
            Err(StoreError::Postgres(e)) if is_lost(&e) => {
                self.reconnect()?;
                self.once(req).map_err(|e| self.lost(e))
            }
            other => other,
        }
    }

    fn once(&mut self, req: &Request) -> StoreResult<Reply> {
        match req.op {
            Op::Exec => {
                let stmt = self.prepared(&req.sql)?;
                Ok(Reply::Done(self.client.execute(&stmt, &params(&req.args))?))
            }
            Op::Query => {
                let stmt = self.prepared(&req.sql)?;
                Ok(Reply::Rows(self.client.query(&stmt, &params(&req.args))?))
            }
            Op::Begin => {
                let begin = format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})");
                if let Err(e) = self.client.batch_execute(&begin) {
                    // BEGIN may have run: end it so the connection is usable again.
                    let _ = self.client.batch_execute("ROLLBACK");
                    return Err(e.into());
                }
                Ok(Reply::Done(0))
            }
            Op::Commit => {
                self.client.batch_execute("COMMIT")?;
                Ok(Reply::Done(0))
            }
            Op::Rollback => {
                self.client.batch_execute("ROLLBACK")?;
                Ok(Reply::Done(0))
            }
        }
    }

    fn prepared(&mut self, sql: &str) -> StoreResult<Statement> {
        if let Some(s) = self.cache.get(sql) {
            return Ok(s.clone());
        }
        let stmt = self.client.prepare(&to_dollar(sql))?;
        if self.cache.len() >= MAX_CACHED_STATEMENTS {
            self.cache.clear();
        }
        self.cache.insert(sql.to_owned(), stmt.clone());
        Ok(stmt)
    }

    fn reconnect(&mut self) -> StoreResult<()> {
        tracing::warn!(store = %self.url, "the connection to PostgreSQL was lost; reconnecting");
        self.cache.clear();
        self.client = connect(&self.url)?;
        Ok(())
    }

    fn lost(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Postgres(cause) if is_lost(&cause) => StoreError::Connect {
                target: self.url.to_string(),
                cause,
            },
            e => e,
        }
    }
}

fn params(args: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

fn connect(url: &PgUrl) -> StoreResult<Client> {
    url.config()?
        .connect(NoTls)
        .map_err(|cause| StoreError::Connect {
            target: url.to_string(),
            cause,
        })
}

/// A write transaction on PostgreSQL; rolled back when dropped uncommitted.
pub struct PgTx<'a> {
    conn: &'a mut PgConn,
    done: bool,
}

impl fmt::Debug for PgTx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PgTx")
    }
}

impl PgTx<'_> {
    pub fn commit(mut self) -> StoreResult<()> {
        self.done = true;
        self.conn.call(Op::Commit, "", &[], true).map(|_| ())
    }

    pub fn exec(&mut self, sql: &str, args: &[Value]) -> StoreResult<u64> {
        self.conn.exec_in(sql, args, true)
    }

    pub fn rows<T>(
        &mut self,
        sql: &str,
        args: &[Value],
        f: impl FnMut(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        self.conn.rows_in(sql, args, true, f)
    }
}

impl Drop for PgTx<'_> {
    fn drop(&mut self) {
        if !self.done {
            // A dead connection has rolled back already; the next call reconnects.
            let _ = self.conn.call(Op::Rollback, "", &[], true);
        }
    }
}

/// The migrations in PostgreSQL's dialect: the one type name SQLite spells otherwise.
fn dialect(sql: &str) -> String {
    sql.replace(" BLOB ", " BYTEA ")
}

/// Applies the migrations this database lacks, under [`WRITE_LOCK`] so nodes starting
/// together migrate once; a database newer than this binary is refused.
fn migrate(client: &mut Client) -> StoreResult<()> {
    let known = i64::try_from(super::schema::MIGRATIONS.len()).unwrap_or(i64::MAX);
    let mut tx = client.transaction()?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({WRITE_LOCK}); \
         CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version BIGINT NOT NULL)"
    ))?;
    let found: Option<i64> =
        match tx.query_opt(&format!("SELECT version FROM {VERSION_TABLE}"), &[])? {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        };
    let found = match found {
        Some(v) => v,
        None => {
            tx.execute(
                &format!("INSERT INTO {VERSION_TABLE} (version) VALUES (0)"),
                &[],
            )?;
            0
        }
    };
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    for (version, sql) in super::schema::MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.batch_execute(&dialect(sql))?;
        let next = i64::try_from(version + 1).unwrap_or(i64::MAX);
        tx.execute(
            &format!("UPDATE {VERSION_TABLE} SET version = $1"),
            &[&next],
        )?;
    }
    tx.commit()?;
    Ok(())
}

/// A PostgreSQL error in words: the server's message (and detail) when it sent one, the
/// client's cause otherwise — `postgres::Error` alone displays only "db error".
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_owned(),
        };
    }
    match e.source() {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

type BoxError = Box<dyn Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                _ => Err(format!("an integer cannot be sent as {ty}").into()),
            },
            Value::Text(s) if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            Value::Blob(b) if <&[u8] as ToSql>::accepts(ty) => b.as_slice().to_sql(ty, out),
            v => Err(format!("{} cannot be sent as {ty}", v.kind()).into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Value, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::BYTEA => Value::Blob(Vec::<u8>::from_sql(ty, raw)?),
            _ if <String as FromSql>::accepts(ty) => Value::Text(String::from_sql(ty, raw)?),
            _ => return Err(format!("a column of type {ty} is not one the store reads").into()),
        })
    }

    fn from_sql_null(_: &Type) -> Result<Value, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::{Sql, args};
    use crate::store::{Db, NewTicket, StoreAt};

    fn fresh() -> anyhow::Result<StoreAt> {
        let url = deskside_testpg::database().map_err(anyhow::Error::msg)?;
        Ok(StoreAt::Postgres(
            PgUrl::parse(&url).map_err(anyhow::Error::msg)?,
        ))
    }

    fn ticket(db: &mut Db) -> StoreResult<u64> {
        db.create_ticket(&NewTicket {
            title: "vpn",
            requester: "",
            priority: "normal",
            agent: None,
            by: "alice",
            tier: deskside_proto::msg::identity::Tier::L1,
        })
    }

    #[test]
    fn a_dropped_connection_is_replaced_on_the_next_call() -> anyhow::Result<()> {
        let at = fresh()?;
        let mut db = Db::open_at(&at)?;
        let mut other = Db::open_at(&at)?;
        for _ in 0..2 {
            let pid: i64 = db
                .conn
                .one("SELECT pg_backend_pid()", args![], |r| r.get(0))?;
            let ended: bool = other.conn.one(
                "SELECT pg_terminate_backend(CAST(?1 AS INTEGER))",
                args![pid],
                |r| r.get(0),
            )?;
            assert!(ended);
        }
        // Killed while idle: a read, then a write transaction, both on a new connection.
        assert!(db.agents()?.is_empty());
        let pid: i64 = db
            .conn
            .one("SELECT pg_backend_pid()", args![], |r| r.get(0))?;
        other.conn.exec(
            "SELECT pg_terminate_backend(CAST(?1 AS INTEGER))",
            args![pid],
        )?;
        assert_eq!(ticket(&mut db)?, 1);
        Ok(())
    }

    #[test]
    fn writers_on_two_connections_take_turns() -> anyhow::Result<()> {
        const EACH: u64 = 25;
        let at = fresh()?;
        let mut a = Db::open_at(&at)?;
        let mut b = Db::open_at(&at)?;
        let (left, right) = std::thread::scope(|s| {
            let left = s.spawn(|| {
                (0..EACH)
                    .map(|_| ticket(&mut a))
                    .collect::<StoreResult<Vec<_>>>()
            });
            let right = s.spawn(|| {
                (0..EACH)
                    .map(|_| ticket(&mut b))
                    .collect::<StoreResult<Vec<_>>>()
            });
            (left.join(), right.join())
        });
        let mut all = left.map_err(|_| anyhow::anyhow!("writer panicked"))??;
        all.extend(right.map_err(|_| anyhow::anyhow!("writer panicked"))??);
        all.sort_unstable();
        // Every ticket got its own number: no two read the same MAX(number).
        assert_eq!(all, (1..=2 * EACH).collect::<Vec<_>>());
        let mut db = Db::open_at(&at)?;
        for n in 1..=2 * EACH {
            assert_eq!(db.timeline(n)?.len(), 1, "ticket #{n}");
        }
        Ok(())
    }

    #[test]
    fn urls_are_checked_and_shown_without_the_password() {
        let url = PgUrl::parse("postgres://deskside:s3cret@db.example:5433/desk");
        let url = url.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.to_string(), "postgres://deskside@db.example:5433/desk");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(
            PgUrl::hide_password("postgres://u:pw@h:1/d?password=x&sslmode=disable"),
            "postgres://u:***@h:1/d?password=***&sslmode=disable"
        );
        assert_eq!(
            PgUrl::hide_password("host=h password=pw"),
            "(not shown: not a URL)"
        );
        for bad in [
            "mysql://x@y/z",
            "postgres://db.example/desk",
            "postgres://u@db.example",
            "postgres://u@db.example/desk?sslmode=require",
        ] {
            assert!(PgUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
