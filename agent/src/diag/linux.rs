//! Bounded reads of /proc, /sys and /etc files, and pure parsers for their text formats
//! (os-release, meminfo, uptime, resolv.conf, /proc/net/route, /proc/net/ipv6_route).

use std::io::Read;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use deskside_proto::msg::diag::{Memory, Route};

use super::ProbeError;

/// os-release, meminfo, resolv.conf, hostname, sysfs attributes: all well under 64 KiB.
pub(crate) const SMALL_FILE_BYTES: u64 = 64 * 1024;
/// Route tables and mountinfo grow with the machine; 4 MiB is ~25 000 mounts or routes.
pub(crate) const TABLE_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Free text we copy into a snapshot (names, labels, log lines) is cut at this many bytes.
pub(crate) const MAX_TEXT_BYTES: usize = 1024;
/// Resolvers and search domains kept from resolv.conf (glibc itself uses 3 and 6).
const MAX_RESOLV_ENTRIES: usize = 32;
/// Default routes kept (ECMP setups have a handful; more is a misconfiguration).
const MAX_DEFAULT_ROUTES: usize = 64;

/// Reads at most `limit` bytes of `path` as (lossy) UTF-8. /proc files report size 0, so
/// the bound is enforced on the read itself, not on the metadata.
pub(crate) fn read_bounded(path: impl AsRef<Path>, limit: u64) -> Result<String, ProbeError> {
    let path = path.as_ref();
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(limit).read_to_end(&mut bytes))
        .map_err(|source| ProbeError::Read {
            path: path.display().to_string(),
            source,
        })?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The first line of a small file, trimmed (hostname, osrelease, sysfs attributes).
pub(crate) fn read_line(path: impl AsRef<Path>) -> Result<String, ProbeError> {
    let text = read_bounded(path, SMALL_FILE_BYTES)?;
    Ok(clip(text.lines().next().unwrap_or_default().trim()))
}

/// Copies `text`, cut to at most [`MAX_TEXT_BYTES`] on a character boundary.
pub(crate) fn clip(text: &str) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_TEXT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

/// The three os-release fields a snapshot carries, and `ID_LIKE` for telling families.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OsRelease {
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
pub(crate) fn parse_meminfo(text: &str) -> Result<Memory, ProbeError> {
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
        .ok_or_else(|| ProbeError::parse("/proc/meminfo", "no readable MemTotal line"))?;
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
pub(crate) fn parse_uptime(text: &str) -> Result<u64, ProbeError> {
    let first = text.split_whitespace().next().unwrap_or_default();
    let whole = first.split('.').next().unwrap_or_default();
    whole
        .parse()
        .map_err(|_| ProbeError::parse("/proc/uptime", format!("unexpected content {first:?}")))
}

/// Name servers and search domains from resolv.conf(5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Resolver {
    pub nameservers: Vec<String>,
    pub search: Vec<String>,
}

/// Parses resolv.conf the way glibc does: `nameserver` lines in order; the last `search`
/// or `domain` line wins; `#` and `;` start comments.
pub(crate) fn parse_resolv_conf(text: &str) -> Resolver {
    let mut resolver = Resolver::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default().trim();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(server) = words.next()
                    && resolver.nameservers.len() < MAX_RESOLV_ENTRIES
                {
                    resolver.nameservers.push(clip(server));
                }
            }
            Some("search") => {
                resolver.search = words.take(MAX_RESOLV_ENTRIES).map(clip).collect();
            }
            Some("domain") => {
                resolver.search = words.next().map(clip).into_iter().collect();
            }
            _ => {}
        }
    }
    resolver
}

/// Route flags from `<linux/route.h>` / `<linux/ipv6_route.h>`.
const RTF_UP: u32 = 0x0001;
const RTF_REJECT: u32 = 0x0200;

/// Default routes (destination and mask 0, up) from /proc/net/route, lowest metric first.
/// Addresses there are `%08X` of the network-order u32, i.e. native byte order.
pub(crate) fn parse_ipv4_default_routes(text: &str) -> Vec<Route> {
    let mut routes: Vec<(u32, Route)> = Vec::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().take(8).collect();
        let [iface, dest, gateway, flags, _refcnt, _use, metric, mask] = fields.as_slice() else {
            continue;
        };
        let hex = |s: &str| u32::from_str_radix(s, 16).ok();
        let (Some(dest), Some(gateway), Some(flags), Some(mask)) =
            (hex(dest), hex(gateway), hex(flags), hex(mask))
        else {
            continue;
        };
        if dest != 0 || mask != 0 || flags & (RTF_UP | RTF_REJECT) != RTF_UP {
            continue;
        }
        let gateway = if gateway == 0 {
            String::new()
        } else {
            Ipv4Addr::from(gateway.to_ne_bytes()).to_string()
        };
        let metric = metric.parse().unwrap_or(u32::MAX);
        routes.push((metric, route(iface, gateway, "ipv4")));
        if routes.len() >= MAX_DEFAULT_ROUTES {
            break;
        }
    }
    routes.sort_by_key(|(metric, _)| *metric);
    routes.into_iter().map(|(_, r)| r).collect()
}

