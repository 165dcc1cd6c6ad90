#!/usr/bin/env bash
# Node-prep benchmark: the same workload with kubelab, Ansible, pyinfra and the
# OpenSSH one-script floor against N real sshd hosts (network namespaces).
#   bench/nodeprep.sh N [RUNS]      (as root; default N=4, RUNS=5)
# Prints per-tool medians and ratios; the last line is
#   hosts=N kubelab=S ansible=S pyinfra=S floor=S
# (median wall seconds of a first run on fresh hosts). Also measured:
# kubelab's no-change second run and its peak RSS.
set -euo pipefail
n=${1:-4}; runs=${2:-5}
here=$(cd "$(dirname "$0")" && pwd); top=$(dirname "$here")
# sshd, python3-venv, a C toolchain and Rust: what a fresh machine lacks.
"$top/scripts/deps.sh" bench; export PATH="$HOME/.cargo/bin:$PATH"
dir=${KL_BENCH_DIR:-/tmp/kl-bench}; export KL_BENCH_DIR=$dir
venv=${KL_BENCH_VENV:-/tmp/kl-bench-venv}
log=$dir/bench.log; mkdir -p "$dir"; : > "$log"; export MEASURE_LOG=$log

"$here/hosts.sh" up "$n"
if [ ! -x "$venv/bin/ansible-playbook" ] || [ ! -x "$venv/bin/pyinfra" ]; then
  echo "installing ansible-core and pyinfra from PyPI into $venv" >&2
  python3 -m venv "$venv" && "$venv/bin/pip" -q install ansible-core pyinfra >&2
fi
(cd "$top" && cargo build --release -q)
# The binary where cargo put it: CARGO_TARGET_DIR, when set, moves it.
kubelab=${CARGO_TARGET_DIR:-$top/target}/release/kubelab

fresh() { rm -rf /tmp/kl-bench-work/root; }
inv=$dir/inventory.$n.ini
head -n $((n + 1)) "$dir/inventory.ini" > "$inv"; tail -n 3 "$dir/inventory.ini" >> "$inv"

run_kubelab() {
  "$kubelab" play -q -i "$inv" --known-hosts "$dir/known_hosts" "$top/playbooks/nodeprep-bench.yaml"
}
run_ansible() {
  ANSIBLE_PIPELINING=1 ANSIBLE_HOST_KEY_CHECKING=1 ANSIBLE_SSH_ARGS="-o UserKnownHostsFile=$dir/known_hosts -o ControlMaster=auto -o ControlPersist=60s -o ControlPath=$dir/cm-%h" \
    "$venv/bin/ansible-playbook" -i "$inv" -f "$n" -e ansible_python_interpreter=/usr/bin/python3 "$here/ansible/nodeprep.yml"
}
# pyinfra reads its hosts from an inventory file: given as one
# comma-separated argument, pyinfra stops working above about 20 hosts.
pyinv=$dir/pyinfra_inventory.$n.py
{ printf 'hosts = [\n'; head -n "$n" "$dir/hosts.txt" | awk '{printf "    \"%s\",\n", $2}'; printf ']\n'; } > "$pyinv"
run_pyinfra() {
  (cd "$here/pyinfra" && "$venv/bin/pyinfra" -y --parallel "$n" --ssh-user klbench --ssh-key "$dir/id_ed25519" \
     --data ssh_known_hosts_file="$dir/known_hosts" --data ssh_strict_host_key_checking=yes "$pyinv" nodeprep.py)
}
run_floor() { "$here/floor.sh" "$n"; }

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }
export -f run_kubelab run_ansible run_pyinfra run_floor
export kubelab inv pyinv dir here top venv n

measure() { # tool fresh|again -> prints "wall rss"
  local tool=$1 mode=$2 out
  [ "$mode" = fresh ] && fresh
  out=$(python3 "$here/measure.py" bash -c "run_$tool")
  case "$out" in *" rc=0") ;; *) echo "$tool failed ($out); see $log" >&2; exit 1 ;; esac
  # A tool that "succeeds" without doing the work (e.g. an inventory that
  # matched no host) must not count: every host needs its marker file.
  local done_hosts; done_hosts=$(find /tmp/kl-bench-work/root -mindepth 2 -maxdepth 2 -name prepared 2>/dev/null | wc -l)
  [ "$done_hosts" = "$n" ] || { echo "$tool: only $done_hosts of $n hosts prepared; see $log" >&2; exit 1; }
  echo "$out" | sed -E 's/wall=([0-9.]+) maxrss_kib=([0-9]+).*/\1 \2/'
}

# Rounds: every round runs each tool once (fresh hosts), then kubelab's
# no-change run, so all tools see the same background load (the machine is
# shared); medians over the rounds.
declare -A walls
rss=(); again=()
for round in $(seq 1 "$runs"); do
  for tool in floor kubelab pyinfra ansible; do
    r=$(measure "$tool" fresh); walls[$tool]+="${r% *} "
    echo "round $round $tool fresh: $r load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$log"
    [ "$tool" = kubelab ] && rss+=("${r#* }")
  done
  # No-change run: a kubelab-prepared tree (Ansible's or pyinfra's output
  # may differ in details), then the measured run must report changed=0.
  fresh; bash -c run_kubelab >> "$log" 2>&1
  r=$(measure kubelab again); again+=("${r% *}"); rss+=("${r#* }")
  echo "round $round kubelab again: $r load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$log"
  unchanged=$("$kubelab" play -i "$inv" --known-hosts "$dir/known_hosts" "$top/playbooks/nodeprep-bench.yaml" 2>&1 | grep -c ' changed=0 ' || true)
  [ "$unchanged" = "$n" ] || { echo "kubelab: a no-change run changed something on $((n - unchanged)) host(s); see $log" >&2; exit 1; }
done
declare -A med
for tool in floor kubelab pyinfra ansible; do
  # shellcheck disable=SC2086
  med[$tool]=$(printf '%s\n' ${walls[$tool]} | median)
  echo "$tool: first run median ${med[$tool]}s over $runs runs (${walls[$tool]% })"
done
med_again=$(printf '%s\n' "${again[@]}" | median)
max_rss=$(printf '%s\n' "${rss[@]}" | sort -n | tail -n1)
echo "kubelab: no-change run median ${med_again}s over $runs runs (${again[*]}); peak RSS $((max_rss / 1024)) MiB (max over first and no-change runs)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", a/b}'; }
echo "ratios: ansible/kubelab=$(ratio "${med[ansible]}" "${med[kubelab]}")x pyinfra/kubelab=$(ratio "${med[pyinfra]}" "${med[kubelab]}")x kubelab/floor=$(ratio "${med[kubelab]}" "${med[floor]}")x"
echo "ratios: kubelab-again/floor=$(ratio "$med_again" "${med[floor]}")x"
echo "load: $(uptime)"
echo "hosts=$n kubelab=${med[kubelab]} kubelab_again=$med_again ansible=${med[ansible]} pyinfra=${med[pyinfra]} floor=${med[floor]}"
