#!/usr/bin/env bash
# Boot benchmark: `kubelab up` of N VMs (all started in parallel) until every
# VM answers SSH, against the slowest single guest's boot-to-SSH with plain
# virsh on the same machine (same image, same domain XML, same seed), and the
# time to create a VM's disks at different sizes.
#   bench/boot.sh [N] [ROUNDS]      (as root; default N=2, ROUNDS=2)
# Needs libvirtd running and the test base image (cargo test builds it), or
# builds it through kubelab. Uses its own lab `bench-boot` on this machine's
# libvirt (subnet 192.168.219.0/24 unless BENCH_SUBNET says otherwise) and
# removes it at the end. Prints per-round figures and medians; the last line:
#   vms=N kubelab_all=S plain_single=S ratio=R disk_4g=MS disk_256g=MS
# BENCH_IMAGE: the lab's `image:` (default `{build: debian-12}`), e.g. an
# older built image by path and checksum to compare it with the current one:
#   BENCH_IMAGE='{url: "file:///var/cache/kubelab-test/images/OLD.qcow2", sha256: HEX}'
# After each round, the guest's own account of its boot (systemd-analyze,
# the critical chain to sshd, cloud-init's stages) is printed with "guest:".
set -euo pipefail
n=${1:-2}; rounds=${2:-2}
# here, top, V, load, now, median; installs what a fresh machine lacks
. "$(dirname "$0")/lib.sh"
kubelab=${KUBELAB:-$top/target/debug/kubelab}
[ -x "$kubelab" ] || (cd "$top" && cargo build -q)
storage=${BENCH_STORAGE:-/var/cache/kubelab-test}
subnet=${BENCH_SUBNET:-192.168.219}
image=${BENCH_IMAGE:-"{build: debian-12}"}
work=$(mktemp -d /tmp/kl-boot-bench.XXXXXX)
state=$work/state
export KUBELAB_STATE_DIR=$state
lab=$work/bench-boot.yaml
plain=klbench-plain

cat > "$lab" <<LAB
name: bench-boot
virthost: {local: true, domain_type: auto, tcg_cache: 128MiB, storage_dir: $storage}
image: $image
networks:
  - {name: lan, kind: nat, ipv4: $subnet.0/24}
defaults: {cpus: 1, memory: 640MiB, disk: 4GiB}
vms:
  - name: b{1..$n}
LAB

