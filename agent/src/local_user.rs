//! Who may use the control socket, decided from the caller's uid (peer credentials) on
//! every request. The people who answer for a machine are the ones at it:
//!
//! - root;
//! - the agent's own user (root for the packaged service; the developer for a private
//!   agent run from a shell);
//! - a user with a **local session**: someone logged in at this machine's console or
//!   desktop.
//!   - Where systemd-logind runs (the machine booted with systemd, i.e. `sd_booted()`:
//!     `/run/systemd/system/` exists; then logind keeps `/run/systemd/sessions/`): a
//!     logind session of that uid attached to a seat (`SEAT=` set), not remote
//!     (`REMOTE=1`), not closing, of class `user`. These are the session files
//!     libsystemd's sd-login reads. (The directories alone prove nothing: installing
//!     systemd's package creates them in containers where no logind ever runs.)
//!   - Elsewhere, utmp: a live `USER_PROCESS` record for that user whose line is a
//!     virtual console (`tty1`…), an X display (`:0`) or a seat (`seat0`), or a
//!     pseudo-terminal opened from a local X display (a terminal window in the desktop:
//!     `pts/3` with host `:0`). Any record with another remote host is not local.
//!
//! An SSH login alone never qualifies: logind marks it remote and seatless, utmp records
//! it as `pts/N` with the client's address. The unit is the user, not the login: peer
//! credentials carry a uid, so a user who is at the machine may also answer from another
//! of their own logins.

use std::path::{Path, PathBuf};

use crate::state::read_bounded;

/// logind's session records (one file per session), kept while logind runs.
const LOGIND_SESSIONS: &str = "/run/systemd/sessions";
/// Made by systemd as PID 1 at boot (what `sd_booted()` checks): logind's records count
/// only then.
const SYSTEMD_BOOTED: &str = "/run/systemd/system";
/// glibc's utmp database.
const UTMP: &str = "/var/run/utmp";
/// Local accounts; the static agent has no NSS, and machines without logind seldom have
/// directory accounts.
const PASSWD: &str = "/etc/passwd";
/// logind keeps one file per session; a machine with more than this many sessions is
/// not a desktop, and the cap bounds the work one request can cause.
const MAX_LOGIND_SESSIONS: usize = 4096;

/// Where local sessions are read from.
#[derive(Debug, Clone)]
pub struct LocalSessions {
    /// logind's session directory; `None` reads utmp only.
    logind: Option<PathBuf>,
    /// Exists when the machine booted with systemd ([`SYSTEMD_BOOTED`]).
    systemd_booted: PathBuf,
    utmp: PathBuf,
    passwd: PathBuf,
    agent_uid: Option<u32>,
}

/// A caller allowed to answer, as the audit log names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Root,
    /// The uid the agent itself runs as.
    AgentUser {
        uid: u32,
        name: Option<String>,
    },
    /// `session` says which local session: `logind session 3 on seat0`, `tty1`, `:0`.
    LocalSession {
        uid: u32,
        name: String,
        session: String,
    },
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Root => write!(f, "root (uid 0)"),
            Caller::AgentUser { uid, name } => {
                write!(
                    f,
                    "{} (uid {uid}, the agent's own user)",
                    name.as_deref().unwrap_or("?")
                )
            }
            Caller::LocalSession { uid, name, session } => {
                write!(f, "{name} (uid {uid}, local session {session})")
            }
        }
    }
}

/// A caller who may not answer, and the rule that says who may.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{who} may not answer for this machine: only root and users with a local session here (logged in at its console or desktop, {rule}) may list, approve, deny or end sessions or start one; SSH logins do not count. Ask the person at the machine, or run the command as root"
)]
pub struct NotLocal {
    who: String,
    rule: &'static str,
}

impl LocalSessions {
    /// This machine's: logind's sessions while logind runs, else utmp.
    pub fn system() -> LocalSessions {
        LocalSessions {
            logind: Some(PathBuf::from(LOGIND_SESSIONS)),
            systemd_booted: PathBuf::from(SYSTEMD_BOOTED),
            utmp: PathBuf::from(UTMP),
            passwd: PathBuf::from(PASSWD),
            agent_uid: own_uid(),
        }
    }

    /// Local sessions from the utmp file at `utmp` only, whether or not logind runs (for
    /// tests, which must not write the machine's own utmp).
    pub fn utmp_only(utmp: impl Into<PathBuf>) -> LocalSessions {
        LocalSessions {
            logind: None,
            utmp: utmp.into(),
            ..LocalSessions::system()
        }
    }

