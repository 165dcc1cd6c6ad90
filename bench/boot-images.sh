#!/usr/bin/env bash
# Boot to SSH of two built images side by side: the image the current recipe
# builds (`build: debian-12`) and an older one (a file, e.g. the previous
# recipe's image from the cache), in interleaved rounds of `bench/boot.sh 1 1`
# (one VM through `kubelab up`, then the same guest with plain virsh), the
# order swapped every round.
#   bench/boot-images.sh OLD_IMAGE [ROUNDS]      (as root; default ROUNDS=3)
# Writes bench/logs/boot-images.out; the last line:
#   old_kubelab=S new_kubelab=S old_plain=S new_plain=S (medians)
set -euo pipefail
old=${1:?usage: bench/boot-images.sh OLD_IMAGE [ROUNDS]}; rounds=${2:-3}
here=$(cd "$(dirname "$0")" && pwd)
[ -f "$old" ] || { echo "no image $old" >&2; exit 1; }
sum=$(sha256sum < "$old" | cut -c1-64)
mkdir -p "$here/logs"
out=$here/logs/boot-images.out
exec > >(tee "$out") 2>&1
echo "# old: $old ($sum); new: the current recipe's build"
run() { # WHICH ROUND
  if [ "$1" = old ]; then
    BENCH_IMAGE="{url: \"file://$old\", sha256: $sum}" bash "$here/boot.sh" 1 1
  else
    bash "$here/boot.sh" 1 1
  fi | sed "s/^/$1 r$2: /"
}
for r in $(seq 1 "$rounds"); do
  if [ $((r % 2)) = 1 ]; then run new "$r"; run old "$r"; else run old "$r"; run new "$r"; fi
done
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
pick() { # WHICH FIELD
  grep "^$1 r[0-9]*: vms=" "$out" | sed "s/.* $2=\([0-9.]*\).*/\1/" | median
}
echo "old_kubelab=$(pick old kubelab_all) new_kubelab=$(pick new kubelab_all) old_plain=$(pick old plain_single) new_plain=$(pick new plain_single)"
