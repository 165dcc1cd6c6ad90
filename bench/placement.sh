#!/usr/bin/env bash
# Placement at scale: `kubelab validate` of a lab of 100 VMs over 10
# virthosts that say what they may give (so validation places every VM),
# with two networks, against the same lab on one virthost (no placement).
# What `plan` adds per virthost (one libvirt listing and the tunnel state,
# all virthosts at once) needs the virthosts and is not in this figure.
#   bench/placement.sh [RUNS]      (default 10)
# Prints every run (wall seconds, peak RSS) and the medians; the last line:
#   vms=100 virthosts=10 spread_median=S single_median=S
set -euo pipefail
runs=${1:-10}
here=$(cd "$(dirname "$0")" && pwd); top=$(dirname "$here")
"$top/scripts/deps.sh" bench; export PATH="$HOME/.cargo/bin:$PATH"
(cd "$top" && cargo build --release -q)
kubelab=${CARGO_TARGET_DIR:-$top/target}/release/kubelab
work=$(mktemp -d /tmp/kl-placement.XXXXXX); trap 'rm -rf "$work"' EXIT

vms() { for i in $(seq 0 99); do printf '  - name: node-%d\n    memory: 4GiB\n    cpus: 2\n' "$i"; done; }
nets='networks:
  - name: lan
    ipv4: 10.100.0.0/16
    ipv6: fd00:100::/64
  - name: data
    kind: isolated
    ipv4: 10.101.0.0/16'
{
  echo "name: scale"; echo "virthosts:"
  for i in $(seq 0 9); do
    printf '  - name: rack-%d\n    address: 192.0.2.%d\n    memory: 64GiB\n    cpus: 32\n' "$i" $((10 + i))
  done
  echo "placement: spread"; echo "image: {build: debian-12}"; echo "$nets"; echo "vms:"; vms
} > "$work/spread.yaml"
{
  echo "name: scale"; echo "virthost: {address: 192.0.2.10}"
  echo "image: {build: debian-12}"; echo "$nets"; echo "vms:"; vms
} > "$work/single.yaml"
"$kubelab" validate "$work/spread.yaml" | cut -c1-160

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
spread=(); single=()
echo "# $runs rounds, interleaved; $(nproc) CPUs; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$runs"); do
  s=$(python3 "$here/measure.py" "$kubelab" validate "$work/spread.yaml")
  o=$(python3 "$here/measure.py" "$kubelab" validate "$work/single.yaml")
  echo "round $r: spread $s; single $o"
  spread+=("$(echo "$s" | sed 's/wall=\([0-9.]*\).*/\1/')")
  single+=("$(echo "$o" | sed 's/wall=\([0-9.]*\).*/\1/')")
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "vms=100 virthosts=10 spread_median=$(printf '%s\n' "${spread[@]}" | median) single_median=$(printf '%s\n' "${single[@]}" | median)"
