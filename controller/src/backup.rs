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

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::datadir::DataDir;
use crate::evidence::{BlobStore, DirBlobs};

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
/// How often, and how far apart, a busy database is retried during the copy.
const BUSY_RETRIES: u32 = 50;
const BUSY_PAUSE: Duration = Duration::from_millis(100);

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

fn db_err(what: impl fmt::Display) -> impl FnOnce(rusqlite::Error) -> BackupError {
    move |source| BackupError::Database {
        what: what.to_string(),
        source,
    }
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

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: String,
    version: u32,
    created_at_secs: u64,
    deskside_version: String,
    files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    path: String,
    size: u64,
    sha256: String,
}

/// A reader that hashes and counts what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    fn finish(self) -> (String, u64) {
        (hex::encode(self.hasher.finalize()), self.bytes)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(buf.get(..n).unwrap_or_default());
        self.bytes = self.bytes.saturating_add(n as u64);
        Ok(n)
    }
}

fn is_digest(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `evidence/<aa>/<sha256>`, the blob layout of [`DirBlobs`].
fn blob_member(sha256: &str) -> Option<String> {
    let prefix = sha256.get(..2).filter(|_| is_digest(sha256))?;
    Some(format!("{EVIDENCE}/{prefix}/{sha256}"))
}

// ---- backup -----------------------------------------------------------------------------

/// Writes a consistent copy of `data` to `out` (a tar archive, mode 0600), safe to run
/// while the controller serves. The archive is written beside `out` under a temporary
/// name and renamed into place when complete, so `out` is never a partial backup.
pub fn backup(data: &DataDir, out: &Path) -> Result<BackupSummary, BackupError> {
    let root = data.root();
    let required = KEY_FILES.iter().map(|(name, _)| *name).chain([DATABASE]);
    for name in required {
        if !root.join(name).is_file() {
            return Err(BackupError::NotADataDir {
                dir: root.to_owned(),
                missing: name.to_owned(),
            });
        }
    }
    let out_dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let out_name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| BackupError::BadArchive {
            archive: out.to_owned(),
            reason: "not a file name to write the backup to".to_owned(),
        })?;
    let scratch = tempfile::Builder::new()
        .prefix(".deskside-backup-")
        .tempdir_in(out_dir)
        .map_err(io_err(format!(
            "creating a scratch directory in {}",
            out_dir.display()
        )))?;
    let snapshot = scratch.path().join(DATABASE);
    // The database first: see the module docs for why this order is consistent.
    snapshot_database(&data.database(), &snapshot)?;
    let (blobs, skipped) = evidence_blobs(&data.evidence())?;

    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{out_name}."))
        .suffix(".tmp")
        .tempfile_in(out_dir)
        .map_err(io_err(format!(
            "creating a temporary file in {}",
            out_dir.display()
        )))?;
    let tmp_name = tmp.path().display().to_string();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o600))
        .map_err(io_err(format!("restricting {tmp_name}")))?;
    let mut builder = tar::Builder::new(BufWriter::new(tmp.as_file_mut()));
    let db = append_file(&mut builder, &snapshot, DATABASE, 0o600)?;
    let database_bytes = db.size;
    let mut files = vec![db];
    for (name, mode) in KEY_FILES {
        files.push(append_file(&mut builder, &root.join(name), name, mode)?);
    }
    for (name, mode) in OPTIONAL_KEY_FILES {
        if root.join(name).is_file() {
            files.push(append_file(&mut builder, &root.join(name), name, mode)?);
        }
    }
    let mut evidence_bytes = 0u64;
    for (sha256, path) in &blobs {
        let member = blob_member(sha256).unwrap_or_default();
        let file = append_file(&mut builder, path, &member, 0o600)?;
        if file.sha256 != *sha256 {
            return Err(BackupError::DamagedBlob {
                path: path.clone(),
                actual: file.sha256,
            });
        }
        evidence_bytes = evidence_bytes.saturating_add(file.size);
        files.push(file);
    }
    let file_count = files.len();
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        version: FORMAT_VERSION,
        created_at_secs: crate::clock::now_secs(),
        deskside_version: env!("CARGO_PKG_VERSION").to_owned(),
        files,
    };
    let manifest = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io {
        what: "encoding the manifest".to_owned(),
        source: io::Error::other(e),
    })?;
    let mut header = member_header(manifest.len() as u64, 0o600, crate::clock::now_secs());
    builder
        .append_data(&mut header, MANIFEST, manifest.as_slice())
        .map_err(io_err(format!("writing {tmp_name}")))?;
    builder
        .into_inner()
        .and_then(|w| w.into_inner().map_err(io::IntoInnerError::into_error))
        .map_err(io_err(format!("writing {tmp_name}")))?;
    tmp.as_file()
        .sync_all()
        .map_err(io_err(format!("syncing {tmp_name}")))?;
    tmp.persist(out)
        .map_err(|e| io_err(format!("renaming {tmp_name} to {}", out.display()))(e.error))?;
    sync_dir(out_dir)?;
    let archive_bytes = fs::metadata(out)
        .map_err(io_err(format!("reading {}", out.display())))?
        .len();
    Ok(BackupSummary {
        out: out.to_owned(),
        archive_bytes,
        files: file_count,
        database_bytes,
        evidence_blobs: blobs.len(),
        evidence_bytes,
        skipped,
    })
}

