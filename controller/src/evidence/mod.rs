//! Evidence blobs, content-addressed by SHA-256. Nothing outside this module builds a
//! blob path, so a directory today can become an object store later.
//!
//! `dir.rs` holds the store on a directory, `writer.rs` the streamed writer that puts a
//! large blob on disk without passing it through the page cache.
//!
//! Several controller nodes share one blob directory (`[evidence] dir`, an NFS mount in
//! production; docs/DEPLOYMENT.md). PostgreSQL was the other candidate and was measured
//! against it (`deskside-bench evidence`, docs/PERFORMANCE.md "Shared evidence blobs"):
//! the database writes every byte twice (WAL, then the table), grows by the whole blob,
//! and `pg_dump` would carry every collected file in every backup, while the directory
//! writes each blob once under its SHA-256 and backs up incrementally. Its
//! implementation (`store::blobs`) stays for that benchmark and is not selectable.

use std::path::Path;

mod dir;
mod writer;

pub use dir::{DirBlobs, StoredBlobs};

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
    /// Reads a blob in pieces (a download of a collected file).
    fn open(&self, sha256: &str) -> Result<Box<dyn std::io::Read + Send>, BlobError>;
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

/// An I/O error on `path`, as a [`BlobError`].
fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `ab/abcdef…`: where blob `sha256` lives below a blob directory, `/`-separated.
fn relative_path(sha256: &str) -> Result<String, BlobError> {
    let valid = deskside_proto::digest::is_sha256_hex(sha256);
    let prefix = sha256
        .get(..2)
        .filter(|_| valid)
        .ok_or_else(|| BlobError::BadName(sha256.to_owned()))?;
    Ok(format!("{prefix}/{sha256}"))
}

/// The file that holds blob `sha256` in the blob directory `root`.
fn path_in(root: &std::path::Path, sha256: &str) -> Result<std::path::PathBuf, BlobError> {
    Ok(root.join(relative_path(sha256)?))
}
