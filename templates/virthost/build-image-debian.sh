#!/bin/sh
# build-image-debian.sh - build a cloud-init enabled, BIOS-bootable Debian base
# image (qcow2) from Debian packages only.
#
# Runs as root on the virthost. Prints the path of the image as the LAST line
# of stdout; progress goes to stderr. Exit status 0 on success.
#
# Parameters (environment variables; all optional):
#   KUBELAB_SUITE=bookworm          Debian suite
#   KUBELAB_MIRROR=URL              Debian mirror; default: the one this
#                                   machine's apt sources use, else deb.debian.org
#   KUBELAB_SECURITY_MIRROR=URL     default: likewise for debian-security
#   KUBELAB_EXTRA_PACKAGES="a b"    more packages for the image (space or comma);
#                                   their services are installed disabled
#   KUBELAB_DISK_MIB=3072           virtual disk size (overlays may be bigger:
#                                   cloud-init grows the root partition)
#   KUBELAB_IMAGE_DIR=/var/lib/kubelab/images   where images are kept
#   KUBELAB_FORCE=0                 1: rebuild even when cached
#   KUBELAB_SCRIPT_SHA256=HEX       SHA-256 of this script's text; needed only
#                                   when it does not run from a file
#
# Cache: the output name carries a hash of this script's text and of the
# parameters that change the image (suite, packages, disk size). The mirror is
# not part of it: any mirror serves the same suite. A build works in a
# temporary directory next to the output and renames the finished image into
# place, so a failed or interrupted build never leaves a half image behind;
# concurrent builds of the same recipe are serialized with flock.
#
# Disk layout (MBR, syslinux): p1 64 MiB FAT16 "BOOT" with syslinux, kernel and
# initrd; p2 ext4 "rootfs" made with "mkfs.ext4 -d" from the debootstrap tree:
# no loop devices, no nbd, no mounts of the image (the chroot needs /proc,
# /sys and /dev while packages are installed).
#
# Boot: syslinux, the kernel and a minimal busybox initramfs of kubelab's
# (virtio/IDE/SCSI drivers, no udev) that mounts the root file system.
#
# Guest: systemd, systemd-networkd + systemd-resolved, OpenSSH (ed25519 host
# key only), sudo, qemu-guest-agent, Debian's cloud-init restricted to the
# NoCloud datasource (label cidata, vfat or iso9660) with a trimmed module list.
#
# Host packages: debootstrap e2fsprogs dosfstools mtools syslinux
# syslinux-common fdisk qemu-utils (prepare.sh installs them).
#
# This file is rendered by minijinja before it is sent: it must not contain
# the character pairs that open minijinja blocks, expressions or comments.
set -eu

SUITE=${KUBELAB_SUITE:-bookworm}
EXTRA=$(echo "${KUBELAB_EXTRA_PACKAGES:-}" | tr ',' ' ' | xargs)
DISK_MIB=${KUBELAB_DISK_MIB:-3072}
IMAGE_DIR=${KUBELAB_IMAGE_DIR:-/var/lib/kubelab/images}
FORCE=${KUBELAB_FORCE:-0}
BOOT_MIB=64
BASE_PKGS="systemd-sysv,udev,dbus,openssh-server,iproute2,systemd-resolved,netbase,kmod,procps,iputils-ping,less,ca-certificates,initramfs-tools,zstd"
CHROOT_PKGS="linux-image-cloud-amd64 cloud-init cloud-guest-utils sudo qemu-guest-agent busybox-static"

log() { echo "[build-image $(date +%H:%M:%S)] $*" >&2; }
die() { echo "error: $*" >&2; exit 1; }

