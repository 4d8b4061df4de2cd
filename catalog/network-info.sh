#!/bin/sh
# network-info: interfaces, addresses, routes, DNS configuration and the network manager
# in charge, from local state only. Read-only; sends nothing over the network.
set -eu

if ! command -v ip >/dev/null 2>&1; then
    echo "error: ip (iproute2) is not installed; cannot show the network setup" >&2
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

echo "== Host =="
echo "Name: $(cat /proc/sys/kernel/hostname 2>/dev/null || echo unknown)"
echo
echo "== Interfaces and addresses =="
ip -brief addr show
echo
echo "== Routes =="
ip route show
ip -6 route show 2>/dev/null | grep -v '^fe80' || true
default="$(ip route show default 2>/dev/null || true)"
if [ -z "$default" ]; then
    echo "Note: there is no IPv4 default route; only local networks are reachable."
fi
echo
echo "== DNS =="
if [ -L /etc/resolv.conf ]; then
    echo "/etc/resolv.conf -> $(readlink /etc/resolv.conf)"
fi
if [ -r /etc/resolv.conf ]; then
    grep -E '^(nameserver|search|domain|options)' /etc/resolv.conf || echo "(no nameserver lines in /etc/resolv.conf)"
else
    echo "(no /etc/resolv.conf)"
fi
if [ -n "$(pids_of systemd-resolve)" ] && command -v resolvectl >/dev/null 2>&1; then
    echo "systemd-resolved per-link DNS:"
    resolvectl dns 2>&1 || true
fi
echo
echo "== Network manager =="
found=""
for name in NetworkManager systemd-network connmand wicd dhclient dhcpcd; do
    if [ -n "$(pids_of "$name")" ]; then
        found="$found $name"
    fi
done
if [ -n "$found" ]; then
    echo "Running:$found"
else
    echo "None running (addresses are static or set up by something else)"
fi
if [ -n "$(pids_of NetworkManager)" ] && command -v nmcli >/dev/null 2>&1; then
    nmcli -t -f DEVICE,TYPE,STATE,CONNECTION device 2>&1 || true
fi
