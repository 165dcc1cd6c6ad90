//! The desired state of a lab on its virthost: the libvirt objects (as
//! [`crate::virthost::spec`] values) and the cloud-init network settings that
//! a [`Lab`] asks for. Pure: nothing here talks to a host.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::lab::Lab;
use crate::lab::model::{DiskFormat, NetworkKind, Vm};
use crate::virthost::seed::SeedNic;
use crate::virthost::spec::{
    BackingStore, DhcpReservation, DiskSpec, DomainSpec, DomainType, Ipv4Subnet, Ipv6Subnet,
    LabName, NetworkMode, NetworkSpec, NicSource, NicSpec, PoolSpec, VolumeFormat, VolumeSpec,
};

/// Everything the lab wants on the virthost.
#[derive(Clone, Debug)]
pub struct Desired {
    pub lab: LabName,
    pub pool: PoolSpec,
    /// libvirt networks (NAT and isolated; bridged networks use a host bridge).
    pub networks: Vec<NetworkSpec>,
    pub vms: Vec<DesiredVm>,
    /// What this run asks of the lab's lease (`None`: leave leases alone).
    pub lease: Option<super::lease::LeaseRequest>,
}

/// One VM: its volumes, its seed volume name, its domain and its guest NICs.
#[derive(Clone, Debug)]
pub struct DesiredVm {
    pub name: String,
    /// Root overlay first, then the spare disks.
    pub volumes: Vec<VolumeSpec>,
    pub seed_volume: String,
    pub domain: DomainSpec,
    pub seed_nics: Vec<SeedNic>,
    /// Guest block devices: vda, vdb, …
    pub disks: Vec<String>,
}

/// The lab's pool directory on the virthost: `<storage_dir>/<lab>`.
pub fn pool_dir(lab: &Lab) -> PathBuf {
    Path::new(&lab.virthost.storage_dir).join(&lab.name)
}

/// The image cache on the virthost: `<storage_dir>/images`.
pub fn image_dir(lab: &Lab) -> PathBuf {
    Path::new(&lab.virthost.storage_dir).join("images")
}

/// The lab's lock file on the virthost: `<storage_dir>/<lab>.lock`.
pub fn lock_path(lab: &Lab) -> PathBuf {
    Path::new(&lab.virthost.storage_dir).join(format!("{}.lock", lab.name))
}

/// The lab's DHCPv4 range: the lab's, else the upper half of the subnet
/// (the lower half is for static addresses).
fn dhcp4_range(net: Ipv4Net, given: Option<(Ipv4Addr, Ipv4Addr)>) -> Option<(Ipv4Addr, Ipv4Addr)> {
    given.or_else(|| {
        let base = u32::from(net.network());
        let size = 1u32.checked_shl(32 - u32::from(net.prefix_len()))?;
        let last = u32::from(net.broadcast()).checked_sub(1)?;
        let first = (base + size / 2).max(base + 2);
        (first <= last).then(|| (Ipv4Addr::from(first), Ipv4Addr::from(last)))
    })
}

/// DHCPv6 range: `::100` to `::1ff` of the lab's prefix (SLAAC covers the rest).
fn dhcp6_range(net: Ipv6Net) -> Option<(Ipv6Addr, Ipv6Addr)> {
    let base = u128::from(net.network());
    let start = base.checked_add(0x100)?;
    let end = base.checked_add(0x1ff)?;
    (net.contains(&Ipv6Addr::from(end))).then(|| (Ipv6Addr::from(start), Ipv6Addr::from(end)))
}

/// Disk format of a lab spare disk as a libvirt volume format.
fn volume_format(f: &DiskFormat) -> VolumeFormat {
    match f {
        DiskFormat::Raw => VolumeFormat::Raw,
        _ => VolumeFormat::Qcow2,
    }
}

