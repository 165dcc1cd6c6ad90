//! What `up` would change: the desired state compared with the lab's objects
//! on the virthost. Networks, the pool and volumes are compared by name (an
//! existing one is kept as it is); domains also by CPUs, memory, MAC
//! addresses and number of disks of their persistent definition.

use std::fmt;

use serde::Serialize;

use super::desired::Desired;
use crate::virthost::libvirt::{Connection, LabObjects, LibvirtError, VmState};

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    CreatePool {
        path: String,
    },
    CreateNetwork {
        network: String,
    },
    CreateVolume {
        vm: String,
        volume: String,
    },
    /// New domain: seed (fresh host key) and definition.
    DefineDomain {
        vm: String,
    },
    /// A stopped domain whose definition differs: redefined in place.
    RedefineDomain {
        vm: String,
        why: String,
    },
    /// A running domain whose definition differs: `up` redefines it (the
    /// change takes effect at its next boot) and says a restart is needed.
    RestartNeeded {
        vm: String,
        why: String,
    },
    StartDomain {
        vm: String,
    },
}

impl Action {
    /// Whether `up` changes something on the virthost for this action.
    pub fn changes(&self) -> bool {
        true
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::CreatePool { path } => write!(f, "create pool at {path}"),
            Action::CreateNetwork { network } => write!(f, "create network {network}"),
            Action::CreateVolume { vm, volume } => write!(f, "create volume {volume} (vm {vm})"),
            Action::DefineDomain { vm } => write!(f, "define vm {vm} (new seed and host key)"),
            Action::RedefineDomain { vm, why } => write!(f, "redefine stopped vm {vm}: {why}"),
            Action::RestartNeeded { vm, why } => write!(
                f,
                "redefine running vm {vm}: {why}; RESTART NEEDED (takes effect at its next boot)"
            ),
            Action::StartDomain { vm } => write!(f, "start vm {vm}"),
        }
    }
}

/// The plan: actions in the order `up` applies them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
}

impl Plan {
    pub fn changes(&self) -> usize {
        self.actions.iter().filter(|a| a.changes()).count()
    }
    pub fn vm_is_new(&self, vm: &str) -> bool {
        self.actions
            .iter()
            .any(|a| matches!(a, Action::DefineDomain { vm: v } if v == vm))
    }
    pub fn vm_needs_definition(&self, vm: &str) -> bool {
        self.actions.iter().any(|a| match a {
            Action::DefineDomain { vm: v }
            | Action::RedefineDomain { vm: v, .. }
            | Action::RestartNeeded { vm: v, .. } => v == vm,
            _ => false,
        })
    }
}

/// What a domain's persistent XML says about the things a lab can change.
#[derive(Debug, PartialEq, Eq)]
struct DomainShape {
    cpus: u32,
    memory_mib: u64,
    macs: Vec<String>,
    disks: usize,
}

fn shape_of_xml(xml: &str) -> Option<DomainShape> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let root = doc.root_element();
    let child = |name: &str| root.children().find(|n| n.has_tag_name(name));
    let cpus = child("vcpu")?.text()?.trim().parse().ok()?;
    let mem = child("memory")?;
    let value: u64 = mem.text()?.trim().parse().ok()?;
    let memory_mib = match mem.attribute("unit").unwrap_or("KiB") {
        "KiB" | "k" => value / 1024,
        "MiB" | "M" => value,
        "GiB" | "G" => value * 1024,
        "b" | "bytes" => value >> 20,
        _ => return None,
    };
    let devices = child("devices")?;
    let mut macs: Vec<String> = devices
        .children()
        .filter(|n| n.has_tag_name("interface"))
        .filter_map(|i| {
            i.children()
                .find(|n| n.has_tag_name("mac"))
                .and_then(|m| m.attribute("address"))
                .map(str::to_ascii_lowercase)
        })
        .collect();
    macs.sort();
    let disks = devices
        .children()
        .filter(|n| n.has_tag_name("disk") && n.attribute("device") == Some("disk"))
        .count();
    Some(DomainShape {
        cpus,
        memory_mib,
        macs,
        disks,
    })
}

