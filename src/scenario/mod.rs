//! The scenario catalogue: every scenario a lab file may name, with its
//! typed parameters. Each scenario is a playbook with the phases `setup`,
//! `verify`, optionally `break` and `repair`, and `teardown`.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::lab::model::Vm;
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

    /// The VMs the scenario runs on when its parameters name none: for
    /// `overlay` the workers (all VMs when there are none), for `tenants`
    /// the first two of those; for the others every VM.
    pub fn default_vms(&self, vms: &[crate::lab::model::Vm]) -> Vec<String> {
        let all = || vms.iter().map(|v| v.name.clone()).collect::<Vec<_>>();
        let workers_else_all = || {
            let workers: Vec<String> = vms
                .iter()
                .filter(|v| v.roles.iter().any(|r| r == "worker"))
                .map(|v| v.name.clone())
                .collect();
            if workers.is_empty() { all() } else { workers }
        };
        match self {
            ScenarioFile::Overlay(_) => workers_else_all(),
            ScenarioFile::Tenants(_) => workers_else_all().into_iter().take(2).collect(),
            _ => all(),
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
            ScenarioFile::Glusterfs(p) => {
                let mut refs = many("storage", &p.storage);
                refs.extend(one("client", &p.client));
                refs
            }
            ScenarioFile::CrioBuildah(p) => one("node", &p.node),
        }
    }
}

impl ScenarioFile {
    /// The groups a scenario's playbooks address, besides `scenario`, with
    /// their defaults resolved (the validator has checked the names):
    /// glusterfs `gluster_storage` and `gluster_client`, crio-buildah
    /// `crio_node`, ipv6-ping6 `ping6_nodes`.
    pub fn groups(&self, vms: &[Vm]) -> Vec<(String, Vec<String>)> {
        let owned = |v: Vec<&str>| v.into_iter().map(str::to_string).collect::<Vec<_>>();
        match self {
            ScenarioFile::Glusterfs(p) => vec![
                ("gluster_storage".into(), owned(p.storage_vms(vms))),
                (
                    "gluster_client".into(),
                    owned(p.client_vm(vms).into_iter().collect()),
                ),
            ],
            ScenarioFile::CrioBuildah(p) => {
                vec![(
                    "crio_node".into(),
                    owned(p.node_vm(vms).into_iter().collect()),
                )]
            }
            ScenarioFile::Ipv6Ping6(p) => vec![("ping6_nodes".into(), owned(p.node_vms(vms)))],
            _ => Vec::new(),
        }
    }
}

/// The first worker, else the first VM without role `nat64`.
fn first_worker(vms: &[Vm]) -> Option<&str> {
    vms.iter()
        .find(|v| v.has_role("worker"))
        .or_else(|| vms.iter().find(|v| !v.has_role("nat64")))
        .map(|v| v.name.as_str())
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
    /// VXLAN UDP destination port (default 4789).
    #[serde(default)]
    pub port: Option<u16>,
    /// An IPv4 address outside the overlay that containers must reach
    /// through their host's gateway (default: the gateway of the lab's first
    /// network).
    #[serde(default)]
    pub outside: Option<String>,
    /// Encrypt the tunnels with IPsec: ESP in transport mode between the
    /// hosts, kernel security associations keyed by kubelab from a random
    /// key generated on the first host (never logged), for either switch
    /// and any UDP port. (Debian 12's openvswitch-ipsec protects only UDP
    /// 4789, so it is not used.)
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
    /// VXLAN UDP destination port (default 4789).
    #[serde(default)]
    pub port: Option<u16>,
    /// Addresses between each tenant's gateway (on the first host) and that
    /// host: one /30 per tenant, in order (default 100.64.71.0/24).
    #[serde(default)]
    pub transit: Option<String>,
    /// An IPv4 address outside the tenant networks that workloads must
    /// reach through their tenant's gateway (default: the gateway of the
    /// lab's first network).
    #[serde(default)]
    pub outside: Option<String>,
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
    /// `kubernetes`: two pods pinned to the two nodes ping each other and
    /// reach a Service over IPv6 (needs an IPv6 or dual-stack cluster);
    /// `host`: the VMs ping each other. Default: `kubernetes` when the lab
    /// has a cluster, else `host`. The VM-to-VM checks run in both modes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<ClusterMode>,
    /// Nodes to ping between (default: the first two workers, else the
    /// first two VMs without role `nat64`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Also ping an IPv4 address through the NAT64 VM (role `nat64`): the
    /// nodes route 64:ff9b::/96 via it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through_nat64: Option<bool>,
    /// The IPv4 address pinged through NAT64 (default: the virthost's
    /// address on the lab's first network with IPv4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat64_target: Option<String>,
}

impl Ipv6Ping6Params {
    /// The two nodes, defaults resolved.
    pub fn node_vms<'a>(&'a self, vms: &'a [Vm]) -> Vec<&'a str> {
        if !self.nodes.is_empty() {
            return self.nodes.iter().map(String::as_str).collect();
        }
        let workers: Vec<&str> = vms
            .iter()
            .filter(|v| v.has_role("worker"))
            .map(|v| v.name.as_str())
            .take(2)
            .collect();
        if workers.len() == 2 {
            return workers;
        }
        vms.iter()
            .filter(|v| !v.has_role("nat64"))
            .map(|v| v.name.as_str())
            .take(2)
            .collect()
    }
}

#[derive(Clone, Debug, Default, Deserialize, serde::Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlusterfsParams {
    /// `host`: glusterd on the storage VMs; `kubernetes`: heketi + StorageClass.
    #[serde(default)]
    pub mode: ClusterMode,
    /// The storage VMs; the first spare disk of each becomes a brick
    /// (default: the VMs with role `storage`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage: Vec<String>,
    /// Replica count (default: the number of storage VMs, at most 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<u32>,
    /// VM that mounts the volume (default: the first non-storage VM, else
    /// the first storage VM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Name of the volume (host mode; default `kubelab`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

