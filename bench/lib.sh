# Shared preamble of the libvirt benchmarks (bench/boot.sh, bench/vms.sh):
# sourced, not run. Sets `here`, `top`, `V` (virsh on the system URI) and
# the helpers below; installs what a fresh Debian 12 machine lacks.
here=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd); top=$(dirname "$here")
# libvirt, QEMU, the image build tools, genisoimage, Python headers and Rust.
"$top/scripts/deps.sh" bench; export PATH="$HOME/.cargo/bin:$PATH"
V="virsh -q -c qemu:///system"

load() { cut -d' ' -f1-3 /proc/loadavg; }
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }  # seconds elapsed since T0 (from now)
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.3f\n", (a[NR/2]+a[NR/2+1])/2}'; }

# QEMU guests running on this machine that are not ours (the machine is
# shared; their number goes into every round's line). $1: an ERE our guests'
# names match.
other_guests() { pgrep -a qemu-system | grep -cvE "guest=($1)" || true; }

# IPv4 address of DOMAIN's NIC from the NAT network's DHCP leases ("" if none yet).
lease_ip() {
  $V domifaddr "$1" --source lease 2>/dev/null | awk '$3 == "ipv4" {split($4, a, "/"); print a[1]; exit}'
}

# Make sure libvirtd answers: kubelab's own prepare.sh without package
# installation (it starts virtlogd/libvirtd by hand where there is no systemd).
libvirt_ready() {
  KUBELAB_INSTALL=0 KUBELAB_IMAGE_TOOLS=0 bash "$top/templates/virthost/prepare.sh" >/dev/null
}

# N /24 prefixes ("192.168.X") that no route of this machine covers, from
# 192.168.START up, so that each tool's NAT network gets a subnet of its own.
free_subnets() {
  local n=$1 x=$2 out=()
  local routes; routes=$(ip -4 route show table all)
  while [ ${#out[@]} -lt "$n" ] && [ "$x" -lt 255 ]; do
    grep -q "192\.168\.$x\." <<<"$routes" || out+=("192.168.$x")
    x=$((x + 1))
  done
  echo "${out[@]}"
}
