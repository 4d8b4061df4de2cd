#!/bin/sh
# repair-packages: dpkg --configure -a and apt-get -f install, non-interactively, keeping
# existing configuration files. The dry run audits and simulates only.
set -eu

dry_run="$DESKSIDE_PARAM_DRY_RUN"
allow_download="$DESKSIDE_PARAM_ALLOW_DOWNLOAD"
export DEBIAN_FRONTEND=noninteractive

for tool in dpkg apt-get; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "error: $tool is not installed; this repair is for Debian/Ubuntu package systems only" >&2
        exit 3
    fi
done

# pids_of NAME: PIDs whose command name (/proc/PID/comm) is NAME.
pids_of() {
    for comm in /proc/[0-9]*/comm; do
        if [ "$(cat "$comm" 2>/dev/null || true)" = "$1" ]; then
            pid="${comm#/proc/}"
            echo "${pid%/comm}"
        fi
    done
}

busy=""
for name in dpkg apt apt-get aptitude unattended-upgr packagekitd synaptic; do
    for pid in $(pids_of "$name"); do
        busy="$busy $name(PID $pid)"
    done
done

echo "Packages dpkg reports as broken or half-configured (dpkg --audit):"
audit="$(dpkg --audit 2>&1 || true)"
if [ -n "$audit" ]; then
    printf '%s\n' "$audit" | sed 's/^/  /'
else
    echo "  none"
fi

download_opt="--no-download"
if [ "$allow_download" = "true" ]; then
    download_opt=""
fi

if [ "$dry_run" = "true" ]; then
    echo
    echo "Dry run: would run: dpkg --configure -a"
    echo "Dry run: would run: apt-get -f install -y $download_opt (keeping existing config files)"
    echo "What apt-get -f install would do (simulation, changes nothing):"
    apt-get -s -o Debug::NoLocking=true -f install 2>&1 | sed 's/^/  /' || true
    if [ -n "$busy" ]; then
        echo "Note: another package tool is running now:$busy; a real repair would wait for it."
    fi
    exit 0
fi

if [ -n "$busy" ]; then
    echo "error: another package operation is running:$busy; wait for it to finish, then run this again" >&2
    exit 1
fi

echo
echo "Running: dpkg --configure -a"
if ! dpkg --force-confdef --force-confold --configure -a; then
    echo "error: dpkg --configure -a failed; the messages above name the package that fails" >&2
    exit 1
fi
echo "Running: apt-get -f install -y $download_opt"
# $download_opt is one fixed word or empty, so it is left unquoted on purpose.
# shellcheck disable=SC2086
if ! apt-get -f install -y $download_opt -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold; then
    echo "error: apt-get -f install failed; see above (with allow_download=false, missing packages cannot be fetched)" >&2
    exit 1
fi
echo "Checking again (dpkg --audit):"
audit="$(dpkg --audit 2>&1 || true)"
if [ -n "$audit" ]; then
    printf '%s\n' "$audit" | sed 's/^/  /'
    echo "error: packages are still broken after the repair" >&2
    exit 1
fi
echo "Done: no broken packages remain."
