//! `kubelab up` as a list of named phases ([`PHASES`]), each a small step
//! over every place of the lab ([`Provider`]): connect (and lock), prepare,
//! plan, apply the lab-wide objects, start the VMs, wait for their
//! addresses, write the state directory, wait for SSH with the pinned host
//! keys. A phase that fails ends the run; the places are closed (locks
//! released) whatever happened.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use super::access::{VirthostAccess, poll_until};
use super::lease::LeaseRequest;
use super::places;
use super::plan::{Action, Plan};
use super::provider::{Addressed, Provider};
use super::{
    ProvisionError, UpOptions, UpReport, VmStatus, end_step, ensure_login_key, failed,
    host_key_path, vm_target, write_state,
};
use crate::lab::Lab;
use crate::output::{Status, Steps};
use crate::state::{Inventory, VmRecord};
use crate::transport::{Command, Exec, SshTarget, Transport};

/// One phase of `up`.
#[async_trait::async_trait(?Send)]
trait Phase: Sync {
    /// What the phase does, as `up --json` lists the phases it ran.
    fn title(&self) -> &'static str;

    /// The progress group its steps belong to: `virthost` (one host per
    /// place) or `vms` (one host per VM); `None` for a phase without steps.
    fn group(&self) -> Option<Group>;

    async fn run(&self, run: &mut UpRun<'_>) -> Result<(), ProvisionError>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    Virthost,
    Vms,
}

impl Group {
    fn name(self) -> &'static str {
        match self {
            Group::Virthost => "virthost",
            Group::Vms => "vms",
        }
    }

    /// The steps each host of the group has (for the progress display).
    fn steps(self) -> usize {
        match self {
            Group::Virthost => 6,
            Group::Vms => 3,
        }
    }
}

/// `up`'s phases, in order.
const PHASES: &[&dyn Phase] = &[
    &Connect,
    &Place,
    &Prepare,
    &PlanChanges,
    &ApplyLabObjects,
    &StartVms,
    &Addresses,
    &WriteState,
    &AwaitSsh,
];

/// What the phases share: the lab, the places, and what earlier phases
/// found.
struct UpRun<'a> {
    lab: &'a Lab,
    options: &'a UpOptions,
    progress: &'a Steps,
    places: Vec<Box<dyn Provider>>,
    /// Per place, in `places`' order.
    plans: Vec<Plan>,
    virthost_changes: usize,
    login_key: String,
    t_boot: Instant,
    /// Per VM of the lab (lab order): its addresses, and the place it is in.
    addressed: Vec<(String, usize, Addressed)>,
    inventory: Option<Inventory>,
    boot_to_ssh_secs: f64,
    phases_run: Vec<&'static str>,
}

impl UpRun<'_> {
    fn place_names(&self) -> Vec<String> {
        self.places.iter().map(|p| p.name().to_string()).collect()
    }

    fn vm_names(&self) -> Vec<String> {
        self.lab.vms.iter().map(|v| v.name.clone()).collect()
    }

    /// The first error of per-VM results, or the values in the lab's VM
    /// order with the index of the place each came from.
    fn in_lab_order<T>(
        &self,
        results: Vec<(usize, String, Result<T, ProvisionError>)>,
    ) -> Result<Vec<(String, usize, T)>, ProvisionError> {
        let mut ok = Vec::new();
        for (place, vm, r) in results {
            ok.push((vm, place, r?));
        }
        let order = |vm: &str| self.lab.vms.iter().position(|v| v.name == vm);
        ok.sort_by_key(|(vm, _, _)| order(vm));
        Ok(ok)
    }
}

