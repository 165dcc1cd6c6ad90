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
//! * [`shape`]: the settings in an object's XML, for comparing what a lab
//!   wants with what the virthost has.
//! * [`console`]: what a guest's serial console log says about its boot (a
//!   kernel panic, a boot loop).

//!
//! # Bringing up a lab's VMs (what the integration test does)
//! 1. Run [`scripts::PREPARE`] on the virthost (last line `changed=N`), then
//!    [`scripts::BUILD_IMAGE_DEBIAN`] (last line: the base image path; cached).
//! 2. [`libvirt::Connection::open`] (`qemu:///system` on the virthost), or
//!    [`libvirt::AsyncConnection`] from async code.
//! 3. `ensure_pool(PoolSpec)`, `ensure_network(NetworkSpec)` per network.
//! 4. Per VM: [`seed::HostKey::generate`], [`seed::seed_files`] →
//!    `to_vfat()`, `put_volume_bytes(seed)`; `ensure_volume` for the root
//!    overlay (backing: the base image) and the spare disks; `define_domain`;
//!    write `host_key.known_hosts_line(..)` into the lab's known_hosts once
//!    the address is known; `start_domain`.
//! 5. `wait_for_addresses` (leases, agent fallback), then SSH with strict
//!    host key checking against that known_hosts.
//! 6. `teardown(lab)` removes exactly what `lab_objects(lab)` lists.
//!
//! The seed volume must stay attached for the VM's life: cloud-init reads it
//! on every boot, and without it falls back to the `None` datasource, a new
//! instance id, and new host keys. It holds the VM's private host key; on the
//! virthost it is a root-only file in the lab's pool.

pub mod console;
pub mod libvirt;
pub mod scripts;
pub mod seed;
pub mod shape;
pub mod spec;
pub mod xml;
