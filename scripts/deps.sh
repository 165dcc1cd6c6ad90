#!/usr/bin/env bash
# Install what kubelab needs on a Debian 12 machine (idempotent).
#   scripts/deps.sh build    - to build kubelab (C toolchain, libvirt headers, Rust)
#   scripts/deps.sh virthost - to use this machine as a virthost (libvirt, QEMU, image build tools)
#   scripts/deps.sh test     - everything the test suite uses (both of the above + sshd, sudo, ...)
#   scripts/deps.sh bench    - everything bench/ uses (the test suite's, for its sshd hosts and VMs;
#                              bench/vms.sh also builds libvirt-python for kcli and makes seed ISOs)
set -euo pipefail
what=${1:-test}

build_pkgs=(build-essential pkg-config libvirt-dev ca-certificates curl git)
virthost_pkgs=(libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86
               qemu-utils dnsmasq-base iptables iproute2 debootstrap dosfstools mtools
               syslinux syslinux-common fdisk e2fsprogs openssh-client xz-utils)
test_pkgs=(openssh-server openssh-client sudo iproute2 iputils-ping procps python3 python3-venv libxml2-utils openssl
           docker-registry containerd docker.io busybox-static chromium)
bench_pkgs=(python3-dev genisoimage bc)

case "$what" in
  build) pkgs=("${build_pkgs[@]}") ;;
  virthost) pkgs=("${build_pkgs[@]}" "${virthost_pkgs[@]}") ;;
  test) pkgs=("${build_pkgs[@]}" "${virthost_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench) pkgs=("${build_pkgs[@]}" "${virthost_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 build|virthost|test|bench" >&2; exit 2 ;;
esac

SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q
  # Some images ship a backports qemu-utils that conflicts with bookworm's
  # qemu-system-x86: take qemu-utils from bookworm itself (--allow-downgrades).
  extra=()
  if printf '%s\n' "${missing[@]}" | grep -qx qemu-system-x86 \
     && dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null | grep -q bpo; then
    extra=(qemu-utils/bookworm)
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends --allow-downgrades "${missing[@]}" "${extra[@]}"
fi

# Rust: use the toolchain on PATH, else ~/.cargo, else install with rustup.
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    :
  else
    echo "deps: installing Rust with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy -c rustfmt
  fi
fi

# sshd (test hosts, benchmark hosts) refuses to start without this directory.
[ "$what" = build ] || $SUDO mkdir -p /run/sshd