/// `kubelab up`.
pub async fn up(
    lab: &Lab,
    options: &UpOptions,
    progress: &Steps,
) -> Result<UpReport, ProvisionError> {
    let t0 = Instant::now();
    let mut run = UpRun {
        lab,
        options,
        progress,
        places: Vec::new(),
        plans: Vec::new(),
        virthost_changes: 0,
        login_key: String::new(),
        t_boot: Instant::now(),
        addressed: Vec::new(),
        inventory: None,
        boot_to_ssh_secs: 0.0,
        phases_run: Vec::new(),
    };
    let mut group: Option<Group> = None;
    let mut result = Ok(());
    for phase in PHASES {
        if phase.group() != group {
            if let Some(g) = group {
                progress.phase_end(g.name());
            }
            if let Some(g) = phase.group() {
                let hosts = match g {
                    Group::Virthost => run.place_names(),
                    Group::Vms => run.vm_names(),
                };
                progress.phase(g.name(), &hosts, g.steps());
            }
            group = phase.group();
        }
        result = phase.run(&mut run).await;
        if result.is_err() {
            break;
        }
        run.phases_run.push(phase.title());
    }
    if result.is_ok()
        && let Some(g) = group
    {
        progress.phase_end(g.name());
    }
    let places = std::mem::take(&mut run.places);
    let described = places.first().map(|p| p.describe()).unwrap_or_default();
    places::close_all(places).await;
    result?;
    let plan = merged(&run.plans);
    let vms = run
        .inventory
        .take()
        .map(|inv| inv.vms.iter().map(running).collect())
        .unwrap_or_default();
    Ok(UpReport {
        lab: lab.name.clone(),
        changes: plan.changes(),
        virthost_changes: run.virthost_changes,
        domain_type: described.machine,
        base_image: described.base_image,
        restart_needed: plan.restart_needed(),
        not_applied: plan.not_applied().iter().map(|a| a.to_string()).collect(),
        lease: plan.lease.clone(),
        plan,
        vms,
        state_dir: crate::state::state_dir(&lab.name),
        restarted: run
            .addressed
            .iter()
            .filter_map(|(_, _, a)| a.restarted.clone())
            .collect(),
        boot_to_ssh_secs: run.boot_to_ssh_secs,
        phases: run.phases_run,
        total_secs: t0.elapsed().as_secs_f64(),
    })
}

/// The plans of all places as one (actions in place order).
fn merged(plans: &[Plan]) -> Plan {
    let mut out = plans.first().cloned().unwrap_or_default();
    for p in plans.iter().skip(1) {
        out.actions.extend(p.actions.iter().cloned());
    }
    out
}

fn running(r: &VmRecord) -> VmStatus {
    VmStatus {
        name: r.name.clone(),
        state: "running".into(),
        addresses: r
            .ipv4
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(r.ipv6.iter().map(|a| IpAddr::V6(*a)))
            .collect(),
        disks: r.disks.clone(),
    }
}

/// Connect to every place, taking the lab lock there.
struct Connect;

#[async_trait::async_trait(?Send)]
impl Phase for Connect {
    fn title(&self) -> &'static str {
        "connect"
    }
    fn group(&self) -> Option<Group> {
        None
    }
    async fn run(&self, run: &mut UpRun<'_>) -> Result<(), ProvisionError> {
        run.places = places::connect_every(run.lab, true).await?;
        Ok(())
    }
}

/// Every VM on its virthost: the VMs the lab file leaves unplaced are
/// placed over what the virthosts have now.
struct Place;

#[async_trait::async_trait(?Send)]
impl Phase for Place {
    fn title(&self) -> &'static str {
        "place"
    }
    fn group(&self) -> Option<Group> {
        None
    }
    async fn run(&self, run: &mut UpRun<'_>) -> Result<(), ProvisionError> {
        places::place_all(run.lab, &mut run.places).await?;
        Ok(())
    }
}

/// Packages, daemons, checks, base image, machine type: every place at once.
struct Prepare;

#[async_trait::async_trait(?Send)]
impl Phase for Prepare {
    fn title(&self) -> &'static str {
        "prepare"
    }
    fn group(&self) -> Option<Group> {
        Some(Group::Virthost)
    }
    async fn run(&self, run: &mut UpRun<'_>) -> Result<(), ProvisionError> {
        let progress = run.progress;
        let changed = futures::future::join_all(run.places.iter_mut().map(|p| p.prepare(progress)))
            .await
            .into_iter()
            .collect::<Result<Vec<usize>, _>>()?;
        run.virthost_changes = changed.iter().sum();
        Ok(())
    }
}

/// The lab's objects compared with what the lab wants, per place.
struct PlanChanges;

#[async_trait::async_trait(?Send)]
impl Phase for PlanChanges {
    fn title(&self) -> &'static str {
        "plan"
    }
    fn group(&self) -> Option<Group> {
        Some(Group::Virthost)
    }
    async fn run(&self, run: &mut UpRun<'_>) -> Result<(), ProvisionError> {
        let (progress, lease) = (
            run.progress,
            LeaseRequest::now(run.lab.ttl, run.options.ttl_renew),
        );
        let plans = futures::future::join_all(run.places.iter_mut().map(|p| {
            let lease = lease.clone();
            async move {
                let host = p.name().to_string();
                progress.start_step(&host, "plan");
                let r = p.plan(lease).await;
                end_step(progress, &host, "plan", r, |p| (false, plan_message(p)))
            }
        }))
        .await;
        run.plans = plans.into_iter().collect::<Result<_, _>>()?;
        Ok(())
    }
}

