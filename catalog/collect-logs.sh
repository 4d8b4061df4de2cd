#!/bin/sh
# collect-logs: the latest lines of the system and kernel logs, from whichever source this
# machine has. Read-only.
set -eu

lines="$DESKSIDE_PARAM_LINES"
source="$DESKSIDE_PARAM_SOURCE"
priority="$DESKSIDE_PARAM_PRIORITY"
found=0

system_log() {
    echo "== system log (last $lines lines) =="
    if command -v journalctl >/dev/null 2>&1; then
        out="$(journalctl --no-pager -q -n "$lines" -p "$priority" 2>/dev/null || true)"
        if [ -n "$out" ] && [ "$out" != "-- No entries --" ]; then
            echo "(from the systemd journal, priority $priority and above)"
            printf '%s\n' "$out"
            found=$((found + 1))
            return 0
        fi
        echo "(the systemd journal has no entries here; trying log files)"
    fi
    for file in /var/log/syslog /var/log/messages; do
        if [ -r "$file" ] && [ -s "$file" ]; then
            echo "(from $file)"
            tail -n "$lines" "$file"
            found=$((found + 1))
            return 0
        fi
    done
    echo "(no system log found: no journal entries, no /var/log/syslog, no /var/log/messages)"
}

kernel_log() {
    echo "== kernel log (last $lines lines) =="
    if command -v dmesg >/dev/null 2>&1 && out="$(dmesg 2>/dev/null)" && [ -n "$out" ]; then
        echo "(from dmesg)"
        printf '%s\n' "$out" | tail -n "$lines"
        found=$((found + 1))
        return 0
    fi
    if [ -r /var/log/kern.log ] && [ -s /var/log/kern.log ]; then
        echo "(from /var/log/kern.log)"
        tail -n "$lines" /var/log/kern.log
        found=$((found + 1))
        return 0
    fi
    echo "(no kernel log readable: dmesg failed or is missing, no /var/log/kern.log)"
}

case "$source" in
    system) system_log ;;
    kernel) kernel_log ;;
    *)
        system_log
        echo
        kernel_log
        ;;
esac

if [ "$found" -eq 0 ]; then
    echo "error: no log could be read on this machine (source=$source)" >&2
    exit 3
fi
