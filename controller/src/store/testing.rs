//! Store tests run on both engines: [`engines`] hands the test a fresh SQLite database,
//! then a fresh PostgreSQL database on the test process's throwaway cluster
//! (`deskside-testpg`).

use anyhow::Context;

use super::{Db, PgUrl, StoreAt};

/// A fresh, migrated database on PostgreSQL.
pub(crate) fn postgres_db() -> anyhow::Result<Db> {
    let url = deskside_testpg::database().map_err(anyhow::Error::msg)?;
    let url = PgUrl::parse(&url).map_err(anyhow::Error::msg)?;
    Ok(Db::open_at(&StoreAt::Postgres(url))?)
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
