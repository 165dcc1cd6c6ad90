#!/usr/bin/env bash
# VM layer side by side: kubelab, kcli and plain virsh bring up N VMs from the
# same base image (1 vCPU, 640 MiB, a 4 GiB qcow2 overlay, TCG, a NAT network
# of their own) until every VM answers an SSH login, then remove everything.
#   bench/vms.sh [N] [ROUNDS]      (as root; default N=1, ROUNDS=3)
# Per round each tool runs once (the order rotates from round to round, so no
# tool always comes first or last on a shared machine). Figures per tool:
#   ssh   - seconds from the start of the tool's command(s) until an SSH login
#           succeeded on every VM (kubelab: `up` waits for SSH itself, so the
#           end of `up` is the mark; logins are checked afterwards too);
#   clean - seconds to remove the VMs, their disks and the network;
#   rss   - peak RSS of the tool's process tree (bench/measure.py), up or down.
# Writes bench/logs/vms-N.out (everything printed) and
# bench/logs/vms-N.kubelab.jsonl (kubelab's per-step timings, `--json up`).
# Objects: kubelab's lab `vms-kl` (kubelab names its objects kl-vms-kl-*),
# kcli's pool/network/VMs vms-kcli*, the baseline's vms-virsh*; all removed
# at exit. No other libvirt object of the machine is touched.
set -euo pipefail
n=${1:-1}; rounds=${2:-3}
# here, top, V, load, now, since, median, lease_ip, ...; installs the deps
. "$(dirname "$0")/lib.sh"
storage=${BENCH_STORAGE:-/var/cache/kubelab-test}
venv=${VMS_VENV:-/tmp/vms-bench-venv}
work=$(mktemp -d /tmp/vms-bench.XXXXXX)
mkdir -p "$here/logs"
out=$here/logs/vms-$n.out; steps=$here/logs/vms-$n.kubelab.jsonl
exec > >(tee "$out") 2>&1
: > "$steps"
export MEASURE_LOG=$work/tools.log
mem=640; disk=4

# ---- the tools ------------------------------------------------------------------
# kubelab: a release build of this tree (or $KUBELAB).
if [ -z "${KUBELAB:-}" ]; then
  (cd "$top" && cargo build --release -q)
  KUBELAB=${CARGO_TARGET_DIR:-$top/target}/release/kubelab
fi
kubelab=$KUBELAB
# kcli from PyPI, pinned with hashes; libvirt-python is built from source
# against the machine's libvirt (9.0 on Debian 12), hence Debian's python3.
reqs=$here/kcli-requirements.txt
if ! cmp -s "$reqs" "$venv/requirements.txt" 2>/dev/null; then
  echo "installing kcli and libvirt-python into $venv" >&2
  rm -rf "$venv"; /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" -q install --require-hashes -r "$reqs" 2>&1 | grep -v DEPRECATION >&2 || true
  "$venv/bin/python" -c 'import libvirt, kvirt' && cp "$reqs" "$venv/requirements.txt"
fi
kcli_v=$("$venv/bin/pip" show kcli | sed -n 's/^Version: //p')

libvirt_ready
# ---- the base image ---------------------------------------------------------------
# kubelab's own debian-12 recipe with Debian's generic kernel, so that kcli
# can use it (kcli attaches its cloud-init ISO as a SATA CD-ROM, hard-coded
# for x86, and the recipe's cloud kernel has no AHCI driver, so kcli's guests
# would never see their seed; the recipe's initramfs carries ext4 for this
# kernel). The recipe caches by its text and packages, so this variant is
# built once (~5 min) and kept next to kubelab's images. All three tools boot this same file; kubelab
# takes it as a file:// image with its checksum, placed where its download
# would put it (so `up` neither copies nor hashes it).
built=$(KUBELAB_EXTRA_PACKAGES=linux-image-amd64 KUBELAB_IMAGE_DIR=$storage/images \
  sh "$top/templates/virthost/build-image-debian.sh" 2>>"$work/image.log" | tail -n 1)
[ -f "$built" ] || { cat "$work/image.log"; echo "no base image" >&2; exit 1; }
[ -f "$built.sha256" ] || sha256sum < "$built" | cut -c1-64 > "$built.sha256"
sum=$(cat "$built.sha256"); image=$storage/images/$sum.img
[ -f "$image" ] || cp --reflink=auto "$built" "$image"

# Each tool gets a NAT network of its own, made the tool's usual way, inside
# its timed `up` (kubelab's `up` makes the lab's network; kcli: `kcli create
# network`; virsh: net-define/net-start), on subnets no route here covers.
read -r s_kl s_kcli s_virsh < <(free_subnets 3 221)
[ -n "$s_virsh" ] || { echo "no three free 192.168.X.0/24 subnets" >&2; exit 1; }

