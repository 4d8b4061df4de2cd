#!/bin/sh
# resync-clock: report the time-sync state and step the clock with whichever NTP client the
# machine has, using only its configured servers. Never assumes systemd is PID 1.
set -eu

dry_run="$DESKSIDE_PARAM_DRY_RUN"

pids_of() {
    for comm in /proc/[0-9]*/comm; do
        if [ "$(cat "$comm" 2>/dev/null || true)" = "$1" ]; then
            pid="${comm#/proc/}"
            echo "${pid%/comm}"
        fi
    done
}

# run CMD...: print it, then run it unless this is a dry run.
run() {
    if [ "$dry_run" = "true" ]; then
        echo "Dry run: would run: $*"
        return 0
    fi
    echo "Running: $*"
    "$@"
}

echo "Clock now: $(date -u '+%Y-%m-%d %H:%M:%S UTC') (local: $(date '+%H:%M:%S %Z'))"
systemd_up=no
[ -d /run/systemd/system ] && systemd_up=yes

# chrony: the usual client on Fedora/RHEL and many Ubuntu machines.
if [ -n "$(pids_of chronyd)" ] && command -v chronyc >/dev/null 2>&1; then
    echo "Time sync: chronyd is running"
    chronyc tracking 2>&1 || true
    chronyc -n sources 2>&1 || true
    run chronyc -a makestep
    [ "$dry_run" = "true" ] || { sleep 1; chronyc tracking 2>&1 | grep -E 'System time|Leap status' || true; }
    echo "Clock now: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    exit 0
fi

# systemd-timesyncd (command name truncated to 15 characters), only with systemd as init.
if [ "$systemd_up" = "yes" ] && command -v timedatectl >/dev/null 2>&1; then
    if timedatectl show -p NTP --value >/dev/null 2>&1; then
        echo "Time sync: systemd-timesyncd via timedatectl"
        timedatectl status 2>&1 || true
        timedatectl timesync-status 2>/dev/null || true
        run timedatectl set-ntp true
        if [ -n "$(pids_of systemd-timesyn)" ] || [ "$dry_run" = "true" ]; then
            run systemctl restart systemd-timesyncd.service
        fi
        if [ "$dry_run" != "true" ]; then
            sleep 5
            timedatectl status 2>&1 | grep -E 'synchronized|NTP service' || true
        fi
        echo "Clock now: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
        exit 0
    fi
fi

# ntpdate with the servers already configured for ntpd/ntpsec (never a server of our own).
if command -v ntpdate >/dev/null 2>&1; then
    servers=""
    for conf in /etc/ntp.conf /etc/ntpsec/ntp.conf; do
        if [ -r "$conf" ]; then
            servers="$servers $(awk '$1 == "server" || $1 == "pool" { print $2 }' "$conf" | tr '\n' ' ')"
        fi
    done
    servers="$(echo "$servers" | tr -s ' ' | sed 's/^ //; s/ $//')"
    if [ -z "$servers" ]; then
        echo "error: ntpdate is installed but no server is configured in /etc/ntp.conf or /etc/ntpsec/ntp.conf" >&2
        exit 3
    fi
    if [ -n "$(pids_of ntpd)" ]; then
        echo "error: ntpd is running and keeps the clock itself; ntpdate cannot step it while ntpd holds the port. Restart ntpd instead." >&2
        exit 1
    fi
    echo "Time sync: ntpdate with the configured servers: $servers"
    # Server names come from the local config; each is passed as one argument.
    # shellcheck disable=SC2086
    run ntpdate -u $servers
    echo "Clock now: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    exit 0
fi

echo "error: no time sync client is available here (chronyd is not running, systemd-timesyncd needs systemd as init (running: $systemd_up), ntpdate is not installed); cannot resync the clock" >&2
exit 3
