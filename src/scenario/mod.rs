//! The scenario catalogue: every scenario a lab file may name. Each lives in
//! a module of its own (`src/scenario/<name>.rs`) that holds all kubelab
//! knows of it — its typed parameters, their checks, the VMs and groups it
//! runs on, and its resolved parameters (every default applied) — behind
//! the [`Scenario`] trait; the registry below lists them once, and the rest
//! of kubelab goes through [`ScenarioFile`] without naming any.
//!
//! Each scenario is a playbook with the phases `setup`, `verify`,
//! optionally `break` and `repair`, and `teardown`
//! (`playbooks/scenarios/<name>/`). The playbooks receive the resolved
//! parameters as `scenario`, so no default is written twice.

mod check;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use ipnet::Ipv4Net;

use crate::lab::model::{Kubernetes, Network, Vm};
use crate::yaml::Seg;

pub use check::Checks;

/// The parts of the lab a scenario's defaults and checks look at (the
/// scenarios are a section of the lab, so they see its parts, not the
/// whole [`crate::lab::Lab`]).
#[derive(Clone, Copy, Debug)]
pub struct LabParts<'a> {
    pub vms: &'a [Vm],
    pub networks: &'a [Network],
    pub kubernetes: Option<&'a Kubernetes>,
}

/// What one kind of scenario knows beyond its parameters' shape.
/// Implemented by each kind's parameters.
pub trait Scenario {
    /// Every VM name the parameters refer to, with its path under `params`,
    /// so that the validator can check they exist.
    fn vm_refs(&self) -> Vec<(Vec<Seg>, &str)>;

    /// The VMs the scenario runs on when its parameters name none.
    fn default_vms(&self, vms: &[Vm]) -> Vec<String> {
        all(vms)
    }

    /// The groups its playbooks address besides `scenario`, defaults
    /// resolved (the validator has checked the names).
    fn groups(&self, _vms: &[Vm]) -> Vec<(String, Vec<String>)> {
        Vec::new()
    }

    /// Whether the parameters ask for the lab's Kubernetes cluster.
    fn needs_kubernetes(&self) -> bool {
        false
    }

    /// The scenario's own checks of its parameters against the lab (the
    /// registry checks VM names, duplicates and `needs_kubernetes`).
    fn check(&self, c: &mut Checks<'_, '_>);

