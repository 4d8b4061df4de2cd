//! Restoring a backup into an empty data directory: everything is extracted aside and
//! checked before the first file moves into place.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::archive::extract;
use super::verify::{check_evidence, check_manifest};
use super::{BackupError, DATABASE, EVIDENCE, RestoreSummary, io_err, scratch_dir, sync_dir};
use crate::datadir::DataDir;

/// Restores `archive` into `into`, which must be empty or absent. Every member is
/// extracted into a scratch directory inside the target, checked against the manifest,
/// and the restored database's evidence records checked against their blobs; only then
/// are the files moved into place. On any failure the target is left as it was found.
pub fn restore(archive: &Path, into: &DataDir) -> Result<RestoreSummary, BackupError> {
    if let crate::store::StoreAt::Postgres(url) = into.store_at() {
        return Err(BackupError::PostgresRestore {
            at: url.to_string(),
        });
    }
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
    let scratch = scratch_dir(".deskside-restore-", target)?;
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
