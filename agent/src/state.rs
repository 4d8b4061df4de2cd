//! The agent's state directory: its key, certificate, the CA it trusts, its enrollment
//! record, the machine's policy, the audit log and the service status.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where the packaged service keeps its state (0700: its key never leaves root).
pub const SYSTEM_STATE: &str = "/var/lib/deskside-agent";
/// The packaged service's control socket: outside the 0700 state directory, in a 0755
/// runtime directory (systemd's `RuntimeDirectory=`), so that local users reach it; the
/// agent decides per request who may use it (see `crate::local_user`).
pub const SYSTEM_SOCKET: &str = "/run/deskside-agent/control.sock";

/// Files here are small (PEM, TOML); anything larger is not ours.
const MAX_STATE_FILE_BYTES: u64 = 1024 * 1024;

/// Why the state directory or a file in it could not be used; each names the file and,
/// where the user can, what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("no data directory for this user; pass --state DIR")]
    NoDataDir,
    #[error(
        "this machine is not enrolled (no {}); run `deskside-agent enroll TOKEN` with a token from `deskside token create`",
        .0.display()
    )]
    NotEnrolled(PathBuf),
    /// The enrollment record is not valid TOML (a bad state file: exit 64).
    #[error("{} is damaged: {reason}", .path.display())]
    Damaged {
        path: PathBuf,
        reason: toml::de::Error,
    },
    #[error("opening {}: {reason}", .path.display())]
    Open {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("reading {} (is it text?): {reason}", .path.display())]
    Read {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("{} is over {MAX_STATE_FILE_BYTES} bytes; refusing to read it", .0.display())]
    TooLarge(PathBuf),
    #[error("creating {}: {reason}", .path.display())]
    Create {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("restricting {}: {reason}", .path.display())]
    Restrict {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("writing {}: {reason}", .path.display())]
    Write {
        path: PathBuf,
        reason: std::io::Error,
    },
    /// Writing or syncing the file set aside before the rename.
    #[error("{0}")]
    Io(std::io::Error),
}

/// What enrollment left behind, besides the PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EnrollmentRecord")]
pub struct Enrollment {
    pub agent_id: String,
    /// `HOST:PORT` of each controller node (1 to `MAX_CONTROLLERS`); the link picks one
    /// at random at each connect and fails over to the others.
    pub controllers: Vec<String>,
    /// Hex SHA-256 of the pinned CA certificate.
    pub ca_sha256: String,
    /// Hex ed25519 public key that signs remediation scripts.
    pub script_public_key: String,
    pub enrolled_at_secs: u64,
    pub cert_not_after_secs: u64,
}

/// `enrollment.toml` as written by any release: `controllers` (a list) now, `controller`
/// (one address) before lists existed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollmentRecord {
    agent_id: String,
    #[serde(default)]
    controllers: Option<Vec<String>>,
    #[serde(default)]
    controller: Option<String>,
    ca_sha256: String,
    script_public_key: String,
    enrolled_at_secs: u64,
    cert_not_after_secs: u64,
}

impl TryFrom<EnrollmentRecord> for Enrollment {
    type Error = String;

    fn try_from(r: EnrollmentRecord) -> Result<Enrollment, String> {
        let listed = match (r.controllers, r.controller) {
            (Some(list), None) => list,
            (None, Some(one)) => vec![one],
            (Some(_), Some(_)) => {
                return Err("has both `controller` and `controllers`; keep `controllers`".into());
            }
            (None, None) => return Err("names no controller (`controllers`)".into()),
        };
        let controllers = deskside_proto::msg::enroll::check_controllers(&listed)
            .map_err(|e| format!("controllers: {e}"))?;
        Ok(Enrollment {
            agent_id: r.agent_id,
            controllers,
            ca_sha256: r.ca_sha256,
            script_public_key: r.script_public_key,
            enrolled_at_secs: r.enrolled_at_secs,
            cert_not_after_secs: r.cert_not_after_secs,
        })
    }
}

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
    /// The control socket, when set apart from the default (`--socket`, config, env).
    socket: Option<PathBuf>,
}

