//! Lab snapshots: every VM of a lab at one consistent point, as libvirt
//! internal snapshots of the same name (disks in their qcow2 files, and the
//! memory of running VMs).
//!
//! `save` pauses every running VM, snapshots them all (in parallel), and
//! lets them run again: the VMs stop at the same moment, so what one VM
//! saw of another (a TCP session, a Gluster peer) is whole. With the VMs
//! shut off it saves their disks only (`--disk-only` asks for that). `revert`
//! brings every VM back paused, lets them all run at once, sets their
//! clocks from the host (the guest agent; a revert leaves the snapshot's
//! time) and waits until each answers SSH. libvirt keeps the snapshots'
//! metadata; `delete` removes them and `down` removes them with the domains.
//! Every writable disk must be qcow2 (internal snapshots): a raw spare disk
//! is refused with its name.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::access::blocking;
use super::{
    ProvisionError, answers_ssh, failed, for_each_vm, lab_name, open_libvirt, open_session,
    read_inventory, vm_target,
};
use crate::lab::Lab;
use crate::virthost::libvirt::{Connection, SnapshotInfo, VmState};
use crate::virthost::spec::LabName;

/// A snapshot of the lab: one name, on each VM.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct LabSnapshot {
    pub name: String,
    /// Unix seconds (the earliest of its VMs').
    pub created: u64,
    /// `running` (with memory), `shutoff` (disks only), or `mixed`.
    pub state: String,
    /// The VMs that have it.
    pub vms: Vec<String>,
    /// The VMs of the lab that lack it (a VM added since): `revert` refuses.
    pub missing: Vec<String>,
}

/// What `save` did.
#[derive(Clone, Debug, Serialize)]
pub struct Saved {
    pub snapshot: LabSnapshot,
    /// How long the VMs were paused (0 for disks only).
    pub paused_secs: f64,
    pub secs: f64,
}

/// What `revert` did.
#[derive(Clone, Debug, Serialize)]
pub struct Reverted {
    pub snapshot: String,
    /// From the first revert until every VM answered SSH.
    pub secs: f64,
    /// VMs whose clock could not be set (no guest agent answering).
    pub clock_not_set: Vec<String>,
}

/// The errors among per-VM results, as lines.
fn errors_of(results: Vec<Result<(), ProvisionError>>) -> Vec<String> {
    results
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect()
}

/// A snapshot name: letters, digits, `.`, `_`, `-`, at most 64.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a snapshot name: use letters, digits, `.`, `_` and `-` (at most 64, not starting with `.` or `-`)",
            name.escape_debug()
        ))
    }
}

/// The lab's VMs on the virthost; every one must exist (the lab is up).
fn vms(lab: &Lab, c: &Connection, name: &LabName) -> Result<Vec<String>, ProvisionError> {
    let objects = c.lab_objects(name).map_err(failed)?;
    let absent: Vec<&str> = lab
        .vms
        .iter()
        .filter(|v| !objects.domains.contains(&name.object_name(&v.name)))
        .map(|v| v.name.as_str())
        .collect();
    if !absent.is_empty() {
        return Err(failed(format!(
            "lab {} is not up: no VM {} on the virthost (`kubelab up {}` first)",
            lab.name,
            absent.join(", "),
            lab.file.display()
        )));
    }
    Ok(lab.vms.iter().map(|v| v.name.clone()).collect())
}

/// Every snapshot of the lab, by name, oldest first.
fn lab_snapshots(
    c: &Connection,
    name: &LabName,
    vms: &[String],
) -> Result<Vec<LabSnapshot>, ProvisionError> {
    let mut by_name: Vec<LabSnapshot> = Vec::new();
    for vm in vms {
        for s in c.snapshots(name, vm).map_err(failed)? {
            let SnapshotInfo {
                name: snap,
                created,
                state,
            } = s;
            let state = if state == "paused" {
                "running".to_string()
            } else {
                state
            };
            match by_name.iter_mut().find(|l| l.name == snap) {
                Some(l) => {
                    l.created = l.created.min(created);
                    if l.state != state {
                        l.state = "mixed".into();
                    }
                    l.vms.push(vm.clone());
                }
                None => by_name.push(LabSnapshot {
                    name: snap,
                    created,
                    state,
                    vms: vec![vm.clone()],
                    missing: Vec::new(),
                }),
            }
        }
    }
    for l in &mut by_name {
        l.missing = vms.iter().filter(|v| !l.vms.contains(v)).cloned().collect();
    }
    by_name.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    Ok(by_name)
}

/// `kubelab snapshot LAB list` (and `status`): no lock, nothing changed.
/// Snapshots are taken on one virthost: a lab over several is refused by
/// name rather than half-snapshotted.
fn one_virthost(lab: &Lab) -> Result<(), ProvisionError> {
    if lab.is_spread() {
        return Err(failed(format!(
            "lab {} runs on {} virthosts; snapshots are for labs on one virthost (not yet over several)",
            lab.name,
            lab.virthosts.len()
        )));
    }
    Ok(())
}