# kubelab: the lab file (domain type qemu: KVM hangs on this machine).
lab=$work/vms-kl.yaml
export KUBELAB_STATE_DIR=$work/state
cat > "$lab" <<LAB
name: vms-kl
virthost: {local: true, domain_type: qemu, storage_dir: $storage}
image: {url: "file://$built", sha256: $sum}
networks:
  - {name: lan, kind: nat, ipv4: $s_kl.0/24}
defaults: {cpus: 1, memory: ${mem}MiB, disk: ${disk}GiB}
vms:
  - name: v{1..$n}
LAB

# kcli: its config in a HOME of its own (nothing of the user's is read or
# changed), a key it injects (it takes ~/.ssh/id_*.pub), TCG, and the guest
# CPU model the other two get from libvirt's default under TCG (qemu64;
# kcli's default host-model would give its guests a different CPU). Its pool
# is a directory with a copy of the base image, made once, outside the timing
# (like kubelab's image cache).
khome=$work/kcli-home; kpool=$storage/vms-kcli
mkdir -p "$khome/.kcli" "$khome/.ssh" "$kpool"
ssh-keygen -q -t ed25519 -N '' -C vms-bench -f "$khome/.ssh/id_ed25519"
cat > "$khome/.kcli/config.yml" <<CFG
default:
  client: local
  pool: vms-kcli
  virttype: qemu
  cpumodel: qemu64
local:
  type: kvm
  host: 127.0.0.1
CFG
kcli() { HOME=$khome "$venv/bin/kcli" "$@"; }
kimage=vms-debian-12.qcow2

# virsh by hand: files in a directory, a written domain XML, a qemu-img
# overlay and a NoCloud seed ISO per VM. Same virtio disk and NIC and the
# same virtio RNG as kubelab's domains (without it the guest's getrandom()
# blocks for seconds under TCG, which no careful person's XML would leave).
vdir=$storage/vms-virsh
mkdir -p "$vdir"
ssh-keygen -q -t ed25519 -N '' -C vms-bench -f "$work/virsh_key"

