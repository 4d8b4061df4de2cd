//! The one SQL interface every store method uses, over either engine ([`Sql`]):
//! statements written once with `?N` placeholders and [`Value`] parameters, rows read
//! through [`Row`]'s typed getters (`value.rs`); on PostgreSQL each statement is
//! translated to `$N` once, prepared and cached (`pg.rs`).

use super::pg::PgConn;
pub(crate) use super::value::args;
pub use super::value::{FromValue, Row, Value};
use super::{StoreError, StoreResult};

/// Statements on a connection or in a transaction, on either engine.
pub trait Sql {
    /// Runs a statement; the number of rows it changed.
    fn exec(&mut self, sql: &str, args: &[Value]) -> StoreResult<u64>;

    /// Runs a query, mapping every row with `f`.
    fn rows<T>(
        &mut self,
        sql: &str,
        args: &[Value],
        f: impl FnMut(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>>;

    /// The first row of a query, if any.
    fn row<T>(
        &mut self,
        sql: &str,
        args: &[Value],
        f: impl FnOnce(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let mut f = Some(f);
        let mut out = self.rows(sql, args, |r| match f.take() {
            Some(f) => f(r).map(Some),
            None => Ok(None),
        })?;
        Ok(if out.is_empty() {
            None
        } else {
            out.swap_remove(0)
        })
    }

    /// The one row a query always returns (an aggregate, `EXISTS`).
    fn one<T>(
        &mut self,
        sql: &str,
        args: &[Value],
        f: impl FnOnce(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        self.row(sql, args, f)?.ok_or_else(|| {
            StoreError::Worker(format!(
                "a query that always returns a row returned none: {sql}"
            ))
        })
    }
}

pub(super) fn sqlite_rows<T>(
    stmt: &mut rusqlite::CachedStatement<'_>,
    args: &[Value],
    mut f: impl FnMut(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(&Row::Sqlite(r))?);
    }
    Ok(out)
}

/// A write transaction on either engine: committed by [`Tx::commit`], rolled back when
/// dropped. On SQLite it is `BEGIN IMMEDIATE` (the one writer); on PostgreSQL it holds
/// the cluster-wide write lock (see `store/pg.rs`) until it ends.
#[derive(Debug)]
pub enum Tx<'a> {
    Sqlite(rusqlite::Transaction<'a>),
    Pg(super::pg::PgTx<'a>),
}

impl Tx<'_> {
    pub fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(tx) => Ok(tx.commit()?),
            Tx::Pg(tx) => tx.commit(),
        }
    }
}

impl Sql for Tx<'_> {
    fn exec(&mut self, sql: &str, args: &[Value]) -> StoreResult<u64> {
        match self {
            Tx::Sqlite(tx) => Ok(tx
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(args.iter()))?
                as u64),
            Tx::Pg(tx) => tx.exec(sql, args),
        }
    }

    fn rows<T>(
        &mut self,
        sql: &str,
        args: &[Value],
        f: impl FnMut(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        match self {
            Tx::Sqlite(tx) => sqlite_rows(&mut tx.prepare_cached(sql)?, args, f),
            Tx::Pg(tx) => tx.rows(sql, args, f),
        }
    }
}

/// The open connection.
#[derive(Debug)]
pub enum Conn {
    Sqlite(rusqlite::Connection),
    Pg(Box<PgConn>),
}

impl Conn {
    /// Starts a write transaction.
    pub fn write(&mut self) -> StoreResult<Tx<'_>> {
        match self {
            Conn::Sqlite(c) => Ok(Tx::Sqlite(
                c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?,
            )),
            Conn::Pg(c) => Ok(Tx::Pg(c.write()?)),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Conn::Pg(_))
    }
}

impl Sql for Conn {
    fn exec(&mut self, sql: &str, args: &[Value]) -> StoreResult<u64> {
        match self {
            Conn::Sqlite(c) => {
                Ok(c.prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(args.iter()))? as u64)
            }
            Conn::Pg(c) => c.exec(sql, args),
        }
    }

    fn rows<T>(
        &mut self,
        sql: &str,
        args: &[Value],
        f: impl FnMut(&Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        match self {
            Conn::Sqlite(c) => sqlite_rows(&mut c.prepare_cached(sql)?, args, f),
            Conn::Pg(c) => c.rows(sql, args, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::engines;

    #[test]
    fn a_column_of_the_wrong_type_is_an_error_not_a_panic() -> anyhow::Result<()> {
        engines(|db| {
            let text = db.conn.one("SELECT 'x'", args![], |r| r.get::<i64>(0));
            assert!(
                matches!(
                    text,
                    Err(StoreError::Column {
                        index: 0,
                        expected: "an integer",
                        found: "text"
                    })
                ),
                "{text:?}"
            );
            let null = db.conn.one("SELECT NULL", args![], |r| r.get::<String>(0));
            assert!(
                matches!(null, Err(StoreError::Column { found: "NULL", .. })),
                "{null:?}"
            );
            let past_the_end = db.conn.one("SELECT 1", args![], |r| r.get::<i64>(3));
            assert!(past_the_end.is_err(), "{past_the_end:?}");
            // NULL binds to any parameter type; booleans read from either engine's form.
            let (none, yes): (Option<i64>, bool) = db.conn.one(
                "SELECT CAST(?1 AS BIGINT), 1 = 1",
                args![None::<i64>],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            assert_eq!((none, yes), (None, true));
            Ok(())
        })
    }
}
