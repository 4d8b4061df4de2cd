//! Evidence blobs in PostgreSQL: the other candidate for a cluster's shared blob store,
//! kept to measure against the shared directory (`deskside-bench evidence`). It is not
//! selectable in `controller.toml`: the directory won (docs/PERFORMANCE.md, "Shared
//! evidence blobs"), because every byte PostgreSQL stores is written twice (WAL, then
//! the table), the database grows by the whole blob and `pg_dump` carries it.
//!
//! A blob is 1 MiB BYTEA chunks under a random upload number, written in one
//! transaction as the bytes arrive (never held whole in memory), then named by its
//! SHA-256 in `evidence_blobs`; an abandoned writer rolls back and leaves nothing.
//! Reads go a chunk at a time and check the size and digest at the end. The tables are
//! made by [`PgBlobs::prepare`], not by the store's migrations, since no controller
//! uses them.

use std::io::Read;
use std::sync::{Arc, Mutex};

use postgres::{Client, NoTls, Statement};
use sha2::{Digest, Sha256};

use crate::evidence::{BlobError, BlobStore, BlobWriter};

/// Bytes per row: large enough that a 256 MiB blob is 256 inserts, small enough that
/// one chunk is a modest allocation on both sides. PostgreSQL moves each out of line
/// (TOAST) in ~2 KiB pieces whatever this is.
pub const CHUNK_BYTES: usize = 1024 * 1024;

/// Idle connections kept for the next operation.
const POOL_IDLE: usize = 4;

/// `STORAGE EXTERNAL`: out of line without compression. Evidence is often compressed
/// already (archives, images), and compressing every chunk costs CPU on each write to
/// save space only on text.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS evidence_blob_chunks (
    upload BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    bytes BYTEA NOT NULL,
    PRIMARY KEY (upload, seq)
);
ALTER TABLE evidence_blob_chunks ALTER COLUMN bytes SET STORAGE EXTERNAL;
CREATE TABLE IF NOT EXISTS evidence_blobs (
    sha256 TEXT PRIMARY KEY,
    upload BIGINT NOT NULL,
    size BIGINT NOT NULL
);
";

/// Blobs in a PostgreSQL database.
#[derive(Clone)]
pub struct PgBlobs {
    config: postgres::Config,
    /// `host:port/database`, for people (no user or password).
    target: String,
    idle: Arc<Mutex<Vec<Client>>>,
}

impl std::fmt::Debug for PgBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBlobs")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// What the database holds, for measuring its growth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgUsage {
    /// `pg_database_size` of the current database.
    pub database_bytes: u64,
    /// The WAL position, in bytes: the difference of two readings is the WAL written.
    pub wal_position: u64,
}

