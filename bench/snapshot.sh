#!/usr/bin/env bash
# Lab snapshot benchmark: a running 3-VM lab (the test bed's sizes: 1 CPU,
# 768 MiB, a 2 GiB spare disk each; 150 MiB written to /dev/shm in each guest
# so that memory is not empty), `kubelab snapshot save` once, then ROUNDS
# times: a marker file written, `kubelab snapshot revert` timed until every
# VM answers SSH again, the marker checked gone. Target: revert under 15 s.
#   bench/snapshot.sh [ROUNDS]      (as root; default 5)
# Uses its own lab `bench-snap` on this machine's libvirt (subnet
# 192.168.218.0/24 unless BENCH_SUBNET says otherwise) and removes it at the
# end. Raw lines on stdout; the last line:
#   vms=3 save=S revert_median=S revert_max=S revert_maxrss_kib=K
set -euo pipefail
rounds=${1:-5}
here=$(cd "$(dirname "$0")" && pwd); top=$(dirname "$here")
"$top/scripts/deps.sh" bench; export PATH="$HOME/.cargo/bin:$PATH"
kubelab=${KUBELAB:-${CARGO_TARGET_DIR:-$top/target}/release/kubelab}
[ -x "$kubelab" ] || (cd "$top" && cargo build -q --release --locked)
storage=${BENCH_STORAGE:-/var/cache/kubelab-test}
subnet=${BENCH_SUBNET:-192.168.218}
work=$(mktemp -d /tmp/kl-snap-bench.XXXXXX)
export KUBELAB_STATE_DIR=$work/state
lab=$work/bench-snap.yaml
cat > "$lab" <<LAB
name: bench-snap
virthost: {local: true, domain_type: auto, tcg_cache: 1GiB, storage_dir: $storage}
image: {build: debian-12}
networks:
  - {name: lan, kind: nat, ipv4: $subnet.0/24}
defaults: {cpus: 1, memory: 768MiB, disk: 6GiB}
vms:
  - name: s{1..3}
    spare_disks: [{size: 2GiB}]
LAB
cleanup() { "$kubelab" -q --no-collect down "$lab" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
load() { cut -d' ' -f1-3 /proc/loadavg; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }

echo "# snapshot benchmark: 3 VMs, $rounds round(s), $(nproc) CPUs, $(date -u +%FT%TZ); load before: $(load); other QEMU guests: $(pgrep -c qemu-system || true)"
"$kubelab" -q up --timeout 900 "$lab" >/dev/null
for vm in s1 s2 s3; do
  "$kubelab" ssh "$lab" "$vm" -- 'sudo dd if=/dev/urandom of=/dev/shm/fill bs=1M count=150 status=none'
done
save=$("$kubelab" --json snapshot "$lab" save clean | grep snapshot_saved)
echo "save: $(echo "$save" | field secs)s in all, VMs paused $(echo "$save" | field paused_secs)s; load $(load)"
reverts=(); rss=0
for r in $(seq 1 "$rounds"); do
  "$kubelab" ssh "$lab" s2 -- 'echo after > /tmp/marker'
  l0=$(load)
  m=$(python3 "$here/measure.py" "$kubelab" snapshot "$lab" revert clean)
  case $m in *rc=0*) ;; *) echo "round $r: revert failed: $m" >&2; exit 1 ;; esac
  wall=$(echo "$m" | sed 's/wall=\([0-9.]*\).*/\1/'); k=$(echo "$m" | sed 's/.*maxrss_kib=\([0-9]*\).*/\1/')
  [ "$k" -gt "$rss" ] && rss=$k
  if "$kubelab" ssh "$lab" s2 -- 'test -e /tmp/marker'; then echo "round $r: the marker survived the revert" >&2; exit 1; fi
  reverts+=("$wall")
  echo "round $r: revert of 3 running VMs until all answer SSH: ${wall}s (peak RSS ${k} KiB); load $l0 -> $(load)"
done
med=$(printf '%s\n' "${reverts[@]}" | median); max=$(printf '%s\n' "${reverts[@]}" | sort -g | tail -n1)
echo "vms=3 save=$(echo "$save" | field secs) revert_median=$med revert_max=$max revert_maxrss_kib=$rss"
