#!/usr/bin/env bash
# Installs what `deskside-bench all` compares Deskside against: OpenSSH (a private sshd
# on loopback, ssh, scp), inxi and sos; the musl toolchain the agent is built with as it
# ships (musl-tools, and rustup's x86_64-unknown-linux-musl target for this user); and
# creates the dedicated ssh login the benchmark uses (`deskside-bench`, login shell
# /bin/sh, empty home) so that no shell start-up file (a .bashrc running pyenv, say) is
# counted in ssh's figures. Idempotent. Debian/Ubuntu.
set -euo pipefail

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi

missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
command -v ssh >/dev/null || missing+=(openssh-client)
command -v inxi >/dev/null || missing+=(inxi)
command -v sos >/dev/null || missing+=(sosreport)
command -v musl-gcc >/dev/null || missing+=(musl-tools)
if [ ${#missing[@]} -gt 0 ]; then
    echo "bench/setup.sh: installing ${missing[*]}"
    $sudo apt-get update -qq
    # The packaged sshd service is not needed: the benchmark starts its own sshd on a
    # free loopback port with its own host key.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

agent_target=x86_64-unknown-linux-musl
if ! command -v rustup >/dev/null; then
    echo "bench/setup.sh: no rustup for $(id -un); the user who runs the benchmark needs: rustup target add $agent_target"
elif ! rustup target list --installed | grep -qx "$agent_target"; then
    echo "bench/setup.sh: adding the $agent_target target (the agent ships static)"
    rustup target add "$agent_target"
fi

if ! id deskside-bench >/dev/null 2>&1; then
    echo "bench/setup.sh: creating the ssh login deskside-bench (shell /bin/sh, empty home)"
    $sudo useradd --system --shell /bin/sh --home-dir /var/lib/deskside-bench \
        --create-home --skel /dev/null deskside-bench
fi
# "*": no password matches, but the account is not locked (useradd's "!"), which sshd
# without PAM would refuse.
$sudo usermod --password '*' deskside-bench
echo "bench/setup.sh: ready"
