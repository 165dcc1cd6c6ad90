//! Desired state of a lab's libvirt objects, and their names.
//!
//! These are plain data: whoever maps a lab file onto a virthost fills them
//! in; [`super::xml`] turns them into libvirt XML and [`super::libvirt`]
//! creates, lists and removes the objects.
//!
//! # Names and ownership
//! Every object a lab creates is named `kl-<lab>-<name>` (see
//! [`LabName::object_name`]); specs carry the lab and the *short* `<name>`,
//! and refer to each other by short names. Domains and networks also carry
//! `<metadata><kubelab:lab xmlns:kubelab="https://kubelab.dev/xmlns/lab/1"
//! name="<lab>" object="<name>"/></metadata>`; an object belongs to a lab only
//! when both its name prefix and its metadata say so (a prefix alone is
//! ambiguous: `kl-a-b-x` could be lab `a` or lab `a-b`).
//! Storage pools and volumes have no metadata element: each lab has its own
//! directory pool `kl-<lab>-pool` ([`LabName::pool_name`]), and everything
//! in it belongs to the lab.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{Ipv4Net, Ipv6Net};
use serde::Serialize;

/// XML namespace of kubelab's libvirt metadata.
pub const METADATA_NAMESPACE: &str = "https://kubelab.dev/xmlns/lab/1";
/// First part of every libvirt object name kubelab creates.
pub const NAME_PREFIX: &str = "kl-";

/// A name that cannot be used for a libvirt object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "invalid lab name {0:?}: 1-24 characters of a-z, 0-9 and '-', starting with a letter or digit, not ending with '-'"
    )]
    Lab(String),
    #[error(
        "invalid object name {0:?}: 1-48 characters of a-z, 0-9, '-', '_' and '.', starting with a letter or digit"
    )]
    Object(String),
    #[error("invalid host bridge name {0:?}: 1-15 characters of A-Z, a-z, 0-9, '-', '_' and '.'")]
    Bridge(String),
}

/// The name of a lab, validated so that object names made from it are safe
/// everywhere libvirt uses them (file names, XML, bridge names).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct LabName(String);

impl LabName {
    /// Validate a lab name.
    pub fn new(name: &str) -> Result<Self, NameError> {
        let b = name.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 24
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1] != b'-'
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-');
        if ok {
            Ok(LabName(name.to_string()))
        } else {
            Err(NameError::Lab(name.to_string()))
        }
    }

    /// The lab name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `kl-<lab>-`: the start of every object name of this lab.
    pub fn prefix(&self) -> String {
        format!("{NAME_PREFIX}{}-", self.0)
    }

    /// `kl-<lab>-<name>`. `name` must be valid ([`validate_object_name`]).
    pub fn object_name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix())
    }

    /// The lab's storage pool: `kl-<lab>-pool`.
    pub fn pool_name(&self) -> String {
        self.object_name("pool")
    }
}

impl fmt::Display for LabName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Check a short object name (a VM, network or volume name within a lab).
pub fn validate_object_name(name: &str) -> Result<(), NameError> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 48
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(NameError::Object(name.to_string()))
    }
}

/// Check a Linux bridge (interface) name.
pub fn validate_bridge_name(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(NameError::Bridge(name.to_string()))
    }
}

/// How a network reaches the outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// Routed to the virthost's uplink with NAT (IPv4) / forwarding (IPv6).
    Nat,
    /// VMs and the virthost only.
    Isolated,
}

/// A fixed address for one MAC, handed out by the network's DHCP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpReservation {
    /// The NIC's MAC address.
    pub mac: String,
    /// Address to hand out (inside the subnet).
    pub ip: IpAddr,
    /// Host name dnsmasq registers for the address.
    pub hostname: Option<String>,
}

/// The IPv4 side of a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv4Subnet {
    /// The virthost's address on the bridge with the prefix length, e.g.
    /// `192.168.100.1/24`; it is the VMs' gateway and DNS server.
    pub address: Ipv4Net,
    /// DHCP pool (first, last); `None`: no DHCPv4.
    pub dhcp_range: Option<(Ipv4Addr, Ipv4Addr)>,
}

/// The IPv6 side of a network. libvirt sends router advertisements whenever
/// an IPv6 address is set; with a DHCP range they announce DHCPv6 too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipv6Subnet {
    /// The virthost's address with the prefix length, e.g. `fd00:100::1/64`.
    pub address: Ipv6Net,
    /// DHCPv6 pool (first, last); `None`: SLAAC only.
    pub dhcp_range: Option<(Ipv6Addr, Ipv6Addr)>,
}

/// A libvirt virtual network of a lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSpec {
    pub lab: LabName,
    /// Short name; the libvirt network is `kl-<lab>-<name>`.
    pub name: String,
    pub mode: NetworkMode,
    /// Bridge device name (at most 15 characters); `None`: libvirt picks `virbrN`.
    pub bridge: Option<String>,
    /// MTU of the bridge; `None`: libvirt's default (1500).
    pub mtu: Option<u32>,
    /// DNS domain served by the network's dnsmasq (local only), e.g. `lab1.test`.
    pub dns_domain: Option<String>,
    pub ipv4: Option<Ipv4Subnet>,
    pub ipv6: Option<Ipv6Subnet>,
    /// Fixed DHCP addresses. IPv6 reservations match the DUID-LL of the MAC
    /// (the base image uses MAC-based DHCP identities).
    pub reservations: Vec<DhcpReservation>,
}