# The Debian mirror this machine's apt uses (deb822 .sources or one-line lists).
host_mirror() {
  { sed -n 's/^URIs:[[:space:]]*//p' /etc/apt/sources.list.d/*.sources 2>/dev/null
    awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { print $i; break } }' \
      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
  } | tr ' ' '\n' | grep -E "/debian$1/?\$" | head -n 1 | sed 's#/$##'
}
MIRROR=${KUBELAB_MIRROR:-$(host_mirror "" || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${KUBELAB_SECURITY_MIRROR:-$(host_mirror "-security" || true)}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot)"
for b in debootstrap chroot mkfs.ext4 mkfs.vfat mcopy syslinux sfdisk qemu-img sha256sum; do
  command -v "$b" >/dev/null 2>&1 || die "missing $b (run prepare.sh with KUBELAB_IMAGE_TOOLS=1)"
done
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || die "missing /usr/lib/syslinux/mbr/mbr.bin (syslinux-common)"
case $DISK_MIB in '' | *[!0-9]*) die "KUBELAB_DISK_MIB must be a number of MiB" ;; esac
[ "$DISK_MIB" -ge 1024 ] || die "KUBELAB_DISK_MIB must be at least 1024"

# The recipe's identity: this script's text. When the script is not a file
# (sent as "sh -c TEXT"), the caller passes the text's SHA-256.
SCRIPT_SHA256=${KUBELAB_SCRIPT_SHA256:-}
if [ -z "$SCRIPT_SHA256" ]; then
  [ -f "$0" ] || die "not run from a file: set KUBELAB_SCRIPT_SHA256 to the SHA-256 of this script's text"
  SCRIPT_SHA256=$(sha256sum <"$0" | cut -c1-64)
fi
KEY=$({ echo "$SCRIPT_SHA256"; printf '\n%s|%s|%s\n' "$SUITE" "$EXTRA" "$DISK_MIB"; } | sha256sum | cut -c1-16)
OUT=$IMAGE_DIR/debian-$SUITE-$KEY.qcow2
mkdir -p "$IMAGE_DIR"

if command -v flock >/dev/null 2>&1; then
  exec 9>"$IMAGE_DIR/.debian-$SUITE-$KEY.lock"
  flock 9
fi
if [ -f "$OUT" ] && [ "$FORCE" != 1 ]; then
  log "cached: $OUT"
  echo "$OUT"
  exit 0
fi

T0=$(date +%s)
WORK=$(mktemp -d "$IMAGE_DIR/.build-XXXXXX")
ROOT=$WORK/root
cleanup() {
  for m in dev/pts dev sys proc; do
    if mountpoint -q "$ROOT/$m" 2>/dev/null; then umount -l "$ROOT/$m" || true; fi
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

log "debootstrap $SUITE from $MIRROR"
debootstrap --variant=minbase --include="$BASE_PKGS" "$SUITE" "$ROOT" "$MIRROR" \
  >"$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
log "debootstrap done ($(($(date +%s) - T0))s)"

# ---- before packages go in ---------------------------------------------------
# no daemons started inside the chroot
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 755 "$ROOT/usr/sbin/policy-rc.d"
# initramfs-tools' initrd (the kernel package makes one) stays small and
# quick to build; the image boots kubelab's own instead (see below)
mkdir -p "$ROOT/etc/initramfs-tools/conf.d"
printf 'MODULES=list\nCOMPRESS=zstd\n' >"$ROOT/etc/initramfs-tools/conf.d/kubelab.conf"
# virtio_rng: without RDRAND (TCG's CPU model) getrandom() blocks until the
# kernel's pool is seeded, which stalls sshd and cloud-init for seconds
printf '%s\n' virtio_pci virtio_blk virtio_scsi virtio_net sd_mod ata_piix ata_generic sr_mod cdrom virtio_rng \
  >>"$ROOT/etc/initramfs-tools/modules"
printf 'do_symlinks = yes\nlink_in_boot = yes\n' >"$ROOT/etc/kernel-img.conf"
cat >"$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
# systemd-resolved turned /etc/resolv.conf into a dangling link inside the tree
rm -f "$ROOT/etc/resolv.conf"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"

mount -t proc proc "$ROOT/proc"
mount -t sysfs sysfs "$ROOT/sys"
mount --bind /dev "$ROOT/dev"
mount --bind /dev/pts "$ROOT/dev/pts"
chroot "$ROOT" apt-get -q update >"$WORK/apt.log" 2>&1 || { tail -n 30 "$WORK/apt.log" >&2; die "apt-get update failed"; }
install_pkgs() {
  log "apt-get install $*"
  chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get -q -y install --no-install-recommends "$@" \
    >>"$WORK/apt.log" 2>&1 || { tail -n 30 "$WORK/apt.log" >&2; die "apt-get install failed"; }
}
enabled_units() { find "$ROOT/etc/systemd/system" -path '*.wants/*' -type l 2>/dev/null | sort; }
# shellcheck disable=SC2086
install_pkgs $CHROOT_PKGS
if [ -n "$EXTRA" ]; then
  enabled_units >"$WORK/units.before"
  # shellcheck disable=SC2086
  install_pkgs $EXTRA
  # The extra packages' services are left disabled (docker, glusterd, frr,
  # named, ovs...): a VM boots as fast as without them, and the playbook that
  # uses a service enables and starts it.
  enabled_units | comm -13 "$WORK/units.before" - | while read -r link; do
    log "left disabled: ${link#"$ROOT"}"
    rm -f "$link"
  done
fi
log "packages done ($(($(date +%s) - T0))s)"

# ---- system configuration ----------------------------------------------------
echo debian >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\nff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n' \
  >"$ROOT/etc/hosts"
echo 'LABEL=rootfs / ext4 defaults,errors=remount-ro 0 1' >"$ROOT/etc/fstab"

# networking: cloud-init renders systemd-networkd files; DHCP identities come
# from each NIC's MAC (DUID-LL) so that clones of this image never collide
enable() { chroot "$ROOT" systemctl enable "$@" >/dev/null 2>&1; }
mask() { for u in "$@"; do chroot "$ROOT" systemctl mask "$u" >/dev/null 2>&1 || true; done; }
enable systemd-networkd.service
mkdir -p "$ROOT/etc/systemd/networkd.conf.d"
printf '[DHCPv4]\nDUIDType=link-layer\n\n[DHCPv6]\nDUIDType=link-layer\n' \
  >"$ROOT/etc/systemd/networkd.conf.d/kubelab.conf"
ln -sfn /run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"
# upstream orders systemd-resolved before sysinit.target, which puts it on the
# boot's critical path; start it alongside the network instead
sed -e 's/^Before=.*/Before=network.target nss-lookup.target shutdown.target/' \
    -e 's/^WantedBy=sysinit.target/WantedBy=multi-user.target/' \
    "$ROOT/lib/systemd/system/systemd-resolved.service" >"$ROOT/etc/systemd/system/systemd-resolved.service"
rm -f "$ROOT/etc/systemd/system/sysinit.target.wants/systemd-resolved.service"
enable systemd-resolved.service
# nothing waits for "network online"; timers and services that only cost time
mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer \
  e2scrub_all.timer e2scrub_reap.service fstrim.timer dpkg-db-backup.timer \
  systemd-network-generator.service systemd-pstore.service modprobe@drm.service \
  modprobe@efi_pstore.service modprobe@dm_mod.service modprobe@loop.service modprobe@fuse.service \
  systemd-binfmt.service getty@tty1.service
# modules udev would load for nothing (TCG's CPU model advertises SVM)
printf 'blacklist %s\n' kvm kvm_amd kvm_intel irqbypass serio_raw pcspkr floppy \
  >"$ROOT/etc/modprobe.d/kubelab-blacklist.conf"
mkdir -p "$ROOT/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$ROOT/etc/systemd/journald.conf.d/kubelab.conf"

# sshd: keys only, ed25519 host key only (the one kubelab injects and records)
mkdir -p "$ROOT/etc/ssh/sshd_config.d"
printf 'PasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\nHostKey /etc/ssh/ssh_host_ed25519_key\n' \
  >"$ROOT/etc/ssh/sshd_config.d/kubelab.conf"

# sshd starts as soon as cloud-init has written its keys; skip the extra
# "sshd -t" process before it (a broken config fails the start anyway)
mkdir -p "$ROOT/etc/systemd/system/ssh.service.d"
printf '[Service]\nExecStartPre=\n' >"$ROOT/etc/systemd/system/ssh.service.d/kubelab.conf"

# cloud-init: NoCloud only (ds-identify takes a single datasource without
# probing), no default user, no RSA/ECDSA key generation (RSA alone costs ~8 s
# under TCG), and only the modules kubelab uses. Growing the root partition
# and filesystem (~5 s under TCG) runs in the config stage, after sshd started.
cat >"$ROOT/etc/cloud/cloud.cfg.d/90-kubelab.cfg" <<'EOF'
# kubelab base image
datasource_list: [ NoCloud, None ]
datasource:
  NoCloud:
    fs_label: cidata
system_info:
  network:
    renderers: [ networkd ]
users: []
disable_root: true
ssh_pwauth: false
ssh_deletekeys: true
ssh_genkeytypes: [ ed25519 ]
ssh_quiet_keygen: true
preserve_hostname: false
manage_etc_hosts: true
cloud_init_modules:
  - bootcmd
  - write_files
  - set_hostname
  - update_hostname
  - update_etc_hosts
  - users_groups
  - ssh
cloud_config_modules:
  - growpart
  - resizefs
  - runcmd
cloud_final_modules:
  - scripts_per_once
  - scripts_per_boot
  - scripts_per_instance
  - scripts_user
  - final_message
  - power_state_change
EOF
# Debian's own datasource list would override ours if it sorted later
rm -f "$ROOT/etc/cloud/cloud.cfg.d/90_dpkg.cfg"

# cloud-init's four boot stages in one import of cloud-init: under TCG each
# "cloud-init ..." process spends 5-10 s importing Python modules before it
# does anything, four times per boot, two of them before sshd may start. The
# zygote service imports cloud-init once, early, and forks each stage when
# the stage's own unit (unchanged order in the boot) asks for it; without
# the zygote the stage runs cloud-init as before.
mkdir -p "$ROOT/usr/lib/kubelab"
cat >"$ROOT/usr/lib/kubelab/cloud-init-zygote" <<'EOF'
#!/usr/bin/python3
# kubelab: cloud-init's boot stages in one import of cloud-init.
#
# Debian's cloud-init (22.4) starts a new Python process for each of its four
# boot stages; under software emulation each one spends 5-10 s importing
# cloud-init (requests, jsonschema, jinja2, yaml...) before it does anything.
# This service imports cloud-init once, early in the boot, and then runs each
# stage in a fork of itself when that stage's unit asks for it (through
# /usr/lib/kubelab/cloud-init-stage): a fork starts with the freshly imported
# modules, exactly as a new "cloud-init ..." process would, without the import.
# The stage units keep their order in the boot; cloud-init's own code, config,
# logs and status (status.json, result.json) are unchanged.
#
# Protocol (/run/kubelab-cloud-init): a stage writes "RCFIFO ARGS..." as one
# line to the FIFO "req"; the forked stage writes "pid N" and at its end
# "rc N" into RCFIFO. The zygote leaves after the final stage, or when no
# stage asked for 15 minutes; the stage client then runs cloud-init itself.
import gc
import os
import select
import signal
import socket
import sys

DIR = "/run/kubelab-cloud-init"
IDLE_SECS = 900

# What the stages before sshd (init --local, init) import on their own,
# imported here once; the later stages import their few modules themselves.
PRELOAD = [
    "cloudinit.cmd.main",
    "cloudinit.sources.DataSourceNoCloud",
    "cloudinit.sources.DataSourceNone",
    "cloudinit.distros.debian",
    "cloudinit.net.networkd",
    "cloudinit.net.activators",
    "cloudinit.net.network_state",
    "cloudinit.handlers.cloud_config",
    "cloudinit.handlers.shell_script",
    "cloudinit.handlers.boot_hook",
    "cloudinit.handlers.jinja_template",
] + [
    "cloudinit.config.cc_" + m
    for m in (
        "bootcmd write_files set_hostname update_hostname update_etc_hosts "
        "users_groups ssh"
    ).split()
]


def notify(msg):
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(msg.encode(), addr)


def run_stage(rc_path, args):
    """In the forked child: run one cloud-init command, report, exit."""
    rc = 1
    fd = -1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        import random

        random.seed()
        fd = os.open(rc_path, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, b"pid %d\n" % os.getpid())
        from cloudinit.cmd.main import main

        sys.argv = ["/usr/bin/cloud-init"] + args
        try:
            rc = main(list(sys.argv)) or 0
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:  # report whatever happened, never hang the unit
        print("kubelab cloud-init stage %s: %r" % (args, e), file=sys.stderr)
        rc = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        if fd >= 0:
            try:
                os.write(fd, b"rc %d\n" % rc)
            except OSError:
                pass
        os._exit(rc)


def main():
    # no garbage collection passes while importing (nothing to collect yet);
    # what is imported stays out of the forks' collections
    gc.disable()
    failed = []
    for mod in PRELOAD:
        try:
            __import__(mod)
        except Exception as e:  # the stage imports it again and reports
            failed.append("%s (%s)" % (mod, e))
    if failed:
        print("kubelab cloud-init zygote: not preloaded: " + ", ".join(failed), file=sys.stderr)
    gc.freeze()
    gc.enable()
    os.makedirs(DIR, mode=0o700, exist_ok=True)
    req = os.path.join(DIR, "req")
    try:
        os.unlink(req)
    except FileNotFoundError:
        pass
    os.mkfifo(req, 0o600)
    # read and write: the FIFO never reports end of file between requests
    fd = os.open(req, os.O_RDWR)
    with open(os.path.join(DIR, "pid.tmp"), "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(os.path.join(DIR, "pid.tmp"), os.path.join(DIR, "pid"))
    # children reap themselves; each stage's client waits for its "rc" line
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    notify("READY=1")
    buf = b""
    while True:
        ready, _, _ = select.select([fd], [], [], IDLE_SECS)
        if not ready:
            break
        buf += os.read(fd, 4096)
        done = False
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            words = line.decode(errors="replace").split()
            if len(words) < 2:
                continue
            if os.fork() == 0:
                os.close(fd)
                run_stage(words[0], words[1:])
            if words[1:3] == ["modules", "--mode=final"]:
                done = True
        if done:
            break
    # later stages (a restarted unit) run cloud-init on their own
    for name in ("pid", "req"):
        try:
            os.unlink(os.path.join(DIR, name))
        except FileNotFoundError:
            pass
    notify("STOPPING=1")


if __name__ == "__main__":
    main()
EOF
cat >"$ROOT/usr/lib/kubelab/cloud-init-stage" <<'EOF'
#!/bin/bash
# kubelab: run one cloud-init boot stage ("init --local", "init",
# "modules --mode=config", "modules --mode=final") in a fork of
# kubelab-cloud-init-zygote.service, which imported cloud-init already; the
# stage's output goes to the zygote's journal. Without the zygote, or when it
# is gone, run cloud-init as Debian's unit would.
d=/run/kubelab-cloud-init
if [ -p "$d/req" ] && read -r zpid <"$d/pid" 2>/dev/null && kill -0 "$zpid" 2>/dev/null; then
  rcf=$d/rc.$$
  rm -f "$rcf"
  if mkfifo -m 600 "$rcf" && exec 3<>"$rcf"; then
    echo "$rcf $*" >"$d/req"
    pid=$zpid
    while :; do
      if read -r -t 2 -u 3 what n; then
        case $what in
          pid) pid=$n ;;
          rc) rm -f "$rcf"; exit "$n" ;;
        esac
      elif [ $? -le 128 ] || ! kill -0 "$pid" 2>/dev/null; then
        # the stage (or the zygote before it forked) died without a word
        rm -f "$rcf"
        echo "kubelab: cloud-init $* ended without a status" >&2
        exit 1
      fi
    done
  fi
  rm -f "$rcf"
fi
exec /usr/bin/cloud-init "$@"
EOF
chmod 755 "$ROOT/usr/lib/kubelab/cloud-init-zygote" "$ROOT/usr/lib/kubelab/cloud-init-stage"
cat >"$ROOT/etc/systemd/system/kubelab-cloud-init-zygote.service" <<'EOF'
[Unit]
Description=cloud-init imported once for its boot stages (kubelab)
DefaultDependencies=no
Conflicts=shutdown.target
Before=shutdown.target

[Service]
Type=notify
ExecStart=/usr/lib/kubelab/cloud-init-zygote
TimeoutStartSec=600
KillMode=process
TasksMax=infinity
StandardOutput=journal+console
EOF
for st in "cloud-init-local:init --local" "cloud-init:init" "cloud-config:modules --mode=config" \
  "cloud-final:modules --mode=final"; do
  mkdir -p "$ROOT/etc/systemd/system/${st%%:*}.service.d"
  printf '[Unit]\nWants=kubelab-cloud-init-zygote.service\nAfter=kubelab-cloud-init-zygote.service\n\n[Service]\nExecStart=\nExecStart=/usr/lib/kubelab/cloud-init-stage %s\n' \
    "${st#*:}" >"$ROOT/etc/systemd/system/${st%%:*}.service.d/kubelab.conf"
done
# growpart and resizefs (cloud-config) after sshd and logind rather than
# beside them on the one vCPU
printf '[Unit]\nAfter=ssh.service systemd-logind.service systemd-user-sessions.service\n' \
  >"$ROOT/etc/systemd/system/cloud-config.service.d/kubelab-order.conf"

# generators for what these VMs never have (encrypted, verity or integrity
# volumes, hibernation images, GPT auto-discovery, offline updates): each is
# one more program systemd runs before it starts anything
mkdir -p "$ROOT/etc/systemd/system-generators"
for g in systemd-cryptsetup-generator systemd-veritysetup-generator systemd-integritysetup-generator \
  systemd-hibernate-resume-generator systemd-gpt-auto-generator systemd-system-update-generator; do
  ln -sfn /dev/null "$ROOT/etc/systemd/system-generators/$g"
done

# ---- cleanup / genericize ---------------------------------------------------------
chroot "$ROOT" apt-get clean
rm -f "$ROOT/usr/sbin/policy-rc.d" "$ROOT"/etc/ssh/ssh_host_*
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* \
  "$ROOT"/usr/share/info/* "$ROOT"/var/log/*.log "$ROOT"/var/cache/debconf/*-old \
  "$ROOT"/var/lib/cloud/* "$ROOT"/var/log/cloud-init*
find "$ROOT/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
# every clone generates its own machine-id at first boot
: >"$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
passwd -R "$ROOT" -l root >/dev/null 2>&1 || true
for m in dev/pts dev sys proc; do umount -l "$ROOT/$m"; done

KVER=$(basename "$(readlink -f "$ROOT/boot/vmlinuz")" | sed 's/^vmlinuz-//')
[ -f "$ROOT/boot/vmlinuz-$KVER" ] || die "no kernel in the image"
[ -x "$ROOT/bin/busybox" ] || die "no busybox in the image"
cp "$ROOT/boot/vmlinuz-$KVER" "$WORK/vmlinuz"

# The initramfs the VMs boot: busybox, the virtio, IDE and SCSI drivers (with
# what they depend on, in modprobe's order; ext4 too, a module in Debian's
# generic kernel, built into the cloud one) and a /init that loads them,
# mounts / read-only and switches to it. initramfs-tools' initrd spends 5-6 s
# under TCG starting udev, waiting for it and probing; here the system's udev
# does all that after the switch. Root is what root= says (LABEL=, UUID= or a
# device); if it never shows up, /init exits and the kernel panics, which
# kubelab's console watch reports.
I=$WORK/initramfs
mkdir -p "$I/bin" "$I/dev" "$I/proc" "$I/sys" "$I/root" "$I/mod"
cp "$ROOT/bin/busybox" "$I/bin/busybox"
: >"$I/mod/order"
chroot "$ROOT" modprobe -S "$KVER" -a --show-depends \
  virtio_pci virtio_blk virtio_rng virtio_net virtio_scsi ata_piix ata_generic sd_mod sr_mod ext4 |
  awk '$1 == "insmod" { print $2 }' >"$WORK/modules.list"
while read -r ko; do
  b=$(basename "$ko")
  grep -qx "$b" "$I/mod/order" && continue
  cp "$ROOT$ko" "$I/mod/$b"
  echo "$b" >>"$I/mod/order"
done <"$WORK/modules.list"
grep -qx virtio_blk.ko "$I/mod/order" && grep -qx ata_piix.ko "$I/mod/order" ||
  die "modprobe found no virtio_blk/ata_piix for $KVER"
cat >"$I/init" <<'EOF'
#!/bin/busybox sh
# kubelab's initramfs: load the virtio, IDE and SCSI drivers, mount the root
# file system and hand over to its init; the system's udev does the rest.
export PATH=/bin
/bin/busybox --install -s /bin
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
fail() { echo "kubelab initramfs: $*" >/dev/console; sleep 5; exit 1; }
while read -r m; do insmod "/mod/$m" 2>/dev/null; done </mod/order
root= mode=ro init=/sbin/init
for a in $(cat /proc/cmdline); do
  case $a in
    root=*) root=${a#root=} ;;
    rw) mode=rw ;;
    init=*) init=${a#init=} ;;
  esac
done
[ -n "$root" ] || fail "no root= on the kernel command line"
i=0
while :; do
  case $root in
    LABEL=* | UUID=*) dev=$(findfs "$root" 2>/dev/null) || dev= ;;
    *) dev=$root ;;
  esac
  [ -n "$dev" ] && [ -b "$dev" ] && break
  i=$((i + 1))
  [ $i -le 600 ] || fail "root file system $root not found"
  sleep 0.05
done
mount -t ext4 -o "$mode" "$dev" /root || fail "cannot mount $dev"
mount --move /dev /root/dev
umount /proc /sys
exec switch_root /root "$init"
EOF
chmod 755 "$I/init"
mknod -m 600 "$I/dev/console" c 5 1
(cd "$I" && find . | "$ROOT/bin/busybox" cpio -o -H newc 2>/dev/null) | gzip -9 >"$WORK/initrd.img"
log "kernel $KVER, rootfs $(du -sh "$ROOT" | cut -f1)"

# ---- assemble the disk: MBR + FAT (syslinux, kernel, initrd) + ext4 ------------------
ROOT_MIB=$((DISK_MIB - 1 - BOOT_MIB))
# loglevel=4: kernel warnings and errors still reach the serial console log;
# the info chatter would cost seconds at 115200 baud under TCG.
# no_timer_check: the kernel's boot-time check that the timer interrupt
# ticks fails on a starved vCPU (TCG on a busy host, several VMs per core)
# and panics ("IO-APIC + timer doesn't work!"); virtualized guests skip it,
# as distributions' cloud images do.
CMDLINE="root=LABEL=rootfs ro console=tty0 console=ttyS0,115200n8 fsck.mode=skip loglevel=4 no_timer_check"
# Inode tables and journal zeroed here, once: left lazy (mke2fs's default
# where the kernel can finish the job), every guest's ext4lazyinit thread
# zeroes them on its first boot, tens of MiB written into its overlay
# under TCG right when cloud-init and sshd start. The zeros cost nothing in
# the qcow2 (qemu-img convert skips them).
mkfs.ext4 -q -F -L rootfs -E lazy_itable_init=0,lazy_journal_init=0 -d "$ROOT" "$WORK/root.img" "${ROOT_MIB}M"
rm -rf "$ROOT"
truncate -s "${DISK_MIB}M" "$WORK/disk.raw"
sfdisk -q "$WORK/disk.raw" <<EOF
label: dos
start=2048, size=$((BOOT_MIB * 2048)), type=6, bootable
start=$(((1 + BOOT_MIB) * 2048)), type=83
EOF
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$WORK/disk.raw" bs=440 count=1 conv=notrunc status=none
mkfs.vfat -F 16 -n BOOT -h 2048 -C "$WORK/boot.img" $((BOOT_MIB * 1024)) >/dev/null
printf 'DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nLABEL linux\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n' "$CMDLINE" \
  >"$WORK/syslinux.cfg"
MTOOLS_SKIP_CHECK=1 mcopy -i "$WORK/boot.img" "$WORK/syslinux.cfg" "$WORK/vmlinuz" "$WORK/initrd.img" ::/
dd if="$WORK/boot.img" of="$WORK/disk.raw" bs=1M seek=1 conv=notrunc status=none
syslinux --offset $((2048 * 512)) --install "$WORK/disk.raw"
dd if="$WORK/root.img" of="$WORK/disk.raw" bs=1M seek=$((1 + BOOT_MIB)) conv=notrunc,sparse status=none
qemu-img convert -f raw -O qcow2 -o cluster_size=65536 "$WORK/disk.raw" "$WORK/image.qcow2"
chmod 644 "$WORK/image.qcow2"
mv -f "$WORK/image.qcow2" "$OUT"
log "done in $(($(date +%s) - T0))s: $OUT ($(du -h "$OUT" | cut -f1) on disk, ${DISK_MIB} MiB virtual)"
echo "$OUT"