    /// The logind session directory in force: `None` when logind is not running.
    fn logind_dir(&self) -> Option<&Path> {
        self.logind
            .as_deref()
            .filter(|d| self.systemd_booted.is_dir() && d.is_dir())
    }

    /// Decides whether `uid` may use the control socket now. Reads the session records
    /// afresh: call it for every request (it does blocking file reads).
    pub fn authorise(&self, uid: u32) -> Result<Caller, NotLocal> {
        if uid == 0 {
            return Ok(Caller::Root);
        }
        let name = user_name(&self.passwd, uid);
        if Some(uid) == self.agent_uid {
            return Ok(Caller::AgentUser { uid, name });
        }
        let (session, rule) = match self.logind_dir() {
            Some(dir) => (
                logind_local_session(dir, uid),
                "a seat session in systemd-logind",
            ),
            None => (
                name.as_deref()
                    .and_then(|n| utmp_local_session(&self.utmp, n)),
                "a console or display login in utmp",
            ),
        };
        match (session, name) {
            (Some(session), Some(name)) => Ok(Caller::LocalSession { uid, name, session }),
            (Some(session), None) => Ok(Caller::LocalSession {
                uid,
                name: format!("uid {uid}"),
                session,
            }),
            (None, name) => Err(NotLocal {
                who: match name {
                    Some(n) => format!("{n} (uid {uid})"),
                    None => format!("uid {uid}"),
                },
                rule,
            }),
        }
    }
}

fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    // The owner of /proc/self is this process's effective user.
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// The name of `uid` in a passwd file.
fn user_name(passwd: &Path, uid: u32) -> Option<String> {
    let text = read_bounded(passwd).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_owned())
    })
}

/// One logind session file's fields that matter here.
#[derive(Debug, Default, PartialEq, Eq)]
struct LogindSession {
    uid: Option<u32>,
    seat: String,
    remote: bool,
    state: String,
    class: String,
}

impl LogindSession {
    fn parse(text: &str) -> LogindSession {
        let mut s = LogindSession::default();
        for (key, value) in text.lines().filter_map(|l| l.split_once('=')) {
            match key {
                "UID" => s.uid = value.parse().ok(),
                "SEAT" => s.seat = value.to_owned(),
                "REMOTE" => s.remote = value == "1",
                "STATE" => s.state = value.to_owned(),
                "CLASS" => s.class = value.to_owned(),
                _ => {}
            }
        }
        s
    }

    /// At a seat, not remote, not on its way out, a person's (not a greeter's).
    fn is_local_for(&self, uid: u32) -> bool {
        self.uid == Some(uid)
            && !self.seat.is_empty()
            && !self.remote
            && self.state != "closing"
            && (self.class.is_empty() || self.class.starts_with("user"))
    }
}

/// `logind session ID on SEAT` for a local session of `uid`, if there is one.
fn logind_local_session(dir: &Path, uid: u32) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .take(MAX_LOGIND_SESSIONS)
        .find_map(|entry| {
            let text = read_bounded(&entry.path()).ok()?;
            let session = LogindSession::parse(&text);
            session.is_local_for(uid).then(|| {
                format!(
                    "logind session {} on {}",
                    entry.file_name().to_string_lossy(),
                    session.seat
                )
            })
        })
}

/// The line of a live local login of `name` in the utmp file at `path`, if there is one.
fn utmp_local_session(path: &Path, name: &str) -> Option<String> {
    crate::diag::live_logins(path)
        .ok()?
        .into_iter()
        .map(|login| login.user)
        .find(|u| u.name == name && is_local_line(&u.line, &u.remote))
        .map(|u| u.line)
}

/// Whether a utmp record's line (and host) is a login at this machine: a virtual console,
/// an X display, a seat, or a terminal window on a local X display.
fn is_local_line(line: &str, host: &str) -> bool {
    if !host.is_empty() && !is_local_display(host) {
        return false;
    }
    let virtual_console = line
        .strip_prefix("tty")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    virtual_console
        || is_local_display(line)
        || line.starts_with("seat")
        || (line.starts_with("pts/") && is_local_display(host))
}

