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

use std::path::PathBuf;

use crate::os::{self, SessionRecords};

/// Where local sessions are read from.
#[derive(Debug, Clone)]
pub struct LocalSessions {
    records: SessionRecords,
    /// A passwd file to name users from; `None` is the machine's own accounts.
    passwd: Option<PathBuf>,
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
            records: SessionRecords::system(),
            passwd: None,
            agent_uid: os::effective_uid(),
        }
    }

    /// Local sessions from the utmp file at `utmp` only, whether or not logind runs (for
    /// tests, which must not write the machine's own utmp).
    pub fn utmp_only(utmp: impl Into<PathBuf>) -> LocalSessions {
        LocalSessions {
            records: SessionRecords::utmp_only(utmp),
            ..LocalSessions::system()
        }
    }

    /// Decides whether `uid` may use the control socket now. Reads the session records
    /// afresh: call it for every request (it does blocking file reads).
    pub fn authorise(&self, uid: u32) -> Result<Caller, NotLocal> {
        if uid == 0 {
            return Ok(Caller::Root);
        }
        let name = self.user_name(uid);
        if Some(uid) == self.agent_uid {
            return Ok(Caller::AgentUser { uid, name });
        }
        let (session, rule) = self.records.local_session(uid, name.as_deref());
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

    /// The account name of `uid`.
    fn user_name(&self, uid: u32) -> Option<String> {
        match &self.passwd {
            None => os::user_name(uid),
            Some(path) => os::accounts_in(path)
                .ok()
                .and_then(|accounts| os::name_of(&accounts, uid)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            records: SessionRecords::at(
                sessions,
                dir.path().to_owned(),
                dir.path().join("no-utmp"),
            ),
            passwd: Some(passwd),
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
        let mut records = os::user_process_record(pid, "pts/0", "bob", "192.0.2.7", 1);
        records.extend(os::user_process_record(pid, "tty2", "alice", "", 1));
        std::fs::write(&utmp, records)?;
        let passwd = dir.path().join("passwd");
        std::fs::write(
            &passwd,
            "alice:x:1001:1001::/:/bin/sh\nbob:x:1002:1002::/:/bin/sh\n",
        )?;
        let sessions = dir.path().join("sessions");
        std::fs::create_dir(&sessions)?;
        let access = LocalSessions {
            records: SessionRecords::at(sessions, dir.path().join("not-booted-with-systemd"), utmp),
            passwd: Some(passwd),
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
