//! Lab files: what the YAML says ([`file`]), how it is read ([`load`]) and
//! checked ([`validate`] with a [`checker::Checker`]), and the validated
//! [`Lab`] the rest of kubelab uses, made of the parts in [`model`].
//!
//! The layers inside: [`choices`], [`model`] and [`checker`] at the bottom;
//! the scenario catalogue (`crate::scenario`) above them, since each
//! scenario's parameters are a section of the file and are checked and
//! resolved against the lab's parts; [`file`], [`validate`], [`load`] and
//! the [`Lab`] on top, holding the scenarios.

pub mod checker;
pub mod choices;
pub mod duration;
pub mod file;
pub mod load;
pub mod model;
pub mod overrides;
pub mod placement;
pub mod size;
pub mod validate;

use std::path::PathBuf;

use serde::Serialize;

pub use load::{LoadOptions, load, load_str};
use model::{
    Fabric, Image, Kubernetes, LabVirthost, Link, Nat64, Network, Placement, Tunnel, Vars,
    Virthost, Vm,
};

use crate::scenario::{LabParts, ScenarioFile};

/// The validated lab.
#[derive(Clone, Debug, Serialize)]
pub struct Lab {
    pub name: String,
    pub description: Option<String>,
    /// The lab file this came from.
    pub file: PathBuf,
    /// The first of `virthosts`: every network's gateway.
    pub virthost: Virthost,
    /// Every virthost of the lab, named (one, `virthost`, for a lab with
    /// `virthost:`).
    pub virthosts: Vec<LabVirthost>,
    /// How VMs that name no virthost are placed.
    pub placement: Placement,
    /// A lab as one of its virthosts holds it ([`Lab::on_virthost`]): how
    /// its networks join the other virthosts', and the VMs that run
    /// elsewhere (their DHCP reservations are served here too).
    pub fabric: Option<Fabric>,
    pub elsewhere: Vec<Vm>,
    pub networks: Vec<Network>,
    pub image: Image,
    pub vms: Vec<Vm>,
    pub kubernetes: Option<Kubernetes>,
    /// The `links:` section, checked (VNIs of cross-VM links resolved).
    pub links: Vec<Link>,
    #[serde(skip)]
    pub scenarios: Vec<ScenarioFile>,
    pub vars: Vars,
    /// What `vars` says of NAT64 (used when a VM has the role `nat64`).
    pub nat64: Nat64,
    /// `ttl:` in seconds: how long the lab may stay after its creation
    /// (`kubelab reap` removes it then).
    pub ttl: Option<u64>,
}

impl Lab {
    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|n| n.name == name)
    }
    pub fn vm(&self, name: &str) -> Option<&Vm> {
        self.vms.iter().find(|v| v.name == name)
    }
    /// Whether the lab spans several virthosts.
    pub fn is_spread(&self) -> bool {
        self.virthosts.len() > 1
    }

    /// The lab as its virthost `i` holds it: that virthost, the VMs placed
    /// on it (all placed: see [`placement`]), and for a lab over several
    /// virthosts the fabric joining its networks to the others' (the first
    /// virthost is every network's gateway). A lab with one virthost is
    /// returned as it is.
    pub fn on_virthost(&self, i: usize) -> Lab {
        let mut lab = self.clone();
        if !self.is_spread() {
            return lab;
        }
        let name = &self.virthosts[i].name;
        lab.virthost = self.virthosts[i].virthost.clone();
        let (here, elsewhere): (Vec<Vm>, Vec<Vm>) = self
            .vms
            .iter()
            .cloned()
            .partition(|v| v.virthost.as_deref() == Some(name.as_str()));
        lab.vms = here;
        lab.elsewhere = elsewhere;
        let address = |v: &LabVirthost| {
            v.tunnel_address
                .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
        };
        lab.fabric = Some(Fabric {
            gateway: i == 0,
            local: address(&self.virthosts[i]),
            peers: self
                .virthosts
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, v)| address(v))
                .collect(),
            tunnels: self
                .networks
                .iter()
                .filter(|n| !matches!(n.kind, model::NetworkKind::Bridged { .. }))
                .map(|n| Tunnel::of(&self.name, &n.name))
                .collect(),
        });
        lab
    }
    /// VMs with a role, in lab order.
    pub fn group(&self, role: &str) -> Vec<&Vm> {
        self.vms
            .iter()
            .filter(|v| v.roles.iter().any(|r| r == role))
            .collect()
    }
    /// All group names (roles), sorted, without duplicates.
    pub fn groups(&self) -> Vec<String> {
        let mut g: Vec<String> = self.vms.iter().flat_map(|v| v.roles.clone()).collect();
        g.sort();
        g.dedup();
        g
    }
    /// What a scenario's defaults and checks look at.
    pub fn parts(&self) -> LabParts<'_> {
        LabParts {
            vms: &self.vms,
            networks: &self.networks,
            kubernetes: self.kubernetes.as_ref(),
        }
    }
    /// Prefix of every libvirt object this lab owns.
    pub fn prefix(&self) -> String {
        format!("kl-{}-", self.name)
    }
}

/// An IPv6-only cluster lab with static addresses and a NAT64 VM, for the
/// unit tests of the stages.
#[cfg(test)]
pub const IPV6_TEST_LAB: &str = r#"
name: k
virthost: local
image: {build: debian-12}
networks: [{name: lan, kind: nat, ipv4: 10.9.0.0/24, ipv6: "fd00:9::/64"}]
vms:
  - {name: cp, roles: [control-plane], cpus: 2, memory: 2GiB, nics: [{network: lan, ipv4: 10.9.0.10, ipv6: "fd00:9::10"}]}
  - {name: w, roles: [worker], nics: [{network: lan, ipv4: 10.9.0.20, ipv6: "fd00:9::20"}]}
  - {name: gw, roles: [nat64], nics: [{network: lan, ipv4: 10.9.0.64, ipv6: "fd00:9::64"}]}
kubernetes: {version: "1.31", ip_family: ipv6}
"#;

/// A lab from YAML text (as if read from `lab.yaml`), for unit tests:
/// panics with the rendered diagnostics when it is invalid.
#[cfg(test)]
pub fn from_test_yaml(text: &str) -> Lab {
    load_str(std::path::Path::new("lab.yaml"), text, &Default::default())
        .map_err(|e| e.render(false))
        .unwrap()
        .0
}
