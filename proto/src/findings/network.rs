//! Network rules: no adapter connected, no default route, no DNS server, and adapters
//! counting errors. Each stays quiet when the probe that fills its data failed.

use super::fmt::{fmt_count, list, plural};
use super::{finding, network_collected, probe_failed};
use crate::msg::diag::{Finding, Interface, Severity, Snapshot, probe_names};

fn is_loopback(iface: &Interface) -> bool {
    iface.name == "lo"
}

/// Enabled and with a link: `unknown` is normal for tunnels and some virtual NICs.
fn is_connected(iface: &Interface) -> bool {
    iface.up
        && !matches!(
            iface.oper_state.as_str(),
            "down" | "lowerlayerdown" | "notpresent" | "dormant"
        )
}

pub(super) fn no_interface_up(s: &Snapshot, out: &mut Vec<Finding>) {
    if !network_collected(s) {
        return;
    }
    let others: Vec<&Interface> = s
        .network
        .interfaces
        .iter()
        .filter(|i| !is_loopback(i))
        .collect();
    if others.iter().any(|i| is_connected(i)) {
        return;
    }
    let message = if others.is_empty() {
        "no network connection: no network adapter was found besides loopback".to_owned()
    } else {
        let states: Vec<String> = others
            .iter()
            .map(|i| {
                let state = if !i.up {
                    "disabled"
                } else if i.oper_state.is_empty() {
                    "no link"
                } else {
                    i.oper_state.as_str()
                };
                format!("{} {state}", i.name)
            })
            .collect();
        format!(
            "no network connection: no network adapter is up ({}); check the cable, \
             Wi-Fi or that networking is switched on",
            list(&states)
        )
    };
    out.push(finding(
        Severity::Critical,
        "network.no_interface_up",
        message,
    ));
}

pub(super) fn no_default_route(s: &Snapshot, out: &mut Vec<Finding>) {
    if network_collected(s)
        && !probe_failed(s, probe_names::ROUTES)
        && s.network.default_routes.is_empty()
    {
        out.push(finding(
            Severity::Critical,
            "network.no_default_route",
            "no default route: this machine cannot reach anything outside its local \
             network (no internet, no company servers elsewhere)"
                .to_owned(),
        ));
    }
}

pub(super) fn no_dns_resolver(s: &Snapshot, out: &mut Vec<Finding>) {
    if network_collected(s)
        && !probe_failed(s, probe_names::DNS)
        && s.network.dns_resolvers.is_empty()
    {
        out.push(finding(
            Severity::Critical,
            "network.no_dns_resolver",
            "no DNS server is configured: names such as websites and servers cannot be \
             looked up, even if the network works"
                .to_owned(),
        ));
    }
}

