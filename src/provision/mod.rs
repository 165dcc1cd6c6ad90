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
pub mod libvirt_virthost;
pub mod places;
pub mod plan;
pub mod prepare;
pub mod provider;
pub mod snapshot;
pub mod tunnels;
mod up;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use self::access::{LabLock, Libvirt, VirthostAccess, blocking, login_key_path};
use self::plan::Plan;
use self::provider::Provider;
pub(crate) use self::up::answers_ssh;
use crate::lab::Lab;
use crate::lab::model::Virthost;
use crate::output::{Status, Steps};
use crate::state::{Inventory, VmRecord};
use crate::transport::{Command, Exec, SshTarget, SshTransport, Transport, TransportError};
use crate::virthost::libvirt::LabListing;
use crate::virthost::seed::HostKey;
use crate::virthost::spec::{DomainType, LabName, Lease};

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
    /// The phases of `up` that ran, in order.
    pub phases: Vec<&'static str>,
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
    let mut places = places::connect_every(lab, false).await?;
    let r = plan_places(lab, &mut places).await;
    let described = places.first().map(|p| p.describe()).unwrap_or_default();
    places::close_all(places).await;
    Ok((
        r?,
        format!("{} ({})", described.machine, described.machine_why),
    ))
}

/// The plans of every place as one: a lab over several virthosts has each
/// action name its virthost, and first where each VM goes.
async fn plan_places(lab: &Lab, places: &mut [Box<dyn Provider>]) -> Result<Plan, ProvisionError> {
    let placed = places::place_all(lab, places).await?;
    let lease = lease::LeaseRequest::now(lab.ttl, None);
    let mut out = Plan::default();
    for p in places.iter_mut() {
        let name = p.name().to_string();
        let plan = p
            .plan(lease.clone())
            .await
            .map_err(|e| places::named(lab, &name, e))?;
        if lab.is_spread() {
            let vms: Vec<&str> = placed
                .vms
                .iter()
                .filter(|v| v.virthost.as_deref() == Some(name.as_str()))
                .map(|v| v.name.as_str())
                .collect();
            out.actions.push(plan::Action::OnVirthost {
                virthost: name.clone(),
                vms: vms.iter().map(|v| v.to_string()).collect(),
            });
        }
        out.lease = out.lease.or(plan.lease);
        out.actions.extend(plan.actions);
    }
    Ok(out)
}

pub use up::up;

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
    // every virthost that answers is cleaned; those that do not are named
    let (mut places, missing) = places::connect_all(lab, true).await;
    let mut report = DownReport {
        lab: lab.name.clone(),
        domains: Vec::new(),
        networks: Vec::new(),
        volumes: Vec::new(),
        pool: None,
        was_absent: true,
        state_files_removed: Vec::new(),
        virthost_released: Vec::new(),
    };
    let mut failures: Vec<String> = Vec::new();
    for p in places.iter_mut() {
        let name = p.name().to_string();
        match p.teardown().await {
            Ok(r) => {
                report.domains.extend(r.domains);
                report.networks.extend(r.networks);
                report.volumes.extend(r.volumes);
                report.pool = report.pool.or(r.pool);
                report.was_absent &= r.was_absent;
                report
                    .virthost_released
                    .extend(r.virthost_released.into_iter().map(|line| {
                        if lab.is_spread() {
                            format!("{name}: {line}")
                        } else {
                            line
                        }
                    }));
            }
            Err(e) => failures.push(places::named(lab, &name, e).to_string()),
        }
    }
    places::close_all(places).await;
    let unreachable = !missing.is_empty();
    failures.extend(
        missing
            .into_iter()
            .map(|(name, e)| places::named(lab, &name, e).to_string()),
    );
    if !failures.is_empty() {
        let message = if lab.is_spread() {
            format!(
                "down of lab {} incomplete; what was reached is removed, not:\n  {}",
                lab.name,
                failures.join("\n  ")
            )
        } else {
            failures.join("\n")
        };
        return Err(if unreachable {
            ProvisionError::Unreachable(message)
        } else {
            ProvisionError::Failed(message)
        });
    }
    report.state_files_removed = remove_state_files(&lab.name);
    Ok(report)
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
    let (was_absent, report, running) = blocking(|| -> Result<_, ProvisionError> {
        let objects = c.lab_objects(name).map_err(failed)?;
        let was_absent = objects.is_empty();
        let report = if was_absent {
            None
        } else {
            Some(c.teardown(name).map_err(failed)?)
        };
        // what release.sh would otherwise ask libvirt with three virsh runs
        let running = c.running().ok();
        Ok((was_absent, report, running))
    })?;
    drop(c);
    let virthost_released = if report.as_ref().is_some_and(|r| !r.failures.is_empty()) {
        Vec::new()
    } else {
        let mut released = bridges::remove_all(access, name.as_str())
            .await
            .map_err(failed)?;
        released.extend(
            tunnels::remove_all(access, name.as_str())
                .await
                .map_err(failed)?,
        );
        released.extend(
            prepare::release(access, storage_dir, own_lock, running)
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
pub async fn status(lab: &Lab) -> Result<LabStatus, ProvisionError> {
    let mut places = places::connect_every(lab, false).await?;
    // where a VM is may be decided at `up`: every place is asked about
    // every VM, and a VM is where it is not absent
    for (i, p) in places.iter_mut().enumerate() {
        let mut all = lab.on_virthost(i);
        all.vms = lab.vms.clone();
        p.hold(all);
    }
    let mut out = LabStatus::default();
    let mut result = Ok(());
    for p in places.iter_mut() {
        let found = match p.status().await {
            Ok(vms) => p.owned().await.map(|objects| (vms, objects)),
            Err(e) => Err(e),
        };
        match found {
            Ok((vms, objects)) => {
                for vm in vms {
                    match out.vms.iter_mut().find(|f| f.name == vm.name) {
                        Some(f) if f.state == "absent" => *f = vm,
                        Some(_) => {}
                        None => out.vms.push(vm),
                    }
                }
                out.objects
                    .extend(objects.into_iter().map(|o| PlacedObject {
                        virthost: p.name().to_string(),
                        kind: o.kind,
                        name: o.name,
                    }));
            }
            Err(e) => {
                result = Err(places::named(lab, p.name(), e));
                break;
            }
        }
    }
    places::close_all(places).await;
    result.map(|()| out)
}

/// `kubelab status`: the lab's VMs, and what of it exists on each virthost.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LabStatus {
    pub vms: Vec<VmStatus>,
    pub objects: Vec<PlacedObject>,
}

/// An object of the lab on one of its virthosts.
#[derive(Clone, Debug, Serialize)]
pub struct PlacedObject {
    pub virthost: String,
    pub kind: String,
    pub name: String,
}

/// Per virthost, how many objects of each kind the lab has there:
/// `rack-a: 2 domain, 1 network, 1 tunnel`.
pub fn objects_summary(objects: &[PlacedObject]) -> Vec<String> {
    let mut by_place: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for o in objects {
        *by_place
            .entry(o.virthost.as_str())
            .or_default()
            .entry(o.kind.as_str())
            .or_default() += 1;
    }
    by_place
        .into_iter()
        .map(|(place, kinds)| {
            format!(
                "{place}: {}",
                kinds
                    .iter()
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .collect()
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
    crate::columns::render(&rows)
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