/// Copies the live database at `src` to a new file at `dst` with the online backup API,
/// in a single step: one read transaction, hence one consistent snapshot, which in WAL
/// mode never blocks the controller's writes. The copy is left in rollback-journal
/// mode (one self-contained file; the store switches it back to WAL when opened) and
/// passes `PRAGMA quick_check`.
fn snapshot_database(src: &Path, dst: &Path) -> Result<(), BackupError> {
    let what = format!("copying the database {}", src.display());
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_err(&what))?;
    source
        .busy_timeout(Duration::from_secs(5))
        .map_err(db_err(&what))?;
    let mut copy = Connection::open(dst).map_err(db_err(&what))?;
    {
        let backup = Backup::new(&source, &mut copy).map_err(db_err(&what))?;
        let mut busy = 0;
        loop {
            match backup.step(-1).map_err(db_err(&what))? {
                StepResult::Done => break,
                StepResult::More => {}
                _ if busy < BUSY_RETRIES => {
                    busy += 1;
                    std::thread::sleep(BUSY_PAUSE);
                }
                _ => {
                    return Err(BackupError::Database {
                        what,
                        source: rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                            Some("the database stayed locked; try again".to_owned()),
                        ),
                    });
                }
            }
        }
    }
    copy.pragma_update(None, "journal_mode", "DELETE")
        .map_err(db_err(&what))?;
    quick_check(&copy, &format!("the copy of {}", src.display()))?;
    copy.close().map_err(|(_, e)| db_err(&what)(e))?;
    drop(source);
    Ok(())
}

fn quick_check(conn: &Connection, what: &str) -> Result<(), BackupError> {
    let detail: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(db_err(format!("checking {what}")))?;
    if detail != "ok" {
        return Err(BackupError::DamagedDatabase {
            what: what.to_owned(),
            detail,
        });
    }
    Ok(())
}

type Blobs = BTreeMap<String, PathBuf>;

/// Every blob under `evidence/<aa>/<sha256>`, sorted; and anything else found there.
fn evidence_blobs(dir: &Path) -> Result<(Blobs, Vec<PathBuf>), BackupError> {
    let mut blobs = BTreeMap::new();
    let mut skipped = Vec::new();
    let list = |d: &Path| -> Result<Vec<fs::DirEntry>, BackupError> {
        let mut v = fs::read_dir(d)
            .map_err(io_err(format!("listing {}", d.display())))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(io_err(format!("listing {}", d.display())))?;
        v.sort_by_key(fs::DirEntry::file_name);
        Ok(v)
    };
    if !dir.exists() {
        return Ok((blobs, skipped));
    }
    for prefix in list(dir)? {
        let prefix_name = prefix.file_name().to_string_lossy().into_owned();
        if !prefix.path().is_dir() {
            skipped.push(prefix.path());
            continue;
        }
        for blob in list(&prefix.path())? {
            let name = blob.file_name().to_string_lossy().into_owned();
            // Hidden files are blobs still being written (`DirBlobs::put`); their
            // records are not committed yet, so they are not part of this copy.
            if name.starts_with('.') {
                continue;
            }
            let regular = blob.file_type().is_ok_and(|t| t.is_file());
            if regular && is_digest(&name) && name.starts_with(&prefix_name) {
                blobs.insert(name, blob.path());
            } else {
                skipped.push(blob.path());
            }
        }
    }
    Ok((blobs, skipped))
}

