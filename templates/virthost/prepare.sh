#!/bin/sh
# prepare.sh - make a machine a kubelab virthost: libvirt + QEMU + dnsmasq,
# curl and xz for image downloads (+ the tools the image builds need), and a
# running libvirtd.
#
# Runs as root on the virthost. Idempotent: a second run changes nothing.
# Output: one line "changed: WHAT" per thing it changed, "info: ..." lines,
# and as the last line the machine-readable summary "changed=N".
# Exit status: 0 on success, 1 on failure (with "error: ..." on stderr).
#
# Parameters (environment variables; all optional):
#   KUBELAB_INSTALL=1          install missing packages (0: only check/configure)
#   KUBELAB_IMAGE_TOOLS=1      also install what image builds need
#                              (debootstrap, e2fsprogs, dosfstools, mtools,
#                              syslinux, fdisk, qemu-img)
#   KUBELAB_SOCKET_TIMEOUT=90  seconds to wait for libvirtd's socket after
#                              starting it by hand
#   KUBELAB_LIBVIRT_URI=qemu:///system   URI used to check that libvirtd answers
#   KUBELAB_VIRTHOST_STATE=DIR  where to note what kubelab changes on the
#                              virthost, for release.sh to give it back once
#                              no lab uses it: "forwarding" (the forwarding
#                              sysctls before any libvirt network ran; written
#                              once) and "libvirtd.started" (this script
#                              started libvirtd and virtlogd by hand).
#                              Empty: nothing is noted.
#
# Service handling:
#   * systemd is PID 1: packages with their units (Debian: libvirt-daemon-system),
#     then, unless libvirt already answers (socket activation), "systemctl
#     enable --now libvirtd" (Fedora/RHEL: the modular daemons' sockets).
#     The dnf path (Fedora/RHEL; debootstrap needs EPEL on RHEL) is untested.
#   * no systemd (containers, CI machines): Debian's libvirt-daemon-system would
#     pull systemd, so the daemon packages are installed without it and what it
#     would have done is done here: groups kvm, libvirt, libvirt-qemu, user
#     libvirt-qemu (libvirtd refuses to start its QEMU driver without it, even
#     when qemu.conf says user = "root"), /var/log/libvirt/qemu, qemu.conf with
#     user/group root and security_driver "none" (no AppArmor/SELinux labelling
#     without the system integration), then "virtlogd -d" and "libvirtd -d" and
#     a bounded wait for the socket.
#
# This file is rendered by minijinja before it is sent: it must not contain
# the character pairs that open minijinja blocks, expressions or comments.
set -eu

INSTALL=${KUBELAB_INSTALL:-1}
IMAGE_TOOLS=${KUBELAB_IMAGE_TOOLS:-1}
SOCKET_TIMEOUT=${KUBELAB_SOCKET_TIMEOUT:-90}
URI=${KUBELAB_LIBVIRT_URI:-qemu:///system}
STATE=${KUBELAB_VIRTHOST_STATE:-}

CHANGED=0
changed() { CHANGED=$((CHANGED + 1)); echo "changed: $*"; }
info() { echo "info: $*"; }
die() { echo "error: $*" >&2; echo "changed=$CHANGED"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"

if [ -d /run/systemd/system ]; then SYSTEMD=1; else SYSTEMD=0; fi

if command -v apt-get >/dev/null 2>&1; then
  PKG=apt
elif command -v dnf >/dev/null 2>&1; then
  PKG=dnf
else
  die "no apt-get or dnf on this machine: unsupported distribution"
fi
info "package manager $PKG, systemd $SYSTEMD"

# ---- packages ----------------------------------------------------------------
apt_missing() {
  for p in "$@"; do
    case $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) in
      *"install ok installed"*) ;;
      *) printf '%s ' "$p" ;;
    esac
  done
}
rpm_missing() {
  # --whatprovides: "iptables" is provided by iptables-nft on RHEL 9
  for p in "$@"; do rpm -q --whatprovides "$p" >/dev/null 2>&1 || printf '%s ' "$p"; done
}