# Removes every object of ours (and only those) from libvirt, and their files;
# with "all" also kcli's pool and its copy of the image.
sweep() (
  set +e
  "$kubelab" -q down "$lab" >/dev/null 2>&1
  for d in $($V list --all --name | grep -E '^(vms-kcli-|vms-virsh-)'); do
    $V destroy "$d" >/dev/null 2>&1; $V undefine "$d" >/dev/null 2>&1
  done
  for net in vms-kcli-net vms-virsh-net; do
    $V net-destroy "$net" >/dev/null 2>&1; $V net-undefine "$net" >/dev/null 2>&1
  done
  rm -rf "${vdir:?}"/* "$kpool"/vms-kcli-[0-9]*; $V pool-refresh vms-kcli >/dev/null 2>&1
  [ "${1:-}" = all ] || exit 0   # a failed round: kcli's pool and image stay
  $V pool-destroy vms-kcli >/dev/null 2>&1; $V pool-undefine vms-kcli >/dev/null 2>&1
  rm -rf "$kpool"; mkdir -p "$kpool"
)
trap 'sweep all; rm -rf "$kpool" "$vdir" "$work"' EXIT
trap 'exit 143' INT TERM   # so that a killed run removes its objects too

# ---- up and down, per tool (each run as one command under measure.py) -------------
kl_up() { "$kubelab" --json up --timeout 600 "$lab"; }
kl_down() { "$kubelab" -q down "$lab"; }
kcli_up() {
  kcli create network -c "$s_kcli.0/24" vms-kcli-net &&
  kcli create vm -i "$kimage" -P memory=$mem -P numcpus=1 -P "disks=[$disk]" \
    -P nets=[vms-kcli-net] -P pool=vms-kcli -c "$n" vms-kcli
}
kcli_down() {
  kcli delete vm -y $(seq -f 'vms-kcli-%g' 0 $((n - 1))) && kcli delete network -y vms-kcli-net
}
virsh_up() {
  cat > "$vdir/net.xml" <<NET
<network><name>vms-virsh-net</name><forward mode='nat'/><bridge name='vms-virsh0'/>
  <ip address='$s_virsh.1' netmask='255.255.255.0'><dhcp><range start='$s_virsh.2' end='$s_virsh.254'/></dhcp></ip>
</network>
NET
  $V net-define "$vdir/net.xml" >/dev/null && $V net-start vms-virsh-net >/dev/null || return 1
  local i name
  for i in $(seq 1 "$n"); do
    name=vms-virsh-$i
    qemu-img create -q -f qcow2 -F qcow2 -b "$image" "$vdir/$name.qcow2" ${disk}G || return 1
    mkdir -p "$vdir/$name-seed"
    printf 'instance-id: %s\nlocal-hostname: %s\n' "$name" "$name" > "$vdir/$name-seed/meta-data"
    printf '#cloud-config\nusers:\n  - name: bench\n    sudo: ALL=(ALL) NOPASSWD:ALL\n    shell: /bin/bash\n    ssh_authorized_keys: [%s]\n' \
      "$(cat "$work/virsh_key.pub")" > "$vdir/$name-seed/user-data"
    genisoimage -quiet -o "$vdir/$name-seed.iso" -V cidata -J -R \
      "$vdir/$name-seed/user-data" "$vdir/$name-seed/meta-data" || return 1
    cat > "$vdir/$name.xml" <<DOM
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>$mem</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/><source file='$vdir/$name.qcow2'/><target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/><source file='$vdir/$name-seed.iso'/><target dev='hdc' bus='ide'/><readonly/>
    </disk>
    <interface type='network'><source network='vms-virsh-net'/><model type='virtio'/></interface>
    <serial type='pty'/><console type='pty'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>
DOM
    $V define "$vdir/$name.xml" >/dev/null && $V start "$name" >/dev/null || return 1
  done
}
virsh_down() {
  local i
  for i in $(seq 1 "$n"); do
    $V destroy "vms-virsh-$i" >/dev/null && $V undefine "vms-virsh-$i" >/dev/null || return 1
    rm -rf "$vdir/vms-virsh-$i".* "$vdir/vms-virsh-$i-seed"*
  done
  $V net-destroy vms-virsh-net >/dev/null && $V net-undefine vms-virsh-net >/dev/null
}
export -f kl_up kl_down kcli_up kcli_down virsh_up virsh_down kcli
export kubelab lab n mem disk s_kcli s_virsh kimage khome venv vdir image work V

# An SSH login ("true") on every one of DOMAINS as USER with KEY; polls every
# 0.5 s, 600 s at most. Host keys are not pinned here (kcli does not pin them
# either); kubelab's logins below use the host keys `up` pinned.
wait_ssh() { # USER KEY DOMAIN...
  local user=$1 key=$2 t0 d ip; shift 2
  local left=("$@"); t0=$(now)
  while :; do
    local still=()
    for d in "${left[@]}"; do
      ip=$(lease_ip "$d")
      [ -n "$ip" ] && ssh -q -i "$key" -o BatchMode=yes -o ConnectTimeout=3 -o StrictHostKeyChecking=no \
        -o UserKnownHostsFile=/dev/null "$user@$ip" true 2>/dev/null || still+=("$d")
    done
    [ ${#still[@]} -eq 0 ] && return 0
    left=("${still[@]}")
    [ "$(echo "$(since "$t0") > 600" | bc)" = 1 ] && { echo "no SSH on ${left[*]} in 600s" >&2; return 1; }
    sleep 0.5
  done
}
kl_verify() {
  local i ip
  for i in $(seq 1 "$n"); do
    ip=$(lease_ip "kl-vms-kl-v$i")
    ssh -q -i "$KUBELAB_STATE_DIR/vms-kl/id_ed25519" -o BatchMode=yes -o ConnectTimeout=5 \
      -o UserKnownHostsFile="$KUBELAB_STATE_DIR/vms-kl/known_hosts" -o HostKeyAlias="v$i" \
      -o StrictHostKeyChecking=yes "kubelab@$ip" true || { echo "kubelab VM v$i ($ip): no SSH login after up" >&2; return 1; }
  done
}
# Nothing of the tool left in libvirt after its down.
left_over() { # ERE
  { $V list --all --name; $V net-list --all --name; } | grep -E "$1" || true
}

run() { # TOOL up|down -> "wall rss" (fails the benchmark when the command fails)
  local r; r=$(python3 "$here/measure.py" bash -c "${1}_$2")
  case "$r" in *" rc=0") ;; *) echo "$1 $2 failed ($r); its output:" >&2; tail -n 40 "$MEASURE_LOG" >&2; exit 1 ;; esac
  echo "$r" | sed -E 's/wall=([0-9.]+) maxrss_kib=([0-9]+).*/\1 \2/'
}

