//! `kubelab graph LAB`: the lab's topology as a picture, from the validated
//! model alone (no virthost needed), or with `--live` the state read from
//! the virthost beside it. One neutral [`Topology`] and three renderers:
//! Graphviz `dot`, Mermaid, and an SVG kubelab lays out itself
//! ([`svg`]).

pub mod dot;
pub mod mermaid;
pub mod svg;

use serde::Serialize;

use crate::lab::Lab;
use crate::lab::model::{Connection, NetworkKind};

/// What the picture shows.
#[derive(Clone, Debug, Serialize)]
pub struct Topology {
    pub lab: String,
    /// `local`, or `user@address`.
    pub virthost: String,
    /// One line on the cluster (`Kubernetes 1.31 · containerd · flannel ·
    /// ipv4 · HA haproxy`), when the lab has one.
    pub kubernetes: Option<String>,
    pub networks: Vec<NetworkNode>,
    pub vms: Vec<VmNode>,
    pub links: Vec<LinkEdge>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NetworkNode {
    pub name: String,
    /// `nat`, `isolated` or `bridged <bridge>`.
    pub kind: String,
    pub ipv4: Option<String>,
    pub ipv6: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VmNode {
    pub name: String,
    pub roles: Vec<String>,
    pub cpus: u32,
    pub memory_mib: u64,
    /// `vdb 10 GiB`.
    pub disks: Vec<String>,
    pub nics: Vec<NicEdge>,
    /// Scenarios placed on this VM.
    pub scenarios: Vec<String>,
    /// `--live`: the domain's state (`running`, `shut off`, `absent`).
    pub state: Option<String>,
    /// `--live`: the addresses the virthost sees.
    pub live_addresses: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct NicEdge {
    pub network: String,
    /// Static addresses, or `dhcp` / `slaac`.
    pub addresses: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LinkEdge {
    /// Each end: its VM and the interface (with where it lives).
    pub a: (String, String),
    pub b: (String, String),
    /// `veth` (both ends on one VM) or `vxlan`.
    pub kind: String,
    pub vni: Option<u32>,
}

/// What `--live` read from the virthost, per VM.
#[derive(Clone, Debug)]
pub struct LiveVm {
    pub name: String,
    pub state: String,
    pub addresses: Vec<String>,
}

impl Topology {
    pub fn of(lab: &Lab, live: Option<&[LiveVm]>) -> Topology {
        let virthost = match &lab.virthost.connection {
            Connection::Local => "local".to_string(),
            Connection::Ssh(h) => format!("{}@{}", h.user, h.address),
        };
        let kubernetes = lab.kubernetes.as_ref().map(|k| {
            let mut parts = vec![
                format!("Kubernetes {}", k.version),
                enum_name(&k.runtime),
                enum_name(&k.cni),
                enum_name(&k.ip_family),
            ];
            if let Some(ha) = &k.ha {
                parts.push(format!("HA {}", enum_name(&ha.mode)));
            }
            parts.join(" · ")
        });
        let networks = lab
            .networks
            .iter()
            .map(|n| NetworkNode {
                name: n.name.clone(),
                kind: match &n.kind {
                    NetworkKind::Nat => "nat".into(),
                    NetworkKind::Isolated => "isolated".into(),
                    NetworkKind::Bridged { bridge, .. } => format!("bridged {bridge}"),
                },
                ipv4: n.ipv4.map(|p| p.to_string()),
                ipv6: n.ipv6.map(|p| p.to_string()),
            })
            .collect();
        let vms = lab
            .vms
            .iter()
            .map(|vm| {
                let nics = vm
                    .nics
                    .iter()
                    .map(|nic| {
                        let net = lab.network(&nic.network);
                        let mut addresses = Vec::new();
                        match (nic.ipv4, net.and_then(|n| n.ipv4)) {
                            (Some(a), Some(p)) => addresses.push(format!("{a}/{}", p.prefix_len())),
                            (None, Some(_)) => addresses.push("dhcp".into()),
                            _ => {}
                        }
                        match (nic.ipv6, net.and_then(|n| n.ipv6)) {
                            (Some(a), Some(p)) => addresses.push(format!("{a}/{}", p.prefix_len())),
                            (None, Some(_)) => addresses.push("slaac".into()),
                            _ => {}
                        }
                        NicEdge {
                            network: nic.network.clone(),
                            addresses,
                        }
                    })
                    .collect();
                let scenarios = lab
                    .scenarios
                    .iter()
                    .filter(|s| s.members(&lab.vms).iter().any(|m| m == &vm.name))
                    .map(|s| s.name().to_string())
                    .collect();
                let seen = live.and_then(|l| l.iter().find(|l| l.name == vm.name));
                VmNode {
                    name: vm.name.clone(),
                    roles: vm.roles.clone(),
                    cpus: vm.cpus,
                    memory_mib: vm.memory_mib,
                    disks: vm
                        .spare_disks
                        .iter()
                        .map(|d| format!("{} {}", d.dev, size(d.size_mib)))
                        .collect(),
                    nics,
                    scenarios,
                    state: live.map(|_| seen.map_or("absent".into(), |s| s.state.clone())),
                    live_addresses: seen.map(|s| s.addresses.clone()).unwrap_or_default(),
                }
            })
            .collect();
        let links = lab
            .links
            .iter()
            .map(|l| LinkEdge {
                a: (l.ends[0].vm.clone(), end_label(&l.ends[0])),
                b: (l.ends[1].vm.clone(), end_label(&l.ends[1])),
                kind: if l.is_local() { "veth" } else { "vxlan" }.into(),
                vni: l.vni,
            })
            .collect();
        Topology {
            lab: lab.name.clone(),
            virthost,
            kubernetes,
            networks,
            vms,
            links,
        }
    }
}

impl NetworkNode {
    /// Name, kind and prefixes, a line each (the text renderers' label).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![self.name.clone(), self.kind.clone()];
        lines.extend(self.ipv4.iter().chain(&self.ipv6).cloned());
        lines
    }
}

impl VmNode {
    /// Name, roles, size, disks, scenarios and the live state, a line
    /// each (the text renderers' label; addresses go on the edges).
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![self.name.clone(), self.roles.join(", "), self.size()];
        lines.extend(self.disks.iter().map(|d| format!("disk {d}")));
        lines.extend(self.scenarios.iter().map(|s| format!("scenario {s}")));
        lines.extend(self.state.iter().map(|s| format!("[{s}]")));
        lines
    }

    /// `2 CPU · 4 GiB`.
    pub fn size(&self) -> String {
        format!("{} CPU · {}", self.cpus, size(self.memory_mib))
    }

    /// The Kubernetes (or lab) role the picture colours the VM by.
    pub fn main_role(&self) -> &str {
        for role in ["control-plane", "worker", "lb", "nat64"] {
            if self.roles.iter().any(|r| r == role) {
                return role;
            }
        }
        self.roles.first().map_or("vm", String::as_str)
    }
}

impl LinkEdge {
    pub fn label(&self) -> String {
        match self.vni {
            Some(vni) => format!("{} {vni}", self.kind),
            None => self.kind.clone(),
        }
    }
}

/// `eth1`, or `lk0 in netns lk-a` for an end inside a namespace,
/// container or pod.
fn end_label(end: &crate::lab::model::LinkEndpoint) -> String {
    match end.endpoint {
        crate::endpoint::Endpoint::Host => end.ifname.clone(),
        ref other => format!("{} in {other}", end.ifname),
    }
}

fn size(mib: u64) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

/// A fixed choice's name as the lab file writes it.
fn enum_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// An identifier for `dot` and Mermaid from any name.
fn ident(prefix: &str, name: &str) -> String {
    let body: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("{prefix}_{body}")
}
