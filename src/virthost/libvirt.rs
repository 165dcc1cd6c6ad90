//! The libvirt side of a virthost, through the `virt` crate (libvirt's C
//! library): networks, the lab's storage pool, volumes and domains, all
//! created from the desired state in [`super::spec`], and found again and
//! removed by ownership (see the [`super::spec`] module docs).
//!
//! [`Connection`] is blocking: every call may wait on the libvirt daemon (a
//! domain start under TCG takes a second, an upload as long as the bytes
//! take). From async code, leave the runtime thread first (tokio's
//! `block_in_place` or `spawn_blocking`); never call it on a runtime thread.
//!
//! libvirt's default error handler, which prints every error to stderr, is
//! switched off when the first connection opens: errors come back as
//! [`LibvirtError`] values only.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Once;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::enumutil::Enum;
use virt::error::ErrorNumber;
use virt::network::Network;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;
use virt::sys;

use super::spec::{
    DomainSpec, LabName, METADATA_NAMESPACE, NetworkSpec, PoolSpec, VolumeFormat, VolumeSpec,
};
use super::xml::{self, XmlError};

/// What went wrong talking to libvirt. Messages name the object and the
/// operation; they never contain seed contents.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    #[error("libvirt: {op}: {source}")]
    Call {
        op: String,
        #[source]
        source: virt::error::Error,
    },
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("{kind} {name} exists but does not belong to lab {lab}")]
    NotOwned {
        kind: &'static str,
        name: String,
        lab: String,
    },
    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("libvirt: {op}: {reason}")]
    Other { op: String, reason: String },
}

type Result<T> = std::result::Result<T, LibvirtError>;

fn call<T>(
    op: impl FnOnce() -> String,
    r: std::result::Result<T, virt::error::Error>,
) -> Result<T> {
    r.map_err(|source| LibvirtError::Call { op: op(), source })
}

/// Power a domain off if it runs (a domain stopped meanwhile is fine).
fn power_off(dom: &Domain, name: &str) -> Result<()> {
    if call(|| format!("state of domain {name}"), dom.is_active())? {
        match dom.destroy() {
            Ok(()) => {}
            Err(e) if is_code(&e, ErrorNumber::OperationInvalid) => {}
            Err(source) => {
                return Err(LibvirtError::Call {
                    op: format!("power off domain {name}"),
                    source,
                });
            }
        }
    }
    Ok(())
}

fn is_code(e: &virt::error::Error, code: ErrorNumber) -> bool {
    matches!(e.code(), Enum::Known(c) if c == code)
}

/// Lookup result: `Ok(None)` when libvirt says the object does not exist.
fn lookup<T>(
    op: impl FnOnce() -> String,
    r: std::result::Result<T, virt::error::Error>,
    missing: ErrorNumber,
) -> Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_code(&e, missing) => Ok(None),
        Err(source) => Err(LibvirtError::Call { op: op(), source }),
    }
}

/// The names of the listed objects (domains or networks) that carry the
/// lab's prefix and whose metadata names the lab. An object that vanishes
/// between listing and reading (another lab's `down`) is passed over.
fn owned_by<T>(
    lab: &LabName,
    kind: &str,
    objects: Vec<T>,
    missing: ErrorNumber,
    name: impl Fn(&T) -> std::result::Result<String, virt::error::Error>,
    xml: impl Fn(&T) -> std::result::Result<String, virt::error::Error>,
) -> Result<Vec<String>> {
    let prefix = lab.prefix();
    let mut names = Vec::new();
    for object in &objects {
        let name = call(|| format!("name of a {kind}"), name(object))?;
        if !name.starts_with(&prefix) {
            continue;
        }
        let xml = lookup(
            || format!("read XML of {kind} {name}"),
            xml(object),
            missing,
        )?;
        if xml.and_then(|x| metadata_lab(&x)).as_deref() == Some(lab.as_str()) {
            names.push(name);
        }
    }
    Ok(names)
}

/// The `name` attribute of kubelab's `<metadata>` element in an object's XML.
pub fn metadata_lab(xml_text: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml_text).ok()?;
    let metadata = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("metadata"))?;
    metadata
        .children()
        .find(|n| {
            n.tag_name().namespace() == Some(METADATA_NAMESPACE) && n.tag_name().name() == "lab"
        })
        .and_then(|n| n.attribute("name").map(str::to_string))
}

/// A VM's state as libvirt reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmState {
    Running,
    /// Blocked on a resource (still running).
    Blocked,
    Paused,
    ShuttingDown,
    Shutoff,
    Crashed,
    Suspended,
    Unknown,
}

/// Where [`Connection::domain_addresses`] looks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressSource {
    /// The DHCP leases of the libvirt networks the NICs are on (IPv4 and
    /// DHCPv6; SLAAC-only addresses are not leased).
    Lease,
    /// qemu-guest-agent inside the VM (needs [`DomainSpec::guest_agent`]);
    /// also sees static and SLAAC addresses and NICs on host bridges.
    Agent,
}

/// Addresses of one NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicAddresses {
    /// Lower-case MAC address.
    pub mac: String,
    /// Interface name (lease source: the host-side tap device; agent: the
    /// guest's name).
    pub interface: String,
    /// Addresses with prefix length.
    pub addresses: Vec<(IpAddr, u8)>,
}

/// The objects of one lab found on the virthost (full libvirt names).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabObjects {
    pub domains: Vec<String>,
    pub networks: Vec<String>,
    /// The lab's pool, when it exists.
    pub pool: Option<String>,
    /// Volumes in the lab's pool.
    pub volumes: Vec<String>,
}

impl LabObjects {
    /// Nothing of the lab is left.
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
            && self.networks.is_empty()
            && self.pool.is_none()
            && self.volumes.is_empty()
    }
}

/// A lab found on a virthost by its objects alone ([`Connection::labs`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LabListing {
    pub lab: String,
    /// As its domains' metadata says (none: a lab of an older kubelab, or
    /// one without domains).
    pub lease: Option<super::spec::Lease>,
    pub vms: usize,
    pub vms_running: usize,
    /// Memory of its VMs as defined, and of those running (MiB).
    pub memory_mib: u64,
    pub memory_running_mib: u64,
    pub networks: usize,
    /// What its pool's volumes take on the virthost's disk (bytes).
    pub disk_bytes: u64,
    /// Its pool's directory (`<storage_dir>/<lab>`): the lab's lock is
    /// beside it.
    pub pool_path: Option<String>,
}

