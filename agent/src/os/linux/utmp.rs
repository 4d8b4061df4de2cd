//! Logged-in users from utmp (glibc's 384-byte `struct utmp`), parsed in safe Rust.

use std::io::Read;
use std::path::Path;

use deskside_proto::msg::diag::LoggedInUser;

use crate::os::Error;

/// glibc's utmp database (`_PATH_UTMP`).
const UTMP_PATH: &str = "/var/run/utmp";
/// `sizeof(struct utmp)` on glibc for every 64-bit and 32-bit Linux target.
const RECORD_BYTES: usize = 384;
/// utmp holds one record per terminal ever used since boot; 4096 records (1.5 MiB) is far
/// more than a desktop has, and a cap on a file anyone root-owned could grow.
const MAX_RECORDS: usize = 4096;
/// Users reported in a snapshot.
const MAX_USERS: usize = 256;
/// `ut_type` of a normal login session.
const USER_PROCESS: i16 = 7;

/// One login record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Login {
    pub pid: i32,
    pub user: LoggedInUser,
}

/// Parses whole 384-byte records, keeping `USER_PROCESS` ones. A trailing partial record
/// (a file being written, or not utmp at all) is ignored.
pub(crate) fn parse_utmp(bytes: &[u8]) -> Vec<Login> {
    bytes
        .chunks_exact(RECORD_BYTES)
        .take(MAX_RECORDS)
        .filter_map(parse_record)
        .take(MAX_USERS)
        .collect()
}

fn parse_record(record: &[u8]) -> Option<Login> {
    let ut_type = i16::from_ne_bytes(array(record, 0)?);
    if ut_type != USER_PROCESS {
        return None;
    }
    let name = c_string(record.get(44..76)?);
    if name.is_empty() {
        return None;
    }
    let since = i32::from_ne_bytes(array(record, 340)?);
    Some(Login {
        pid: i32::from_ne_bytes(array(record, 4)?),
        user: LoggedInUser {
            name,
            line: c_string(record.get(8..40)?),
            remote: c_string(record.get(76..332)?),
            since_secs: u64::try_from(since).unwrap_or(0),
        },
    })
}

/// `N` bytes at `offset`, or `None` past the end.
fn array<const N: usize>(record: &[u8], offset: usize) -> Option<[u8; N]> {
    record.get(offset..offset.checked_add(N)?)?.try_into().ok()
}

/// A fixed-size, NUL-padded (not necessarily NUL-terminated) C char array.
fn c_string(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(field.get(..end).unwrap_or_default())
        .trim()
        .to_owned()
}

/// The users probe: live login sessions. Records whose process is gone (a crashed
/// session that never cleaned up) are dropped, as `users(1)` does. No utmp at all means
/// nothing records logins here (containers, minimal systems): an empty list, like `who`.
pub fn logged_in_users() -> Result<Vec<LoggedInUser>, Error> {
    Ok(live_logins(Path::new(UTMP_PATH))?
        .into_iter()
        .map(|login| login.user)
        .collect())
}

/// The live login records of the utmp file at `path` (the system's is [`UTMP_PATH`]).
pub(crate) fn live_logins(path: &Path) -> Result<Vec<Login>, Error> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(RECORD_BYTES * MAX_RECORDS).unwrap_or(u64::MAX);
    match std::fs::File::open(path) {
        Ok(file) => file.take(limit).read_to_end(&mut bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => Err(e),
    }
    .map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(parse_utmp(&bytes)
        .into_iter()
        .filter(|login| login.pid <= 0 || Path::new(&format!("/proc/{}", login.pid)).exists())
        .collect())
}

/// One glibc `struct utmp` record of a login (`USER_PROCESS`), as `login`, display
/// managers and terminal emulators write it; for tests that need a utmp file of their own.
pub fn user_process_record(pid: i32, line: &str, user: &str, host: &str, since: i32) -> Vec<u8> {
    let mut r = vec![0u8; RECORD_BYTES];
    let mut put = |offset: usize, data: &[u8], width: usize| {
        let data = data.get(..width.min(data.len())).unwrap_or_default();
        if let Some(slot) = r.get_mut(offset..offset + data.len()) {
            slot.copy_from_slice(data);
        }
    };
    put(0, &USER_PROCESS.to_ne_bytes(), 2);
    put(4, &pid.to_ne_bytes(), 4);
    put(8, line.as_bytes(), 32);
    put(44, user.as_bytes(), 32);
    put(76, host.as_bytes(), 256);
    put(340, &since.to_ne_bytes(), 4);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ut_type: i16, pid: i32, line: &str, user: &str, host: &str, since: i32) -> Vec<u8> {
        let mut r = vec![0u8; RECORD_BYTES];
        let mut put = |offset: usize, data: &[u8]| {
            if let Some(slot) = r.get_mut(offset..offset + data.len()) {
                slot.copy_from_slice(data);
            }
        };
        put(0, &ut_type.to_ne_bytes());
        put(4, &pid.to_ne_bytes());
        put(8, line.as_bytes());
        put(44, user.as_bytes());
        put(76, host.as_bytes());
        put(340, &since.to_ne_bytes());
        r
    }

    #[test]
    fn keeps_user_process_records() {
        let mut file = record(2, 0, "~", "reboot", "6.1.0", 1_700_000_000); // BOOT_TIME
        file.extend(record(6, 900, "tty1", "LOGIN", "", 1_700_000_001)); // LOGIN_PROCESS
        file.extend(record(
            7,
            1234,
            "pts/0",
            "alice",
            "192.0.2.7",
            1_700_000_100,
        ));
        file.extend(record(7, 1300, ":0", "bob", "", 1_700_000_200));
        let logins = parse_utmp(&file);
        assert_eq!(logins.len(), 2);
        let alice = logins.first().map(|l| l.user.clone()).unwrap_or_default();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.line, "pts/0");
        assert_eq!(alice.remote, "192.0.2.7");
        assert_eq!(alice.since_secs, 1_700_000_100);
        assert_eq!(logins.get(1).map(|l| l.pid), Some(1300));
        assert_eq!(logins.get(1).map(|l| l.user.remote.as_str()), Some(""));
    }

    #[test]
    fn full_width_fields_without_nul_and_odd_sizes() {
        let user = "u".repeat(32);
        let mut file = record(7, 1, "x".repeat(32).as_str(), &user, "", -5);
        file.extend([7u8; 100]); // a partial trailing record
        let logins = parse_utmp(&file);
        assert_eq!(logins.len(), 1);
        assert_eq!(logins.first().map(|l| l.user.name.clone()), Some(user));
        assert_eq!(logins.first().map(|l| l.user.since_secs), Some(0));
        assert!(parse_utmp(&[]).is_empty());
        assert!(parse_utmp(&[0xff; 383]).is_empty());
    }

    #[test]
    fn empty_user_names_are_skipped() {
        assert!(parse_utmp(&record(7, 1, "pts/1", "", "", 1)).is_empty());
    }
}