impl StateDir {
    /// `--state`, `DESKSIDE_AGENT_STATE`, else `/var/lib/deskside-agent` for root (and for
    /// everyone on a machine that has it, or the packaged service's socket), else
    /// `<data dir>/deskside-agent`.
    pub fn resolve(flag: Option<PathBuf>) -> Result<StateDir, StateError> {
        let system = PathBuf::from(SYSTEM_STATE);
        let root = match flag {
            Some(p) => p,
            // The service's own directory: root always, and desktop users too while the
            // service runs, so `deskside-agent pending`/`approve` reach it. (A user cannot
            // look inside the 0700 state directory; the socket's directory is 0755.)
            None if is_root() || Path::new(SYSTEM_SOCKET).exists() || system.exists() => system,
            None => dirs::data_dir()
                .ok_or(StateError::NoDataDir)?
                .join("deskside-agent"),
        };
        Ok(StateDir { root, socket: None })
    }

    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir {
            root: root.into(),
            socket: None,
        }
    }

    /// The same state with its control socket at `socket` (`--socket`,
    /// `DESKSIDE_AGENT_SOCKET`, `control_socket` in agent.toml; tests give each agent its
    /// own).
    pub fn with_control_socket(mut self, socket: impl Into<PathBuf>) -> StateDir {
        self.socket = Some(socket.into());
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn key(&self) -> PathBuf {
        self.root.join("agent.key")
    }
    pub fn cert(&self) -> PathBuf {
        self.root.join("agent.crt")
    }
    pub fn ca(&self) -> PathBuf {
        self.root.join("ca.crt")
    }
    pub fn enrollment_file(&self) -> PathBuf {
        self.root.join("enrollment.toml")
    }
    pub fn policy(&self) -> PathBuf {
        self.root.join("policy.toml")
    }
    pub fn audit_log(&self) -> PathBuf {
        self.root.join("audit.log")
    }
    pub fn status_file(&self) -> PathBuf {
        self.root.join("status.json")
    }

    /// Present while the user has switched the agent off (`deskside-agent disable`).
    pub fn disabled_flag(&self) -> PathBuf {
        self.root.join("disabled")
    }
    /// The local control socket the support UI and `pending`/`approve`/… talk to: the one
    /// set with [`StateDir::with_control_socket`], else [`SYSTEM_SOCKET`] for the system
    /// state directory, else `control.sock` inside the state directory (reachable by its
    /// owner only: a private agent's).
    pub fn control_socket(&self) -> PathBuf {
        match &self.socket {
            Some(p) => p.clone(),
            None if self.root == Path::new(SYSTEM_STATE) => PathBuf::from(SYSTEM_SOCKET),
            None => self.root.join("control.sock"),
        }
    }
    /// Results and notices waiting for the controller (see `spool`).
    pub fn spool_dir(&self) -> PathBuf {
        self.root.join("spool")
    }
    /// Private working directory for script runs.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    pub fn is_enrolled(&self) -> bool {
        self.enrollment_file().exists()
    }

    pub fn enrollment(&self) -> Result<Enrollment, StateError> {
        let path = self.enrollment_file();
        if !self.is_enrolled() {
            return Err(StateError::NotEnrolled(path));
        }
        let text = read_bounded(&path)?;
        toml::from_str(&text).map_err(|reason| StateError::Damaged { path, reason })
    }

    pub fn read(&self, path: &Path) -> Result<String, StateError> {
        read_bounded(path)
    }

    pub fn create(&self) -> Result<(), StateError> {
        use std::os::unix::fs::PermissionsExt;
        let path = || self.root.clone();
        fs::create_dir_all(&self.root).map_err(|reason| StateError::Create {
            path: path(),
            reason,
        })?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700)).map_err(|reason| {
            StateError::Restrict {
                path: path(),
                reason,
            }
        })
    }
}

