//! Network interfaces as `ip addr` shows them: links from /sys/class/net, their
//! addresses from getifaddrs.

use std::collections::HashMap;

use deskside_proto::msg::diag::Interface;

use super::files::read_line;
use super::sys;
use crate::os::Error;

const SYS_CLASS_NET: &str = "/sys/class/net";
/// Interfaces reported (a container host can have thousands of veths).
const MAX_INTERFACES: usize = 512;
/// Addresses kept per interface.
const MAX_ADDRESSES: usize = 64;
/// `IFF_UP` from `<net/if.h>`.
const IFF_UP: u64 = 0x1;

/// Network interfaces with their addresses and counters, in ifindex order like `ip addr`.
pub fn interfaces() -> Result<Vec<Interface>, Error> {
    let read_dir = |e| Error::Read {
        path: SYS_CLASS_NET.to_owned(),
        source: e,
    };
    let mut links: Vec<(u64, Interface)> = Vec::new();
    for entry in std::fs::read_dir(SYS_CLASS_NET).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() > 64 {
            continue; // not an interface name (IFNAMSIZ is 16)
        }
        let dir = entry.path();
        let number = |attr: &str| -> u64 {
            read_line(dir.join(attr))
                .ok()
                .and_then(|s| parse_number(&s))
                .unwrap_or(0)
        };
        let interface = Interface {
            mac: read_line(dir.join("address")).unwrap_or_default(),
            addresses: Vec::new(),
            up: number("flags") & IFF_UP != 0,
            oper_state: read_line(dir.join("operstate")).unwrap_or_default(),
            mtu: u32::try_from(number("mtu")).unwrap_or(u32::MAX),
            rx_bytes: number("statistics/rx_bytes"),
            tx_bytes: number("statistics/tx_bytes"),
            rx_errors: number("statistics/rx_errors"),
            tx_errors: number("statistics/tx_errors"),
            name,
        };
        links.push((number("ifindex"), interface));
        if links.len() >= MAX_INTERFACES {
            break;
        }
    }
    links.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
    let mut interfaces: Vec<Interface> = links.into_iter().map(|(_, i)| i).collect();

    let addresses = sys::interface_addresses()
        .map_err(|e| Error::system("listing interface addresses (getifaddrs)", e))?;
    let slot: HashMap<String, usize> = interfaces
        .iter()
        .enumerate()
        .map(|(i, iface)| (iface.name.clone(), i))
        .collect();
    for address in addresses {
        let Some(index) = owner(&slot, &address.name) else {
            continue;
        };
        let Some(interface) = interfaces.get_mut(index) else {
            continue;
        };
        let cidr = format!("{}/{}", address.addr, address.prefix);
        if interface.addresses.len() < MAX_ADDRESSES && !interface.addresses.contains(&cidr) {
            interface.addresses.push(cidr);
        }
    }
    Ok(interfaces)
}

/// The interface an address belongs to. getifaddrs names IPv4 addresses by their label,
/// which for legacy aliases is `eth0:1`; `ip addr` lists those under `eth0`.
fn owner(slot: &HashMap<String, usize>, name: &str) -> Option<usize> {
    slot.get(name).copied().or_else(|| {
        let (base, _) = name.split_once(':')?;
        slot.get(base).copied()
    })
}

/// sysfs numbers: decimal, or hex with `0x` (`flags`).
fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_labels_map_to_their_interface() {
        let slot: HashMap<String, usize> = [("lo".to_owned(), 0), ("eth0".to_owned(), 1)].into();
        assert_eq!(owner(&slot, "eth0"), Some(1));
        assert_eq!(owner(&slot, "eth0:1"), Some(1));
        assert_eq!(owner(&slot, "wlan0"), None);
    }

    #[test]
    fn sysfs_numbers() {
        assert_eq!(parse_number("0x1003"), Some(0x1003));
        assert_eq!(parse_number("1500"), Some(1500));
        assert_eq!(parse_number("0xzz"), None);
    }

    #[test]
    fn loopback_is_listed_with_its_address() {
        let interfaces = interfaces().unwrap_or_default();
        let lo = interfaces.iter().find(|i| i.name == "lo");
        assert!(lo.is_some_and(|lo| lo.up && lo.addresses.iter().any(|a| a == "127.0.0.1/8")));
    }
}
