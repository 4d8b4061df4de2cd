//! Default routes (/proc/net/route, /proc/net/ipv6_route) and resolvers (resolv.conf).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use deskside_proto::msg::diag::Route;

use super::files::{SMALL_FILE_BYTES, TABLE_FILE_BYTES, read_bounded};
use crate::os::{Error, clip};

/// Resolvers and search domains kept from resolv.conf (glibc itself uses 3 and 6).
const MAX_RESOLV_ENTRIES: usize = 32;
/// Default routes kept (ECMP setups have a handful; more is a misconfiguration).
const MAX_DEFAULT_ROUTES: usize = 64;

/// Name servers and search domains from resolv.conf(5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolver {
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

/// The routes probe: IPv4 then IPv6 default routes of the main table. A machine without
/// IPv6 has no ipv6_route file; that is not an error.
pub fn default_routes() -> Result<Vec<Route>, Error> {
    let v4 = read_bounded("/proc/net/route", TABLE_FILE_BYTES)?;
    let mut routes = parse_ipv4_default_routes(&v4);
    let v6_path = "/proc/net/ipv6_route";
    if Path::new(v6_path).exists() {
        routes.extend(parse_ipv6_default_routes(&read_bounded(
            v6_path,
            TABLE_FILE_BYTES,
        )?));
    }
    Ok(routes)
}

/// The dns probe: /etc/resolv.conf. A missing file means "no resolvers configured",
/// which glibc treats as 127.0.0.1; we report it as an empty list, not an error.
pub fn resolver() -> Result<Resolver, Error> {
    match read_bounded("/etc/resolv.conf", SMALL_FILE_BYTES) {
        Ok(text) => Ok(parse_resolv_conf(&text)),
        Err(Error::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(Resolver::default())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