/// A plan as `up`'s plan step shows it: the count, then each action.
fn plan_message(p: &Plan) -> String {
    format!(
        "{} change(s){}",
        p.changes(),
        p.actions
            .iter()
            .map(|a| format!("\n  {a}"))
            .collect::<String>()
    )
}

/// The plan's lab-wide objects (removed objects, storage, networks,
/// bridges), per place.
struct ApplyLabObjects;

#[async_trait::async_trait(?Send)]
impl Phase for ApplyLabObjects {
    fn title(&self) -> &'static str {
        "apply lab objects"
    }
    fn group(&self) -> Option<Group> {
        Some(Group::Virthost)
    }
    async fn run(&self, run: &mut UpRun<'_>) -> Result<(), ProvisionError> {
        let step = "bridges, pool and networks";
        let progress = run.progress;
        let results = futures::future::join_all(run.places.iter().zip(&run.plans).map(
            |(place, plan)| async move {
                let host = place.name().to_string();
                progress.start_step(&host, step);
                let r = place.apply(plan).await;
                let changed = lab_objects_changed(plan);
                end_step(progress, &host, step, r, |done| (changed, done.join("\n")))
            },
        ))
        .await;
        results.into_iter().collect::<Result<Vec<_>, _>>()?;
        Ok(())
    }
}

/// Whether a plan changes anything besides the VMs' own objects.
fn lab_objects_changed(p: &Plan) -> bool {
    p.actions.iter().any(|a| {
        !matches!(
            a,
            Action::CreateVolume { .. }
                | Action::DefineDomain { .. }
                | Action::RedefineDomain { .. }
                | Action::RestartNeeded { .. }
                | Action::StartDomain { .. }
                | Action::SetLease { .. }
                | Action::NotApplied { .. }
        )
    })
}

/// Every VM's volumes, seed, definition and start.
struct StartVms;

#[async_trait::async_trait(?Send)]
impl Phase for StartVms {
    fn title(&self) -> &'static str {
        "start VMs"
    }
    fn group(&self) -> Option<Group> {
        Some(Group::Vms)
    }
    async fn run(&self, run: &mut UpRun<'_>) -> Result<(), ProvisionError> {
        let state = crate::state::state_dir(&run.lab.name);
        run.login_key = ensure_login_key(&state, run.lab)?;
        run.t_boot = Instant::now();
        let (progress, key) = (run.progress, run.login_key.as_str());
        let plans = &run.plans;
        let started = places::at_once(&run.places, |i, place| {
            Box::pin(place.start_vms(&plans[i], key, progress))
        })
        .await;
        run.in_lab_order(started)?;
        Ok(())
    }
}

/// Every VM's addresses, bounded by `up`'s timeout from the VMs' start.
struct Addresses;

#[async_trait::async_trait(?Send)]
impl Phase for Addresses {
    fn title(&self) -> &'static str {
        "addresses"
    }
    fn group(&self) -> Option<Group> {
        Some(Group::Vms)
    }
    async fn run(&self, run: &mut UpRun<'_>) -> Result<(), ProvisionError> {
        let deadline = run.t_boot + run.options.timeout;
        let progress = run.progress;
        let plans = &run.plans;
        let found = places::at_once(&run.places, |i, place| {
            Box::pin(place.addresses(&plans[i], deadline, progress))
        })
        .await;
        run.addressed = run.in_lab_order(found)?;
        Ok(())
    }
}

/// The state directory: inventory, ssh_config, known_hosts.
struct WriteState;

#[async_trait::async_trait(?Send)]
impl Phase for WriteState {
    fn title(&self) -> &'static str {
        "write state"
    }
    fn group(&self) -> Option<Group> {
        Some(Group::Vms)
    }
    async fn run(&self, run: &mut UpRun<'_>) -> Result<(), ProvisionError> {
        let lab = run.lab;
        let state = crate::state::state_dir(&lab.name);
        let vms = run
            .addressed
            .iter()
            .map(|(vm, _, a)| record(lab, vm, a, &state))
            .collect::<Result<Vec<_>, _>>()?;
        let inv = Inventory {
            lab: lab.name.clone(),
            user: lab.image.user().to_string(),
            virthost: match &lab.virthost.connection {
                crate::lab::model::Connection::Local => "local".into(),
                crate::lab::model::Connection::Ssh(h) => {
                    format!("{}@{}:{}", h.user, h.address, h.port)
                }
            },
            vms,
        };
        write_state(lab, &inv, &state)?;
        run.inventory = Some(inv);
        Ok(())
    }
}

