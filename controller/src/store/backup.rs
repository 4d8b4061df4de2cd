//! The database side of `deskside backup` and `restore`, on database files rather than
//! an open [`super::Store`]: a consistent online copy, SQLite's integrity check, and the
//! evidence records a restored copy must hold blobs for.

use std::path::Path;
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

/// How often, and how far apart, a busy database is retried during the copy.
const BUSY_RETRIES: u32 = 50;
const BUSY_PAUSE: Duration = Duration::from_millis(100);
/// How long opening the live database for the copy waits for a lock.
const SOURCE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a database file could not be copied or checked.
#[derive(Debug, thiserror::Error)]
pub enum DbFileError {
    /// Opening, copying or reading the file failed.
    #[error("{0}")]
    Sqlite(rusqlite::Error),
    /// Running `PRAGMA quick_check` failed.
    #[error("{0}")]
    Check(rusqlite::Error),
    /// `PRAGMA quick_check` found damage; SQLite's own words.
    #[error("{0}")]
    Damaged(String),
}

/// Copies the live database at `src` to a new file at `dst` with the online backup API,
/// in a single step: one read transaction, hence one consistent snapshot, which in WAL
/// mode never blocks the controller's writes. The copy is left in rollback-journal
/// mode (one self-contained file; the store switches it back to WAL when opened) and
/// passes `PRAGMA quick_check`.
pub fn snapshot(src: &Path, dst: &Path) -> Result<(), DbFileError> {
    let source = open_read_only(src)?;
    source
        .busy_timeout(SOURCE_BUSY_TIMEOUT)
        .map_err(DbFileError::Sqlite)?;
    let mut copy = Connection::open(dst).map_err(DbFileError::Sqlite)?;
    {
        let backup = Backup::new(&source, &mut copy).map_err(DbFileError::Sqlite)?;
        let mut busy = 0;
        loop {
            match backup.step(-1).map_err(DbFileError::Sqlite)? {
                StepResult::Done => break,
                StepResult::More => {}
                _ if busy < BUSY_RETRIES => {
                    busy += 1;
                    std::thread::sleep(BUSY_PAUSE);
                }
                _ => {
                    return Err(DbFileError::Sqlite(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("the database stayed locked; try again".to_owned()),
                    )));
                }
            }
        }
    }
    copy.pragma_update(None, "journal_mode", "DELETE")
        .map_err(DbFileError::Sqlite)?;
    quick_check(&copy)?;
    copy.close().map_err(|(_, e)| DbFileError::Sqlite(e))?;
    drop(source);
    Ok(())
}

fn open_read_only(db: &Path) -> Result<Connection, DbFileError> {
    Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(DbFileError::Sqlite)
}

fn quick_check(conn: &Connection) -> Result<(), DbFileError> {
    let detail: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(DbFileError::Check)?;
    if detail != "ok" {
        return Err(DbFileError::Damaged(detail));
    }
    Ok(())
}

/// Opens the database file at `db` read-only, checks its integrity, and calls `each`
/// with every evidence record's ticket and SHA-256 in (ticket, sha256) order, stopping
/// at the first error `each` returns (the inner result).
pub fn each_evidence<E>(
    db: &Path,
    mut each: impl FnMut(u64, String) -> Result<(), E>,
) -> Result<Result<(), E>, DbFileError> {
    let conn = open_read_only(db)?;
    quick_check(&conn)?;
    let mut stmt = conn
        .prepare("SELECT ticket, sha256 FROM evidence ORDER BY ticket, sha256")
        .map_err(DbFileError::Sqlite)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .map_err(DbFileError::Sqlite)?;
    for row in rows {
        let (ticket, sha256) = row.map_err(DbFileError::Sqlite)?;
        if let Err(e) = each(super::db::to_u64(ticket), sha256) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}
