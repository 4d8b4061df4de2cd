#!/bin/sh
# reset-network: bounce one interface through the network manager that owns it, so it
# gets a fresh DHCP lease. Never assumes systemd is PID 1; never touches other interfaces.
set -eu

iface="$DESKSIDE_PARAM_INTERFACE"
dry_run="$DESKSIDE_PARAM_DRY_RUN"

if ! command -v ip >/dev/null 2>&1; then
    echo "error: ip (iproute2) is not installed; cannot inspect network interfaces" >&2
    exit 3
fi

pids_of() {
    for comm in /proc/[0-9]*/comm; do
        if [ "$(cat "$comm" 2>/dev/null || true)" = "$1" ]; then
            pid="${comm#/proc/}"
            echo "${pid%/comm}"
        fi
    done
}

run() {
    if [ "$dry_run" = "true" ]; then
        echo "Dry run: would run: $*"
        return 0
    fi
    echo "Running: $*"
    "$@"
}

if [ "$iface" = "auto" ]; then
    iface="$(ip route show default 2>/dev/null | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") { print $(i + 1); exit } }')"
    if [ -z "$iface" ]; then
        echo "error: there is no default route, so no interface to pick automatically; give interface=NAME (see ip link)" >&2
        ip -brief link >&2 2>&1 || true
        exit 1
    fi
    echo "Interface: $iface (carries the default route)"
fi
if [ ! -e "/sys/class/net/$iface" ]; then
    echo "error: there is no network interface named $iface; these exist:" >&2
    ip -brief link >&2 2>&1 || true
    exit 1
fi
if [ "$iface" = "lo" ]; then
    echo "error: refusing to reset the loopback interface lo; it never needs it" >&2
    exit 1
fi

echo "Before:"
ip -brief addr show dev "$iface" 2>&1 || true
ip route show dev "$iface" 2>&1 | sed 's/^/  route: /' || true

if [ -n "$(pids_of NetworkManager)" ] && command -v nmcli >/dev/null 2>&1; then
    echo "Network manager: NetworkManager"
    nmcli -t -f GENERAL.STATE,GENERAL.CONNECTION device show "$iface" 2>&1 || true
    run nmcli device disconnect "$iface"
    run nmcli device connect "$iface"
elif [ -n "$(pids_of systemd-network)" ] && command -v networkctl >/dev/null 2>&1; then
    # Command name truncated to 15 characters: systemd-networkd -> systemd-network.
    echo "Network manager: systemd-networkd"
    networkctl status --no-pager "$iface" 2>&1 | head -n 12 || true
    run networkctl reconfigure "$iface"
elif command -v dhclient >/dev/null 2>&1; then
    echo "Network manager: none; using dhclient"
    run dhclient -r "$iface"
    run dhclient -1 "$iface"
elif command -v dhcpcd >/dev/null 2>&1; then
    echo "Network manager: none; using dhcpcd"
    run dhcpcd -n "$iface"
else
    echo "error: no tool to reset $iface here: NetworkManager and systemd-networkd are not running, dhclient and dhcpcd are not installed" >&2
    exit 3
fi

if [ "$dry_run" = "true" ]; then
    exit 0
fi
sleep 3
echo "After:"
ip -brief addr show dev "$iface" 2>&1 || true
ip route show dev "$iface" 2>&1 | sed 's/^/  route: /' || true
if ip -4 addr show dev "$iface" | grep -q 'inet ' || ip -6 addr show dev "$iface" scope global | grep -q 'inet6 '; then
    echo "Done: $iface has an address again."
else
    echo "error: $iface has no address after the reset; check the cable/Wi-Fi and the DHCP server" >&2
    exit 1
fi