    /// The parameters with every default applied: the playbooks' variable
    /// `scenario`.
    fn resolved(&self, lab: &LabParts<'_>) -> Value;

    /// The registry images this scenario runs on the cluster, defaults
    /// resolved (an air-gap bundle carries them); none by default.
    fn images(&self, _lab: &LabParts<'_>) -> Vec<String> {
        Vec::new()
    }
}

/// A registry image parameter: an error at its position when it is not
/// an image reference.
fn check_image(c: &mut Checks<'_, '_>, param: &str, image: Option<&String>) {
    if let Some(image) = image
        && let Err(e) = image.parse::<oci_client::Reference>()
    {
        c.error(
            &c.param(param),
            format!("`{image}` is not an image reference: {e}"),
        );
    }
}

/// The registry: each kind's variant, module, parameters and name, once.
/// It declares the modules and makes [`ScenarioFile`] (the lab file's
/// entry, whose serde and JSON schema are the lab format),
/// [`ScenarioFile::NAMES`] and the dispatch to each kind.
macro_rules! registry {
    ($( $(#[doc = $doc:literal])* $variant:ident($module:ident :: $params:ident) = $name:literal, )*) => {
        $( pub mod $module; )*

        /// `{name: ..., params: {...}}` in a lab file's `scenarios:` list.
        #[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
        #[serde(tag = "name", content = "params", deny_unknown_fields)]
        pub enum ScenarioFile {
            $( $(#[doc = $doc])* #[serde(rename = $name)] $variant($module::$params), )*
        }

        impl ScenarioFile {
            /// Names of all scenarios, as written in lab files.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// The scenario's name as written in lab files.
            pub fn name(&self) -> &'static str {
                match self {
                    $( ScenarioFile::$variant(_) => $name, )*
                }
            }

            /// What this kind of scenario knows.
            pub fn kind(&self) -> &dyn Scenario {
                match self {
                    $( ScenarioFile::$variant(p) => p, )*
                }
            }
        }
    };
}

registry! {
    /// client → firewall → router → web server in containers joined by veth
    /// links; break kills the firewall, repair routes around it.
    ServiceChain(service_chain::ServiceChainParams) = "service-chain",
    /// VXLAN overlay between hosts (Open vSwitch or Linux bridge) with
    /// containers, egress masquerade and TCP ingress.
    Overlay(overlay::OverlayParams) = "overlay",
    /// Two tenants with the same subnet over distinct VNIs, isolated.
    Tenants(tenants::TenantsParams) = "tenants",
    /// Ratchet-style pairs: veth on one host, VXLAN across hosts.
    RatchetPairs(ratchet_pairs::RatchetPairsParams) = "ratchet-pairs",
    /// A → router-a → router-b → B with OSPF (FRR).
    CloudRouter(cloud_router::CloudRouterParams) = "cloud-router",
    /// ping6 between pods (or VMs) on different nodes, and through NAT64.
    Ipv6Ping6(ipv6_ping6::Ipv6Ping6Params) = "ipv6-ping6",
    /// GlusterFS on the storage VMs' spare disks (host mode) or with heketi.
    Glusterfs(glusterfs::GlusterfsParams) = "glusterfs",
    /// Build an image with buildah into CRI-O's storage and run it.
    CrioBuildah(crio_buildah::CrioBuildahParams) = "crio-buildah",
}

impl ScenarioFile {
    /// The VMs the scenario runs on (its group `scenario`): those its
    /// parameters name, in order and once each, else its default ones.
    pub fn members(&self, vms: &[Vm]) -> Vec<String> {
        let mut members: Vec<String> = Vec::new();
        for (_, vm) in self.kind().vm_refs() {
            if !members.iter().any(|m| m == vm) {
                members.push(vm.to_string());
            }
        }
        if members.is_empty() {
            members = self.kind().default_vms(vms);
        }
        members
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// Without Kubernetes, directly on the VMs.
    #[default]
    Host,
    /// On the Kubernetes cluster.
    Kubernetes,
}

/// VXLAN UDP port of every scenario that gives none (IANA's).
pub const VXLAN_PORT: u16 = 4789;

/// The MTU inside a VXLAN across the lab's first network (the VMs' own):
/// that network's MTU (1500 unless set) less the 50 bytes VXLAN adds over
/// IPv4 (outer IPv4, UDP, VXLAN and inner Ethernet headers), less `extra`
/// (IPsec ESP).
fn vxlan_mtu(lab: &LabParts<'_>, extra: u32) -> u32 {
    let underlay = lab.networks.first().and_then(|n| n.mtu).unwrap_or(1500);
    underlay.saturating_sub(50 + extra)
}

/// Whether `net` holds host number `last` with room for its broadcast
/// address: where a scenario's address layout meets a subnet of the lab's.
fn fits(net: Ipv4Net, last: u64) -> bool {
    let room = 1u64 << (32 - u32::from(net.prefix_len()));
    room >= last + 2
}

/// VM names as the stage's groups and resolved parameters hold them.
fn owned<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names.into_iter().map(str::to_string).collect()
}

/// Every VM, by name.
fn all(vms: &[Vm]) -> Vec<String> {
    vms.iter().map(|v| v.name.clone()).collect()
}

/// The workers, else every VM.
fn workers_else_all(vms: &[Vm]) -> Vec<String> {
    let workers: Vec<String> = vms
        .iter()
        .filter(|v| v.has_role("worker"))
        .map(|v| v.name.clone())
        .collect();
    if workers.is_empty() {
        all(vms)
    } else {
        workers
    }
}

/// The first worker, else the first VM without role `nat64`.
fn first_worker(vms: &[Vm]) -> Option<&str> {
    vms.iter()
        .find(|v| v.has_role("worker"))
        .or_else(|| vms.iter().find(|v| !v.has_role("nat64")))
        .map(|v| v.name.as_str())
}

/// The gateway of the lab's first network, as the scenarios that reach
/// "outside" default to it.
fn first_gateway4(lab: &LabParts<'_>) -> Option<String> {
    lab.networks
        .first()
        .and_then(|n| n.gateway4())
        .map(|a| a.to_string())
}

/// `names` when given, else `default`.
fn or_default(names: &[String], default: impl FnOnce() -> Vec<String>) -> Vec<String> {
    if names.is_empty() {
        default()
    } else {
        names.to_vec()
    }
}

/// A resolved-parameters value; serializing these plain structs cannot
/// fail, and `null` is what a playbook would see for a missing value.
fn to_json(resolved: impl Serialize) -> Value {
    serde_json::to_value(resolved).unwrap_or(Value::Null)
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
