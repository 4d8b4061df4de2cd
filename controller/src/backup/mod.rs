//! `deskside backup` and `deskside restore`: one tar file holding a consistent online copy
//! of a data directory — the database (through SQLite's online backup API), the evidence
//! blobs, the CA, server, script-signing and record-signing keys and certificates — and a
//! manifest with every file's SHA-256. Restore checks all of it before anything lands in
//! the target.
//!
//! Consistency while the controller runs: the database is copied first, in one read
//! transaction (WAL readers never block the writer). Evidence blobs are made durable
//! before the database row that refers to them is committed, and are never deleted, so
//! every evidence record in that copy already has its blob on disk when the blobs are
//! copied next. Blobs stored after the database copy come along too, unreferenced.
//!
//! Archive layout: `deskside.db`, `ca.crt`, `ca.key`, `server.crt`, `server.key`,
//! `script-signing.key`, `record-signing.key` and `.crt` (when present: older data
//! directories lack them until their next start), `evidence/<aa>/<sha256>`, and
//! `MANIFEST.json` last. Bundles
//! (`bundles/`) are rebuilt on demand and are not included.
//!
//! `create.rs` writes a backup, `restore.rs` puts one back, `archive.rs` owns the
//! archive's members and manifest, `verify.rs` checks an extracted archive.

mod archive;
mod create;
mod restore;
#[cfg(test)]
mod tests;
mod verify;

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::store::backup::DbFileError;

pub use create::backup;
pub use restore::restore;

/// The manifest's name inside the archive; it is the last member.
pub const MANIFEST: &str = "MANIFEST.json";
const FORMAT: &str = "deskside-backup";
const FORMAT_VERSION: u32 = 1;
const DATABASE: &str = "deskside.db";
const EVIDENCE: &str = "evidence";
/// The data directory's keys and certificates (names as in `datadir.rs`), with the mode
/// each is restored with.
const KEY_FILES: [(&str, u32); 5] = [
    ("ca.crt", 0o644),
    ("ca.key", 0o600),
    ("server.crt", 0o644),
    ("server.key", 0o600),
    ("script-signing.key", 0o600),
];
/// Keys a data directory may lack — it was made before they existed, and gets them on
/// its next start — so a backup carries them when present and a restore accepts them.
const OPTIONAL_KEY_FILES: [(&str, u32); 2] =
    [("record-signing.key", 0o600), ("record-signing.crt", 0o644)];
/// About 150 bytes per file: room for over a million evidence items.
const MAX_MANIFEST_BYTES: u64 = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{what}: {source}")]
    Database {
        what: String,
        source: rusqlite::Error,
    },
    #[error("{} is not a Deskside data directory (no {missing}); pass the controller's --data DIR", dir.display())]
    NotADataDir { dir: PathBuf, missing: String },
    #[error(
        "{what} failed SQLite's integrity check ({detail}); the database is damaged, so this copy would be too"
    )]
    DamagedDatabase { what: String, detail: String },
    #[error(
        "evidence blob {} hashes to {actual}, not to its name: the evidence store is damaged; restore that blob from an earlier backup",
        path.display()
    )]
    DamagedBlob { path: PathBuf, actual: String },
    #[error(
        "refusing to restore into {}: it is not empty (found {found}); restore into a new or empty directory",
        dir.display()
    )]
    TargetNotEmpty { dir: PathBuf, found: String },
    #[error(
        "archive member {member:?} has an absolute path or `..`; refusing the archive (nothing is written outside the target)"
    )]
    UnsafePath { member: String },
    #[error("archive member {member:?} {reason}; refusing the archive")]
    UnexpectedMember { member: String, reason: String },
    #[error(
        "archive member {member} does not match the manifest (sha256 {actual}, manifest says {expected}): the archive is damaged or was altered"
    )]
    Mismatch {
        member: String,
        expected: String,
        actual: String,
    },
    #[error("archive member {member} is listed in the manifest but missing from the archive")]
    Missing { member: String },
    #[error("archive member {member} is not listed in the manifest; refusing the archive")]
    NotInManifest { member: String },
    #[error("{}: {reason}", archive.display())]
    BadArchive { archive: PathBuf, reason: String },
    #[error(
        "the store is on PostgreSQL ({at}): `deskside backup` copies only a SQLite store; back up the database with pg_dump (and the keys and evidence as files), as the deployment guide describes"
    )]
    PostgresStore { at: String },
    #[error(
        "the store is on PostgreSQL ({at}): `deskside restore` puts back only a SQLite store; restore the database with pg_restore (or psql for a plain dump), as the deployment guide describes"
    )]
    PostgresRestore { at: String },
    #[error("evidence {sha256} of ticket {ticket}: {reason}; the backup is incomplete or damaged")]
    Evidence {
        ticket: u64,
        sha256: String,
        reason: String,
    },
}

