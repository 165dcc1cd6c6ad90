//! From a [`Lab`] to running, reachable VMs, and back: `up`, `down`,
//! `plan`, `status`.
//!
//! `up`: connect to the virthost (its transport), take the lab lock, run
//! `prepare.sh`, check (doctor's blocking checks), get the base image, decide
//! the domain type, compare the desired state with the lab's objects
//! ([`plan`]), apply the plan (every VM in parallel), wait — bounded — for
//! each VM's addresses (meanwhile a VM whose console shows a kernel panic
//! or a boot loop is restarted once) and for SSH with the host key kubelab
//! generated and pinned before boot, then write the state directory.

pub mod access;
pub mod bridges;
pub mod desired;
pub mod doctor;
pub mod lease;
pub mod plan;
pub mod prepare;
pub mod snapshot;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use self::access::{LabLock, Libvirt, VirthostAccess, blocking, login_key_path, poll_until};
use self::desired::{Desired, DesiredVm};
use self::plan::{Action, Plan};
use crate::lab::Lab;
use crate::lab::model::{NetworkKind, Virthost};
use crate::output::{Status, Steps};
use crate::state::{Inventory, VmRecord};
use crate::transport::ssh::known_hosts::{parse_public_key, pin_host_key};
use crate::transport::{Command, Exec, SshTarget, SshTransport, Transport, TransportError};
use crate::virthost::console::{BootTrouble, ConsoleWatch};
use crate::virthost::libvirt::{Connection, LabListing, NicAddresses, VmState};
use crate::virthost::seed::{HostKey, SeedSpec, SeedUser, seed_files};
use crate::virthost::spec::{DomainType, LabName, Lease, VolumeFormat};

/// Why a provisioning command failed; decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The virthost (or libvirt on it) could not be reached: exit 3.
    #[error("{0}")]
    Unreachable(String),
    /// Anything else: exit 1.
    #[error("{0}")]
    Failed(String),
}

impl ProvisionError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ProvisionError::Unreachable(_) => 3,
            ProvisionError::Failed(_) => 1,
        }
    }
}

fn failed(e: impl ToString) -> ProvisionError {
    ProvisionError::Failed(e.to_string())
}

fn from_transport(e: TransportError) -> ProvisionError {
    if e.is_unreachable() {
        ProvisionError::Unreachable(e.to_string())
    } else {
        ProvisionError::Failed(e.to_string())
    }
}

/// The host name of the virthost in `up`'s progress.
pub const VIRTHOST_HOST: &str = "virthost";

/// The end of one step of `up` on `host`: ok or changed (as `done` says,
/// with its message) when `result` is a value, failed with the error.
fn end_step<T>(
    progress: &Steps,
    host: &str,
    name: &str,
    result: Result<T, ProvisionError>,
    done: impl FnOnce(&T) -> (bool, String),
) -> Result<T, ProvisionError> {
    match &result {
        Ok(v) => {
            let (changed, message) = done(v);
            let status = if changed { Status::Changed } else { Status::Ok };
            progress.end_step(host, name, status, &message);
        }
        Err(e) => progress.end_step(host, name, Status::Failed, &e.to_string()),
    }
    result
}

/// One step of `up` on `host`: started, `work` awaited, ended ([`end_step`]).
async fn step<T>(
    progress: &Steps,
    host: &str,
    name: &str,
    work: impl std::future::Future<Output = Result<T, ProvisionError>>,
    done: impl FnOnce(&T) -> (bool, String),
) -> Result<T, ProvisionError> {
    progress.start_step(host, name);
    end_step(progress, host, name, work.await, done)
}

/// [`step`] for blocking work (a VM's own thread).
fn step_blocking<T>(
    progress: &Steps,
    host: &str,
    name: &str,
    work: impl FnOnce() -> Result<T, ProvisionError>,
    done: impl FnOnce(&T) -> (bool, String),
) -> Result<T, ProvisionError> {
    progress.start_step(host, name);
    end_step(progress, host, name, work(), done)
}

/// Run `work` for every VM at once, one thread each (libvirt calls block),
/// and collect the results in VM order; a panicking worker is an error.
fn for_each_vm<V: Sync, T: Send>(
    vms: &[V],
    work: impl Fn(&V) -> Result<T, ProvisionError> + Sync,
) -> Vec<Result<T, ProvisionError>> {
    std::thread::scope(|s| {
        let handles: Vec<_> = vms.iter().map(|vm| s.spawn(|| work(vm))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(failed("a VM worker panicked")))
            })
            .collect()
    })
}

/// Open libvirt on the lab's virthost (through the access's SSH connection
/// when it is remote).
pub async fn open_libvirt(access: &VirthostAccess) -> Result<Libvirt, ProvisionError> {
    Libvirt::open(access)
        .await
        .map_err(ProvisionError::Unreachable)
}

fn lab_name(lab: &Lab) -> Result<LabName, ProvisionError> {
    LabName::new(&lab.name).map_err(failed)
}

/// A VM as `up` and `status` report it.
#[derive(Clone, Debug, Serialize)]
pub struct VmStatus {
    pub name: String,
    pub state: String,
    pub addresses: Vec<IpAddr>,
    pub disks: Vec<String>,
}

/// How `up` runs.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// How long to wait for every VM's addresses and SSH (from their start).
    pub timeout: Duration,
    /// `up --ttl`: the lab's lease renewed to expire this long from now.
    pub ttl_renew: Option<u64>,
}

/// What `up` did.
#[derive(Clone, Debug, Serialize)]
pub struct UpReport {
    pub lab: String,
    /// Changes to libvirt objects (the plan's actions applied).
    pub changes: usize,
    /// Things `prepare.sh` changed on the virthost.
    pub virthost_changes: usize,
    pub plan: Plan,
    pub domain_type: String,
    pub base_image: String,
    pub vms: Vec<VmStatus>,
    pub state_dir: PathBuf,
    /// Running VMs whose definition changed: they need a restart.
    pub restart_needed: Vec<String>,
    /// Changes of the lab `up` did not make (the plan's NOT APPLIED lines).
    pub not_applied: Vec<String>,
    /// VMs `up` restarted because their console showed trouble at boot.
    pub restarted: Vec<VmRestart>,
    /// Seconds from starting the VMs until every one answered SSH.
    pub boot_to_ssh_secs: f64,
    /// The lab's lease as recorded on the virthost.
    pub lease: Option<Lease>,
    pub total_secs: f64,
}

