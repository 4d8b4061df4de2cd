//! The machine's own policy (`policy.toml`, owned by the machine's admin): which scopes a
//! technician may ever use here and whether each needs the user's approval. Nothing the
//! controller says can override it.

use std::path::Path;

use deskside_proto::msg::files::FileRule;
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::state::{StateError, read_bounded};

/// Why `policy.toml` cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file exists and cannot be read.
    #[error(transparent)]
    Read(#[from] StateError),
    /// The file is not a valid policy (a bad config: exit 64).
    #[error("invalid policy in {}: {reason}", .path.display())]
    Invalid {
        path: std::path::PathBuf,
        reason: toml::de::Error,
    },
}

/// What the policy says for one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Ask the user each time (the default).
    #[default]
    Prompt,
    /// Unattended managed device: no prompt.
    Allow,
    /// Never, whoever asks.
    Deny,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scopes {
    #[serde(default)]
    pub diagnostics: Decision,
    #[serde(default, rename = "scripts:l1")]
    pub scripts_l1: Decision,
    #[serde(default, rename = "scripts:l2")]
    pub scripts_l2: Decision,
    #[serde(default, rename = "scripts:l3")]
    pub scripts_l3: Decision,
    #[serde(default)]
    pub files: Decision,
    /// Whether the machine's user may run the catalog's self-service scripts alone.
    #[serde(default, rename = "self-service")]
    pub self_service: SelfService,
}

/// What the policy says for self-service fixes. Allowed by default: each script is one
/// an admin marked self-service in the controller's signed catalog, its parameters are
/// closed choices, and the user runs it on their own machine, where they are the one who
/// would otherwise be asked; a machine's admin who wants none says `deny`. There is no
/// `prompt`: the person who would be asked is the one running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SelfService {
    #[default]
    Allow,
    Deny,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub scopes: Scopes,
    /// What to hide in evidence before it leaves the machine.
    #[serde(default)]
    pub redact: crate::redact::RedactPolicy,
    /// Which files the `files` scope may send.
    #[serde(default)]
    pub files: FilesPolicy,
}

/// The policy last read by [`Policy::load`] and the text it was read from (`None`: no
/// file, the default).
static LAST_READ: std::sync::Mutex<Option<(Option<String>, Policy)>> = std::sync::Mutex::new(None);

/// A policy is written by hand: more globs than this is a mistake, and every collect
/// request tries them all.
pub const MAX_FILE_GLOBS: usize = 256;

/// Absolute path globs (`*` stays within a component, `**` crosses them), validated and
/// compiled when the policy is read.
#[derive(Debug, Clone)]
pub struct PathGlobs {
    patterns: Vec<String>,
    set: GlobSet,
}

impl PartialEq for PathGlobs {
    fn eq(&self, other: &PathGlobs) -> bool {
        self.patterns == other.patterns
    }
}

impl Eq for PathGlobs {}

/// Why a list of `[files]` globs is refused; each names the glob.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GlobError {
    #[error("{count} globs, over the limit of {MAX_FILE_GLOBS}")]
    TooMany { count: usize },
    #[error("{0:?} is not an absolute path glob; start it with / (or **/ for any directory)")]
    NotAbsolute(String),
    #[error("{glob:?} is not a valid glob: {reason}")]
    Invalid {
        glob: String,
        reason: globset::Error,
    },
    #[error("{0}")]
    Set(globset::Error),
}

impl TryFrom<Vec<String>> for PathGlobs {
    type Error = GlobError;

    fn try_from(patterns: Vec<String>) -> Result<PathGlobs, GlobError> {
        if patterns.len() > MAX_FILE_GLOBS {
            return Err(GlobError::TooMany {
                count: patterns.len(),
            });
        }
        let mut set = GlobSetBuilder::new();
        for p in &patterns {
            if !(p.starts_with('/') || p.starts_with("**/")) {
                return Err(GlobError::NotAbsolute(p.clone()));
            }
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map_err(|reason| GlobError::Invalid {
                    glob: p.clone(),
                    reason,
                })?;
            set.add(glob);
        }
        let set = set.build().map_err(GlobError::Set)?;
        Ok(PathGlobs { patterns, set })
    }
}

impl Serialize for PathGlobs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.patterns.serialize(s)
    }
}

