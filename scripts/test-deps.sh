#!/bin/sh
# test-deps.sh - packages kubelab's tests need on a fresh Debian 12 (bookworm),
# run as root. Idempotent: installs only what is missing.
#
# virthost tests (tests/virthost_libvirt.rs, src/virthost):
#   build:    gcc libc6-dev pkg-config libvirt-dev
#   libvirt:  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
#             qemu-system-x86 qemu-utils dnsmasq-base iptables
#             (not libvirt-daemon-system: it pulls systemd; templates/virthost/prepare.sh
#             does its work by hand and starts libvirtd when there is no systemd)
#   image:    debootstrap e2fsprogs dosfstools mtools syslinux syslinux-common fdisk
#   checks:   openssh-client (ssh into the test VMs), libxml2-utils (xmllint, for
#             virt-xml-validate in the XML schema test), iproute2
set -eu
export DEBIAN_FRONTEND=noninteractive
APT="apt-get -q -y -o DPkg::Lock::Timeout=600"

PKGS="gcc libc6-dev pkg-config libvirt-dev
libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils dnsmasq-base iptables
debootstrap e2fsprogs dosfstools mtools syslinux syslinux-common fdisk
openssh-client libxml2-utils iproute2"

missing=
for p in $PKGS; do
  case $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true) in
    *"install ok installed"*) ;;
    *) missing="$missing $p" ;;
  esac
done
[ -n "$missing" ] || { echo "test-deps: all installed"; exit 0; }

$APT update
# shellcheck disable=SC2086
if ! $APT install --no-install-recommends $missing; then
  # Some images ship qemu-utils from bookworm-backports, which conflicts with
  # bookworm's qemu-system-x86 (7.2): take qemu-utils from bookworm itself.
  # shellcheck disable=SC2086
  $APT install --no-install-recommends --allow-downgrades \
    $(echo " $missing " | sed 's/ qemu-utils / /') qemu-utils/bookworm
fi
echo "test-deps: installed$missing"