fn member_header(size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Streams one file into the archive, hashing it on the way.
fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &Path,
    member: &str,
    mode: u32,
) -> Result<ManifestFile, BackupError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(io_err(format!("opening {shown}")))?;
    let meta = file
        .metadata()
        .map_err(io_err(format!("reading {shown}")))?;
    let size = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let mut header = member_header(size, mode, mtime);
    let mut reader = Hashing::new(BufReader::new(file).take(size));
    builder
        .append_data(&mut header, member, &mut reader)
        .map_err(io_err(format!("archiving {shown}")))?;
    let (sha256, read) = reader.finish();
    if read != size {
        return Err(BackupError::Io {
            what: format!("archiving {shown}"),
            source: io::Error::other(format!(
                "it shrank from {size} to {read} bytes while being copied"
            )),
        });
    }
    Ok(ManifestFile {
        path: member.to_owned(),
        size,
        sha256,
    })
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("syncing {}", dir.display())))
}

// ---- restore ----------------------------------------------------------------------------

/// Restores `archive` into `into`, which must be empty or absent. Every member is
/// extracted into a scratch directory inside the target, checked against the manifest,
/// and the restored database's evidence records checked against their blobs; only then
/// are the files moved into place. On any failure the target is left as it was found.
pub fn restore(archive: &Path, into: &DataDir) -> Result<RestoreSummary, BackupError> {
    let target = into.root();
    let created = prepare_target(target)?;
    let result = restore_into(archive, target);
    if result.is_err() && created {
        // Only ever removes an empty directory: the scratch directory is gone by now.
        let _ = fs::remove_dir(target);
    }
    result
}