/// Default routes (`::/0`, up, not a reject route) from /proc/net/ipv6_route, lowest metric
/// first. Addresses there are 32 hex digits in network order.
pub(crate) fn parse_ipv6_default_routes(text: &str) -> Vec<Route> {
    let mut routes: Vec<(u32, Route)> = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().take(10).collect();
        let [
            dest,
            dest_len,
            _src,
            _src_len,
            next_hop,
            metric,
            _refcnt,
            _use,
            flags,
            iface,
        ] = fields.as_slice()
        else {
            continue;
        };
        let (Ok(dest), Ok(dest_len), Ok(next_hop), Ok(metric), Ok(flags)) = (
            u128::from_str_radix(dest, 16),
            u8::from_str_radix(dest_len, 16),
            u128::from_str_radix(next_hop, 16),
            u32::from_str_radix(metric, 16),
            u32::from_str_radix(flags, 16),
        ) else {
            continue;
        };
        if dest != 0 || dest_len != 0 || flags & (RTF_UP | RTF_REJECT) != RTF_UP {
            continue;
        }
        let gateway = if next_hop == 0 {
            String::new()
        } else {
            Ipv6Addr::from(next_hop).to_string()
        };
        routes.push((metric, route(iface, gateway, "ipv6")));
        if routes.len() >= MAX_DEFAULT_ROUTES {
            break;
        }
    }
    routes.sort_by_key(|(metric, _)| *metric);
    routes.into_iter().map(|(_, r)| r).collect()
}

fn route(interface: &str, gateway: String, family: &str) -> Route {
    Route {
        interface: clip(interface),
        gateway,
        family: family.to_owned(),
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
    fn resolv_conf_nameservers_and_last_search_wins() {
        let text = "# generated\nnameserver 10.255.255.53\nnameserver fd00::53 # v6\n\
                    domain corp.example\nsearch a.example b.example\n;nameserver 1.1.1.1\n\
                    options ndots:2\nnameserver\n";
        let resolver = parse_resolv_conf(text);
        assert_eq!(resolver.nameservers, ["10.255.255.53", "fd00::53"]);
        assert_eq!(resolver.search, ["a.example", "b.example"]);
        assert_eq!(parse_resolv_conf("search x\ndomain y\n").search, ["y"]);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn ipv4_default_route_from_proc_hex() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
                    eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
                    eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    tun0\t00000000\t00000000\t0001\t0\t0\t50\t00000000\t0\t0\t0\n\
                    bad line\n";
        let routes = parse_ipv4_default_routes(text);
        let summary: Vec<(&str, &str)> = routes
            .iter()
            .map(|r| (r.interface.as_str(), r.gateway.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("tun0", ""),
                ("eth0", "192.0.2.1"),
                ("wlan0", "192.168.1.1")
            ]
        );
        assert!(routes.iter().all(|r| r.family == "ipv4"));
    }

    #[test]
    fn ipv6_default_route_skips_reject_and_non_default() {
        let text = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 fd000000000000000000000000000001 00000400 00000002 00000000 00000003     eth0
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo
00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 00000010 00000001 00000000 00000001     wg0
zz
";
        let routes = parse_ipv6_default_routes(text);
        assert_eq!(routes.len(), 2);
        assert_eq!(routes.first().map(|r| r.interface.as_str()), Some("wg0"));
        assert_eq!(routes.first().map(|r| r.gateway.as_str()), Some(""));
        assert_eq!(routes.get(1).map(|r| r.gateway.as_str()), Some("fd00::1"));
        assert!(routes.iter().all(|r| r.family == "ipv6"));
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let long = "é".repeat(MAX_TEXT_BYTES);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_TEXT_BYTES);
        assert!(clipped.chars().all(|c| c == 'é'));
    }

    #[test]
    fn bounded_read_stops_at_the_limit() {
        let text = read_bounded("/proc/self/status", 16).unwrap_or_default();
        assert!(text.len() <= 16);
        assert!(read_bounded("/nonexistent/deskside", 16).is_err());
    }
}
