//! What a libvirt object's XML says about the settings a lab controls, in a
//! form that compares: the desired object is rendered ([`super::xml`]) and
//! read back with the same functions as the object libvirt holds, so both
//! sides go through one parser and libvirt's normalisations (added UUIDs,
//! MAC addresses, bridge names, address spellings) do not show as changes.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use roxmltree::{Document, Node};

fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(name))
}

fn children<'a, 'i>(n: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children().filter(move |c| c.has_tag_name(name))
}

fn ip(text: Option<&str>) -> Option<IpAddr> {
    text.and_then(|t| t.trim().parse().ok())
}

/// An `<ip>` element of a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpShape {
    pub address: IpAddr,
    pub prefix: u8,
    pub dhcp_range: Option<(IpAddr, IpAddr)>,
    /// `mac-or-duid ip name`, lower case.
    pub hosts: BTreeSet<String>,
}

impl fmt::Display for IpShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// A network's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkShape {
    /// `nat`, `route`, … or `isolated` (no `<forward>`).
    pub mode: String,
    pub mtu: Option<u32>,
    pub domain: Option<String>,
    pub ipv4: Option<IpShape>,
    pub ipv6: Option<IpShape>,
}

/// Netmask (`255.255.255.0`) to prefix length.
fn netmask_prefix(mask: &str) -> Option<u8> {
    let m: std::net::Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(m);
    (bits.leading_ones() + bits.trailing_zeros() == 32).then(|| bits.leading_ones() as u8)
}

