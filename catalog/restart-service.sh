#!/bin/sh
# restart-service: restart one allow-listed service through systemd, after checking that
# systemd really runs this machine (systemctl may exist without it).
set -eu

service="$DESKSIDE_PARAM_SERVICE"
dry_run="$DESKSIDE_PARAM_DRY_RUN"

if ! command -v systemctl >/dev/null 2>&1; then
    echo "error: systemctl is not installed; this machine does not use systemd, so $service cannot be restarted this way" >&2
    exit 3
fi
# The same test sd_booted() uses: systemd creates this directory when it is PID 1.
if [ ! -d /run/systemd/system ]; then
    init="$(cat /proc/1/comm 2>/dev/null || echo unknown)"
    echo "error: systemd is not running here (PID 1 is $init); cannot restart $service with systemctl" >&2
    exit 3
fi

# Unit names differ between distributions.
case "$service" in
    sshd) candidates="sshd ssh" ;;
    chrony) candidates="chronyd chrony" ;;
    *) candidates="$service" ;;
esac
unit=""
for c in $candidates; do
    state="$(systemctl show -p LoadState --value "$c.service" 2>/dev/null || true)"
    if [ "$state" = "loaded" ]; then
        unit="$c.service"
        break
    fi
done
if [ -z "$unit" ]; then
    echo "error: $service is not installed here (no unit named: $candidates)" >&2
    exit 3
fi

before="$(systemctl is-active "$unit" 2>/dev/null || true)"
echo "$unit is currently: $before"
if [ "$dry_run" = "true" ]; then
    echo "Dry run: would run: systemctl restart $unit"
    systemctl status --no-pager --lines=5 "$unit" 2>&1 || true
    exit 0
fi

echo "Restarting $unit"
if ! systemctl restart "$unit"; then
    echo "error: systemctl restart $unit failed; its recent log follows" >&2
    systemctl status --no-pager --lines=20 "$unit" >&2 2>&1 || true
    exit 1
fi
sleep 2
after="$(systemctl is-active "$unit" 2>/dev/null || true)"
systemctl status --no-pager --lines=10 "$unit" 2>&1 || true
if [ "$after" != "active" ]; then
    echo "error: $unit is $after after the restart, not active" >&2
    exit 1
fi
echo "Done: $unit restarted and is active."
