//! The agent's on-disk spool: every result and notice the controller must receive is
//! written here (synced, then renamed into place, then the directory synced) before it
//! is sent, and removed only when the controller acknowledges a durable commit (the
//! removal is not synced: an item that comes back after a power cut is delivered again
//! and matched by its key). A link that drops, a controller that restarts, an agent
//! killed mid-upload: whatever was spooled is delivered when the link returns, once —
//! each item carries an idempotency key the controller records with it.
//!
//! Bounded by [`MAX_SPOOL_BYTES`] and [`MAX_SPOOL_ITEMS`]. When full, new work that
//! would produce evidence is refused with a reason (see [`Spool::room`]); what is already
//! spooled is never dropped to make room.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use deskside_proto::Message;
use deskside_proto::msg::agent::{Delivery, valid_key};
use rand::RngCore;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// Most bytes kept waiting for the controller: room for a few hundred script runs with
/// large output, small enough that a controller gone for weeks cannot fill a laptop.
pub const MAX_SPOOL_BYTES: u64 = 256 * 1024 * 1024;
/// Most items kept waiting: bounds the directory scan at start-up.
pub const MAX_SPOOL_ITEMS: usize = 10_000;
/// Spooled files end in this; anything else in the directory is not ours.
const SUFFIX: &str = ".delivery";
/// Where files that do not decode are moved, for a person to look at.
const CORRUPT_DIR: &str = "corrupt";

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error(
        "the agent's spool is full ({items} items, {mib} MiB waiting for the controller); new results are refused until those are delivered"
    )]
    Full { items: usize, mib: u64 },
    #[error("the spool at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("encoding a spooled item: {0}")]
    Encode(String),
}