pub async fn list(lab: &Lab) -> Result<Vec<LabSnapshot>, ProvisionError> {
    one_virthost(lab)?;
    let name = lab_name(lab)?;
    let session = open_session(lab, false).await?;
    let c = open_libvirt(&session.access).await?;
    let r = blocking(|| {
        let objects = c.lab_objects(&name).map_err(failed)?;
        let vms: Vec<String> = lab
            .vms
            .iter()
            .filter(|v| objects.domains.contains(&name.object_name(&v.name)))
            .map(|v| v.name.clone())
            .collect();
        lab_snapshots(&c, &name, &vms)
    });
    drop(c);
    session.close().await;
    r
}

/// `kubelab snapshot LAB save NAME [--disk-only]`.
pub async fn save(lab: &Lab, snapshot: &str, disk_only: bool) -> Result<Saved, ProvisionError> {
    one_virthost(lab)?;
    check_name(snapshot).map_err(failed)?;
    let name = lab_name(lab)?;
    let session = open_session(lab, true).await?;
    let r = async {
        let c = open_libvirt(&session.access).await?;
        blocking(|| save_locked(lab, &c, &name, snapshot, disk_only))
    }
    .await;
    session.close().await;
    r
}

fn save_locked(
    lab: &Lab,
    c: &Connection,
    name: &LabName,
    snapshot: &str,
    disk_only: bool,
) -> Result<Saved, ProvisionError> {
    let t0 = Instant::now();
    let vms = vms(lab, c, name)?;
    if lab_snapshots(c, name, &vms)?
        .iter()
        .any(|s| s.name == snapshot)
    {
        return Err(failed(format!(
            "lab {} has a snapshot {snapshot} already: `kubelab snapshot {} delete {snapshot}` first",
            lab.name,
            lab.file.display()
        )));
    }
    let mut raw = Vec::new();
    for vm in &vms {
        for (dev, format) in c.disk_formats(name, vm).map_err(failed)? {
            if format != "qcow2" {
                raw.push(format!("{vm}'s {dev} ({format})"));
            }
        }
    }
    if !raw.is_empty() {
        return Err(failed(format!(
            "snapshots keep every disk in its qcow2 file; these are not qcow2: {} (a spare disk with `format: raw`, or a seed an older kubelab made: recreate that VM)",
            raw.join(", ")
        )));
    }
    let running: Vec<String> = vms
        .iter()
        .filter(|vm| {
            !matches!(
                c.domain_state(name, vm),
                Ok(VmState::Shutoff | VmState::Crashed)
            )
        })
        .cloned()
        .collect();
    if disk_only && !running.is_empty() {
        return Err(failed(format!(
            "--disk-only saves the disks of shut-off VMs; these run: {} (shut them down first, e.g. `virsh -c qemu:///system shutdown {}`), or leave --disk-only out to keep their memory too",
            running.join(", "),
            name.object_name(&running[0])
        )));
    }
    let description = format!("kubelab lab {} snapshot {snapshot}", lab.name);
    // one moment for all: pause every running VM, snapshot, run again
    let t_pause = Instant::now();
    let paused = for_each_vm(&running, |vm| c.suspend_domain(name, vm).map_err(failed));
    let made = for_each_vm(&vms, |vm| {
        c.create_snapshot(name, vm, snapshot, &description)
            .map_err(failed)
    });
    let resumed = for_each_vm(&running, |vm| c.resume_domain(name, vm).map_err(failed));
    let paused_secs = if running.is_empty() {
        0.0
    } else {
        t_pause.elapsed().as_secs_f64()
    };
    let errors = errors_of(paused.into_iter().chain(made).chain(resumed).collect());
    if !errors.is_empty() {
        // all or nothing: a snapshot on some VMs only is no lab snapshot
        for vm in &vms {
            let _ = c.delete_snapshot(name, vm, snapshot);
        }
        return Err(failed(format!(
            "snapshot {snapshot} of lab {} failed (removed again from every VM):\n  {}",
            lab.name,
            errors.join("\n  ")
        )));
    }
    let snapshot = lab_snapshots(c, name, &vms)?
        .into_iter()
        .find(|s| s.name == snapshot)
        .ok_or_else(|| failed(format!("snapshot {snapshot} not found after saving it")))?;
    Ok(Saved {
        snapshot,
        paused_secs,
        secs: t0.elapsed().as_secs_f64(),
    })
}

