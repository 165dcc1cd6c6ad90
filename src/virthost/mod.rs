//! The virthost: the machine that runs a lab's VMs under libvirt.
//!
//! * [`scripts`]: shell scripts run on the virthost (prepare it, build base
//!   images), embedded from `templates/virthost/`.
//! * [`seed`]: cloud-init NoCloud seeds and per-VM SSH host keys.
//! * [`spec`]: the desired state of a lab's libvirt objects (networks, pool,
//!   volumes, domains) and their names.
//! * [`xml`]: libvirt XML rendered from `templates/libvirt/*.xml.j2`.
//! * [`libvirt`]: the libvirt connection: create, list and tear down the
//!   objects a lab owns.

pub mod libvirt;
pub mod scripts;
pub mod seed;
pub mod spec;
pub mod xml;
