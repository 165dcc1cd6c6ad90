//! `overlay`: a VXLAN overlay between hosts (Open vSwitch or Linux bridge)
//! with containers, egress masquerade and TCP ingress.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    Checks, LabParts, Scenario, VXLAN_PORT, first_gateway4, fits, many, or_default, to_json,
    vxlan_mtu,
};
use crate::lab::model::Vm;
use crate::yaml::Seg;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OverlaySwitch {
    /// Open vSwitch bridges with VXLAN ports.
    #[default]
    Ovs,
    /// Linux bridges with kernel VXLAN devices.
    Linux,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
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

/// What the playbooks see as `scenario`.
#[derive(Serialize)]
struct Resolved {
    hosts: Vec<String>,
    switch: OverlaySwitch,
    /// What everything the scenario makes is named after: `ovo` (Open
    /// vSwitch) or `ovl` (Linux bridge), `OVO`/`OVL` for iptables chains.
    prefix: &'static str,
    /// The MTU of the switch, the tunnels and the containers: the lab
    /// network's less VXLAN's headers, less IPsec's with `encrypt`.
    mtu: u32,
    vni: u32,
    subnet: String,
    ingress_port: u16,
    port: u16,
    outside: Option<String>,
    encrypt: bool,
    /// The address layout in the subnet: host k (from 1) has its gateway
    /// at host number k and its container at `container_base + k`.
    container_base: u64,
}

/// See [`Resolved::container_base`].
const CONTAINER_BASE: u64 = 100;

/// What IPsec ESP in transport mode may add to a tunnel's packet (SPI,
/// sequence number, IV, padding, trailer and integrity check), rounded up.
const ESP_OVERHEAD: u32 = 80;

impl Scenario for OverlayParams {
    fn vm_refs(&self) -> Vec<(Vec<Seg>, &str)> {
        many("hosts", &self.hosts)
    }

    /// The workers, else every VM.
    fn default_vms(&self, vms: &[Vm]) -> Vec<String> {
        super::workers_else_all(vms)
    }

    fn check(&self, c: &mut Checks<'_, '_>) {
        let hosts = if self.hosts.is_empty() {
            let n = self.default_vms(c.vms).len();
            if n < 2 && !c.vms.is_empty() {
                c.error(
                    &c.name(),
                    format!("an overlay needs two or more hosts; this lab has {n} VM(s) for it"),
                );
            }
            n
        } else {
            if self.hosts.len() < 2 {
                c.error(&c.param("hosts"), "an overlay needs two or more hosts");
            }
            self.hosts.len()
        };
        c.vni(self.vni);
        if let Some(sn) = &self.subnet
            && let Some(net) = c.net4(&c.param("subnet"), sn)
            && !fits(net, CONTAINER_BASE + hosts as u64)
        {
            c.error_help(
                &c.param("subnet"),
                format!("{net} is too small for an overlay of {hosts} hosts"),
                "gateways take addresses .1, .2, …, containers .101, .102, …: use a /24 or larger",
            );
        }
        c.ports(self.port, self.ingress_port);
        if let Some(o) = &self.outside {
            c.ip4(&c.param("outside"), o);
        }
    }

    fn resolved(&self, lab: &LabParts<'_>) -> Value {
        to_json(Resolved {
            hosts: or_default(&self.hosts, || self.default_vms(lab.vms)),
            switch: self.switch,
            prefix: match self.switch {
                OverlaySwitch::Ovs => "ovo",
                OverlaySwitch::Linux => "ovl",
            },
            mtu: vxlan_mtu(lab, if self.encrypt { ESP_OVERHEAD } else { 0 }),
            vni: self.vni.unwrap_or(5000),
            subnet: self
                .subnet
                .clone()
                .unwrap_or_else(|| "172.16.0.0/24".into()),
            ingress_port: self.ingress_port.unwrap_or(9000),
            port: self.port.unwrap_or(VXLAN_PORT),
            outside: self.outside.clone().or_else(|| first_gateway4(lab)),
            encrypt: self.encrypt,
            container_base: CONTAINER_BASE,
        })
    }
}