/// Creates the target (mode 0700) or checks that it is an empty directory; returns
/// whether it was created.
fn prepare_target(target: &Path) -> Result<bool, BackupError> {
    let shown = target.display().to_string();
    match fs::read_dir(target) {
        Ok(mut entries) => {
            if let Some(entry) = entries.next() {
                let entry = entry.map_err(io_err(format!("listing {shown}")))?;
                return Err(BackupError::TargetNotEmpty {
                    dir: target.to_owned(),
                    found: entry.file_name().to_string_lossy().into_owned(),
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(target).map_err(io_err(format!("creating {shown}")))?;
            Ok(true)
        }
        Err(e) => Err(io_err(format!("opening {shown}"))(e)),
    }
}

fn restore_into(archive: &Path, target: &Path) -> Result<RestoreSummary, BackupError> {
    let scratch = tempfile::Builder::new()
        .prefix(".deskside-restore-")
        .tempdir_in(target)
        .map_err(io_err(format!(
            "creating a scratch directory in {}",
            target.display()
        )))?;
    let staged = scratch.path();
    fs::create_dir(staged.join(EVIDENCE)).map_err(io_err(format!(
        "creating {}",
        staged.join(EVIDENCE).display()
    )))?;
    let (extracted, manifest) = extract(archive, staged)?;
    let manifest = check_manifest(archive, &extracted, manifest)?;
    let evidence_records = check_evidence(staged)?;

    // Everything checks out: move the files into place.
    let mut top = fs::read_dir(staged)
        .map_err(io_err(format!("listing {}", staged.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(format!("listing {}", staged.display())))?;
    top.sort_by_key(fs::DirEntry::file_name);
    for entry in top {
        let to = target.join(entry.file_name());
        fs::rename(entry.path(), &to).map_err(io_err(format!(
            "moving {} to {}",
            entry.path().display(),
            to.display()
        )))?;
    }
    scratch.close().map_err(io_err(format!(
        "removing the scratch directory in {}",
        target.display()
    )))?;
    fs::set_permissions(target, fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("restricting {}", target.display())))?;
    sync_dir(target)?;
    Ok(RestoreSummary {
        into: target.to_owned(),
        files: extracted.len(),
        database_bytes: extracted.get(DATABASE).map_or(0, |(_, size)| *size),
        evidence_records,
        evidence_blobs: extracted
            .keys()
            .filter(|m| m.starts_with(&format!("{EVIDENCE}/")))
            .count(),
        created_at_secs: manifest.created_at_secs,
        deskside_version: manifest.deskside_version,
    })
}

/// Member name → (sha256, size) of what was written.
type Extracted = BTreeMap<String, (String, u64)>;

/// What a member may be, and the mode it is restored with.
fn member_mode(member: &str) -> Option<u32> {
    if member == DATABASE {
        return Some(0o600);
    }
    if let Some((_, mode)) = KEY_FILES
        .iter()
        .chain(&OPTIONAL_KEY_FILES)
        .find(|(name, _)| *name == member)
    {
        return Some(*mode);
    }
    let sha256 = member.rsplit('/').next()?;
    (blob_member(sha256).as_deref() == Some(member)).then_some(0o600)
}

/// The member's path as `a/b/c`, refusing absolute paths and `..` anywhere.
fn member_name(path: &Path) -> Result<String, BackupError> {
    let shown = path.display().to_string();
    let unsafe_path = || BackupError::UnsafePath {
        member: shown.clone(),
    };
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(unsafe_path)?),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                return Err(unsafe_path());
            }
        }
    }
    if parts.is_empty() {
        return Err(unsafe_path());
    }
    Ok(parts.join("/"))
}

/// Writes every member into `staged` (never outside it: paths are checked first and only
/// known names are accepted), hashing each; returns them and the manifest's bytes.
fn extract(archive: &Path, staged: &Path) -> Result<(Extracted, Option<Vec<u8>>), BackupError> {
    let shown = archive.display().to_string();
    let file = File::open(archive).map_err(io_err(format!("opening {shown}")))?;
    let mut tar = tar::Archive::new(BufReader::new(file));
    let mut extracted = Extracted::new();
    let mut manifest = None;
    let entries = tar.entries().map_err(io_err(format!("reading {shown}")))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err(format!("reading {shown}")))?;
        let raw = entry
            .path()
            .map_err(io_err(format!("reading a member name in {shown}")))?
            .into_owned();
        let member = member_name(&raw)?;
        let unexpected = |reason: &str| BackupError::UnexpectedMember {
            member: member.clone(),
            reason: reason.to_owned(),
        };
        if !entry.header().entry_type().is_file() {
            return Err(unexpected("is not a regular file"));
        }
        if member == MANIFEST {
            if manifest.is_some() {
                return Err(unexpected("appears twice"));
            }
            if entry.size() > MAX_MANIFEST_BYTES {
                return Err(unexpected("is too large to be a manifest"));
            }
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(io_err(format!("reading {MANIFEST} from {shown}")))?;
            manifest = Some(bytes);
            continue;
        }
        let mode =
            member_mode(&member).ok_or_else(|| unexpected("is not part of a Deskside backup"))?;
        let dest = staged.join(&member);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
        }
        let mut out = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&dest)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(unexpected("appears twice"));
            }
            Err(e) => return Err(io_err(format!("creating {}", dest.display()))(e)),
        };
        let mut reader = Hashing::new(&mut entry);
        io::copy(&mut reader, &mut out)
            .map_err(io_err(format!("extracting {member} from {shown}")))?;
        out.sync_all()
            .map_err(io_err(format!("syncing {}", dest.display())))?;
        extracted.insert(member, reader.finish());
    }
    Ok((extracted, manifest))
}