/// The libvirt networks of the lab (bridged networks have none). On a
/// virthost that is not the gateway of a lab over several virthosts, each
/// is a bare bridge (no address, no DHCP, no NAT): the gateway's copy,
/// reached through the VXLAN tunnel, serves its VMs.
pub fn networks(lab: &Lab, name: &LabName) -> Vec<NetworkSpec> {
    let bare = lab.fabric.as_ref().is_some_and(|f| !f.gateway);
    lab.networks
        .iter()
        .filter_map(|n| {
            let mode = match n.kind {
                NetworkKind::Bridged { .. } => return None,
                _ if bare => {
                    return Some(NetworkSpec {
                        lab: name.clone(),
                        name: n.name.clone(),
                        mode: NetworkMode::Isolated,
                        bridge: None,
                        mtu: n.mtu,
                        dns_domain: None,
                        ipv4: None,
                        ipv6: None,
                        reservations: Vec::new(),
                    });
                }
                NetworkKind::Nat => NetworkMode::Nat,
                NetworkKind::Isolated => NetworkMode::Isolated,
            };
            let ipv4 = n.ipv4.and_then(|net| {
                let gw = n.gateway4()?;
                Some(Ipv4Subnet {
                    address: Ipv4Net::new(gw, net.prefix_len()).ok()?,
                    dhcp_range: dhcp4_range(net, n.dhcp_range),
                })
            });
            let ipv6 = n.ipv6.and_then(|net| {
                let gw = n.gateway6()?;
                Some(Ipv6Subnet {
                    address: Ipv6Net::new(gw, net.prefix_len()).ok()?,
                    dhcp_range: dhcp6_range(net),
                })
            });
            // the VMs on the other virthosts get their leases here too
            let reservations = lab
                .vms
                .iter()
                .chain(&lab.elsewhere)
                .flat_map(|vm| {
                    vm.nics
                        .iter()
                        .filter(|nic| nic.network == n.name)
                        .filter_map(|nic| {
                            Some(DhcpReservation {
                                mac: nic.mac.clone(),
                                ip: IpAddr::V4(nic.ipv4?),
                                hostname: Some(vm.name.clone()),
                            })
                        })
                })
                .collect();
            Some(NetworkSpec {
                lab: name.clone(),
                name: n.name.clone(),
                mode,
                bridge: None,
                mtu: n.mtu,
                dns_domain: Some(format!("{}.test", lab.name)),
                ipv4,
                ipv6,
                reservations,
            })
        })
        .collect()
}

/// Guest network settings of a VM: static addresses where the lab gives
/// them (the DHCP reservation gives the same IPv4 address), DHCP otherwise.
pub fn seed_nics(lab: &Lab, vm: &Vm) -> Vec<SeedNic> {
    vm.nics
        .iter()
        .enumerate()
        .filter_map(|(i, nic)| {
            let net = lab.network(&nic.network)?;
            let bridged = matches!(net.kind, NetworkKind::Bridged { .. });
            let mut seed = SeedNic {
                name: format!("eth{i}"),
                mac: nic.mac.clone(),
                mtu: net.mtu,
                ..Default::default()
            };
            match (nic.ipv4, net.ipv4) {
                (Some(ip), Some(subnet)) => {
                    seed.addresses
                        .push(IpNet::V4(Ipv4Net::new(ip, subnet.prefix_len()).ok()?));
                    // only the first NIC gets the default route
                    if i == 0 {
                        seed.gateway4 = net.gateway4();
                        seed.nameservers.extend(net.gateway4().map(IpAddr::V4));
                    }
                }
                _ => seed.dhcp4 = net.ipv4.is_some() || bridged,
            }
            match (nic.ipv6, net.ipv6) {
                (Some(ip), Some(subnet)) => {
                    seed.addresses
                        .push(IpNet::V6(Ipv6Net::new(ip, subnet.prefix_len()).ok()?));
                    if i == 0 {
                        seed.gateway6 = net.gateway6();
                    }
                }
                _ => seed.dhcp6 = net.ipv6.is_some() && !bridged,
            }
            Some(seed)
        })
        .collect()
}

/// A VM's fully qualified name in its guest: `<vm>.<lab>.test`.
pub fn fqdn(lab: &Lab, vm: &str) -> String {
    format!("{vm}.{}.test", lab.name)
}

