#!/usr/bin/env bash
# Benchmark hosts: N network namespaces on a private bridge, each with its own
# sshd and address, login user `klbench` with /bin/sh (no start-up files).
#   bench/hosts.sh up N     start (idempotent)
#   bench/hosts.sh down N   stop and remove
# Writes under $KL_BENCH_DIR (default /tmp/kl-bench): keys, known_hosts,
# hosts.txt ("name ip" per line), inventory.ini (for kubelab and Ansible).
set -euo pipefail
cmd=${1:?up|down}; n=${2:-4}
dir=${KL_BENCH_DIR:-/tmp/kl-bench}
br=klbench0
net=${KL_BENCH_NET:-10.250.0}
case "$cmd" in
up)
  [ "$(id -u)" = 0 ] || { echo "bench/hosts.sh needs root (network namespaces, sshd)" >&2; exit 1; }
  "$(cd "$(dirname "$0")/.." && pwd)/scripts/deps.sh" bench
  if ! ip link show "$br" >/dev/null 2>&1 && ip route | grep -q "^$net\."; then
    echo "$net.0/24 is already routed on this machine; set KL_BENCH_NET" >&2; exit 1
  fi
  mkdir -p "$dir"
  [ -f "$dir/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/id_ed25519"
  [ -f "$dir/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$dir/host_ed25519"
  id klbench >/dev/null 2>&1 || useradd -m -s /bin/sh klbench
  usermod -p '*' klbench
  install -d -m 700 -o klbench -g klbench /home/klbench/.ssh
  install -m 600 -o klbench -g klbench "$dir/id_ed25519.pub" /home/klbench/.ssh/authorized_keys
  install -d -m 777 /tmp/kl-bench-work
  mkdir -p /run/sshd
  ip link show "$br" >/dev/null 2>&1 || { ip link add "$br" type bridge; ip addr add "$net.1/24" dev "$br"; ip link set "$br" up; }
  : > "$dir/known_hosts"; : > "$dir/hosts.txt"
  for i in $(seq 1 "$n"); do
    ns=klb$i; ip=$net.$((10+i))
    if ! ip netns list | grep -qw "$ns"; then
      ip netns add "$ns"
      ip link add "vb$i" type veth peer name eth0 netns "$ns"
      ip link set "vb$i" master "$br" up
      ip -n "$ns" addr add "$ip/24" dev eth0
      ip -n "$ns" link set eth0 up; ip -n "$ns" link set lo up
    fi
    cat > "$dir/sshd_$i.conf" <<CONF
ListenAddress $ip
HostKey $dir/host_ed25519
PermitRootLogin no
PasswordAuthentication no
UsePAM no
PidFile $dir/sshd_$i.pid
MaxSessions 64
MaxStartups 100:30:200
Subsystem sftp internal-sftp
CONF
    if ! { [ -f "$dir/sshd_$i.pid" ] && kill -0 "$(cat "$dir/sshd_$i.pid")" 2>/dev/null; }; then
      ip netns exec "$ns" /usr/sbin/sshd -f "$dir/sshd_$i.conf"
    fi
    echo "$ip $(cut -d' ' -f1,2 "$dir/host_ed25519.pub")" >> "$dir/known_hosts"
    echo "h$i $ip" >> "$dir/hosts.txt"
  done
  # wait (bounded) until every sshd accepts connections
  for i in $(seq 1 "$n"); do
    ip=$net.$((10+i))
    for _ in $(seq 1 100); do
      (exec 3<>"/dev/tcp/$ip/22") 2>/dev/null && break
      sleep 0.05
    done
  done
  { echo "[all]"; while read -r h ip; do echo "$h ansible_host=$ip"; done < "$dir/hosts.txt"
    echo "[all:vars]"; echo "ansible_user=klbench"; echo "ansible_ssh_private_key_file=$dir/id_ed25519"
  } > "$dir/inventory.ini" ;;
down)
  for i in $(seq 1 "$n"); do
    [ -f "$dir/sshd_$i.pid" ] && kill "$(cat "$dir/sshd_$i.pid")" 2>/dev/null || true
    rm -f "$dir/sshd_$i.pid"
    ip netns del "klb$i" 2>/dev/null || true
  done
  ip link del "$br" 2>/dev/null || true ;;
*) echo "usage: $0 up|down N" >&2; exit 2 ;;
esac