/// The lab's directory storage pool (`kl-<lab>-pool`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    pub lab: LabName,
    /// Directory on the virthost; created by libvirt, removed on teardown.
    /// Use a directory only this lab's pool uses, e.g.
    /// `/var/lib/kubelab/pools/<lab>`.
    pub path: PathBuf,
}

impl PoolSpec {
    /// Where to put a VM's serial console log: inside the pool directory, so
    /// that it is readable (and removed) through the storage API, also on a
    /// remote virthost. The file shows up as a volume after a pool refresh.
    pub fn console_log_path(&self, vm: &str) -> PathBuf {
        self.path
            .join(format!("{}.console.log", self.lab.object_name(vm)))
    }
}

/// Disk image formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeFormat {
    Qcow2,
    Raw,
}

/// The image a qcow2 overlay reads from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackingStore {
    /// Absolute path on the virthost (need not be in a pool).
    pub path: PathBuf,
    pub format: VolumeFormat,
}

/// A volume in the lab's pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    pub lab: LabName,
    /// Short name; the volume is `kl-<lab>-<name>`. Give it an extension
    /// (`vm1-root.qcow2`) if you like; nothing depends on it.
    pub name: String,
    /// Virtual size in bytes (an overlay may be larger than its base).
    pub capacity_bytes: u64,
    pub format: VolumeFormat,
    /// Makes the volume a copy-on-write overlay of this image.
    pub backing: Option<BackingStore>,
}

/// libvirt domain type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainType {
    /// Hardware virtualization.
    Kvm,
    /// Emulation (TCG): slow but works everywhere.
    Qemu,
}

/// A disk of a domain, from the lab's pool. The first disk of
/// [`DomainSpec::disks`] is `vda` (boot), the next `vdb`, `vdc`, …
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskSpec {
    /// Short volume name in the lab's pool.
    pub volume: String,
    pub format: VolumeFormat,
}

/// What a NIC is plugged into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NicSource {
    /// A network of the same lab, by short name.
    Network(String),
    /// An existing Linux bridge on the virthost (not owned by the lab).
    Bridge(String),
}

/// A virtio NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicSpec {
    /// MAC address, `52:54:00:xx:xx:xx` style; the seed's network config
    /// matches NICs by it.
    pub mac: String,
    pub source: NicSource,
    /// MTU of the host side; `None`: inherited from the network/bridge.
    pub mtu: Option<u32>,
}

/// A VM of a lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    pub lab: LabName,
    /// Short name; the domain is `kl-<lab>-<name>`.
    pub name: String,
    /// Chosen by the caller (probe KVM; see
    /// [`super::libvirt::Connection::kvm_offered`]).
    pub domain_type: DomainType,
    pub cpus: u32,
    pub memory_mib: u64,
    /// Virtio disks: root first (`vda`), spare disks after it (`vdb`, …).
    pub disks: Vec<DiskSpec>,
    /// The cloud-init seed volume (vfat), attached as an IDE disk so it
    /// does not shift the virtio disk names.
    pub seed_volume: Option<String>,
    /// The seed volume's format: qcow2 for VMs kubelab makes now (a lab
    /// snapshot with memory needs every writable disk in qcow2), raw for
    /// those an older kubelab made.
    pub seed_format: VolumeFormat,
    pub nics: Vec<NicSpec>,
    /// File the serial console is logged to (see [`PoolSpec::console_log_path`]).
    pub console_log: PathBuf,
    /// TCG translation cache size in MiB (QEMU's default is 1 GiB, mostly
    /// resident); only used with [`DomainType::Qemu`].
    pub tb_cache_mib: Option<u32>,
    /// Add the virtio-serial channel for qemu-guest-agent.
    pub guest_agent: bool,
    /// A digest of what the VM's seed configures (host name, login, guest
    /// network settings; not its secrets), kept in the domain's metadata so
    /// a later run can tell that the lab asks for other guest settings.
    pub seed_digest: Option<String>,
    /// Who brought the lab up and until when it may stay.
    pub lease: Option<Lease>,
}

/// Who brought a lab up, when, and until when it may stay: kept in the
/// metadata of the lab's domains (`owner`, `created`, `expires`), so that
/// `kubelab ls` and `reap` need nothing but libvirt on the virthost.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    /// `user@host` of whoever ran the `up` that created the lab.
    pub owner: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; `None`: the lab stays until `down`.
    pub expires: Option<u64>,
}

impl Lease {
    /// Whether the lab's time is up at `now` (unix seconds).
    pub fn expired(&self, now: u64) -> bool {
        self.expires.is_some_and(|e| e <= now)
    }
}