/// A digest of what a VM's seed configures besides its secrets: host name,
/// login user, guest network settings (16 hex digits).
pub fn seed_digest(lab: &Lab, vm: &Vm, nics: &[SeedNic]) -> String {
    use sha2::{Digest, Sha256};
    let text = format!(
        "{}\n{}\n{}\n{nics:?}",
        vm.name,
        fqdn(lab, &vm.name),
        lab.image.user()
    );
    Sha256::digest(text.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The desired state. `base_image` is the virthost path of the base image
/// (format `base_format`); `domain_type` is already resolved (no `auto`).
pub fn desired(
    lab: &Lab,
    base_image: &Path,
    base_format: VolumeFormat,
    domain_type: DomainType,
) -> Result<Desired, String> {
    let name = LabName::new(&lab.name).map_err(|e| e.to_string())?;
    let pool = PoolSpec {
        lab: name.clone(),
        path: pool_dir(lab),
    };
    let mut vms = Vec::new();
    for vm in &lab.vms {
        let root = format!("{}-root.qcow2", vm.name);
        let mut volumes = vec![VolumeSpec {
            lab: name.clone(),
            name: root.clone(),
            capacity_bytes: vm.disk_gib << 30,
            format: VolumeFormat::Qcow2,
            backing: Some(BackingStore {
                path: base_image.to_path_buf(),
                format: base_format,
            }),
        }];
        let mut disks = vec![DiskSpec {
            volume: root,
            format: VolumeFormat::Qcow2,
        }];
        let mut devs = vec!["vda".to_string()];
        for spare in &vm.spare_disks {
            let format = volume_format(&spare.format);
            let vol = format!(
                "{}-{}.{}",
                vm.name,
                spare.dev,
                if format == VolumeFormat::Raw {
                    "img"
                } else {
                    "qcow2"
                }
            );
            volumes.push(VolumeSpec {
                lab: name.clone(),
                name: vol.clone(),
                capacity_bytes: spare.size_mib << 20,
                format,
                backing: None,
            });
            disks.push(DiskSpec {
                volume: vol,
                format,
            });
            devs.push(spare.dev.clone());
        }
        let nics = vm
            .nics
            .iter()
            .filter_map(|nic| {
                let net = lab.network(&nic.network)?;
                let source = match &net.kind {
                    NetworkKind::Bridged { bridge, .. } => NicSource::Bridge(bridge.clone()),
                    _ => NicSource::Network(net.name.clone()),
                };
                Some(NicSpec {
                    mac: nic.mac.clone(),
                    source,
                    mtu: net.mtu,
                })
            })
            .collect();
        let seed_volume = format!("{}-seed.img", vm.name);
        let seed_nics = seed_nics(lab, vm);
        let domain = DomainSpec {
            lab: name.clone(),
            name: vm.name.clone(),
            domain_type,
            cpus: vm.cpus,
            memory_mib: vm.memory_mib,
            disks,
            seed_volume: Some(seed_volume.clone()),
            seed_format: VolumeFormat::Qcow2,
            nics,
            console_log: pool.console_log_path(&vm.name),
            tb_cache_mib: match domain_type {
                DomainType::Qemu => lab
                    .virthost
                    .tcg_cache_mib
                    .and_then(|m| u32::try_from(m).ok()),
                DomainType::Kvm => None,
            },
            guest_agent: true,
            seed_digest: Some(seed_digest(lab, vm, &seed_nics)),
            // the plan decides it, from what the lab's domains carry
            lease: None,
        };
        vms.push(DesiredVm {
            name: vm.name.clone(),
            volumes,
            seed_volume,
            domain,
            seed_nics,
            disks: devs,
        });
    }
    Ok(Desired {
        lab: name.clone(),
        pool,
        networks: networks(lab, &name),
        vms,
        lease: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_dhcp_range_is_the_upper_half() {
        let net: Ipv4Net = "192.168.151.0/24".parse().unwrap();
        assert_eq!(
            dhcp4_range(net, None),
            Some((
                "192.168.151.128".parse().unwrap(),
                "192.168.151.254".parse().unwrap()
            ))
        );
        let given = (
            "192.168.151.10".parse().unwrap(),
            "192.168.151.20".parse().unwrap(),
        );
        assert_eq!(dhcp4_range(net, Some(given)), Some(given));
        let v6: Ipv6Net = "fd00:151::/64".parse().unwrap();
        assert_eq!(
            dhcp6_range(v6),
            Some((
                "fd00:151::100".parse().unwrap(),
                "fd00:151::1ff".parse().unwrap()
            ))
        );
    }
}
