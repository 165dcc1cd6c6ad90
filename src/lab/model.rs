//! The validated lab: every name checked, every address parsed, every
//! default applied, `count` shorthands expanded. Everything after loading
//! (plans, playbooks, templates) works from this model only.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::Serialize;

pub use super::choices::{
    CniFile as Cni, DiskFormatFile as DiskFormat, DomainTypeFile as DomainType,
    FirewallFile as Firewall, HaModeFile as HaMode, HostKeyPolicyFile as HostKeyPolicy,
    IpFamilyFile as IpFamily, PlacementFile as Placement, RuntimeFile as Runtime,
    RuntimePackagesFile as RuntimePackages, SelinuxFile as Selinux,
};
pub use crate::template::Vars;

/// NAT64/DNS64 settings from the lab's `vars` (`nat64_prefix`,
/// `nat64_pool4`, `nat64_tayga_ipv6`, `nat64_resolver`), checked by the
/// validator with their positions, defaults applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Nat64 {
    /// The NAT64 prefix (a /96).
    pub prefix: Ipv6Net,
    /// The IPv4 pool tayga maps IPv6 clients into (masqueraded behind the
    /// NAT64 VM), clear of the lab's networks.
    pub pool4: Ipv4Net,
    /// tayga's own IPv6 address (the source of its ICMPv6 errors), outside
    /// the NAT64 prefix.
    pub tayga_ipv6: Ipv6Addr,
    /// Whether the other VMs resolve names through DNS64 (else they only
    /// get the route to the prefix).
    pub resolver: bool,
}

impl Nat64 {
    /// RFC 6052's well-known prefix 64:ff9b::/96.
    pub const PREFIX: Ipv6Net =
        Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
    pub const POOL4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 255, 0), 24);
    pub const TAYGA_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd64, 0x64, 0x64, 0, 0, 0, 0, 1);
}