/// A VM `up` restarted (once) because its console showed trouble at boot.
#[derive(Clone, Debug, Serialize)]
pub struct VmRestart {
    pub vm: String,
    /// `kernel panic` or `boot loop`.
    pub reason: String,
    /// What the console showed (the panic message).
    pub detail: String,
}

/// The state directory's host key file of a VM (public key).
fn host_key_path(state: &Path, vm: &str) -> PathBuf {
    state.join("host_keys").join(format!("{vm}.pub"))
}

/// The lab's VM login key, generated once per lab (mode 0600); returns the
/// public key line.
pub fn ensure_login_key(state: &Path, lab: &Lab) -> Result<String, ProvisionError> {
    let key = login_key_path(state);
    let public = state.join("id_ed25519.pub");
    if key.is_file() && public.is_file() {
        return std::fs::read_to_string(&public)
            .map(|s| s.trim().to_string())
            .map_err(|e| failed(format!("{}: {e}", public.display())));
    }
    std::fs::create_dir_all(state).map_err(|e| failed(format!("{}: {e}", state.display())))?;
    let k = HostKey::generate(&format!("kubelab-{}", lab.name)).map_err(failed)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&key)
        .map_err(|e| failed(format!("{}: {e}", key.display())))?;
    f.write_all(k.private_key_openssh().as_bytes())
        .map_err(|e| failed(format!("{}: {e}", key.display())))?;
    let line = k.public_key_openssh();
    std::fs::write(&public, format!("{line}\n"))
        .map_err(|e| failed(format!("{}: {e}", public.display())))?;
    Ok(line)
}

/// The run's tokio runtime plus the virthost access and the lab lock.
struct Session {
    access: VirthostAccess,
    lock: Option<LabLock>,
}

async fn open_session(lab: &Lab, lock: bool) -> Result<Session, ProvisionError> {
    let access = VirthostAccess::connect(lab).await.map_err(from_transport)?;
    let lock = if lock {
        Some(
            LabLock::acquire(&access, &desired::lock_path(lab))
                .await
                .map_err(failed)?,
        )
    } else {
        None
    };
    Ok(Session { access, lock })
}

impl Session {
    async fn close(mut self) {
        if let Some(l) = self.lock.take() {
            l.release(&self.access).await;
        }
    }
}

/// `kubelab plan`: the desired state compared with the virthost; changes
/// nothing (no prepare, no image build: the base image is where the build
/// or download would put it).
pub async fn plan(lab: &Lab) -> Result<(Plan, String), ProvisionError> {
    let session = open_session(lab, false).await?;
    let c = open_libvirt(&session.access).await?;
    let (dt, why) = prepare::domain_type(&session.access, lab, &c)
        .await
        .map_err(failed)?;
    let base = prepare::expected_base_image(lab);
    let mut d = desired::desired(
        lab,
        base.as_deref().unwrap_or(Path::new("/base-image")),
        VolumeFormat::Qcow2,
        dt,
    )
    .map_err(failed)?;
    d.lease = Some(lease::LeaseRequest::now(lab.ttl, None));
    let mut p = blocking(|| plan::plan(&c, &d, base.as_deref())).map_err(failed)?;
    drop(c);
    let bridge_actions = bridges::plan(&session.access, lab).await.map_err(failed)?;
    p.actions.splice(0..0, bridge_actions);
    session.close().await;
    Ok((p, why))
}

/// `kubelab up`.
pub async fn up(
    lab: &Lab,
    options: &UpOptions,
    progress: &Steps,
) -> Result<UpReport, ProvisionError> {
    let t0 = Instant::now();
    let session = open_session(lab, true).await?;
    let r = up_locked(lab, options, progress, &session.access, t0).await;
    session.close().await;
    r
}

