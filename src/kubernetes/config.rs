//! The kubeadm configuration of one node: a render context derived from the
//! validated [`Lab`] (and from what was discovered about the running VMs),
//! and the rendered, self-checked `kubeadm init` / `kubeadm join` files.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::Serialize;

use super::api::{self, ApiError, Arg, Document, KubeadmApi, Secret, Taint};
use super::secrets::JoinSecrets;
use super::templates::{self, RenderError};
use crate::lab::Lab;
use crate::lab::model::{HaMode, IpFamily, Kubernetes, Runtime, Vm};

/// The API server's port on every control plane and on the load balancer.
pub const API_SERVER_PORT: u16 = 6443;
/// The cluster's DNS domain.
pub const DNS_DOMAIN: &str = "cluster.local";
/// How long kubeadm waits for the control plane (and a joining node for
/// discovery): generous, because lab VMs may run under plain emulation.
pub const SLOW_VM_TIMEOUT: &str = "10m0s";
/// The first minor whose KubeletConfiguration has `containerRuntimeEndpoint`.
pub const KUBELET_RUNTIME_ENDPOINT_SINCE_MINOR: u32 = 27;
/// kubeadm's preflight minimums for control planes.
const MIN_CONTROL_PLANE_CPUS: u32 = 2;
const MIN_CONTROL_PLANE_MEMORY_MIB: u64 = 1700;
/// What the guest kernel keeps of a VM's memory (its code, page tables,
/// reservations): kubeadm compares the total the kernel reports, not the
/// configured size, so a VM of 1700-1900 MiB still fails its check.
const MEMORY_THE_KERNEL_KEEPS_MIB: u64 = 200;

/// The resolver file of kubelet (and so of CoreDNS's upstreams) in an
/// IPv6-only cluster with a NAT64 VM: only the DNS64 resolver, not the
/// node's IPv4 one, which nothing in the cluster can reach.
pub const KUBELET_RESOLV_CONF: &str = "/etc/kubernetes/kubelab/resolv.conf";

/// The lab's DNS64 server: the IPv6 address of its first VM with role
/// `nat64`, which the NAT64 stage sets up and the other VMs resolve through.
pub fn dns64_server(lab: &Lab, facts: &ClusterFacts) -> Option<Ipv6Addr> {
    let server = lab.group("nat64").first().map(|v| v.name.clone())?;
    facts.addresses(&server).ipv6
}

/// The DNS64 resolver an IPv6-only cluster's nodes use ([`dns64_server`];
/// none in other clusters).
pub fn dns64_resolver(lab: &Lab, facts: &ClusterFacts) -> Option<IpAddr> {
    let k = lab.kubernetes.as_ref()?;
    if k.ip_family != IpFamily::Ipv6 {
        return None;
    }
    dns64_server(lab, facts).map(IpAddr::V6)
}

/// The CRI socket of a container runtime (Docker through cri-dockerd).
pub fn cri_socket(runtime: Runtime) -> &'static str {
    match runtime {
        Runtime::Crio => "unix:///var/run/crio/crio.sock",
        Runtime::Containerd => "unix:///run/containerd/containerd.sock",
        Runtime::Docker => "unix:///run/cri-dockerd.sock",
    }
}

/// An IP family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
    fn of_net(net: &IpNet) -> Self {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
    fn unspecified(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Family::V6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        }
    }
}

/// A VM's addresses on the Kubernetes network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NodeAddresses {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

impl NodeAddresses {
    pub fn get(&self, family: Family) -> Option<IpAddr> {
        match family {
            Family::V4 => self.ipv4.map(IpAddr::V4),
            Family::V6 => self.ipv6.map(IpAddr::V6),
        }
    }
}

/// What is known about the lab's VMs beyond the lab file: addresses handed
/// out by DHCP or SLAAC, and the kubeadm version actually installed.
/// [`ClusterFacts::from_lab`] starts from the static addresses; discovery
/// adds to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterFacts {
    addresses: BTreeMap<String, NodeAddresses>,
    kubeadm_version: Option<String>,
}

