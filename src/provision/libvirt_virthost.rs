//! The libvirt provider: a lab's VMs as libvirt domains, volumes in a pool
//! and networks on one virthost, reached over the virthost's SSH connection
//! (or on this machine). What it does in each of `up`'s phases:
//!
//! - prepare: `prepare.sh` (packages, libvirtd), doctor's blocking checks,
//!   the base image (built or downloaded), the domain type;
//! - plan: the desired objects ([`desired`]) against libvirt ([`plan`]) and
//!   the host bridges ([`bridges`]);
//! - apply: removed objects, pool, networks, grown disks, bridges;
//! - start: per VM volumes, seed (its SSH host key pinned before boot),
//!   definition, start — one thread per VM, as libvirt calls block;
//! - addresses: leases and the guest agent, with the console watched for a
//!   kernel panic or a boot loop (the VM restarted once).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::access::{LabLock, Libvirt, VirthostAccess, blocking};
use super::desired::{self, Desired, DesiredVm};
use super::lease::LeaseRequest;
use super::plan::{self, Action, Plan};
use super::prepare::{self, BaseImage};
use super::provider::{Addressed, Described, OwnedObject, PerVm, Provider};
use super::{
    DownReport, ProvisionError, VmRestart, VmStatus, bridges, doctor, domain_type_word, failed,
    for_each_vm, from_transport, host_key_path, read_inventory, remove_lab, step, step_blocking,
    tunnels,
};
use crate::lab::Lab;
use crate::lab::model::NetworkKind;
use crate::lab::placement::Capacity;
use crate::output::Steps;
use crate::transport::Command;
use crate::transport::ssh::known_hosts::{parse_public_key, pin_host_key};
use crate::virthost::console::{BootTrouble, ConsoleWatch};
use crate::virthost::libvirt::{Connection, NicAddresses, VmState};
use crate::virthost::seed::{HostKey, SeedSpec, SeedUser, seed_files};
use crate::virthost::spec::{DomainType, LabName, VolumeFormat};

/// One libvirt virthost holding (part of) a lab, for the length of a run:
/// one connection, the lab lock when the run changes things.
pub struct LibvirtVirthost {
    /// The lab as this virthost holds it.
    lab: Lab,
    /// The host name of its steps.
    name: String,
    lab_name: LabName,
    state: PathBuf,
    access: VirthostAccess,
    lock: Option<LabLock>,
    libvirt: Option<Libvirt>,
    base: Option<BaseImage>,
    domain_type: Option<(DomainType, String)>,
    desired: Option<Desired>,
}

impl LibvirtVirthost {
    /// Connect to the lab's virthost; with `lock`, take the lab lock there
    /// (a run that changes things).
    pub async fn connect(lab: &Lab, name: &str, lock: bool) -> Result<Self, ProvisionError> {
        let lab_name = LabName::new(&lab.name).map_err(failed)?;
        let access = VirthostAccess::connect(lab).await.map_err(from_transport)?;
        let lock = if lock {
            match LabLock::acquire(&access, &desired::lock_path(lab)).await {
                Ok(l) => Some(l),
                Err(e) => {
                    access.close().await;
                    return Err(failed(e));
                }
            }
        } else {
            None
        };
        Ok(LibvirtVirthost {
            lab: lab.clone(),
            name: name.to_string(),
            lab_name,
            state: crate::state::state_dir(&lab.name),
            access,
            lock,
            libvirt: None,
            base: None,
            domain_type: None,
            desired: None,
        })
    }

    /// libvirt there, opened on first use. `down` of a virthost whose
    /// libvirtd is stopped starts it first (prepare without installing).
    async fn libvirt(&mut self, start_if_down: bool) -> Result<&Connection, ProvisionError> {
        if self.libvirt.is_none() {
            let c = match super::open_libvirt(&self.access).await {
                Ok(c) => c,
                Err(e) if start_if_down => {
                    if prepare::prepare(&self.access, &self.lab, false)
                        .await
                        .is_err()
                    {
                        return Err(e);
                    }
                    super::open_libvirt(&self.access).await?
                }
                Err(e) => return Err(e),
            };
            self.libvirt = Some(c);
        }
        Ok(self.connection())
    }

    /// The open connection (after [`Self::libvirt`]).
    fn connection(&self) -> &Connection {
        self.libvirt
            .as_ref()
            .map(|l| l.connection())
            .expect("libvirt is opened before it is used")
    }

    fn desired(&self) -> Result<&Desired, ProvisionError> {
        self.desired
            .as_ref()
            .ok_or_else(|| failed("the libvirt virthost was asked to apply before it planned"))
    }
}

