//! The places of a lab ([`Provider`]s): one per virthost, connected in
//! parallel (one connection each for the whole run), and the VMs the lab
//! file leaves unplaced placed over them from what they have now.

use futures::future::LocalBoxFuture;

use super::access::blocking;
use super::libvirt_virthost::LibvirtVirthost;
use super::provider::{PerVm, Provider};
use super::{ProvisionError, failed};
use crate::lab::Lab;
use crate::lab::placement::{Capacity, Demand, place};

/// Connect to every virthost of the lab (with `lock`, taking the lab lock
/// on each). Returns the places reached, in the lab's order, and for each
/// one not reached its name and why.
pub async fn connect_all(
    lab: &Lab,
    lock: bool,
) -> (Vec<Box<dyn Provider>>, Vec<(String, ProvisionError)>) {
    let connecting = lab.virthosts.iter().enumerate().map(|(i, v)| async move {
        let r = LibvirtVirthost::connect(&lab.on_virthost(i), &v.name, lock).await;
        (v.name.clone(), r)
    });
    let mut places: Vec<Box<dyn Provider>> = Vec::new();
    let mut missing = Vec::new();
    for (name, r) in futures::future::join_all(connecting).await {
        match r {
            Ok(p) => places.push(Box::new(p)),
            Err(e) => missing.push((name, e)),
        }
    }
    (places, missing)
}

/// [`connect_all`] for a run that needs every virthost: the first one not
/// reached fails it, naming it (the others are closed again).
pub async fn connect_every(
    lab: &Lab,
    lock: bool,
) -> Result<Vec<Box<dyn Provider>>, ProvisionError> {
    let (places, missing) = connect_all(lab, lock).await;
    match missing.into_iter().next() {
        None => Ok(places),
        Some((name, e)) => {
            close_all(places).await;
            Err(named(lab, &name, e))
        }
    }
}

/// An error of virthost `name`, named after it in a lab over several.
pub fn named(lab: &Lab, name: &str, e: ProvisionError) -> ProvisionError {
    if !lab.is_spread() {
        return e;
    }
    match e {
        ProvisionError::Unreachable(m) => {
            ProvisionError::Unreachable(format!("virthost {name}: {m}"))
        }
        ProvisionError::Failed(m) => ProvisionError::Failed(format!("virthost {name}: {m}")),
    }
}

/// Release every place (locks, connections).
pub async fn close_all(places: Vec<Box<dyn Provider>>) {
    futures::future::join_all(places.into_iter().map(|p| p.close())).await;
}

/// The lab with every VM placed: those the lab file (or its validation)
/// placed stay; the others are placed over what the virthosts have now
/// (their `memory`/`cpus` when the lab file says, else what each reports).
/// Each place then holds its part of the lab.
pub async fn place_all(lab: &Lab, places: &mut [Box<dyn Provider>]) -> Result<Lab, ProvisionError> {
    let mut placed = lab.clone();
    if lab.vms.iter().any(|v| v.virthost.is_none()) {
        let mut capacities = Vec::new();
        for (v, p) in lab.virthosts.iter().zip(places.iter()) {
            let c = match (v.memory_mib, v.cpus) {
                (Some(memory_mib), Some(cpus)) => Capacity { memory_mib, cpus },
                (memory, cpus) => {
                    let has = p.capacity().await.map_err(|e| named(lab, &v.name, e))?;
                    Capacity {
                        memory_mib: memory.unwrap_or(has.memory_mib),
                        cpus: cpus.unwrap_or(has.cpus),
                    }
                }
            };
            capacities.push(c);
        }
        let names: Vec<String> = lab.virthosts.iter().map(|v| v.name.clone()).collect();
        let demands: Vec<Demand<'_>> = lab
            .vms
            .iter()
            .map(|vm| Demand {
                name: &vm.name,
                memory_mib: vm.memory_mib,
                cpus: vm.cpus,
                pinned: vm
                    .virthost
                    .as_ref()
                    .and_then(|n| names.iter().position(|x| x == n)),
            })
            .collect();
        let at = place(&demands, &capacities, &names, lab.placement)
            .map_err(|e| ProvisionError::Failed(format!("{}: {e}", lab.file.display())))?;
        for (vm, h) in placed.vms.iter_mut().zip(at) {
            vm.virthost = Some(names[h].clone());
        }
    }
    for (i, p) in places.iter_mut().enumerate() {
        p.hold(placed.on_virthost(i));
    }
    Ok(placed)
}

/// Run `work` on every place at once, each on a thread of its own: a
/// place's VM work blocks its thread for as long as its VMs take (libvirt
/// calls, waits for addresses), and one place must not hold up another's.
/// Answers per VM, with the index of the place that gave each.
pub async fn at_once<'p, T: Send>(
    places: &'p [Box<dyn Provider>],
    work: impl Fn(usize, &'p dyn Provider) -> LocalBoxFuture<'p, PerVm<T>> + Sync,
) -> Vec<(usize, String, Result<T, ProvisionError>)> {
    let tag = |i: usize, answers: PerVm<T>| {
        answers
            .into_iter()
            .map(move |(vm, r)| (i, vm, r))
            .collect::<Vec<_>>()
    };
    if let [one] = places {
        return tag(0, work(0, one.as_ref()).await);
    }
    let handle = tokio::runtime::Handle::current();
    let work = &work;
    blocking(|| {
        std::thread::scope(|s| {
            let running: Vec<_> = places
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let handle = handle.clone();
                    (i, s.spawn(move || handle.block_on(work(i, p.as_ref()))))
                })
                .collect();
            running
                .into_iter()
                .flat_map(|(i, h)| {
                    let answers = h.join().unwrap_or_else(|_| {
                        let name = places[i].name().to_string();
                        vec![(
                            name.clone(),
                            Err(failed(format!("the worker of virthost {name} panicked"))),
                        )]
                    });
                    tag(i, answers)
                })
                .collect()
        })
    })
}
