//! The seam between `up`/`down`/`plan`/`status` and the places a lab's VMs
//! live in. A [`Provider`] is one such place: a libvirt virthost today
//! ([`super::libvirt_virthost::LibvirtVirthost`]); a KubeVirt namespace or a
//! cloud project would be others (the README's "Providers" section sketches
//! a KubeVirt one). The commands drive every place of a lab through the same
//! methods, in the order of `up`'s phases ([`super::up`]), and never look
//! inside one.
//!
//! A provider sees the lab as its place holds it (the VMs placed there, the
//! networks they use): it never places VMs, picks addresses or decides
//! defaults — those come resolved in the validated [`crate::lab::Lab`].

use std::time::Instant;

use serde::Serialize;

use super::access::VirthostAccess;
use super::lease::LeaseRequest;
use super::plan::Plan;
use super::{DownReport, ProvisionError, VmRestart, VmStatus};
use crate::lab::Lab;
use crate::lab::placement::Capacity;
use crate::output::Steps;

/// A VM's addresses once it has them, and whether `up` had to restart it.
#[derive(Clone, Debug)]
pub struct Addressed {
    pub addresses: Vec<std::net::IpAddr>,
    pub restarted: Option<VmRestart>,
    /// Its NICs' MAC addresses and its disks' devices, for the inventory.
    pub macs: Vec<String>,
    pub disks: Vec<String>,
}

/// Per VM of a place (VM name first), in the lab's VM order.
pub type PerVm<T> = Vec<(String, Result<T, ProvisionError>)>;

/// An object a provider made for the lab and would remove with it: what
/// `down` removes, what `ls` counts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct OwnedObject {
    /// `domain`, `network`, `volume`, `pool`, `bridge`, `tunnel`, …
    pub kind: String,
    pub name: String,
}

/// One place where a lab's VMs live. Each method is one phase's work in
/// that place, reported as steps of host [`Provider::name`]; the methods
/// that handle VMs handle all of the place's VMs at once (the place decides
/// how parallel it can be) and answer per VM, in the lab's VM order.
#[async_trait::async_trait(?Send)]
pub trait Provider: Sync {
    /// The place's name in progress lines, errors and the plan.
    fn name(&self) -> &str;

    /// What the place may give the lab's VMs now (for placing the VMs the
    /// lab file does not put anywhere).
    async fn capacity(&self) -> Result<Capacity, ProvisionError>;

    /// From now on, the lab as this place holds it (the VMs placed here).
    fn hold(&mut self, lab: Lab);

    /// What the place needs before the lab's objects can exist: packages,
    /// daemons, readiness checks, the base image, the machine type. Returns
    /// how many things it changed.
    async fn prepare(&mut self, progress: &Steps) -> Result<usize, ProvisionError>;

    /// The lab's objects here compared with what the lab wants here;
    /// changes nothing. Works before [`Provider::prepare`] too (`kubelab
    /// plan`), with the base image where preparing would put it.
    async fn plan(&mut self, lease: LeaseRequest) -> Result<Plan, ProvisionError>;

    /// The plan's lab-wide part: objects the lab no longer has removed,
    /// storage, networks (and what joins them to other places). Returns
    /// what it did, one line each.
    async fn apply(&self, plan: &Plan) -> Result<Vec<String>, ProvisionError>;

    /// Every VM's own objects made and the VM started (one step per VM).
    async fn start_vms(&self, plan: &Plan, login_key: &str, progress: &Steps) -> PerVm<()>;

    /// Every VM's addresses, waited for until `deadline` (one step per VM);
    /// a VM in trouble at boot is restarted once.
    async fn addresses(&self, plan: &Plan, deadline: Instant, progress: &Steps)
    -> PerVm<Addressed>;

    /// The tail of a VM's console, or why there is none.
    async fn console(&self, vm: &str) -> String;

    /// The way kubelab's SSH reaches the VMs here (through the place's own
    /// connection).
    fn reach(&self) -> &VirthostAccess;

    /// Every VM of the lab here: state, addresses, disks.
    async fn status(&mut self) -> Result<Vec<VmStatus>, ProvisionError>;

    /// What of the lab exists here, and nothing else.
    async fn owned(&mut self) -> Result<Vec<OwnedObject>, ProvisionError>;

    /// Remove the lab's objects here and nothing else.
    async fn teardown(&mut self) -> Result<DownReport, ProvisionError>;

    /// The base image and machine type `up` used, for its report.
    fn describe(&self) -> Described;

    /// Release the lab lock and the connection.
    async fn close(self: Box<Self>);
}

/// What a place says of itself after `prepare`/`plan`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Described {
    pub base_image: String,
    /// e.g. `qemu`.
    pub machine: String,
    /// Why that machine type (e.g. `/dev/kvm missing`).
    pub machine_why: String,
}
