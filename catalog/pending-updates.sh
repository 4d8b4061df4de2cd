#!/bin/sh
# pending-updates: upgradable packages from the cached package lists (no download), and
# whether the machine waits for a reboot. Read-only.
set -eu

max_list="$DESKSIDE_PARAM_MAX_LIST"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT

show() {
    count="$(grep -c . "$tmp" || true)"
    echo "Upgradable packages: $count"
    if [ "$count" -gt 0 ] && [ "$max_list" -gt 0 ]; then
        head -n "$max_list" "$tmp" | sed 's/^/  /'
        if [ "$count" -gt "$max_list" ]; then
            echo "  ... and $((count - max_list)) more"
        fi
    fi
}

if command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
    echo "Package manager: apt"
    if [ -d /var/lib/apt/lists ] && [ -n "$(ls /var/lib/apt/lists 2>/dev/null | grep -v -e '^lock$' -e '^partial$' -e '^auxfiles$' || true)" ]; then
        newest="$(ls -t /var/lib/apt/lists | grep -v -e '^lock$' -e '^partial$' -e '^auxfiles$' | head -n 1)"
        echo "Package lists last refreshed: $(date -r "/var/lib/apt/lists/$newest" '+%Y-%m-%d %H:%M %Z' 2>/dev/null || echo unknown)"
    else
        echo "Package lists have never been downloaded on this machine; nothing can be compared (an admin must run apt-get update)."
    fi
    # A simulated upgrade: "Inst NAME [OLD] (NEW SUITE [ARCH])". Simulation changes nothing.
    apt-get -s -o Debug::NoLocking=true dist-upgrade 2>/dev/null |
        awk '/^Inst / { old = $3; gsub(/[][]/, "", old); new = $4; gsub(/[(]/, "", new);
                       if (old ~ /^\(/) { old = "new"; new = $3; gsub(/[(]/, "", new) }
                       print $2 " " old " -> " new }' >"$tmp" || true
    show
    security="$(apt-get -s -o Debug::NoLocking=true dist-upgrade 2>/dev/null | grep '^Inst ' | grep -ci 'security' || true)"
    echo "Of which from a security suite: $security"
elif command -v dnf >/dev/null 2>&1; then
    echo "Package manager: dnf"
    # -C: cache only, no download. Exit 100 means "updates available".
    status=0
    dnf -C -q check-update >"$tmp" 2>/dev/null || status=$?
    if [ "$status" -ne 0 ] && [ "$status" -ne 100 ]; then
        echo "error: dnf check-update failed (exit $status); the cache may be empty (an admin must run dnf makecache)" >&2
        exit 1
    fi
    sed -i '/^$/d; /^Obsoleting/,$d' "$tmp"
    show
elif command -v zypper >/dev/null 2>&1; then
    echo "Package manager: zypper"
    zypper --non-interactive --no-refresh list-updates 2>/dev/null | awk -F'|' '/^v / { gsub(/ /, "", $3); gsub(/ /, "", $4); gsub(/ /, "", $5); print $3 " " $4 " -> " $5 }' >"$tmp" || true
    show
else
    echo "error: no supported package manager found (apt, dnf or zypper); cannot list updates" >&2
    exit 3
fi

if [ -f /var/run/reboot-required ]; then
    echo "Reboot required: yes (for: $(tr '\n' ' ' </var/run/reboot-required.pkgs 2>/dev/null || echo 'unknown packages'))"
elif command -v needs-restarting >/dev/null 2>&1 && ! needs-restarting -r >/dev/null 2>&1; then
    echo "Reboot required: yes (needs-restarting -r)"
else
    echo "Reboot required: no"
fi
