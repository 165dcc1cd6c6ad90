#!/bin/sh
# devices.sh - what bridge.sh and tunnel.sh share (kubelab sends it in
# front of each): the count of changes, errors, the root check, and how to
# ask the kernel of a network device (exists, its alias, its master).
#
# This file is rendered by minijinja before it is sent: it must not contain
# the character pairs that open minijinja blocks, expressions or comments.

CHANGED=0
changed() { CHANGED=$((CHANGED + 1)); echo "changed: $*"; }
die() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

exists() { ip link show dev "$1" >/dev/null 2>&1; }
alias_of() { a=; read -r a 2>/dev/null < "/sys/class/net/$1/ifalias" || true; echo "$a"; }
master_of() { basename "$(readlink "/sys/class/net/$1/master" 2>/dev/null || echo none)"; }