#[async_trait::async_trait(?Send)]
impl Provider for LibvirtVirthost {
    fn name(&self) -> &str {
        &self.name
    }

    async fn capacity(&self) -> Result<Capacity, ProvisionError> {
        // what the kernel says it can give without swapping, and its CPUs
        let out = self
            .access
            .run(
                Command::script("awk '/^MemAvailable:/ {print $2}' /proc/meminfo; nproc"),
                Duration::from_secs(30),
            )
            .await
            .map_err(from_transport)?;
        let text = out.stdout_str();
        let mut lines = text.lines().map(str::trim);
        let (Some(Ok(kib)), Some(Ok(cpus))) = (
            lines.next().map(str::parse::<u64>),
            lines.next().map(str::parse::<u32>),
        ) else {
            return Err(failed(format!(
                "virthost {}: cannot read its free memory and CPUs: {}",
                self.name,
                out.stderr_str().trim()
            )));
        };
        Ok(Capacity {
            memory_mib: kib / 1024,
            cpus,
        })
    }

    fn hold(&mut self, lab: Lab) {
        self.lab = lab;
    }

    async fn prepare(&mut self, progress: &Steps) -> Result<usize, ProvisionError> {
        let (access, lab, vh) = (&self.access, &self.lab, self.name.as_str());
        let changed = step(
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
                let c = super::open_libvirt(access).await?;
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
        let dt = step(
            progress,
            vh,
            "domain type",
            async { prepare::domain_type(access, lab, &c).await.map_err(failed) },
            |(dt, why)| (false, format!("{} ({why})", domain_type_word(*dt))),
        )
        .await?;
        self.libvirt = Some(c);
        self.base = Some(base);
        self.domain_type = Some(dt);
        Ok(changed)
    }

    async fn plan(&mut self, lease: LeaseRequest) -> Result<Plan, ProvisionError> {
        self.libvirt(false).await?;
        if self.domain_type.is_none() {
            let dt = prepare::domain_type(&self.access, &self.lab, self.connection())
                .await
                .map_err(failed)?;
            self.domain_type = Some(dt);
        }
        let dt = self
            .domain_type
            .as_ref()
            .map(|(dt, _)| *dt)
            .unwrap_or(DomainType::Qemu);
        // before `prepare`, the base image is where building or fetching
        // would put it (`plan` builds and fetches nothing)
        let (base, format) = match &self.base {
            Some(b) => (Some(b.path.clone()), b.format),
            None => (prepare::expected_base_image(&self.lab), VolumeFormat::Qcow2),
        };
        let mut d = desired::desired(
            &self.lab,
            base.as_deref().unwrap_or(Path::new("/base-image")),
            format,
            dt,
        )
        .map_err(failed)?;
        d.lease = Some(lease);
        let c = self.connection();
        let mut p = blocking(|| plan::plan(c, &d, base.as_deref())).map_err(failed)?;
        let bridge_actions = bridges::plan(&self.access, &self.lab)
            .await
            .map_err(failed)?;
        p.actions.splice(0..0, bridge_actions);
        // the tunnels join networks: shown after them
        let tunnel_actions = tunnels::plan(&self.access, &self.lab)
            .await
            .map_err(failed)?;
        let after_networks = p
            .actions
            .iter()
            .rposition(|a| {
                matches!(
                    a,
                    Action::CreateNetwork { .. }
                        | Action::ReplaceNetwork { .. }
                        | Action::RemoveNetwork { .. }
                        | Action::CreatePool { .. }
                        | Action::CreateBridge { .. }
                        | Action::RemoveBridge { .. }
                )
            })
            .map_or(0, |i| i + 1);
        p.actions
            .splice(after_networks..after_networks, tunnel_actions);
        self.desired = Some(d);
        Ok(p)
    }

    async fn apply(&self, p: &Plan) -> Result<Vec<String>, ProvisionError> {
        let d = self.desired()?;
        let mut done = bridges::apply(&self.access, &self.lab.name, &p.actions)
            .await
            .map_err(failed)?;
        let c = self.connection();
        let reattach = blocking(|| apply_lab_objects(c, d, p, &self.state))?;
        if !reattach.is_empty() {
            reattach_nics(&self.access, &reattach).await?;
            done.push(format!(
                "{} running NIC(s) plugged back into their restarted network",
                reattach.len()
            ));
        }
        // after the networks: each tunnel joins its network's bridge
        let joined = tunnels::apply(&self.access, &self.lab, &p.actions, |network| {
            blocking(|| c.network_bridge(&self.lab_name, network)).map_err(|e| e.to_string())
        })
        .await
        .map_err(failed)?;
        done.extend(joined);
        Ok(done)
    }

    async fn start_vms(&self, p: &Plan, login_key: &str, progress: &Steps) -> PerVm<()> {
        let d = match self.desired() {
            Ok(d) => d,
            Err(e) => return vec![(self.name.clone(), Err(e))],
        };
        let c = self.connection();
        let results = blocking(|| {
            for_each_vm(&d.vms, |vm| {
                step_blocking(
                    progress,
                    &vm.name,
                    "volumes, seed, definition, start",
                    || apply_vm(c, &self.lab, d, p, vm, &self.state, login_key),
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
        d.vms.iter().map(|v| v.name.clone()).zip(results).collect()
    }

    async fn addresses(&self, p: &Plan, deadline: Instant, progress: &Steps) -> PerVm<Addressed> {
        let d = match self.desired() {
            Ok(d) => d,
            Err(e) => return vec![(self.name.clone(), Err(e))],
        };
        let c = self.connection();
        let (lab, name) = (&self.lab, &self.lab_name);
        let results = blocking(|| {
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
                    || wait_addresses(c, lab, name, vm, deadline, started_now, progress),
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
        d.vms.iter().map(|v| v.name.clone()).zip(results).collect()
    }

    async fn console(&self, vm: &str) -> String {
        match &self.libvirt {
            Some(c) => blocking(|| console_tail(c, &self.lab_name, vm)),
            None => "(libvirt was not reached)".into(),
        }
    }

    fn reach(&self) -> &VirthostAccess {
        &self.access
    }

    async fn status(&mut self) -> Result<Vec<VmStatus>, ProvisionError> {
        self.libvirt(false).await?;
        let c = self.connection();
        blocking(|| status_of(&self.lab, c))
    }

    async fn owned(&mut self) -> Result<Vec<OwnedObject>, ProvisionError> {
        // the connection `status` opened, when it ran first
        self.libvirt(false).await?;
        let c = self.connection();
        let objects = blocking(|| c.lab_objects(&self.lab_name)).map_err(failed)?;
        let bridges = bridges::existing(&self.access, &self.lab.name)
            .await
            .map_err(failed)?;
        let of = |kind: &str, names: &[String]| {
            names
                .iter()
                .map(|n| OwnedObject {
                    kind: kind.into(),
                    name: n.clone(),
                })
                .collect::<Vec<_>>()
        };
        let mut out = of("domain", &objects.domains);
        out.extend(of("network", &objects.networks));
        out.extend(of("volume", &objects.volumes));
        out.extend(of(
            "pool",
            &objects.pool.iter().cloned().collect::<Vec<_>>(),
        ));
        out.extend(bridges.into_iter().map(|(bridge, _)| OwnedObject {
            kind: "bridge".into(),
            name: bridge,
        }));
        let devices = tunnels::devices(&self.access, &self.lab.name)
            .await
            .map_err(failed)?;
        out.extend(devices.into_iter().map(|device| OwnedObject {
            kind: "tunnel".into(),
            name: device,
        }));
        Ok(out)
    }

    async fn teardown(&mut self) -> Result<DownReport, ProvisionError> {
        self.libvirt(true).await?;
        let c = self.libvirt.take().expect("opened above");
        remove_lab(
            &self.access,
            c,
            &self.lab_name,
            &self.lab.virthost.storage_dir,
            &desired::lock_path(&self.lab),
        )
        .await
    }

    fn describe(&self) -> Described {
        let (machine, machine_why) = self
            .domain_type
            .as_ref()
            .map(|(dt, why)| (domain_type_word(*dt).to_string(), why.clone()))
            .unwrap_or_default();
        Described {
            base_image: self
                .base
                .as_ref()
                .map(|b| b.path.display().to_string())
                .unwrap_or_default(),
            machine,
            machine_why,
        }
    }

    async fn close(mut self: Box<Self>) {
        // libvirt (and its tunnel) before the SSH connection it goes through
        drop(self.libvirt.take());
        if let Some(l) = self.lock.take() {
            l.release(&self.access).await;
        }
        let this = *self;
        this.access.close().await;
    }
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
                macs: vm.domain.nics.iter().map(|n| n.mac.clone()).collect(),
                disks: vm.disks.clone(),
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

fn status_of(lab: &Lab, c: &Connection) -> Result<Vec<VmStatus>, ProvisionError> {
    let name = super::lab_name(lab)?;
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
