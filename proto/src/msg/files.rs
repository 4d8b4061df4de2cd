//! Collecting a file from the agent's machine as evidence (the `files` scope).
//!
//! On the request's stream the agent answers [`crate::msg::agent::AgentReply::FileStart`]
//! naming the size, then exactly that many raw bytes (no framing: bulk data at disk
//! speed), then the signed [`FileManifest`] as an evidence item of kind
//! [`crate::evidence::EvidenceKind::FileManifest`]. The controller counts and hashes the bytes as they arrive and
//! acknowledges on the same stream once file and manifest are durable.

use serde::{Deserialize, Serialize};

/// What the agent says about a file it sent, signed with its key (as JSON, in a
/// [`crate::msg::agent::SignedItem`] of kind [`crate::evidence::EvidenceKind::FileManifest`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileManifest {
    /// The absolute path as requested.
    pub path: String,
    pub size_bytes: u64,
    /// Hex SHA-256 of the bytes sent, computed while reading them.
    pub sha256: String,
    /// The agent's signature over that SHA-256 digest (hex, ECDSA P-256 ASN.1 DER): the
    /// file item verifies on its own, like every other evidence item.
    pub file_signature: String,
    /// Last modification, Unix seconds.
    pub modified_at_secs: i64,
    /// Permission bits and file type as `st_mode`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub hostname: String,
    pub agent: String,
    pub technician: String,
    pub ticket: u64,
    /// When the agent finished reading, Unix milliseconds on the agent's clock.
    pub collected_at_ms: u64,
}

/// Why the agent will not send a file. Each names the path and what to do instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FileRefusal {
    #[error("{path:?} is not an absolute path; give the full path, e.g. /var/log/syslog")]
    RelativePath { path: String },
    #[error("{path} does not exist on the machine")]
    NotFound { path: String },
    #[error(
        "{path} is a symbolic link; symbolic links are not followed, give the path it points to"
    )]
    Symlink { path: String },
    #[error("{path} is {what}, not a regular file; only regular files can be collected")]
    NotRegular { path: String, what: String },
    #[error("{path} cannot be read by the agent: {reason}")]
    Unreadable { path: String, reason: String },
    #[error(
        "{path} is {size_bytes} bytes, over the {limit_bytes}-byte limit for one collected file"
    )]
    TooLarge {
        path: String,
        size_bytes: u64,
        limit_bytes: u64,
    },
    #[error(
        "{path} goes through the symbolic link {link}; no link is followed in any part of the path, give the path it points to"
    )]
    LinkInPath { path: String, link: String },
    /// A rule of the agent says this file never leaves the machine. `same_as` names the
    /// protected file when the path reached it under another name (a hard link, a bind
    /// mount).
    #[error("{path} is not sent: {rule}{}", same_as_text(.same_as))]
    Forbidden {
        path: String,
        rule: FileRule,
        same_as: Option<String>,
    },
}

fn same_as_text(same_as: &Option<String>) -> String {
    same_as
        .as_deref()
        .map(|p| format!(" (it is the same file as {p}, by a hard link or a bind mount)"))
        .unwrap_or_default()
}

/// The rule that keeps a file on the machine, named to the technician and in the agent's
/// audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FileRule {
    /// The agent's state directory: its private key signs every piece of this machine's
    /// evidence. No policy can lift it.
    #[error(
        "it is in the agent's own state directory (its key signs this machine's evidence); no policy can allow it"
    )]
    AgentState,
    /// The agent's configuration. No policy can lift it.
    #[error("it is the agent's configuration; no policy can allow it")]
    AgentConfig,
    /// One of the secrets built into the agent. No policy can lift it.
    #[error("it holds {0}, which the agent never sends; no policy can allow it")]
    Secret(SecretKind),
    /// A `deny` glob in the `[files]` section of the machine's `policy.toml`.
    #[error("the machine's policy denies {glob} ([files] deny in policy.toml)")]
    PolicyDeny { glob: String },
    /// No `allow` glob in the `[files]` section of the machine's `policy.toml` covers it.
    #[error(
        "no [files] allow glob in the machine's policy.toml covers it; the machine's admin decides what may be collected"
    )]
    NotAllowed,
}

/// The secrets built into the agent, which it never sends whatever the policy says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SecretKind {
    #[error("password hashes (/etc/shadow, /etc/gshadow)")]
    PasswordHashes,
    #[error("an SSH host private key")]
    SshHostKey,
    #[error("an SSH user private key")]
    SshUserKey,
    #[error("a keyring (GNOME Keyring, KWallet, GnuPG private keys, pass)")]
    Keyring,
    #[error("a browser's saved passwords or cookies")]
    BrowserCredentials,
    #[error("network secrets (Wi-Fi and VPN passwords)")]
    NetworkSecrets,
    #[error("the machine's credentials (TLS private keys, Kerberos keytab)")]
    MachineCredentials,
    #[error("a user's credential store (.netrc, git, cloud and container logins)")]
    UserCredentials,
}

/// `true` when `path` is absolute and free of `.`/`..` components and NUL bytes: what the
/// agent opens is exactly what the technician named.
pub fn plain_absolute(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains('\0')
        && path.split('/').all(|part| part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_absolute_paths() {
        assert!(plain_absolute("/var/log/syslog"));
        assert!(plain_absolute("/"));
        for bad in [
            "var/log",
            "",
            "./x",
            "/var/../etc/shadow",
            "/a/./b",
            "/a\0b",
        ] {
            assert!(!plain_absolute(bad), "{bad:?}");
        }
    }

    #[test]
    fn refusals_name_path_size_and_limit() {
        let e = FileRefusal::TooLarge {
            path: "/big".into(),
            size_bytes: 2048,
            limit_bytes: 1024,
        };
        let text = e.to_string();
        assert!(text.contains("/big") && text.contains("2048") && text.contains("1024"));
    }

    #[test]
    fn a_forbidden_file_names_its_rule_and_the_file_it_is() {
        let e = FileRefusal::Forbidden {
            path: "/tmp/notes.txt".into(),
            rule: FileRule::AgentState,
            same_as: Some("/var/lib/deskside-agent/agent.key".into()),
        };
        assert_eq!(
            e.to_string(),
            "/tmp/notes.txt is not sent: it is in the agent's own state directory (its key signs \
             this machine's evidence); no policy can allow it (it is the same file as \
             /var/lib/deskside-agent/agent.key, by a hard link or a bind mount)"
        );
        let e = FileRefusal::Forbidden {
            path: "/etc/shadow".into(),
            rule: FileRule::Secret(SecretKind::PasswordHashes),
            same_as: None,
        };
        assert!(e.to_string().ends_with(
            "holds password hashes (/etc/shadow, /etc/gshadow), which the agent never sends; no policy can allow it"
        ));
    }
}
