//! Node preparation before kubeadm: kernel modules, sysctls, the container
//! runtime's configuration, the kubelet's environment, and the package
//! repositories of a Kubernetes minor (modelled as data).

use std::net::IpAddr;

use serde::Serialize;

use super::config::{ClusterFacts, Family, KubeadmError, NodeAddresses};
use super::templates::{self, RenderError};
use crate::containerd;
use crate::lab::Lab;
use crate::lab::model::{IpFamily, Runtime, RuntimePackages, Vm};

/// The pause (sandbox) image kubeadm of Kubernetes `1.<minor>` expects; the
/// runtime is configured with the same one so that kubeadm does not warn
/// and pods do not pull a second image.
pub fn pause_image(minor: u32) -> &'static str {
    match minor {
        0..=24 => "registry.k8s.io/pause:3.7",
        25 => "registry.k8s.io/pause:3.8",
        26..=30 => "registry.k8s.io/pause:3.9",
        31..=33 => "registry.k8s.io/pause:3.10",
        _ => "registry.k8s.io/pause:3.10.1",
    }
}

/// Kernel modules a node loads at boot.
/// How the stage fetches an APT signing key (arguments: URL, destination):
/// into a temporary file beside the destination, checked to be an armored
/// OpenPGP key, then moved into place. A download cut short is never kept,
/// so the step's `creates:` cannot hold on to a broken key forever.
pub const FETCH_KEY_SCRIPT: &str = r#"set -eu
tmp=$(mktemp "$2.XXXXXX")
trap 'rm -f "$tmp"' EXIT
curl -fsSL --proto '=https' --retry 3 -o "$tmp" "$1"
if ! grep -q -e '-----BEGIN PGP PUBLIC KEY BLOCK-----' "$tmp"; then
  echo "$1 is not an armored OpenPGP key" >&2
  exit 1
fi
chmod 0644 "$tmp"
mv -f "$tmp" "$2"
trap - EXIT
"#;

/// How the stage downloads a release file (arguments: URL, destination,
/// SHA-256): into a temporary file beside the destination, checked
/// against the checksum kubelab pins, then moved into place. A download cut
/// short or altered is never kept, so `creates:` cannot hold on to it.
pub const FETCH_FILE_SCRIPT: &str = r#"set -eu
tmp=$(mktemp "$2.XXXXXX")
trap 'rm -f "$tmp"' EXIT
curl -fsSL --proto '=https' --retry 3 -o "$tmp" "$1"
got=$(sha256sum "$tmp" | cut -d' ' -f1)
if [ "$got" != "$3" ]; then
  echo "$1 has SHA-256 $got, not the pinned $3: not kept" >&2
  exit 1
fi
chmod 0644 "$tmp"
mv -f "$tmp" "$2"
trap - EXIT
"#;

/// How `reset` removes what kube-proxy, kubelet and the CNIs (flannel,
/// Calico, the CNI plugins) left in iptables, ip6tables and IPVS, which
/// `kubeadm reset` leaves behind by design: their chains and every rule
/// that jumps to one, nothing else (the node's own and Docker's rules
/// stay). Prints `removed ...` for what it removed.
pub const RESET_RULES_SCRIPT: &str = r#"set -u
ours='KUBE-|FLANNEL|CNI-|cali-'
strip() { grep -v -E -e "^:($ours)" -e "^-A ($ours)" -e "-j ($ours)"; }
if command -v iptables-save >/dev/null 2>&1; then
  before=$(iptables-save | grep -v '^#')
  after=$(printf '%s\n' "$before" | strip)
  if [ "$before" != "$after" ]; then
    printf '%s\n' "$after" | iptables-restore && echo "removed Kubernetes chains and rules (iptables)"
  fi
fi
if command -v ip6tables-save >/dev/null 2>&1; then
  before=$(ip6tables-save | grep -v '^#')
  after=$(printf '%s\n' "$before" | strip)
  if [ "$before" != "$after" ]; then
    printf '%s\n' "$after" | ip6tables-restore && echo "removed Kubernetes chains and rules (ip6tables)"
  fi
fi
if command -v ipvsadm >/dev/null 2>&1 && [ -n "$(ipvsadm -S -n 2>/dev/null)" ]; then
  ipvsadm -C && echo "removed IPVS services"
fi
if ip link show kube-ipvs0 >/dev/null 2>&1; then
  ip link delete kube-ipvs0 && echo "removed kube-ipvs0"
fi
exit 0
"#;

pub const KERNEL_MODULES: &[&str] = &["overlay", "br_netfilter"];

