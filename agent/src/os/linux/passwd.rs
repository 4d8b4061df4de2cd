//! Local accounts from /etc/passwd: the one parser of passwd(5) in the agent.

use std::io::Read;
use std::path::Path;

/// The system's account database.
const PASSWD: &str = "/etc/passwd";
/// A directory-backed machine lists tens of thousands of accounts at ~100 bytes each;
/// 16 MiB is far past that and bounds what a corrupt file can make us hold.
const MAX_PASSWD_BYTES: u64 = 16 * 1024 * 1024;

/// One line of passwd(5): `name:password:uid:gid:gecos:home:shell`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    /// `None` when the field is not a number (the line is still worth its home).
    pub uid: Option<u32>,
    /// Empty when the line has no home field.
    pub home: String,
}

/// Parses passwd(5) text. Blank lines, comments and lines without a name are skipped;
/// short lines keep what they have.
pub(crate) fn parse(text: &str) -> Vec<Account> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next().filter(|n| !n.is_empty())?;
            let uid = fields.nth(1).and_then(|id| id.parse().ok());
            let home = fields.nth(2).unwrap_or_default();
            Some(Account {
                name: name.to_owned(),
                uid,
                home: home.to_owned(),
            })
        })
        .collect()
}

/// The accounts in the passwd file at `path`, read up to [`MAX_PASSWD_BYTES`].
pub(crate) fn accounts_in(path: &Path) -> std::io::Result<Vec<Account>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_PASSWD_BYTES)
        .read_to_end(&mut bytes)?;
    Ok(parse(&String::from_utf8_lossy(&bytes)))
}

/// This machine's local accounts; empty when /etc/passwd cannot be read.
pub fn accounts() -> Vec<Account> {
    accounts_in(Path::new(PASSWD)).unwrap_or_default()
}

/// The name of `uid` in this machine's local accounts.
pub fn user_name(uid: u32) -> Option<String> {
    name_of(&accounts(), uid)
}

/// The first account of `uid` in `accounts`.
pub(crate) fn name_of(accounts: &[Account], uid: u32) -> Option<String> {
    accounts
        .iter()
        .find(|a| a.uid == Some(uid))
        .map(|a| a.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_by_position_and_odd_lines_skipped_or_kept() {
        let text = "root:x:0:0:root:/root:/bin/bash\n\
                    # a comment\n\
                    \n\
                    alice:x:1001:1001:Alice,,,:/home/alice:/bin/zsh\n\
                    :x:1002:1002::/home/nameless:/bin/sh\n\
                    broken:x:notanumber:0::/srv/broken:/bin/sh\n\
                    short:x:1003\n";
        let accounts = parse(text);
        let summary: Vec<(&str, Option<u32>, &str)> = accounts
            .iter()
            .map(|a| (a.name.as_str(), a.uid, a.home.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("root", Some(0), "/root"),
                ("alice", Some(1001), "/home/alice"),
                ("broken", None, "/srv/broken"),
                ("short", Some(1003), ""),
            ]
        );
        assert_eq!(name_of(&accounts, 1001).as_deref(), Some("alice"));
        assert_eq!(name_of(&accounts, 1002), None);
        assert!(parse("").is_empty());
    }

    #[test]
    fn this_machine_has_root() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
    }

    #[test]
    fn a_missing_file_is_an_error() {
        assert!(accounts_in(Path::new("/nonexistent/deskside/passwd")).is_err());
    }
}
