//! What the agent never sends, whatever the machine's policy or a session says: its own
//! state directory (the key there signs this machine's evidence), its configuration, and
//! a built-in list of secrets (password hashes, SSH keys, keyrings, browsers' and
//! desktops' credential stores).
//!
//! Each is refused by its path, and, so that no other name reaches it (a hard link
//! elsewhere, a bind mount), by its identity: before a file is sent the agent lists the
//! protected files that exist on the machine with their device and inode, and compares
//! them with the `fstat` of what it opened.

use std::collections::{BTreeSet, HashMap};
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use deskside_proto::msg::files::{FileRule, SecretKind};
use globset::{GlobMatcher, GlobSet};

use super::secrets::{SECRET_GLOBS, SECRETS, glob};

/// Where the agent's configuration lives (`config::DEFAULT_PATH` is in it).
const CONFIG_DIR: &str = "/etc/deskside";
/// Home directories whose secrets are listed by identity. A desktop has a few; past this
/// many (a shared server) the rest are still protected by path.
const MAX_HOMES: usize = 4096;
/// Directory entries looked at in one scan, all lists together. Bounds the time a
/// technician's request can make the agent spend here; a state directory with a full
/// spool and a few dozen homes is a few thousand.
const MAX_SCANNED_ENTRIES: usize = 200_000;
/// Depth of the walks below a protected directory (state, keyrings, `pass`).
const MAX_DEPTH: usize = 16;

/// The protected files of this machine, by path and by identity.
#[derive(Debug)]
pub struct Protected {
    state: Vec<PathBuf>,
    config: Vec<PathBuf>,
    secrets: &'static [(SecretKind, GlobSet)],
    /// (device, inode) of every protected regular file found, with its rule and path.
    identities: HashMap<(u64, u64), (FileRule, PathBuf)>,
}

impl Protected {
    /// Lists what is protected on this machine now. `state` is the agent's state
    /// directory, `config` the configuration file it read (if not in `/etc/deskside`).
    pub fn scan(state: &Path, config: Option<&Path>) -> Protected {
        let mut scan = Scan {
            budget: MAX_SCANNED_ENTRIES,
            found: HashMap::new(),
        };
        let both = |p: &Path| {
            let mut v = vec![p.to_owned()];
            if let Ok(c) = std::fs::canonicalize(p)
                && c != p
            {
                v.push(c);
            }
            v
        };
        let state = both(state);
        let mut config_paths = both(Path::new(CONFIG_DIR));
        if let Some(c) = config {
            config_paths.extend(both(c));
        }
        for p in &state {
            scan.tree(p, &FileRule::AgentState, 0);
        }
        for p in &config_paths {
            scan.tree(p, &FileRule::AgentConfig, 0);
        }
        for s in SECRETS {
            let rule = FileRule::Secret(s.kind);
            for p in s.system {
                scan.pattern(Path::new("/"), p, &rule);
            }
        }
        let homes = homes();
        for s in SECRETS.iter().filter(|s| !s.home.is_empty()) {
            let rule = FileRule::Secret(s.kind);
            for home in &homes {
                for p in s.home {
                    scan.pattern(home, p, &rule);
                }
            }
        }
        Protected {
            state,
            config: config_paths,
            secrets: &SECRET_GLOBS,
            identities: scan.found,
        }
    }

    /// The rule that protects `path` by its name (absolute, free of `.` and `..`).
    pub fn by_path(&self, path: &Path) -> Option<FileRule> {
        if self.state.iter().any(|s| path.starts_with(s)) {
            return Some(FileRule::AgentState);
        }
        if self.config.iter().any(|c| path.starts_with(c)) {
            return Some(FileRule::AgentConfig);
        }
        self.secrets
            .iter()
            .find(|(_, set)| set.is_match(path))
            .map(|(kind, _)| FileRule::Secret(*kind))
    }

    /// The rule and protected path of the file `meta` describes, when it is one of them
    /// under whatever name it was opened.
    pub fn by_identity(&self, meta: &Metadata) -> Option<(&FileRule, &Path)> {
        self.identities
            .get(&(meta.dev(), meta.ino()))
            .map(|(rule, path)| (rule, path.as_path()))
    }

    /// How many protected files were found (for the log).
    pub fn len(&self) -> usize {
        self.identities.len()
    }
}