/// `:0`, `:1.0`: an X display on this machine (a remote one is `host:0`).
fn is_local_display(s: &str) -> bool {
    let Some(rest) = s.strip_prefix(':') else {
        return false;
    };
    let (display, screen) = rest.split_once('.').unwrap_or((rest, "0"));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    digits(display) && digits(screen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utmp_lines_at_the_machine_are_local_and_ssh_is_not() {
        for (line, host) in [
            ("tty1", ""),
            ("tty12", ""),
            (":0", ""),
            (":1", ":1"),
            ("seat0", ""),
            ("pts/3", ":0"),
            ("pts/3", ":0.0"),
        ] {
            assert!(is_local_line(line, host), "{line} from {host:?}");
        }
        for (line, host) in [
            ("pts/0", "192.0.2.7"),
            ("pts/0", "laptop.example.org"),
            ("pts/0", ""),
            ("pts/1", "otherhost:0"),
            ("tty1", "192.0.2.7"),
            ("ttyS0", ""),
            ("tty", ""),
            ("console", ""),
            (":", ""),
            (":0x", ""),
        ] {
            assert!(!is_local_line(line, host), "{line} from {host:?}");
        }
    }

    #[test]
    fn logind_seat_sessions_are_local_remote_and_seatless_ones_are_not() {
        let seat = "UID=1001\nUSER=alice\nACTIVE=1\nSTATE=active\nREMOTE=0\nTYPE=x11\nCLASS=user\nSEAT=seat0\nVTNR=2\n";
        assert!(LogindSession::parse(seat).is_local_for(1001));
        assert!(!LogindSession::parse(seat).is_local_for(1002));
        let ssh = "UID=1001\nUSER=alice\nSTATE=active\nREMOTE=1\nREMOTE_HOST=192.0.2.7\nTYPE=tty\nCLASS=user\n";
        assert!(!LogindSession::parse(ssh).is_local_for(1001));
        let remote_seat = "UID=1001\nSEAT=seat0\nREMOTE=1\nCLASS=user\n";
        assert!(!LogindSession::parse(remote_seat).is_local_for(1001));
        let closing = "UID=1001\nSEAT=seat0\nSTATE=closing\nCLASS=user\n";
        assert!(!LogindSession::parse(closing).is_local_for(1001));
        let greeter = "UID=115\nSEAT=seat0\nSTATE=online\nCLASS=greeter\n";
        assert!(!LogindSession::parse(greeter).is_local_for(115));
        assert!(!LogindSession::parse("garbage\n\0\u{1}=").is_local_for(0));
    }

    #[test]
    fn logind_directory_wins_over_utmp_and_names_the_session() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let sessions = dir.path().join("sessions");
        std::fs::create_dir(&sessions)?;
        std::fs::write(sessions.join("4"), "UID=1002\nREMOTE=1\nCLASS=user\n")?;
        std::fs::write(sessions.join("7"), "UID=1001\nSEAT=seat0\nCLASS=user\n")?;
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/sh\nbob:x:1002:1002::/home/bob:/bin/sh\n",
        )?;
        let access = LocalSessions {
            logind: Some(sessions),
            systemd_booted: dir.path().to_owned(),
            utmp: dir.path().join("no-utmp"),
            passwd,
            agent_uid: Some(0),
        };
        assert_eq!(
            access.authorise(1001),
            Ok(Caller::LocalSession {
                uid: 1001,
                name: "alice".into(),
                session: "logind session 7 on seat0".into()
            })
        );
        let refused = access.authorise(1002).err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|m| m.starts_with("bob (uid 1002) may not answer")
                    && m.contains("seat session in systemd-logind")),
            "{refused:?}"
        );
        assert_eq!(access.authorise(0), Ok(Caller::Root));
        Ok(())
    }

    #[test]
    fn without_logind_a_console_login_in_utmp_counts() -> anyhow::Result<()> {
        // logind's directories exist (systemd's package made them) but systemd is not
        // PID 1, so nothing keeps them: utmp decides.
        let dir = tempfile::tempdir()?;
        let utmp = dir.path().join("utmp");
        let pid = i32::try_from(std::process::id())?;
        let mut records = crate::diag::user_process_record(pid, "pts/0", "bob", "192.0.2.7", 1);
        records.extend(crate::diag::user_process_record(
            pid, "tty2", "alice", "", 1,
        ));
        std::fs::write(&utmp, records)?;
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "alice:x:1001:1001::/:/bin/sh\nbob:x:1002:1002::/:/bin/sh\n",
        )?;
        let sessions = dir.path().join("sessions");
        std::fs::create_dir(&sessions)?;
        let access = LocalSessions {
            logind: Some(sessions),
            systemd_booted: dir.path().join("not-booted-with-systemd"),
            utmp,
            passwd,
            agent_uid: Some(0),
        };
        assert!(
            matches!(access.authorise(1001), Ok(Caller::LocalSession { session, .. }) if session == "tty2")
        );
        assert!(access.authorise(1002).is_err());
        assert!(access.authorise(1003).is_err());
        Ok(())
    }
}
