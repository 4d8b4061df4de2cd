//! Checking an extracted archive: the manifest against what was extracted, and the
//! restored database's evidence records against their blobs.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::archive::{Extracted, Manifest};
use super::{BackupError, DATABASE, EVIDENCE, FORMAT, FORMAT_VERSION, KEY_FILES, MANIFEST, db_err};
use crate::evidence::{BlobError, BlobStore, DirBlobs};
use crate::store;

/// Every listed file present with its hash, nothing unlisted, the data directory whole.
pub(super) fn check_manifest(
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
pub(super) fn check_evidence(staged: &Path) -> Result<usize, BackupError> {
    let db = staged.join(DATABASE);
    let what = format!("reading the restored database {}", db.display());
    let blobs = DirBlobs::new(staged.join(EVIDENCE));
    let mut records = 0;
    store::backup::each_evidence(&db, |ticket, sha256| {
        let broken = |reason: String| BackupError::Evidence {
            ticket,
            sha256: sha256.clone(),
            reason,
        };
        let bytes = match blobs.get(&sha256) {
            Ok(bytes) => bytes,
            Err(BlobError::BadName(_)) => {
                return Err(broken("is not a SHA-256 digest".to_owned()));
            }
            Err(BlobError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(broken("its blob is not in the backup".to_owned()));
            }
            Err(e) => return Err(broken(e.to_string())),
        };
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != sha256 {
            return Err(broken(format!("its blob hashes to {actual}")));
        }
        records += 1;
        Ok(())
    })
    .map_err(db_err(what, "the restored database"))??;
    Ok(records)
}