/// The differences between a desired domain and its definition, in words.
fn differences(want: &DomainShape, have: &DomainShape) -> Vec<String> {
    let mut out = Vec::new();
    if want.cpus != have.cpus {
        out.push(format!("cpus {} -> {}", have.cpus, want.cpus));
    }
    if want.memory_mib != have.memory_mib {
        out.push(format!(
            "memory {} MiB -> {} MiB",
            have.memory_mib, want.memory_mib
        ));
    }
    if want.macs != have.macs {
        out.push(format!("nics {:?} -> {:?}", have.macs, want.macs));
    }
    // the seed is a disk too (device=disk, vfat image)
    if want.disks != have.disks {
        out.push(format!("disks {} -> {}", have.disks, want.disks));
    }
    out
}

/// Compare the desired state with the virthost.
pub fn plan(c: &Connection, desired: &Desired) -> Result<Plan, LibvirtError> {
    let objects: LabObjects = c.lab_objects(&desired.lab)?;
    let lab = &desired.lab;
    let mut actions = Vec::new();
    if objects.pool.is_none() {
        actions.push(Action::CreatePool {
            path: desired.pool.path.display().to_string(),
        });
    }
    for n in &desired.networks {
        if !objects.networks.contains(&lab.object_name(&n.name)) {
            actions.push(Action::CreateNetwork {
                network: n.name.clone(),
            });
        }
    }
    for vm in &desired.vms {
        for v in &vm.volumes {
            if !objects.volumes.contains(&lab.object_name(&v.name)) {
                actions.push(Action::CreateVolume {
                    vm: vm.name.clone(),
                    volume: v.name.clone(),
                });
            }
        }
    }
    for vm in &desired.vms {
        let full = lab.object_name(&vm.name);
        if !objects.domains.contains(&full) {
            actions.push(Action::DefineDomain {
                vm: vm.name.clone(),
            });
            actions.push(Action::StartDomain {
                vm: vm.name.clone(),
            });
            continue;
        }
        let mut want_macs: Vec<String> = vm
            .domain
            .nics
            .iter()
            .map(|n| n.mac.to_ascii_lowercase())
            .collect();
        want_macs.sort();
        let want = DomainShape {
            cpus: vm.domain.cpus,
            memory_mib: vm.domain.memory_mib,
            macs: want_macs,
            disks: vm.domain.disks.len() + usize::from(vm.domain.seed_volume.is_some()),
        };
        let xml = c.domain_xml(lab, &vm.name)?;
        let diffs = match shape_of_xml(&xml) {
            Some(have) => differences(&want, &have),
            None => vec!["definition not understood".into()],
        };
        let state = c.domain_state(lab, &vm.name)?;
        let running = !matches!(state, VmState::Shutoff | VmState::Crashed);
        if !diffs.is_empty() {
            let why = diffs.join(", ");
            actions.push(if running {
                Action::RestartNeeded {
                    vm: vm.name.clone(),
                    why,
                }
            } else {
                Action::RedefineDomain {
                    vm: vm.name.clone(),
                    why,
                }
            });
        }
        if !running {
            actions.push(Action::StartDomain {
                vm: vm.name.clone(),
            });
        }
    }
    Ok(Plan { actions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_shape_reads_memory_cpus_macs_disks() {
        let xml = r#"<domain type="qemu"><name>x</name><memory unit="KiB">786432</memory>
<vcpu placement="static">2</vcpu><devices>
<disk type="volume" device="disk"/><disk type="volume" device="disk"/>
<disk type="file" device="cdrom"/>
<interface type="network"><mac address="52:54:00:AA:bb:cc"/></interface>
</devices></domain>"#;
        let s = shape_of_xml(xml).unwrap();
        assert_eq!(
            s,
            DomainShape {
                cpus: 2,
                memory_mib: 768,
                macs: vec!["52:54:00:aa:bb:cc".into()],
                disks: 2
            }
        );
        let mut want = DomainShape {
            cpus: 2,
            memory_mib: 1024,
            macs: s.macs.clone(),
            disks: 2,
        };
        assert_eq!(differences(&want, &s), vec!["memory 768 MiB -> 1024 MiB"]);
        want.memory_mib = 768;
        assert!(differences(&want, &s).is_empty());
    }
}