if [ "$PKG" = apt ]; then
  WANT="libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base iptables curl xz-utils"
  [ "$SYSTEMD" = 1 ] && WANT="$WANT libvirt-daemon-system"
  [ "$IMAGE_TOOLS" = 1 ] && WANT="$WANT debootstrap e2fsprogs dosfstools mtools syslinux syslinux-common fdisk"
  # shellcheck disable=SC2086
  MISSING=$(apt_missing $WANT)
  if [ -n "$MISSING" ]; then
    [ "$INSTALL" = 1 ] || die "missing packages: $MISSING"
    export DEBIAN_FRONTEND=noninteractive
    APT="apt-get -q -y -o DPkg::Lock::Timeout=600"
    $APT update >/tmp/kubelab-prepare-apt.log 2>&1 || die "apt-get update failed (see /tmp/kubelab-prepare-apt.log)"
    # shellcheck disable=SC2086
    if ! $APT install --no-install-recommends $MISSING >>/tmp/kubelab-prepare-apt.log 2>&1; then
      # A qemu-utils from backports conflicts with the release's qemu-system-x86:
      # take both from the release (this needs a downgrade of qemu-utils).
      CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
      [ -n "$CODENAME" ] || die "apt-get install failed (see /tmp/kubelab-prepare-apt.log)"
      # shellcheck disable=SC2086
      $APT install --no-install-recommends --allow-downgrades \
        $(echo " $MISSING " | sed "s/ qemu-utils / /") "qemu-utils/$CODENAME" \
        >>/tmp/kubelab-prepare-apt.log 2>&1 \
        || die "apt-get install $MISSING failed (see /tmp/kubelab-prepare-apt.log)"
    fi
    changed "installed packages: $MISSING"
  fi
else
  WANT="libvirt-daemon-driver-qemu libvirt-daemon-driver-network libvirt-daemon-driver-storage-core libvirt-client qemu-kvm qemu-img dnsmasq iptables curl xz"
  [ "$SYSTEMD" = 1 ] && WANT="$WANT libvirt-daemon"
  [ "$IMAGE_TOOLS" = 1 ] && WANT="$WANT debootstrap e2fsprogs dosfstools mtools syslinux util-linux"
  # shellcheck disable=SC2086
  MISSING=$(rpm_missing $WANT)
  if [ -n "$MISSING" ]; then
    [ "$INSTALL" = 1 ] || die "missing packages: $MISSING"
    # shellcheck disable=SC2086
    dnf -q -y install $MISSING >/tmp/kubelab-prepare-dnf.log 2>&1 \
      || die "dnf install $MISSING failed (see /tmp/kubelab-prepare-dnf.log)"
    changed "installed packages: $MISSING"
  fi
fi

# ---- libvirt answering? ----------------------------------------------------------
libvirt_answers() { virsh -c "$URI" version >/dev/null 2>&1; }

# The forwarding sysctls as they are before any libvirt network runs (libvirt
# turns forwarding on for NAT networks and never back off). Noted once; kept
# until release.sh restores them.
note_forwarding() {
  [ -n "$STATE" ] || return 0
  [ -f "$STATE/forwarding" ] && return 0
  if libvirt_answers && [ -n "$(virsh -q -c "$URI" net-list --name 2>/dev/null | tr -d '[:space:]')" ]; then
    return 0 # a network runs already: the values before it are not known
  fi
  mkdir -p "$STATE"
  {
    echo "net.ipv4.ip_forward $(sysctl -n net.ipv4.ip_forward)"
    echo "net.ipv6.conf.all.forwarding $(sysctl -n net.ipv6.conf.all.forwarding)"
  } > "$STATE/forwarding.tmp.$$"
  mv "$STATE/forwarding.tmp.$$" "$STATE/forwarding"
  info "forwarding sysctls noted in $STATE/forwarding"
}
note_forwarding

