//! Writing a backup: the database copied first, then the keys and every evidence blob
//! streamed into a temporary archive that is renamed into place when whole.

use std::fs;
use std::io::{self, BufWriter};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::archive::{Manifest, append_file, blob_member, member_header};
use super::{
    BackupError, BackupSummary, DATABASE, FORMAT, FORMAT_VERSION, KEY_FILES, MANIFEST,
    OPTIONAL_KEY_FILES, db_err, io_err, scratch_dir, sync_dir,
};
use crate::datadir::DataDir;
use crate::evidence::{BlobError, DirBlobs, StoredBlobs};
use crate::store;

/// Writes a consistent copy of `data` to `out` (a tar archive, mode 0600), safe to run
/// while the controller serves. The archive is written beside `out` under a temporary
/// name and renamed into place when complete, so `out` is never a partial backup.
pub fn backup(data: &DataDir, out: &Path) -> Result<BackupSummary, BackupError> {
    if let store::StoreAt::Postgres(url) = data.store_at() {
        return Err(BackupError::PostgresStore {
            at: url.to_string(),
        });
    }
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
    let scratch = scratch_dir(".deskside-backup-", out_dir)?;
    let snapshot = scratch.path().join(DATABASE);
    // The database first: see the module docs for why this order is consistent.
    let source = data.database();
    store::backup::snapshot(&source, &snapshot).map_err(db_err(
        format!("copying the database {}", source.display()),
        &format!("the copy of {}", source.display()),
    ))?;
    let StoredBlobs { blobs, skipped } = stored_blobs(&data.evidence())?;

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

/// Every blob in the evidence store at `dir`, and anything else found there.
fn stored_blobs(dir: &Path) -> Result<StoredBlobs, BackupError> {
    DirBlobs::new(dir).stored().map_err(|e| match e {
        BlobError::Io { path, source } => BackupError::Io {
            what: format!("listing {path}"),
            source,
        },
        other @ BlobError::BadName(_) => BackupError::Io {
            what: format!("listing {}", dir.display()),
            source: io::Error::other(other),
        },
    })
}