async fn up_locked(
    lab: &Lab,
    options: &UpOptions,
    progress: &Steps,
    access: &VirthostAccess,
    t0: Instant,
) -> Result<UpReport, ProvisionError> {
    let timeout = options.timeout;
    let name = lab_name(lab)?;
    let state = crate::state::state_dir(&lab.name);
    let vh = VIRTHOST_HOST;
    progress.phase("virthost", &[vh.to_string()], 6);
    let virthost_changes = step(
        progress,
        vh,
        "prepare (packages, libvirtd)",
        async { prepare::prepare(access, lab, true).await.map_err(failed) },
        |n| (*n > 0, format!("{n} changed")),
    )
    .await?;
    let c = step(
        progress,
        vh,
        "checks",
        async {
            let c = open_libvirt(access).await?;
            let findings = doctor::check(access, lab, Some(&c), None).await;
            let blockers: Vec<String> = findings
                .iter()
                .filter(|f| f.severity == doctor::Severity::Blocking)
                .map(|f| format!("{}: {} (fix: {})", f.check, f.message, f.fix))
                .collect();
            if blockers.is_empty() {
                Ok(c)
            } else {
                Err(failed(format!(
                    "the virthost is not ready for lab {}:\n  {}",
                    lab.name,
                    blockers.join("\n  ")
                )))
            }
        },
        |c| (false, format!("libvirt at {}", c.uri())),
    )
    .await?;
    let base = step(
        progress,
        vh,
        "base image",
        async { prepare::base_image(access, lab).await.map_err(failed) },
        |b| (false, b.path.display().to_string()),
    )
    .await?;
    let (dt, _) = step(
        progress,
        vh,
        "domain type",
        async { prepare::domain_type(access, lab, &c).await.map_err(failed) },
        |(dt, why)| (false, format!("{} ({why})", domain_type_word(*dt))),
    )
    .await?;
    let mut d = desired::desired(lab, &base.path, base.format, dt).map_err(failed)?;
    d.lease = Some(lease::LeaseRequest::now(lab.ttl, options.ttl_renew));
    let p = step(
        progress,
        vh,
        "plan",
        async {
            let mut p = blocking(|| plan::plan(&c, &d, Some(&base.path))).map_err(failed)?;
            let bridge_actions = bridges::plan(access, lab).await.map_err(failed)?;
            p.actions.splice(0..0, bridge_actions);
            Ok(p)
        },
        |p| {
            let lines: Vec<String> = p.actions.iter().map(|a| a.to_string()).collect();
            (
                false,
                format!(
                    "{} change(s){}",
                    p.changes(),
                    lines.iter().map(|l| format!("\n  {l}")).collect::<String>()
                ),
            )
        },
    )
    .await?;
    let login_pub = ensure_login_key(&state, lab)?;

    // ---- apply: bridges, pool, networks, then every VM in parallel -------------
    let lab_objects_changed = p.actions.iter().any(|a| {
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
    });
    step(
        progress,
        vh,
        "bridges, pool and networks",
        async {
            let mut done = bridges::apply(access, &lab.name, &p.actions)
                .await
                .map_err(failed)?;
            let reattach = blocking(|| apply_lab_objects(&c, &d, &p, &state))?;
            if !reattach.is_empty() {
                reattach_nics(access, &reattach).await?;
                done.push(format!(
                    "{} running NIC(s) plugged back into their restarted network",
                    reattach.len()
                ));
            }
            Ok(done)
        },
        |done| (lab_objects_changed, done.join("\n")),
    )
    .await?;
    progress.phase_end("virthost");

    let vm_names: Vec<String> = d.vms.iter().map(|v| v.name.clone()).collect();
    progress.phase("vms", &vm_names, 3);
    let t_boot = Instant::now();
    let results = blocking(|| {
        for_each_vm(&d.vms, |vm| {
            step_blocking(
                progress,
                &vm.name,
                "volumes, seed, definition, start",
                || apply_vm(&c, lab, &d, &p, vm, &state, &login_pub),
                |()| {
                    let mine: Vec<String> = p
                        .actions
                        .iter()
                        .filter(|a| action_vm(a) == Some(vm.name.as_str()))
                        .map(|a| a.to_string())
                        .collect();
                    (!mine.is_empty(), mine.join("\n"))
                },
            )
        })
    });
    for r in results {
        r?;
    }

    // ---- addresses (leases, then agent), bounded; consoles watched ----------
    let deadline = t_boot + timeout;
    let addressed = blocking(|| {
        for_each_vm(&d.vms, |vm| {
            // a VM this run started logs this boot only; one that was
            // running already has a log of unknown history
            let started_now = p
                .actions
                .iter()
                .any(|a| matches!(a, Action::StartDomain { vm: v } if *v == vm.name));
            step_blocking(
                progress,
                &vm.name,
                "addresses",
                || wait_addresses(&c, lab, &name, vm, deadline, started_now, progress),
                |a| {
                    let mut message = a
                        .addresses
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(" ");
                    if let Some(r) = &a.restarted {
                        message.push_str(&format!(" (restarted once after a {})", r.reason));
                    }
                    (a.restarted.is_some(), message)
                },
            )
        })
    });
    let mut records = Vec::new();
    let mut restarted = Vec::new();
    for (vm, r) in d.vms.iter().zip(addressed) {
        let a = r?;
        records.push(record(lab, vm, &a.addresses, &state)?);
        restarted.extend(a.restarted);
    }
    let inv = Inventory {
        lab: lab.name.clone(),
        user: lab.image.user().to_string(),
        virthost: match &lab.virthost.connection {
            crate::lab::model::Connection::Local => "local".into(),
            crate::lab::model::Connection::Ssh(h) => format!("{}@{}:{}", h.user, h.address, h.port),
        },
        vms: records,
    };
    write_state(lab, &inv, &state)?;

    // ---- SSH with the pinned keys, in parallel, bounded -------------------------
    let ssh_step = "SSH with the pinned host key";
    let checks = inv.vms.iter().map(|vm| {
        let target = vm_target(&inv, vm, &state);
        progress.start_step(&vm.name, ssh_step);
        async move { (vm.name.clone(), answers_ssh(access, target, deadline).await) }
    });
    let answers = futures::future::join_all(checks).await;
    let mut unreachable = Vec::new();
    for (vm, ok) in &answers {
        if *ok {
            progress.end_step(vm, ssh_step, Status::Ok, "answers");
        } else {
            let tail = blocking(|| console_tail(&c, &name, vm));
            let message = format!(
                "{vm}: no SSH answer with the pinned host key within {}s; serial console (tail):\n{tail}",
                timeout.as_secs()
            );
            progress.end_step(vm, ssh_step, Status::Failed, &message);
            unreachable.push(message);
        }
    }
    progress.phase_end("vms");
    if !unreachable.is_empty() {
        return Err(failed(format!(
            "{}\nthe lab is left in place: `kubelab down {}` removes it",
            unreachable.join("\n"),
            lab.file.display()
        )));
    }
    let boot_to_ssh_secs = t_boot.elapsed().as_secs_f64();
    let vms = inv
        .vms
        .iter()
        .map(|r| VmStatus {
            name: r.name.clone(),
            state: "running".into(),
            addresses: r
                .ipv4
                .iter()
                .map(|a| IpAddr::V4(*a))
                .chain(r.ipv6.iter().map(|a| IpAddr::V6(*a)))
                .collect(),
            disks: r.disks.clone(),
        })
        .collect();
    let lease = p.lease.clone();
    let restart_needed = p.restart_needed();
    let not_applied = p.not_applied().iter().map(|a| a.to_string()).collect();
    Ok(UpReport {
        lab: lab.name.clone(),
        changes: p.changes(),
        virthost_changes,
        domain_type: format!("{dt:?}").to_lowercase(),
        base_image: base.path.display().to_string(),
        plan: p,
        vms,
        state_dir: state,
        restart_needed,
        not_applied,
        restarted,
        boot_to_ssh_secs,
        lease,
        total_secs: t0.elapsed().as_secs_f64(),
    })
}

/// Whether a VM runs `true` over SSH, with its pinned host key, before
/// `deadline` (tried every half second).
async fn answers_ssh(access: &VirthostAccess, target: SshTarget, deadline: Instant) -> bool {
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

/// The tail of a VM's serial console log, or why there is none.
fn console_tail(c: &Connection, lab: &LabName, vm: &str) -> String {
    match c.console_log_tail(lab, vm, 3000) {
        Ok(t) if t.trim().is_empty() => {
            "(empty: the guest wrote nothing to its serial console: no boot loader or kernel output)".into()
        }
        Ok(t) => t,
        Err(e) => format!("(cannot read it: {e})"),
    }
}

/// The VM an action is about, if any.
fn action_vm(a: &Action) -> Option<&str> {
    match a {
        Action::CreateVolume { vm, .. }
        | Action::GrowVolume { vm, .. }
        | Action::DefineDomain { vm }
        | Action::RedefineDomain { vm, .. }
        | Action::RestartNeeded { vm, .. }
        | Action::SetLease { vm, .. }
        | Action::StartDomain { vm } => Some(vm),
        _ => None,
    }
}

/// Put NICs of running VMs back on the bridge of their restarted network.
async fn reattach_nics(
    access: &VirthostAccess,
    nics: &[(String, String)],
) -> Result<(), ProvisionError> {
    let script = nics
        .iter()
        .map(|(dev, bridge)| {
            format!(
                "ip link set dev {} master {} && ip link set dev {} up",
                crate::transport::quote(dev),
                crate::transport::quote(bridge),
                crate::transport::quote(dev)
            )
        })
        .collect::<Vec<_>>()
        .join(" && ");
    let out = access
        .run(Command::script(script), Duration::from_secs(60))
        .await
        .map_err(from_transport)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "cannot plug the running VMs back into their restarted network: {}",
            out.stderr_str().trim()
        )))
    }
}