/// Every listed file present with its hash, nothing unlisted, the data directory whole.
fn check_manifest(
    archive: &Path,
    extracted: &Extracted,
    manifest: Option<Vec<u8>>,
) -> Result<Manifest, BackupError> {
    let bad = |reason: String| BackupError::BadArchive {
        archive: archive.to_owned(),
        reason,
    };
    let bytes = manifest.ok_or_else(|| {
        bad(format!(
            "no {MANIFEST}: not a Deskside backup, or cut short"
        ))
    })?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("{MANIFEST} is not a Deskside manifest: {e}")))?;
    if manifest.format != FORMAT {
        return Err(bad(format!(
            "{MANIFEST} describes {:?}, not a {FORMAT}",
            manifest.format
        )));
    }
    if manifest.version != FORMAT_VERSION {
        return Err(bad(format!(
            "backup format version {} is not one this deskside reads ({FORMAT_VERSION}); restore with deskside {}",
            manifest.version, manifest.deskside_version
        )));
    }
    let mut listed = BTreeMap::new();
    for file in &manifest.files {
        if listed.insert(file.path.as_str(), file).is_some() {
            return Err(bad(format!("{MANIFEST} lists {} twice", file.path)));
        }
        match extracted.get(&file.path) {
            None => {
                return Err(BackupError::Missing {
                    member: file.path.clone(),
                });
            }
            Some((sha256, size)) if *sha256 != file.sha256 || *size != file.size => {
                return Err(BackupError::Mismatch {
                    member: file.path.clone(),
                    expected: file.sha256.clone(),
                    actual: sha256.clone(),
                });
            }
            Some(_) => {}
        }
    }
    if let Some(member) = extracted.keys().find(|m| !listed.contains_key(m.as_str())) {
        return Err(BackupError::NotInManifest {
            member: member.clone(),
        });
    }
    let required = KEY_FILES.iter().map(|(name, _)| *name).chain([DATABASE]);
    for name in required {
        if !listed.contains_key(name) {
            return Err(BackupError::Missing {
                member: name.to_owned(),
            });
        }
    }
    Ok(manifest)
}

