//! The local transparency log: one JSON line per request the agent received and what it
//! did about it. Append-only; the user reads it with `deskside-agent audit`.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Longest audit line read back; longer lines are skipped as damaged.
const MAX_LINE_BYTES: usize = 64 * 1024;

/// Why the audit log could not be written or read; each names the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("{0}")]
    Encode(serde_json::Error),
    #[error("opening the audit log {}: {reason}", .path.display())]
    Open {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("syncing the audit log {}: {reason}", .path.display())]
    Sync {
        path: PathBuf,
        reason: std::io::Error,
    },
    /// Opening the log to read it back.
    #[error("opening {}: {reason}", .path.display())]
    OpenToRead {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("{0}")]
    Io(std::io::Error),
}

type Result<T> = std::result::Result<T, AuditError>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_secs: u64,
    pub technician: String,
    pub tier: String,
    pub ticket: u64,
    /// The scope the request needed, e.g. `diagnostics`.
    pub scope: String,
    /// `served`, `refused` or `failed`.
    pub outcome: String,
    pub detail: String,
}

/// Appends one entry and syncs it to disk before the reply leaves the machine.
pub fn append(path: &Path, entry: &AuditEntry) -> Result<()> {
    write(path, entry)?.sync_data().map_err(AuditError::Io)
}

/// Appends one entry without waiting for the disk. Only for the entry of an item the
/// spool already holds durably: the spool lets go of an item only after [`sync`], and
/// an item still spooled whose entry a power cut lost is audited again at start.
pub fn append_unsynced(path: &Path, entry: &AuditEntry) -> Result<()> {
    write(path, entry).map(drop)
}

/// Makes every earlier [`append_unsynced`] durable.
pub fn sync(path: &Path) -> Result<()> {
    match std::fs::File::open(path) {
        Ok(f) => f.sync_data().map_err(|reason| AuditError::Sync {
            path: path.to_owned(),
            reason,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(reason) => Err(AuditError::Open {
            path: path.to_owned(),
            reason,
        }),
    }
}

fn write(path: &Path, entry: &AuditEntry) -> Result<std::fs::File> {
    let mut line = serde_json::to_vec(entry).map_err(AuditError::Encode)?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|reason| AuditError::Open {
            path: path.to_owned(),
            reason,
        })?;
    f.write_all(&line).map_err(AuditError::Io)?;
    Ok(f)
}

/// Reads every entry; damaged lines are reported as such, not silently dropped.
pub fn read(path: &Path) -> Result<(Vec<AuditEntry>, usize)> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(reason) => {
            return Err(AuditError::OpenToRead {
                path: path.to_owned(),
                reason,
            });
        }
    };
    let mut entries = Vec::new();
    let mut damaged = 0;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(AuditError::Io)?;
        if n == 0 {
            break;
        }
        if n > MAX_LINE_BYTES && !line.ends_with(b"\n") {
            damaged += 1;
            // Skip the rest of the oversized line.
            let mut rest = Vec::new();
            reader
                .read_until(b'\n', &mut rest)
                .map_err(AuditError::Io)?;
            continue;
        }
        match serde_json::from_slice::<AuditEntry>(&line) {
            Ok(e) => entries.push(e),
            Err(_) if line.iter().all(u8::is_ascii_whitespace) => {}
            Err(_) => damaged += 1,
        }
    }
    Ok((entries, damaged))
}

use std::io::Read as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_then_read_and_count_damage() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        let e = AuditEntry {
            at_secs: 1,
            technician: "alice".into(),
            tier: "l1".into(),
            ticket: 7,
            scope: "diagnostics".into(),
            outcome: "served".into(),
            detail: "snapshot".into(),
        };
        append(&path, &e)?;
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)?
            .write_all(b"{garbage\n")?;
        append(&path, &e)?;
        let (entries, damaged) = read(&path)?;
        assert_eq!(entries, vec![e.clone(), e]);
        assert_eq!(damaged, 1);
        Ok(())
    }

    #[test]
    fn unsynced_entries_read_back_and_sync_makes_no_log() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("audit.log");
        sync(&path)?;
        assert!(
            !path.exists(),
            "syncing a log that is not there creates none"
        );
        let e = AuditEntry {
            at_secs: 2,
            technician: "bob".into(),
            tier: "l2".into(),
            ticket: 9,
            scope: "scripts:l2".into(),
            outcome: "finished".into(),
            detail: "key 00".into(),
        };
        append_unsynced(&path, &e)?;
        sync(&path)?;
        assert_eq!(read(&path)?, (vec![e], 0));
        Ok(())
    }
}
