#!/bin/sh
# release.sh - after `kubelab down`: give back what kubelab changed on the
# virthost once no lab uses it any more.
#
# Runs as root on the virthost. Does nothing while libvirt still runs a
# network or a VM (of any lab, or not kubelab's at all) or while another
# lab's run holds its lock. Otherwise, in order:
#   * libvirtd and virtlogd, when prepare.sh started them by hand (no
#     systemd; noted in $KUBELAB_VIRTHOST_STATE/libvirtd.started), are
#     stopped; a daemon that systemd runs, or that was there before, stays;
#   * libvirt's firewall chains (LIBVIRT_INP, _OUT, _FWI, _FWO, _FWX in
#     filter, LIBVIRT_PRT in nat and mangle; IPv4 and IPv6) and the jumps to
#     them are removed when they are empty AND libvirtd does not run: a running
#     libvirtd sets them up once per start and would fail to start networks
#     without them;
#   * the forwarding sysctls get back the values noted before the first
#     libvirt network ran ($KUBELAB_VIRTHOST_STATE/forwarding).
# Idempotent. Output: "changed: WHAT" and "info: ..." lines, or one line
# "kept: WHY" when it leaves the virthost as it is; last line "changed=N".
#
# Parameters (environment variables):
#   KUBELAB_VIRTHOST_STATE=DIR  what prepare.sh noted (required)
#   KUBELAB_STORAGE_DIR=DIR     where the labs' locks are (required)
#   KUBELAB_OWN_LOCK=PATH       the calling lab's lock (held by the caller)
#   KUBELAB_LIBVIRT_URI=qemu:///system
#   KUBELAB_LIBVIRT_RUNNING="NETS DOMS"  what libvirt runs, when the caller's
#                               own connection just asked (no virsh needed)
#
# This file is rendered by minijinja before it is sent: it must not contain
# the character pairs that open minijinja blocks, expressions or comments.
set -eu

STATE=${KUBELAB_VIRTHOST_STATE:?}
STORAGE=${KUBELAB_STORAGE_DIR:?}
OWN_LOCK=${KUBELAB_OWN_LOCK:-}
URI=${KUBELAB_LIBVIRT_URI:-qemu:///system}

CHANGED=0
changed() { CHANGED=$((CHANGED + 1)); echo "changed: $*"; }
info() { echo "info: $*"; }
done_here() { echo "kept: $*"; echo "changed=$CHANGED"; exit 0; }

[ "$(id -u)" = 0 ] || { echo "error: must run as root" >&2; echo "changed=0"; exit 1; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

RUNNING=${KUBELAB_LIBVIRT_RUNNING:-}
if [ -n "$RUNNING" ]; then
  set -- $RUNNING
  nets=$1 doms=$2
elif virsh -c "$URI" version >/dev/null 2>&1; then
  nets=$(virsh -q -c "$URI" net-list --name 2>/dev/null | grep -c . || true)
  doms=$(virsh -q -c "$URI" list --name 2>/dev/null | grep -c . || true)
else
  nets=0 doms=0
fi
if [ "$nets" -gt 0 ] || [ "$doms" -gt 0 ]; then
  done_here "libvirt still runs $nets network(s) and $doms VM(s)"
fi

# another lab in the middle of up or down
for l in "$STORAGE"/*.lock; do
  [ -f "$l" ] || continue
  [ "$l" = "$OWN_LOCK" ] && continue
  if command -v flock >/dev/null 2>&1 && ! flock -n "$l" true; then
    done_here "another lab's run holds $l"
  fi
done
for d in "$STORAGE"/*.lock.d; do
  [ -d "$d" ] || continue
  [ "$d" = "$OWN_LOCK.d" ] && continue
  done_here "another lab's run holds $d"
done

stop_daemon() { # NAME PIDFILE
  pid_alive "$2" || return 0
  kill "$(cat "$2")" 2>/dev/null || true
  i=0
  while pid_alive "$2"; do
    i=$((i + 1))
    [ "$i" -le 100 ] || { echo "error: $1 did not stop within 20s" >&2; echo "changed=$CHANGED"; exit 1; }
    sleep 0.2
  done
  changed "$1 stopped (kubelab had started it)"
}
if [ -f "$STATE/libvirtd.started" ]; then
  stop_daemon libvirtd /run/libvirtd.pid
  stop_daemon virtlogd /run/virtlogd.pid
  rm -f "$STATE/libvirtd.started"
fi

# remove_chain TOOL TABLE PARENT CHAIN: the jumps from PARENT and CHAIN itself,
# when CHAIN is empty
remove_chain() {
  rules=$("$1" -w -t "$2" -S "$4" 2>/dev/null) || return 0
  [ "$rules" = "-N $4" ] || { info "$1 -t $2 $4 is not empty: kept"; return 0; }
  while "$1" -w -t "$2" -D "$3" -j "$4" 2>/dev/null; do :; done
  "$1" -w -t "$2" -X "$4"
  changed "$1 -t $2: empty chain $4 removed"
}
if ! pid_alive /run/libvirtd.pid; then
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null 2>&1 || continue
    remove_chain "$tool" filter INPUT LIBVIRT_INP
    remove_chain "$tool" filter OUTPUT LIBVIRT_OUT
    remove_chain "$tool" filter FORWARD LIBVIRT_FWO
    remove_chain "$tool" filter FORWARD LIBVIRT_FWI
    remove_chain "$tool" filter FORWARD LIBVIRT_FWX
    remove_chain "$tool" nat POSTROUTING LIBVIRT_PRT
    remove_chain "$tool" mangle POSTROUTING LIBVIRT_PRT
  done
else
  info "libvirtd runs (not started by kubelab): its firewall chains stay"
fi

if [ -f "$STATE/forwarding" ]; then
  while read -r key value; do
    case $key in
      net.ipv4.ip_forward | net.ipv6.conf.all.forwarding) ;;
      *) continue ;;
    esac
    case $value in '' | *[!0-9]*) continue ;; esac
    if [ "$(sysctl -n "$key")" != "$value" ]; then
      sysctl -qw "$key=$value"
      changed "$key=$value (as before kubelab)"
    fi
  done < "$STATE/forwarding"
  rm -f "$STATE/forwarding"
fi
echo "changed=$CHANGED"