if [ "$SYSTEMD" = 1 ]; then
  # Socket activation: an idle daemon may be inactive and still answer, so
  # "answers" is the test. Fedora/RHEL use the modular daemons (virtqemud,
  # virtnetworkd, virtstoraged); Debian/Ubuntu the monolithic libvirtd.
  if ! libvirt_answers; then
    if [ "$PKG" = dnf ] && systemctl cat virtqemud.socket >/dev/null 2>&1; then
      for d in virtqemud virtnetworkd virtstoraged virtnodedevd virtlogd; do
        systemctl cat "$d.socket" >/dev/null 2>&1 || continue
        systemctl enable --now "$d.socket" >/dev/null 2>&1 || die "systemctl enable --now $d.socket failed"
      done
      changed "modular libvirt daemons enabled and started (systemd)"
    else
      systemctl enable --now libvirtd.service >/dev/null 2>&1 || die "systemctl enable --now libvirtd failed"
      changed "libvirtd enabled and started (systemd)"
    fi
  fi
  i=0
  until libvirt_answers; do
    i=$((i + 1))
    [ "$i" -le $((SOCKET_TIMEOUT * 5)) ] || die "libvirtd does not answer on $URI after ${SOCKET_TIMEOUT}s"
    sleep 0.2
  done
  echo "changed=$CHANGED"
  exit 0
fi

# ---- no systemd: what libvirt-daemon-system would have done ----------------------
for g in kvm libvirt libvirt-qemu; do
  if ! getent group "$g" >/dev/null; then
    groupadd --system "$g" || die "groupadd $g failed"
    changed "group $g created"
  fi
done
if ! getent passwd libvirt-qemu >/dev/null; then
  useradd --system -g libvirt-qemu -G kvm -d /var/lib/libvirt -M -s /usr/sbin/nologin libvirt-qemu \
    || die "useradd libvirt-qemu failed"
  changed "user libvirt-qemu created"
fi
for d in /var/log/libvirt/qemu /var/lib/libvirt /etc/libvirt /var/cache/libvirt; do
  if [ ! -d "$d" ]; then
    mkdir -p "$d"
    changed "directory $d created"
  fi
done

QEMU_CONF=/etc/libvirt/qemu.conf
QEMU_CONF_CHANGED=0
# set_conf KEY VALUE: make "KEY = VALUE" the only active setting of KEY.
set_conf() {
  [ -f "$QEMU_CONF" ] || : > "$QEMU_CONF"
  if grep -qx "$1 = $2" "$QEMU_CONF" && [ "$(grep -c "^[[:space:]]*$1[[:space:]]*=" "$QEMU_CONF")" = 1 ]; then
    return 0
  fi
  sed -i "/^[[:space:]]*$1[[:space:]]*=/d" "$QEMU_CONF"
  echo "$1 = $2" >> "$QEMU_CONF"
  QEMU_CONF_CHANGED=1
  changed "$QEMU_CONF: $1 = $2"
}
set_conf user '"root"'
set_conf group '"root"'
set_conf security_driver '"none"'

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! pid_alive /run/virtlogd.pid; then
  /usr/sbin/virtlogd -d || die "virtlogd -d failed"
  changed "virtlogd started"
fi

if pid_alive /run/libvirtd.pid && [ "$QEMU_CONF_CHANGED" = 1 ]; then
  # the running daemon read the old qemu.conf
  kill "$(cat /run/libvirtd.pid)" 2>/dev/null || true
  i=0
  while pid_alive /run/libvirtd.pid; do
    i=$((i + 1))
    [ "$i" -le 100 ] || die "libvirtd did not stop within 20s after qemu.conf changed"
    sleep 0.2
  done
  changed "libvirtd stopped to reload $QEMU_CONF"
fi

if ! pid_alive /run/libvirtd.pid; then
  /usr/sbin/libvirtd -d 2>>/var/log/libvirt/libvirtd.stderr || die "libvirtd -d failed (see /var/log/libvirt/libvirtd.stderr)"
  changed "libvirtd started"
  if [ -n "$STATE" ]; then
    mkdir -p "$STATE"
    : > "$STATE/libvirtd.started"
  fi
fi

i=0
until libvirt_answers; do
  i=$((i + 1))
  if [ "$i" -gt $((SOCKET_TIMEOUT * 5)) ]; then
    die "libvirtd does not answer on $URI after ${SOCKET_TIMEOUT}s (see /var/log/libvirt/libvirtd.stderr)"
  fi
  sleep 0.2
done
info "libvirt answers on $URI"
echo "changed=$CHANGED"
