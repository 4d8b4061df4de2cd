//! Starting disk writeback early for a large blob being written, so the `fsync` that
//! makes it durable waits for the last few MiB instead of the whole file. The one
//! system call the standard library does not wrap; nothing else here.
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;

/// Asks the kernel to start writing `len` bytes at `offset` of `file` to disk, without
/// waiting. Durability still comes from `sync_all`; this only moves the work earlier.
/// Failure is harmless (the final sync does all of it), so it is ignored.
pub fn start(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: `file` owns an open descriptor for the duration of the call;
    // sync_file_range reads no memory of ours.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}