/// Every evidence record in the restored database has its blob, and the blob hashes to
/// its name; returns the number of records.
fn check_evidence(staged: &Path) -> Result<usize, BackupError> {
    let db = staged.join(DATABASE);
    let what = format!("reading the restored database {}", db.display());
    let conn = Connection::open_with_flags(
        &db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(db_err(&what))?;
    quick_check(&conn, "the restored database")?;
    let mut stmt = conn
        .prepare("SELECT ticket, sha256 FROM evidence ORDER BY ticket, sha256")
        .map_err(db_err(&what))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .map_err(db_err(&what))?;
    let blobs = DirBlobs::new(staged.join(EVIDENCE));
    let mut records = 0;
    for row in rows {
        let (ticket, sha256) = row.map_err(db_err(&what))?;
        let broken = |reason: String| BackupError::Evidence {
            ticket: u64::try_from(ticket).unwrap_or(0),
            sha256: sha256.clone(),
            reason,
        };
        let bytes = match blobs.get(&sha256) {
            Ok(bytes) => bytes,
            Err(crate::evidence::BlobError::BadName(_)) => {
                return Err(broken("is not a SHA-256 digest".to_owned()));
            }
            Err(crate::evidence::BlobError::Io { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                return Err(broken("its blob is not in the backup".to_owned()));
            }
            Err(e) => return Err(broken(e.to_string())),
        };
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sha256 {
            return Err(broken(format!("its blob hashes to {actual}")));
        }
        records += 1;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{GENESIS_HASH, NewEvent, NewEvidence, NewTicket, Store, entry_hash};
    use deskside_proto::msg::identity::Tier;

    struct Fixture {
        tmp: tempfile::TempDir,
        data: DataDir,
        store: Store,
        tickets: Vec<u64>,
    }

    fn ticket(store: &Store, title: &str) -> anyhow::Result<u64> {
        Ok(store.blocking(|db| {
            db.create_ticket(&NewTicket {
                title,
                requester: "pat",
                priority: "high",
                agent: None,
                by: "alice",
                tier: Tier::L1,
            })
        })?)
    }

    fn add_evidence(store: &Store, number: u64, sha256: &str, size: u64) -> anyhow::Result<()> {
        store.blocking(|db| {
            db.add_evidence(
                number,
                &NewEvidence {
                    sha256: sha256.to_owned(),
                    kind: "snapshot".into(),
                    size_bytes: size,
                    agent_id: None,
                    signature: None,
                    redaction: vec![],
                },
                &NewEvent {
                    actor: "alice",
                    kind: "snapshot",
                    detail: "diagnostics",
                    evidence_sha256: Some(sha256),
                },
            )
        })?;
        Ok(())
    }

    /// A data directory with two tickets and three evidence items, the store left open.
    fn fixture() -> anyhow::Result<Fixture> {
        let tmp = tempfile::tempdir()?;
        let data = DataDir::new(tmp.path().join("data"));
        data.init()?;
        let store = Store::open(&data.database())?;
        let blobs = DirBlobs::new(data.evidence());
        let a = ticket(&store, "printer")?;
        let b = ticket(&store, "vpn")?;
        for (n, bytes) in [
            (a, &b"snapshot one"[..]),
            (a, b"log excerpt"),
            (b, b"snapshot two"),
        ] {
            let sha = blobs.put(bytes)?;
            add_evidence(&store, n, &sha, bytes.len() as u64)?;
        }
        Ok(Fixture {
            tmp,
            data,
            store,
            tickets: vec![a, b],
        })
    }

    type Rows = (
        Vec<deskside_proto::msg::tech::TicketSummary>,
        Vec<Vec<deskside_proto::msg::tech::TimelineEntry>>,
        Vec<Vec<deskside_proto::msg::tech::EvidenceRef>>,
    );

    fn rows(store: &Store, tickets: &[u64]) -> anyhow::Result<Rows> {
        Ok(store.blocking(|db| {
            let mut timelines = Vec::new();
            let mut evidence = Vec::new();
            for n in tickets {
                timelines.push(db.timeline(*n)?);
                evidence.push(db.evidence(*n)?);
            }
            Ok((db.tickets()?, timelines, evidence))
        })?)
    }

    fn mode(path: &Path) -> anyhow::Result<u32> {
        Ok(fs::metadata(path)?.permissions().mode() & 0o777)
    }

    #[test]
    fn backup_then_restore_into_a_new_dir_gives_the_same_rows_and_verified_evidence()
    -> anyhow::Result<()> {
        let f = fixture()?;
        let out = f.tmp.path().join("backup.tar");
        // The store stays open: this is an online backup.
        let summary = backup(&f.data, &out)?;
        assert_eq!(summary.evidence_blobs, 3);
        assert_eq!(
            summary.files, 11,
            "db + 7 keys and certificates (record signing included) + 3 blobs"
        );
        assert_eq!(mode(&out)?, 0o600);
        assert!(summary.to_string().contains("CA private key"), "{summary}");
        let leftovers: Vec<_> = fs::read_dir(f.tmp.path())?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let restored = DataDir::new(f.tmp.path().join("restored"));
        let r = restore(&out, &restored)?;
        assert_eq!(r.files, 11);
        assert_eq!(r.evidence_records, 3);
        assert!(r.to_string().contains("every hash verified"), "{r}");
        assert_eq!(mode(restored.root())?, 0o700);
        assert_eq!(mode(&restored.root().join("ca.key"))?, 0o600);

        let again = Store::open(&restored.database())?;
        let original = rows(&f.store, &f.tickets)?;
        assert_eq!(rows(&again, &f.tickets)?, original);
        let blobs = DirBlobs::new(restored.evidence());
        let mut verified = 0;
        for item in original.2.iter().flatten() {
            let bytes = blobs.get(&item.sha256)?;
            assert_eq!(hex::encode(Sha256::digest(&bytes)), item.sha256);
            verified += 1;
        }
        assert_eq!(verified, 3);
        // The keys load, so the restored controller serves its enrolled agents.
        assert_eq!(restored.load()?.ca_sha256, f.data.load()?.ca_sha256);
        // The same record-signing key: session records signed before the backup still
        // verify in bundles the restored controller exports.
        assert!(restored.root().join("record-signing.key").is_file());
        assert_eq!(
            restored.record_signing(&restored.load()?.ca)?.cert_pem,
            f.data.record_signing(&f.data.load()?.ca)?.cert_pem
        );
        Ok(())
    }

    #[test]
    fn backup_of_a_closed_database_works_too() -> anyhow::Result<()> {
        let f = fixture()?;
        let Fixture {
            tmp, data, store, ..
        } = f;
        drop(store);
        let out = tmp.path().join("closed.tar");
        backup(&data, &out)?;
        restore(&out, &DataDir::new(tmp.path().join("r")))?;
        Ok(())
    }

    #[test]
    fn backup_is_consistent_while_the_controller_writes() -> anyhow::Result<()> {
        let f = fixture()?;
        let n = f.tickets.first().copied().unwrap_or(1);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (store, stop) = (f.store.clone(), stop.clone());
            std::thread::spawn(move || -> anyhow::Result<u32> {
                let mut written = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    store.blocking(|db| {
                        db.add_event(
                            n,
                            &NewEvent {
                                actor: "bob",
                                kind: "note",
                                detail: "still working on it",
                                evidence_sha256: None,
                            },
                        )
                    })?;
                    written += 1;
                }
                Ok(written)
            })
        };
        let out = f.tmp.path().join("busy.tar");
        let result = backup(&f.data, &out);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let written = writer
            .join()
            .map_err(|_| anyhow::anyhow!("writer panicked"))??;
        result?;
        assert!(written > 0);
        let restored = DataDir::new(f.tmp.path().join("restored"));
        restore(&out, &restored)?;
        let timeline = Store::open(&restored.database())?.blocking(|db| db.timeline(n))?;
        let mut prev = GENESIS_HASH.to_owned();
        for e in &timeline {
            assert_eq!(e.prev_hash, prev);
            assert_eq!(entry_hash(n, e), e.hash);
            prev = e.hash.clone();
        }
        Ok(())
    }

    /// Copies `src` to `dst`, passing each member's bytes through `edit`.
    fn rewrite(
        src: &Path,
        dst: &Path,
        edit: impl Fn(&str, Vec<u8>) -> Vec<u8>,
    ) -> anyhow::Result<()> {
        let mut ar = tar::Archive::new(File::open(src)?);
        let mut out = tar::Builder::new(File::create(dst)?);
        for entry in ar.entries()? {
            let mut entry = entry?;
            let name = entry.path()?.to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            let bytes = edit(&name, bytes);
            let mut header = entry.header().clone();
            header.set_size(bytes.len() as u64);
            out.append_data(&mut header, &name, bytes.as_slice())?;
        }
        out.into_inner()?.sync_all()?;
        Ok(())
    }

    fn is_empty_or_absent(dir: &Path) -> bool {
        fs::read_dir(dir).map_or(true, |mut d| d.next().is_none())
    }

    #[test]
    fn a_tampered_member_is_refused_by_name() -> anyhow::Result<()> {
        let f = fixture()?;
        let out = f.tmp.path().join("backup.tar");
        backup(&f.data, &out)?;
        let sha = DirBlobs::new(f.data.evidence()).put(b"log excerpt")?;
        let victim = blob_member(&sha).unwrap_or_default();
        let tampered = f.tmp.path().join("tampered.tar");
        rewrite(&out, &tampered, |name, mut bytes| {
            if name == victim {
                bytes.iter_mut().for_each(|b| *b = b.to_ascii_uppercase());
            }
            bytes
        })?;
        let into = DataDir::new(f.tmp.path().join("restored"));
        let err = match restore(&tampered, &into) {
            Ok(s) => anyhow::bail!("restored a tampered archive: {s}"),
            Err(e) => e,
        };
        assert!(matches!(err, BackupError::Mismatch { .. }), "{err}");
        assert!(err.to_string().contains(&victim), "{err}");
        assert!(is_empty_or_absent(into.root()));

        // A key swapped for another is caught the same way.
        rewrite(&out, &tampered, |name, bytes| {
            if name == "ca.key" {
                b"-----BEGIN PRIVATE KEY-----\n".to_vec()
            } else {
                bytes
            }
        })?;
        let err = restore(&tampered, &into)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("archive member ca.key does not match the manifest"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn a_record_without_its_blob_is_named() -> anyhow::Result<()> {
        let f = fixture()?;
        let n = f.tickets.get(1).copied().unwrap_or(2);
        let missing = hex::encode(Sha256::digest(b"never stored"));
        add_evidence(&f.store, n, &missing, 12)?;
        let out = f.tmp.path().join("backup.tar");
        backup(&f.data, &out)?;
        let into = DataDir::new(f.tmp.path().join("restored"));
        let err = restore(&out, &into)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains(&format!(
                "evidence {missing} of ticket {n}: its blob is not in the backup"
            )),
            "{err}"
        );
        assert!(is_empty_or_absent(into.root()));
        Ok(())
    }

    #[test]
    fn restore_into_a_non_empty_dir_is_refused() -> anyhow::Result<()> {
        let f = fixture()?;
        let out = f.tmp.path().join("backup.tar");
        backup(&f.data, &out)?;
        let err = restore(&out, &f.data)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("refusing to restore into"), "{err}");
        assert!(err.contains("not empty"), "{err}");
        let other = f.tmp.path().join("other");
        fs::create_dir(&other)?;
        fs::write(other.join("keep.txt"), "mine")?;
        let err = restore(&out, &DataDir::new(&other))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("found keep.txt"), "{err}");
        assert_eq!(fs::read_to_string(other.join("keep.txt"))?, "mine");
        // An existing empty directory (e.g. made by systemd) is fine.
        let empty = f.tmp.path().join("empty");
        fs::create_dir(&empty)?;
        restore(&out, &DataDir::new(&empty))?;
        Ok(())
    }

    /// An archive whose one member has exactly `name`, bypassing the tar crate's checks.
    fn crafted(path: &Path, name: &[u8]) -> anyhow::Result<()> {
        let mut header = tar::Header::new_old();
        for (d, s) in header.as_old_mut().name.iter_mut().zip(name) {
            *d = *s;
        }
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(5);
        header.set_mode(0o644);
        header.set_cksum();
        let mut b = tar::Builder::new(File::create(path)?);
        b.append(&header, &b"evil\n"[..])?;
        b.into_inner()?.sync_all()?;
        Ok(())
    }

    #[test]
    fn members_outside_the_target_are_refused() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let into = DataDir::new(tmp.path().join("a").join("target"));
        let escape = tmp.path().join("a").join("evil");
        let absolute = tmp.path().join("absolute-evil");
        let cases = [
            b"../evil".to_vec(),
            absolute.to_string_lossy().as_bytes().to_vec(),
            b"evidence/../../evil".to_vec(),
        ];
        for name in cases {
            let archive = tmp.path().join("crafted.tar");
            crafted(&archive, &name)?;
            let err = match restore(&archive, &into) {
                Ok(s) => anyhow::bail!("restored {name:?}: {s}"),
                Err(e) => e,
            };
            assert!(matches!(err, BackupError::UnsafePath { .. }), "{err}");
            assert!(
                err.to_string().contains(&*String::from_utf8_lossy(&name)),
                "{err}"
            );
            assert!(!escape.exists() && !absolute.exists());
            assert!(is_empty_or_absent(into.root()));
        }
        // Unknown names and non-files are refused too.
        let archive = tmp.path().join("crafted.tar");
        crafted(&archive, b"etc/cron.d/x")?;
        let err = restore(&archive, &into)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("is not part of a Deskside backup"), "{err}");
        Ok(())
    }

    #[test]
    fn backup_of_something_else_says_what_is_missing() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let err = backup(&DataDir::new(tmp.path()), &tmp.path().join("x.tar"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("not a Deskside data directory (no ca.crt)"),
            "{err}"
        );
        assert!(!tmp.path().join("x.tar").exists());
        Ok(())
    }
}
