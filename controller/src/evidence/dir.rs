//! Blobs as files in a directory: `root/ab/abcdef…`, named by their SHA-256.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::writer::{DirBlobWriter, Sink};
use super::{BlobError, BlobStore, BlobWriter, io};

/// Blobs as files under `root/ab/abcdef…`.
#[derive(Debug, Clone)]
pub struct DirBlobs {
    pub(super) root: PathBuf,
}

impl DirBlobs {
    pub fn new(root: impl Into<PathBuf>) -> DirBlobs {
        DirBlobs { root: root.into() }
    }

    pub(super) fn path(&self, sha256: &str) -> Result<PathBuf, BlobError> {
        super::path_in(&self.root, sha256)
    }

    /// The file that holds blob `sha256` (whether or not it is stored yet).
    pub fn path_of(&self, sha256: &str) -> Result<PathBuf, BlobError> {
        self.path(sha256)
    }

    /// `ab/abcdef…`: where blob `sha256` lives below the store's root, `/`-separated,
    /// for an archive that mirrors the layout.
    pub fn relative_path(sha256: &str) -> Result<String, BlobError> {
        super::relative_path(sha256)
    }

    /// Every blob stored, sorted by hash, and anything else found under the root. A
    /// blob still being written (a hidden file beside it, see [`BlobStore::put`]) is
    /// neither: whatever refers to it is not committed yet.
    pub fn stored(&self) -> Result<StoredBlobs, BlobError> {
        let mut found = StoredBlobs::default();
        let list = |d: &Path| -> Result<Vec<fs::DirEntry>, BlobError> {
            let mut v = fs::read_dir(d)
                .map_err(io(d))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(io(d))?;
            v.sort_by_key(fs::DirEntry::file_name);
            Ok(v)
        };
        if !self.root.exists() {
            return Ok(found);
        }
        for prefix in list(&self.root)? {
            let prefix_name = prefix.file_name().to_string_lossy().into_owned();
            if !prefix.path().is_dir() {
                found.skipped.push(prefix.path());
                continue;
            }
            for blob in list(&prefix.path())? {
                let name = blob.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let regular = blob.file_type().is_ok_and(|t| t.is_file());
                let named = DirBlobs::relative_path(&name).is_ok();
                if regular && named && name.starts_with(&prefix_name) {
                    found.blobs.insert(name, blob.path());
                } else {
                    found.skipped.push(blob.path());
                }
            }
        }
        Ok(found)
    }
}

/// What [`DirBlobs::stored`] found.
#[derive(Debug, Default)]
pub struct StoredBlobs {
    /// SHA-256 (hex) → the file holding that blob.
    pub blobs: BTreeMap<String, PathBuf>,
    /// Files and directories under the root that are not blobs (e.g. a stray file).
    pub skipped: Vec<PathBuf>,
}

impl BlobStore for DirBlobs {
    fn put(&self, bytes: &[u8]) -> Result<String, BlobError> {
        let sha = hex::encode(Sha256::digest(bytes));
        let path = self.path(&sha)?;
        if path.metadata().is_ok_and(|m| m.len() == bytes.len() as u64) {
            return Ok(sha);
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        // Write aside, sync, then rename: a crash leaves either no blob or a whole one.
        let tmp = dir.join(format!(".{sha}.{}.tmp", std::process::id()));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        Ok(sha)
    }

    fn get(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        let path = self.path(sha256)?;
        fs::read(&path).map_err(io(&path))
    }

    fn open(&self, sha256: &str) -> Result<Box<dyn std::io::Read + Send>, BlobError> {
        let path = self.path(sha256)?;
        Ok(Box::new(File::open(&path).map_err(io(&path))?))
    }

    fn location(&self, sha256: &str) -> String {
        self.path(sha256)
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    }

    fn begin(&self) -> Result<Box<dyn BlobWriter>, BlobError> {
        fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        // In the blob directory itself, so the final rename never crosses a filesystem.
        let tmp = self.root.join(format!(
            ".incoming.{}.{}.tmp",
            std::process::id(),
            hex::encode(rand::random::<[u8; 8]>())
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        let sink = Sink::new(file, &tmp);
        Ok(Box::new(DirBlobWriter {
            root: self.root.clone(),
            sink: Some(sink),
            tmp,
            hasher: Sha256::new(),
        }))
    }

    fn copy_to(&self, sha256: &str, dest: &Path) -> Result<String, BlobError> {
        use std::io::Read;
        let path = self.path(sha256)?;
        let mut from = File::open(&path).map_err(io(&path))?;
        let mut to = File::create(dest).map_err(io(dest))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; COPY_CHUNK_BYTES];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io(&path)(e)),
            };
            let piece = buf.get(..n).unwrap_or_default();
            hasher.update(piece);
            to.write_all(piece).map_err(io(dest))?;
        }
        Ok(hex::encode(hasher.finalize()))
    }

    fn size(&self, sha256: &str) -> Result<u64, BlobError> {
        let path = self.path(sha256)?;
        fs::metadata(&path).map(|m| m.len()).map_err(io(&path))
    }
}

