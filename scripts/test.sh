#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (run as root: the tests
# start sshd hosts in network namespaces and a libvirt daemon with QEMU guests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
export PATH="$HOME/.cargo/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked --all-targets
