//! Opening an absolute path for reading without following a symbolic link in any of its
//! components: `openat2(RESOLVE_NO_SYMLINKS)` where the kernel has it (Linux 5.6), else a
//! walk from `/` that opens each directory with `O_PATH | O_NOFOLLOW` and checks what it
//! got. Either way what is opened is exactly what the path names, not where a link of
//! someone else's making points.
//!
//! Mount points are crossed (a separate `/home`, `/var` or a tmpfs `/tmp` is the normal
//! case, and `RESOLVE_NO_XDEV` would refuse all of them); a bind mount that shows a
//! protected file under another name is caught by comparing the identity (device and
//! inode) of what was opened (see `protect`).

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Why a path could not be opened without links.
#[derive(Debug)]
pub enum OpenError {
    NotFound,
    /// The last component is a symbolic link.
    FinalLink,
    /// A directory on the way is a symbolic link (named).
    LinkInPath(PathBuf),
    Other(io::Error),
}

/// Flags of the final open: read only, never block on a FIFO, never become the
/// controlling terminal, never follow a final link.
fn read_flags() -> OFlags {
    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC
}

/// Opens `path` (absolute, without `.` or `..`) for reading, following no link.
pub fn open(path: &Path) -> Result<File, OpenError> {
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(CWD, path, read_flags(), Mode::empty(), resolve) {
        Ok(fd) => Ok(File::from(fd)),
        // No openat2 (before 5.6), or a sandbox that filters it, or flags it does not know.
        Err(Errno::NOSYS | Errno::PERM | Errno::INVAL | Errno::TOOBIG) => walk(path),
        Err(Errno::NOENT) => Err(OpenError::NotFound),
        Err(Errno::LOOP) => Err(which_link(path)),
        Err(e) => Err(OpenError::Other(e.into())),
    }
}

/// openat2 says only that some component was a link: find which, for the message.
fn which_link(path: &Path) -> OpenError {
    let mut prefix = PathBuf::from("/");
    let mut parts = path.components().skip(1).peekable();
    while let Some(part) = parts.next() {
        prefix.push(part);
        let is_link = std::fs::symlink_metadata(&prefix).is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            return if parts.peek().is_none() {
                OpenError::FinalLink
            } else {
                OpenError::LinkInPath(prefix)
            };
        }
    }
    // Replaced between the open and this look: report it as a link all the same.
    OpenError::FinalLink
}

/// The component-by-component walk: each directory is opened relative to the one
/// before with `O_PATH | O_NOFOLLOW` (which opens a link itself rather than its target)
/// and checked with `fstat`, so a link swapped in at any moment is seen, not followed.
pub(crate) fn walk(path: &Path) -> Result<File, OpenError> {
    let names: Vec<_> = path
        .components()
        .skip(1)
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let Some((last, dirs)) = names.split_last() else {
        return Err(OpenError::Other(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the root directory is not a file",
        )));
    };
    let errno = |e: Errno| match e {
        Errno::NOENT => OpenError::NotFound,
        e => OpenError::Other(e.into()),
    };
    let mut dir: OwnedFd = rustix::fs::open(
        "/",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno)?;
    let mut walked = PathBuf::from("/");
    for name in dirs {
        walked.push(name);
        let next = rustix::fs::openat(
            &dir,
            name.as_os_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?;
        let kind = FileType::from_raw_mode(rustix::fs::fstat(&next).map_err(errno)?.st_mode);
        match kind {
            FileType::Directory => dir = next,
            FileType::Symlink => return Err(OpenError::LinkInPath(walked)),
            _ => return Err(OpenError::Other(Errno::NOTDIR.into())),
        }
    }
    match rustix::fs::openat(&dir, last.as_os_str(), read_flags(), Mode::empty()) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::LOOP) => Err(OpenError::FinalLink),
        Err(e) => Err(errno(e)),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn read(f: Result<File, OpenError>) -> anyhow::Result<String> {
        let mut s = String::new();
        match f {
            Ok(mut f) => f.read_to_string(&mut s)?,
            Err(e) => anyhow::bail!("{e:?}"),
        };
        Ok(s)
    }

    #[test]
    fn no_link_is_followed_in_any_component_by_either_way() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let real = dir.path().join("real");
        std::fs::create_dir(&real)?;
        std::fs::write(real.join("f"), "data")?;
        let parent_link = dir.path().join("via");
        std::os::unix::fs::symlink(&real, &parent_link)?;
        std::os::unix::fs::symlink(real.join("f"), real.join("l"))?;
        for open in [open as fn(&Path) -> _, walk] {
            assert_eq!(read(open(&real.join("f")))?, "data");
            assert!(matches!(
                open(&parent_link.join("f")),
                Err(OpenError::LinkInPath(p)) if p == parent_link
            ));
            assert!(matches!(open(&real.join("l")), Err(OpenError::FinalLink)));
            assert!(matches!(
                open(&real.join("missing")),
                Err(OpenError::NotFound)
            ));
            assert!(matches!(
                open(&real.join("f").join("x")),
                Err(OpenError::Other(_))
            ));
        }
        Ok(())
    }
}
