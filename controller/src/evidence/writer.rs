//! A blob streamed to disk in pieces (a collected file): hashed as it arrives, staged
//! and written with `O_DIRECT` where the file system allows, committed by rename.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{BlobError, BlobWriter, io};

/// A blob being written to a temporary file in the blob directory.
#[derive(Debug)]
pub(super) struct DirBlobWriter {
    /// The blob directory it commits into.
    pub(super) root: PathBuf,
    pub(super) sink: Option<Sink>,
    pub(super) tmp: PathBuf,
    pub(super) hasher: Sha256,
}

/// How much of a streamed blob may wait in the page cache before its writeback starts:
/// the final `fsync` then has at most this much left to write.
const WRITEBACK_BYTES: u64 = 8 * 1024 * 1024;
/// What `O_DIRECT` asks of a write's buffer address, length and file offset. 4 KiB
/// covers every logical block size in use.
const DIRECT_ALIGN: usize = 4096;
/// Bytes written directly between background flushes (see [`Sink::sync_behind`]).
const SYNC_EVERY_BYTES: u64 = 32 * 1024 * 1024;
/// Bytes gathered before one direct write.
const DIRECT_STAGE_BYTES: usize = 1024 * 1024;

/// Where a streamed blob's bytes go. They are gathered in a staging buffer this sink
/// owns and written a MiB at a time. Whole aligned blocks are written with `O_DIRECT`,
/// straight to the disk: no copy into the page cache. Every page of a new blob in the
/// page cache is a page the kernel has to find, charge and fault in, and on a VM that
/// hands freed memory back to its host each of them is a host page fault as well; that
/// copy was the controller's largest cost in a large collect. The tail that fills no
/// block, and everything on a file system without `O_DIRECT`, goes through the page
/// cache, with its writeback started early.
#[derive(Debug)]
pub(super) struct Sink {
    /// The file through the page cache: tails, fallback and the final `fsync`.
    file: File,
    /// The same file opened with `O_DIRECT`, while direct writes work.
    direct: Option<File>,
    /// `DIRECT_STAGE_BYTES + DIRECT_ALIGN` bytes, calloc'd: only the pages a blob fills
    /// are ever touched. The stage starts at `start`, aligned.
    stage: Vec<u8>,
    start: usize,
    staged: usize,
    /// File offset of the first staged byte: everything before it is in the file.
    at: u64,
    /// Bytes already handed to the disk by [`crate::writeback::start`] (page cache only).
    flushed: u64,
    /// Bytes written directly up to the last background flush started.
    synced: u64,
    /// A flush of what was written directly so far, running beside the writes.
    syncing: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl Sink {
    pub(super) fn new(file: File, path: &Path) -> Sink {
        use std::os::unix::fs::OpenOptionsExt;
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .inspect_err(|e| tracing::debug!(error = %e, "no direct I/O for blobs; page cache"))
            .ok();
        Sink::with(file, direct)
    }

    fn with(file: File, direct: Option<File>) -> Sink {
        let stage = vec![0; DIRECT_STAGE_BYTES + DIRECT_ALIGN];
        let start = stage.as_ptr().align_offset(DIRECT_ALIGN);
        Sink {
            file,
            direct,
            stage,
            start,
            staged: 0,
            at: 0,
            flushed: 0,
            synced: 0,
            syncing: None,
        }
    }

    fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let room = DIRECT_STAGE_BYTES - self.staged;
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            let from = self.start + self.staged;
            self.stage
                .get_mut(from..from + now.len())
                .ok_or_else(stage_broken)?
                .copy_from_slice(now);
            self.staged += now.len();
            bytes = rest;
            if self.staged == DIRECT_STAGE_BYTES {
                self.write_stage(DIRECT_STAGE_BYTES)?;
            }
        }
        Ok(())
    }

    /// Writes the first `len` staged bytes: directly when `len` is whole blocks, else
    /// through the page cache. If a direct write fails (a file system that takes the
    /// flag but not the write, a block size above 4 KiB), that block and everything
    /// after it go through the page cache; an error of the file itself shows up there.
    fn write_stage(&mut self, len: usize) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let block = self
            .stage
            .get(self.start..self.start + len)
            .ok_or_else(stage_broken)?;
        let mut direct_done = false;
        if let Some(direct) = self
            .direct
            .as_ref()
            .filter(|_| len.is_multiple_of(DIRECT_ALIGN))
        {
            match direct.write_all_at(block, self.at) {
                Ok(()) => direct_done = true,
                Err(e) => {
                    tracing::debug!(error = %e, "direct write failed; page cache from here");
                    self.direct = None;
                }
            }
        }
        if !direct_done {
            self.file.write_all_at(block, self.at)?;
        }
        self.at += len as u64;
        if !direct_done && self.at - self.flushed >= WRITEBACK_BYTES {
            crate::writeback::start(&self.file, self.flushed, self.at - self.flushed);
            self.flushed = self.at;
        }
        if direct_done && self.at - self.synced >= SYNC_EVERY_BYTES {
            self.sync_behind()?;
        }
        let rest = self.start + len..self.start + self.staged;
        if self.stage.get(rest.clone()).is_none() {
            return Err(stage_broken());
        }
        self.stage.copy_within(rest, self.start);
        self.staged -= len;
        Ok(())
    }

    /// Starts a flush of what is written so far on its own thread, unless one is still
    /// running. Direct writes reach the device but not necessarily past its cache (on a
    /// VM: the host's page cache); flushing as the blob grows leaves the final `fsync`
    /// only the last stretch instead of the whole file. A flush's error is kept and
    /// returned, never dropped: the file description reports it only once.
    fn sync_behind(&mut self) -> std::io::Result<()> {
        if self.syncing.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        self.join_sync()?;
        let file = self.file.try_clone()?;
        self.synced = self.at;
        self.syncing = Some(
            std::thread::Builder::new()
                .name("blob-sync".into())
                .spawn(move || file.sync_data())?,
        );
        Ok(())
    }

    fn join_sync(&mut self) -> std::io::Result<()> {
        match self.syncing.take().map(std::thread::JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other(
                "the blob's background flush panicked",
            )),
        }
    }

    /// Bytes taken so far: in the file or staged.
    fn len(&self) -> u64 {
        self.at + self.staged as u64
    }

    /// Puts every staged byte in the file and makes the file durable.
    fn finish(mut self) -> std::io::Result<()> {
        let whole = self.staged / DIRECT_ALIGN * DIRECT_ALIGN;
        if whole > 0 {
            self.write_stage(whole)?;
        }
        if self.staged > 0 {
            self.write_stage(self.staged)?;
        }
        drop(self.direct.take());
        self.join_sync()?;
        self.file.sync_all()
    }
}

