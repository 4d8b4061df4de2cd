#!/usr/bin/env bash
# Installs what `deskside-bench all` compares Deskside against: OpenSSH (a private sshd
# on loopback, ssh, scp), inxi and sos; Node.js and MeshCentral 1.1.55 from npm (its
# server and the meshagent its package ships, run on loopback); the musl toolchain the agent is built with as it
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
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
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
# MeshCentral, pinned, into a cache the benchmark reads (bench/src/bin/deskside-bench/
# meshcentral.rs): the run itself never downloads. Installed into a fresh directory and
# moved into place, so that an interrupted install leaves nothing half there.
meshcentral_version=1.1.55
meshcentral_dir=/var/cache/deskside-bench/meshcentral-$meshcentral_version
meshcentral_manifest=$meshcentral_dir/node_modules/meshcentral/package.json
if ! grep -q "\"version\": \"$meshcentral_version\"" "$meshcentral_manifest" 2>/dev/null; then
    echo "bench/setup.sh: installing MeshCentral $meshcentral_version from npm into $meshcentral_dir"
    $sudo mkdir -p "$(dirname "$meshcentral_dir")"
    staging=$($sudo mktemp -d "$meshcentral_dir.XXXXXX")
    $sudo npm install "meshcentral@$meshcentral_version" --prefix "$staging" \
        --no-audit --no-fund --no-update-notifier --loglevel=error
    $sudo chmod 755 "$staging"
    $sudo rm -rf "$meshcentral_dir"
    $sudo mv "$staging" "$meshcentral_dir"
fi

echo "bench/setup.sh: ready"
