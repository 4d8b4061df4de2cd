//! This machine's identity and memory from /proc and /etc: hostname, kernel release,
//! os-release(5), uptime, meminfo, time zone and the kernel clock's sync state.

use deskside_proto::msg::diag::Memory;

use super::files::{SMALL_FILE_BYTES, read_bounded, read_line};
use super::sys;
use crate::os::{Error, clip};

/// The three os-release fields a snapshot carries, and `ID_LIKE` for telling families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub version_id: String,
    pub pretty_name: String,
    /// Space-separated ids of related distributions (`rhel centos fedora`); may be empty.
    pub id_like: String,
}

/// Parses os-release(5): `KEY=value` lines, values optionally in single or double quotes
/// with shell backslash escapes. Absent `ID`/`PRETTY_NAME` take the defaults the spec
/// gives (`linux`, `Linux`).
pub(crate) fn parse_os_release(text: &str) -> OsRelease {
    let mut release = OsRelease {
        id: "linux".to_owned(),
        version_id: String::new(),
        pretty_name: "Linux".to_owned(),
        id_like: String::new(),
    };
    for line in text.lines() {
        let Some((key, raw)) = line.trim().split_once('=') else {
            continue;
        };
        let slot = match key.trim() {
            "ID" => &mut release.id,
            "VERSION_ID" => &mut release.version_id,
            "PRETTY_NAME" => &mut release.pretty_name,
            "ID_LIKE" => &mut release.id_like,
            _ => continue,
        };
        *slot = clip(&unquote_shell_value(raw.trim()));
    }
    release
}

/// `"a \"b\""` → `a "b"`, `'x'` → `x`, bare words unchanged.
fn unquote_shell_value(raw: &str) -> String {
    if let Some(inner) = raw.strip_prefix('\'') {
        return inner.strip_suffix('\'').unwrap_or(inner).to_owned();
    }
    let Some(inner) = raw.strip_prefix('"') else {
        return raw.to_owned();
    };
    let inner = inner.strip_suffix('"').unwrap_or(inner);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(next @ ('"' | '\\' | '$' | '`')) => out.push(next),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// /proc/meminfo → bytes. `MemTotal` is required; the others read 0 when absent
/// (`MemAvailable` falls back to `MemFree` on kernels older than 3.14).
pub(crate) fn parse_meminfo(text: &str) -> Result<Memory, Error> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|line| {
            let (key, rest) = line.split_once(':')?;
            if key.trim() != name {
                return None;
            }
            let mut words = rest.split_whitespace();
            let value: u64 = words.next()?.parse().ok()?;
            match words.next() {
                Some("kB") => value.checked_mul(1024),
                None => Some(value),
                Some(_) => None,
            }
        })
    };
    let total_bytes = field("MemTotal")
        .ok_or_else(|| Error::parse("/proc/meminfo", "no readable MemTotal line"))?;
    let free_bytes = field("MemFree").unwrap_or(0);
    Ok(Memory {
        total_bytes,
        available_bytes: field("MemAvailable").unwrap_or(free_bytes),
        free_bytes,
        swap_total_bytes: field("SwapTotal").unwrap_or(0),
        swap_free_bytes: field("SwapFree").unwrap_or(0),
    })
}

/// /proc/uptime (`12345.67 23456.78`) → whole seconds.
pub(crate) fn parse_uptime(text: &str) -> Result<u64, Error> {
    let first = text.split_whitespace().next().unwrap_or_default();
    let whole = first.split('.').next().unwrap_or_default();
    whole
        .parse()
        .map_err(|_| Error::parse("/proc/uptime", format!("unexpected content {first:?}")))
}

/// This machine's name as the kernel has it (what `hostname` prints).
pub fn hostname() -> Result<String, Error> {
    read_line("/proc/sys/kernel/hostname")
}

/// The running kernel's release (what `uname -r` prints).
pub fn kernel_release() -> Result<String, Error> {
    read_line("/proc/sys/kernel/osrelease")
}

/// os-release(5): /etc/os-release, else /usr/lib/os-release.
pub fn os_release() -> Result<OsRelease, Error> {
    let text = read_bounded("/etc/os-release", SMALL_FILE_BYTES)
        .or_else(|_| read_bounded("/usr/lib/os-release", SMALL_FILE_BYTES))?;
    Ok(parse_os_release(&text))
}

