//! What `up` would change: the desired state compared with the lab's objects
//! on the virthost. Every setting a lab file controls is compared:
//! networks (mode, addresses, DHCP ranges and reservations, MTU, DNS
//! domain), the pool's directory, volumes (existence, size, the base image
//! of root disks), domains (type, CPUs, memory, TCG cache, disks, NICs and
//! what they are plugged into, the guest settings of the seed), and objects
//! the lab no longer has. Desired and existing XML are read by the same
//! functions ([`crate::virthost::shape`]).

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::desired::Desired;
use crate::virthost::libvirt::{Connection, LabObjects, LibvirtError, VmState};
use crate::virthost::shape::{
    domain_differences, domain_shape, network_differences, network_shape,
};
use crate::virthost::spec::{Lease, NicSource};
use crate::virthost::xml;

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// In a lab over several virthosts, the actions after this one (up
    /// to the next such) are on this virthost, which runs these VMs.
    OnVirthost {
        virthost: String,
        vms: Vec<String>,
    },
    CreatePool {
        path: String,
    },
    /// A VM the lab no longer has: powered off, undefined, its volumes deleted.
    RemoveDomain {
        vm: String,
    },
    /// A volume in the lab's pool that no VM of the lab uses any more.
    RemoveVolume {
        volume: String,
    },
    /// A network the lab no longer has.
    RemoveNetwork {
        network: String,
    },
    /// A bridge the lab makes from a NIC of the virthost (its addresses and
    /// routes move onto the bridge).
    CreateBridge {
        network: String,
        bridge: String,
        nic: String,
    },
    /// A bridge of the lab that no network of it uses any more (the NIC gets
    /// its addresses and routes back).
    RemoveBridge {
        bridge: String,
    },
    CreateNetwork {
        network: String,
    },
    /// A network of a lab over several virthosts joined to the other
    /// virthosts' copies: its VXLAN device made (or mended) and put into
    /// the network's bridge.
    JoinNetwork {
        network: String,
        device: String,
        vni: u32,
        peers: Vec<String>,
    },
    /// A VXLAN device of the lab that no network of it here uses any more.
    RemoveTunnel {
        device: String,
    },
    /// A network whose settings changed: redefined and restarted; the
    /// running VMs on it are plugged back in and need a restart (or a DHCP
    /// renewal) to take new addresses.
    ReplaceNetwork {
        network: String,
        why: String,
        vms: Vec<String>,
    },
    CreateVolume {
        vm: String,
        volume: String,
    },
    /// A disk that got bigger in the lab (a running VM sees it at once).
    GrowVolume {
        vm: String,
        volume: String,
        dev: String,
        from_bytes: u64,
        to_bytes: u64,
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
    /// A VM whose lease (owner, creation, expiry) in its metadata is not
    /// the lab's: rewritten in place (nothing restarts).
    SetLease {
        vm: String,
        /// `YYYYMMDDTHHMMSSZ`, or none.
        expires: Option<String>,
    },
    /// A change of the lab that `up` does not make, because it would throw
    /// data away or cannot be done in place; says what to do instead.
    NotApplied {
        subject: String,
        why: String,
    },
}

impl Action {
    /// Whether `up` changes something on the virthost for this action.
    pub fn changes(&self) -> bool {
        !matches!(self, Action::NotApplied { .. } | Action::OnVirthost { .. })
    }
}

