#!/usr/bin/env bash
# Make this machine (a fresh Debian 12, as root or with sudo) a virthost and
# bring a lab up on it:
#   scripts/up-local.sh [LAB] [kubelab up options...]    (default labs/minimal.yaml)
# Installs the packages (scripts/deps.sh virthost, Rust via rustup when no
# cargo is on PATH), builds kubelab in release mode, then runs
# `kubelab up LAB`. Idempotent: run it again and nothing changes.
# Afterwards: target/release/kubelab status|ssh|down LAB
set -euo pipefail
cd "$(dirname "$0")/.."
lab=${1:-labs/minimal.yaml}
shift || true

bash scripts/deps.sh virthost
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
# `man kubelab`, `man kubelab-up`, ...
$SUDO target/release/kubelab man /usr/local/share/man/man1
# kubelab keeps the lab's state (inventory, ssh_config, login key) for the
# invoking user; with sudo keep it there too.
exec $SUDO env KUBELAB_STATE_DIR="${KUBELAB_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/kubelab}" \
  target/release/kubelab up "$lab" "$@"
