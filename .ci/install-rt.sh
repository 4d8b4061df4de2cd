#!/usr/bin/env bash
# Installs Debian's Request Tracker 5 (SQLite + standalone server) for the RT adapter
# tests (tests/tests/rt.rs). Root, no prompts, idempotent: exits at once when
# rt-server is already there. The tests initialise their own instance in a temp dir;
# nothing here configures or starts a system-wide RT.
set -euo pipefail

RT_SERVER=/usr/share/request-tracker5/libexec/rt-server
if [ -x "$RT_SERVER" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "error: installing Request Tracker needs root (apt-get); run: sudo $0" >&2
    exit 1
fi

packages=(request-tracker5 rt5-db-sqlite rt5-standalone w3m)

# No dbconfig-common prompt: the tests create their own SQLite database.
echo "request-tracker5 request-tracker5/dbconfig-install boolean false" | debconf-set-selections

# The package's postinst leaves a temp file holding a default password in $TMPDIR:
# give it a scratch dir of its own and delete that afterwards.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

install() {
    TMPDIR="$scratch" DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${packages[@]}"
}
if ! apt-cache show request-tracker5 >/dev/null 2>&1; then
    apt-get update -qq
fi
# A stale package list names archives the mirror no longer has: refresh it once.
if ! install; then
    echo "apt-get install failed; refreshing the package lists and trying again" >&2
    apt-get update -qq
    install
fi

if [ ! -x "$RT_SERVER" ]; then
    echo "error: $RT_SERVER is missing after installing ${packages[*]}" >&2
    exit 1
fi
echo "Request Tracker installed: $RT_SERVER"