fn mib(bytes: u64) -> String {
    format!("{} MiB", bytes >> 20)
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::OnVirthost { virthost, vms } => {
                write!(f, "on virthost {virthost}: VMs {}", vms.join(", "))
            }
            Action::CreatePool { path } => write!(f, "create pool at {path}"),
            Action::RemoveDomain { vm } => {
                write!(f, "remove vm {vm} (no longer in the lab; its disks go too)")
            }
            Action::RemoveVolume { volume } => {
                write!(f, "remove volume {volume} (no longer used by the lab)")
            }
            Action::RemoveNetwork { network } => {
                write!(f, "remove network {network} (no longer in the lab)")
            }
            Action::CreateBridge {
                network,
                bridge,
                nic,
            } => write!(
                f,
                "create bridge {bridge} from {nic} for network {network} (its addresses and routes move onto the bridge)"
            ),
            Action::RemoveBridge { bridge } => {
                write!(
                    f,
                    "remove bridge {bridge} (no longer in the lab; its NIC gets its addresses back)"
                )
            }
            Action::CreateNetwork { network } => write!(f, "create network {network}"),
            Action::JoinNetwork {
                network,
                device,
                vni,
                peers,
            } => write!(
                f,
                "join network {network} to the other virthosts: VXLAN {device} (VNI {vni}) to {}",
                peers.join(", ")
            ),
            Action::RemoveTunnel { device } => {
                write!(f, "remove VXLAN {device} (no longer in the lab)")
            }
            Action::ReplaceNetwork { network, why, vms } => {
                write!(f, "redefine and restart network {network}: {why}")?;
                if !vms.is_empty() {
                    write!(
                        f,
                        "; RESTART NEEDED for {} (new addresses at the next boot or DHCP renewal)",
                        vms.join(", ")
                    )?;
                }
                Ok(())
            }
            Action::CreateVolume { vm, volume } => write!(f, "create volume {volume} (vm {vm})"),
            Action::GrowVolume {
                vm,
                volume,
                dev,
                from_bytes,
                to_bytes,
            } => write!(
                f,
                "grow {dev} of vm {vm} ({volume}) {} -> {} (the guest's partitions and file systems are not grown)",
                mib(*from_bytes),
                mib(*to_bytes)
            ),
            Action::DefineDomain { vm } => write!(f, "define vm {vm} (new seed and host key)"),
            Action::RedefineDomain { vm, why } => write!(f, "redefine stopped vm {vm}: {why}"),
            Action::RestartNeeded { vm, why } => write!(
                f,
                "redefine running vm {vm}: {why}; RESTART NEEDED (takes effect at its next boot)"
            ),
            Action::StartDomain { vm } => write!(f, "start vm {vm}"),
            Action::SetLease { vm, expires } => match expires {
                Some(e) => write!(f, "lease of vm {vm}: expires {e}"),
                None => write!(f, "lease of vm {vm}: no expiry"),
            },
            Action::NotApplied { subject, why } => write!(f, "NOT APPLIED: {subject}: {why}"),
        }
    }
}

/// The plan: actions in the order `up` applies them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// The lab's lease after `up` (`None` when the run leaves leases alone).
    pub lease: Option<Lease>,
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
    /// Running VMs that need a restart for a change to apply, with no repeats.
    pub fn restart_needed(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in &self.actions {
            let vms: Vec<&String> = match a {
                Action::RestartNeeded { vm, .. } => vec![vm],
                Action::ReplaceNetwork { vms, .. } => vms.iter().collect(),
                _ => Vec::new(),
            };
            for vm in vms {
                if !out.contains(vm) {
                    out.push(vm.clone());
                }
            }
        }
        out
    }
    /// Changes the lab asks for that `up` leaves alone.
    pub fn not_applied(&self) -> Vec<&Action> {
        self.actions
            .iter()
            .filter(|a| matches!(a, Action::NotApplied { .. }))
            .collect()
    }
}