fn io_err(what: impl fmt::Display) -> impl FnOnce(io::Error) -> BackupError {
    move |source| BackupError::Io {
        what: what.to_string(),
        source,
    }
}

/// `what` names the operation, `checked` the database `PRAGMA quick_check` ran on.
fn db_err(what: impl fmt::Display, checked: &str) -> impl FnOnce(DbFileError) -> BackupError {
    move |e| match e {
        DbFileError::Sqlite(source) => BackupError::Database {
            what: what.to_string(),
            source,
        },
        DbFileError::Check(source) => BackupError::Database {
            what: format!("checking {checked}"),
            source,
        },
        DbFileError::Damaged(detail) => BackupError::DamagedDatabase {
            what: checked.to_owned(),
            detail,
        },
    }
}

/// A directory in `dir` named `prefix…`, removed when dropped.
fn scratch_dir(prefix: &str, dir: &Path) -> Result<tempfile::TempDir, BackupError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(dir)
        .map_err(io_err(format!(
            "creating a scratch directory in {}",
            dir.display()
        )))
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing {}", dir.display())))
}

/// What [`backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupSummary {
    pub out: PathBuf,
    pub archive_bytes: u64,
    /// Files in the archive, the manifest not counted.
    pub files: usize,
    pub database_bytes: u64,
    pub evidence_blobs: usize,
    pub evidence_bytes: u64,
    /// Files under `evidence/` that are not blobs (e.g. an interrupted write) and were
    /// left out.
    pub skipped: Vec<PathBuf>,
}

impl fmt::Display for BackupSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "wrote {} ({} bytes): the database ({} bytes), {} evidence blobs ({} bytes), \
             and the CA, server, script-signing and record-signing keys and certificates; {} files, each \
             with its SHA-256 in {MANIFEST}.",
            self.out.display(),
            self.archive_bytes,
            self.database_bytes,
            self.evidence_blobs,
            self.evidence_bytes,
            self.files,
        )?;
        for path in &self.skipped {
            writeln!(f, "skipped {} (not an evidence blob)", path.display())?;
        }
        write!(
            f,
            "The file is mode 0600 because it contains the CA private key: whoever holds it can \
             issue certificates every enrolled agent trusts, and sign scripts. Keep it \
             encrypted and off this host."
        )
    }
}

/// What [`restore`] put back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSummary {
    pub into: PathBuf,
    /// Files restored, each checked against the manifest.
    pub files: usize,
    pub database_bytes: u64,
    /// Evidence records in the restored database, every one with a blob that hashes to
    /// its name.
    pub evidence_records: usize,
    pub evidence_blobs: usize,
    /// When the backup was made (Unix seconds) and by which version.
    pub created_at_secs: u64,
    pub deskside_version: String,
}

impl fmt::Display for RestoreSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "restored {} files into {} from a backup made at {} by deskside {}: every file \
             matches the manifest, and all {} evidence records have their blob ({} blobs, \
             every hash verified).",
            self.files,
            self.into.display(),
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + Duration::from_secs(self.created_at_secs)
            ),
            self.deskside_version,
            self.evidence_records,
            self.evidence_blobs,
        )
    }
}
