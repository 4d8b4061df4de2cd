//! Evidence blobs, content-addressed by SHA-256. Nothing outside this module builds a
//! blob path, so a directory today can become an object store later.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("evidence store I/O on {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0:?} is not a SHA-256 hex digest")]
    BadName(String),
}

/// Where evidence bytes live.
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` durably and returns their SHA-256 (hex). Storing the same bytes
    /// twice is a no-op.
    fn put(&self, bytes: &[u8]) -> Result<String, BlobError>;
    fn get(&self, sha256: &str) -> Result<Vec<u8>, BlobError>;
    /// Where the blob lives, for people (a path or a URL).
    fn location(&self, sha256: &str) -> String;
    /// Starts a blob whose bytes arrive in pieces (a collected file): they are hashed
    /// and written aside as they come, never held in memory. Dropping the writer
    /// without [`BlobWriter::commit`] leaves nothing behind.
    fn begin(&self) -> Result<Box<dyn BlobWriter>, BlobError>;
    /// Copies a blob to `dest` in pieces and returns the SHA-256 (hex) of what was
    /// copied, so callers check it against the name without reading the blob twice.
    fn copy_to(&self, sha256: &str, dest: &Path) -> Result<String, BlobError>;
    /// The blob's size in bytes.
    fn size(&self, sha256: &str) -> Result<u64, BlobError>;
}

/// A blob being written; see [`BlobStore::begin`].
pub trait BlobWriter: Send + std::fmt::Debug {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError>;
    /// Bytes written so far.
    fn written(&self) -> u64;
    /// SHA-256 (hex) of the bytes written so far.
    fn sha256(&self) -> String;
    /// Makes the blob durable under its hash and returns the hash.
    fn commit(self: Box<Self>) -> Result<String, BlobError>;
}

/// Blobs as files under `root/ab/abcdef…`.
#[derive(Debug, Clone)]
pub struct DirBlobs {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl DirBlobs {
    pub fn new(root: impl Into<PathBuf>) -> DirBlobs {
        DirBlobs { root: root.into() }
    }

    fn path(&self, sha256: &str) -> Result<PathBuf, BlobError> {
        let valid = sha256.len() == 64
            && sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        let prefix = sha256
            .get(..2)
            .filter(|_| valid)
            .ok_or_else(|| BlobError::BadName(sha256.to_owned()))?;
        Ok(self.root.join(prefix).join(sha256))
    }
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
        Ok(Box::new(DirBlobWriter {
            store: self.clone(),
            file: Some(file),
            tmp,
            hasher: Sha256::new(),
            written: 0,
            flushed: 0,
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

/// A blob being written to a temporary file in the blob directory.
#[derive(Debug)]
struct DirBlobWriter {
    store: DirBlobs,
    file: Option<File>,
    tmp: PathBuf,
    hasher: Sha256,
    written: u64,
    /// Bytes already handed to the disk by [`crate::writeback::start`].
    flushed: u64,
}

/// How much of a streamed blob may wait in the page cache before its writeback starts:
/// the final `fsync` then has at most this much left to write.
const WRITEBACK_BYTES: u64 = 8 * 1024 * 1024;

impl BlobWriter for DirBlobWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        let file = self.file.as_mut().ok_or_else(|| BlobError::Io {
            path: self.tmp.display().to_string(),
            source: std::io::Error::other("written after commit"),
        })?;
        file.write_all(bytes).map_err(io(&self.tmp))?;
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        if self.written - self.flushed >= WRITEBACK_BYTES {
            crate::writeback::start(file, self.flushed, self.written - self.flushed);
            self.flushed = self.written;
        }
        Ok(())
    }

    fn written(&self) -> u64 {
        self.written
    }

    fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    fn commit(mut self: Box<Self>) -> Result<String, BlobError> {
        let sha = self.sha256();
        let path = self.store.path(&sha)?;
        let file = self.file.take().ok_or_else(|| BlobError::Io {
            path: self.tmp.display().to_string(),
            source: std::io::Error::other("committed twice"),
        })?;
        file.sync_all().map_err(io(&self.tmp))?;
        drop(file);
        let dir = path.parent().unwrap_or(&self.store.root).to_path_buf();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        // Write aside, sync, then rename: a crash leaves either no blob or a whole one.
        fs::rename(&self.tmp, &path).map_err(io(&path))?;
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dir))?;
        Ok(sha)
    }
}

impl Drop for DirBlobWriter {
    fn drop(&mut self) {
        // Not committed: the partial bytes go.
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

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