cleanup() {
  $V destroy "$plain" >/dev/null 2>&1 || true
  $V undefine "$plain" >/dev/null 2>&1 || true
  "$kubelab" -q down "$lab" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# CPU seconds a running domain's QEMU has used since it started (user +
# system, all threads): under TCG the guest's work, whatever else the host
# runs; with a busy host the wall-clock figures grow, this one does not.
qemu_cpu() {
  local pid; pid=$(cat "/run/libvirt/qemu/$1.pid" 2>/dev/null) || { echo "?"; return; }
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.1f\n", ($12 + $13) / hz }' "/proc/$pid/stat"
}

echo "# boot benchmark: $n VM(s), $rounds round(s), $(nproc) CPUs; load before: $(load); other QEMU guests running: $(pgrep -c qemu-system || true)"
"$kubelab" -q down "$lab" >/dev/null 2>&1 || true
kl_all=(); plain_one=()
for r in $(seq 1 "$rounds"); do
  # ---- kubelab: N VMs from nothing to SSH on every one --------------------------
  l0=$(load)
  out=$("$kubelab" --json up --timeout 600 "$lab")
  cpu1=$(qemu_cpu kl-bench-boot-b1)
  secs=$(echo "$out" | grep '"event":"up"' | sed 's/.*"boot_to_ssh_secs":\([0-9.]*\).*/\1/')
  total=$(echo "$out" | grep '"event":"up"' | sed 's/.*"total_secs":\([0-9.]*\).*/\1/')
  disks=$(echo "$out" | grep '"step":"volumes, seed, definition, start"' | grep step_end \
    | sed 's/.*"duration_ms":\([0-9]*\).*/\1/' | tr '\n' ' ')
  kl_all+=("$secs")
  echo "round $r: kubelab up: all $n VM(s) answer SSH ${secs}s after the first start (up in all ${total}s; per-VM volumes+seed+define+start: ${disks}ms); b1's QEMU used ${cpu1} CPU s; load $l0 -> $(load)"
  # the guest's view of the same boot (b1), once its boot has finished
  ip1=$(echo "$out" | grep '"event":"up"' | grep -o '"addresses":\["[^"]*"[^]]*\],"disks":\[[^]]*\],"name":"b1"' \
    | sed 's/"addresses":\["\([^"]*\)".*/\1/' | head -n1)
  ssh -q -i "$state/bench-boot/id_ed25519" -o BatchMode=yes -o ConnectTimeout=5 \
    -o UserKnownHostsFile="$state/bench-boot/known_hosts" -o HostKeyAlias=b1 -o StrictHostKeyChecking=yes \
    "kubelab@$ip1" 'for i in $(seq 1 120); do systemd-analyze >/dev/null 2>&1 && break; sleep 1; done
      systemd-analyze | head -n1; systemd-analyze critical-chain ssh.service | tail -n +3
      cloud-init analyze show 2>/dev/null | grep -E "^Finished stage|^Total"; cloud-init status' 2>&1 \
    | sed "s/^/round $r: guest: /" || true

  # ---- plain virsh: one guest, same image, domain XML and seed ------------------
  pool=$storage/bench-boot
  base=$(echo "$out" | grep '"event":"up"' | sed 's/.*"base_image":"\([^"]*\)".*/\1/')
  $V dumpxml --inactive kl-bench-boot-b1 > "$work/dom.xml"
  for vm in $(seq 1 "$n"); do $V destroy "kl-bench-boot-b$vm" >/dev/null; done
  cp "$pool/kl-bench-boot-b1-seed.img" "$pool/$plain-seed.img"
  qemu-img create -q -f qcow2 -F qcow2 -b "$base" "$pool/$plain-root.qcow2" 4G
  $V pool-refresh kl-bench-boot-pool >/dev/null
  sed -e "s/kl-bench-boot-b1-root.qcow2/$plain-root.qcow2/; s/kl-bench-boot-b1-seed.img/$plain-seed.img/" \
      -e "s#<name>kl-bench-boot-b1</name>#<name>$plain</name>#; /<uuid>/d; /kubelab:lab/d" \
      -e "s#kl-bench-boot-b1.console.log#$plain.console.log#" "$work/dom.xml" > "$work/plain.xml"
  $V define "$work/plain.xml" >/dev/null
  mac=$(grep -o "mac address='[^']*'" "$work/plain.xml" | head -n1 | cut -d"'" -f2)
  l0=$(load)
  t0=$(now)
  $V start "$plain" >/dev/null
  ip=""
  until [ -n "$ip" ] && ssh -q -i "$state/bench-boot/id_ed25519" -o BatchMode=yes -o ConnectTimeout=3 \
      -o UserKnownHostsFile="$state/bench-boot/known_hosts" -o HostKeyAlias=b1 \
      -o StrictHostKeyChecking=yes "kubelab@$ip" true 2>/dev/null; do
    [ "$(echo "$(now) - $t0 > 600" | bc)" = 1 ] && { echo "plain guest: no SSH in 600s" >&2; exit 1; }
    sleep 0.5
    ip=$($V domifaddr "$plain" --source lease 2>/dev/null | awk -v m="$mac" '$2 == m && $3 == "ipv4" {split($4, a, "/"); print a[1]}' | head -n1)
  done
  t=$(echo "$(now) - $t0" | bc)
  cpu=$(qemu_cpu "$plain")
  plain_one+=("$t")
  echo "round $r: plain virsh: one guest answers SSH ${t}s after virsh start, its QEMU used ${cpu} CPU s; load $l0 -> $(load)"
  $V destroy "$plain" >/dev/null; $V undefine "$plain" >/dev/null
  "$kubelab" -q down "$lab" >/dev/null
done

# ---- disk creation: one overlay and a spare disk, small and big ---------------------
$V pool-destroy klbench-disks >/dev/null 2>&1 || true
$V pool-undefine klbench-disks >/dev/null 2>&1 || true
$V pool-define-as klbench-disks dir --target "$work/disks" >/dev/null
$V pool-build klbench-disks >/dev/null; $V pool-start klbench-disks >/dev/null
disk_ms() { # SIZE: median ms to create a backed overlay + a spare disk of that size
  local size=$1 i ts=()
  for i in 1 2 3 4 5; do
    cat > "$work/vol.xml" <<VOL
<volume><name>o-$size-$i.qcow2</name><capacity unit="bytes">$size</capacity><target><format type="qcow2"/></target>
<backingStore><path>$base</path><format type="qcow2"/></backingStore></volume>
VOL
    local t0; t0=$(now)
    $V vol-create klbench-disks "$work/vol.xml" >/dev/null
    $V vol-create-as klbench-disks "s-$size-$i.qcow2" "$size" --format qcow2 >/dev/null
    ts+=("$(echo "($(now) - $t0) * 1000" | bc | cut -d. -f1)")
  done
  printf '%s\n' "${ts[@]}" | median
}
d4=$(disk_ms 4294967296); d256=$(disk_ms 274877906944)
echo "disks: a VM's overlay + spare disk via libvirt: 4 GiB ${d4} ms, 256 GiB ${d256} ms (median of 5)"
for v in $($V vol-list klbench-disks | awk '{print $1}'); do $V vol-delete --pool klbench-disks "$v" >/dev/null; done
$V pool-destroy klbench-disks >/dev/null; $V pool-delete klbench-disks >/dev/null; $V pool-undefine klbench-disks >/dev/null

k=$(printf '%s\n' "${kl_all[@]}" | median); p=$(printf '%s\n' "${plain_one[@]}" | median)
ratio=$(echo "scale=2; $k / $p" | bc)
echo "# load after: $(load)"
echo "vms=$n kubelab_all=$k plain_single=$p ratio=$ratio disk_4g=$d4 disk_256g=$d256"
