//! Who is logged in at this machine's console or desktop: systemd-logind's session
//! records where logind runs (the machine booted with systemd, i.e. `sd_booted()`), else
//! utmp. The rule built on it (who may answer for the machine) is `crate::local_user`.

use std::path::{Path, PathBuf};

use super::files::{SMALL_FILE_BYTES, read_bounded};

/// logind's session records (one file per session), kept while logind runs.
const LOGIND_SESSIONS: &str = "/run/systemd/sessions";
/// Made by systemd as PID 1 at boot (what `sd_booted()` checks): logind's records count
/// only then.
const SYSTEMD_BOOTED: &str = "/run/systemd/system";
/// glibc's utmp database.
const UTMP: &str = "/var/run/utmp";
/// logind keeps one file per session; a machine with more than this many sessions is
/// not a desktop, and the cap bounds the work one request can cause.
const MAX_LOGIND_SESSIONS: usize = 4096;

/// Where this machine records local sessions.
#[derive(Debug, Clone)]
pub struct SessionRecords {
    /// logind's session directory; `None` reads utmp only.
    logind: Option<PathBuf>,
    /// Exists when the machine booted with systemd ([`SYSTEMD_BOOTED`]).
    systemd_booted: PathBuf,
    utmp: PathBuf,
}

impl SessionRecords {
    /// This machine's: logind's sessions while logind runs, else utmp.
    pub fn system() -> SessionRecords {
        SessionRecords {
            logind: Some(PathBuf::from(LOGIND_SESSIONS)),
            systemd_booted: PathBuf::from(SYSTEMD_BOOTED),
            utmp: PathBuf::from(UTMP),
        }
    }

    /// The utmp file at `utmp` only, whether or not logind runs (for tests, which must not
    /// write the machine's own utmp).
    pub fn utmp_only(utmp: impl Into<PathBuf>) -> SessionRecords {
        SessionRecords {
            logind: None,
            utmp: utmp.into(),
            ..SessionRecords::system()
        }
    }

    /// Records at other paths: a logind directory, the path whose existence says systemd
    /// booted the machine, and a utmp file (for tests).
    #[cfg(test)]
    pub(crate) fn at(logind: PathBuf, systemd_booted: PathBuf, utmp: PathBuf) -> SessionRecords {
        SessionRecords {
            logind: Some(logind),
            systemd_booted,
            utmp,
        }
    }

    /// The logind session directory in force: `None` when logind is not running.
    fn logind_dir(&self) -> Option<&Path> {
        self.logind
            .as_deref()
            .filter(|d| self.systemd_booted.is_dir() && d.is_dir())
    }

    /// A local session of `uid` (whose account name is `name`, if it has one): which one
    /// (`logind session 3 on seat0`, `tty1`, `:0`), and the rule that was applied, for
    /// telling a refused caller who would qualify. Blocking file reads, afresh each call.
    pub fn local_session(&self, uid: u32, name: Option<&str>) -> (Option<String>, &'static str) {
        match self.logind_dir() {
            Some(dir) => (
                logind_local_session(dir, uid),
                "a seat session in systemd-logind",
            ),
            None => (
                name.and_then(|n| utmp_local_session(&self.utmp, n)),
                "a console or display login in utmp",
            ),
        }
    }
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
            let text = read_bounded(entry.path(), SMALL_FILE_BYTES).ok()?;
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
    super::utmp::live_logins(path)
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
}
