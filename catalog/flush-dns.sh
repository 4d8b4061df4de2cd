#!/bin/sh
# flush-dns: empty the cache of every local DNS cache that is running. Names of running
# programs come from /proc, so this works whether or not systemd is PID 1.
set -eu

# pids_of NAME: PIDs whose command name (/proc/PID/comm, 15 chars max) is NAME.
pids_of() {
    for comm in /proc/[0-9]*/comm; do
        if [ "$(cat "$comm" 2>/dev/null || true)" = "$1" ]; then
            pid="${comm#/proc/}"
            echo "${pid%/comm}"
        fi
    done
}

flushed=0
failed=0

# The command name is truncated to 15 characters: systemd-resolved -> systemd-resolve.
if [ -n "$(pids_of systemd-resolve)" ]; then
    echo "systemd-resolved is running; flushing its cache"
    if command -v resolvectl >/dev/null 2>&1 && resolvectl flush-caches; then
        flushed=$((flushed + 1))
    elif command -v systemd-resolve >/dev/null 2>&1 && systemd-resolve --flush-caches; then
        flushed=$((flushed + 1))
    else
        echo "error: could not flush systemd-resolved (resolvectl flush-caches failed or is missing)" >&2
        failed=$((failed + 1))
    fi
fi

if [ -n "$(pids_of nscd)" ]; then
    echo "nscd is running; invalidating its hosts cache"
    if command -v nscd >/dev/null 2>&1 && nscd -i hosts; then
        flushed=$((flushed + 1))
    else
        echo "error: could not flush nscd (nscd -i hosts failed or nscd is not on PATH)" >&2
        failed=$((failed + 1))
    fi
fi

dnsmasq_pids="$(pids_of dnsmasq)"
if [ -n "$dnsmasq_pids" ]; then
    for pid in $dnsmasq_pids; do
        echo "dnsmasq is running (PID $pid); sending SIGHUP to clear its cache"
        if kill -s HUP "$pid"; then
            flushed=$((flushed + 1))
        else
            echo "error: could not signal dnsmasq PID $pid" >&2
            failed=$((failed + 1))
        fi
    done
fi

if [ "$failed" -gt 0 ]; then
    echo "error: $failed DNS cache(s) could not be flushed" >&2
    exit 1
fi
if [ "$flushed" -eq 0 ]; then
    echo "No DNS cache is running here (systemd-resolved, nscd and dnsmasq are not running); nothing to flush." >&2
    echo "Lookups go straight to the servers in /etc/resolv.conf:" >&2
    grep '^nameserver' /etc/resolv.conf >&2 2>/dev/null || echo "  (no nameserver lines in /etc/resolv.conf)" >&2
    exit 3
fi
echo "Done: flushed $flushed DNS cache(s)."