/// Where each node preparation file goes.
pub const SYSCTL_PATH: &str = "/etc/sysctl.d/99-kubernetes.conf";
pub const MODULES_LOAD_PATH: &str = "/etc/modules-load.d/kubernetes.conf";
pub const CONTAINERD_CONFIG_PATH: &str = "/etc/containerd/config.toml";
pub const CRIO_DROP_IN_PATH: &str = "/etc/crio/crio.conf.d/10-kubelab.conf";
pub const DOCKER_DAEMON_PATH: &str = "/etc/docker/daemon.json";
pub const CRI_DOCKERD_DROP_IN_PATH: &str =
    "/etc/systemd/system/cri-docker.service.d/10-kubelab.conf";

/// The containerd line a node is expected to get: Debian's with `distro`
/// packages, else the one kubelab installs (what a plan shows before
/// containerd is there; an air-gap bundle is expected to carry that line).
fn containerd_planned(minor: u32, packages: RuntimePackages) -> &'static str {
    match packages {
        RuntimePackages::Distro => containerd::DEBIAN_12_LINE,
        RuntimePackages::Upstream => containerd::upstream_line(minor),
    }
}

/// The variables of the node preparation templates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodePrepContext {
    pub node_name: String,
    pub kubernetes_minor: u32,
    pub runtime: Runtime,
    pub ipv4: bool,
    pub ipv6: bool,
    pub pause_image: &'static str,
    /// The containerd line the node is expected to get (its configuration
    /// follows the installed one once it is there).
    pub containerd_planned: &'static str,
    pub kernel_modules: &'static [&'static str],
    /// `--node-ip`: the node's addresses, primary family first.
    pub node_ip: String,
    /// The DNS64 resolver of an IPv6-only cluster, written to
    /// `kubelet_resolv_conf` for kubelet.
    pub dns64_resolver: Option<String>,
    pub kubelet_resolv_conf: &'static str,
}

/// One rendered file and where it belongs on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeFile {
    pub path: &'static str,
    pub text: String,
}

impl NodePrepContext {
    /// The preparation context of Kubernetes node `vm`, with addresses from
    /// `facts` (static or discovered).
    pub fn for_node(lab: &Lab, vm: &Vm, facts: &ClusterFacts) -> Result<Self, KubeadmError> {
        let k = lab.kubernetes.as_ref().ok_or(KubeadmError::NoKubernetes)?;
        let families: Vec<Family> = match k.ip_family {
            IpFamily::Ipv4 => vec![Family::V4],
            IpFamily::Ipv6 => vec![Family::V6],
            IpFamily::Dual => match k.service_cidrs.first() {
                Some(ipnet::IpNet::V6(_)) => vec![Family::V6, Family::V4],
                _ => vec![Family::V4, Family::V6],
            },
        };
        let found: NodeAddresses = facts.addresses(&vm.name);
        let ips = families
            .iter()
            .map(|f| {
                found.get(*f).ok_or_else(|| KubeadmError::NoAddress {
                    vm: vm.name.clone(),
                    family: f.name(),
                })
            })
            .collect::<Result<Vec<IpAddr>, _>>()?;
        Ok(NodePrepContext {
            node_name: vm.name.clone(),
            kubernetes_minor: k.minor(),
            runtime: k.runtime,
            ipv4: families.contains(&Family::V4),
            ipv6: families.contains(&Family::V6),
            pause_image: pause_image(k.minor()),
            containerd_planned: containerd_planned(k.minor(), k.runtime_packages),
            kernel_modules: KERNEL_MODULES,
            node_ip: ips
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(","),
            dns64_resolver: super::config::dns64_resolver(lab, facts).map(|a| a.to_string()),
            kubelet_resolv_conf: super::config::KUBELET_RESOLV_CONF,
        })
    }

    /// The variables the node preparation templates read: `kube_node`.
    pub fn template_vars(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut vars = serde_json::Map::new();
        vars.insert(
            "kube_node".into(),
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null),
        );
        vars
    }

    /// Every preparation file this node needs, with its path: sysctls,
    /// modules, the runtime's configuration and the kubelet's environment
    /// (`/etc/default/kubelet` on Debian, `/etc/sysconfig/kubelet` on RHEL).
    pub fn files(&self, family: DistroFamily) -> Result<Vec<NodeFile>, RenderError> {
        let mut files = vec![
            (SYSCTL_PATH, "99-kubernetes.conf.j2"),
            (MODULES_LOAD_PATH, "modules-load.conf.j2"),
        ];
        match self.runtime {
            Runtime::Containerd => {
                files.push((CONTAINERD_CONFIG_PATH, "containerd-config.toml.j2"))
            }
            Runtime::Crio => files.push((CRIO_DROP_IN_PATH, "crio.conf.j2")),
            Runtime::Docker => {
                files.push((DOCKER_DAEMON_PATH, "docker-daemon.json.j2"));
                files.push((CRI_DOCKERD_DROP_IN_PATH, "cri-dockerd.conf.j2"));
            }
        }
        files.push((family.kubelet_env_path(), "kubelet-default.j2"));
        files
            .into_iter()
            .map(|(path, template)| {
                Ok(NodeFile {
                    path,
                    text: templates::render(template, &self.template_vars())?,
                })
            })
            .collect()
    }
}

