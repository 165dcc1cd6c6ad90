//! `ipv6-ping6`: ping6 between pods (or VMs) on different nodes, and
//! through NAT64.

use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Checks, LabParts, ClusterMode, Scenario, many, owned, to_json};
use crate::lab::model::{IpFamily, Vm};
use crate::yaml::Seg;

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
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
    /// `kubernetes`: the pods' image (default
    /// docker.io/library/busybox:1.36).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

const IMAGE: &str = "docker.io/library/busybox:1.36";

/// What the playbooks see as `scenario`.
#[derive(Serialize)]
struct Resolved {
    mode: ClusterMode,
    nodes: Vec<String>,
    through_nat64: bool,
    nat64_target: Option<String>,
    image: String,
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

impl Scenario for Ipv6Ping6Params {
    fn vm_refs(&self) -> Vec<(Vec<Seg>, &str)> {
        many("nodes", &self.nodes)
    }

    /// `ping6_nodes`: the two nodes.
    fn groups(&self, vms: &[Vm]) -> Vec<(String, Vec<String>)> {
        vec![("ping6_nodes".into(), owned(self.node_vms(vms)))]
    }

    fn needs_kubernetes(&self) -> bool {
        self.mode == Some(ClusterMode::Kubernetes)
    }

    fn check(&self, c: &mut Checks<'_, '_>) {
        let p = self;
        super::check_image(c, "image", p.image.as_ref());
        if !p.nodes.is_empty() && p.nodes.len() != 2 {
            c.error(&c.param("nodes"), "ping6 runs between exactly two nodes");
        } else if p.nodes.len() == 2 && p.nodes[0] == p.nodes[1] {
            c.error(&c.param("nodes"), "ping6 runs between two different nodes");
        } else if p.nodes.is_empty() && p.node_vms(c.vms).len() < 2 {
            c.error_help(
                &c.name(),
                "ipv6-ping6 needs two nodes to ping between",
                "add a second VM, or name two with `params: {nodes: [a, b]}`",
            );
        }
        if !c.networks.iter().any(|n| n.ipv6.is_some()) {
            c.error_help(
                &c.name(),
                "ipv6-ping6 needs a network with `ipv6`",
                "give a network of the lab an IPv6 prefix, e.g. `ipv6: fd00:10::/64`",
            );
        }
        let nat64: Vec<&Vm> = c.vms.iter().filter(|v| v.has_role("nat64")).collect();
        if p.through_nat64 == Some(true) && nat64.is_empty() {
            c.error(
                &c.param("through_nat64"),
                "through_nat64 needs a VM with role `nat64`",
            );
        }
        if let Some(n) = nat64
            .iter()
            .find(|v| p.nodes.iter().any(|node| node == &v.name))
            .filter(|_| p.through_nat64 == Some(true))
        {
            c.error(
                &c.param("nodes"),
                format!(
                    "`{}` is the NAT64 VM; ping6 runs between two other nodes",
                    n.name
                ),
            );
        }
        if let Some(t) = &p.nat64_target {
            match t.parse::<Ipv4Addr>() {
                Ok(_) if p.through_nat64 != Some(true) => c.warning(
                    &c.param("nat64_target"),
                    "nat64_target is unused without `through_nat64: true`",
                ),
                Ok(_) => {}
                Err(_) => {
                    c.error(
                        &c.param("nat64_target"),
                        format!("`{t}` is not an IPv4 address"),
                    );
                }
            }
        } else if p.through_nat64 == Some(true)
            && !c.networks.iter().any(|n| n.gateway4().is_some())
        {
            c.error_help(
                &c.param("through_nat64"),
                "no IPv4 address to ping through NAT64: no NAT or isolated network has `ipv4`",
                "set `nat64_target` to an IPv4 address the NAT64 VM reaches",
            );
        }
        if p.mode == Some(ClusterMode::Kubernetes)
            && let Some(k) = c.kubernetes
            && k.ip_family == IpFamily::Ipv4
        {
            c.error_help(
                &c.param("mode"),
                "ping6 between pods needs an IPv6 or dual-stack cluster",
                "set `kubernetes.ip_family: ipv6` (or `dual`), or `mode: host`",
            );
        }
    }

    fn resolved(&self, lab: &LabParts<'_>) -> Value {
        to_json(Resolved {
            mode: self.resolved_mode(lab),
            nodes: owned(self.node_vms(lab.vms)),
            through_nat64: self.through_nat64.unwrap_or(false),
            // The first network with an IPv4 gateway, not only the first.
            nat64_target: self.nat64_target.clone().or_else(|| {
                lab.networks
                    .iter()
                    .find_map(|n| n.gateway4())
                    .map(|a| a.to_string())
            }),
            image: self.image_resolved(),
        })
    }

    fn images(&self, lab: &LabParts<'_>) -> Vec<String> {
        if self.resolved_mode(lab) == ClusterMode::Kubernetes {
            vec![self.image_resolved()]
        } else {
            Vec::new()
        }
    }
}

impl Ipv6Ping6Params {
    /// The pods' image, its default resolved.
    fn image_resolved(&self) -> String {
        self.image.clone().unwrap_or_else(|| IMAGE.into())
    }

    /// `mode`, or `kubernetes` when the lab has a cluster, else `host`.
    fn resolved_mode(&self, lab: &LabParts<'_>) -> ClusterMode {
        self.mode.unwrap_or(if lab.kubernetes.is_some() {
            ClusterMode::Kubernetes
        } else {
            ClusterMode::Host
        })
    }
}
