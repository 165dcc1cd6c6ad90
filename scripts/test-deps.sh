#!/bin/sh
# Installs what the transport tests need on a fresh Debian 12: real sshd
# hosts in network namespaces (openssh-server, iproute2), ssh-keygen and
# ssh-agent (openssh-client), sudo for the become tests. Idempotent.
set -eu

packages="openssh-server openssh-client sudo iproute2"

missing=""
for p in $packages; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "test-deps.sh: must run as root to install:$missing" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing
fi

# sshd refuses to start without its privilege separation directory.
mkdir -p /run/sshd