impl Default for Nat64 {
    fn default() -> Self {
        Nat64 {
            prefix: Nat64::PREFIX,
            pool4: Nat64::POOL4,
            tayga_ipv6: Nat64::TAYGA_IPV6,
            resolver: true,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Virthost {
    /// Where the definition came from (inventory file or the lab file).
    pub source: PathBuf,
    pub connection: Connection,
    pub domain_type: DomainType,
    pub tcg_cache_mib: Option<u64>,
    pub storage_dir: String,
}

/// One of a lab's virthosts: its name, how to reach it, and what
/// placement and the VXLAN tunnels need to know of it.
#[derive(Clone, Debug, Serialize)]
pub struct LabVirthost {
    /// DNS-1123 label; `virthost` for a lab's only virthost.
    pub name: String,
    pub virthost: Virthost,
    /// Memory (MiB) and CPUs placement may use here; `None`: what the
    /// virthost has, asked at `up`.
    pub memory_mib: Option<u64>,
    pub cpus: Option<u32>,
    /// The address the other virthosts reach this one at.
    pub tunnel_address: Option<IpAddr>,
}

/// How one virthost's copy of a lab's networks joins the other
/// virthosts' copies (a lab over several virthosts): each NAT or isolated
/// network is one layer-2 segment, the libvirt bridges joined by a VXLAN
/// device per network with every other virthost as a flooding peer.
#[derive(Clone, Debug, Serialize)]
pub struct Fabric {
    /// This virthost serves every network: gateway, DHCP, RA, DNS, NAT.
    /// The others' copies are bare bridges.
    pub gateway: bool,
    /// This virthost's tunnel address, and the other virthosts'.
    pub local: IpAddr,
    pub peers: Vec<IpAddr>,
    pub tunnels: Vec<Tunnel>,
}

/// The VXLAN device of one network on a virthost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Tunnel {
    pub network: String,
    /// Derived from the lab's and the network's names (1 to 2^24-1).
    pub vni: u32,
    /// `kx` and 8 hex digits of the same digest.
    pub device: String,
}

impl Tunnel {
    /// The tunnel of network `network` of lab `lab`.
    pub fn of(lab: &str, network: &str) -> Tunnel {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(format!("kubelab-vxlan\n{lab}\n{network}").as_bytes());
        let n = u32::from_be_bytes([0, d[0], d[1], d[2]]);
        Tunnel {
            network: network.to_string(),
            // VNI 0 is not valid for a VXLAN device
            vni: n.max(1),
            device: format!("kx{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3]),
        }
    }
}

/// The MTU of a network spread over several virthosts when the lab gives
/// none: 1500 less the 50 bytes VXLAN over IPv4 adds.
pub const SPREAD_MTU: u32 = 1450;

#[derive(Clone, Debug, Serialize)]
pub enum Connection {
    Local,
    Ssh(SshHost),
}

#[derive(Clone, Debug, Serialize)]
pub struct SshHost {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<PathBuf>,
    pub agent: bool,
    pub host_key_policy: HostKeyPolicy,
    pub known_hosts: PathBuf,
    pub jump: Option<Box<SshHost>>,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum NetworkKind {
    Nat,
    Isolated,
    Bridged {
        /// An existing host bridge, or the bridge kubelab makes from `nic`.
        bridge: String,
        /// A NIC kubelab enslaves into `bridge` (which it then owns).
        nic: Option<String>,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct Network {
    pub name: String,
    pub kind: NetworkKind,
    pub ipv4: Option<Ipv4Net>,
    pub dhcp_range: Option<(Ipv4Addr, Ipv4Addr)>,
    pub ipv6: Option<Ipv6Net>,
    pub mtu: Option<u32>,
}

impl Network {
    /// The virthost's address on a NAT or isolated network (first host).
    pub fn gateway4(&self) -> Option<Ipv4Addr> {
        match self.kind {
            NetworkKind::Bridged { .. } => None,
            _ => self.ipv4.and_then(|n| n.hosts().next()),
        }
    }
    pub fn gateway6(&self) -> Option<Ipv6Addr> {
        match self.kind {
            NetworkKind::Bridged { .. } => None,
            _ => self
                .ipv6
                .and_then(|n| u128::from(n.network()).checked_add(1))
                .map(Ipv6Addr::from),
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "source")]
pub enum Image {
    Download {
        url: String,
        sha256: String,
        user: String,
    },
    Build {
        /// e.g. `debian-12`.
        recipe: String,
        packages: Vec<String>,
        user: String,
    },
}

impl Image {
    pub fn user(&self) -> &str {
        match self {
            Image::Download { user, .. } | Image::Build { user, .. } => user,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Vm {
    pub name: String,
    pub roles: Vec<String>,
    pub cpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub spare_disks: Vec<SpareDisk>,
    pub nics: Vec<Nic>,
    pub vars: Vars,
    /// The virthost (a name of the lab's `virthosts`) the VM runs on:
    /// given in the lab file, or placed; `None` until placed.
    pub virthost: Option<String>,
}

impl Vm {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SpareDisk {
    /// Guest device name: vdb, vdc, …
    pub dev: String,
    pub size_mib: u64,
    pub format: DiskFormat,
}

#[derive(Clone, Debug, Serialize)]
pub struct Nic {
    pub network: String,
    /// Derived from lab, VM and NIC index: stable across runs.
    pub mac: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Kubernetes {
    /// `1.31` or `1.31.2`.
    pub version: String,
    pub runtime: Runtime,
    pub runtime_packages: RuntimePackages,
    pub cni: Cni,
    pub ip_family: IpFamily,
    pub pod_cidrs: Vec<IpNet>,
    pub service_cidrs: Vec<IpNet>,
    pub network: String,
    pub ha: Option<Ha>,
    pub airgap_dir: Option<PathBuf>,
    pub merge_kubeconfig: bool,
    pub selinux: Selinux,
    pub firewall: Firewall,
}

impl Kubernetes {
    /// The minor version number (31 for `1.31.2`).
    pub fn minor(&self) -> u32 {
        self.version
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }
}

/// A link of the lab: two endpoints on one VM (veth) or on two (VXLAN).
#[derive(Clone, Debug, Serialize)]
pub struct Link {
    pub ends: [LinkEndpoint; 2],
    /// VXLAN network identifier (links across VMs): given, or derived from
    /// the lab's name and the endpoints.
    pub vni: Option<u32>,
    /// VXLAN UDP port.
    pub port: u16,
}

impl Link {
    /// Both ends on one VM.
    pub fn is_local(&self) -> bool {
        self.ends[0].vm == self.ends[1].vm
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct LinkEndpoint {
    pub vm: String,
    pub endpoint: crate::endpoint::Endpoint,
    pub ifname: String,
    pub addresses: Vec<IpNet>,
    pub mtu: Option<u32>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Ha {
    pub mode: HaMode,
    pub vip: Option<IpAddr>,
}

/// Deterministic, locally administered MAC for a VM's NIC (QEMU's 52:54:00
/// prefix, three bytes from a hash of lab, VM and NIC index).
pub fn mac_for(lab: &str, vm: &str, nic: usize) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(format!("{lab}/{vm}/{nic}").as_bytes());
    format!("52:54:00:{:02x}:{:02x}:{:02x}", h[0], h[1], h[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_stable_and_distinct() {
        assert_eq!(mac_for("lab", "vm1", 0), mac_for("lab", "vm1", 0));
        assert_ne!(mac_for("lab", "vm1", 0), mac_for("lab", "vm1", 1));
        assert_ne!(mac_for("lab", "vm1", 0), mac_for("lab2", "vm1", 0));
        assert!(mac_for("a", "b", 0).starts_with("52:54:00:"));
    }
}
