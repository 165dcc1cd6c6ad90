#!/usr/bin/env bash
# The shipped labs, run as a user runs them: each lab's own image definition
# (a plain `build: debian-12` plus the packages the lab file lists, nothing
# pre-installed), brought up on this machine as the local virthost, checked,
# and taken down again.
#
#   scripts/labs-smoke.sh [LAB...]        (default: every lab below)
#
# As root (or with sudo) on a Debian 12 machine; installs what it needs
# (scripts/deps.sh virthost, Rust through rustup when there is no cargo).
# CPUs and memory are shrunk for a small machine with `--set` (the lab files
# stay as written). Each lab runs as far as a machine without internet
# allows and must stop exactly where this says, with the documented
# message:
#   minimal                 up, a second up changes nothing, ssh, down
#   service-chain overlay tenants cloud-router ratchet
#                           up (scenario setup included), verify, down
#   gluster                 up stops at the Kubernetes downloads check; the
#                           glusterfs scenario in host mode (--set) sets up
#                           and verifies on the same VMs; down
#   ipv6                    up passes the NAT64/DNS64 stage, stops within
#                           seconds at the Kubernetes downloads check; NAT64
#                           and DNS64 checked from kube-master; down
# Logs and the timings table: target/labs-smoke/ (KUBELAB_SMOKE_OUT).
# Exit status: the number of labs that did not behave as documented.
set -uo pipefail
cd "$(dirname "$0")/.."

labs=("$@")
[ ${#labs[@]} -gt 0 ] || labs=(minimal service-chain overlay tenants cloud-router ratchet gluster ipv6)

bash scripts/deps.sh virthost
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -q || exit 100
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
kubelab_bin=$PWD/target/release/kubelab
out=${KUBELAB_SMOKE_OUT:-$PWD/target/labs-smoke}
mkdir -p "$out"
state=$out/state
# Smaller than the labs' authors' machines: one CPU and 1 GiB per VM
# (2 cores here; the labs' own sizes are for Kubernetes).
small=(--set defaults.cpus=1 --set defaults.memory=1GiB)

# kubelab with the lab's state under $out; output appended to the lab's log.
kl() { $SUDO env KUBELAB_STATE_DIR="$state" "$kubelab_bin" --color never "$@"; }

log=
step_log() { echo "+ kubelab $*" >>"$log"; }
# Run kubelab, keep its output in $text, return its exit status.
text=
run() {
  step_log "$@"
  text=$(kl "$@" 2>&1); local rc=$?
  printf '%s\n[exit %s]\n' "$text" "$rc" >>"$log"
  return $rc
}
fail() { echo "FAILED: $*" >>"$log"; echo "  $lab: FAILED: $*" >&2; ok=0; }
expect_ok() { run "$@" || fail "kubelab $* exited non-zero"; }
expect_stop() { # WANTED... -- ARGS: exit 1 and every WANTED text in the output
  local wanted=()
  while [ "$1" != -- ]; do wanted+=("$1"); shift; done; shift
  run "$@"; local rc=$?
  [ "$rc" = 1 ] || fail "kubelab $* exited $rc, expected 1 (stopped at the boundary)"
  for w in "${wanted[@]}"; do
    grep -qF -- "$w" <<<"$text" || fail "kubelab $*: output lacks \"$w\""
  done
}
contains() { grep -qF -- "$1" <<<"$text" || fail "output lacks \"$1\""; }
now() { date +%s; }

declare -A took_up took_all result
failures=0
for lab in "${labs[@]}"; do
  file=labs/$lab.yaml
  log=$out/$lab.log
  : >"$log"
  ok=1
  echo "labs-smoke: $lab ..." >&2
  t0=$(now)
  case $lab in
    minimal)
      expect_ok "${small[@]}" up --timeout 900 "$file"
      took_up[$lab]=$(( $(now) - t0 ))
      expect_ok "${small[@]}" up --timeout 900 "$file"
      contains "lab minimal: 0 changes (virthost: 0 changed)"
      expect_ok "${small[@]}" ssh "$file" node-2 -- true
      ;;
    service-chain | overlay | tenants | cloud-router | ratchet)
      expect_ok "${small[@]}" up --timeout 900 "$file"
      took_up[$lab]=$(( $(now) - t0 ))
      expect_ok "${small[@]}" verify "$file"
      ;;
    gluster)
      expect_stop "stage \`kubernetes\` failed" \
        "master cannot reach what the Kubernetes stage downloads: pkgs.k8s.io:443" \
        "kubernetes.airgap_dir" -- "${small[@]}" up --timeout 900 "$file"
      took_up[$lab]=$(( $(now) - t0 ))
      host=(--set 'scenarios.0.params={mode: host, storage: [node-1, node-2, node-3], client: master, replica: 3}')
      expect_ok "${small[@]}" "${host[@]}" scenario "$file" glusterfs setup
      expect_ok "${small[@]}" "${host[@]}" verify "$file"
      expect_ok "${small[@]}" "${host[@]}" scenario "$file" glusterfs teardown
      ;;
    ipv6)
      expect_stop "stage \`kubernetes\` failed" \
        "kube-master cannot reach what the Kubernetes stage downloads: pkgs.k8s.io:443" \
        "kubernetes.airgap_dir" -- "${small[@]}" up --timeout 900 "$file"
      took_up[$lab]=$(( $(now) - t0 ))
      ts=$(now)
      expect_stop "cannot reach what the Kubernetes stage downloads" -- \
        "${small[@]}" play kubernetes/sources --lab "$file"
      [ $(( $(now) - ts )) -le 30 ] || fail "the downloads check took more than 30 s"
      # IPv4 through NAT64 (the virthost's address on the lab network) and an
      # A-only name answered in 64:ff9b::/96 by DNS64, from kube-master.
      expect_ok "${small[@]}" ssh "$file" kube-master -- ping -6 -c 2 -W 5 64:ff9b::192.168.152.1
      expect_ok "${small[@]}" ssh "$file" kube-master -- getent ahostsv6 virthost.ipv6.test
      contains "64:ff9b::c0a8:9801"
      ;;
    *)
      echo "labs-smoke: no expectations for lab $lab" >&2
      exit 2
      ;;
  esac
  run down "$file" || fail "down"
  took_all[$lab]=$(( $(now) - t0 ))
  if [ "$ok" = 1 ]; then result[$lab]=passed; else result[$lab]=FAILED; failures=$((failures + 1)); fi
  echo "labs-smoke: $lab ${result[$lab]} (up ${took_up[$lab]:-?} s, all ${took_all[$lab]} s)" >&2
done

{
  echo "| lab | result | up (s) | whole run (s) |"
  echo "|---|---|---|---|"
  for lab in "${labs[@]}"; do
    echo "| $lab | ${result[$lab]} | ${took_up[$lab]:-?} | ${took_all[$lab]} |"
  done
} | tee "$out/timings.md"
exit "$failures"