impl ClusterFacts {
    /// The static addresses of every VM on the Kubernetes network (for VMs
    /// without a NIC there, such as a load balancer on another network: on
    /// their first NIC).
    pub fn from_lab(lab: &Lab) -> Self {
        let network = lab.kubernetes.as_ref().map(|k| k.network.as_str());
        let addresses = lab
            .vms
            .iter()
            .map(|vm| {
                let nic = vm
                    .nics
                    .iter()
                    .find(|n| Some(n.network.as_str()) == network)
                    .or_else(|| vm.nics.first());
                let found = nic
                    .map(|n| NodeAddresses {
                        ipv4: n.ipv4,
                        ipv6: n.ipv6,
                    })
                    .unwrap_or_default();
                (vm.name.clone(), found)
            })
            .collect();
        ClusterFacts {
            addresses,
            kubeadm_version: None,
        }
    }

    /// Record addresses discovered on `vm`: each family found replaces what
    /// was known; a family not found keeps the static address, if any.
    pub fn set_addresses(&mut self, vm: &str, found: NodeAddresses) {
        let entry = self.addresses.entry(vm.to_string()).or_default();
        if found.ipv4.is_some() {
            entry.ipv4 = found.ipv4;
        }
        if found.ipv6.is_some() {
            entry.ipv6 = found.ipv6;
        }
    }

    pub fn addresses(&self, vm: &str) -> NodeAddresses {
        self.addresses.get(vm).copied().unwrap_or_default()
    }

    /// Record the installed kubeadm's version (`kubeadm version -o short`,
    /// e.g. `v1.31.2`); it names the exact release when the lab gives only
    /// a minor.
    pub fn set_kubeadm_version(&mut self, version: &str) -> Result<(), KubeadmError> {
        let release = parse_release(version).ok_or_else(|| KubeadmError::Version {
            version: version.to_string(),
            problem: "is not a release like v1.31.2".into(),
        })?;
        self.kubeadm_version = Some(release);
        Ok(())
    }

    /// The first release of a minor (`v1.31.0`), until the installed
    /// kubeadm says which it is.
    pub fn set_first_release_of(&mut self, minor: u32) {
        self.kubeadm_version = Some(format!("v1.{minor}.0"));
    }

    pub fn kubeadm_version(&self) -> Option<&str> {
        self.kubeadm_version.as_deref()
    }
}

/// `1.31.2` or `v1.31.2` (optionally with a pre-release or build suffix)
/// as `v1.31.2…`; `None` for anything else, a minor-only version included.
fn parse_release(text: &str) -> Option<String> {
    let t = text.trim();
    let t = t.strip_prefix('v').unwrap_or(t);
    let core = t.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let suffix_ok = t[core.len()..]
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-+.".contains(&b));
    (numeric && parts.len() == 3 && parts[0] == "1" && suffix_ok).then(|| format!("v{t}"))
}

fn release_minor(release: &str) -> Option<u32> {
    release.split('.').nth(1).and_then(|m| m.parse().ok())
}

/// What a node does with kubeadm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    /// The first control plane: `kubeadm init`.
    Init,
    /// Another control plane: `kubeadm join --control-plane`.
    ControlPlane,
    /// `kubeadm join`.
    Worker,
}

impl NodeRole {
    /// The first VM with role `control-plane` inits, the other control
    /// planes join as such, VMs with role `worker` join as workers.
    pub fn of(lab: &Lab, vm: &Vm) -> Result<Self, KubeadmError> {
        if vm.has_role("control-plane") {
            let first = lab.group("control-plane").first().map(|v| v.name.as_str());
            if first == Some(vm.name.as_str()) {
                Ok(NodeRole::Init)
            } else {
                Ok(NodeRole::ControlPlane)
            }
        } else if vm.has_role("worker") {
            Ok(NodeRole::Worker)
        } else {
            Err(KubeadmError::NotANode(vm.name.clone()))
        }
    }
}