/// Pieces read and written at a time when copying a blob.
const COPY_CHUNK_BYTES: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_content_addressed_and_idempotent() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = DirBlobs::new(dir.path());
        let a = blobs.put(b"hello")?;
        assert_eq!(
            a,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(blobs.put(b"hello")?, a);
        assert_eq!(blobs.get(&a)?, b"hello");
        assert!(blobs.location(&a).ends_with(&a));
        Ok(())
    }

    #[test]
    fn streamed_blobs_are_named_by_their_hash_and_abandoned_ones_vanish() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = DirBlobs::new(dir.path());
        let mut w = blobs.begin()?;
        w.write(b"hel")?;
        w.write(b"lo")?;
        assert_eq!(w.written(), 5);
        let sha = w.commit()?;
        assert_eq!(sha, blobs.put(b"hello")?);
        assert_eq!(blobs.size(&sha)?, 5);
        let copy = dir.path().join("copy");
        assert_eq!(blobs.copy_to(&sha, &copy)?, sha);
        assert_eq!(std::fs::read(&copy)?, b"hello");
        std::fs::remove_file(&copy)?;
        let mut abandoned = blobs.begin()?;
        abandoned.write(b"partial")?;
        drop(abandoned);
        let left: Vec<_> = std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        Ok(())
    }

    #[test]
    fn stored_lists_blobs_by_hash_and_names_what_is_not_one() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = DirBlobs::new(dir.path());
        let b = blobs.put(b"second")?;
        let a = blobs.put(b"first")?;
        let prefix = dir.path().join(b.get(..2).unwrap_or_default());
        fs::write(prefix.join("not-a-digest"), "x")?;
        fs::write(prefix.join(format!(".{b}.1.tmp")), "half")?;
        fs::write(dir.path().join("stray"), "x")?;
        let found = blobs.stored()?;
        let mut hashes = vec![a.clone(), b.clone()];
        hashes.sort();
        assert_eq!(found.blobs.keys().cloned().collect::<Vec<_>>(), hashes);
        assert_eq!(found.blobs.get(&a), Some(&blobs.path_of(&a)?));
        assert_eq!(
            found.skipped,
            vec![prefix.join("not-a-digest"), dir.path().join("stray")]
        );
        assert_eq!(
            DirBlobs::relative_path(&a)?,
            format!("{}/{a}", a.get(..2).unwrap_or_default())
        );
        assert!(
            DirBlobs::new(dir.path().join("absent"))
                .stored()?
                .blobs
                .is_empty()
        );
        Ok(())
    }

    #[test]
    fn refuses_names_that_are_not_digests() {
        let blobs = DirBlobs::new("/tmp");
        for bad in ["", "../../etc/passwd", &"A".repeat(64), &"g".repeat(64)] {
            assert!(
                matches!(blobs.get(bad), Err(BlobError::BadName(_))),
                "{bad}"
            );
        }
    }
}