/// One domain's snapshot ([`Connection::snapshots`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    pub name: String,
    /// Unix seconds.
    pub created: u64,
    /// The domain's state in it: `running`, `paused` (memory kept) or
    /// `shutoff` (disks only).
    pub state: String,
}

/// What [`Connection::teardown`] removed (full names), and what it could not.
#[derive(Clone, Debug, Default)]
pub struct TeardownReport {
    pub removed: LabObjects,
    /// One line per failure; teardown goes on after a failure.
    pub failures: Vec<String>,
}

/// A volume's size, format and backing file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeDetails {
    pub capacity_bytes: u64,
    /// `qcow2`, `raw`, … as libvirt reads the file.
    pub format: Option<String>,
    /// The image an overlay reads from.
    pub backing: Option<String>,
}

/// A piece of a VM's console log ([`Connection::console_log_read`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConsoleRead {
    /// The log's size when it was read.
    pub size: u64,
    pub bytes: Vec<u8>,
}

/// The file name of a VM's console log in the lab's pool
/// ([`PoolSpec::console_log_path`]).
fn console_log_name(lab: &LabName, vm: &str) -> String {
    format!("{}.console.log", lab.object_name(vm))
}

/// `xml` with `<uuid>` after its `<name>`: a redefinition of an existing
/// domain or network must carry the object's UUID.
fn with_uuid(mut xml: String, uuid: Option<&str>) -> String {
    if let Some(uuid) = uuid
        && let Some(at) = xml.find("</name>")
    {
        let at = at + "</name>".len();
        xml.insert_str(at, &format!("\n  <uuid>{}</uuid>", xml::escape_xml(uuid)));
    }
    xml
}

/// The host-side devices (`<target dev>`) of a live domain's NICs on the
/// libvirt network `network` (full name).
pub fn network_taps(live_xml: &str, network: &str) -> Vec<String> {
    let Ok(doc) = roxmltree::Document::parse(live_xml) else {
        return Vec::new();
    };
    doc.descendants()
        .filter(|n| n.has_tag_name("interface"))
        .filter(|i| {
            i.children()
                .any(|c| c.has_tag_name("source") && c.attribute("network") == Some(network))
        })
        .filter_map(|i| {
            i.children()
                .find(|c| c.has_tag_name("target"))
                .and_then(|t| t.attribute("dev"))
                .map(str::to_string)
        })
        .collect()
}

static QUIET_ERRORS: Once = Once::new();

/// A blocking connection to libvirt. Cheap to clone (a reference to the same
/// connection); libvirt connections may be used from several threads.
#[derive(Clone)]
pub struct Connection {
    conn: Connect,
    uri: String,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("uri", &self.uri)
            .finish()
    }
}

impl Connection {
    /// Open a connection, e.g. `qemu:///system` on the virthost itself.
    pub fn open(uri: &str) -> Result<Self> {
        QUIET_ERRORS.call_once(virt::error::clear_error_callback);
        let conn = call(|| format!("open {uri}"), Connect::open(Some(uri)))?;
        Ok(Connection {
            conn,
            uri: uri.to_string(),
        })
    }

    /// The URI this connection was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// libvirt's own version as (major, minor, micro).
    pub fn libvirt_version(&self) -> Result<(u32, u32, u32)> {
        let v = call(|| "get library version".into(), self.conn.lib_version())?;
        Ok((v / 1_000_000, (v / 1000) % 1000, v % 1000))
    }

    /// Whether libvirt offers domain type `kvm` for x86_64. This is what
    /// libvirt believes, not a proof that guests boot: on some hosts (nested
    /// or paravirtualized KVM) it is offered and guests hang. Callers that
    /// pick "auto" should confirm with a probe boot.
    pub fn kvm_offered(&self) -> bool {
        self.conn
            .domain_capabilities(None, Some("x86_64"), None, Some("kvm"), 0)
            .is_ok()
    }

    // ---- networks -------------------------------------------------------------

    fn find_network(&self, name: &str) -> Result<Option<Network>> {
        lookup(
            || format!("look up network {name}"),
            self.conn.lookup_network_by_name(name),
            ErrorNumber::NoNetwork,
        )
    }

    fn network_owner(&self, net: &Network, name: &str) -> Result<Option<String>> {
        let xml = call(|| format!("read XML of network {name}"), net.xml_desc(0))?;
        Ok(metadata_lab(&xml))
    }

    /// Define the network if it does not exist and start it if it is not
    /// active. An existing network of the lab is kept as it is; one that
    /// belongs to someone else is an error.
    pub fn ensure_network(&self, spec: &NetworkSpec) -> Result<()> {
        let name = spec.lab.object_name(&spec.name);
        let net = match self.find_network(&name)? {
            Some(net) => {
                if self.network_owner(&net, &name)?.as_deref() != Some(spec.lab.as_str()) {
                    return Err(LibvirtError::NotOwned {
                        kind: "network",
                        name,
                        lab: spec.lab.to_string(),
                    });
                }
                net
            }
            None => {
                let xml = xml::render_network(spec)?;
                call(
                    || format!("define network {name}"),
                    self.conn.define_network_xml(&xml),
                )?
            }
        };
        if !call(|| format!("state of network {name}"), net.is_active())? {
            call(|| format!("start network {name}"), net.create())?;
        }
        call(
            || format!("autostart network {name}"),
            net.set_autostart(true),
        )?;
        Ok(())
    }

    /// The bridge device of a lab network.
    pub fn network_bridge(&self, lab: &LabName, network: &str) -> Result<String> {
        let name = lab.object_name(network);
        let net = self.find_network(&name)?.ok_or(LibvirtError::NotFound {
            kind: "network",
            name: name.clone(),
        })?;
        call(|| format!("bridge of network {name}"), net.bridge_name())
    }

    /// The persistent XML of a lab network (`None`: it does not exist).
    pub fn network_xml(&self, lab: &LabName, network: &str) -> Result<Option<String>> {
        let name = lab.object_name(network);
        let Some(net) = self.find_network(&name)? else {
            return Ok(None);
        };
        if self.network_owner(&net, &name)?.as_deref() != Some(lab.as_str()) {
            return Err(LibvirtError::NotOwned {
                kind: "network",
                name,
                lab: lab.to_string(),
            });
        }
        call(
            || format!("read XML of network {name}"),
            net.xml_desc(sys::VIR_NETWORK_XML_INACTIVE),
        )
        .map(Some)
    }