/// What the plan does outside the VMs' own work, in its order: objects the
/// lab no longer has, the pool, networks (created or replaced), grown disks.
/// Returns the NICs to plug back into restarted networks (device, bridge).
fn apply_lab_objects(
    c: &Connection,
    d: &Desired,
    p: &Plan,
    state: &Path,
) -> Result<Vec<(String, String)>, ProvisionError> {
    for a in &p.actions {
        match a {
            Action::RemoveDomain { vm } => {
                c.remove_domain(&d.lab, vm).map_err(failed)?;
                let _ = std::fs::remove_file(host_key_path(state, vm));
            }
            Action::RemoveVolume { volume } => c.delete_volume(&d.lab, volume).map_err(failed)?,
            Action::RemoveNetwork { network } => {
                c.remove_network(&d.lab, network).map_err(failed)?
            }
            _ => {}
        }
    }
    c.ensure_pool(&d.pool).map_err(failed)?;
    let mut reattach = Vec::new();
    for n in &d.networks {
        let replace = p
            .actions
            .iter()
            .any(|a| matches!(a, Action::ReplaceNetwork { network, .. } if *network == n.name));
        if replace {
            reattach.extend(c.replace_network(n).map_err(failed)?);
        } else {
            c.ensure_network(n).map_err(failed)?;
        }
    }
    for a in &p.actions {
        if let Action::GrowVolume {
            vm,
            volume,
            dev,
            to_bytes,
            ..
        } = a
        {
            c.grow_volume(&d.lab, volume, *to_bytes, Some((vm, dev)))
                .map_err(failed)?;
        }
    }
    Ok(reattach)
}

/// Volumes, seed (for a new VM), definition and start of one VM.
fn apply_vm(
    c: &Connection,
    lab: &Lab,
    d: &Desired,
    p: &Plan,
    vm: &DesiredVm,
    state: &Path,
    login_pub: &str,
) -> Result<(), ProvisionError> {
    for v in &vm.volumes {
        c.ensure_volume(v).map_err(failed)?;
    }
    if p.vm_is_new(&vm.name) {
        let host_key = HostKey::generate(&d.lab.object_name(&vm.name)).map_err(failed)?;
        let seed = seed_files(
            &SeedSpec {
                instance_id: format!("{}-{}", d.lab.object_name(&vm.name), unique_suffix()),
                hostname: vm.name.clone(),
                fqdn: Some(desired::fqdn(lab, &vm.name)),
                user: SeedUser {
                    name: lab.image.user().to_string(),
                    authorized_keys: vec![login_pub.to_string()],
                    sudo: true,
                    shell: None,
                },
                nics: vm.seed_nics.clone(),
                extra_user_data: BTreeMap::new(),
            },
            &host_key,
        )
        .map_err(failed)?;
        let image = seed.to_vfat().map_err(failed)?;
        // pin the key BEFORE boot: connections to the VM are strict from the start
        let public = host_key.public_key_openssh();
        let path = host_key_path(state, &vm.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| failed(format!("{}: {e}", parent.display())))?;
        }
        std::fs::write(&path, format!("{public}\n"))
            .map_err(|e| failed(format!("{}: {e}", path.display())))?;
        let key = parse_public_key(&public).map_err(failed)?;
        pin_host_key(&state.join("known_hosts"), &vm.name, 22, &key)
            .map_err(|e| failed(format!("known_hosts: {e}")))?;
        c.put_seed(&d.lab, &vm.seed_volume, image.as_bytes())
            .map_err(failed)?;
    }
    let mut spec = vm.domain.clone();
    spec.lease = p.lease.clone();
    let set_lease = p
        .actions
        .iter()
        .any(|a| matches!(a, Action::SetLease { vm: v, .. } if *v == vm.name));
    if !p.vm_is_new(&vm.name) && (set_lease || p.vm_needs_definition(&vm.name)) {
        // the seed stays as it is: so does what the metadata says it holds,
        // and its format (raw when an older kubelab made it)
        spec.seed_digest = c
            .domain_xml(&d.lab, &vm.name)
            .ok()
            .and_then(|x| crate::virthost::shape::domain_shape(&x))
            .and_then(|s| s.seed_digest);
        if c.volume_details(&d.lab, &vm.seed_volume)
            .map_err(failed)?
            .and_then(|v| v.format)
            .as_deref()
            == Some("raw")
        {
            spec.seed_format = VolumeFormat::Raw;
        }
    }
    if p.vm_needs_definition(&vm.name) {
        c.define_domain(&spec).map_err(failed)?;
    } else if set_lease {
        c.set_lab_metadata(&spec).map_err(failed)?;
    }
    c.start_domain(&d.lab, &vm.name).map_err(failed)?;
    Ok(())
}

/// A suffix that makes each new VM's cloud-init instance id unique.
fn unique_suffix() -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// How often `up` reads a booting VM's console log for a kernel panic or a
/// boot loop: often enough to restart a panicked VM within seconds, seldom
/// enough that the reads (a libvirt stream, through SSH for a remote
/// virthost) cost next to nothing next to the VMs' boot.
const CONSOLE_EVERY: Duration = Duration::from_secs(2);

/// How often `up` asks libvirt for a VM's addresses.
const ADDRESSES_EVERY: Duration = Duration::from_millis(500);

/// The most of a console log read at one look: a guest that writes faster
/// is caught up with over several looks, the work of each stays bounded.
const CONSOLE_READ_MAX: u64 = 1 << 20;

/// A VM's addresses once it has them, and whether `up` had to restart it.
struct Addressed {
    addresses: Vec<IpAddr>,
    restarted: Option<VmRestart>,
}