impl GlusterfsParams {
    /// The storage VMs, defaults resolved.
    pub fn storage_vms<'a>(&'a self, vms: &'a [Vm]) -> Vec<&'a str> {
        if !self.storage.is_empty() {
            return self.storage.iter().map(String::as_str).collect();
        }
        vms.iter()
            .filter(|v| v.has_role("storage"))
            .map(|v| v.name.as_str())
            .collect()
    }

    /// The client VM, defaults resolved.
    pub fn client_vm<'a>(&'a self, vms: &'a [Vm]) -> Option<&'a str> {
        if let Some(c) = &self.client {
            return Some(c);
        }
        let storage = self.storage_vms(vms);
        vms.iter()
            .map(|v| v.name.as_str())
            .find(|n| !storage.contains(n))
            .or_else(|| storage.first().copied())
    }

    /// The replica count, defaults resolved.
    pub fn replica_count(&self, vms: &[Vm]) -> u32 {
        self.replica
            .unwrap_or_else(|| self.storage_vms(vms).len().min(3) as u32)
    }
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
    /// The node that builds and runs the image (default: the first worker,
    /// else the first VM without role `nat64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `host`: podman runs the image on the node; `kubernetes`: a pod with
    /// `imagePullPolicy: Never` (needs `runtime: crio`).
    #[serde(default)]
    pub mode: ClusterMode,
    /// The image buildah builds (default `localhost/kubelab/crio-demo:latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The node label the pod selects, `key=value` (Kubernetes mode;
    /// default `beefylevel=expert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_label: Option<String>,
}

impl CrioBuildahParams {
    /// The node, defaults resolved.
    pub fn node_vm<'a>(&'a self, vms: &'a [Vm]) -> Option<&'a str> {
        self.node.as_deref().or_else(|| first_worker(vms))
    }
}

/// Why `image` is not a reference crio-buildah can build and run without a
/// registry: `localhost/<path>:<tag>` in lowercase letters, digits and
/// `._-/` (CRI-O would look anything else up on a registry).
pub fn image_reference_problem(image: &str) -> Option<String> {
    let Some(rest) = image.strip_prefix("localhost/") else {
        return Some("it must start with `localhost/` (the image never leaves the node)".into());
    };
    let Some((path, tag)) = rest.rsplit_once(':') else {
        return Some("it needs a tag, e.g. `:latest`".into());
    };
    if let Some(c) = image
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(*c)))
    {
        return Some(format!("`{}` is not allowed", c.escape_debug()));
    }
    if path.is_empty() || path.split('/').any(str::is_empty) {
        return Some("its path has an empty part".into());
    }
    if tag.is_empty() || tag.len() > 128 || tag.contains('/') {
        return Some(format!("`{tag}` is not a tag"));
    }
    if image.len() > 255 {
        return Some("it is longer than 255 characters".into());
    }
    None
}

/// Why `label` is not a Kubernetes node label `key=value` (an optional
/// `prefix/` on the key; names and value up to 63 characters of letters,
/// digits, `-`, `_`, `.`, starting and ending alphanumeric).
pub fn node_label_problem(label: &str) -> Option<String> {
    let Some((key, value)) = label.split_once('=') else {
        return Some("write it as `key=value`".into());
    };
    let name_problem = |what: &str, s: &str, empty_ok: bool| -> Option<String> {
        if s.is_empty() {
            return (!empty_ok).then(|| format!("the {what} is empty"));
        }
        if s.len() > 63 {
            return Some(format!("the {what} is longer than 63 characters"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
        {
            return Some(format!(
                "`{}` is not allowed in the {what}",
                c.escape_debug()
            ));
        }
        let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        if !edge_ok(s.chars().next()) || !edge_ok(s.chars().last()) {
            return Some(format!(
                "the {what} must start and end with a letter or digit"
            ));
        }
        None
    };
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            let bad = prefix.len() > 253
                || prefix
                    .split('.')
                    .any(|part| crate::lab::validate::label_problem(part, 63).is_some());
            if bad {
                return Some(format!("the key prefix `{prefix}` is not a DNS name"));
            }
            name
        }
        None => key,
    };
    name_problem("key", name, false).or_else(|| name_problem("value", value, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for ok in [
            "localhost/kubelab/crio-demo:latest",
            "localhost/demo:1.0",
            "localhost/a.b_c-d/e:v2",
        ] {
            assert_eq!(image_reference_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("docker.io/library/demo:1", "localhost/"),
            ("localhost/demo", "needs a tag"),
            ("localhost/Demo:1", "`D` is not allowed"),
            ("localhost//demo:1", "empty part"),
            ("localhost/demo:", "is not a tag"),
            ("localhost/demo:1;rm", "`;` is not allowed"),
        ] {
            let got = image_reference_problem(bad).unwrap_or_default();
            assert!(got.contains(why), "{bad}: {got}");
        }
    }

    #[test]
    fn node_labels() {
        for ok in [
            "beefylevel=expert",
            "example.com/tier=a-b",
            "k=",
            "a.b_c=x.Y",
        ] {
            assert_eq!(node_label_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("beefylevel", "key=value"),
            ("=x", "key is empty"),
            ("k=a b", "` ` is not allowed in the value"),
            ("-k=v", "start and end"),
            ("Bad_Prefix/k=v", "not a DNS name"),
            ("k=$(x)", "`$` is not allowed"),
        ] {
            let got = node_label_problem(bad).unwrap_or_default();
            assert!(got.contains(why), "{bad}: {got}");
        }
    }
}