/// `kubelab snapshot LAB revert NAME`: every VM back to the snapshot, then
/// SSH answering (bounded by `timeout`).
pub async fn revert(
    lab: &Lab,
    snapshot: &str,
    timeout: Duration,
) -> Result<Reverted, ProvisionError> {
    one_virthost(lab)?;
    check_name(snapshot).map_err(failed)?;
    let name = lab_name(lab)?;
    let session = open_session(lab, true).await?;
    let r = async {
        let t0 = Instant::now();
        let c = open_libvirt(&session.access).await?;
        let clock_not_set = blocking(|| revert_locked(lab, &c, &name, snapshot))?;
        drop(c);
        let state = crate::state::state_dir(&lab.name);
        let inv = read_inventory(lab)?.ok_or_else(|| {
            failed(format!(
                "reverted, but the lab's inventory is gone from {}: `kubelab up {}` writes it again",
                state.display(),
                lab.file.display()
            ))
        })?;
        let deadline = Instant::now() + timeout;
        let answers = futures::future::join_all(inv.vms.iter().map(|vm| {
            let target = vm_target(&inv, vm, &state);
            let access = &session.access;
            async move { (vm.name.clone(), answers_ssh(access, target, deadline).await) }
        }))
        .await;
        let silent: Vec<String> = answers
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(vm, _)| vm)
            .collect();
        if !silent.is_empty() {
            return Err(failed(format!(
                "reverted to {snapshot}, but no SSH answer within {}s from: {}",
                timeout.as_secs(),
                silent.join(", ")
            )));
        }
        Ok(Reverted {
            snapshot: snapshot.to_string(),
            secs: t0.elapsed().as_secs_f64(),
            clock_not_set,
        })
    }
    .await;
    session.close().await;
    r
}

/// Revert every VM (paused), let them run at once, set their clocks; the
/// VMs whose clock could not be set.
fn revert_locked(
    lab: &Lab,
    c: &Connection,
    name: &LabName,
    snapshot: &str,
) -> Result<Vec<String>, ProvisionError> {
    let vms = vms(lab, c, name)?;
    let all = lab_snapshots(c, name, &vms)?;
    let Some(found) = all.iter().find(|s| s.name == snapshot).cloned() else {
        let known: Vec<String> = all.into_iter().map(|s| s.name).collect();
        return Err(failed(format!(
            "lab {} has no snapshot {snapshot} (its snapshots: {})",
            lab.name,
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    if !found.missing.is_empty() {
        return Err(failed(format!(
            "snapshot {snapshot} does not cover {} (added to the lab after it): not reverted",
            found.missing.join(", ")
        )));
    }
    let reverted = for_each_vm(&vms, |vm| {
        c.revert_snapshot(name, vm, snapshot, true).map_err(failed)
    });
    let errors = errors_of(reverted);
    if !errors.is_empty() {
        return Err(failed(format!(
            "revert of lab {} to {snapshot} failed:\n  {}",
            lab.name,
            errors.join("\n  ")
        )));
    }
    // a running snapshot comes back paused, a disks-only one shut off
    let started = for_each_vm(&vms, |vm| {
        match c.domain_state(name, vm).map_err(failed)? {
            VmState::Paused => c.resume_domain(name, vm).map_err(failed),
            VmState::Shutoff | VmState::Crashed => c.start_domain(name, vm).map_err(failed),
            _ => Ok(()),
        }
    });
    let errors = errors_of(started);
    if !errors.is_empty() {
        return Err(failed(format!(
            "reverted to {snapshot}, but the VMs do not run:\n  {}",
            errors.join("\n  ")
        )));
    }
    // the guest agent answers once the VM runs again; a booting VM (a
    // disks-only snapshot) has the right time from its RTC anyway
    let clocks = for_each_vm(&vms, |vm| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match c.sync_guest_time(name, vm) {
                Ok(()) => return Ok(true),
                Err(_) if Instant::now() < deadline && found.state != "shutoff" => {
                    std::thread::sleep(Duration::from_millis(250))
                }
                Err(_) => return Ok(false),
            }
        }
    });
    Ok(vms
        .into_iter()
        .zip(clocks)
        .filter(|(_, r)| !matches!(r, Ok(true)))
        .map(|(vm, _)| vm)
        .collect())
}

/// `kubelab snapshot LAB delete NAME`: from every VM that has it.
pub async fn delete(lab: &Lab, snapshot: &str) -> Result<Vec<String>, ProvisionError> {
    one_virthost(lab)?;
    check_name(snapshot).map_err(failed)?;
    let name = lab_name(lab)?;
    let session = open_session(lab, true).await?;
    let r = async {
        let c = open_libvirt(&session.access).await?;
        blocking(|| {
            let vms = vms(lab, &c, &name)?;
            let found = lab_snapshots(&c, &name, &vms)?
                .into_iter()
                .find(|s| s.name == snapshot)
                .ok_or_else(|| failed(format!("lab {} has no snapshot {snapshot}", lab.name)))?;
            let deleted = for_each_vm(&found.vms, |vm| {
                c.delete_snapshot(&name, vm, snapshot).map_err(failed)
            });
            let errors = errors_of(deleted);
            if errors.is_empty() {
                Ok(found.vms)
            } else {
                Err(failed(format!(
                    "delete of snapshot {snapshot} incomplete (run it again):\n  {}",
                    errors.join("\n  ")
                )))
            }
        })
    }
    .await;
    session.close().await;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names() {
        for ok in ["clean", "before-upgrade", "v1.31_2"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a b", "a/b", "ä", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