/// A VM's serial console log, followed while `up` waits for the VM.
struct ConsoleFollower {
    /// How much of the log has been read.
    offset: u64,
    watch: ConsoleWatch,
}

impl ConsoleFollower {
    /// From the log's start: for a VM just started, whose log (started anew
    /// at every start of the domain) holds this boot only.
    fn from_start() -> Self {
        ConsoleFollower {
            offset: 0,
            watch: ConsoleWatch::new(),
        }
    }

    /// From the log's end as it is now: for a VM that was running before
    /// this run, whose earlier boots (a reboot, a panic it rebooted from)
    /// say nothing about this one.
    fn from_now(c: &Connection, lab: &LabName, vm: &str) -> Self {
        let offset = c
            .console_log_read(lab, vm, u64::MAX, 0)
            .map_or(0, |r| r.size);
        ConsoleFollower {
            offset,
            watch: ConsoleWatch::new(),
        }
    }

    /// Read what the guest logged since the last look; what the followed
    /// log shows so far. A log that cannot be read now is no news: the
    /// timeout still bounds the wait.
    fn look(&mut self, c: &Connection, lab: &LabName, vm: &str) -> Option<BootTrouble> {
        let Ok(read) = c.console_log_read(lab, vm, self.offset, CONSOLE_READ_MAX) else {
            return self.watch.trouble();
        };
        if read.size < self.offset {
            // shorter than what was read: the domain was started again
            // (by someone else) and its log with it; follow the new one
            *self = ConsoleFollower::from_start();
            return self.look(c, lab, vm);
        }
        self.offset += read.bytes.len() as u64;
        self.watch.feed(&read.bytes);
        self.watch.trouble()
    }
}

/// Wait (until `deadline`) for the first NIC's addresses: IPv4 and IPv6 from
/// leases or the guest agent where the lab does not give them statically.
/// Returns the VM's addresses inside the lab's subnets, static ones included.
///
/// Meanwhile the VM's console log is watched ([`CONSOLE_EVERY`]): a kernel
/// panic or a boot loop restarts the VM once (reported through
/// `progress`); the same again fails the VM at once, not at the deadline.
/// `started_now`: this run started the VM (its whole log is this boot's).
fn wait_addresses(
    c: &Connection,
    lab: &Lab,
    name: &LabName,
    vm: &DesiredVm,
    deadline: Instant,
    started_now: bool,
    progress: &Steps,
) -> Result<Addressed, ProvisionError> {
    let Some(lvm) = lab.vm(&vm.name) else {
        return Err(failed(format!("vm {} vanished from the lab", vm.name)));
    };
    let subnets: Vec<ipnet::IpNet> = lab
        .networks
        .iter()
        .flat_map(|n| {
            n.ipv4
                .map(ipnet::IpNet::V4)
                .into_iter()
                .chain(n.ipv6.map(ipnet::IpNet::V6))
        })
        .collect();
    let statics: Vec<IpAddr> = lvm
        .nics
        .iter()
        .flat_map(|n| {
            n.ipv4
                .map(IpAddr::V4)
                .into_iter()
                .chain(n.ipv6.map(IpAddr::V6))
        })
        .collect();
    let first = lvm.nics.first();
    let net = first.and_then(|n| lab.network(&n.network));
    let bridged = net.is_some_and(|n| matches!(n.kind, NetworkKind::Bridged { .. }));
    let need4 =
        first.is_some_and(|n| n.ipv4.is_none()) && net.is_some_and(|n| n.ipv4.is_some() || bridged);
    let need6 = first.is_some_and(|n| n.ipv6.is_none())
        && net.is_some_and(|n| n.ipv6.is_some() && !bridged);
    let mac = first
        .map(|n| n.mac.to_ascii_lowercase())
        .unwrap_or_default();
    let inside =
        |ip: &IpAddr| subnets.is_empty() || subnets.iter().any(|s| s.contains(ip)) || bridged;
    let want = |nics: &[NicAddresses]| {
        let Some(n) = nics.iter().find(|n| n.mac == mac) else {
            return !need4 && !need6;
        };
        let has4 = n.addresses.iter().any(|(ip, _)| ip.is_ipv4() && inside(ip));
        let has6 = n.addresses.iter().any(|(ip, _)| ip.is_ipv6() && inside(ip));
        (!need4 || has4) && (!need6 || has6)
    };
    let lab_file = lab.file.display();
    let waited = Instant::now();
    let mut console = if started_now {
        ConsoleFollower::from_start()
    } else {
        ConsoleFollower::from_now(c, name, &vm.name)
    };
    let mut next_look = Instant::now();
    let mut restarted: Option<VmRestart> = None;
    let found = loop {
        let nics = match c.domain_addresses_any(name, &vm.name) {
            Ok(nics) => nics,
            Err(e) => break Err(e.to_string()),
        };
        if want(&nics) {
            break Ok(nics);
        }
        let now = Instant::now();
        if now >= next_look {
            next_look = now + CONSOLE_EVERY;
            if let Some(trouble) = console.look(c, name, &vm.name) {
                let (reason, detail) = (trouble.reason(), trouble.detail());
                if let Some(first) = &restarted {
                    let tail = console_tail(c, name, &vm.name);
                    return Err(failed(format!(
                        "{}: {reason} at boot again after a restart (restarted once after a {}; not waiting for the timeout): {detail}\nserial console (tail):\n{tail}\nthe lab is left in place: `kubelab down {lab_file}` removes it",
                        vm.name, first.reason
                    )));
                }
                c.restart_domain(name, &vm.name).map_err(|e| {
                    failed(format!(
                        "{}: {reason} at boot ({detail}); restarting it failed: {e}\nthe lab is left in place: `kubelab down {lab_file}` removes it",
                        vm.name
                    ))
                })?;
                progress.vm_restarted(&vm.name, reason, &detail);
                // the restart started the log anew (append="off")
                console = ConsoleFollower::from_start();
                restarted = Some(VmRestart {
                    vm: vm.name.clone(),
                    reason: reason.to_string(),
                    detail,
                });
            }
        }
        if now >= deadline {
            break Err(format!(
                "wait for addresses of {}: not there after {}s; last seen: {nics:?}",
                name.object_name(&vm.name),
                waited.elapsed().as_secs()
            ));
        }
        std::thread::sleep(ADDRESSES_EVERY);
    };
    match found {
        Ok(nics) => {
            // the first NIC's addresses first: the first one is how kubelab
            // reaches the VM
            let first_statics = first
                .map(|n| {
                    n.ipv4
                        .map(IpAddr::V4)
                        .into_iter()
                        .chain(n.ipv6.map(IpAddr::V6))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let found = |first: bool| -> Vec<IpAddr> {
                nics.iter()
                    .filter(|n| (n.mac == mac) == first)
                    .flat_map(|n| n.addresses.iter().map(|(ip, _)| *ip))
                    .collect()
            };
            let mut out = Vec::new();
            for ip in first_statics
                .into_iter()
                .chain(found(true))
                .chain(statics)
                .chain(found(false))
            {
                if inside(&ip) && !out.contains(&ip) {
                    out.push(ip);
                }
            }
            Ok(Addressed {
                addresses: out,
                restarted,
            })
        }
        Err(e) => {
            let state = c
                .domain_state(name, &vm.name)
                .map(|s| format!("{s:?}"))
                .unwrap_or_else(|e| e.to_string());
            let after = restarted
                .map(|r| format!("; restarted once after a {}", r.reason))
                .unwrap_or_default();
            let tail = console_tail(c, name, &vm.name);
            Err(failed(format!(
                "{}: no addresses in time (state {state}{after}): {e}\nserial console (tail):\n{tail}\nthe lab is left in place: `kubelab down {lab_file}` removes it",
                vm.name,
            )))
        }
    }
}

fn record(
    lab: &Lab,
    vm: &DesiredVm,
    addrs: &[IpAddr],
    state: &Path,
) -> Result<VmRecord, ProvisionError> {
    let path = host_key_path(state, &vm.name);
    let host_key = std::fs::read_to_string(&path)
        .map_err(|e| {
            failed(format!(
                "{}: the VM's host key is not in the state directory ({e}); kubelab cannot check the VM's identity: `kubelab down` then `up` recreates it",
                path.display()
            ))
        })?
        .trim()
        .to_string();
    let lvm = lab.vm(&vm.name);
    let ipv4: Vec<_> = addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v) => Some(*v),
            _ => None,
        })
        .collect();
    let ipv6: Vec<_> = addrs
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
        name: vm.name.clone(),
        roles: lvm.map(|v| v.roles.clone()).unwrap_or_default(),
        address,
        ipv4,
        ipv6,
        macs: vm.domain.nics.iter().map(|n| n.mac.clone()).collect(),
        disks: vm.disks.clone(),
        host_key,
    })
}