/// SSH with the pinned keys on every VM, in parallel, bounded.
struct AwaitSsh;

#[async_trait::async_trait(?Send)]
impl Phase for AwaitSsh {
    fn title(&self) -> &'static str {
        "SSH"
    }
    fn group(&self) -> Option<Group> {
        Some(Group::Vms)
    }
    async fn run(&self, run: &mut UpRun<'_>) -> Result<(), ProvisionError> {
        let step = "SSH with the pinned host key";
        let (lab, progress) = (run.lab, run.progress);
        let timeout = run.options.timeout;
        let deadline = run.t_boot + timeout;
        let state = crate::state::state_dir(&lab.name);
        let inv = run
            .inventory
            .as_ref()
            .ok_or_else(|| failed("SSH before the state was written"))?;
        // every VM through the first place: the gateway of every network of
        // a lab over several virthosts (the others' bridges have no address)
        let gateway = run.places.first().ok_or_else(|| failed("no virthost"))?;
        let checks = inv
            .vms
            .iter()
            .zip(&run.addressed)
            .map(|(vm, (_, place, _))| {
                let target = vm_target(inv, vm, &state);
                let place = &run.places[*place];
                progress.start_step(&vm.name, step);
                async move {
                    let ok = answers_ssh(gateway.reach(), target, deadline).await;
                    (vm.name.clone(), place, ok)
                }
            });
        let answers = futures::future::join_all(checks).await;
        let mut unreachable = Vec::new();
        for (vm, place, ok) in answers {
            if ok {
                progress.end_step(&vm, step, Status::Ok, "answers");
            } else {
                let tail = place.console(&vm).await;
                let message = format!(
                    "{vm}: no SSH answer with the pinned host key within {}s; serial console (tail):\n{tail}",
                    timeout.as_secs()
                );
                progress.end_step(&vm, step, Status::Failed, &message);
                unreachable.push(message);
            }
        }
        if !unreachable.is_empty() {
            return Err(failed(format!(
                "{}\nthe lab is left in place: `kubelab down {}` removes it",
                unreachable.join("\n"),
                lab.file.display()
            )));
        }
        run.boot_to_ssh_secs = run.t_boot.elapsed().as_secs_f64();
        Ok(())
    }
}

/// Whether a VM runs `true` over SSH, with its pinned host key, before
/// `deadline` (tried every half second).
pub(crate) async fn answers_ssh(
    access: &VirthostAccess,
    target: SshTarget,
    deadline: Instant,
) -> bool {
    poll_until(deadline, Duration::from_millis(500), || {
        let target = target.clone();
        async move {
            let t = access.vm(target).await.ok()?;
            let out = t
                .exec(Exec::new(Command::argv(["true"])).timeout(Duration::from_secs(30)))
                .await;
            t.disconnect().await;
            out.ok().filter(|o| o.status.success()).map(|_| ())
        }
    })
    .await
    .is_some()
}

/// A VM's inventory record: its addresses (first IPv4, else first IPv6,
/// is the one SSH uses), its pinned host key, MACs and disks.
fn record(lab: &Lab, vm: &str, a: &Addressed, state: &Path) -> Result<VmRecord, ProvisionError> {
    let path = host_key_path(state, vm);
    let host_key = std::fs::read_to_string(&path)
        .map_err(|e| {
            failed(format!(
                "{}: the VM's host key is not in the state directory ({e}); kubelab cannot check the VM's identity: `kubelab down` then `up` recreates it",
                path.display()
            ))
        })?
        .trim()
        .to_string();
    let ipv4: Vec<_> = a
        .addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v) => Some(*v),
            _ => None,
        })
        .collect();
    let ipv6: Vec<_> = a
        .addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(v) => Some(*v),
            _ => None,
        })
        .collect();
    let address = ipv4
        .first()
        .map(|a| a.to_string())
        .or_else(|| ipv6.first().map(|a| a.to_string()))
        .unwrap_or_default();
    Ok(VmRecord {
        name: vm.to_string(),
        roles: lab.vm(vm).map(|v| v.roles.clone()).unwrap_or_default(),
        address,
        ipv4,
        ipv6,
        macs: a.macs.clone(),
        disks: a.disks.clone(),
        host_key,
    })
}