round_tool() { # ROUND TOOL: one up (to SSH on every VM) and one down, one line of figures
  local round=$1 tool=$2 l0 g0 t0 r_up r_down ssh clean
  l0=$(load); g0=$(other_guests 'vms-|kl-vms-kl-')
  t0=$(now)
  case $tool in
    kl)
      r_up=$(MEASURE_OUT=$work/up.json run kl up); ssh=$(since "$t0")
      kl_verify
      sed "s/^{/{\"round\":$round,/" "$work/up.json" >> "$steps"; rm -f "$work/up.json"
      local base; base=$(grep '"event":"up"' "$steps" | tail -n 1 | sed 's/.*"base_image":"\([^"]*\)".*/\1/')
      [ "$base" = "$image" ] || { echo "kubelab booted $base, not $image" >&2; exit 1; } ;;
    kcli)
      r_up=$(run kcli up)
      wait_ssh root "$khome/.ssh/id_ed25519" $(seq -f 'vms-kcli-%g' 0 $((n - 1))); ssh=$(since "$t0") ;;
    virsh)
      r_up=$(run virsh up)
      wait_ssh bench "$work/virsh_key" $(seq -f 'vms-virsh-%g' 1 "$n"); ssh=$(since "$t0") ;;
  esac
  local l1; l1=$(load)
  t0=$(now); r_down=$(run "$tool" down); clean=$(since "$t0")
  local rest; rest=$(left_over "^(kl-vms-kl-|vms-kcli-|vms-virsh-)")
  [ -z "$rest" ] || { echo "$tool left behind: $rest" >&2; exit 1; }
  local rss=$(( ${r_up#* } > ${r_down#* } ? ${r_up#* } : ${r_down#* } ))
  printf 'round %s %-6s ssh=%.2f clean=%.2f rss_kib=%s (up %s, down %s) up_cmd=%ss load=%s -> %s other_qemu=%s\n' \
    "$round" "$tool" "$ssh" "$clean" "$rss" "${r_up#* }" "${r_down#* }" "${r_up% *}" "$l0" "$l1" "$g0"
}

echo "# vms benchmark: N=$n, $rounds round(s), $(nproc) CPUs, $(date -u '+%F %T') UTC; kubelab $("$kubelab" --version 2>/dev/null | head -n1), kcli $kcli_v, $(virsh --version | sed 's/^/libvirt /'), $(qemu-system-x86_64 --version | head -n1)"
echo "# image $image; subnets kubelab $s_kl.0/24, kcli $s_kcli.0/24, virsh $s_virsh.0/24; load before: $(load); other QEMU guests: $(other_guests 'vms-|kl-vms-kl-')"
sweep all   # leftovers of an interrupted earlier run
# kcli's pool with the image in it (a copy: libvirt may relabel files in pools)
kcli create pool -p "$kpool" vms-kcli >/dev/null
cp --reflink=auto "$image" "$kpool/$kimage"; $V pool-refresh vms-kcli >/dev/null
tools=(kl kcli virsh)
for round in $(seq 1 "$rounds"); do
  for k in 0 1 2; do
    t=${tools[$(( (round - 1 + k) % 3 ))]}
    # A tool that fails a round (e.g. no SSH within 600 s on an overloaded
    # machine) gets a FAILED line and its objects removed; the rounds go on.
    # (Run as a background job so that `set -e` still applies inside it.)
    round_tool "$round" "$t" & wait $! || { echo "round $round $t FAILED"; sweep; }
  done
done | tee "$work/rounds"

# ---- medians ------------------------------------------------------------------------
col() { { grep " $1 .* ssh=" "$work/rounds" || true; } | sed -E "s/.* $2=([0-9.]+).*/\1/"; }
declare -A S C R
for t in kl kcli virsh; do
  S[$t]=$(col "$t" ssh | median); C[$t]=$(col "$t" clean | median)
  R[$t]=$(col "$t" rss_kib | sort -n | tail -n 1)
  # a tool that failed every round has no figures
  [ -n "${S[$t]}" ] || { S[$t]=n/a; C[$t]=n/a; R[$t]=0; }
done
ratio() { case "$1$2" in *n/a*) echo n/a ;; *) echo "scale=2; $1 / $2" | bc ;; esac; }
echo "# load after: $(load)"
printf '# medians over %s rounds (s); peak RSS (MiB) over all rounds\n' "$rounds"
for t in kl kcli virsh; do
  printf '%-6s ssh=%s clean=%s peak_rss_mib=%s\n' "$t" "${S[$t]}" "${C[$t]}" "$(echo "scale=1; ${R[$t]} / 1024" | bc)"
done
echo "vms=$n kubelab_ssh=${S[kl]} kcli_ssh=${S[kcli]} virsh_ssh=${S[virsh]} kubelab_clean=${C[kl]} kcli_clean=${C[kcli]} virsh_clean=${C[virsh]} ssh_kl/kcli=$(ratio "${S[kl]}" "${S[kcli]}") ssh_kl/virsh=$(ratio "${S[kl]}" "${S[virsh]}") clean_kl/kcli=$(ratio "${C[kl]}" "${C[kcli]}") clean_kl/virsh=$(ratio "${C[kl]}" "${C[virsh]}")"