impl PgBlobs {
    /// Blobs in the database at `url` (`postgres://user@host:port/db`). Connects on
    /// first use.
    pub fn new(url: &str) -> Result<PgBlobs, BlobError> {
        let config: postgres::Config = url.parse().map_err(|e| BlobError::Io {
            path: "the PostgreSQL URL".into(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e}")),
        })?;
        let host = config
            .get_hosts()
            .first()
            .map_or_else(String::new, |h| match h {
                postgres::config::Host::Tcp(name) => name.clone(),
                postgres::config::Host::Unix(path) => path.display().to_string(),
            });
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let target = format!("{host}:{port}/{}", config.get_dbname().unwrap_or_default());
        Ok(PgBlobs {
            config,
            target,
            idle: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Makes the tables if they are missing.
    pub fn prepare(&self) -> Result<(), BlobError> {
        let mut client = self.client()?;
        client
            .batch_execute(SCHEMA)
            .map_err(db("creating the tables"))?;
        self.give_back(client);
        Ok(())
    }

    /// The database's size and WAL position now.
    pub fn usage(&self) -> Result<PgUsage, BlobError> {
        let mut client = self.client()?;
        let row = client
            .query_one(
                "SELECT pg_database_size(current_database())::BIGINT, \
                 pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::BIGINT",
                &[],
            )
            .map_err(db("reading the database size"))?;
        self.give_back(client);
        let bytes = |i: usize| -> Result<u64, BlobError> {
            let n: i64 = row.try_get(i).map_err(db("reading the database size"))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        Ok(PgUsage {
            database_bytes: bytes(0)?,
            wal_position: bytes(1)?,
        })
    }

    fn client(&self) -> Result<Client, BlobError> {
        let idle = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match idle {
            Some(client) if !client.is_closed() => Ok(client),
            _ => self
                .config
                .connect(NoTls)
                .map_err(db(&format!("connecting to {}", self.target))),
        }
    }

    fn give_back(&self, client: Client) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < POOL_IDLE
        {
            idle.push(client);
        }
    }

    /// The upload number and size of blob `sha256`, if stored.
    fn find(&self, sha256: &str) -> Result<Option<(i64, u64)>, BlobError> {
        crate::evidence::DirBlobs::relative_path(sha256)?;
        let mut client = self.client()?;
        let row = client
            .query_opt(
                "SELECT upload, size FROM evidence_blobs WHERE sha256 = $1",
                &[&sha256],
            )
            .map_err(db(sha256))?;
        self.give_back(client);
        match row {
            None => Ok(None),
            Some(row) => {
                let upload: i64 = row.try_get(0).map_err(db(sha256))?;
                let size: i64 = row.try_get(1).map_err(db(sha256))?;
                Ok(Some((upload, u64::try_from(size).unwrap_or(0))))
            }
        }
    }

    fn reader(&self, sha256: &str) -> Result<PgBlobReader, BlobError> {
        let (upload, size) = self.find(sha256)?.ok_or_else(|| BlobError::Io {
            path: self.location(sha256),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        Ok(PgBlobReader {
            blobs: self.clone(),
            sha256: sha256.to_owned(),
            upload,
            size,
            next: 0,
            chunk: Vec::new(),
            at: 0,
            read: 0,
            hasher: Sha256::new(),
            done: false,
        })
    }
}

/// A PostgreSQL error while doing `what`, as a [`BlobError`].
fn db(what: &str) -> impl FnOnce(postgres::Error) -> BlobError + '_ {
    move |e| {
        let detail = e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned());
        BlobError::Io {
            path: format!("PostgreSQL evidence blobs ({what})"),
            source: std::io::Error::other(detail),
        }
    }
}

impl BlobStore for PgBlobs {
    fn put(&self, bytes: &[u8]) -> Result<String, BlobError> {
        let mut w = self.begin()?;
        w.write(bytes)?;
        w.commit()
    }

    fn get(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        let mut out = Vec::new();
        self.reader(sha256)?
            .read_to_end(&mut out)
            .map_err(|source| BlobError::Io {
                path: self.location(sha256),
                source,
            })?;
        Ok(out)
    }

    fn location(&self, sha256: &str) -> String {
        format!("postgres://{}/evidence_blobs/{sha256}", self.target)
    }

    fn begin(&self) -> Result<Box<dyn BlobWriter>, BlobError> {
        let mut client = self.client()?;
        client
            .batch_execute("BEGIN")
            .map_err(db("starting a blob"))?;
        let insert = client
            .prepare("INSERT INTO evidence_blob_chunks (upload, seq, bytes) VALUES ($1, $2, $3)")
            .map_err(db("starting a blob"))?;
        Ok(Box::new(PgBlobWriter {
            blobs: self.clone(),
            client: Some(client),
            insert,
            upload: rand::random::<i64>(),
            seq: 0,
            pending: Vec::with_capacity(CHUNK_BYTES),
            written: 0,
            hasher: Sha256::new(),
        }))
    }

    fn copy_to(&self, sha256: &str, dest: &std::path::Path) -> Result<String, BlobError> {
        let mut from = self.reader(sha256)?;
        let mut to = std::fs::File::create(dest).map_err(|source| BlobError::Io {
            path: dest.display().to_string(),
            source,
        })?;
        std::io::copy(&mut from, &mut to).map_err(|source| BlobError::Io {
            path: dest.display().to_string(),
            source,
        })?;
        // The reader fails on a wrong digest, so what was copied is the blob named.
        Ok(sha256.to_owned())
    }

    fn size(&self, sha256: &str) -> Result<u64, BlobError> {
        Ok(self.reader(sha256)?.size)
    }

    fn open(&self, sha256: &str) -> Result<Box<dyn std::io::Read + Send>, BlobError> {
        Ok(Box::new(self.reader(sha256)?))
    }
}

/// A blob being written in one transaction; see [`BlobStore::begin`].
struct PgBlobWriter {
    blobs: PgBlobs,
    /// `None` once committed.
    client: Option<Client>,
    insert: Statement,
    upload: i64,
    seq: i64,
    /// Bytes not yet a whole chunk.
    pending: Vec<u8>,
    written: u64,
    hasher: Sha256,
}

impl std::fmt::Debug for PgBlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBlobWriter")
            .field("upload", &self.upload)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl PgBlobWriter {
    fn insert_chunk(&mut self, len: usize) -> Result<(), BlobError> {
        let client = self.client.as_mut().ok_or_else(committed)?;
        let chunk = self.pending.get(..len).ok_or_else(committed)?;
        client
            .execute(&self.insert, &[&self.upload, &self.seq, &chunk])
            .map_err(db("writing a chunk"))?;
        self.seq += 1;
        self.pending.drain(..len);
        Ok(())
    }
}

fn committed() -> BlobError {
    BlobError::Io {
        path: "PostgreSQL evidence blobs".into(),
        source: std::io::Error::other("blob written after commit"),
    }
}

impl BlobWriter for PgBlobWriter {
    fn write(&mut self, mut bytes: &[u8]) -> Result<(), BlobError> {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
        while !bytes.is_empty() {
            let room = CHUNK_BYTES - self.pending.len();
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.pending.extend_from_slice(now);
            bytes = rest;
            if self.pending.len() == CHUNK_BYTES {
                self.insert_chunk(CHUNK_BYTES)?;
            }
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
        if !self.pending.is_empty() {
            self.insert_chunk(self.pending.len())?;
        }
        let sha = self.sha256();
        let size = i64::try_from(self.written).unwrap_or(i64::MAX);
        let mut client = self.client.take().ok_or_else(committed)?;
        let named = client
            .execute(
                "INSERT INTO evidence_blobs (sha256, upload, size) VALUES ($1, $2, $3) \
                 ON CONFLICT (sha256) DO NOTHING",
                &[&sha, &self.upload, &size],
            )
            .map_err(db(&sha))?;
        if named == 0 {
            // Stored before: these chunks are a second copy.
            client
                .execute(
                    "DELETE FROM evidence_blob_chunks WHERE upload = $1",
                    &[&self.upload],
                )
                .map_err(db(&sha))?;
        }
        client.batch_execute("COMMIT").map_err(db(&sha))?;
        self.blobs.give_back(client);
        Ok(sha)
    }
}

impl Drop for PgBlobWriter {
    fn drop(&mut self) {
        // Not committed: the transaction and every chunk in it go.
        if let Some(mut client) = self.client.take()
            && client.batch_execute("ROLLBACK").is_ok()
        {
            self.blobs.give_back(client);
        }
    }
}

/// Reads a blob a chunk at a time; at the end, checks its size and SHA-256.
struct PgBlobReader {
    blobs: PgBlobs,
    sha256: String,
    upload: i64,
    size: u64,
    next: i64,
    chunk: Vec<u8>,
    at: usize,
    read: u64,
    hasher: Sha256,
    done: bool,
}

impl PgBlobReader {
    /// Fetches the next chunk; `false` at the end.
    fn fetch(&mut self) -> std::io::Result<bool> {
        let failed = |e: BlobError| std::io::Error::other(e.to_string());
        let mut client = self.blobs.client().map_err(failed)?;
        let row = client
            .query_opt(
                "SELECT bytes FROM evidence_blob_chunks WHERE upload = $1 AND seq = $2",
                &[&self.upload, &self.next],
            )
            .map_err(|e| failed(db(&self.sha256)(e)))?;
        self.blobs.give_back(client);
        let Some(row) = row else {
            return Ok(false);
        };
        self.chunk = row.try_get(0).map_err(|e| failed(db(&self.sha256)(e)))?;
        self.at = 0;
        self.next += 1;
        Ok(true)
    }

    fn check_whole(&self) -> std::io::Result<()> {
        let sha = hex::encode(self.hasher.clone().finalize());
        if self.read != self.size || sha != self.sha256 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "evidence blob {} in PostgreSQL is damaged: {} bytes with SHA-256 {sha}, \
                     expected {} bytes; restore it from a backup",
                    self.sha256, self.read, self.size
                ),
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for PgBlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBlobReader")
            .field("sha256", &self.sha256)
            .field("read", &self.read)
            .finish_non_exhaustive()
    }
}

impl Read for PgBlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        while self.at >= self.chunk.len() {
            if !self.fetch()? {
                self.done = true;
                self.check_whole()?;
                return Ok(0);
            }
        }
        let left = self.chunk.get(self.at..).unwrap_or_default();
        let n = left.len().min(buf.len());
        let (piece, dest) = (left.get(..n).unwrap_or_default(), buf.get_mut(..n));
        if let Some(dest) = dest {
            dest.copy_from_slice(piece);
        }
        self.hasher.update(piece);
        self.at += n;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs() -> anyhow::Result<PgBlobs> {
        let url = deskside_testpg::database().map_err(anyhow::Error::msg)?;
        let blobs = PgBlobs::new(&url)?;
        blobs.prepare()?;
        Ok(blobs)
    }

    /// Bytes over several chunks, with a tail that fills none.
    fn uneven(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn streamed_blobs_come_back_whole_and_named_by_their_hash() -> anyhow::Result<()> {
        let blobs = blobs()?;
        let data = uneven(2 * CHUNK_BYTES + 12_345);
        let mut w = blobs.begin()?;
        for piece in data.chunks(7777) {
            w.write(piece)?;
        }
        assert_eq!(w.written(), data.len() as u64);
        let sha = w.commit()?;
        assert_eq!(sha, hex::encode(Sha256::digest(&data)));
        assert_eq!(blobs.get(&sha)?, data);
        assert_eq!(blobs.size(&sha)?, data.len() as u64);
        assert_eq!(
            blobs.put(&data)?,
            sha,
            "the same bytes again are the same blob"
        );
        assert_eq!(blobs.put(b"")?, hex::encode(Sha256::digest(b"")));
        assert!(blobs.get(&hex::encode(Sha256::digest(b"")))?.is_empty());
        Ok(())
    }

    #[test]
    fn an_abandoned_blob_leaves_nothing_and_a_missing_one_is_not_found() -> anyhow::Result<()> {
        let blobs = blobs()?;
        let mut w = blobs.begin()?;
        w.write(&uneven(CHUNK_BYTES + 1))?;
        let sha = w.sha256();
        drop(w);
        let mut client = blobs.client()?;
        let chunks: i64 = client
            .query_one("SELECT count(*) FROM evidence_blob_chunks", &[])?
            .get(0);
        assert_eq!(chunks, 0);
        assert!(matches!(blobs.get(&sha), Err(BlobError::Io { .. })));
        assert!(matches!(
            blobs.get("../etc/passwd"),
            Err(BlobError::BadName(_))
        ));
        Ok(())
    }

    #[test]
    fn a_damaged_chunk_is_caught_when_read() -> anyhow::Result<()> {
        let blobs = blobs()?;
        let sha = blobs.put(&uneven(CHUNK_BYTES + 10))?;
        let mut client = blobs.client()?;
        client.execute(
            "UPDATE evidence_blob_chunks SET bytes = $1 WHERE seq = 1",
            &[&b"0123456789".as_slice()],
        )?;
        let e = blobs
            .get(&sha)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("damaged"), "{e}");
        Ok(())
    }
}