/// The state directory's inventory files.
pub const STATE_FILES: [&str; 4] = [
    "inventory.yaml",
    "inventory.ini",
    "ssh_config",
    "known_hosts",
];

fn write_state(lab: &Lab, inv: &Inventory, state: &Path) -> Result<(), ProvisionError> {
    let yaml = serde_saphyr::to_string(inv).map_err(failed)?;
    for (file, text) in [
        ("inventory.yaml", yaml),
        ("inventory.ini", crate::state::ansible_ini(lab, inv, state)),
        ("ssh_config", crate::state::ssh_config(lab, inv, state)),
        ("known_hosts", crate::state::known_hosts(inv)),
    ] {
        let path = state.join(file);
        let tmp = state.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| failed(format!("{}: {e}", path.display())))?;
    }
    Ok(())
}

/// Read `<state>/inventory.yaml`.
pub fn read_inventory(lab: &Lab) -> Result<Option<Inventory>, ProvisionError> {
    let path = crate::state::state_dir(&lab.name).join("inventory.yaml");
    match std::fs::read_to_string(&path) {
        Ok(t) => serde_saphyr::from_str(&t)
            .map(Some)
            .map_err(|e| failed(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(failed(format!("{}: {e}", path.display()))),
    }
}

/// The SSH target of a VM: the lab's login key, the pinned host keys, strict.
pub fn vm_target(inv: &Inventory, vm: &VmRecord, state: &Path) -> SshTarget {
    let mut t = SshTarget::new(&vm.name, &vm.address, &inv.user, state.join("known_hosts"));
    t.identity_files = vec![login_key_path(state)];
    t.connect_timeout = Duration::from_secs(10);
    t.connect_attempts = 1;
    t
}

/// Connect to a VM of an `up` lab.
pub async fn connect_vm(lab: &Lab, vm: &str) -> Result<SshTransport, ProvisionError> {
    let inv = read_inventory(lab)?.ok_or_else(|| {
        failed(format!(
            "lab {} is not up (no inventory in the state directory {}): run `kubelab up {}` first",
            lab.name,
            crate::state::state_dir(&lab.name).display(),
            lab.file.display()
        ))
    })?;
    let rec = inv
        .vms
        .iter()
        .find(|v| v.name == vm)
        .ok_or_else(|| failed(format!("lab {} has no VM {vm:?}", lab.name)))?;
    let state = crate::state::state_dir(&lab.name);
    let access = VirthostAccess::connect(lab).await.map_err(from_transport)?;
    let mut target = vm_target(&inv, rec, &state);
    target.connect_attempts = 3;
    access.vm(target).await.map_err(from_transport)
}

/// What `down` removed.
#[derive(Clone, Debug, Serialize)]
pub struct DownReport {
    pub lab: String,
    pub domains: Vec<String>,
    pub networks: Vec<String>,
    pub volumes: Vec<String>,
    pub pool: Option<String>,
    /// Nothing of the lab was on the virthost.
    pub was_absent: bool,
    pub state_files_removed: Vec<String>,
    /// What `release.sh` gave back on the virthost (nothing while other
    /// labs or VMs use it).
    pub virthost_released: Vec<String>,
}

/// `kubelab down`: exactly the lab's objects, then the state's inventory files.
pub async fn down(lab: &Lab) -> Result<DownReport, ProvisionError> {
    let session = open_session(lab, true).await?;
    let r = down_locked(lab, &session.access).await;
    session.close().await;
    r
}

async fn down_locked(lab: &Lab, access: &VirthostAccess) -> Result<DownReport, ProvisionError> {
    let name = lab_name(lab)?;
    let c = match open_libvirt(access).await {
        Ok(c) => c,
        // a libvirtd that a former `down` stopped (release.sh): start it
        // again (nothing is installed) to see what of the lab is defined
        Err(e) => match prepare::prepare(access, lab, false).await {
            Ok(_) => open_libvirt(access).await?,
            Err(_) => return Err(e),
        },
    };
    let removed = remove_lab(
        access,
        c,
        &name,
        &lab.virthost.storage_dir,
        &desired::lock_path(lab),
    )
    .await?;
    Ok(DownReport {
        state_files_removed: remove_state_files(&lab.name),
        ..removed
    })
}

/// Remove a lab's inventory files from its state directory (its run logs,
/// forensics and login key stay); what was removed.
fn remove_state_files(lab: &str) -> Vec<String> {
    let state = crate::state::state_dir(lab);
    let mut removed = Vec::new();
    for f in STATE_FILES {
        if std::fs::remove_file(state.join(f)).is_ok() {
            removed.push(f.to_string());
        }
    }
    if std::fs::remove_dir_all(state.join("host_keys")).is_ok() {
        removed.push("host_keys/".into());
    }
    removed
}

/// Remove a lab from a virthost by its name alone (what `down` and `reap`
/// share): its libvirt objects by ownership, its bridges by their alias,
/// then `release.sh` gives back what kubelab changed on the virthost when
/// no other lab is left. The caller holds the lab's lock (`own_lock`).
pub async fn remove_lab(
    access: &VirthostAccess,
    c: Libvirt,
    name: &LabName,
    storage_dir: &str,
    own_lock: &Path,
) -> Result<DownReport, ProvisionError> {
    let (was_absent, report) = blocking(|| -> Result<_, ProvisionError> {
        let objects = c.lab_objects(name).map_err(failed)?;
        let was_absent = objects.is_empty();
        let report = if was_absent {
            None
        } else {
            Some(c.teardown(name).map_err(failed)?)
        };
        Ok((was_absent, report))
    })?;
    drop(c);
    let virthost_released = if report.as_ref().is_some_and(|r| !r.failures.is_empty()) {
        Vec::new()
    } else {
        let mut released = bridges::remove_all(access, name.as_str())
            .await
            .map_err(failed)?;
        released.extend(
            prepare::release(access, storage_dir, own_lock)
                .await
                .map_err(failed)?,
        );
        released
    };
    if let Some(r) = &report
        && !r.failures.is_empty()
    {
        return Err(failed(format!(
            "teardown of lab {name} incomplete (run down again):\n  {}",
            r.failures.join("\n  ")
        )));
    }
    let removed = report.map(|r| r.removed).unwrap_or_default();
    Ok(DownReport {
        lab: name.to_string(),
        domains: removed.domains,
        networks: removed.networks,
        volumes: removed.volumes,
        pool: removed.pool,
        was_absent,
        state_files_removed: Vec::new(),
        virthost_released,
    })
}

/// `kubelab ls`: every kubelab lab on a virthost, from libvirt alone.
pub async fn list_labs(virthost: &Virthost) -> Result<Vec<LabListing>, ProvisionError> {
    let access = VirthostAccess::connect_to(virthost, "virthost")
        .await
        .map_err(from_transport)?;
    let c = open_libvirt(&access).await?;
    let labs = blocking(|| c.labs()).map_err(failed);
    drop(c);
    access.close().await;
    labs
}

/// What `reap` removes besides expired labs.
#[derive(Clone, Debug, Default)]
pub struct ReapOptions {
    /// Only say what would be removed.
    pub dry_run: bool,
    /// Also labs created longer ago than this (seconds), expired or not.
    pub older_than: Option<u64>,
}

/// What `reap` did with one lab.
#[derive(Clone, Debug, Serialize)]
pub struct Reaped {
    pub lab: String,
    /// `removed`, `would-remove`, `locked` (a run holds its lock), `failed`
    /// or `kept` (not due).
    pub outcome: &'static str,
    pub why: String,
    pub lease: Option<Lease>,
    pub removed: Option<DownReport>,
}

/// `kubelab reap`: remove the labs whose lease expired (or that are older
/// than asked) exactly as `down` would, from libvirt's metadata alone (no
/// lab file, no state directory needed); never a lab whose lock a running
/// `up` or `down` holds.
pub async fn reap(
    virthost: &Virthost,
    options: &ReapOptions,
) -> Result<Vec<Reaped>, ProvisionError> {
    let access = VirthostAccess::connect_to(virthost, "virthost")
        .await
        .map_err(from_transport)?;
    let r = reap_on(&access, virthost, options).await;
    access.close().await;
    r
}

async fn reap_on(
    access: &VirthostAccess,
    virthost: &Virthost,
    options: &ReapOptions,
) -> Result<Vec<Reaped>, ProvisionError> {
    let listing = {
        let c = open_libvirt(access).await?;
        blocking(|| c.labs()).map_err(failed)?
    };
    let now = crate::state::now_secs();
    let mut out = Vec::new();
    for l in listing {
        let due = reap_reason(l.lease.as_ref(), now, options.older_than);
        let mut reaped = Reaped {
            lab: l.lab.clone(),
            outcome: "kept",
            why: String::new(),
            lease: l.lease.clone(),
            removed: None,
        };
        let (Ok(why), Ok(name)) = (due.clone(), LabName::new(&l.lab)) else {
            reaped.why = due.err().unwrap_or_default();
            out.push(reaped);
            continue;
        };
        reaped.why = why;
        // the lock lives beside the lab's pool: <storage_dir>/<lab>.lock
        let storage_dir = l
            .pool_path
            .as_deref()
            .and_then(|p| Path::new(p).parent())
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| virthost.storage_dir.clone());
        let lock_path = Path::new(&storage_dir).join(format!("{}.lock", l.lab));
        let lock = match LabLock::acquire(access, &lock_path).await {
            Ok(lock) => lock,
            Err(e) => {
                reaped.outcome = "locked";
                reaped.why = format!("{}; not removed: {e}", reaped.why);
                out.push(reaped);
                continue;
            }
        };
        // an `up` that ended between the listing and the lock may have
        // renewed the lease: look again, now that nothing can change it
        let again = match open_libvirt(access).await {
            Ok(c) => blocking(|| c.labs()).map_err(failed),
            Err(e) => Err(e),
        };
        let recheck = match &again {
            Ok(labs) => match labs.iter().find(|x| x.lab == l.lab) {
                None => Err(("kept", "gone meanwhile".to_string())),
                Some(x) => reap_reason(
                    x.lease.as_ref(),
                    crate::state::now_secs(),
                    options.older_than,
                )
                .map(|_| ())
                .map_err(|why| ("kept", format!("not due any more: {why}"))),
            },
            Err(e) => Err((
                "failed",
                format!("{}; cannot look at it again: {e}", reaped.why),
            )),
        };
        if let Err((outcome, why)) = recheck {
            reaped.outcome = outcome;
            reaped.why = why;
            lock.release(access).await;
            out.push(reaped);
            continue;
        }
        if options.dry_run {
            reaped.outcome = "would-remove";
        } else {
            let removed = match open_libvirt(access).await {
                Ok(c) => remove_lab(access, c, &name, &storage_dir, &lock_path).await,
                Err(e) => Err(e),
            };
            match removed {
                Ok(mut r) => {
                    r.state_files_removed = state_files_of(&l.lab, access, virthost);
                    reaped.outcome = "removed";
                    reaped.removed = Some(r);
                }
                Err(e) => {
                    reaped.outcome = "failed";
                    reaped.why = format!("{}; {e}", reaped.why);
                }
            }
        }
        lock.release(access).await;
        out.push(reaped);
    }
    Ok(out)
}

/// Why a lab is due for `reap` (`Ok`), or why it is kept (`Err`).
fn reap_reason(lease: Option<&Lease>, now: u64, older_than: Option<u64>) -> Result<String, String> {
    use crate::lab::duration::format_duration;
    let Some(l) = lease else {
        return Err("no lease in its metadata (made before kubelab recorded leases): `down` it by its lab file".into());
    };
    if let Some(e) = l.expires.filter(|e| *e <= now) {
        return Ok(format!(
            "expired {} ago ({}), owner {}",
            format_duration(now - e),
            crate::state::utc_stamp_secs(e),
            l.owner
        ));
    }
    if let Some(age) = older_than.filter(|o| l.created.saturating_add(*o) <= now) {
        return Ok(format!(
            "created {} ago, older than {}, owner {}",
            format_duration(now.saturating_sub(l.created)),
            format_duration(age),
            l.owner
        ));
    }
    Err(match l.expires {
        Some(e) => format!("expires in {}", format_duration(e - now)),
        None => "no expiry".into(),
    })
}

/// The inventory files of a reaped lab in this machine's state directory,
/// when they are of this virthost's lab (not another lab of the same name
/// elsewhere): removed as `down` would.
fn state_files_of(lab: &str, access: &VirthostAccess, virthost: &Virthost) -> Vec<String> {
    let path = crate::state::state_dir(lab).join("inventory.yaml");
    let Some(inv) = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_saphyr::from_str::<Inventory>(&t).ok())
    else {
        return Vec::new();
    };
    let this = match (&virthost.connection, access.is_local()) {
        (crate::lab::model::Connection::Ssh(h), false) => {
            format!("{}@{}:{}", h.user, h.address, h.port)
        }
        _ => "local".to_string(),
    };
    if inv.virthost == this {
        remove_state_files(lab)
    } else {
        Vec::new()
    }
}

