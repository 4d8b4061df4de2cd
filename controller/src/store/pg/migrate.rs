//! The schema on PostgreSQL: the migrations in its dialect, applied under the write
//! lock, their version in a one-row table (SQLite keeps it in `user_version`).

use postgres::Client;

use super::{VERSION_TABLE, WRITE_LOCK};
use crate::store::{StoreError, StoreResult};

/// The migrations in PostgreSQL's dialect: the one type name SQLite spells otherwise.
fn dialect(sql: &str) -> String {
    sql.replace(" BLOB ", " BYTEA ")
}

/// Applies the migrations this database lacks, under [`WRITE_LOCK`] (waiting as long as
/// another node's migration takes) so nodes starting together migrate once; a database
/// newer than this binary is refused.
pub(super) fn migrate(client: &mut Client) -> StoreResult<()> {
    let known = i64::try_from(crate::store::schema::MIGRATIONS.len()).unwrap_or(i64::MAX);
    let mut tx = client.transaction()?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = 0; SELECT pg_advisory_xact_lock({WRITE_LOCK}); \
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
    for (version, sql) in crate::store::schema::MIGRATIONS
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
