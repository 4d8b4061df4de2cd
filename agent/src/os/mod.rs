//! The agent's one boundary to the operating system. Everything that names a kernel
//! interface, a system file or a platform tool (`/proc`, `/sys`, `/etc/passwd`, utmp,
//! logind, statvfs, `sched_getaffinity`, `adjtimex`, `systemctl`, `apt-get`, process
//! groups, peer credentials) lives in one module per platform below this one; the code
//! above it (the diagnostics snapshot, the control socket's authorisation, redaction)
//! calls the functions re-exported here and gets typed values back.
//!
//! The platform module is picked with `cfg` and its functions re-exported as they are,
//! rather than put behind a `Platform` trait: only one platform is ever compiled in, so a
//! trait object would be threaded through every caller for a choice made at build time,
//! and a missing function on a new platform is a compile error either way. Tests that
//! need a fake machine substitute at a narrower seam (the parsers take text; the disks
//! probe takes an `FsView`).
//!
//! A port to another OS adds `windows/` or `macos/` next to `linux/` with the same public
//! functions and types; this file and everything above it stay as they are.
//!
//! File collection (`crate::collect`) is not behind this boundary: it is Linux-only by
//! construction (openat2 with `RESOLVE_NO_SYMLINKS`), see its module doc.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;

#[cfg(not(target_os = "linux"))]
compile_error!(
    "the Deskside agent's OS layer exists for Linux only: a port adds agent/src/os/<target>/ \
     with the functions agent/src/os/linux/mod.rs re-exports"
);

/// Free text we copy into a snapshot (names, labels, log lines) is cut at this many bytes.
pub(crate) const MAX_TEXT_BYTES: usize = 1024;

/// Why the OS did not answer a question. The diagnostics snapshot puts the text verbatim
/// into a probe's report, so it names the source and what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{what}: {detail}")]
    Parse { what: String, detail: String },
    /// The data source does not exist on this machine (no systemd, no apt-get, ...).
    #[error("{0}")]
    Unavailable(String),
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("{what}: {detail}")]
    System { what: String, detail: String },
}

impl Error {
    pub(crate) fn parse(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Parse {
            what: what.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn system(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Self::System {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

/// Copies `text`, cut to at most [`MAX_TEXT_BYTES`] on a character boundary.
pub(crate) fn clip(text: &str) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

/// Runs blocking OS code on tokio's blocking pool. A panic in it becomes an error.
pub(crate) async fn blocking<T, F>(work: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(Error::system("probe", "panicked (agent bug)")),
        Err(e) => Err(Error::system("probe", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_respects_char_boundaries() {
        let long = "é".repeat(MAX_TEXT_BYTES);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_TEXT_BYTES);
        assert!(clipped.chars().all(|c| c == 'é'));
    }
}