/// `kubelab status`: every VM of the lab, from libvirt and the state dir.
pub async fn status(lab: &Lab) -> Result<Vec<VmStatus>, ProvisionError> {
    let access = VirthostAccess::connect(lab).await.map_err(from_transport)?;
    let c = open_libvirt(&access).await?;
    let r = blocking(|| status_of(lab, &c));
    drop(c);
    if let VirthostAccess::Remote(t) = &access {
        t.disconnect().await;
    }
    r
}

fn status_of(lab: &Lab, c: &Connection) -> Result<Vec<VmStatus>, ProvisionError> {
    let name = lab_name(lab)?;
    let objects = c.lab_objects(&name).map_err(failed)?;
    let inv = read_inventory(lab).ok().flatten();
    let mut out = Vec::new();
    for vm in &lab.vms {
        let exists = objects.domains.contains(&name.object_name(&vm.name));
        let state = if exists {
            c.domain_state(&name, &vm.name).map_err(failed)?
        } else {
            VmState::Unknown
        };
        let mut addresses: Vec<IpAddr> = Vec::new();
        if state == VmState::Running
            && let Ok(nics) = c.domain_addresses_any(&name, &vm.name)
        {
            for n in nics {
                addresses.extend(n.addresses.iter().map(|(ip, _)| *ip));
            }
        }
        if let Some(rec) = inv
            .as_ref()
            .and_then(|i| i.vms.iter().find(|r| r.name == vm.name))
        {
            for ip in rec
                .ipv4
                .iter()
                .map(|a| IpAddr::V4(*a))
                .chain(rec.ipv6.iter().map(|a| IpAddr::V6(*a)))
            {
                if !addresses.contains(&ip) {
                    addresses.push(ip);
                }
            }
        }
        let disks = std::iter::once("vda".to_string())
            .chain(vm.spare_disks.iter().map(|d| d.dev.clone()))
            .collect();
        out.push(VmStatus {
            name: vm.name.clone(),
            state: if exists {
                format!("{state:?}").to_lowercase()
            } else {
                "absent".into()
            },
            addresses,
            disks,
        });
    }
    Ok(out)
}