/// Why a node's kubeadm configuration cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeadmError {
    #[error("the lab has no `kubernetes` section")]
    NoKubernetes,
    #[error("VM `{0}` has neither role `control-plane` nor `worker`")]
    NotANode(String),
    #[error("no VM has the role `control-plane`")]
    NoControlPlane,
    #[error("VM `{vm}` has no {family} address on the Kubernetes network (yet)")]
    NoAddress { vm: String, family: &'static str },
    #[error("ha mode haproxy, but no VM has the role `lb`")]
    NoLoadBalancer,
    #[error("ha mode kube-vip, but no `vip`")]
    NoVip,
    #[error("control plane `{0}` cannot join: the cluster has no `ha` endpoint")]
    NoStableEndpoint(String),
    #[error("Kubernetes version `{version}` {problem}")]
    Version { version: String, problem: String },
    #[error("{what} subnet {net} is too small for kubelab's layout")]
    SubnetTooSmall { what: &'static str, net: IpNet },
    #[error("node `{vm}` needs {what} to join")]
    MissingSecret { vm: String, what: &'static str },
    #[error("node `{vm}` is a {role:?} node; it has no {wanted} configuration")]
    WrongRole {
        vm: String,
        role: NodeRole,
        wanted: &'static str,
    },
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("rendered {template} does not parse back: {message}")]
    Check { template: String, message: String },
}

/// `nodeRegistration` of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeRegistrationContext {
    pub name: String,
    pub cri_socket: &'static str,
    pub kubelet_args: Vec<Arg>,
    /// `None`: kubeadm's defaults; `Some([])`: untainted.
    pub taints: Option<Vec<Taint>>,
    pub ignore_preflight_errors: Vec<String>,
}

/// Everything the kubeadm templates use for one node. Secrets are
/// [`Secret`]s: they reach the template, never `Debug` output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KubeadmContext {
    #[serde(skip)]
    pub api: KubeadmApi,
    pub api_version: &'static str,
    pub v1beta4: bool,
    pub role: NodeRole,
    /// An exact release, e.g. `v1.31.2`.
    pub kubernetes_version: String,
    pub cluster_name: String,
    pub node: NodeRegistrationContext,
    /// This node's addresses, primary family first.
    pub node_ips: Vec<IpAddr>,
    pub advertise_address: IpAddr,
    pub bind_port: u16,
    /// Comma-separated, primary family first.
    pub pod_subnet: String,
    pub service_subnet: String,
    pub dns_domain: &'static str,
    /// The 10th address of the primary service subnet only: kubeadm makes
    /// the cluster DNS Service single-stack, in the primary family.
    pub cluster_dns: Vec<IpAddr>,
    /// `host:port` of the load balancer or VIP (HA only).
    pub control_plane_endpoint: Option<String>,
    /// Where joining nodes find the API server.
    pub join_endpoint: String,
    pub cert_sans: Vec<String>,
    pub api_server_args: Vec<Arg>,
    pub controller_manager_args: Vec<Arg>,
    pub kubelet_runtime_endpoint: Option<&'static str>,
    /// [`KUBELET_RESOLV_CONF`] in an IPv6-only cluster with DNS64.
    pub kubelet_resolv_conf: Option<&'static str>,
    pub kube_proxy_mode: &'static str,
    pub kube_proxy_bind_address: IpAddr,
    pub control_plane_timeout: &'static str,
    pub discovery_timeout: &'static str,
    /// The secrets and the CA hash never serialize with the context: the
    /// templates read them from their own variables (see
    /// [`KubeadmContext::template_vars`]), whose names mark them secret.
    #[serde(skip)]
    pub bootstrap_token: Option<Secret>,
    #[serde(skip)]
    pub certificate_key: Option<Secret>,
    #[serde(skip)]
    pub ca_cert_hashes: Vec<String>,
    /// The first control plane (where joining nodes' CA hash comes from).
    pub init_node: String,
}