/// Seconds since boot (/proc/uptime).
pub fn uptime_secs() -> Result<u64, Error> {
    parse_uptime(&read_bounded("/proc/uptime", SMALL_FILE_BYTES)?)
}

/// Memory and swap in bytes, as `free -b` shows them (/proc/meminfo).
pub fn memory() -> Result<Memory, Error> {
    parse_meminfo(&read_bounded("/proc/meminfo", SMALL_FILE_BYTES)?)
}

/// The kernel clock's sync state (adjtimex(2), what `timedatectl` shows).
pub fn clock() -> Result<sys::ClockState, Error> {
    sys::clock_state().map_err(|e| Error::system("adjtimex", e))
}

/// The IANA time zone: /etc/timezone (Debian), else the target of /etc/localtime; empty
/// when neither says.
pub fn timezone() -> String {
    if let Ok(zone) = read_line("/etc/timezone")
        && !zone.is_empty()
    {
        return zone;
    }
    std::fs::read_link("/etc/localtime")
        .map(|target| zone_from_link(&target.to_string_lossy()))
        .unwrap_or_default()
}

/// `/usr/share/zoneinfo/Europe/Berlin` → `Europe/Berlin`; a link elsewhere is kept whole.
fn zone_from_link(target: &str) -> String {
    match target.split_once("zoneinfo/") {
        Some((_, zone)) => clip(zone),
        None => clip(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_handles_quotes_and_escapes() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian\"\n\
                    VERSION_ID=\"12\"\nID=debian\n# comment\nBROKEN LINE\n";
        let release = parse_os_release(text);
        assert_eq!(release.id, "debian");
        assert_eq!(release.version_id, "12");
        assert_eq!(release.pretty_name, "Debian GNU/Linux 12 (bookworm)");

        let odd = parse_os_release("ID='arch'\nPRETTY_NAME=\"say \\\"hi\\\" \\$HOME\"\n");
        assert_eq!(odd.id, "arch");
        assert_eq!(odd.pretty_name, "say \"hi\" $HOME");
        assert_eq!(odd.version_id, "");
    }

    #[test]
    fn os_release_defaults_follow_the_spec() {
        let release = parse_os_release("");
        assert_eq!(release.id, "linux");
        assert_eq!(release.pretty_name, "Linux");
        // An unterminated quote keeps what is there instead of failing.
        assert_eq!(parse_os_release("ID=\"fedora").id, "fedora");
    }

    #[test]
    fn meminfo_in_bytes() {
        let text = "MemTotal:       24681096 kB\nMemFree:        20000000 kB\n\
                    MemAvailable:   22000000 kB\nBuffers: 1 kB\nSwapTotal:             0 kB\n\
                    SwapFree:              0 kB\nHugePages_Total:       0\n";
        let memory = parse_meminfo(text).unwrap_or_default();
        assert_eq!(memory.total_bytes, 24_681_096 * 1024);
        assert_eq!(memory.free_bytes, 20_000_000 * 1024);
        assert_eq!(memory.available_bytes, 22_000_000 * 1024);
        assert_eq!(memory.swap_total_bytes, 0);
    }

    #[test]
    fn meminfo_without_total_or_with_overflow_is_an_error() {
        assert!(parse_meminfo("MemFree: 1 kB\n").is_err());
        assert!(parse_meminfo("MemTotal: 18446744073709551615 kB\n").is_err());
        assert!(parse_meminfo("MemTotal: lots kB\n").is_err());
    }

    #[test]
    fn uptime_whole_seconds() {
        assert_eq!(parse_uptime("372.42 701.11\n").ok(), Some(372));
        assert!(parse_uptime("").is_err());
        assert!(parse_uptime("-1.0 2").is_err());
    }

    #[test]
    fn zone_names_from_localtime_links() {
        assert_eq!(zone_from_link("/usr/share/zoneinfo/Etc/UTC"), "Etc/UTC");
        assert_eq!(
            zone_from_link("../usr/share/zoneinfo/Europe/Berlin"),
            "Europe/Berlin"
        );
        assert_eq!(zone_from_link("/etc/zones/custom"), "/etc/zones/custom");
    }

    #[test]
    fn memory_and_release_on_this_machine() {
        assert!(memory().is_ok_and(|m| m.total_bytes > 0));
        assert!(kernel_release().is_ok_and(|k| !k.is_empty()));
        assert!(os_release().is_ok_and(|r| !r.id.is_empty()));
    }
}