fn ip_shape(n: Node) -> Option<IpShape> {
    let address = ip(n.attribute("address"))?;
    let prefix = match (n.attribute("prefix"), n.attribute("netmask")) {
        (Some(p), _) => p.trim().parse().ok()?,
        (None, Some(m)) => netmask_prefix(m)?,
        (None, None) => {
            if address.is_ipv4() {
                24
            } else {
                64
            }
        }
    };
    let dhcp = child(n, "dhcp");
    let dhcp_range = dhcp
        .and_then(|d| child(d, "range"))
        .and_then(|r| Some((ip(r.attribute("start"))?, ip(r.attribute("end"))?)));
    let hosts = dhcp
        .map(|d| {
            children(d, "host")
                .map(|h| {
                    let who = h
                        .attribute("mac")
                        .or(h.attribute("id"))
                        .unwrap_or("?")
                        .to_ascii_lowercase();
                    let addr = ip(h.attribute("ip"))
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    match h.attribute("name") {
                        Some(name) => format!("{who} {addr} {name}"),
                        None => format!("{who} {addr}"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Some(IpShape {
        address,
        prefix,
        dhcp_range,
        hosts,
    })
}

/// Read a network's XML.
pub fn network_shape(xml: &str) -> Option<NetworkShape> {
    let doc = Document::parse(xml).ok()?;
    let root = doc.root_element();
    let mode = match child(root, "forward") {
        Some(f) => f.attribute("mode").unwrap_or("nat").to_string(),
        None => "isolated".to_string(),
    };
    let mtu = child(root, "mtu")
        .and_then(|m| m.attribute("size"))
        .and_then(|s| s.parse().ok());
    let domain = child(root, "domain")
        .and_then(|d| d.attribute("name"))
        .map(str::to_string);
    let mut ipv4 = None;
    let mut ipv6 = None;
    for n in children(root, "ip") {
        let Some(shape) = ip_shape(n) else { continue };
        match shape.address {
            IpAddr::V4(_) => ipv4 = ipv4.or(Some(shape)),
            IpAddr::V6(_) => ipv6 = ipv6.or(Some(shape)),
        }
    }
    Some(NetworkShape {
        mode,
        mtu,
        domain,
        ipv4,
        ipv6,
    })
}

fn opt<T: fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map(|x| x.to_string())
        .unwrap_or_else(|| "none".into())
}

fn range(r: &Option<(IpAddr, IpAddr)>) -> String {
    r.map(|(a, b)| format!("{a}-{b}"))
        .unwrap_or_else(|| "none".into())
}

fn ip_differences(family: &str, want: &Option<IpShape>, have: &Option<IpShape>) -> Vec<String> {
    let mut out = Vec::new();
    match (want, have) {
        (None, None) => {}
        (Some(w), Some(h)) => {
            if (w.address, w.prefix) != (h.address, h.prefix) {
                out.push(format!("{family} {h} -> {w}"));
            }
            if w.dhcp_range != h.dhcp_range {
                out.push(format!(
                    "{family} DHCP range {} -> {}",
                    range(&h.dhcp_range),
                    range(&w.dhcp_range)
                ));
            }
            let added: Vec<&String> = w.hosts.difference(&h.hosts).collect();
            let removed: Vec<&String> = h.hosts.difference(&w.hosts).collect();
            if !added.is_empty() || !removed.is_empty() {
                let mut parts = Vec::new();
                parts.extend(added.iter().map(|x| format!("+{x}")));
                parts.extend(removed.iter().map(|x| format!("-{x}")));
                out.push(format!("{family} reservations {}", parts.join(", ")));
            }
        }
        (w, h) => out.push(format!("{family} {} -> {}", opt(h), opt(w))),
    }
    out
}

/// What differs between a desired and an existing network, in words
/// (`have -> want`); empty when nothing does.
pub fn network_differences(want: &NetworkShape, have: &NetworkShape) -> Vec<String> {
    let mut out = Vec::new();
    if want.mode != have.mode {
        out.push(format!("mode {} -> {}", have.mode, want.mode));
    }
    if want.mtu != have.mtu {
        out.push(format!("mtu {} -> {}", opt(&have.mtu), opt(&want.mtu)));
    }
    if want.domain != have.domain {
        out.push(format!(
            "DNS domain {} -> {}",
            opt(&have.domain),
            opt(&want.domain)
        ));
    }
    out.extend(ip_differences("ipv4", &want.ipv4, &have.ipv4));
    out.extend(ip_differences("ipv6", &want.ipv6, &have.ipv6));
    out
}

/// A NIC of a domain.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct NicShape {
    pub mac: String,
    /// `network X` or `bridge Y`.
    pub source: String,
    pub mtu: Option<u32>,
}

impl fmt::Display for NicShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on {}", self.mac, self.source)?;
        if let Some(m) = self.mtu {
            write!(f, " mtu {m}")?;
        }
        Ok(())
    }
}

/// A domain's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainShape {
    /// `kvm` or `qemu`.
    pub domain_type: String,
    pub cpus: u32,
    pub memory_mib: u64,
    /// TCG translation cache in MiB.
    pub tb_cache_mib: Option<u64>,
    /// `<target dev> <volume>` of every disk (`device="disk"`), by target.
    pub disks: Vec<String>,
    /// NICs, by MAC.
    pub nics: Vec<NicShape>,
    /// What kubelab's metadata says the seed configures (see
    /// [`super::spec::DomainSpec::seed_digest`]); not part of
    /// [`domain_differences`].
    pub seed_digest: Option<String>,
    /// The lab's lease as the metadata says; not part of
    /// [`domain_differences`] either.
    pub lease: Option<super::spec::Lease>,
}

fn mib(n: Node) -> Option<u64> {
    let value: u64 = n.text()?.trim().parse().ok()?;
    match n.attribute("unit").unwrap_or("KiB") {
        "KiB" | "k" | "K" => Some(value / 1024),
        "MiB" | "M" => Some(value),
        "GiB" | "G" => Some(value * 1024),
        "b" | "bytes" => Some(value >> 20),
        _ => None,
    }
}

/// Read a domain's XML.
pub fn domain_shape(xml: &str) -> Option<DomainShape> {
    let doc = Document::parse(xml).ok()?;
    let root = doc.root_element();
    let domain_type = root.attribute("type").unwrap_or("?").to_string();
    let cpus = child(root, "vcpu")?.text()?.trim().parse().ok()?;
    let memory_mib = mib(child(root, "memory")?)?;
    let tb_cache_mib = child(root, "features")
        .and_then(|f| child(f, "tcg"))
        .and_then(|t| child(t, "tb-cache"))
        .and_then(mib);
    let devices = child(root, "devices")?;
    let mut disks: Vec<String> = children(devices, "disk")
        .filter(|d| d.attribute("device") == Some("disk"))
        .map(|d| {
            let target = child(d, "target")
                .and_then(|t| t.attribute("dev"))
                .unwrap_or("?");
            let source = child(d, "source")
                .and_then(|s| s.attribute("volume").or(s.attribute("file")))
                .unwrap_or("?");
            format!("{target} {source}")
        })
        .collect();
    disks.sort();
    let mut nics: Vec<NicShape> = children(devices, "interface")
        .map(|i| {
            let mac = child(i, "mac")
                .and_then(|m| m.attribute("address"))
                .unwrap_or("?")
                .to_ascii_lowercase();
            let s = child(i, "source");
            let source = match (
                s.and_then(|s| s.attribute("network")),
                s.and_then(|s| s.attribute("bridge")),
            ) {
                (Some(n), _) => format!("network {n}"),
                (None, Some(b)) => format!("bridge {b}"),
                (None, None) => format!("{} ?", i.attribute("type").unwrap_or("?")),
            };
            let mtu = child(i, "mtu")
                .and_then(|m| m.attribute("size"))
                .and_then(|s| s.parse().ok());
            NicShape { mac, source, mtu }
        })
        .collect();
    nics.sort();
    let ours = child(root, "metadata").and_then(|m| {
        m.children().find(|n| {
            n.tag_name().namespace() == Some(super::spec::METADATA_NAMESPACE)
                && n.tag_name().name() == "lab"
        })
    });
    let seed_digest = ours.and_then(|n| n.attribute("seed")).map(str::to_string);
    let lease = ours.and_then(lease_of);
    Some(DomainShape {
        domain_type,
        cpus,
        memory_mib,
        tb_cache_mib,
        disks,
        nics,
        seed_digest,
        lease,
    })
}

/// The lease in kubelab's metadata element; an unreadable `expires` reads
/// as expired (a lab whose time cannot be told is the reaper's to show,
/// not to keep forever), an unreadable `created` as the epoch.
fn lease_of(n: Node) -> Option<super::spec::Lease> {
    let owner = n.attribute("owner")?.to_string();
    let stamp = |a: &str| {
        n.attribute(a)
            .map(|t| crate::state::parse_utc_stamp(t).unwrap_or(0))
    };
    Some(super::spec::Lease {
        owner,
        created: stamp("created").unwrap_or(0),
        expires: stamp("expires"),
    })
}

fn list_change<T: fmt::Display + PartialEq>(what: &str, want: &[T], have: &[T]) -> Option<String> {
    if want == have {
        return None;
    }
    let added: Vec<String> = want
        .iter()
        .filter(|w| !have.contains(w))
        .map(|w| format!("+{w}"))
        .collect();
    let removed: Vec<String> = have
        .iter()
        .filter(|h| !want.contains(h))
        .map(|h| format!("-{h}"))
        .collect();
    Some(format!(
        "{what} {}",
        added
            .into_iter()
            .chain(removed)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// What differs between a desired and an existing domain, in words.
pub fn domain_differences(want: &DomainShape, have: &DomainShape) -> Vec<String> {
    let mut out = Vec::new();
    if want.domain_type != have.domain_type {
        out.push(format!(
            "domain type {} -> {}",
            have.domain_type, want.domain_type
        ));
    }
    if want.cpus != have.cpus {
        out.push(format!("cpus {} -> {}", have.cpus, want.cpus));
    }
    if want.memory_mib != have.memory_mib {
        out.push(format!(
            "memory {} MiB -> {} MiB",
            have.memory_mib, want.memory_mib
        ));
    }
    if want.tb_cache_mib != have.tb_cache_mib {
        out.push(format!(
            "TCG cache {} -> {} (MiB)",
            opt(&have.tb_cache_mib),
            opt(&want.tb_cache_mib)
        ));
    }
    out.extend(list_change("disks", &want.disks, &have.disks));
    out.extend(list_change("nics", &want.nics, &have.nics));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &str = r#"<network><name>kl-a-lan</name><uuid>x</uuid>
<forward mode="nat"><nat><port start="1024" end="65535"/></nat></forward>
<bridge name="virbr3" stp="off" delay="0"/><mac address="52:54:00:00:00:01"/>
<domain name="a.test" localOnly="yes"/>
<ip address="192.168.9.1" netmask="255.255.255.0"><dhcp><range start="192.168.9.128" end="192.168.9.254"/>
<host mac="52:54:00:AA:00:01" name="vm1" ip="192.168.9.10"/></dhcp></ip>
<ip family="ipv6" address="fd00:9:0::1" prefix="64"><dhcp><range start="fd00:9::100" end="fd00:9::1ff"/></dhcp></ip>
</network>"#;

    #[test]
    fn network_shape_normalises_libvirts_spellings() {
        let s = network_shape(NET).unwrap();
        assert_eq!(s.mode, "nat");
        assert_eq!(s.domain.as_deref(), Some("a.test"));
        let v4 = s.ipv4.as_ref().unwrap();
        assert_eq!(v4.to_string(), "192.168.9.1/24");
        assert_eq!(
            v4.hosts.iter().collect::<Vec<_>>(),
            ["52:54:00:aa:00:01 192.168.9.10 vm1"]
        );
        assert_eq!(s.ipv6.as_ref().unwrap().to_string(), "fd00:9::1/64");
        assert!(network_differences(&s, &s).is_empty());
    }

    #[test]
    fn network_differences_say_what_changed() {
        let have = network_shape(NET).unwrap();
        let mut want = have.clone();
        want.mtu = Some(1400);
        want.mode = "isolated".into();
        let v4 = want.ipv4.as_mut().unwrap();
        v4.dhcp_range = Some((
            "192.168.9.200".parse().unwrap(),
            "192.168.9.250".parse().unwrap(),
        ));
        v4.hosts.clear();
        v4.hosts.insert("52:54:00:aa:00:01 192.168.9.11 vm1".into());
        want.ipv6 = None;
        assert_eq!(
            network_differences(&want, &have),
            vec![
                "mode nat -> isolated",
                "mtu none -> 1400",
                "ipv4 DHCP range 192.168.9.128-192.168.9.254 -> 192.168.9.200-192.168.9.250",
                "ipv4 reservations +52:54:00:aa:00:01 192.168.9.11 vm1, -52:54:00:aa:00:01 192.168.9.10 vm1",
                "ipv6 fd00:9::1/64 -> none",
            ]
        );
    }

    #[test]
    fn domain_shape_and_differences() {
        let xml = r#"<domain type="qemu"><name>x</name><memory unit="KiB">786432</memory>
<vcpu placement="static">2</vcpu><features><tcg><tb-cache unit="KiB">131072</tb-cache></tcg></features><devices>
<disk type="volume" device="disk"><source pool="p" volume="kl-a-x-root.qcow2"/><target dev="vda" bus="virtio"/></disk>
<disk type="volume" device="disk"><source pool="p" volume="kl-a-x-seed.img"/><target dev="hda" bus="ide"/></disk>
<disk type="file" device="cdrom"/>
<interface type="network"><mac address="52:54:00:AA:bb:cc"/><source network="kl-a-lan"/><target dev="vnet3"/></interface>
</devices></domain>"#;
        let have = domain_shape(xml).unwrap();
        assert_eq!(have.domain_type, "qemu");
        assert_eq!(have.memory_mib, 768);
        assert_eq!(have.tb_cache_mib, Some(128));
        assert_eq!(have.disks, ["hda kl-a-x-seed.img", "vda kl-a-x-root.qcow2"]);
        assert_eq!(
            have.nics[0].to_string(),
            "52:54:00:aa:bb:cc on network kl-a-lan"
        );
        let mut want = have.clone();
        assert!(domain_differences(&want, &have).is_empty());
        want.memory_mib = 1024;
        want.nics[0].source = "bridge br0".into();
        assert_eq!(
            domain_differences(&want, &have),
            vec![
                "memory 768 MiB -> 1024 MiB",
                "nics +52:54:00:aa:bb:cc on bridge br0, -52:54:00:aa:bb:cc on network kl-a-lan"
            ]
        );
    }
}
