//! Store tests run on both engines: [`engines`] hands the test a fresh SQLite database,
//! then a fresh PostgreSQL database on the test process's throwaway cluster
//! (`deskside-testpg`).

use anyhow::Context;

use super::{Db, PgUrl, StoreAt};

/// A fresh database on PostgreSQL.
fn postgres_at() -> anyhow::Result<StoreAt> {
    let url = deskside_testpg::database().map_err(anyhow::Error::msg)?;
    Ok(StoreAt::Postgres(
        PgUrl::parse(&url).map_err(anyhow::Error::msg)?,
    ))
}

/// A fresh, migrated database on PostgreSQL.
pub(crate) fn postgres_db() -> anyhow::Result<Db> {
    Ok(Db::open_at(&postgres_at()?)?)
}

/// Runs `test` with two handles on one fresh database (two nodes on one store), on each
/// engine in turn.
pub(crate) fn engine_pairs(
    test: impl Fn(&mut Db, &mut Db) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let at = StoreAt::Sqlite(dir.path().join("t.db"));
    let (mut a, mut b) = (Db::open_at(&at)?, Db::open_at(&at)?);
    test(&mut a, &mut b).context("on SQLite")?;
    let at = postgres_at().context("opening a PostgreSQL test database")?;
    let (mut a, mut b) = (Db::open_at(&at)?, Db::open_at(&at)?);
    test(&mut a, &mut b).context("on PostgreSQL")?;
    Ok(())
}

/// Runs `test` on a fresh database of each engine, naming the engine on failure.
pub(crate) fn engines(test: impl Fn(&mut Db) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut db = Db::open(&dir.path().join("t.db"))?;
    test(&mut db).context("on SQLite")?;
    let mut db = postgres_db().context("opening a PostgreSQL test database")?;
    test(&mut db).context("on PostgreSQL")?;
    Ok(())
}