pub(super) fn interface_errors(s: &Snapshot, out: &mut Vec<Finding>) {
    if probe_failed(s, probe_names::INTERFACES) {
        return;
    }
    for iface in &s.network.interfaces {
        if !iface.up || is_loopback(iface) || (iface.rx_errors == 0 && iface.tx_errors == 0) {
            continue;
        }
        let counts = match (iface.rx_errors, iface.tx_errors) {
            (rx, 0) => format!(
                "{} receive {}",
                fmt_count(rx),
                plural(rx, "error", "errors")
            ),
            (0, tx) => format!(
                "{} transmit {}",
                fmt_count(tx),
                plural(tx, "error", "errors")
            ),
            (rx, tx) => format!(
                "{} receive and {} transmit errors",
                fmt_count(rx),
                fmt_count(tx)
            ),
        };
        out.push(finding(
            Severity::Warning,
            "network.interface_errors",
            format!(
                "network adapter {} has {counts} since start-up; a bad cable, port or \
                 driver is the usual cause",
                iface.name
            ),
        ));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use crate::findings::evaluate;
    use crate::findings::fixture::{NONE, fail_probe, healthy, iface, message, severities};
    use crate::msg::diag::{Interface, Network, Severity, probe_names};

    use Severity::{Critical, Info, Warning};

    #[test]
    fn network_no_default_route_is_critical() {
        let mut s = healthy();
        s.network.default_routes.clear();
        assert_eq!(severities(&s, "network.no_default_route"), [Critical]);
    }

    #[test]
    fn network_no_dns_resolver_is_critical() {
        let mut s = healthy();
        s.network.dns_resolvers.clear();
        assert_eq!(severities(&s, "network.no_dns_resolver"), [Critical]);
    }

    #[test]
    fn network_no_interface_up_when_only_loopback_is_up() {
        let mut s = healthy();
        s.network.interfaces[1].oper_state = "down".to_owned();
        s.network.interfaces.push(Interface {
            up: false,
            ..iface("wlan0", "down")
        });
        assert_eq!(severities(&s, "network.no_interface_up"), [Critical]);
        assert!(message(&s, "network.no_interface_up").contains("eth0 down, wlan0 disabled"));
    }

    #[test]
    fn network_no_interface_up_accepts_unknown_oper_state() {
        let mut s = healthy();
        s.network.interfaces[1] = iface("wg0", "unknown");
        assert_eq!(severities(&s, "network.no_interface_up"), NONE);
        s.network.interfaces.truncate(1);
        assert_eq!(severities(&s, "network.no_interface_up"), [Critical]);
    }

    #[test]
    fn network_rules_skip_a_failed_interfaces_probe() {
        let mut s = healthy();
        s.network = Network::default();
        assert_eq!(evaluate(&s), Vec::new());
        s.network.interfaces.push(iface("lo", "unknown"));
        fail_probe(&mut s, probe_names::INTERFACES);
        let codes: Vec<String> = evaluate(&s).into_iter().map(|f| f.code).collect();
        assert_eq!(codes, ["probes.failed"]);
    }

    #[test]
    fn network_no_interface_up_skips_a_failed_interfaces_probe() {
        let mut s = healthy();
        s.network.interfaces[1].oper_state = "down".to_owned();
        assert_eq!(severities(&s, "network.no_interface_up"), [Critical]);
        fail_probe(&mut s, probe_names::INTERFACES);
        assert_eq!(severities(&s, "network.no_interface_up"), NONE);
        assert_eq!(severities(&s, "probes.failed"), [Info]);
    }

    #[test]
    fn network_no_default_route_skips_a_failed_routes_probe() {
        let mut s = healthy();
        s.network.default_routes.clear();
        fail_probe(&mut s, probe_names::ROUTES);
        assert_eq!(severities(&s, "network.no_default_route"), NONE);
        assert_eq!(severities(&s, "probes.failed"), [Info]);
        // Another probe failing does not hide a missing route.
        let mut s = healthy();
        s.network.default_routes.clear();
        fail_probe(&mut s, probe_names::DNS);
        assert_eq!(severities(&s, "network.no_default_route"), [Critical]);
    }

    #[test]
    fn network_no_dns_resolver_skips_a_failed_dns_probe() {
        let mut s = healthy();
        s.network.dns_resolvers.clear();
        fail_probe(&mut s, probe_names::DNS);
        assert_eq!(severities(&s, "network.no_dns_resolver"), NONE);
        assert_eq!(severities(&s, "probes.failed"), [Info]);
        // Another probe failing does not hide a missing resolver.
        let mut s = healthy();
        s.network.dns_resolvers.clear();
        fail_probe(&mut s, probe_names::ROUTES);
        assert_eq!(severities(&s, "network.no_dns_resolver"), [Critical]);
    }

    #[test]
    fn network_interface_errors_counts_errors_on_up_interfaces() {
        let mut s = healthy();
        s.network.interfaces[1].rx_errors = 1_200;
        s.network.interfaces[1].tx_errors = 3;
        assert_eq!(severities(&s, "network.interface_errors"), [Warning]);
        assert!(
            message(&s, "network.interface_errors")
                .contains("eth0 has 1,200 receive and 3 transmit errors")
        );
        s.network.interfaces[1].up = false;
        assert_eq!(severities(&s, "network.interface_errors"), NONE);
    }

    #[test]
    fn network_interface_errors_single_direction() {
        let mut s = healthy();
        s.network.interfaces[1].tx_errors = 1;
        assert!(message(&s, "network.interface_errors").contains("1 transmit error since"));
    }

    #[test]
    fn network_interface_errors_skips_a_failed_interfaces_probe() {
        let mut s = healthy();
        s.network.interfaces[1].rx_errors = 1_200;
        fail_probe(&mut s, probe_names::INTERFACES);
        assert_eq!(severities(&s, "network.interface_errors"), NONE);
        assert_eq!(severities(&s, "probes.failed"), [Info]);
    }
}