impl<'de> Deserialize<'de> for PathGlobs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PathGlobs, D::Error> {
        PathGlobs::try_from(Vec::<String>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl PathGlobs {
    /// The first glob that matches `path`.
    pub fn first_match(&self, path: &Path) -> Option<&str> {
        let first = self.set.matches(path).into_iter().min()?;
        self.patterns.get(first).map(String::as_str)
    }

    fn of(patterns: &[&str]) -> PathGlobs {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        PathGlobs::try_from(patterns).expect("the built-in default globs are valid")
    }
}

/// The `[files]` section: which paths the `files` scope may send. A `deny` glob wins
/// over an `allow` glob; a path no `allow` glob covers is refused. The agent's own
/// state and configuration and the built-in secrets (see `protect`) are refused before
/// either is looked at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesPolicy {
    #[serde(default = "default_allow")]
    pub allow: PathGlobs,
    #[serde(default = "default_deny")]
    pub deny: PathGlobs,
}

/// Logs, crash reports, temporary files and users' documents.
const DEFAULT_ALLOW: &[&str] = &[
    "/var/log/**",
    "/var/crash/**",
    "/tmp/**",
    "/var/tmp/**",
    "/home/*/**",
];
/// Hidden files and directories in a home: shell history, applications' settings and
/// the tokens they keep.
const DEFAULT_DENY: &[&str] = &["/home/*/.*", "/home/*/.*/**"];

fn default_allow() -> PathGlobs {
    PathGlobs::of(DEFAULT_ALLOW)
}

fn default_deny() -> PathGlobs {
    PathGlobs::of(DEFAULT_DENY)
}

impl Default for FilesPolicy {
    fn default() -> FilesPolicy {
        FilesPolicy {
            allow: default_allow(),
            deny: default_deny(),
        }
    }
}

impl FilesPolicy {
    /// Whether the policy lets `path` (absolute, without `.`/`..`) be sent, or the rule
    /// that refuses it.
    pub fn check(&self, path: &Path) -> Result<(), FileRule> {
        if let Some(glob) = self.deny.first_match(path) {
            return Err(FileRule::PolicyDeny {
                glob: glob.to_owned(),
            });
        }
        match self.allow.first_match(path) {
            Some(_) => Ok(()),
            None => Err(FileRule::NotAllowed),
        }
    }
}

/// The policy file written at enrollment when the machine has none: everything prompts.
pub const DEFAULT_POLICY: &str = r#"# Deskside agent policy. Owned by this machine's admin; the controller cannot change it.
# Each scope is "prompt" (ask the user each time), "allow" (unattended managed device)
# or "deny" (never, whoever asks).
[scopes]
diagnostics = "prompt"
"scripts:l1" = "prompt"
"scripts:l2" = "prompt"
"scripts:l3" = "prompt"
files = "prompt"
# The machine's user running the catalog's self-service fixes alone: "allow" or "deny".
"self-service" = "allow"

# Which files the "files" scope may send: absolute path globs ("*" stays within one
# directory, "**" crosses them). A path must match an allow glob and no deny glob.
# Whatever is written here, the agent never sends its own state directory or
# configuration, password hashes, SSH private keys, keyrings, or the credential stores of
# browsers and desktops.
[files]
allow = [
    "/var/log/**",      # system and service logs
    "/var/crash/**",    # crash reports
    "/tmp/**",          # installers' and applications' logs
    "/var/tmp/**",
    "/home/*/**",       # users' documents
]
deny = [
    "/home/*/.*",       # hidden files in a home: shell history, tokens
    "/home/*/.*/**",    # hidden directories: applications' settings and the secrets they keep
]

# What to hide in evidence before it leaves this machine (all off by default).
[redact]
usernames = false
ip_addresses = false
mac_addresses = false
emails = false
patterns = []
"#;

impl Policy {
    pub fn parse(text: &str) -> Result<Policy, toml::de::Error> {
        toml::from_str(text)
    }

