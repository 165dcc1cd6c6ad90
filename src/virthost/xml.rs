//! libvirt XML for a lab's objects, rendered from the minijinja templates in
//! `templates/libvirt/` (embedded in the binary).
//!
//! Undefined variables are errors, and every value printed into a template is
//! escaped for XML (`&`, `<`, `>`, `"`, `'`) by the environment's formatter, so
//! a template cannot forget to escape.

use std::net::IpAddr;
use std::sync::OnceLock;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, UndefinedBehavior};
use serde_json::json;

use super::seed::normalize_mac;
use super::spec::{
    DomainSpec, METADATA_NAMESPACE, NetworkMode, NetworkSpec, NicSource, PoolSpec, VolumeFormat,
    VolumeSpec, validate_bridge_name, validate_object_name,
};

/// Why XML could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    #[error(transparent)]
    Name(#[from] super::spec::NameError),
    #[error("{0}")]
    Invalid(String),
    #[error("template {template}: {source}")]
    Template {
        template: &'static str,
        #[source]
        source: Error,
    },
}

const TEMPLATES: &[(&str, &str)] = &[
    (
        "network.xml.j2",
        include_str!("../../templates/libvirt/network.xml.j2"),
    ),
    (
        "pool.xml.j2",
        include_str!("../../templates/libvirt/pool.xml.j2"),
    ),
    (
        "volume.xml.j2",
        include_str!("../../templates/libvirt/volume.xml.j2"),
    ),
    (
        "domain.xml.j2",
        include_str!("../../templates/libvirt/domain.xml.j2"),
    ),
];

const XML_ESCAPE: &str = "xml";

pub use crate::markup::escape_xml;

fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".xml.j2") {
                AutoEscape::Custom(XML_ESCAPE.into())
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(|out, state, value| {
            if matches!(state.auto_escape(), AutoEscape::Custom(x) if x == XML_ESCAPE) {
                if value.is_none() || value.is_undefined() {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "a missing value would be printed into XML",
                    ));
                }
                let text = value.to_string();
                let text = if value.is_safe() {
                    text
                } else {
                    escape_xml(&text)
                };
                out.write_str(&text).map_err(|e| {
                    Error::new(ErrorKind::WriteFailure, "cannot write XML").with_source(e)
                })
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        for (name, source) in TEMPLATES {
            // The templates are part of the binary; a syntax error in one is a
            // build defect caught by the tests, and rendering reports it.
            if let Err(e) = env.add_template(name, source) {
                eprintln!("kubelab: built-in template {name} is invalid: {e}");
            }
        }
        env
    })
}

fn render(template: &'static str, ctx: serde_json::Value) -> Result<String, XmlError> {
    let env = environment();
    let tmpl = env
        .get_template(template)
        .map_err(|source| XmlError::Template { template, source })?;
    tmpl.render(Value::from(minijinja::value::Serde(&ctx)))
        .map_err(|source| XmlError::Template { template, source })
}

fn check_in_subnet(ip: IpAddr, net: &ipnet::IpNet, what: &str) -> Result<(), XmlError> {
    if net.contains(&ip) {
        Ok(())
    } else {
        Err(XmlError::Invalid(format!(
            "{what} {ip} is outside {}",
            net.trunc()
        )))
    }
}

fn check_mtu(mtu: Option<u32>) -> Result<(), XmlError> {
    match mtu {
        Some(m) if !(576..=65535).contains(&m) => {
            Err(XmlError::Invalid(format!("MTU {m} outside 576..65535")))
        }
        _ => Ok(()),
    }
}

