//! What a collect request may open, and opening it: the agent's own files and the
//! machine's secrets are refused first (`protect`), then the `[files]` globs of the
//! machine's policy decide; the file is opened without following a link anywhere in its
//! path (`nofollow`), and what was opened is checked (type, size, identity).

use std::fs::File;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use deskside_proto::msg::files::{FileRefusal, plain_absolute};

use super::nofollow::{self, OpenError};
use super::protect::Protected;
use crate::policy::FilesPolicy;

/// An open, checked regular file and what its `fstat` said.
#[derive(Debug)]
pub(super) struct Opened {
    pub file: File,
    pub meta: std::fs::Metadata,
}

/// Checks `path` against what never leaves the machine and the machine's `[files]`
/// policy, opens it without following a symbolic link in any component and without
/// blocking on a FIFO, then checks what was opened (not what the name pointed to a
/// moment before): its type, its size, and that it is none of the protected files under
/// another name.
pub(super) fn open_regular(
    path: &str,
    max_bytes: u64,
    protected: &Protected,
    files: &FilesPolicy,
) -> Result<Opened, FileRefusal> {
    if !plain_absolute(path) {
        return Err(FileRefusal::RelativePath {
            path: path.to_owned(),
        });
    }
    // One separator between components, none at the end: the form the globs match.
    let name: PathBuf = Path::new(path).components().collect();
    let forbidden = |rule, same_as| FileRefusal::Forbidden {
        path: path.to_owned(),
        rule,
        same_as,
    };
    // Before the open: opening some devices does something (a watchdog starts counting).
    if let Some(rule) = protected.by_path(&name) {
        return Err(forbidden(rule, None));
    }
    files.check(&name).map_err(|rule| forbidden(rule, None))?;
    let file = nofollow::open(&name).map_err(|e| match e {
        OpenError::NotFound => FileRefusal::NotFound {
            path: path.to_owned(),
        },
        OpenError::FinalLink => FileRefusal::Symlink {
            path: path.to_owned(),
        },
        OpenError::LinkInPath(link) => FileRefusal::LinkInPath {
            path: path.to_owned(),
            link: link.display().to_string(),
        },
        OpenError::Other(e) => FileRefusal::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })?;
    let meta = file.metadata().map_err(|e| FileRefusal::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a named pipe (FIFO)"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(FileRefusal::NotRegular {
            path: path.to_owned(),
            what: what.to_owned(),
        });
    }
    // A hard link elsewhere or a bind mount names the same device and inode.
    if let Some((rule, at)) = protected.by_identity(&meta) {
        let same_as = (at != name).then(|| at.display().to_string());
        return Err(forbidden(rule.clone(), same_as));
    }
    if meta.len() > max_bytes {
        return Err(FileRefusal::TooLarge {
            path: path.to_owned(),
            size_bytes: meta.len(),
            limit_bytes: max_bytes,
        });
    }
    Ok(Opened { file, meta })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use deskside_proto::msg::files::{FileRule, SecretKind};

    /// Files under the temporary directory and `/dev/zero` allowed; a state dir of its own.
    fn allowing(dir: &Path, extra: &str) -> anyhow::Result<(Protected, FilesPolicy)> {
        let state = dir.join("state");
        std::fs::create_dir_all(&state)?;
        std::fs::write(state.join("agent.key"), "key")?;
        let files = Policy::parse(&format!(
            "[files]\nallow = [\"{}/**\", \"/dev/zero\", \"/etc/shadow\"]\n{extra}",
            dir.display()
        ))?
        .files;
        Ok((Protected::scan(&state, None), files))
    }

    fn open_regular(path: &str, max: u64) -> Result<Opened, FileRefusal> {
        let setup = || -> anyhow::Result<(Protected, FilesPolicy)> {
            let state = tempfile::tempdir()?;
            let files = Policy::parse(&format!(
                "[files]\nallow = [\"{}/**\", \"/dev/zero\"]\n",
                std::env::temp_dir().display()
            ))?
            .files;
            Ok((Protected::scan(state.path(), None), files))
        };
        let (protected, files) = setup().map_err(|e| FileRefusal::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        super::open_regular(path, max, &protected, &files)
    }

    fn refusal(path: &str, max: u64) -> Option<FileRefusal> {
        open_regular(path, max).err()
    }

    #[test]
    fn refuses_protected_files_by_name_by_parent_link_by_hard_link_and_by_policy()
    -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let (protected, files) = allowing(dir.path(), "deny = [\"**/*.secret\"]\n")?;
        let key = dir.path().join("state").join("agent.key");
        let open =
            |p: &Path| super::open_regular(&p.to_string_lossy(), 1024, &protected, &files).err();
        assert_eq!(
            open(&key),
            Some(FileRefusal::Forbidden {
                path: key.to_string_lossy().into_owned(),
                rule: FileRule::AgentState,
                same_as: None
            })
        );
        let via = dir.path().join("via");
        std::os::unix::fs::symlink(dir.path().join("state"), &via)?;
        assert!(matches!(
            open(&via.join("agent.key")),
            Some(FileRefusal::LinkInPath { link, .. }) if link == via.to_string_lossy()
        ));
        let linked = dir.path().join("notes.txt");
        std::fs::hard_link(&key, &linked)?;
        assert!(matches!(
            open(&linked),
            Some(FileRefusal::Forbidden { rule: FileRule::AgentState, same_as: Some(s), .. })
                if s == key.to_string_lossy()
        ));
        // Built in: allowed by this policy, refused all the same.
        assert!(matches!(
            open(Path::new("/etc/shadow")),
            Some(FileRefusal::Forbidden {
                rule: FileRule::Secret(SecretKind::PasswordHashes),
                ..
            })
        ));
        let secret = dir.path().join("a.secret");
        std::fs::write(&secret, "s")?;
        assert!(matches!(
            open(&secret),
            Some(FileRefusal::Forbidden { rule: FileRule::PolicyDeny { glob }, .. })
                if glob == "**/*.secret"
        ));
        assert!(matches!(
            open(Path::new("/etc/hostname")),
            Some(FileRefusal::Forbidden {
                rule: FileRule::NotAllowed,
                ..
            })
        ));
        // Doubled separators name the same file and are matched as such.
        let doubled = format!("{}//state//agent.key", dir.path().display());
        assert!(matches!(
            super::open_regular(&doubled, 1024, &protected, &files),
            Err(FileRefusal::Forbidden {
                rule: FileRule::AgentState,
                ..
            })
        ));
        let fine = dir.path().join("fine.txt");
        std::fs::write(&fine, "ok")?;
        assert!(open(&fine).is_none());
        Ok(())
    }

    #[test]
    fn refuses_what_is_not_a_plain_regular_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("f");
        std::fs::write(&file, b"hello")?;
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link)?;
        let fifo = dir.path().join("p");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()?
                .success()
        );
        let s = |p: &std::path::Path| p.to_string_lossy().into_owned();
        assert!(matches!(
            refusal("etc/passwd", 10),
            Some(FileRefusal::RelativePath { .. })
        ));
        assert!(matches!(
            refusal(&s(&dir.path().join("nope")), 10),
            Some(FileRefusal::NotFound { .. })
        ));
        assert!(matches!(
            refusal(&s(&link), 10),
            Some(FileRefusal::Symlink { .. })
        ));
        assert!(matches!(
            refusal(&s(dir.path()), 10),
            Some(FileRefusal::NotRegular { .. })
        ));
        assert!(matches!(
            refusal(&s(&fifo), 10),
            Some(FileRefusal::NotRegular { .. })
        ));
        assert!(matches!(
            refusal("/dev/zero", 10),
            Some(FileRefusal::NotRegular { .. })
        ));
        assert!(matches!(
            refusal(&s(&file), 4),
            Some(FileRefusal::TooLarge {
                size_bytes: 5,
                limit_bytes: 4,
                ..
            })
        ));
        assert!(open_regular(&s(&file), 5).is_ok());
        Ok(())
    }
}
