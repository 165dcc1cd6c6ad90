#!/usr/bin/env bash
# The floor for the node-prep workload: per host ONE OpenSSH connection that
# runs the whole workload as a single shell script; hosts in parallel. No
# per-step results, no idempotency checks: the least any tool could do.
set -euo pipefail
n=${1:-4}
dir=${KL_BENCH_DIR:-/tmp/kl-bench}
script() { # $1 name, $2 address
  local r=/tmp/kl-bench-work/root/$1
  cat <<S
set -e
uname -r >/dev/null; grep MemTotal /proc/meminfo >/dev/null; cat /proc/swaps >/dev/null
cat /proc/sys/net/ipv4/ip_forward >/dev/null; hostname >/dev/null
for d in etc/sysctl.d etc/modules-load.d etc/kubernetes etc/crio etc/containerd etc/cni/net.d var/lib/kubelet; do mkdir -p -m 755 $r/\$d; done
printf 'net.bridge.bridge-nf-call-iptables = 1\nnet.bridge.bridge-nf-call-ip6tables = 1\nnet.ipv4.ip_forward = 1\nnet.ipv6.conf.all.forwarding = 1\n' > $r/etc/sysctl.d/99-kubernetes.conf
printf 'overlay\nbr_netfilter\n' > $r/etc/modules-load.d/k8s.conf
printf 'apiVersion: kubeadm.k8s.io/v1beta4\nkind: InitConfiguration\nlocalAPIEndpoint:\n  advertiseAddress: $2\nnodeRegistration:\n  name: $1\n  criSocket: unix:///var/run/crio/crio.sock\n---\napiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.31.2\nnetworking:\n  podSubnet: 10.244.0.0/16\n  serviceSubnet: 10.96.0.0/12\n' > $r/etc/kubernetes/kubeadm.yaml
chmod 600 $r/etc/kubernetes/kubeadm.yaml
printf '[crio.runtime]\ncgroup_manager = "systemd"\n[crio.network]\nnetwork_dir = "/etc/cni/net.d/"\n' > $r/etc/crio/crio.conf
echo '{"cniVersion": "1.0.0", "name": "bridge", "plugins": [{"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/16"}]]}}]}' > $r/etc/cni/net.d/10-bridge.conflist
grep -qxF '$2 $1' $r/etc/hosts 2>/dev/null || echo '$2 $1' >> $r/etc/hosts
echo 'KUBELET_EXTRA_ARGS=--node-ip=$2' > $r/var/lib/kubelet/extra-args
uname -r > $r/prepared
S
}
pids=()
while read -r h ip; do
  script "$h" "$ip" | ssh -i "$dir/id_ed25519" -o UserKnownHostsFile="$dir/known_hosts" \
    -o ControlPath=none -o BatchMode=yes "klbench@$ip" sh -s &
  pids+=($!)
done < <(head -n "$n" "$dir/hosts.txt")
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
