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