/// Compare the desired state with the virthost. `base_image` is the base
/// image the lab's VMs would get now, when known; root disks on another
/// one are reported (not replaced).
pub fn plan(
    c: &Connection,
    desired: &Desired,
    base_image: Option<&Path>,
) -> Result<Plan, LibvirtError> {
    let objects: LabObjects = c.lab_objects(&desired.lab)?;
    let lab = &desired.lab;
    let mut actions = Vec::new();
    let recreate = |vm: &str| {
        format!(
            "recreate vm {vm} to get it (take it out of the lab file and run `up`, then put it back; or `kubelab down` and `up`)"
        )
    };

    // ---- the pool ---------------------------------------------------------------------
    match (&objects.pool, c.pool_path(lab)?) {
        (None, _) => actions.push(Action::CreatePool {
            path: desired.pool.path.display().to_string(),
        }),
        (Some(_), Some(path)) if Path::new(&path) != desired.pool.path => {
            actions.push(Action::NotApplied {
                subject: "storage_dir".into(),
                why: format!(
                    "the lab's pool is at {path}, the lab now says {}; it stays where it is until `kubelab down`",
                    desired.pool.path.display()
                ),
            })
        }
        _ => {}
    }

    // ---- what the lab no longer has -----------------------------------------------------
    let wanted_domains: Vec<String> = desired
        .vms
        .iter()
        .map(|v| lab.object_name(&v.name))
        .collect();
    for full in &objects.domains {
        if !wanted_domains.contains(full) {
            actions.push(Action::RemoveDomain {
                vm: full.strip_prefix(&lab.prefix()).unwrap_or(full).to_string(),
            });
        }
    }
    let mut wanted_volumes: Vec<String> = Vec::new();
    for vm in &desired.vms {
        wanted_volumes.extend(vm.volumes.iter().map(|v| lab.object_name(&v.name)));
        wanted_volumes.push(lab.object_name(&vm.seed_volume));
        wanted_volumes.push(format!("{}.console.log", lab.object_name(&vm.name)));
    }
    // volumes still open in a running VM of the lab (a disk taken out of
    // the lab file) stay until that VM restarted
    let mut in_use: Vec<(String, String)> = Vec::new();
    for vm in &desired.vms {
        if !objects.domains.contains(&lab.object_name(&vm.name)) {
            continue;
        }
        if let Some(shape) = domain_shape(&c.domain_live_xml(lab, &vm.name)?) {
            in_use.extend(shape.disks.iter().filter_map(|d| {
                d.split_once(' ')
                    .map(|(_, v)| (v.to_string(), vm.name.clone()))
            }));
        }
    }
    for full in &objects.volumes {
        if wanted_volumes.contains(full) {
            continue;
        }
        match in_use.iter().find(|(v, _)| v == full) {
            Some((_, vm)) => actions.push(Action::NotApplied {
                subject: format!("volume {full}"),
                why: format!(
                    "no longer in the lab, but running vm {vm} still uses it: the first `up` after its restart removes it"
                ),
            }),
            None => actions.push(Action::RemoveVolume {
                volume: full.clone(),
            }),
        }
    }
    let wanted_networks: Vec<String> = desired
        .networks
        .iter()
        .map(|n| lab.object_name(&n.name))
        .collect();
    for full in &objects.networks {
        if !wanted_networks.contains(full) {
            actions.push(Action::RemoveNetwork {
                network: full.strip_prefix(&lab.prefix()).unwrap_or(full).to_string(),
            });
        }
    }

    // ---- networks ---------------------------------------------------------------------
    for n in &desired.networks {
        let Some(have_xml) = c.network_xml(lab, &n.name)? else {
            actions.push(Action::CreateNetwork {
                network: n.name.clone(),
            });
            continue;
        };
        let want = xml::render_network(n).ok().and_then(|x| network_shape(&x));
        let diffs = match (want, network_shape(&have_xml)) {
            (Some(w), Some(h)) => network_differences(&w, &h),
            _ => vec!["definition not understood".into()],
        };
        if !diffs.is_empty() {
            let mut vms = Vec::new();
            for vm in &desired.vms {
                let on_it = vm
                    .domain
                    .nics
                    .iter()
                    .any(|nic| nic.source == NicSource::Network(n.name.clone()));
                if on_it
                    && objects.domains.contains(&lab.object_name(&vm.name))
                    && !matches!(
                        c.domain_state(lab, &vm.name)?,
                        VmState::Shutoff | VmState::Crashed
                    )
                {
                    vms.push(vm.name.clone());
                }
            }
            actions.push(Action::ReplaceNetwork {
                network: n.name.clone(),
                why: diffs.join(", "),
                vms,
            });
        }
    }

    // ---- volumes ----------------------------------------------------------------------
    for vm in &desired.vms {
        for (i, v) in vm.volumes.iter().enumerate() {
            let full = lab.object_name(&v.name);
            if !objects.volumes.contains(&full) {
                actions.push(Action::CreateVolume {
                    vm: vm.name.clone(),
                    volume: v.name.clone(),
                });
                continue;
            }
            let Some(have) = c.volume_details(lab, &v.name)? else {
                continue;
            };
            let dev = vm.disks.get(i).cloned().unwrap_or_else(|| "?".into());
            if v.capacity_bytes > have.capacity_bytes {
                actions.push(Action::GrowVolume {
                    vm: vm.name.clone(),
                    volume: v.name.clone(),
                    dev,
                    from_bytes: have.capacity_bytes,
                    to_bytes: v.capacity_bytes,
                });
            } else if v.capacity_bytes < have.capacity_bytes {
                actions.push(Action::NotApplied {
                    subject: format!("{dev} of vm {}", vm.name),
                    why: format!(
                        "the lab makes it smaller ({} -> {}); disks only grow in place: {}",
                        mib(have.capacity_bytes),
                        mib(v.capacity_bytes),
                        recreate(&vm.name)
                    ),
                });
            }
            if let (Some(base), Some(backing), Some(_)) = (base_image, &have.backing, &v.backing)
                && Path::new(backing) != base
            {
                actions.push(Action::NotApplied {
                    subject: format!("root disk of vm {}", vm.name),
                    why: format!(
                        "it is an overlay of {backing}; the lab's image is now {}: {}",
                        base.display(),
                        recreate(&vm.name)
                    ),
                });
            }
        }
    }

    // ---- the lease: the one the lab's domains carry, renewed as asked ------------------
    let mut existing_lease = None;
    for vm in &desired.vms {
        if objects.domains.contains(&lab.object_name(&vm.name))
            && let Some(l) = domain_shape(&c.domain_xml(lab, &vm.name)?).and_then(|s| s.lease)
        {
            existing_lease = Some(l);
            break;
        }
    }
    let lease = desired
        .lease
        .as_ref()
        .map(|r| r.decide(existing_lease.as_ref()));

    // ---- domains ----------------------------------------------------------------------
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
        let want = xml::render_domain(&vm.domain)
            .ok()
            .and_then(|x| domain_shape(&x));
        let have = domain_shape(&c.domain_xml(lab, &vm.name)?);
        let diffs = match (&want, &have) {
            (Some(w), Some(h)) => domain_differences(w, h),
            _ => vec!["definition not understood".into()],
        };
        if let (Some(w), Some(h)) = (&want, &have)
            && let (Some(want_seed), Some(have_seed)) = (&w.seed_digest, &h.seed_digest)
            && want_seed != have_seed
        {
            actions.push(Action::NotApplied {
                subject: format!("guest settings of vm {}", vm.name),
                why: format!(
                    "its static addresses, MTU or login changed in the lab; cloud-init applies them at the first boot only: {}",
                    recreate(&vm.name)
                ),
            });
        }
        if let Some(want) = &lease
            && have.as_ref().and_then(|h| h.lease.as_ref()) != Some(want)
        {
            actions.push(Action::SetLease {
                vm: vm.name.clone(),
                expires: want.expires.map(crate::state::utc_stamp_secs),
            });
        }
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
    Ok(Plan { actions, lease })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_applied_is_no_change_and_restarts_are_listed_once() {
        let p = Plan {
            actions: vec![
                Action::ReplaceNetwork {
                    network: "lan".into(),
                    why: "mtu none -> 1400".into(),
                    vms: vec!["a".into(), "b".into()],
                },
                Action::RestartNeeded {
                    vm: "a".into(),
                    why: "memory".into(),
                },
                Action::NotApplied {
                    subject: "vdb of vm b".into(),
                    why: "smaller".into(),
                },
            ],
            lease: None,
        };
        assert_eq!(p.changes(), 2);
        assert_eq!(p.restart_needed(), vec!["a", "b"]);
        assert_eq!(p.not_applied().len(), 1);
        assert!(p.actions[0].to_string().contains("RESTART NEEDED for a, b"));
        assert!(
            p.actions[2]
                .to_string()
                .starts_with("NOT APPLIED: vdb of vm b")
        );
    }
}