/// Why a spooled file is moved aside instead of delivered; logged with the file.
#[derive(Debug, thiserror::Error)]
enum Unreadable {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("over the size limit")]
    TooLarge,
    #[error("{0}")]
    Decode(#[from] deskside_proto::DecodeError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A new random idempotency key: 128 bits as 32 hex digits.
pub fn new_key() -> String {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    size: u64,
}

#[derive(Debug, Default)]
struct Inner {
    /// File name → entry; names start with a zero-padded sequence, so this is FIFO.
    entries: BTreeMap<String, Entry>,
    /// Keys being delivered right now (as a reply or by the pump): not handed out again.
    claimed: HashSet<String>,
    bytes: u64,
    next_seq: u64,
}

impl Inner {
    /// `Err` when an item of `size` bytes would not fit.
    fn fits(&self, size: u64) -> Result<(), SpoolError> {
        if self.entries.len() >= MAX_SPOOL_ITEMS || self.bytes + size > MAX_SPOOL_BYTES {
            return Err(SpoolError::Full {
                items: self.entries.len(),
                mib: self.bytes / (1024 * 1024),
            });
        }
        Ok(())
    }
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    inner: Mutex<Inner>,
    notify: Notify,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, keeping what an earlier run left there.
    pub fn open(dir: &Path) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        let mut inner = Inner::default();
        for dirent in fs::read_dir(dir).map_err(io(dir))? {
            let dirent = dirent.map_err(io(dir))?;
            let name = dirent.file_name().to_string_lossy().into_owned();
            let path = dirent.path();
            if name.ends_with(".tmp") {
                // A write that never completed: it was never acknowledged to anyone.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Some((seq, key)) = parse_name(&name).map(|(s, k)| (s, k.to_owned())) else {
                continue;
            };
            let size = dirent.metadata().map_err(io(&path))?.len();
            inner.next_seq = inner.next_seq.max(seq + 1);
            inner.bytes += size;
            inner.entries.insert(name, Entry { key, size });
        }
        if !inner.entries.is_empty() {
            info!(
                items = inner.entries.len(),
                bytes = inner.bytes,
                "undelivered items found in the spool"
            );
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            inner: Mutex::new(inner),
            notify: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update is a single map operation: a panic cannot leave it half-done.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err` with the reason when the spool cannot take another item.
    pub fn room(&self) -> Result<(), SpoolError> {
        // Room for at least one more byte.
        self.lock().fits(1)
    }

    /// Items and bytes waiting.
    pub fn usage(&self) -> (usize, u64) {
        let inner = self.lock();
        (inner.entries.len(), inner.bytes)
    }

    /// Writes `delivery` durably. With `claimed`, the pump leaves it alone until
    /// [`Spool::release`] — the caller is delivering it directly. Blocking (fsync).
    pub fn put(&self, delivery: &Delivery, claimed: bool) -> Result<(), SpoolError> {
        if !valid_key(&delivery.key) {
            return Err(SpoolError::Encode(format!(
                "invalid idempotency key {:?}",
                delivery.key
            )));
        }
        let bytes =
            deskside_proto::encode(delivery).map_err(|e| SpoolError::Encode(e.to_string()))?;
        if bytes.len() as u64 > u64::from(Delivery::MAX_BYTES) {
            return Err(SpoolError::Encode(format!(
                "{} bytes is over the {} byte limit for one item",
                bytes.len(),
                Delivery::MAX_BYTES
            )));
        }
        let size = bytes.len() as u64;
        let name = {
            let mut inner = self.lock();
            inner.fits(size)?;
            let seq = inner.next_seq;
            inner.next_seq += 1;
            // Count it now so concurrent writers cannot overshoot the bound together.
            inner.bytes += size;
            format!("{seq:020}-{}{SUFFIX}", delivery.key)
        };
        match self.write_file(&name, &bytes) {
            Ok(()) => {
                let mut inner = self.lock();
                if claimed {
                    inner.claimed.insert(delivery.key.clone());
                }
                inner.entries.insert(
                    name,
                    Entry {
                        key: delivery.key.clone(),
                        size,
                    },
                );
                drop(inner);
                debug!(key = %delivery.key, size, "spooled");
                self.notify.notify_one();
                Ok(())
            }
            Err(e) => {
                self.lock().bytes -= size;
                Err(e)
            }
        }
    }

    fn write_file(&self, name: &str, bytes: &[u8]) -> Result<(), SpoolError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.dir)
    }

    /// Forgets `key` once the controller has it (or has refused it for good). Not
    /// synced: an item that reappears after a crash is delivered again, and the
    /// controller acknowledges a key it has without recording it twice.
    pub fn remove(&self, key: &str) -> Result<(), SpoolError> {
        let found = {
            let mut inner = self.lock();
            inner.claimed.remove(key);
            let name = inner
                .entries
                .iter()
                .find(|(_, e)| e.key == key)
                .map(|(n, _)| n.clone());
            name.and_then(|n| inner.entries.remove(&n).map(|e| (n, e)))
        };
        let Some((name, entry)) = found else {
            return Ok(());
        };
        let path = self.dir.join(&name);
        let removed = fs::remove_file(&path).map_err(io(&path));
        self.lock().bytes -= entry.size;
        removed
    }

    /// Lets the pump deliver `key` (its direct delivery was not acknowledged).
    pub fn release(&self, key: &str) {
        self.lock().claimed.remove(key);
        self.notify.notify_one();
    }

    /// Claims and reads the oldest unclaimed item, if any. Files that do not decode are
    /// moved to `corrupt/` with a warning and skipped.
    pub fn next(&self) -> Option<Delivery> {
        loop {
            let (name, entry) = {
                let mut inner = self.lock();
                let (name, entry) = inner
                    .entries
                    .iter()
                    .find(|(_, e)| !inner.claimed.contains(&e.key))
                    .map(|(n, e)| (n.clone(), e.clone()))?;
                inner.claimed.insert(entry.key.clone());
                (name, entry)
            };
            match self.read_file(&name) {
                Ok(d) if d.key == entry.key => return Some(d),
                Ok(d) => self.quarantine(&name, &format!("holds key {} instead", d.key)),
                Err(reason) => self.quarantine(&name, &reason.to_string()),
            }
        }
    }

    fn read_file(&self, name: &str) -> Result<Delivery, Unreadable> {
        let path = self.dir.join(name);
        let file = File::open(&path)?;
        let mut bytes = Vec::new();
        file.take(u64::from(Delivery::MAX_BYTES) + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > u64::from(Delivery::MAX_BYTES) {
            return Err(Unreadable::TooLarge);
        }
        Ok(deskside_proto::decode::<Delivery>(&bytes)?)
    }

    fn quarantine(&self, name: &str, reason: &str) {
        let from = self.dir.join(name);
        let to_dir = self.dir.join(CORRUPT_DIR);
        warn!(file = %from.display(), %reason, "spooled item unreadable; moved aside");
        let moved = fs::create_dir_all(&to_dir).and_then(|()| fs::rename(&from, to_dir.join(name)));
        if let Err(e) = moved {
            warn!(error = %e, "could not move the unreadable item; removing it");
            let _ = fs::remove_file(&from);
        }
        let mut inner = self.lock();
        if let Some(entry) = inner.entries.remove(name) {
            inner.claimed.remove(&entry.key);
            inner.bytes -= entry.size;
        }
    }

    /// Every spooled item (read, not claimed), oldest first. Blocking.
    pub fn peek_all(&self) -> Vec<Delivery> {
        let names: Vec<String> = self.lock().entries.keys().cloned().collect();
        names
            .iter()
            .filter_map(|n| self.read_file(n).ok())
            .collect()
    }

    /// Waits until an item may be ready for the pump.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }
}

/// `00000000000000000042-<key>.delivery` → (42, key).
fn parse_name(name: &str) -> Option<(u64, &str)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (seq, key) = stem.split_once('-')?;
    let seq = seq.parse().ok()?;
    valid_key(key).then_some((seq, key))
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
mod tests;