/// XML for `virNetworkDefineXML`.
pub fn render_network(spec: &NetworkSpec) -> Result<String, XmlError> {
    validate_object_name(&spec.name)?;
    if let Some(b) = &spec.bridge {
        validate_bridge_name(b)?;
    }
    check_mtu(spec.mtu)?;
    if spec.ipv4.is_none() && spec.ipv6.is_none() && !spec.reservations.is_empty() {
        return Err(XmlError::Invalid(
            "DHCP reservations on a network without addresses".into(),
        ));
    }
    let mut hosts4 = Vec::new();
    let mut hosts6 = Vec::new();
    for r in &spec.reservations {
        let mac = normalize_mac(&r.mac).map_err(|e| XmlError::Invalid(e.to_string()))?;
        match r.ip {
            IpAddr::V4(ip) => {
                let Some(v4) = &spec.ipv4 else {
                    return Err(XmlError::Invalid(format!(
                        "reservation {ip} on a network without IPv4"
                    )));
                };
                check_in_subnet(r.ip, &v4.address.into(), "reservation")?;
                hosts4.push(json!({"mac": mac, "ip": ip.to_string(), "hostname": r.hostname}));
            }
            IpAddr::V6(ip) => {
                let Some(v6) = &spec.ipv6 else {
                    return Err(XmlError::Invalid(format!(
                        "reservation {ip} on a network without IPv6"
                    )));
                };
                check_in_subnet(r.ip, &v6.address.into(), "reservation")?;
                // DUID-LL: type 3, hardware type 1 (Ethernet), then the MAC
                hosts6.push(json!({"duid": format!("00:03:00:01:{mac}"), "ip": ip.to_string(), "hostname": r.hostname}));
            }
        }
    }
    let ipv4 = match &spec.ipv4 {
        None => None,
        Some(v4) => {
            if let Some((a, b)) = v4.dhcp_range {
                check_in_subnet(a.into(), &v4.address.into(), "DHCP range start")?;
                check_in_subnet(b.into(), &v4.address.into(), "DHCP range end")?;
            }
            Some(json!({
                "address": v4.address.addr().to_string(),
                "prefix": v4.address.prefix_len(),
                "dhcp_start": v4.dhcp_range.map(|r| r.0.to_string()),
                "dhcp_end": v4.dhcp_range.map(|r| r.1.to_string()),
                "hosts": hosts4,
            }))
        }
    };
    let ipv6 = match &spec.ipv6 {
        None => None,
        Some(v6) => {
            if let Some((a, b)) = v6.dhcp_range {
                check_in_subnet(a.into(), &v6.address.into(), "DHCPv6 range start")?;
                check_in_subnet(b.into(), &v6.address.into(), "DHCPv6 range end")?;
            }
            Some(json!({
                "address": v6.address.addr().to_string(),
                "prefix": v6.address.prefix_len(),
                "dhcp_start": v6.dhcp_range.map(|r| r.0.to_string()),
                "dhcp_end": v6.dhcp_range.map(|r| r.1.to_string()),
                "hosts": hosts6,
            }))
        }
    };
    if let Some(d) = &spec.dns_domain
        && (d.is_empty()
            || !d
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    {
        return Err(XmlError::Invalid(format!("invalid DNS domain {d:?}")));
    }
    render(
        "network.xml.j2",
        json!({
            "name": spec.lab.object_name(&spec.name),
            "lab": spec.lab,
            "object": spec.name,
            "ns": METADATA_NAMESPACE,
            "mode": match spec.mode { NetworkMode::Nat => "nat", NetworkMode::Isolated => "isolated" },
            "bridge": spec.bridge,
            "mtu": spec.mtu,
            "dns_domain": spec.dns_domain,
            "ipv4": ipv4,
            "ipv6": ipv6,
        }),
    )
}

/// XML for `virStoragePoolDefineXML`.
pub fn render_pool(spec: &PoolSpec) -> Result<String, XmlError> {
    if !spec.path.is_absolute() {
        return Err(XmlError::Invalid(format!(
            "pool path {} is not absolute",
            spec.path.display()
        )));
    }
    render(
        "pool.xml.j2",
        json!({"name": spec.lab.pool_name(), "path": spec.path.display().to_string()}),
    )
}

/// XML for `virStorageVolCreateXML`.
pub fn render_volume(spec: &VolumeSpec) -> Result<String, XmlError> {
    validate_object_name(&spec.name)?;
    if spec.capacity_bytes == 0 {
        return Err(XmlError::Invalid(format!(
            "volume {}: capacity 0",
            spec.name
        )));
    }
    if let Some(b) = &spec.backing {
        if spec.format != VolumeFormat::Qcow2 {
            return Err(XmlError::Invalid(format!(
                "volume {}: only qcow2 volumes can have a backing image",
                spec.name
            )));
        }
        if !b.path.is_absolute() {
            return Err(XmlError::Invalid(format!(
                "backing image {} is not absolute",
                b.path.display()
            )));
        }
    }
    render(
        "volume.xml.j2",
        json!({
            "name": spec.lab.object_name(&spec.name),
            "capacity_bytes": spec.capacity_bytes,
            "format": spec.format,
            "backing": spec.backing.as_ref().map(|b| json!({
                "path": b.path.display().to_string(),
                "format": b.format,
            })),
        }),
    )
}

/// Device name of the n-th virtio disk: `vda`, `vdb`, …, `vdz`, `vdaa`, …
pub fn virtio_disk_target(index: usize) -> String {
    let mut n = index;
    let mut letters = Vec::new();
    loop {
        letters.push(b'a' + (n % 26) as u8);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    letters.reverse();
    format!("vd{}", String::from_utf8_lossy(&letters))
}

/// XML for `virDomainDefineXML`.
pub fn render_domain(spec: &DomainSpec) -> Result<String, XmlError> {
    validate_object_name(&spec.name)?;
    if spec.cpus == 0 || spec.cpus > 512 {
        return Err(XmlError::Invalid(format!(
            "domain {}: {} vCPUs",
            spec.name, spec.cpus
        )));
    }
    if spec.memory_mib < 64 {
        return Err(XmlError::Invalid(format!(
            "domain {}: {} MiB memory",
            spec.name, spec.memory_mib
        )));
    }
    if spec.disks.is_empty() {
        return Err(XmlError::Invalid(format!(
            "domain {}: no root disk",
            spec.name
        )));
    }
    if !spec.console_log.is_absolute() {
        return Err(XmlError::Invalid(format!(
            "console log {} is not absolute",
            spec.console_log.display()
        )));
    }
    let mut disks = Vec::new();
    for (i, d) in spec.disks.iter().enumerate() {
        validate_object_name(&d.volume)?;
        disks.push(json!({
            "volume": spec.lab.object_name(&d.volume),
            "format": d.format,
            "target": virtio_disk_target(i),
        }));
    }
    if let Some(s) = &spec.seed_volume {
        validate_object_name(s)?;
    }
    let mut nics = Vec::new();
    for n in &spec.nics {
        let mac = normalize_mac(&n.mac).map_err(|e| XmlError::Invalid(e.to_string()))?;
        check_mtu(n.mtu)?;
        let (network, bridge) = match &n.source {
            NicSource::Network(net) => {
                validate_object_name(net)?;
                (Some(spec.lab.object_name(net)), None)
            }
            NicSource::Bridge(br) => {
                validate_bridge_name(br)?;
                (None, Some(br.clone()))
            }
        };
        nics.push(json!({"mac": mac, "network": network, "bridge": bridge, "mtu": n.mtu}));
    }
    render(
        "domain.xml.j2",
        json!({
            "name": spec.lab.object_name(&spec.name),
            "lab": spec.lab,
            "object": spec.name,
            "ns": METADATA_NAMESPACE,
            "domain_type": spec.domain_type,
            "cpus": spec.cpus,
            "memory_mib": spec.memory_mib,
            "pool": spec.lab.pool_name(),
            "disks": disks,
            "seed_volume": spec.seed_volume.as_ref().map(|s| spec.lab.object_name(s)),
            "seed_format": spec.seed_format,
            "nics": nics,
            "console_log": spec.console_log.display().to_string(),
            "tb_cache_mib": spec.tb_cache_mib,
            "guest_agent": spec.guest_agent,
            "seed_digest": spec.seed_digest.as_deref().filter(|d| d.bytes().all(|b| b.is_ascii_hexdigit())),
            "lease": spec.lease.as_ref().map(|l| json!({
                "owner": l.owner,
                "created": crate::state::utc_stamp_secs(l.created),
                "expires": l.expires.map(crate::state::utc_stamp_secs),
            })),
        }),
    )
}

/// kubelab's metadata element of a domain as `virDomainSetMetadata` takes
/// it (`<lab …/>`, no namespace prefix): the attributes of the element in
/// the domain's rendered XML, so both say the same.
pub fn lab_metadata_element(spec: &DomainSpec) -> Result<String, XmlError> {
    let xml = render_domain(spec)?;
    let doc = roxmltree::Document::parse(&xml)
        .map_err(|e| XmlError::Invalid(format!("rendered domain XML: {e}")))?;
    let lab = doc
        .descendants()
        .find(|n| {
            n.tag_name().namespace() == Some(METADATA_NAMESPACE) && n.tag_name().name() == "lab"
        })
        .ok_or_else(|| XmlError::Invalid("no kubelab metadata in the domain XML".into()))?;
    let attrs: String = lab
        .attributes()
        .filter(|a| a.namespace().is_none())
        .map(|a| format!(" {}=\"{}\"", a.name(), escape_xml(a.value())))
        .collect();
    Ok(format!("<lab{attrs}/>"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virthost::spec::*;
    use std::path::PathBuf;

    fn lab() -> LabName {
        LabName::new("lab1").unwrap()
    }

    fn metadata_lab(doc: &roxmltree::Document) -> Option<String> {
        doc.descendants()
            .find(|n| {
                n.tag_name().namespace() == Some(METADATA_NAMESPACE) && n.tag_name().name() == "lab"
            })
            .and_then(|n| n.attribute("name").map(str::to_string))
    }

    fn network() -> NetworkSpec {
        NetworkSpec {
            lab: lab(),
            name: "nat".into(),
            mode: NetworkMode::Nat,
            bridge: Some("klbr-lab1".into()),
            mtu: Some(1450),
            dns_domain: Some("lab1.test".into()),
            ipv4: Some(Ipv4Subnet {
                address: "192.168.150.1/24".parse().unwrap(),
                dhcp_range: Some((
                    "192.168.150.10".parse().unwrap(),
                    "192.168.150.99".parse().unwrap(),
                )),
            }),
            ipv6: Some(Ipv6Subnet {
                address: "fd00:150::1/64".parse().unwrap(),
                dhcp_range: Some((
                    "fd00:150::10".parse().unwrap(),
                    "fd00:150::ff".parse().unwrap(),
                )),
            }),
            reservations: vec![
                DhcpReservation {
                    mac: "52:54:00:AA:00:01".into(),
                    ip: "192.168.150.11".parse().unwrap(),
                    hostname: Some("vm1".into()),
                },
                DhcpReservation {
                    mac: "52:54:00:aa:00:01".into(),
                    ip: "fd00:150::11".parse().unwrap(),
                    hostname: None,
                },
            ],
        }
    }

    #[test]
    fn network_xml_parses_and_carries_ownership() {
        let xml = render_network(&network()).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "network");
        let name = root
            .children()
            .find(|n| n.has_tag_name("name"))
            .unwrap()
            .text();
        assert_eq!(name, Some("kl-lab1-nat"));
        assert_eq!(metadata_lab(&doc).as_deref(), Some("lab1"));
        let fwd = root.children().find(|n| n.has_tag_name("forward")).unwrap();
        assert_eq!(fwd.attribute("mode"), Some("nat"));
        let ips: Vec<_> = root.children().filter(|n| n.has_tag_name("ip")).collect();
        assert_eq!(ips.len(), 2);
        assert_eq!(ips[1].attribute("family"), Some("ipv6"));
        let hosts: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("host"))
            .collect();
        assert_eq!(hosts[0].attribute("mac"), Some("52:54:00:aa:00:01"));
        assert_eq!(
            hosts[1].attribute("id"),
            Some("00:03:00:01:52:54:00:aa:00:01")
        );
        insta::assert_snapshot!("network_nat", xml);
    }

    #[test]
    fn isolated_network_has_no_forward() {
        let mut n = network();
        n.mode = NetworkMode::Isolated;
        n.ipv6 = None;
        n.reservations.clear();
        n.bridge = None;
        let xml = render_network(&n).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert!(doc.descendants().all(|n| !n.has_tag_name("forward")));
        let br = doc
            .descendants()
            .find(|n| n.has_tag_name("bridge"))
            .unwrap();
        assert_eq!(br.attribute("name"), None);
    }

    #[test]
    fn network_input_is_checked() {
        let mut n = network();
        n.reservations[0].ip = "10.0.0.1".parse().unwrap();
        assert!(render_network(&n).is_err());
        let mut n = network();
        n.bridge = Some("a-bridge-name-too-long".into());
        assert!(render_network(&n).is_err());
        let mut n = network();
        n.name = "Bad<Name".into();
        assert!(render_network(&n).is_err());
    }

    #[test]
    fn pool_and_volume_xml() {
        let pool = render_pool(&PoolSpec {
            lab: lab(),
            path: "/var/lib/kubelab/pools/lab & co".into(),
        })
        .unwrap();
        let doc = roxmltree::Document::parse(&pool).unwrap();
        assert_eq!(
            doc.descendants()
                .find(|n| n.has_tag_name("path"))
                .unwrap()
                .text(),
            Some("/var/lib/kubelab/pools/lab & co")
        );
        assert!(pool.contains("lab &amp; co"));

        let vol = render_volume(&VolumeSpec {
            lab: lab(),
            name: "vm1-root.qcow2".into(),
            capacity_bytes: 10 << 30,
            format: VolumeFormat::Qcow2,
            backing: Some(BackingStore {
                path: "/var/lib/kubelab/images/debian-<x>.qcow2".into(),
                format: VolumeFormat::Qcow2,
            }),
        })
        .unwrap();
        let doc = roxmltree::Document::parse(&vol).unwrap();
        assert_eq!(
            doc.descendants()
                .find(|n| n.has_tag_name("name"))
                .unwrap()
                .text(),
            Some("kl-lab1-vm1-root.qcow2")
        );
        let bs = doc
            .descendants()
            .find(|n| n.has_tag_name("backingStore"))
            .unwrap();
        assert_eq!(
            bs.children()
                .find(|n| n.has_tag_name("path"))
                .unwrap()
                .text(),
            Some("/var/lib/kubelab/images/debian-<x>.qcow2")
        );
        insta::assert_snapshot!("volume_overlay", vol);

        let raw = render_volume(&VolumeSpec {
            lab: lab(),
            name: "vm1-spare1".into(),
            capacity_bytes: 1 << 30,
            format: VolumeFormat::Raw,
            backing: None,
        })
        .unwrap();
        let doc = roxmltree::Document::parse(&raw).unwrap();
        assert!(doc.descendants().all(|n| !n.has_tag_name("backingStore")));
    }

    fn domain() -> DomainSpec {
        DomainSpec {
            lab: lab(),
            name: "vm1".into(),
            domain_type: DomainType::Qemu,
            cpus: 1,
            memory_mib: 768,
            disks: vec![
                DiskSpec {
                    volume: "vm1-root.qcow2".into(),
                    format: VolumeFormat::Qcow2,
                },
                DiskSpec {
                    volume: "vm1-spare1".into(),
                    format: VolumeFormat::Raw,
                },
                DiskSpec {
                    volume: "vm1-spare2".into(),
                    format: VolumeFormat::Qcow2,
                },
            ],
            seed_volume: Some("vm1-seed.img".into()),
            seed_format: VolumeFormat::Qcow2,
            nics: vec![
                NicSpec {
                    mac: "52:54:00:aa:00:01".into(),
                    source: NicSource::Network("nat".into()),
                    mtu: None,
                },
                NicSpec {
                    mac: "52:54:00:aa:01:01".into(),
                    source: NicSource::Bridge("br0".into()),
                    mtu: Some(9000),
                },
            ],
            console_log: PathBuf::from("/var/lib/kubelab/pools/lab1/kl-lab1-vm1.console.log"),
            tb_cache_mib: Some(256),
            guest_agent: true,
            seed_digest: Some("0123abcd".into()),
            lease: None,
        }
    }

    #[test]
    fn domain_xml_parses_with_disks_in_order() {
        let xml = render_domain(&domain()).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert_eq!(doc.root_element().attribute("type"), Some("qemu"));
        assert_eq!(metadata_lab(&doc).as_deref(), Some("lab1"));
        let targets: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("target") && n.attribute("dev").is_some())
            .map(|n| (n.attribute("dev").unwrap(), n.attribute("bus").unwrap()))
            .collect();
        assert_eq!(
            targets,
            [
                ("vda", "virtio"),
                ("vdb", "virtio"),
                ("vdc", "virtio"),
                ("hda", "ide")
            ]
        );
        let sources: Vec<_> = doc
            .descendants()
            .filter(|n| n.has_tag_name("source") && n.attribute("volume").is_some())
            .map(|n| (n.attribute("pool").unwrap(), n.attribute("volume").unwrap()))
            .collect();
        assert_eq!(sources[0], ("kl-lab1-pool", "kl-lab1-vm1-root.qcow2"));
        assert_eq!(sources[3], ("kl-lab1-pool", "kl-lab1-vm1-seed.img"));
        assert!(doc.descendants().any(|n| n.has_tag_name("tb-cache")));
        assert!(
            doc.descendants()
                .any(|n| n.has_tag_name("source") && n.attribute("network") == Some("kl-lab1-nat"))
        );
        assert!(
            doc.descendants()
                .any(|n| n.has_tag_name("source") && n.attribute("bridge") == Some("br0"))
        );
        insta::assert_snapshot!("domain_qemu", xml);

        let mut kvm = domain();
        kvm.domain_type = DomainType::Kvm;
        let xml = render_domain(&kvm).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        assert!(doc.descendants().all(|n| !n.has_tag_name("tb-cache")));
    }

    #[test]
    fn values_are_escaped() {
        let mut d = domain();
        d.console_log = PathBuf::from("/tmp/a'b\"<c>&.log");
        let xml = render_domain(&d).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let log = doc.descendants().find(|n| n.has_tag_name("log")).unwrap();
        assert_eq!(log.attribute("file"), Some("/tmp/a'b\"<c>&.log"));
    }

    /// Validate against libvirt's own RelaxNG schemas with `virt-xml-validate`
    /// (libvirt-clients, which runs `xmllint` of libxml2-utils): both are
    /// installed by `scripts/deps.sh test`, and the test fails without them.
    fn libvirt_schema_valid(xml: &str, kind: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("{kind}.xml"));
        std::fs::write(&path, xml).unwrap();
        let out = std::process::Command::new("virt-xml-validate")
            .arg(&path)
            .arg(kind)
            .output()
            .expect("virt-xml-validate (libvirt-clients; `scripts/deps.sh test` installs it)");
        assert!(
            out.status.success(),
            "{kind} XML does not validate:\n{}{}\n{xml}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn rendered_xml_validates_against_libvirt_schemas() {
        libvirt_schema_valid(&render_network(&network()).unwrap(), "network");
        let mut iso = network();
        iso.mode = NetworkMode::Isolated;
        iso.ipv6 = None;
        iso.reservations.truncate(1);
        libvirt_schema_valid(&render_network(&iso).unwrap(), "network");
        libvirt_schema_valid(&render_domain(&domain()).unwrap(), "domain");
        let mut kvm = domain();
        kvm.domain_type = DomainType::Kvm;
        kvm.seed_volume = None;
        kvm.guest_agent = false;
        libvirt_schema_valid(&render_domain(&kvm).unwrap(), "domain");
        libvirt_schema_valid(
            &render_pool(&PoolSpec {
                lab: lab(),
                path: "/var/lib/kubelab/pools/lab1".into(),
            })
            .unwrap(),
            "storagepool",
        );
        let vol = VolumeSpec {
            lab: lab(),
            name: "vm1-root.qcow2".into(),
            capacity_bytes: 10 << 30,
            format: VolumeFormat::Qcow2,
            backing: Some(BackingStore {
                path: "/var/lib/kubelab/images/base.qcow2".into(),
                format: VolumeFormat::Qcow2,
            }),
        };
        libvirt_schema_valid(&render_volume(&vol).unwrap(), "storagevol");
    }

    #[test]
    fn disk_targets() {
        assert_eq!(virtio_disk_target(0), "vda");
        assert_eq!(virtio_disk_target(25), "vdz");
        assert_eq!(virtio_disk_target(26), "vdaa");
        assert_eq!(virtio_disk_target(27), "vdab");
    }
}