/// `kubelab doctor`.
pub async fn doctor(lab: &Lab) -> Result<Vec<doctor::Finding>, ProvisionError> {
    let access = VirthostAccess::connect(lab).await.map_err(from_transport)?;
    let (c, err) = match open_libvirt(&access).await {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let findings = doctor::check(&access, lab, c.as_deref(), err).await;
    drop(c);
    if let VirthostAccess::Remote(t) = &access {
        t.disconnect().await;
    }
    Ok(findings)
}

/// The domain type as a word.
pub fn domain_type_word(d: DomainType) -> &'static str {
    match d {
        DomainType::Kvm => "kvm",
        DomainType::Qemu => "qemu",
    }
}

/// A VM table: name, state, addresses, disks.
pub fn table(vms: &[VmStatus]) -> String {
    let mut rows = vec![[
        "VM".to_string(),
        "STATE".into(),
        "ADDRESSES".into(),
        "DISKS".into(),
    ]];
    for v in vms {
        rows.push([
            v.name.clone(),
            v.state.clone(),
            v.addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(","),
            v.disks.join(","),
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let line = (0..4)
                .map(|i| format!("{:w$}", r[i], w = widths[i]))
                .collect::<Vec<_>>()
                .join("  ");
            format!("{}\n", line.trim_end())
        })
        .collect()
}

/// Run a command on a VM: (exit code, stdout, stderr).
pub async fn run_on_vm(
    lab: &Lab,
    vm: &str,
    command: &[String],
) -> Result<crate::transport::Output, ProvisionError> {
    let t = connect_vm(lab, vm).await?;
    let out = t
        .exec(Exec::new(Command::script(command.join(" "))))
        .await
        .map_err(from_transport);
    t.disconnect().await;
    out
}
