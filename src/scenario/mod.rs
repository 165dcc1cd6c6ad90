//! The scenario catalogue: every scenario a lab file may name, with its
//! typed parameters. Each scenario is a playbook with the phases `setup`,
//! `verify`, optionally `break` and `repair`, and `teardown`.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::yaml::Seg;

/// `{name: ..., params: {...}}` in a lab file's `scenarios:` list.
#[derive(Clone, Debug, Deserialize, serde::Serialize, JsonSchema)]
#[serde(
    tag = "name",
    content = "params",
    rename_all = "kebab-case",
    deny_unknown_fields
)]
pub enum ScenarioFile {
    /// client → firewall → router → web server in containers joined by veth
    /// links; break kills the firewall, repair routes around it.
    ServiceChain(ServiceChainParams),
    /// VXLAN overlay between hosts (Open vSwitch or Linux bridge) with
    /// containers, egress masquerade and TCP ingress.
    Overlay(OverlayParams),
    /// Two tenants with the same subnet over distinct VNIs, isolated.
    Tenants(TenantsParams),
    /// Ratchet-style pairs: veth on one host, VXLAN across hosts.
    RatchetPairs(RatchetPairsParams),
    /// A → router-a → router-b → B with OSPF (FRR).
    CloudRouter(CloudRouterParams),
    /// ping6 between pods (or VMs) on different nodes, and through NAT64.
    Ipv6Ping6(Ipv6Ping6Params),
    /// GlusterFS on the storage VMs' spare disks (host mode) or with heketi.
    Glusterfs(GlusterfsParams),
    /// Build an image with buildah into CRI-O's storage and run it.
    CrioBuildah(CrioBuildahParams),
}

impl ScenarioFile {
    /// The scenario's name as written in lab files.
    pub fn name(&self) -> &'static str {
        match self {
            ScenarioFile::ServiceChain(_) => "service-chain",
            ScenarioFile::Overlay(_) => "overlay",
            ScenarioFile::Tenants(_) => "tenants",
            ScenarioFile::RatchetPairs(_) => "ratchet-pairs",
            ScenarioFile::CloudRouter(_) => "cloud-router",
            ScenarioFile::Ipv6Ping6(_) => "ipv6-ping6",
            ScenarioFile::Glusterfs(_) => "glusterfs",
            ScenarioFile::CrioBuildah(_) => "crio-buildah",
        }
    }

    /// Every VM name the parameters refer to, with its path under `params`,
    /// so that the validator can check they exist.
    pub fn vm_refs(&self) -> Vec<(Vec<Seg>, &str)> {
        match self {
            ScenarioFile::ServiceChain(p) => one("node", &p.node),
            ScenarioFile::Overlay(p) => many("hosts", &p.hosts),
            ScenarioFile::Tenants(p) => many("hosts", &p.hosts),
            ScenarioFile::RatchetPairs(p) => p
                .pairs
                .iter()
                .enumerate()
                .flat_map(|(i, pair)| {
                    [("primary", &pair.primary), ("pair", &pair.pair)]
                        .into_iter()
                        .map(move |(side, end)| {
                            (
                                vec![
                                    Seg::Key("pairs".into()),
                                    Seg::Index(i),
                                    Seg::Key(side.into()),
                                    Seg::Key("vm".into()),
                                ],
                                end.vm.as_str(),
                            )
                        })
                })
                .collect(),
            ScenarioFile::CloudRouter(p) => many("hosts", &p.hosts),
            ScenarioFile::Ipv6Ping6(p) => many("nodes", &p.nodes),
            ScenarioFile::Glusterfs(p) => one("client", &p.client),
            ScenarioFile::CrioBuildah(p) => one("node", &p.node),
        }
    }
}

fn one<'a>(key: &str, v: &'a Option<String>) -> Vec<(Vec<Seg>, &'a str)> {
    v.as_deref()
        .map(|n| (vec![Seg::Key(key.to_string())], n))
        .into_iter()
        .collect()
}

fn many<'a>(key: &str, v: &'a [String]) -> Vec<(Vec<Seg>, &'a str)> {
    v.iter()
        .enumerate()
        .map(|(i, n)| (vec![Seg::Key(key.to_string()), Seg::Index(i)], n.as_str()))
        .collect()
}

/// Names of all scenarios, for messages and completions.
pub const SCENARIO_NAMES: &[&str] = &[
    "service-chain",
    "overlay",
    "tenants",
    "ratchet-pairs",
    "cloud-router",
    "ipv6-ping6",
    "glusterfs",
    "crio-buildah",
];