    /// Loads `path`; a missing file means the default (everything prompts).
    ///
    /// The agent reads its policy on every request, so an admin's edit applies to the
    /// next one. Compiling the `[files]` globs costs more than the rest of a read (about
    /// half a millisecond, twice per script run), so the policy last read is kept with
    /// its text and a text read again is not compiled again.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = if path.exists() {
            Some(read_bounded(path)?)
        } else {
            None
        };
        let mut last = LAST_READ.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, policy)) = last.as_ref()
            && *seen == text
        {
            return Ok(policy.clone());
        }
        let policy = match &text {
            Some(t) => Policy::parse(t).map_err(|reason| PolicyError::Invalid {
                path: path.to_owned(),
                reason,
            })?,
            None => Policy::default(),
        };
        *last = Some((text, policy.clone()));
        Ok(policy)
    }

    /// The decision for a scope name as requests carry it; unknown scopes are denied.
    pub fn decision(&self, scope: &str) -> Decision {
        match scope {
            "diagnostics" => self.scopes.diagnostics,
            "scripts:l1" => self.scopes.scripts_l1,
            "scripts:l2" => self.scopes.scripts_l2,
            "scripts:l3" => self.scopes.scripts_l3,
            "files" => self.scopes.files,
            _ => Decision::Deny,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edited_policy_applies_at_the_next_read_and_a_removed_one_is_the_default()
    -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "[scopes]\nfiles = \"allow\"\n")?;
        assert_eq!(Policy::load(&path)?.decision("files"), Decision::Allow);
        assert_eq!(Policy::load(&path)?.decision("files"), Decision::Allow);
        std::fs::write(
            &path,
            "[scopes]\nfiles = \"deny\"\n[files]\nallow = [\"/srv/**\"]\n",
        )?;
        let edited = Policy::load(&path)?;
        assert_eq!(edited.decision("files"), Decision::Deny);
        assert_eq!(edited.files.check(Path::new("/srv/a.log")), Ok(()));
        std::fs::write(&path, "[files]\nallow = [\"relative/**\"]\n")?;
        assert!(
            Policy::load(&path).is_err(),
            "a bad glob is refused when read"
        );
        std::fs::remove_file(&path)?;
        assert_eq!(Policy::load(&path)?, Policy::default());
        Ok(())
    }

    #[test]
    fn default_file_parses_to_prompt_everywhere() -> anyhow::Result<()> {
        let p = Policy::parse(DEFAULT_POLICY)?;
        assert_eq!(p, Policy::default());
        assert_eq!(p.decision("diagnostics"), Decision::Prompt);
        assert_eq!(p.decision("nonsense"), Decision::Deny);
        Ok(())
    }

    #[test]
    fn allow_and_deny_and_typos() -> anyhow::Result<()> {
        let p = Policy::parse("[scopes]\ndiagnostics = \"allow\"\n\"scripts:l2\" = \"deny\"\n")?;
        assert_eq!(p.decision("diagnostics"), Decision::Allow);
        assert_eq!(p.decision("scripts:l2"), Decision::Deny);
        assert_eq!(p.decision("scripts:l1"), Decision::Prompt);
        let typo = Policy::parse("[scopes]\ndiagnostic = \"allow\"\n")
            .err()
            .map(|e| e.to_string());
        assert!(typo.unwrap_or_default().contains("diagnostic"));
        assert!(Policy::parse("[scopes]\ndiagnostics = \"yes\"\n").is_err());
        Ok(())
    }

    #[test]
    fn self_service_is_allowed_unless_denied_and_never_prompts() -> anyhow::Result<()> {
        assert_eq!(Policy::default().scopes.self_service, SelfService::Allow);
        let p = Policy::parse("[scopes]\n\"self-service\" = \"deny\"\n")?;
        assert_eq!(p.scopes.self_service, SelfService::Deny);
        assert!(Policy::parse("[scopes]\n\"self-service\" = \"prompt\"\n").is_err());
        Ok(())
    }

    #[test]
    fn files_default_to_logs_and_documents_not_hidden_files() -> anyhow::Result<()> {
        let p = Policy::parse("[scopes]\nfiles = \"allow\"\n")?;
        let check = |s: &str| p.files.check(Path::new(s));
        assert_eq!(check("/var/log/syslog"), Ok(()));
        assert_eq!(check("/var/log/cups/error_log"), Ok(()));
        assert_eq!(check("/home/alice/Documents/report.odt"), Ok(()));
        assert_eq!(check("/tmp/.tmpAb12/install.log"), Ok(()));
        assert_eq!(
            check("/home/alice/.bash_history"),
            Err(FileRule::PolicyDeny {
                glob: "/home/*/.*".into()
            })
        );
        assert_eq!(
            check("/home/alice/.config/app/token"),
            Err(FileRule::PolicyDeny {
                glob: "/home/*/.*/**".into()
            })
        );
        assert_eq!(check("/etc/hostname"), Err(FileRule::NotAllowed));
        assert_eq!(check("/proc/kcore"), Err(FileRule::NotAllowed));
        assert_eq!(check("/home"), Err(FileRule::NotAllowed));
        Ok(())
    }

    #[test]
    fn files_globs_are_the_admins_and_deny_wins() -> anyhow::Result<()> {
        let p = Policy::parse(
            "[files]\nallow = [\"/srv/app/**\", \"**/*.log\"]\ndeny = [\"/srv/app/private/**\"]\n",
        )?;
        let check = |s: &str| p.files.check(Path::new(s));
        assert_eq!(check("/srv/app/out.txt"), Ok(()));
        assert_eq!(check("/opt/x/y.log"), Ok(()));
        assert_eq!(
            check("/srv/app/private/a.log"),
            Err(FileRule::PolicyDeny {
                glob: "/srv/app/private/**".into()
            })
        );
        assert_eq!(check("/var/log/syslog"), Err(FileRule::NotAllowed));
        // An empty allow list sends nothing.
        let none = Policy::parse("[files]\nallow = []\n")?;
        assert_eq!(
            none.files.check(Path::new("/var/log/syslog")),
            Err(FileRule::NotAllowed)
        );
        for bad in [
            "[files]\nallow = [\"var/log/*\"]\n",
            "[files]\nallow = [\"/var/log/[\"]\n",
            "[files]\nallow = \"/var/log/**\"\n",
            "[files]\nalow = []\n",
        ] {
            let e = Policy::parse(bad).err().map(|e| e.to_string());
            assert!(e.is_some(), "{bad}");
        }
        let relative = Policy::parse("[files]\nallow = [\"var/log/*\"]\n")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(relative.contains("not an absolute path glob"), "{relative}");
        Ok(())
    }
}