/// `host:port`, IPv6 hosts in brackets.
pub fn host_port(addr: IpAddr, port: u16) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// The `n`th address of a subnet (the 10th is the cluster DNS service's).
pub fn nth_address(net: &IpNet, n: u32) -> Option<IpAddr> {
    let room = |prefix: u8, bits: u8| {
        let host_bits = u32::from(bits - prefix.min(bits));
        host_bits >= 32 || n < (1u32 << host_bits) - 1
    };
    match net {
        IpNet::V4(v4) if room(v4.prefix_len(), 32) => {
            Some(IpAddr::V4(Ipv4Addr::from(u32::from(v4.network()) + n)))
        }
        IpNet::V6(v6) if room(v6.prefix_len(), 128) => Some(IpAddr::V6(Ipv6Addr::from(
            u128::from(v6.network()) + u128::from(n),
        ))),
        _ => None,
    }
}

/// The per-node pod subnet size kube-controller-manager hands out inside
/// the pod subnet `net`: /24 (IPv4) and /64 (IPv6) when that leaves room
/// for a useful number of nodes, otherwise as large as leaves 16 to 256
/// of them; never more than 2^16 nodes (kube-controller-manager's limit).
pub fn node_cidr_mask_size(net: &IpNet) -> Option<u8> {
    match net {
        IpNet::V4(n) => match n.prefix_len() {
            p @ 0..8 => Some(p + 16),
            8..=21 => Some(24),
            p @ 22..=26 => Some(p + 4),
            _ => None,
        },
        IpNet::V6(n) => match n.prefix_len() {
            p @ 0..48 => Some(p + 16),
            48..=60 => Some(64),
            p @ 61..=112 => Some(p + 8),
            _ => None,
        },
    }
}

/// The cluster's families, primary (that of the first service subnet)
/// first.
fn families(k: &Kubernetes) -> Vec<Family> {
    let primary = k
        .service_cidrs
        .first()
        .map(Family::of_net)
        .unwrap_or(match k.ip_family {
            IpFamily::Ipv6 => Family::V6,
            _ => Family::V4,
        });
    match k.ip_family {
        IpFamily::Ipv4 => vec![Family::V4],
        IpFamily::Ipv6 => vec![Family::V6],
        IpFamily::Dual => match primary {
            Family::V4 => vec![Family::V4, Family::V6],
            Family::V6 => vec![Family::V6, Family::V4],
        },
    }
}

fn ordered(nets: &[IpNet], families: &[Family]) -> Vec<IpNet> {
    families
        .iter()
        .flat_map(|f| nets.iter().filter(move |n| Family::of_net(n) == *f))
        .copied()
        .collect()
}