/// How workloads of networking scenarios are run on a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// Podman containers (images built locally from the node's packages).
    #[default]
    Podman,
    /// Docker containers.
    Docker,
    /// Plain network namespaces (no container runtime needed).
    Netns,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceChainParams {
    /// The VM running the chain (default: the lab's first VM).
    #[serde(default)]
    pub node: Option<String>,
    /// podman (default) or docker.
    #[serde(default)]
    pub engine: Engine,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlaySwitch {
    /// Open vSwitch bridges with VXLAN ports.
    #[default]
    Ovs,
    /// Linux bridges with kernel VXLAN devices.
    Linux,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverlayParams {
    /// Two or more VMs (default: all workers, else all VMs).
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub switch: OverlaySwitch,
    /// VXLAN network identifier (default 5000).
    #[serde(default)]
    pub vni: Option<u32>,
    /// Overlay subnet (default 172.16.0.0/24).
    #[serde(default)]
    pub subnet: Option<String>,
    /// Container port published through the host's address (default 9000).
    #[serde(default)]
    pub ingress_port: Option<u16>,
    /// IPsec-encrypt the tunnels (OVS only, needs openvswitch-ipsec).
    #[serde(default)]
    pub encrypt: bool,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantsParams {
    /// The two VMs the tenant networks span.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The subnet every tenant uses (default 10.1.2.0/24).
    #[serde(default)]
    pub subnet: Option<String>,
    /// Tenants and their VNIs (default blue/5001 and red/5002).
    #[serde(default)]
    pub tenants: Vec<TenantParams>,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantParams {
    pub name: String,
    pub vni: u32,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatchetPairsParams {
    /// `kubelab` links the workloads itself; `ratchet-cni` installs the
    /// Ratchet CNI plugin on the cluster (needs `kubernetes`).
    #[serde(default)]
    pub mode: RatchetMode,
    /// The workloads and their links (default: one pair, `rp-primary`
    /// 192.168.2.100/24 `in1` on the first VM and `rp-pair`
    /// 192.168.2.101/24 `in2` on the second, as in Ratchet's example).
    #[serde(default)]
    pub pairs: Vec<RatchetPair>,
    /// VNI of the first pair across hosts; pair k uses `vni + k`
    /// (default 11, as Ratchet counted).
    #[serde(default)]
    pub vni: Option<u32>,
    /// UDP port of the VXLAN links (default 4789).
    #[serde(default)]
    pub port: Option<u16>,
    /// ratchet-cni: a .tar.gz with the `ratchet` and `ratchet-child`
    /// binaries (built from github.com/dougbtv/ratchet-cni), installed in
    /// /opt/cni/bin on every node; without it they must be there already.
    #[serde(default)]
    pub binaries_url: Option<String>,
    /// ratchet-cni: its SHA-256, as 64 hex digits.
    #[serde(default)]
    pub binaries_sha256: Option<String>,
    /// ratchet-cni: the etcd image (default registry.k8s.io/etcd:3.5.16-0,
    /// which kubeadm's control planes already hold).
    #[serde(default)]
    pub etcd_image: Option<String>,
    /// ratchet-cni: the pairs' pod image (default docker.io/library/busybox:1.36).
    #[serde(default)]
    pub pod_image: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RatchetMode {
    #[default]
    Kubelab,
    RatchetCni,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatchetPair {
    pub primary: RatchetEnd,
    pub pair: RatchetEnd,
}

#[derive(Clone, Debug, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatchetEnd {
    /// Workload name (container or pod).
    pub name: String,
    /// The VM it runs on.
    pub vm: String,
    /// Address with prefix length, e.g. `192.168.2.100/24`.
    pub ip: String,
    /// Interface name inside the workload (default `in1`).
    #[serde(default)]
    pub ifname: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudRouterParams {
    /// The two VMs hosting router-a/A and router-b/B (default: the lab's
    /// first two VMs).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// VNI of the VXLAN link between the routers (default 4242).
    #[serde(default)]
    pub vni: Option<u32>,
    /// Its UDP port (default 4789).
    #[serde(default)]
    pub port: Option<u16>,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ipv6Ping6Params {
    /// Nodes to ping between (default: the first two workers).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// Also ping an IPv4 address through the NAT64 VM (role `nat64`).
    #[serde(default)]
    pub through_nat64: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlusterfsParams {
    /// `host`: glusterd on the storage VMs; `kubernetes`: heketi + StorageClass.
    #[serde(default)]
    pub mode: ClusterMode,
    /// Replica count (default: the number of storage VMs, at most 3).
    #[serde(default)]
    pub replica: Option<u32>,
    /// VM that mounts the volume (default: the first non-storage VM).
    #[serde(default)]
    pub client: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// Without Kubernetes, directly on the VMs.
    #[default]
    Host,
    /// On the Kubernetes cluster.
    Kubernetes,
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrioBuildahParams {
    /// The node that builds and runs the image (default: the first worker).
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub mode: ClusterMode,
}