fn is_root() -> bool {
    crate::os::effective_uid() == Some(0)
}

/// Reads a small text file, refusing anything over `MAX_STATE_FILE_BYTES` (1 MiB).
pub fn read_bounded(path: &Path) -> Result<String, StateError> {
    let file = fs::File::open(path).map_err(|reason| StateError::Open {
        path: path.to_owned(),
        reason,
    })?;
    let mut text = String::new();
    file.take(MAX_STATE_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|reason| StateError::Read {
            path: path.to_owned(),
            reason,
        })?;
    if text.len() as u64 > MAX_STATE_FILE_BYTES {
        return Err(StateError::TooLarge(path.to_owned()));
    }
    Ok(text)
}

/// Replaces `path` atomically with `bytes` (write aside, sync, rename), with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|reason| StateError::Create {
            path: tmp.clone(),
            reason,
        })?;
    f.write_all(bytes).map_err(StateError::Io)?;
    f.sync_all().map_err(StateError::Io)?;
    fs::rename(&tmp, path).map_err(|reason| StateError::Write {
        path: path.to_owned(),
        reason,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_state_has_its_socket_in_run_others_inside_unless_set() {
        assert_eq!(
            StateDir::new(SYSTEM_STATE).control_socket(),
            Path::new(SYSTEM_SOCKET)
        );
        assert_eq!(
            StateDir::new("/home/dev/agent").control_socket(),
            Path::new("/home/dev/agent/control.sock")
        );
        assert_eq!(
            StateDir::new(SYSTEM_STATE)
                .with_control_socket("/tmp/t/control.sock")
                .control_socket(),
            Path::new("/tmp/t/control.sock")
        );
    }

    const RECORD_TAIL: &str = r#"ca_sha256 = "00"
script_public_key = "11"
enrolled_at_secs = 1
cert_not_after_secs = 2
"#;

    #[test]
    fn an_enrollment_record_from_before_lists_still_reads() -> anyhow::Result<()> {
        let old = format!("agent_id = \"a-1\"\ncontroller = \"ctl.example:4433\"\n{RECORD_TAIL}");
        let e: Enrollment = toml::from_str(&old)?;
        assert_eq!(e.controllers, vec!["ctl.example:4433".to_owned()]);
        // Written back, it has the list.
        let again: Enrollment = toml::from_str(&toml::to_string(&e)?)?;
        assert_eq!(again, e);
        assert!(toml::to_string(&e)?.contains("controllers = ["));
        Ok(())
    }

    #[test]
    fn an_enrollment_record_with_a_list_reads_and_bad_ones_are_refused() -> anyhow::Result<()> {
        let new = format!("agent_id = \"a-1\"\ncontrollers = [\"a:1\", \"b:2\"]\n{RECORD_TAIL}");
        let e: Enrollment = toml::from_str(&new)?;
        assert_eq!(e.controllers, vec!["a:1".to_owned(), "b:2".to_owned()]);
        for bad in [
            format!("agent_id = \"a\"\n{RECORD_TAIL}"),
            format!("agent_id = \"a\"\ncontrollers = []\n{RECORD_TAIL}"),
            format!("agent_id = \"a\"\ncontrollers = [\"nope\"]\n{RECORD_TAIL}"),
            format!(
                "agent_id = \"a\"\ncontroller = \"a:1\"\ncontrollers = [\"a:1\"]\n{RECORD_TAIL}"
            ),
            format!("agent_id = \"a\"\ncontroller = \"a:1\"\nsurprise = 1\n{RECORD_TAIL}"),
        ] {
            assert!(toml::from_str::<Enrollment>(&bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn create_makes_the_state_dir_0700_even_if_it_was_opened_up() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let state = StateDir::new(dir.path().join("agent"));
        state.create()?;
        fs::set_permissions(state.root(), fs::Permissions::from_mode(0o711))?;
        state.create()?;
        assert_eq!(
            fs::metadata(state.root())?.permissions().mode() & 0o777,
            0o700
        );
        Ok(())
    }
}