fn joined(nets: &[IpNet]) -> String {
    nets.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn arg(name: &str, value: impl fmt::Display) -> Arg {
    Arg {
        name: name.to_string(),
        value: value.to_string(),
    }
}

fn address(facts: &ClusterFacts, vm: &str, family: Family) -> Result<IpAddr, KubeadmError> {
    facts
        .addresses(vm)
        .get(family)
        .ok_or_else(|| KubeadmError::NoAddress {
            vm: vm.to_string(),
            family: family.name(),
        })
}

/// The exact release for kubeadm's `kubernetesVersion`: the lab's version
/// when it names a patch release, else the installed kubeadm's.
fn release(k: &Kubernetes, facts: &ClusterFacts) -> Result<String, KubeadmError> {
    let minor = k.minor();
    if let Some(installed) = facts.kubeadm_version() {
        if release_minor(installed) != Some(minor) {
            return Err(KubeadmError::Version {
                version: k.version.clone(),
                problem: format!("is not what is installed (kubeadm {installed})"),
            });
        }
        if let Some(lab) = parse_release(&k.version)
            && lab != installed
        {
            return Err(KubeadmError::Version {
                version: k.version.clone(),
                problem: format!("is not what is installed (kubeadm {installed})"),
            });
        }
        return Ok(installed.to_string());
    }
    parse_release(&k.version).ok_or_else(|| KubeadmError::Version {
        version: k.version.clone(),
        problem: "names no patch release: record the installed kubeadm version first".into(),
    })
}

impl KubeadmContext {
    /// The context of `vm` from the lab's static addresses. See
    /// [`KubeadmContext::for_node_with`].
    pub fn for_node(lab: &Lab, vm: &Vm, join: Option<&JoinSecrets>) -> Result<Self, KubeadmError> {
        Self::for_node_with(lab, vm, &ClusterFacts::from_lab(lab), join)
    }

    /// The context of `vm`, with addresses and the kubeadm version from
    /// `facts`. `join` is required for joining nodes (control planes also
    /// need its certificate key); on the first control plane it is
    /// optional and, when given, fixes the bootstrap token and the
    /// certificate key in advance.
    pub fn for_node_with(
        lab: &Lab,
        vm: &Vm,
        facts: &ClusterFacts,
        join: Option<&JoinSecrets>,
    ) -> Result<Self, KubeadmError> {
        let k = lab.kubernetes.as_ref().ok_or(KubeadmError::NoKubernetes)?;
        let role = NodeRole::of(lab, vm)?;
        let minor = k.minor();
        let api = KubeadmApi::for_minor(minor);
        let families = families(k);
        let primary = families.first().copied().unwrap_or(Family::V4);

        let node_ips = families
            .iter()
            .map(|f| address(facts, &vm.name, *f))
            .collect::<Result<Vec<_>, _>>()?;
        let advertise_address = address(facts, &vm.name, primary)?;

        let pods = ordered(&k.pod_cidrs, &families);
        let services = ordered(&k.service_cidrs, &families);
        let dns_net = services
            .first()
            .copied()
            .ok_or(KubeadmError::SubnetTooSmall {
                what: "service",
                net: IpNet::V4(Default::default()),
            })?;
        let cluster_dns = nth_address(&dns_net, 10).ok_or(KubeadmError::SubnetTooSmall {
            what: "service",
            net: dns_net,
        })?;
        let mut controller_manager_args = Vec::new();
        for net in &pods {
            let size = node_cidr_mask_size(net).ok_or(KubeadmError::SubnetTooSmall {
                what: "pod",
                net: *net,
            })?;
            let name = match net {
                IpNet::V4(_) => "node-cidr-mask-size-ipv4",
                IpNet::V6(_) => "node-cidr-mask-size-ipv6",
            };
            controller_manager_args.push(arg(name, size));
        }

        let control_planes = lab.group("control-plane");
        let first_cp = control_planes.first().ok_or(KubeadmError::NoControlPlane)?;
        let endpoint_host = match &k.ha {
            None => None,
            Some(ha) => Some(match ha.mode {
                HaMode::Haproxy => {
                    let lb = lab.group("lb");
                    let lb = lb.first().ok_or(KubeadmError::NoLoadBalancer)?;
                    address(facts, &lb.name, primary)?
                }
                HaMode::KubeVip => ha.vip.ok_or(KubeadmError::NoVip)?,
            }),
        };
        let control_plane_endpoint = endpoint_host.map(|h| host_port(h, API_SERVER_PORT));
        if role == NodeRole::ControlPlane && control_plane_endpoint.is_none() {
            return Err(KubeadmError::NoStableEndpoint(vm.name.clone()));
        }
        let join_endpoint = match &control_plane_endpoint {
            Some(e) => e.clone(),
            None => host_port(address(facts, &first_cp.name, primary)?, API_SERVER_PORT),
        };

        // The API server certificate of every control plane is made from
        // the same ClusterConfiguration: name the endpoint and all control
        // planes' addresses in every family (kubeadm itself adds only the
        // advertise address of the node it runs on).
        let mut cert_sans: Vec<String> = Vec::new();
        let mut san = |s: String| {
            if !cert_sans.contains(&s) {
                cert_sans.push(s);
            }
        };
        if let Some(h) = endpoint_host {
            san(h.to_string());
        }
        for cp in &control_planes {
            san(cp.name.clone());
            for f in &families {
                if let Some(a) = facts.addresses(&cp.name).get(*f) {
                    san(a.to_string());
                }
            }
        }

        let is_control_plane = role != NodeRole::Worker;
        let taints = is_control_plane.then(|| {
            if vm.has_role("worker") {
                Vec::new()
            } else {
                vec![Taint {
                    key: "node-role.kubernetes.io/control-plane".into(),
                    value: None,
                    effect: "NoSchedule".into(),
                }]
            }
        });
        let mut ignore_preflight_errors = Vec::new();
        if is_control_plane && vm.cpus < MIN_CONTROL_PLANE_CPUS {
            ignore_preflight_errors.push("NumCPU".to_string());
        }
        if is_control_plane
            && vm.memory_mib < MIN_CONTROL_PLANE_MEMORY_MIB + MEMORY_THE_KERNEL_KEEPS_MIB
        {
            ignore_preflight_errors.push("Mem".to_string());
        }
        // kube-vip runs as a static pod that is in place before kubeadm.
        if is_control_plane && k.ha.as_ref().is_some_and(|h| h.mode == HaMode::KubeVip) {
            ignore_preflight_errors.push("DirAvailable--etc-kubernetes-manifests".to_string());
        }
        let node_ip = node_ips
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let socket = cri_socket(k.runtime);

        let (bootstrap_token, certificate_key, ca_cert_hashes) = match (role, join) {
            (NodeRole::Init, None) => (None, None, Vec::new()),
            (NodeRole::Init, Some(s)) => (
                Some(s.token.secret().clone()),
                s.certificate_key.as_ref().map(|c| c.secret().clone()),
                Vec::new(),
            ),
            (_, None) => {
                return Err(KubeadmError::MissingSecret {
                    vm: vm.name.clone(),
                    what: "a bootstrap token and the CA certificate hash",
                });
            }
            (_, Some(s)) => {
                let key = match (role, &s.certificate_key) {
                    (NodeRole::ControlPlane, None) => {
                        return Err(KubeadmError::MissingSecret {
                            vm: vm.name.clone(),
                            what: "the certificate key",
                        });
                    }
                    (NodeRole::ControlPlane, Some(c)) => Some(c.secret().clone()),
                    _ => None,
                };
                (
                    Some(s.token.secret().clone()),
                    key,
                    s.ca_cert_hashes
                        .iter()
                        .map(|h| h.as_str().to_string())
                        .collect(),
                )
            }
        };

        Ok(KubeadmContext {
            api,
            api_version: api.api_version(),
            v1beta4: api == KubeadmApi::V1beta4,
            role,
            kubernetes_version: release(k, facts)?,
            cluster_name: lab.name.clone(),
            node: NodeRegistrationContext {
                name: vm.name.clone(),
                cri_socket: socket,
                kubelet_args: vec![arg("node-ip", node_ip)],
                taints,
                ignore_preflight_errors,
            },
            node_ips,
            advertise_address,
            bind_port: API_SERVER_PORT,
            pod_subnet: joined(&pods),
            service_subnet: joined(&services),
            dns_domain: DNS_DOMAIN,
            cluster_dns: vec![cluster_dns],
            control_plane_endpoint,
            join_endpoint,
            cert_sans,
            api_server_args: Vec::new(),
            controller_manager_args,
            kubelet_runtime_endpoint: (minor >= KUBELET_RUNTIME_ENDPOINT_SINCE_MINOR)
                .then_some(socket),
            kubelet_resolv_conf: dns64_resolver(lab, facts).map(|_| KUBELET_RESOLV_CONF),
            kube_proxy_mode: "iptables",
            kube_proxy_bind_address: primary.unspecified(),
            control_plane_timeout: SLOW_VM_TIMEOUT,
            discovery_timeout: SLOW_VM_TIMEOUT,
            bootstrap_token,
            certificate_key,
            ca_cert_hashes,
            init_node: first_cp.name.clone(),
        })
    }

    /// The variables the kubeadm templates read: `kubeadm` (this context,
    /// without secrets), `kubeadm_release` (the exact release),
    /// `kubeadm_bootstrap_token` and `kubeadm_certificate_key` (empty when
    /// not used; their names make the engine redact them everywhere) and
    /// `kubeadm_ca_cert_hashes` (space-separated; empty until the first
    /// control plane has a CA). A playbook gets them as host variables and
    /// overrides `kubeadm_release` and `kubeadm_ca_cert_hashes` with what
    /// the run found; [`KubeadmContext::render`] uses them as they are.
    pub fn template_vars(&self) -> serde_json::Map<String, serde_json::Value> {
        let secret = |s: &Option<Secret>| s.as_ref().map_or("", |s| s.expose()).to_string();
        let mut vars = serde_json::Map::new();
        vars.insert(
            "kubeadm".into(),
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null),
        );
        vars.insert(
            "kubeadm_release".into(),
            self.kubernetes_version.clone().into(),
        );
        vars.insert(
            "kubeadm_bootstrap_token".into(),
            secret(&self.bootstrap_token).into(),
        );
        vars.insert(
            "kubeadm_certificate_key".into(),
            secret(&self.certificate_key).into(),
        );
        vars.insert(
            "kubeadm_ca_cert_hashes".into(),
            self.ca_cert_hashes.join(" ").into(),
        );
        vars
    }

    /// `kubeadm init --config` text (first control plane only).
    pub fn render_init(&self) -> Result<RenderedConfig, KubeadmError> {
        if self.role != NodeRole::Init {
            return Err(self.wrong_role("init"));
        }
        self.render_checked(
            "kubeadm-init.yaml.j2",
            &[
                "InitConfiguration",
                "ClusterConfiguration",
                "KubeletConfiguration",
                "KubeProxyConfiguration",
            ],
        )
    }

    /// `kubeadm join --config` text (every node but the first control plane).
    pub fn render_join(&self) -> Result<RenderedConfig, KubeadmError> {
        if self.role == NodeRole::Init {
            return Err(self.wrong_role("join"));
        }
        if self.ca_cert_hashes.is_empty() {
            return Err(KubeadmError::MissingSecret {
                vm: self.node.name.clone(),
                what: "the CA certificate hash",
            });
        }
        self.render_checked("kubeadm-join.yaml.j2", &["JoinConfiguration"])
    }

    /// The configuration this node's role calls for.
    pub fn render(&self) -> Result<RenderedConfig, KubeadmError> {
        match self.role {
            NodeRole::Init => self.render_init(),
            _ => self.render_join(),
        }
    }

    fn wrong_role(&self, wanted: &'static str) -> KubeadmError {
        KubeadmError::WrongRole {
            vm: self.node.name.clone(),
            role: self.role,
            wanted,
        }
    }

    /// Render, then parse the result back through the typed API models and
    /// check the kinds and the kubeadm API version: a template mistake is
    /// an error here, not on a node.
    fn render_checked(
        &self,
        template: &'static str,
        kinds: &[&str],
    ) -> Result<RenderedConfig, KubeadmError> {
        let text = templates::render(template, &self.template_vars())?;
        let check = |message: String| KubeadmError::Check {
            template: template.to_string(),
            message,
        };
        let documents = api::parse_documents(&text).map_err(|e: ApiError| check(e.to_string()))?;
        let found: Vec<&str> = documents.iter().map(Document::kind).collect();
        if found != kinds {
            return Err(check(format!("documents {found:?}, expected {kinds:?}")));
        }
        for d in &documents {
            if let Document::Init(a, _) | Document::Cluster(a, _) | Document::Join(a, _) = d
                && *a != self.api
            {
                return Err(check(format!("{a} instead of {}", self.api)));
            }
        }
        Ok(RenderedConfig {
            template,
            text,
            documents,
        })
    }
}

/// A rendered kubeadm configuration file and its parsed documents. It may
/// hold the bootstrap token and certificate key: write it to the node with
/// mode 0600, and do not log it (`Debug` shows neither text nor tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct RenderedConfig {
    pub template: &'static str,
    pub text: String,
    pub documents: Vec<Document>,
}

impl fmt::Debug for RenderedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RenderedConfig")
            .field("template", &self.template)
            .field("bytes", &self.text.len())
            .field(
                "documents",
                &self
                    .documents
                    .iter()
                    .map(Document::kind)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}
