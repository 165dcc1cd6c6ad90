//! `tenants`: two (or more) tenants with the same subnet over distinct
//! VNIs, spanning two hosts, isolated from each other.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Checks, LabParts, Scenario, VXLAN_PORT, first_gateway4, fits, many, or_default, to_json, vxlan_mtu};
use crate::lab::model::Vm;
use crate::yaml::Seg;

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
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

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantParams {
    pub name: String,
    pub vni: u32,
}

/// What the playbooks see as `scenario`.
#[derive(Serialize)]
struct Resolved {
    hosts: Vec<String>,
    subnet: String,
    tenants: Vec<TenantParams>,
    port: u16,
    transit: String,
    outside: Option<String>,
    /// The MTU of the tenants' networks: the lab network's less VXLAN's
    /// headers.
    mtu: u32,
    /// The address layout in the subnet: the gateway takes host number 1,
    /// the workload on host k (of 2) `workload_base + k`.
    workload_base: u64,
}

/// See [`Resolved::workload_base`].
const WORKLOAD_BASE: u64 = 10;

impl Scenario for TenantsParams {
    fn vm_refs(&self) -> Vec<(Vec<Seg>, &str)> {
        many("hosts", &self.hosts)
    }

    /// The first two workers, else the first two VMs.
    fn default_vms(&self, vms: &[Vm]) -> Vec<String> {
        super::workers_else_all(vms).into_iter().take(2).collect()
    }

    fn check(&self, c: &mut Checks<'_, '_>) {
        if self.hosts.is_empty() {
            let n = self.default_vms(c.vms).len();
            if n < 2 && !c.vms.is_empty() {
                c.error(
                    &c.name(),
                    format!("tenant networks span two hosts; this lab has {n} VM(s) for them"),
                );
            }
        } else if self.hosts.len() != 2 {
            c.error(&c.param("hosts"), "tenant networks span exactly two hosts");
        } else if self.hosts[0] == self.hosts[1] {
            c.error(
                &c.under(crate::path!["hosts", 1]),
                format!(
                    "`{}` is named twice; tenant networks span two different hosts",
                    self.hosts[1]
                ),
            );
        }
        if let Some(sn) = &self.subnet
            && let Some(net) = c.net4(&c.param("subnet"), sn)
            && !fits(net, WORKLOAD_BASE + 2)
        {
            c.error_help(
                &c.param("subnet"),
                format!("{net} is too small for a tenant network"),
                "the gateway takes .1, workloads .11 and .12: use a /28 or larger",
            );
        }
        if self.tenants.len() == 1 {
            c.error(&c.param("tenants"), "isolation needs two or more tenants");
        }
        let mut vnis = HashMap::new();
        let mut names: HashMap<&str, usize> = HashMap::new();
        for (t, tenant) in self.tenants.iter().enumerate() {
            let name_at = c.under(crate::path!["tenants", t, "name"]);
            let vni_at = c.under(crate::path!["tenants", t, "vni"]);
            c.label(&name_at, "tenant name", &tenant.name, 12);
            if let Some(first) = names.insert(tenant.name.as_str(), t) {
                c.error(
                    &name_at,
                    format!(
                        "tenant `{}` is listed twice (also tenants[{first}])",
                        tenant.name
                    ),
                );
            }
            if tenant.vni == 0 || tenant.vni > 0xFF_FFFF {
                c.error(
                    &vni_at,
                    format!("VNI {} is outside 1..16777215", tenant.vni),
                );
            } else if let Some(other) = vnis.insert(tenant.vni, tenant.name.clone()) {
                c.error(
                    &vni_at,
                    format!("VNI {} is also used by tenant `{other}`", tenant.vni),
                );
            }
        }
        if let Some(tr) = &self.transit
            && let Some(net) = c.net4(&c.param("transit"), tr)
        {
            // Each tenant's gateway takes a /30 of it.
            let tenants = self.tenants.len().max(2) as u64;
            let room = 1u64 << (32 - u32::from(net.prefix_len()));
            if room < 4 * tenants {
                c.error_help(
                    &c.param("transit"),
                    format!("{net} is too small for {tenants} tenants"),
                    "each tenant's gateway takes a /30 of it",
                );
            }
        }
        c.ports(self.port, None);
        if let Some(o) = &self.outside {
            c.ip4(&c.param("outside"), o);
        }
    }

    fn resolved(&self, lab: &LabParts<'_>) -> Value {
        let tenants = if self.tenants.is_empty() {
            [("blue", 5001), ("red", 5002)]
                .into_iter()
                .map(|(name, vni)| TenantParams {
                    name: name.into(),
                    vni,
                })
                .collect()
        } else {
            self.tenants.clone()
        };
        to_json(Resolved {
            hosts: or_default(&self.hosts, || self.default_vms(lab.vms)),
            subnet: self.subnet.clone().unwrap_or_else(|| "10.1.2.0/24".into()),
            tenants,
            port: self.port.unwrap_or(VXLAN_PORT),
            mtu: vxlan_mtu(lab, 0),
            transit: self
                .transit
                .clone()
                .unwrap_or_else(|| "100.64.71.0/24".into()),
            outside: self.outside.clone().or_else(|| first_gateway4(lab)),
            workload_base: WORKLOAD_BASE,
        })
    }
}
