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

mod migrate;
mod types;
mod url;

use std::collections::HashMap;
use std::fmt;
use std::sync::mpsc;
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, NoTls, Statement};

pub use types::describe;
pub use url::PgUrl;

use super::value::{Row, Value, to_dollar};
use super::{StoreError, StoreResult};

/// The advisory lock every write transaction holds ("deskside" in ASCII).
pub const WRITE_LOCK: i64 = 0x6465_736b_7369_6465;

/// Prepared statements kept per connection; the store has fewer distinct statements, so
/// the cache only empties if something builds SQL it should not.
const MAX_CACHED_STATEMENTS: usize = 512;

/// How long a write waits for the write lock before it fails, as SQLite's busy timeout:
/// a node stuck inside a transaction delays the others this long, not forever.
pub const LOCK_WAIT: Duration = Duration::from_secs(5);

/// How long connecting may take before it is reported, when the URL sets no
/// `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The one-row table holding the schema version (SQLite keeps it in `user_version`).
const VERSION_TABLE: &str = "deskside_schema";

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
        migrate::migrate(&mut client)?;
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
    let mut client = url
        .config()?
        .connect(NoTls)
        .map_err(|cause| StoreError::Connect {
            target: url.to_string(),
            cause,
        })?;
    client.batch_execute(&format!("SET lock_timeout = {}", LOCK_WAIT.as_millis()))?;
    Ok(client)
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
    fn a_write_waits_for_the_lock_a_bounded_time_and_says_why() -> anyhow::Result<()> {
        let at = fresh()?;
        let mut holder = Db::open_at(&at)?;
        let mut other = Db::open_at(&at)?;
        let tx = holder.write()?;
        let err = ticket(&mut other)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("write lock"), "{err}");
        drop(tx);
        assert_eq!(ticket(&mut other)?, 1, "served once the lock is free");
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
}
