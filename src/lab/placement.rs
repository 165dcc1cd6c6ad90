//! Where each VM of a lab over several virthosts runs: VMs that name a
//! virthost stay there; the others, in lab order, go to the virthost with
//! the most memory left (`spread`) or to the first one in the list they fit
//! on (`pack`). Memory is a hard limit (the sum of the VMs' memory on a
//! virthost never exceeds what it may give); a VM never gets more vCPUs
//! than its virthost has CPUs; vCPUs already placed break ties when
//! spreading. The same inputs always give the same placement.

use super::model::Placement;

/// What a virthost may give the lab's VMs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub memory_mib: u64,
    pub cpus: u32,
}

/// A VM as placement sees it.
#[derive(Clone, Debug)]
pub struct Demand<'a> {
    pub name: &'a str,
    pub memory_mib: u64,
    pub cpus: u32,
    /// The virthost the lab file puts it on (index into the capacities).
    pub pinned: Option<usize>,
}

/// Why a VM could not be placed, with the numbers.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NoFit {
    /// Index of the VM in the demands.
    pub vm: usize,
    pub message: String,
}

/// The virthost (index into `capacities`, named by `names`) of every VM,
/// in the demands' order.
pub fn place(
    demands: &[Demand<'_>],
    capacities: &[Capacity],
    names: &[String],
    how: Placement,
) -> Result<Vec<usize>, NoFit> {
    let mut used_mem = vec![0u64; capacities.len()];
    let mut used_cpus = vec![0u64; capacities.len()];
    let mut out = vec![usize::MAX; demands.len()];
    let too_big = |d: &Demand<'_>, h: usize| -> Option<String> {
        let c = capacities[h];
        (d.cpus > c.cpus).then(|| {
            format!(
                "VM {} has {} vCPUs; virthost {} has {} CPUs",
                d.name, d.cpus, names[h], c.cpus
            )
        })
    };
    // the VMs the lab file puts somewhere first: what is left is what the
    // others may have
    for (i, d) in demands.iter().enumerate() {
        let Some(h) = d.pinned else { continue };
        if let Some(m) = too_big(d, h) {
            return Err(NoFit { vm: i, message: m });
        }
        if used_mem[h] + d.memory_mib > capacities[h].memory_mib {
            return Err(NoFit {
                vm: i,
                message: format!(
                    "VM {} ({} MiB) does not fit on virthost {}: {} of its {} MiB are taken by the VMs put there before it",
                    d.name, d.memory_mib, names[h], used_mem[h], capacities[h].memory_mib
                ),
            });
        }
        used_mem[h] += d.memory_mib;
        used_cpus[h] += u64::from(d.cpus);
        out[i] = h;
    }
    for (i, d) in demands.iter().enumerate() {
        if d.pinned.is_some() {
            continue;
        }
        let fits = |h: usize| {
            too_big(d, h).is_none() && used_mem[h] + d.memory_mib <= capacities[h].memory_mib
        };
        let chosen = match how {
            Placement::Pack => (0..capacities.len()).find(|&h| fits(h)),
            // most memory left; then the fewest vCPUs per CPU; then the
            // earlier virthost
            Placement::Spread => (0..capacities.len()).filter(|&h| fits(h)).min_by(|&a, &b| {
                let left = |h: usize| capacities[h].memory_mib - used_mem[h];
                // vCPUs per CPU, compared without dividing
                let load_a = used_cpus[a] * u64::from(capacities[b].cpus.max(1));
                let load_b = used_cpus[b] * u64::from(capacities[a].cpus.max(1));
                left(b)
                    .cmp(&left(a))
                    .then(load_a.cmp(&load_b))
                    .then(a.cmp(&b))
            }),
        };
        let Some(h) = chosen else {
            let free = (0..capacities.len())
                .map(|h| {
                    format!(
                        "{} {} MiB free of {}, {} CPUs",
                        names[h],
                        capacities[h].memory_mib - used_mem[h],
                        capacities[h].memory_mib,
                        capacities[h].cpus
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(NoFit {
                vm: i,
                message: format!(
                    "VM {} ({} MiB, {} vCPUs) fits on no virthost: {free}",
                    d.name, d.memory_mib, d.cpus
                ),
            });
        };
        used_mem[h] += d.memory_mib;
        used_cpus[h] += u64::from(d.cpus);
        out[i] = h;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(name: &str, memory_mib: u64, cpus: u32) -> Demand<'_> {
        Demand {
            name,
            memory_mib,
            cpus,
            pinned: None,
        }
    }

    fn hosts(n: usize, memory_mib: u64, cpus: u32) -> (Vec<Capacity>, Vec<String>) {
        (
            vec![Capacity { memory_mib, cpus }; n],
            (1..=n).map(|i| format!("vh{i}")).collect(),
        )
    }

    #[test]
    fn spread_alternates_and_pack_fills_the_first() {
        let vms: Vec<_> = ["a", "b", "c", "d"]
            .iter()
            .map(|n| vm(n, 1024, 1))
            .collect();
        let (caps, names) = hosts(2, 4096, 4);
        assert_eq!(
            place(&vms, &caps, &names, Placement::Spread).unwrap(),
            [0, 1, 0, 1]
        );
        assert_eq!(
            place(&vms, &caps, &names, Placement::Pack).unwrap(),
            [0, 0, 0, 0]
        );
    }

    #[test]
    fn pinned_vms_take_their_memory_first() {
        let mut vms: Vec<_> = ["a", "b", "c"].iter().map(|n| vm(n, 2048, 1)).collect();
        vms[2].pinned = Some(0);
        let (caps, names) = hosts(2, 4096, 4);
        // c is on vh1 already, so a goes to vh2 (more left), b to vh1
        assert_eq!(
            place(&vms, &caps, &names, Placement::Spread).unwrap(),
            [1, 0, 0]
        );
    }

    #[test]
    fn a_vm_that_fits_nowhere_is_named_with_the_numbers() {
        let vms = vec![vm("a", 3072, 1), vm("big", 3072, 1)];
        let (caps, names) = hosts(1, 4096, 4);
        let e = place(&vms, &caps, &names, Placement::Spread).unwrap_err();
        assert_eq!(e.vm, 1);
        assert_eq!(
            e.message,
            "VM big (3072 MiB, 1 vCPUs) fits on no virthost: vh1 1024 MiB free of 4096, 4 CPUs"
        );
        let mut pinned = vec![vm("a", 3072, 1), vm("b", 2048, 1)];
        pinned[1].pinned = Some(0);
        pinned[0].pinned = Some(0);
        let e = place(&pinned, &caps, &names, Placement::Pack).unwrap_err();
        assert_eq!(e.vm, 1);
        assert!(e.message.contains("3072 of its 4096 MiB"), "{}", e.message);
        let wide = vec![vm("w", 1024, 8)];
        let e = place(&wide, &caps, &names, Placement::Pack).unwrap_err();
        assert_eq!(
            e.message,
            "VM w (1024 MiB, 8 vCPUs) fits on no virthost: vh1 4096 MiB free of 4096, 4 CPUs"
        );
    }

    #[test]
    fn ties_go_by_cpu_load_then_order_and_are_deterministic() {
        let vms = vec![vm("a", 1024, 4), vm("b", 1024, 1), vm("c", 1024, 1)];
        let caps = vec![
            Capacity {
                memory_mib: 4096,
                cpus: 4,
            },
            Capacity {
                memory_mib: 4096,
                cpus: 4,
            },
        ];
        let names = vec!["x".to_string(), "y".to_string()];
        let first = place(&vms, &caps, &names, Placement::Spread).unwrap();
        assert_eq!(first, [0, 1, 1]);
        for _ in 0..5 {
            assert_eq!(
                place(&vms, &caps, &names, Placement::Spread).unwrap(),
                first
            );
        }
    }

    #[test]
    fn a_hundred_vms_over_ten_virthosts() {
        let names_owned: Vec<String> = (0..100).map(|i| format!("vm-{i}")).collect();
        let vms: Vec<_> = names_owned.iter().map(|n| vm(n, 2048, 2)).collect();
        let (caps, names) = hosts(10, 24 * 1024, 8);
        let placed = place(&vms, &caps, &names, Placement::Spread).unwrap();
        for h in 0..10 {
            assert_eq!(placed.iter().filter(|&&p| p == h).count(), 10);
        }
    }
}
