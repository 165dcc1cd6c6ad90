//! `cloud-router` (after Ratchet's cloud router demo): A → router-a →
//! router-b → B across two hosts, the routers learning each other's
//! subnets over OSPF (FRR) across a VXLAN link.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Checks, LabParts, Scenario, VXLAN_PORT, many, or_default, to_json};
use crate::yaml::Seg;

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
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

/// What the playbooks see as `scenario`.
#[derive(Serialize)]
struct Resolved {
    hosts: Vec<String>,
    vni: u32,
    port: u16,
}

impl Scenario for CloudRouterParams {
    fn vm_refs(&self) -> Vec<(Vec<Seg>, &str)> {
        many("hosts", &self.hosts)
    }

    fn check(&self, c: &mut Checks<'_, '_>) {
        if !self.hosts.is_empty() && self.hosts.len() != 2 {
            c.error(
                &c.param("hosts"),
                "the cloud router spans exactly two hosts",
            );
        } else if self.hosts.is_empty() && c.vms.len() < 2 && !c.vms_unreadable() {
            c.error(
                &c.name(),
                "the cloud router spans two hosts: the lab needs two VMs",
            );
        } else if self.hosts.len() == 2 && self.hosts[0] == self.hosts[1] {
            c.error(
                &c.under(crate::path!["hosts", 1]),
                "the cloud router spans two different hosts",
            );
        }
        c.vxlan(self.vni, self.port);
    }

    fn resolved(&self, lab: &LabParts<'_>) -> Value {
        to_json(Resolved {
            hosts: or_default(&self.hosts, || {
                super::all(lab.vms).into_iter().take(2).collect()
            }),
            vni: self.vni.unwrap_or(4242),
            port: self.port.unwrap_or(VXLAN_PORT),
        })
    }
}
