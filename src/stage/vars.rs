//! What every playbook of a lab sees: [`lab_vars`], [`vm_vars`] and a
//! stage's inventory. They are pure, so offline renderings (golden plans)
//! use the same variables as real runs.

use std::sync::Arc;

use serde_json::{Value, json};

use super::model::Stage;
use crate::inventory::{Host, Inventory};
use crate::lab::Lab;
use crate::lab::model::{NetworkKind, Vm};
use crate::state::{Inventory as StateInventory, VmRecord};
use crate::template::Vars;
use crate::transport::Transport;

/// What every playbook of the lab sees, over the lab's own `vars`:
/// `lab` (name, networks with gateways, VM names and roles) and, when the
/// lab has a cluster, `kubernetes` (its settings plus `minor`).
pub fn lab_vars(lab: &Lab) -> Vars {
    let mut vars = lab.vars.clone();
    let networks: Vec<Value> = lab
        .networks
        .iter()
        .map(|n| {
            let (kind, bridge) = match &n.kind {
                NetworkKind::Nat => ("nat", None),
                NetworkKind::Isolated => ("isolated", None),
                NetworkKind::Bridged { bridge, .. } => ("bridged", Some(bridge.clone())),
            };
            json!({
                "name": n.name,
                "kind": kind,
                "bridge": bridge,
                "ipv4": n.ipv4.map(|x| x.to_string()),
                "ipv6": n.ipv6.map(|x| x.to_string()),
                "gateway4": n.gateway4().map(|x| x.to_string()),
                "gateway6": n.gateway6().map(|x| x.to_string()),
                "mtu": n.mtu,
            })
        })
        .collect();
    let vms: Vec<Value> = lab
        .vms
        .iter()
        .map(|v| json!({"name": v.name, "roles": v.roles}))
        .collect();
    vars.insert(
        "lab".into(),
        json!({"name": lab.name, "networks": networks, "vms": vms}),
    );
    if let Some(k) = &lab.kubernetes {
        let mut value = serde_json::to_value(k).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut value {
            m.insert("minor".into(), Value::from(k.minor()));
        }
        vars.insert("kubernetes".into(), value);
    }
    vars
}

/// A VM's variables: its own `vars` over what kubelab knows of it —
/// `roles`, `address` (the one kubelab connects to), `ipv4`/`ipv6` (every
/// address found; `address4`/`address6` the first of each), `nics` (network,
/// MAC, static addresses), `spare_disks` (dev, size_mib, format) and `disks`.
pub fn vm_vars(vm: &Vm, record: Option<&VmRecord>) -> Vars {
    let mut vars = Vars::new();
    vars.insert("roles".into(), json!(vm.roles));
    let nics: Vec<Value> = vm
        .nics
        .iter()
        .map(|n| json!({"network": n.network, "mac": n.mac, "ipv4": n.ipv4, "ipv6": n.ipv6}))
        .collect();
    vars.insert("nics".into(), Value::Array(nics));
    vars.insert(
        "spare_disks".into(),
        serde_json::to_value(&vm.spare_disks).unwrap_or(Value::Null),
    );
    let static4: Vec<String> = vm
        .nics
        .iter()
        .filter_map(|n| n.ipv4.map(|a| a.to_string()))
        .collect();
    let static6: Vec<String> = vm
        .nics
        .iter()
        .filter_map(|n| n.ipv6.map(|a| a.to_string()))
        .collect();
    let (ipv4, ipv6, address, disks) = match record {
        Some(r) => (
            r.ipv4.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            r.ipv6.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            Some(r.address.clone()),
            r.disks.clone(),
        ),
        None => (static4, static6, None, Vec::new()),
    };
    let address = address
        .or_else(|| ipv4.first().cloned())
        .or_else(|| ipv6.first().cloned());
    vars.insert("address4".into(), json!(ipv4.first()));
    vars.insert("address6".into(), json!(ipv6.first()));
    vars.insert("ipv4".into(), json!(ipv4));
    vars.insert("ipv6".into(), json!(ipv6));
    if let Some(a) = address {
        vars.insert("address".into(), Value::from(a));
    }
    vars.insert("disks".into(), json!(disks));
    for (k, v) in &vm.vars {
        vars.insert(k.clone(), v.clone());
    }
    vars
}

/// The inventory of a stage, given how to reach each VM and the virthost
/// (offline renderings pass transports that are never used).
pub fn stage_inventory(
    lab: &Lab,
    stage: &Stage,
    state: Option<&StateInventory>,
    mut transport_for: impl FnMut(&str) -> Arc<dyn Transport>,
    virthost: Arc<dyn Transport>,
) -> Inventory {
    let mut vars = lab_vars(lab);
    for (k, v) in &stage.vars {
        vars.insert(k.clone(), v.clone());
    }
    let mut inv = Inventory::new(vars);
    inv.declared_groups = stage.groups.keys().cloned().collect();
    for vm in &lab.vms {
        let record = state.and_then(|s| s.vms.iter().find(|r| r.name == vm.name));
        let mut vars = vm_vars(vm, record);
        if let Some(extra) = stage.host_vars.get(&vm.name) {
            for (k, v) in extra {
                vars.insert(k.clone(), v.clone());
            }
        }
        let mut groups = vm.roles.clone();
        for (g, members) in &stage.groups {
            if members.iter().any(|m| m == &vm.name) && !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        inv.add(Host {
            name: vm.name.clone(),
            groups,
            vars,
            transport: transport_for(&vm.name),
        });
    }
    if stage.virthost {
        inv.add(Host {
            name: "virthost".into(),
            groups: vec!["virthost".into()],
            vars: Vars::new(),
            transport: virthost,
        });
    }
    inv
}