fn stage_broken() -> std::io::Error {
    std::io::Error::other("blob staging buffer out of step")
}

impl BlobWriter for DirBlobWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        let sink = self.sink.as_mut().ok_or_else(|| BlobError::Io {
            path: self.tmp.display().to_string(),
            source: std::io::Error::other("written after commit"),
        })?;
        sink.write(bytes).map_err(io(&self.tmp))?;
        self.hasher.update(bytes);
        Ok(())
    }

    fn written(&self) -> u64 {
        self.sink.as_ref().map_or(0, Sink::len)
    }

    fn sha256(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }

    fn commit(mut self: Box<Self>) -> Result<String, BlobError> {
        let sha = self.sha256();
        let path = super::path_in(&self.root, &sha)?;
        let sink = self.sink.take().ok_or_else(|| BlobError::Io {
            path: self.tmp.display().to_string(),
            source: std::io::Error::other("committed twice"),
        })?;
        if let Err(e) = sink.finish() {
            let _ = fs::remove_file(&self.tmp);
            return Err(io(&self.tmp)(e));
        }
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
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
        if self.sink.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::BlobStore;
    use crate::evidence::DirBlobs;

    /// Bytes that straddle the direct-write stage in uneven pieces, with a tail that
    /// fills no block.
    fn uneven(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn write_in_pieces(sink: &mut Sink, data: &[u8]) -> std::io::Result<()> {
        for piece in data.chunks(7777) {
            sink.write(piece)?;
        }
        Ok(())
    }

    #[test]
    fn large_streamed_blobs_arrive_whole_and_hash_like_put() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = DirBlobs::new(dir.path());
        let data = uneven(2 * DIRECT_STAGE_BYTES + DIRECT_STAGE_BYTES / 2 + 123);
        let mut w = blobs.begin()?;
        for piece in data.chunks(7777) {
            w.write(piece)?;
        }
        assert_eq!(w.written(), data.len() as u64);
        let sha = w.commit()?;
        assert_eq!(blobs.get(&sha)?, data);
        assert_eq!(sha, hex::encode(Sha256::digest(&data)));
        Ok(())
    }

    #[test]
    fn a_blob_written_past_background_flushes_is_whole() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let blobs = DirBlobs::new(dir.path());
        let len = usize::try_from(SYNC_EVERY_BYTES)? + 4321;
        let data = uneven(len);
        let mut w = blobs.begin()?;
        for piece in data.chunks(1 << 20) {
            w.write(piece)?;
        }
        let sha = w.commit()?;
        assert_eq!(sha, hex::encode(Sha256::digest(&data)));
        assert_eq!(blobs.get(&sha)?, data);
        Ok(())
    }

    #[test]
    fn without_direct_io_or_when_it_fails_the_page_cache_takes_every_byte() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let data = uneven(DIRECT_STAGE_BYTES * 2 + DIRECT_ALIGN + 5);
        for case in ["none", "failing"] {
            let path = dir.path().join(case);
            let file = File::create(&path)?;
            // A read-only handle: every direct write fails, the first one half-way.
            let direct = (case == "failing").then(|| File::open(&path)).transpose()?;
            let mut sink = Sink::with(file, direct);
            write_in_pieces(&mut sink, &data)?;
            assert!(sink.direct.is_none(), "{case}");
            sink.finish()?;
            assert_eq!(std::fs::read(&path)?, data, "{case}");
        }
        Ok(())
    }
}