/// Users' home directories: `/root`, every home in `/etc/passwd`, everything in `/home`.
fn homes() -> Vec<PathBuf> {
    let mut homes = BTreeSet::new();
    homes.insert(PathBuf::from("/root"));
    for account in crate::os::accounts() {
        if account.home.starts_with('/') {
            homes.insert(PathBuf::from(account.home));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/home") {
        homes.extend(entries.flatten().map(|e| e.path()));
    }
    homes
        .into_iter()
        .filter(|h| h.is_dir())
        .take(MAX_HOMES)
        .collect()
}

struct Scan {
    budget: usize,
    found: HashMap<(u64, u64), (FileRule, PathBuf)>,
}

impl Scan {
    fn spend(&mut self) -> bool {
        self.budget = self.budget.saturating_sub(1);
        self.budget > 0
    }

    /// Records `path` if it is a regular file; walks it if it is a directory.
    fn tree(&mut self, path: &Path, rule: &FileRule, depth: usize) {
        if !self.spend() {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if meta.is_file() {
            self.found
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| (rule.clone(), path.to_owned()));
        } else if meta.is_dir() && depth < MAX_DEPTH {
            let Ok(entries) = std::fs::read_dir(path) else {
                return;
            };
            for entry in entries.flatten() {
                self.tree(&entry.path(), rule, depth + 1);
            }
        }
    }

    /// Records the files matching `pattern` (relative to `base`, or absolute).
    fn pattern(&mut self, base: &Path, pattern: &str, rule: &FileRule) {
        let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty()).collect();
        self.expand(base.to_owned(), &parts, rule);
    }

    fn expand(&mut self, at: PathBuf, parts: &[&str], rule: &FileRule) {
        let Some((first, rest)) = parts.split_first() else {
            self.tree(&at, rule, 0);
            return;
        };
        if *first == "**" {
            self.tree(&at, rule, 0);
            return;
        }
        if !first.contains(['*', '?', '[']) {
            if self.spend() && std::fs::symlink_metadata(at.join(first)).is_ok() {
                self.expand(at.join(first), rest, rule);
            }
            return;
        }
        let Ok(matcher) = glob(first).map(|g| g.compile_matcher()) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(&at) else {
            return;
        };
        let names: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| matches(&matcher, e))
            .map(|e| e.path())
            .collect();
        for name in names {
            if !self.spend() {
                return;
            }
            self.expand(name, rest, rule);
        }
    }
}

fn matches(matcher: &GlobMatcher, entry: &std::fs::DirEntry) -> bool {
    matcher.is_match(Path::new(&entry.file_name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_matched_by_path_wherever_the_home_is() {
        let p = Protected {
            state: vec![PathBuf::from("/var/lib/deskside-agent")],
            config: vec![PathBuf::from(CONFIG_DIR)],
            secrets: &SECRET_GLOBS,
            identities: HashMap::new(),
        };
        let rule = |s: &str| p.by_path(Path::new(s));
        let secret = |k| Some(FileRule::Secret(k));
        assert_eq!(rule("/etc/shadow"), secret(SecretKind::PasswordHashes));
        assert_eq!(
            rule("/etc/ssh/ssh_host_ed25519_key"),
            secret(SecretKind::SshHostKey)
        );
        assert_eq!(rule("/etc/ssh/ssh_host_ed25519_key.pub"), None);
        assert_eq!(
            rule("/home/alice/.ssh/id_ed25519"),
            secret(SecretKind::SshUserKey)
        );
        assert_eq!(rule("/srv/x/.ssh/id_rsa"), secret(SecretKind::SshUserKey));
        assert_eq!(rule("/home/alice/.ssh/id_ed25519.pub"), None);
        assert_eq!(
            rule("/home/a/.local/share/keyrings/login.keyring"),
            secret(SecretKind::Keyring)
        );
        assert_eq!(
            rule("/home/a/.config/google-chrome/Default/Login Data"),
            secret(SecretKind::BrowserCredentials)
        );
        assert_eq!(
            rule("/var/lib/deskside-agent/agent.key"),
            Some(FileRule::AgentState)
        );
        assert_eq!(
            rule("/etc/deskside/agent.toml"),
            Some(FileRule::AgentConfig)
        );
        assert_eq!(rule("/var/log/syslog"), None);
        assert_eq!(rule("/home/alice/Documents/report.odt"), None);
    }

    #[test]
    fn a_hard_link_to_a_state_file_is_known_by_its_identity() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let state = dir.path().join("state");
        std::fs::create_dir_all(state.join("spool"))?;
        std::fs::write(state.join("agent.key"), "key")?;
        std::fs::write(state.join("spool").join("item"), "x")?;
        let other = dir.path().join("elsewhere");
        std::fs::hard_link(state.join("agent.key"), &other)?;
        std::fs::write(dir.path().join("plain"), "plain")?;
        let p = Protected::scan(&state, None);
        let meta = std::fs::metadata(&other)?;
        let (rule, path) = p
            .by_identity(&meta)
            .ok_or_else(|| anyhow::anyhow!("hard link not recognised"))?;
        assert_eq!(rule, &FileRule::AgentState);
        assert!(path.starts_with(&state), "{}", path.display());
        let nested = std::fs::metadata(state.join("spool").join("item"))?;
        assert!(p.by_identity(&nested).is_some());
        assert!(
            p.by_identity(&std::fs::metadata(dir.path().join("plain"))?)
                .is_none()
        );
        Ok(())
    }
}