/// Distributions by packaging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DistroFamily {
    /// Debian, Ubuntu: APT and `.deb`.
    Debian,
    /// RHEL, CentOS Stream, Fedora, Rocky, Alma: DNF and `.rpm`.
    RedHat,
}

impl DistroFamily {
    /// As in facts (`facts.family`): `debian` or `redhat`.
    pub fn name(self) -> &'static str {
        match self {
            DistroFamily::Debian => "debian",
            DistroFamily::RedHat => "redhat",
        }
    }
    fn package_format(self) -> &'static str {
        match self {
            DistroFamily::Debian => "deb",
            DistroFamily::RedHat => "rpm",
        }
    }
    fn key_file(self) -> &'static str {
        match self {
            DistroFamily::Debian => "Release.key",
            DistroFamily::RedHat => "repodata/repomd.xml.key",
        }
    }
    pub fn kubelet_env_path(self) -> &'static str {
        match self {
            DistroFamily::Debian => "/etc/default/kubelet",
            DistroFamily::RedHat => "/etc/sysconfig/kubelet",
        }
    }
}

/// A package repository: a short name (also the keyring's file name), a
/// title, the base URL and its signing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackageRepository {
    pub name: &'static str,
    pub title: String,
    pub url: String,
    pub key_url: String,
}

/// The first minor CRI-O publishes in the community repositories
/// (`isv:/cri-o` on the openSUSE build service, where pkgs.k8s.io's
/// `addons:/cri-o` points).
pub const CRIO_REPOSITORY_SINCE_MINOR: u32 = 28;

/// Base URL of the Kubernetes packages (kubelet, kubeadm, kubectl,
/// cri-tools, kubernetes-cni) of `1.<minor>`: one repository per minor on
/// pkgs.k8s.io.
pub fn repo_url(minor: u32, family: DistroFamily) -> String {
    format!(
        "https://pkgs.k8s.io/core:/stable:/v1.{minor}/{}/",
        family.package_format()
    )
}

/// The Kubernetes repository of `1.<minor>`.
pub fn kubernetes_repository(minor: u32, family: DistroFamily) -> PackageRepository {
    let url = repo_url(minor, family);
    PackageRepository {
        name: "kubernetes",
        title: format!("Kubernetes 1.{minor}"),
        key_url: format!("{url}{}", family.key_file()),
        url,
    }
}

/// The CRI-O repository matching Kubernetes `1.<minor>`, if there is one
/// (CRI-O follows Kubernetes minors; 1.27 and older are in no maintained
/// repository: install the distribution's package instead).
pub fn crio_repository(minor: u32, family: DistroFamily) -> Option<PackageRepository> {
    (minor >= CRIO_REPOSITORY_SINCE_MINOR).then(|| {
        let url = format!(
            "https://download.opensuse.org/repositories/isv:/cri-o:/stable:/v1.{minor}/{}/",
            family.package_format()
        );
        PackageRepository {
            name: "cri-o",
            title: format!("CRI-O 1.{minor}"),
            key_url: format!("{url}{}", family.key_file()),
            url,
        }
    })
}

/// The variables of the repository templates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RepositoryContext {
    pub minor: u32,
    pub repositories: Vec<PackageRepository>,
}

impl RepositoryContext {
    /// Kubernetes' repository, and CRI-O's when the runtime is CRI-O and
    /// one exists for this minor.
    pub fn new(minor: u32, runtime: Runtime, family: DistroFamily) -> Self {
        let mut repositories = vec![kubernetes_repository(minor, family)];
        if runtime == Runtime::Crio
            && let Some(r) = crio_repository(minor, family)
        {
            repositories.push(r);
        }
        RepositoryContext {
            minor,
            repositories,
        }
    }

    /// The APT sources list or the DNF repository file.
    pub fn render(&self, family: DistroFamily) -> Result<NodeFile, RenderError> {
        let (path, template) = match family {
            DistroFamily::Debian => (
                "/etc/apt/sources.list.d/kubernetes.list",
                "kubernetes.list.j2",
            ),
            DistroFamily::RedHat => ("/etc/yum.repos.d/kubernetes.repo", "kubernetes.repo.j2"),
        };
        let mut by_family = serde_json::Map::new();
        by_family.insert(
            family.name().into(),
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null),
        );
        Ok(NodeFile {
            path,
            text: templates::render(
                template,
                &serde_json::json!({ "kube_repositories": by_family }),
            )?,
        })
    }
}