    /// Redefine a lab network with new settings and, when it runs, restart
    /// it so they apply. Running domains' NICs on it lose their bridge in a
    /// restart (libvirt does not put them back): returns their host-side
    /// devices and the network's bridge, for the caller to re-attach
    /// (`ip link set DEV master BRIDGE` on the virthost).
    pub fn replace_network(&self, spec: &NetworkSpec) -> Result<Vec<(String, String)>> {
        let name = spec.lab.object_name(&spec.name);
        if self.network_xml(&spec.lab, &spec.name)?.is_none() {
            self.ensure_network(spec)?;
            return Ok(Vec::new());
        }
        let uuid = match self.find_network(&name)? {
            Some(net) => Some(call(
                || format!("UUID of network {name}"),
                net.uuid_string(),
            )?),
            None => None,
        };
        let xml = with_uuid(xml::render_network(spec)?, uuid.as_deref());
        let net = call(
            || format!("redefine network {name}"),
            self.conn.define_network_xml(&xml),
        )?;
        let mut taps = Vec::new();
        if call(|| format!("state of network {name}"), net.is_active())? {
            // the NICs plugged into it, from the running domains' live XML
            for dom in call(
                || "list running domains".into(),
                self.conn
                    .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE),
            )? {
                let Ok(live) = dom.xml_desc(0) else { continue };
                taps.extend(network_taps(&live, &name));
            }
            call(|| format!("stop network {name}"), net.destroy())?;
            call(|| format!("start network {name}"), net.create())?;
        } else {
            call(|| format!("start network {name}"), net.create())?;
        }
        call(
            || format!("autostart network {name}"),
            net.set_autostart(true),
        )?;
        let bridge = call(|| format!("bridge of network {name}"), net.bridge_name())?;
        Ok(taps.into_iter().map(|t| (t, bridge.clone())).collect())
    }

    /// Stop and undefine a lab network.
    pub fn remove_network(&self, lab: &LabName, network: &str) -> Result<()> {
        let name = lab.object_name(network);
        if self.network_xml(lab, network)?.is_none() {
            return Ok(());
        }
        self.stop_and_undefine_network(&name)
    }

    /// Stop a network by its full name if it runs, and undefine it if it is
    /// persistent; nothing when it does not exist.
    fn stop_and_undefine_network(&self, name: &str) -> Result<()> {
        let Some(net) = self.find_network(name)? else {
            return Ok(());
        };
        if call(|| format!("state of network {name}"), net.is_active())? {
            call(|| format!("stop network {name}"), net.destroy())?;
        }
        if call(
            || format!("persistence of network {name}"),
            net.is_persistent(),
        )? {
            call(|| format!("undefine network {name}"), net.undefine())?;
        }
        Ok(())
    }

    // ---- pool and volumes --------------------------------------------------------

    fn find_pool(&self, name: &str) -> Result<Option<StoragePool>> {
        lookup(
            || format!("look up pool {name}"),
            self.conn.lookup_storage_pool_by_name(name),
            ErrorNumber::NoStoragePool,
        )
    }

    fn lab_pool(&self, lab: &LabName) -> Result<StoragePool> {
        let name = lab.pool_name();
        self.find_pool(&name)?
            .ok_or(LibvirtError::NotFound { kind: "pool", name })
    }

    /// The directory of the lab's pool (`None`: no pool).
    pub fn pool_path(&self, lab: &LabName) -> Result<Option<String>> {
        let name = lab.pool_name();
        let Some(pool) = self.find_pool(&name)? else {
            return Ok(None);
        };
        let xml = call(|| format!("read XML of pool {name}"), pool.xml_desc(0))?;
        Ok(roxmltree::Document::parse(&xml).ok().and_then(|d| {
            d.descendants()
                .find(|n| n.has_tag_name("target"))
                .and_then(|t| t.children().find(|n| n.has_tag_name("path")))
                .and_then(|p| p.text())
                .map(|t| t.trim().to_string())
        }))
    }

    /// Define, build (create the directory) and start the lab's pool, unless
    /// it exists; start it when it is inactive; refresh it.
    pub fn ensure_pool(&self, spec: &PoolSpec) -> Result<()> {
        let name = spec.lab.pool_name();
        let pool = match self.find_pool(&name)? {
            Some(p) => p,
            None => {
                let xml = xml::render_pool(spec)?;
                let p = call(
                    || format!("define pool {name}"),
                    self.conn.define_storage_pool_xml(&xml, 0),
                )?;
                call(
                    || format!("build pool {name}"),
                    p.build(sys::VIR_STORAGE_POOL_BUILD_NEW),
                )?;
                p
            }
        };
        if !call(|| format!("state of pool {name}"), pool.is_active())? {
            call(|| format!("start pool {name}"), pool.create(0))?;
        }
        call(
            || format!("autostart pool {name}"),
            pool.set_autostart(true),
        )?;
        call(|| format!("refresh pool {name}"), pool.refresh(0))?;
        Ok(())
    }

    fn find_volume(&self, pool: &StoragePool, name: &str) -> Result<Option<StorageVol>> {
        lookup(
            || format!("look up volume {name}"),
            pool.lookup_storage_vol_by_name(name),
            ErrorNumber::NoStorageVolume,
        )
    }

    /// Create a volume in the lab's pool unless it exists; returns its path.
    /// An existing volume is kept as it is (not compared with the spec).
    pub fn ensure_volume(&self, spec: &VolumeSpec) -> Result<String> {
        let pool = self.lab_pool(&spec.lab)?;
        let name = spec.lab.object_name(&spec.name);
        let vol = match self.find_volume(&pool, &name)? {
            Some(v) => v,
            None => {
                let xml = xml::render_volume(spec)?;
                call(
                    || format!("create volume {name}"),
                    StorageVol::create_xml(&pool, &xml, 0),
                )?
            }
        };
        call(|| format!("path of volume {name}"), vol.path())
    }

    /// Create (or replace) a raw volume holding exactly `data`, uploaded
    /// through a libvirt stream (works on remote virthosts too). Used for
    /// seed images; `data` is never logged.
    pub fn put_volume_bytes(&self, lab: &LabName, volume: &str, data: &[u8]) -> Result<String> {
        let pool = self.lab_pool(lab)?;
        let name = lab.object_name(volume);
        if let Some(old) = self.find_volume(&pool, &name)? {
            call(|| format!("delete old volume {name}"), old.delete(0))?;
        }
        let size = data.len().max(512) as u64;
        let xml = xml::render_volume(&VolumeSpec {
            lab: lab.clone(),
            name: volume.to_string(),
            capacity_bytes: size,
            format: VolumeFormat::Raw,
            backing: None,
        })?;
        let vol = call(
            || format!("create volume {name}"),
            StorageVol::create_xml(&pool, &xml, 0),
        )?;
        let stream = call(
            || format!("open upload stream for {name}"),
            Stream::new(&self.conn, 0),
        )?;
        call(
            || format!("upload to volume {name}"),
            vol.upload(&stream, 0, data.len() as u64, 0),
        )?;
        let mut sent = 0usize;
        while sent < data.len() {
            let end = (sent + 256 * 1024).min(data.len());
            match stream.send(&data[sent..end]) {
                Ok(n) if n > 0 => sent += n as usize,
                Ok(_) => {
                    let _ = stream.abort();
                    return Err(LibvirtError::Other {
                        op: format!("upload to volume {name}"),
                        reason: "stream accepted no data".into(),
                    });
                }
                Err(source) => {
                    let _ = stream.abort();
                    return Err(LibvirtError::Call {
                        op: format!("upload to volume {name}"),
                        source,
                    });
                }
            }
        }
        call(
            || format!("finish upload to volume {name}"),
            stream.finish(),
        )?;
        call(|| format!("path of volume {name}"), vol.path())
    }

    /// A seed image as a qcow2 volume (a snapshot with memory needs every
    /// writable disk in qcow2): the bytes go up as a raw volume, libvirt
    /// converts it (`qemu-img convert` in the pool), the raw one goes.
    pub fn put_seed(&self, lab: &LabName, volume: &str, data: &[u8]) -> Result<String> {
        let upload = format!("{volume}.upload");
        self.put_volume_bytes(lab, &upload, data)?;
        let pool = self.lab_pool(lab)?;
        let name = lab.object_name(volume);
        let raw_name = lab.object_name(&upload);
        let raw = self
            .find_volume(&pool, &raw_name)?
            .ok_or(LibvirtError::NotFound {
                kind: "volume",
                name: raw_name.clone(),
            })?;
        let converted = (|| {
            if let Some(old) = self.find_volume(&pool, &name)? {
                call(|| format!("delete old volume {name}"), old.delete(0))?;
            }
            let xml = xml::render_volume(&VolumeSpec {
                lab: lab.clone(),
                name: volume.to_string(),
                capacity_bytes: data.len().max(512) as u64,
                format: VolumeFormat::Qcow2,
                backing: None,
            })?;
            let vol = call(
                || format!("convert {raw_name} into the qcow2 volume {name}"),
                StorageVol::create_xml_from(&pool, &xml, &raw, 0),
            )?;
            call(|| format!("path of volume {name}"), vol.path())
        })();
        let _ = raw.delete(0);
        converted
    }

    /// Size and backing file of a volume in the lab's pool (`None`: no
    /// such volume).
    pub fn volume_details(&self, lab: &LabName, volume: &str) -> Result<Option<VolumeDetails>> {
        let pool = self.lab_pool(lab)?;
        let name = lab.object_name(volume);
        let Some(vol) = self.find_volume(&pool, &name)? else {
            return Ok(None);
        };
        let info = call(|| format!("size of volume {name}"), vol.info())?;
        let xml = call(|| format!("read XML of volume {name}"), vol.xml_desc(0))?;
        let doc = roxmltree::Document::parse(&xml).ok();
        let backing = doc.as_ref().and_then(|d| {
            d.root_element()
                .children()
                .find(|n| n.has_tag_name("backingStore"))
                .and_then(|b| b.children().find(|n| n.has_tag_name("path")))
                .and_then(|p| p.text())
                .map(|t| t.trim().to_string())
        });
        let format = doc.as_ref().and_then(|d| {
            d.root_element()
                .children()
                .find(|n| n.has_tag_name("target"))
                .and_then(|t| t.children().find(|n| n.has_tag_name("format")))
                .and_then(|f| f.attribute("type"))
                .map(str::to_string)
        });
        Ok(Some(VolumeDetails {
            capacity_bytes: info.capacity,
            format,
            backing,
        }))
    }

    /// Grow a volume to `bytes`. A disk of a running domain is grown
    /// through QEMU (`block_resize` of its `dev`), so the guest sees the new
    /// size at once; otherwise the image itself.
    pub fn grow_volume(
        &self,
        lab: &LabName,
        volume: &str,
        bytes: u64,
        in_use: Option<(&str, &str)>,
    ) -> Result<()> {
        let name = lab.object_name(volume);
        if let Some((vm, dev)) = in_use {
            let dom = self.owned_domain(lab, vm)?;
            if call(
                || format!("state of domain {}", lab.object_name(vm)),
                dom.is_active(),
            )? {
                return call(
                    || format!("grow {dev} of {} ({name})", lab.object_name(vm)),
                    dom.block_resize(dev, bytes, sys::VIR_DOMAIN_BLOCK_RESIZE_BYTES),
                );
            }
        }
        let pool = self.lab_pool(lab)?;
        let vol = self
            .find_volume(&pool, &name)?
            .ok_or(LibvirtError::NotFound {
                kind: "volume",
                name: name.clone(),
            })?;
        call(|| format!("grow volume {name}"), vol.resize(bytes, 0))
    }

    /// Delete a volume of the lab's pool (full name; no-op when absent).
    pub fn delete_volume(&self, lab: &LabName, full_name: &str) -> Result<()> {
        let pool = self.lab_pool(lab)?;
        if let Some(vol) = self.find_volume(&pool, full_name)? {
            call(|| format!("delete volume {full_name}"), vol.delete(0))?;
        }
        Ok(())
    }

    /// Read up to `max_bytes` from the end of a file in the lab's pool, e.g.
    /// a console log (see [`PoolSpec::console_log_path`]). The pool is
    /// refreshed first so that new files are seen. Invalid UTF-8 is replaced.
    pub fn pool_file_tail(&self, lab: &LabName, file_name: &str, max_bytes: u64) -> Result<String> {
        let pool = self.lab_pool(lab)?;
        call(
            || format!("refresh pool {}", lab.pool_name()),
            pool.refresh(0),
        )?;
        let vol = self
            .find_volume(&pool, file_name)?
            .ok_or(LibvirtError::NotFound {
                kind: "volume",
                name: file_name.to_string(),
            })?;
        let size = call(|| format!("size of {file_name}"), vol.info())?.capacity;
        let offset = size.saturating_sub(max_bytes);
        let bytes = self.download_volume(&vol, file_name, offset, size - offset)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `length` bytes of a volume from `offset` (fewer when it is shorter).
    fn download_volume(
        &self,
        vol: &StorageVol,
        file_name: &str,
        offset: u64,
        length: u64,
    ) -> Result<Vec<u8>> {
        if length == 0 {
            return Ok(Vec::new());
        }
        let stream = call(
            || format!("open download stream for {file_name}"),
            Stream::new(&self.conn, 0),
        )?;
        call(
            || format!("download {file_name}"),
            vol.download(&stream, offset, length, 0),
        )?;
        let mut out = Vec::with_capacity(usize::try_from(length).unwrap_or(0).min(1 << 20));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.recv(&mut buf) {
                Ok(0) => break,
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n as usize]),
                Ok(_) => break,
                Err(source) => {
                    let _ = stream.abort();
                    return Err(LibvirtError::Call {
                        op: format!("download {file_name}"),
                        source,
                    });
                }
            }
        }
        call(
            || format!("finish download of {file_name}"),
            stream.finish(),
        )?;
        Ok(out)
    }

    /// The console log of a VM (last `max_bytes`), when its
    /// [`DomainSpec::console_log`] is [`PoolSpec::console_log_path`].
    pub fn console_log_tail(&self, lab: &LabName, vm: &str, max_bytes: u64) -> Result<String> {
        self.pool_file_tail(lab, &console_log_name(lab, vm), max_bytes)
    }

    /// The console log of a VM from byte `offset` on (at most `max_bytes`),
    /// for following it as it grows: the bytes and the log's size now. No
    /// log yet (the VM never started) reads as empty. The log starts anew
    /// at every start of the domain (`append="off"` in the domain XML), so
    /// a size below `offset` means it was started again since.
    pub fn console_log_read(
        &self,
        lab: &LabName,
        vm: &str,
        offset: u64,
        max_bytes: u64,
    ) -> Result<ConsoleRead> {
        let file_name = console_log_name(lab, vm);
        let pool = self.lab_pool(lab)?;
        // a pool refresh stats every volume of the lab: only when the log
        // is not known yet (libvirt refreshes a known volume's size itself
        // when asked for its info)
        let vol = match self.find_volume(&pool, &file_name)? {
            Some(v) => Some(v),
            None => {
                call(
                    || format!("refresh pool {}", lab.pool_name()),
                    pool.refresh(0),
                )?;
                self.find_volume(&pool, &file_name)?
            }
        };
        let Some(vol) = vol else {
            return Ok(ConsoleRead::default());
        };
        let size = call(|| format!("size of {file_name}"), vol.info())?.capacity;
        let length = size.saturating_sub(offset).min(max_bytes);
        let bytes = self.download_volume(&vol, &file_name, offset.min(size), length)?;
        Ok(ConsoleRead { size, bytes })
    }

    // ---- domains ----------------------------------------------------------------

    fn find_domain(&self, name: &str) -> Result<Option<Domain>> {
        lookup(
            || format!("look up domain {name}"),
            self.conn.lookup_domain_by_name(name),
            ErrorNumber::NoDomain,
        )
    }

    fn owned_domain(&self, lab: &LabName, vm: &str) -> Result<Domain> {
        let name = lab.object_name(vm);
        let dom = self.find_domain(&name)?.ok_or(LibvirtError::NotFound {
            kind: "domain",
            name: name.clone(),
        })?;
        let xml = call(|| format!("read XML of domain {name}"), dom.xml_desc(0))?;
        if metadata_lab(&xml).as_deref() != Some(lab.as_str()) {
            return Err(LibvirtError::NotOwned {
                kind: "domain",
                name,
                lab: lab.to_string(),
            });
        }
        Ok(dom)
    }

    /// The persistent (inactive) XML of a lab's domain: what its next boot
    /// uses, so a redefinition shows even while it runs.
    pub fn domain_xml(&self, lab: &LabName, vm: &str) -> Result<String> {
        let dom = self.owned_domain(lab, vm)?;
        call(
            || format!("read XML of domain {}", lab.object_name(vm)),
            dom.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE),
        )
    }

    /// The live XML of a lab's domain (the persistent one when it is off).
    pub fn domain_live_xml(&self, lab: &LabName, vm: &str) -> Result<String> {
        let dom = self.owned_domain(lab, vm)?;
        call(
            || format!("read XML of domain {}", lab.object_name(vm)),
            dom.xml_desc(0),
        )
    }

    /// Define (or redefine) a domain. Redefining a running domain changes
    /// its next boot only. A same-named domain of someone else is an error.
    pub fn define_domain(&self, spec: &DomainSpec) -> Result<()> {
        let name = spec.lab.object_name(&spec.name);
        let mut uuid = None;
        if self.find_domain(&name)?.is_some() {
            let dom = self.owned_domain(&spec.lab, &spec.name)?;
            uuid = Some(call(
                || format!("UUID of domain {name}"),
                dom.uuid_string(),
            )?);
        }
        let xml = with_uuid(xml::render_domain(spec)?, uuid.as_deref());
        call(
            || format!("define domain {name}"),
            self.conn.define_domain_xml(&xml),
        )?;
        Ok(())
    }

    /// Rewrite kubelab's metadata element of a lab's domain from `spec`
    /// (its lease, say) in the persistent definition, and in the running
    /// domain too: nothing restarts.
    pub fn set_lab_metadata(&self, spec: &DomainSpec) -> Result<()> {
        let dom = self.owned_domain(&spec.lab, &spec.name)?;
        let name = spec.lab.object_name(&spec.name);
        let element = xml::lab_metadata_element(spec)?;
        let live = call(|| format!("state of domain {name}"), dom.is_active())?;
        let flags =
            sys::VIR_DOMAIN_AFFECT_CONFIG | if live { sys::VIR_DOMAIN_AFFECT_LIVE } else { 0 };
        call(
            || format!("set the metadata of domain {name}"),
            dom.set_metadata(
                sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
                Some(&element),
                Some("kubelab"),
                Some(METADATA_NAMESPACE),
                flags,
            ),
        )
    }

    /// Start a domain unless it is running.
    pub fn start_domain(&self, lab: &LabName, vm: &str) -> Result<()> {
        let dom = self.owned_domain(lab, vm)?;
        let name = lab.object_name(vm);
        if !call(|| format!("state of domain {name}"), dom.is_active())? {
            call(|| format!("start domain {name}"), dom.create())?;
        }
        Ok(())
    }

    /// Power a running domain off hard and start it again (a reset that
    /// also starts the serial console log anew); starts a stopped one.
    pub fn restart_domain(&self, lab: &LabName, vm: &str) -> Result<()> {
        let dom = self.owned_domain(lab, vm)?;
        let name = lab.object_name(vm);
        power_off(&dom, &name)?;
        call(|| format!("start domain {name}"), dom.create())?;
        Ok(())
    }

    /// Pause a running domain (its vCPUs stop; memory and devices stay).
    pub fn suspend_domain(&self, lab: &LabName, vm: &str) -> Result<()> {
        let dom = self.owned_domain(lab, vm)?;
        call(
            || format!("pause domain {}", lab.object_name(vm)),
            dom.suspend(),
        )
    }

    /// Let a paused domain run again.
    pub fn resume_domain(&self, lab: &LabName, vm: &str) -> Result<()> {
        let dom = self.owned_domain(lab, vm)?;
        call(
            || format!("resume domain {}", lab.object_name(vm)),
            dom.resume(),
        )
    }

    /// An internal snapshot of a lab's domain: disks, and its memory when
    /// it runs (or is paused). Every writable disk must be qcow2.
    pub fn create_snapshot(
        &self,
        lab: &LabName,
        vm: &str,
        name: &str,
        description: &str,
    ) -> Result<()> {
        let dom = self.owned_domain(lab, vm)?;
        let xml = format!(
            "<domainsnapshot><name>{}</name><description>{}</description></domainsnapshot>",
            xml::escape_xml(name),
            xml::escape_xml(description)
        );
        call(
            || format!("snapshot {name} of domain {}", lab.object_name(vm)),
            dom.create_snapshot_xml(&xml, 0),
        )
        .map(|_| ())
    }

    /// Bring a lab's domain back to a snapshot: a running (or paused)
    /// snapshot comes back paused when `paused`, a disks-only one shut off.
    pub fn revert_snapshot(&self, lab: &LabName, vm: &str, name: &str, paused: bool) -> Result<()> {
        let dom = self.owned_domain(lab, vm)?;
        let full = lab.object_name(vm);
        let snap = call(
            || format!("snapshot {name} of domain {full}"),
            Domain::lookup_snapshot_by_name(&dom, name, 0),
        )?;
        let flags = if paused {
            sys::VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED
        } else {
            0
        };
        call(
            || format!("revert domain {full} to snapshot {name}"),
            snap.revert(flags),
        )
    }

    /// Delete a snapshot of a lab's domain (its data in the qcow2 files
    /// and libvirt's metadata); no-op when it has none of that name.
    pub fn delete_snapshot(&self, lab: &LabName, vm: &str, name: &str) -> Result<()> {
        let dom = self.owned_domain(lab, vm)?;
        let full = lab.object_name(vm);
        match Domain::lookup_snapshot_by_name(&dom, name, 0) {
            Ok(snap) => call(
                || format!("delete snapshot {name} of domain {full}"),
                snap.delete(0),
            ),
            Err(e) if is_code(&e, ErrorNumber::NoDomainSnapshot) => Ok(()),
            Err(source) => Err(LibvirtError::Call {
                op: format!("snapshot {name} of domain {full}"),
                source,
            }),
        }
    }

    /// The snapshots of a lab's domain, oldest first.
    pub fn snapshots(&self, lab: &LabName, vm: &str) -> Result<Vec<SnapshotInfo>> {
        let dom = self.owned_domain(lab, vm)?;
        let full = lab.object_name(vm);
        let mut out = Vec::new();
        for snap in call(
            || format!("snapshots of domain {full}"),
            dom.list_all_snapshots(0),
        )? {
            let xml = call(|| format!("a snapshot of domain {full}"), snap.xml_desc(0))?;
            let Ok(doc) = roxmltree::Document::parse(&xml) else {
                continue;
            };
            let text = |tag: &str| {
                doc.root_element()
                    .children()
                    .find(|n| n.has_tag_name(tag))
                    .and_then(|n| n.text())
                    .map(|t| t.trim().to_string())
            };
            out.push(SnapshotInfo {
                name: text("name").unwrap_or_default(),
                created: text("creationTime")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0),
                state: text("state").unwrap_or_default(),
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        Ok(out)
    }

    /// Set a domain's clock from the host's through its guest agent (after
    /// a revert the guest's clock is the snapshot's).
    pub fn sync_guest_time(&self, lab: &LabName, vm: &str) -> Result<()> {
        let dom = self.owned_domain(lab, vm)?;
        call(
            || format!("set the time of domain {}", lab.object_name(vm)),
            dom.set_time(0, 0, sys::VIR_DOMAIN_TIME_SYNC),
        )
    }

    /// The driver formats of a domain's disks (`device="disk"`), by target.
    pub fn disk_formats(&self, lab: &LabName, vm: &str) -> Result<Vec<(String, String)>> {
        let xml = self.domain_xml(lab, vm)?;
        let doc = roxmltree::Document::parse(&xml)
            .map_err(|e| XmlError::Invalid(format!("domain {}: {e}", lab.object_name(vm))))?;
        Ok(doc
            .descendants()
            .filter(|n| n.has_tag_name("disk") && n.attribute("device") == Some("disk"))
            .map(|d| {
                let find = |tag: &str, attr: &str| {
                    d.children()
                        .find(|n| n.has_tag_name(tag))
                        .and_then(|n| n.attribute(attr))
                        .unwrap_or("?")
                        .to_string()
                };
                (find("target", "dev"), find("driver", "type"))
            })
            .collect())
    }

    /// Hard power-off of a domain (no-op when it is not running).
    pub fn stop_domain(&self, lab: &LabName, vm: &str) -> Result<()> {
        let dom = self.owned_domain(lab, vm)?;
        power_off(&dom, &lab.object_name(vm))
    }

    /// Power off and undefine a lab's domain (no-op when absent).
    pub fn remove_domain(&self, lab: &LabName, vm: &str) -> Result<()> {
        let name = lab.object_name(vm);
        if self.find_domain(&name)?.is_none() {
            return Ok(());
        }
        let dom = self.owned_domain(lab, vm)?;
        power_off(&dom, &name)?;
        let flags = sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            | sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
            | sys::VIR_DOMAIN_UNDEFINE_NVRAM;
        if dom.undefine_flags(flags).is_err() && self.find_domain(&name)?.is_some() {
            call(|| format!("undefine domain {name}"), dom.undefine())?;
        }
        Ok(())
    }

    /// The state of a lab's VM.
    pub fn domain_state(&self, lab: &LabName, vm: &str) -> Result<VmState> {
        let dom = self.owned_domain(lab, vm)?;
        let info = call(
            || format!("state of domain {}", lab.object_name(vm)),
            dom.info(),
        )?;
        Ok(match info.state {
            Enum::Known(DomainState::Running) => VmState::Running,
            Enum::Known(DomainState::Blocked) => VmState::Blocked,
            Enum::Known(DomainState::Paused) => VmState::Paused,
            Enum::Known(DomainState::Shutdown) => VmState::ShuttingDown,
            Enum::Known(DomainState::Shutoff) => VmState::Shutoff,
            Enum::Known(DomainState::Crashed) => VmState::Crashed,
            Enum::Known(DomainState::PMSuspended) => VmState::Suspended,
            _ => VmState::Unknown,
        })
    }

    /// Addresses of a VM's NICs, from DHCP leases or from the guest agent.
    /// Loopback and IPv6 link-local addresses are left out.
    pub fn domain_addresses(
        &self,
        lab: &LabName,
        vm: &str,
        source: AddressSource,
    ) -> Result<Vec<NicAddresses>> {
        let dom = self.owned_domain(lab, vm)?;
        let src = match source {
            AddressSource::Lease => sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
            AddressSource::Agent => sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
        };
        let ifaces = call(
            || format!("addresses of domain {} ({source:?})", lab.object_name(vm)),
            dom.interface_addresses(src, 0),
        )?;
        let mut by_mac: BTreeMap<String, NicAddresses> = BTreeMap::new();
        for iface in ifaces {
            let Some(mac) = iface.hwaddr.map(|m| m.to_ascii_lowercase()) else {
                continue;
            };
            if mac == "00:00:00:00:00:00" {
                continue;
            }
            let entry = by_mac.entry(mac.clone()).or_insert_with(|| NicAddresses {
                mac,
                interface: iface.name.clone(),
                addresses: Vec::new(),
            });
            for a in iface.addrs {
                let Ok(ip) = a.addr.parse::<IpAddr>() else {
                    continue;
                };
                let skip = ip.is_loopback()
                    || matches!(ip, IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80);
                if !skip && !entry.addresses.iter().any(|(x, _)| *x == ip) {
                    entry.addresses.push((ip, a.prefix.min(128) as u8));
                }
            }
        }
        Ok(by_mac.into_values().collect())
    }

    /// Addresses from leases, falling back to the guest agent for NICs the
    /// leases do not cover (static addressing, host bridges). Agent errors
    /// (no agent, agent not up yet) are not errors here: the lease answer
    /// is returned as it is.
    pub fn domain_addresses_any(&self, lab: &LabName, vm: &str) -> Result<Vec<NicAddresses>> {
        let mut nics = self.domain_addresses(lab, vm, AddressSource::Lease)?;
        if let Ok(agent) = self.domain_addresses(lab, vm, AddressSource::Agent) {
            for a in agent {
                match nics.iter_mut().find(|n| n.mac == a.mac) {
                    Some(n) => {
                        for addr in a.addresses {
                            if !n.addresses.iter().any(|(x, _)| *x == addr.0) {
                                n.addresses.push(addr);
                            }
                        }
                    }
                    None => nics.push(a),
                }
            }
        }
        Ok(nics)
    }

    /// Poll the leases until `want` says the addresses are enough, or the
    /// timeout passes (then the last answer is returned as an error).
    pub fn wait_for_addresses(
        &self,
        lab: &LabName,
        vm: &str,
        timeout: Duration,
        want: impl Fn(&[NicAddresses]) -> bool,
    ) -> Result<Vec<NicAddresses>> {
        let start = Instant::now();
        loop {
            let nics = self.domain_addresses_any(lab, vm)?;
            if want(&nics) {
                return Ok(nics);
            }
            if start.elapsed() >= timeout {
                return Err(LibvirtError::Other {
                    op: format!("wait for addresses of {}", lab.object_name(vm)),
                    reason: format!(
                        "not there after {}s; last seen: {nics:?}",
                        timeout.as_secs()
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    // ---- ownership and teardown ---------------------------------------------------

    /// Every kubelab lab on this virthost, from libvirt alone: domains and
    /// networks whose metadata names a lab (and whose name carries that
    /// lab's prefix), and pools named as a lab's; sorted by name.
    /// How many networks and domains libvirt runs, whoever's they are
    /// (`release.sh` gives nothing back while there are any).
    pub fn running(&self) -> Result<(usize, usize)> {
        let networks = call(
            || "list active networks".into(),
            self.conn
                .list_all_networks(sys::VIR_CONNECT_LIST_NETWORKS_ACTIVE),
        )?;
        let domains = call(
            || "list active domains".into(),
            self.conn
                .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE),
        )?;
        Ok((networks.len(), domains.len()))
    }

    pub fn labs(&self) -> Result<Vec<LabListing>> {
        let mut labs: BTreeMap<String, LabListing> = BTreeMap::new();
        let owner_of = |name: &str, xml: &str| -> Option<LabName> {
            let lab = LabName::new(&metadata_lab(xml)?).ok()?;
            name.starts_with(&lab.prefix()).then_some(lab)
        };
        for dom in call(|| "list domains".into(), self.conn.list_all_domains(0))? {
            let (Ok(name), Ok(xml)) = (dom.name(), dom.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE))
            else {
                continue; // gone meanwhile
            };
            let Some(lab) = owner_of(&name, &xml) else {
                continue;
            };
            let shape = super::shape::domain_shape(&xml);
            let running = dom.is_active().unwrap_or(false);
            let entry = labs.entry(lab.to_string()).or_default();
            entry.vms += 1;
            let memory = shape.as_ref().map(|s| s.memory_mib).unwrap_or(0);
            entry.memory_mib += memory;
            if running {
                entry.vms_running += 1;
                entry.memory_running_mib += memory;
            }
            if entry.lease.is_none() {
                entry.lease = shape.and_then(|s| s.lease);
            }
        }
        for net in call(|| "list networks".into(), self.conn.list_all_networks(0))? {
            let (Ok(name), Ok(xml)) = (net.name(), net.xml_desc(0)) else {
                continue;
            };
            if let Some(lab) = owner_of(&name, &xml) {
                labs.entry(lab.to_string()).or_default().networks += 1;
            }
        }
        for pool in call(|| "list pools".into(), self.conn.list_all_storage_pools(0))? {
            let Ok(name) = pool.name() else { continue };
            let Some(lab) = name
                .strip_prefix(super::spec::NAME_PREFIX)
                .and_then(|n| n.strip_suffix("-pool"))
                .and_then(|n| LabName::new(n).ok())
                .filter(|l| l.pool_name() == name)
            else {
                continue;
            };
            let entry = labs.entry(lab.to_string()).or_default();
            if pool.is_active().unwrap_or(false) {
                // a directory pool's own figures are its file system's: add
                // up its volumes instead
                let _ = pool.refresh(0);
                entry.disk_bytes = pool
                    .list_all_volumes(0)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|v| v.info().ok())
                    .map(|i| i.allocation)
                    .sum();
            }
            entry.pool_path = self.pool_path(&lab).ok().flatten();
        }
        Ok(labs
            .into_iter()
            .map(|(lab, l)| LabListing { lab, ..l })
            .collect())
    }

    /// Every object of the lab on this virthost: domains and networks whose
    /// name has the lab's prefix *and* whose metadata names the lab, the
    /// lab's pool and every volume in it.
    pub fn lab_objects(&self, lab: &LabName) -> Result<LabObjects> {
        let mut found = LabObjects {
            domains: owned_by(
                lab,
                "domain",
                call(|| "list domains".into(), self.conn.list_all_domains(0))?,
                ErrorNumber::NoDomain,
                |d| d.name(),
                |d| d.xml_desc(0),
            )?,
            networks: owned_by(
                lab,
                "network",
                call(|| "list networks".into(), self.conn.list_all_networks(0))?,
                ErrorNumber::NoNetwork,
                |n| n.name(),
                |n| n.xml_desc(0),
            )?,
            ..LabObjects::default()
        };
        let pool_name = lab.pool_name();
        if let Some(pool) = self.find_pool(&pool_name)? {
            if call(|| format!("state of pool {pool_name}"), pool.is_active())? {
                call(|| format!("refresh pool {pool_name}"), pool.refresh(0))?;
                found.volumes = call(
                    || format!("list volumes of {pool_name}"),
                    pool.list_volumes(),
                )?;
                found.volumes.sort();
            }
            found.pool = Some(pool_name);
        }
        found.domains.sort();
        found.networks.sort();
        Ok(found)
    }

    /// Remove everything the lab owns: power off and undefine its domains
    /// (with snapshot/checkpoint metadata and NVRAM), stop and undefine its
    /// networks, delete every volume of its pool, then remove the pool and its
    /// directory. Nothing else is touched. Goes on after failures and lists
    /// them; call again to retry.
    pub fn teardown(&self, lab: &LabName) -> Result<TeardownReport> {
        let objects = self.lab_objects(lab)?;
        let mut report = TeardownReport::default();
        for name in &objects.domains {
            let r = (|| -> Result<()> {
                let Some(dom) = self.find_domain(name)? else {
                    return Ok(());
                };
                power_off(&dom, name)?;
                let flags = sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                    | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                    | sys::VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                    | sys::VIR_DOMAIN_UNDEFINE_NVRAM;
                if dom.undefine_flags(flags).is_err() {
                    // transient domains vanish with destroy; older daemons may refuse a flag
                    if self.find_domain(name)?.is_some() {
                        call(|| format!("undefine domain {name}"), dom.undefine())?;
                    }
                }
                Ok(())
            })();
            match r {
                Ok(()) => report.removed.domains.push(name.clone()),
                Err(e) => report.failures.push(e.to_string()),
            }
        }
        for name in &objects.networks {
            match self.stop_and_undefine_network(name) {
                Ok(()) => report.removed.networks.push(name.clone()),
                Err(e) => report.failures.push(e.to_string()),
            }
        }
        if let Some(pool_name) = &objects.pool {
            let r = (|| -> Result<()> {
                let Some(pool) = self.find_pool(pool_name)? else {
                    return Ok(());
                };
                if !call(|| format!("state of pool {pool_name}"), pool.is_active())? {
                    // volumes can only be listed and deleted in an active pool
                    call(|| format!("start pool {pool_name}"), pool.create(0))?;
                }
                call(|| format!("refresh pool {pool_name}"), pool.refresh(0))?;
                for vol in call(
                    || format!("list volumes of {pool_name}"),
                    pool.list_all_volumes(0),
                )? {
                    let vname = call(|| "name of a volume".into(), vol.name())?;
                    match vol.delete(0) {
                        Ok(()) => report.removed.volumes.push(vname),
                        Err(source) => report.failures.push(
                            LibvirtError::Call {
                                op: format!("delete volume {vname}"),
                                source,
                            }
                            .to_string(),
                        ),
                    }
                }
                call(|| format!("stop pool {pool_name}"), pool.destroy())?;
                // removes the (now empty) directory
                call(
                    || format!("delete directory of pool {pool_name}"),
                    pool.delete(0),
                )?;
                call(|| format!("undefine pool {pool_name}"), pool.undefine())?;
                Ok(())
            })();
            match r {
                Ok(()) => report.removed.pool = Some(pool_name.clone()),
                Err(e) => report.failures.push(e.to_string()),
            }
        }
        report.removed.volumes.sort();
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_taps_of_a_live_domain() {
        let xml = r#"<domain><devices>
<interface type="network"><source network="kl-a-lan" bridge="virbr3"/><target dev="vnet7"/></interface>
<interface type="network"><source network="kl-a-other"/><target dev="vnet8"/></interface>
<interface type="bridge"><source bridge="br0"/><target dev="vnet9"/></interface>
</devices></domain>"#;
        assert_eq!(network_taps(xml, "kl-a-lan"), vec!["vnet7"]);
        assert!(network_taps(xml, "kl-a-none").is_empty());
    }

    #[test]
    fn metadata_lab_reads_only_kubelab_namespace() {
        let ours = r#"<domain><name>kl-a-b-vm</name><metadata><kubelab:lab xmlns:kubelab="https://kubelab.dev/xmlns/lab/1" name="a-b" object="vm"/></metadata></domain>"#;
        assert_eq!(metadata_lab(ours).as_deref(), Some("a-b"));
        let other = r#"<domain><metadata><x:lab xmlns:x="https://example.org/other" name="a"/></metadata></domain>"#;
        assert_eq!(metadata_lab(other), None);
        assert_eq!(metadata_lab("<domain><name>x</name></domain>"), None);
        assert_eq!(metadata_lab("not xml"), None);
    }
}
