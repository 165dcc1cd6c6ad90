# The node-prep benchmark workload for pyinfra (same steps as ../ansible/nodeprep.yml).
from io import StringIO

from pyinfra import host
from pyinfra.facts.server import Command
from pyinfra.operations import files, server

name = host.name
ip = host.data.get("ssh_hostname", name)
root = f"/tmp/kl-bench-work/root/{name}"
tpl = "../ansible/templates/"
ctx = dict(ansible_host=ip, inventory_hostname=name, pod_cidr="10.244.0.0/16",
           service_cidr="10.96.0.0/12", kube_version="1.31.2")

kernel = host.get_fact(Command, "uname -r")
for what, cmd in [("memory", "grep MemTotal /proc/meminfo"), ("swap", "cat /proc/swaps"),
                  ("forwarding", "cat /proc/sys/net/ipv4/ip_forward"), ("hostname", "hostname")]:
    server.shell(name=what, commands=[cmd])
for d in ["etc/sysctl.d", "etc/modules-load.d", "etc/kubernetes", "etc/crio", "etc/containerd",
          "etc/cni/net.d", "var/lib/kubelet"]:
    files.directory(name=f"dir {d}", path=f"{root}/{d}", mode="755")
for src, dest, mode in [("sysctl.conf.j2", "etc/sysctl.d/99-kubernetes.conf", "644"),
                        ("modules.conf.j2", "etc/modules-load.d/k8s.conf", "644"),
                        ("kubeadm.yaml.j2", "etc/kubernetes/kubeadm.yaml", "600"),
                        ("crio.conf.j2", "etc/crio/crio.conf", "644"),
                        ("cni.conflist.j2", "etc/cni/net.d/10-bridge.conflist", "644")]:
    files.template(name=src, src=tpl + src, dest=f"{root}/{dest}", mode=mode, **ctx)
files.line(name="hosts entry", path=f"{root}/etc/hosts", line=f"{ip} {name}")
files.put(name="kubelet args", src=StringIO(f"KUBELET_EXTRA_ARGS=--node-ip={ip}\n"),
          dest=f"{root}/var/lib/kubelet/extra-args", mode="644")
files.put(name="marker", src=StringIO(f"{kernel}\n"), dest=f"{root}/prepared", mode="644")
