//! The cloud-init NoCloud seed of a VM, built here in Rust: `user-data`,
//! `meta-data` and `network-config` (v2), packed into a small vfat image with
//! the label `cidata`.
//!
//! The seed is attached to the VM as an IDE disk (see the domain template),
//! not as a virtio disk, so the guest's virtio disks stay `vda` (root),
//! `vdb`, `vdc`, … (spare disks) in the order kubelab gave them. (An IDE
//! cdrom would need ISO9660: vfat does not mount from 2048-byte sectors.)
//!
//! Every VM gets an ed25519 SSH host key generated here ([`HostKey`]) and
//! injected through cloud-init's `ssh_keys`, so kubelab knows the key before
//! the VM boots and never has to trust a key it sees for the first time.
//! The private half travels inside the seed: [`SeedFiles`] and [`SeedImage`]
//! redact themselves in `Debug`, and no error here carries their content.
//!
//! The files are JSON, which is YAML: `user-data` is `#cloud-config` followed
//! by a JSON object.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Cursor, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::{Ed25519Keypair, Ed25519PrivateKey};
use russh::keys::{PrivateKey, PublicKey};
use serde::Serialize;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

/// Why a seed could not be made. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("invalid host name {0:?}: labels of a-z, 0-9 and '-', at most 63 characters each")]
    InvalidHostname(String),
    #[error("invalid instance id {0:?}: must be 1-128 printable characters without spaces")]
    InvalidInstanceId(String),
    #[error("invalid user name {0:?}: must match [a-z_][a-z0-9_-]* (at most 32 characters)")]
    InvalidUserName(String),
    #[error("invalid SSH public key #{index} for user {user:?}: {reason}")]
    InvalidAuthorizedKey {
        user: String,
        index: usize,
        reason: String,
    },
    #[error("invalid MAC address {0:?}: expected six hex octets like 52:54:00:12:34:56")]
    InvalidMac(String),
    #[error("invalid interface name {0:?}: 1-15 characters of a-z, 0-9, '-', '_' or '.'")]
    InvalidInterfaceName(String),
    #[error("interface {iface}: {reason}")]
    InvalidInterface { iface: String, reason: String },
    #[error("extra user-data key {0:?} is set by kubelab itself")]
    ReservedUserDataKey(String),
    #[error("cannot generate an SSH host key: {0}")]
    HostKey(String),
    #[error("cannot build the seed image: {0}")]
    Image(#[from] std::io::Error),
}

/// An ed25519 SSH host key generated for one VM.
///
/// `Debug` shows only the public key.
pub struct HostKey {
    private_openssh: Zeroizing<String>,
    public: PublicKey,
}

impl HostKey {
    /// Generate a new key from the operating system's random source.
    /// `comment` ends up in the public key line (e.g. the VM's name).
    pub fn generate(comment: &str) -> Result<Self, SeedError> {
        let mut seed = Zeroizing::new([0u8; Ed25519PrivateKey::BYTE_SIZE]);
        getrandom::fill(seed.as_mut()).map_err(|e| SeedError::HostKey(e.to_string()))?;
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        key.set_comment(comment);
        let private_openssh = key
            .to_openssh(LineEnding::LF)
            .map_err(|_| SeedError::HostKey("cannot encode the private key".into()))?;
        Ok(HostKey {
            private_openssh,
            public: key.public_key().clone(),
        })
    }

    /// The public key, for a known_hosts entry.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The public key as one OpenSSH line: `ssh-ed25519 AAAA… comment`.
    pub fn public_key_openssh(&self) -> String {
        // Encoding an in-memory ed25519 key cannot fail; fall back to the
        // base64 without comment if it ever did.
        self.public.to_openssh().unwrap_or_else(|_| {
            format!(
                "ssh-ed25519 {}",
                self.public.fingerprint(Default::default())
            )
        })
    }

    /// A known_hosts line for this key: `host1,[host2]:2222 ssh-ed25519 AAAA…`.
    /// `hosts` are written as given (use `[addr]:port` for ports other than 22).
    pub fn known_hosts_line(&self, hosts: &[String]) -> String {
        let key = self.public_key_openssh();
        // drop the comment: known_hosts lines are "hosts type base64"
        let mut parts = key.split_whitespace();
        let (kind, b64) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        format!("{} {kind} {b64}", hosts.join(","))
    }

    /// The private key in OpenSSH PEM form. Secret: never log it.
    pub fn private_key_openssh(&self) -> &str {
        &self.private_openssh
    }
}

impl fmt::Debug for HostKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostKey")
            .field("public", &self.public_key_openssh())
            .field("private", &"<redacted>")
            .finish()
    }
}

/// The login account cloud-init creates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeedUser {
    /// Account name, e.g. `kubelab`.
    pub name: String,
    /// OpenSSH public key lines allowed to log in.
    pub authorized_keys: Vec<String>,
    /// Passwordless sudo (`ALL=(ALL) NOPASSWD:ALL`).
    pub sudo: bool,
    /// Login shell; `None` means `/bin/bash`.
    pub shell: Option<String>,
}

/// Network configuration of one NIC, matched by MAC address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeedNic {
    /// Name the guest gives the interface (cloud-init renames it), e.g. `eth0`.
    pub name: String,
    /// MAC address of the NIC (the domain's `<mac address=…>`).
    pub mac: String,
    /// DHCPv4 on this NIC.
    pub dhcp4: bool,
    /// DHCPv6 on this NIC (router advertisements are accepted either way).
    pub dhcp6: bool,
    /// Static addresses with prefix length, e.g. `192.168.50.10/24`, `fd00::10/64`.
    pub addresses: Vec<IpNet>,
    /// Default IPv4 route via this gateway.
    pub gateway4: Option<Ipv4Addr>,
    /// Default IPv6 route via this gateway.
    pub gateway6: Option<Ipv6Addr>,
    /// DNS servers.
    pub nameservers: Vec<IpAddr>,
    /// DNS search domains.
    pub search_domains: Vec<String>,
    /// Interface MTU.
    pub mtu: Option<u32>,
}

/// Everything that goes into one VM's seed.
#[derive(Clone, Debug, PartialEq)]
pub struct SeedSpec {
    /// cloud-init instance id; a new id makes cloud-init run its
    /// per-instance steps again.
    pub instance_id: String,
    /// Short host name, e.g. `node1`.
    pub hostname: String,
    /// Fully qualified name, e.g. `node1.lab.test`.
    pub fqdn: Option<String>,
    /// The login account.
    pub user: SeedUser,
    /// NICs to configure; empty: cloud-init's fallback (DHCP on the first NIC).
    pub nics: Vec<SeedNic>,
    /// More top-level `#cloud-config` keys (e.g. `write_files`, `runcmd`,
    /// `packages`). Keys kubelab sets itself are refused.
    pub extra_user_data: BTreeMap<String, Value>,
}

/// The three seed files. `Debug` redacts `user-data`, which holds the host's
/// private key.
pub struct SeedFiles {
    user_data: Zeroizing<String>,
    meta_data: String,
    network_config: Option<String>,
}

impl SeedFiles {
    /// `user-data` (secret: contains the SSH host private key).
    pub fn user_data(&self) -> &str {
        &self.user_data
    }
    /// `meta-data`.
    pub fn meta_data(&self) -> &str {
        &self.meta_data
    }
    /// `network-config`, when NICs were given.
    pub fn network_config(&self) -> Option<&str> {
        self.network_config.as_deref()
    }

    /// Pack the files into a vfat image labelled `cidata`.
    pub fn to_vfat(&self) -> Result<SeedImage, SeedError> {
        let mut files: Vec<(&str, &[u8])> = vec![
            ("meta-data", self.meta_data.as_bytes()),
            ("user-data", self.user_data.as_bytes()),
        ];
        if let Some(n) = &self.network_config {
            files.push(("network-config", n.as_bytes()));
        }
        let content: usize = files.iter().map(|(_, d)| d.len()).sum();
        // FAT12 with room to spare; at least 1 MiB, in 64 KiB steps.
        let size = (content * 2 + 512 * 1024).max(1024 * 1024).div_ceil(65536) * 65536;
        let mut volume_id = [0u8; 4];
        getrandom::fill(&mut volume_id)
            .map_err(|e| SeedError::Image(std::io::Error::other(e.to_string())))?;

        // fixed size: the buffer never reallocates, so no copy of the key is left behind
        let mut disk = Cursor::new(vec![0u8; size]);
        fatfs::format_volume(
            &mut disk,
            fatfs::FormatVolumeOptions::new()
                .volume_label(*b"cidata     ")
                .volume_id(u32::from_le_bytes(volume_id)),
        )?;
        {
            let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())?;
            {
                let root = fs.root_dir();
                for (name, data) in files {
                    let mut f = root.create_file(name)?;
                    f.truncate()?;
                    f.write_all(data)?;
                    f.flush()?;
                }
            }
            fs.unmount()?;
        }
        Ok(SeedImage(Zeroizing::new(disk.into_inner())))
    }
}

impl fmt::Debug for SeedFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeedFiles")
            .field("user_data", &"<redacted: contains a private key>")
            .field("meta_data", &self.meta_data)
            .field("network_config", &self.network_config)
            .finish()
    }
}

/// A seed disk image (raw vfat). Secret: it contains the host's private key.
pub struct SeedImage(Zeroizing<Vec<u8>>);

impl SeedImage {
    /// The raw image bytes, to upload into a volume.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.0.len() as u64
    }
    /// Never true for a built image.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SeedImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeedImage({} bytes, <redacted>)", self.0.len())
    }
}

/// Keys of `user-data` that kubelab sets and `extra_user_data` may not.
pub const RESERVED_USER_DATA_KEYS: &[&str] = &[
    "hostname",
    "fqdn",
    "prefer_fqdn_over_hostname",
    "manage_etc_hosts",
    "users",
    "ssh_keys",
    "ssh_deletekeys",
    "ssh_genkeytypes",
    "disable_root",
    "ssh_pwauth",
];

/// Build the seed files of one VM with its host key.
pub fn seed_files(spec: &SeedSpec, host_key: &HostKey) -> Result<SeedFiles, SeedError> {
    validate_instance_id(&spec.instance_id)?;
    validate_hostname(&spec.hostname)?;
    if spec.hostname.contains('.') {
        return Err(SeedError::InvalidHostname(spec.hostname.clone()));
    }
    if let Some(fqdn) = &spec.fqdn {
        validate_hostname(fqdn)?;
    }
    validate_user(&spec.user)?;
    for key in spec.extra_user_data.keys() {
        if RESERVED_USER_DATA_KEYS.contains(&key.as_str()) {
            return Err(SeedError::ReservedUserDataKey(key.clone()));
        }
    }

    let meta_data = serde_json::to_string_pretty(&json!({
        "instance-id": spec.instance_id,
        "local-hostname": spec.hostname,
    }))
    .map_err(|e| SeedError::Image(std::io::Error::other(e)))?;

    let mut user = Map::new();
    user.insert("name".into(), json!(spec.user.name));
    user.insert("lock_passwd".into(), json!(true));
    user.insert(
        "shell".into(),
        json!(spec.user.shell.as_deref().unwrap_or("/bin/bash")),
    );
    if spec.user.sudo {
        user.insert("sudo".into(), json!("ALL=(ALL) NOPASSWD:ALL"));
    }
    user.insert(
        "ssh_authorized_keys".into(),
        json!(spec.user.authorized_keys),
    );

    let mut doc = Map::new();
    doc.insert("hostname".into(), json!(spec.hostname));
    if let Some(fqdn) = &spec.fqdn {
        doc.insert("fqdn".into(), json!(fqdn));
        doc.insert("prefer_fqdn_over_hostname".into(), json!(false));
    }
    doc.insert("manage_etc_hosts".into(), json!(true));
    doc.insert("users".into(), Value::Array(vec![Value::Object(user)]));
    doc.insert("disable_root".into(), json!(true));
    doc.insert("ssh_pwauth".into(), json!(false));
    doc.insert("ssh_deletekeys".into(), json!(true));
    // only ed25519, and not even that: the key is given (an empty list is
    // invalid in cloud-init's schema)
    doc.insert("ssh_genkeytypes".into(), json!(["ed25519"]));
    doc.insert(
        "ssh_keys".into(),
        json!({
            "ed25519_private": host_key.private_key_openssh(),
            "ed25519_public": host_key.public_key_openssh(),
        }),
    );
    for (k, v) in &spec.extra_user_data {
        doc.insert(k.clone(), v.clone());
    }
    let body = Zeroizing::new(
        serde_json::to_string_pretty(&Value::Object(doc))
            .map_err(|e| SeedError::Image(std::io::Error::other(e)))?,
    );
    let mut user_data = Zeroizing::new(String::with_capacity(body.len() + 16));
    user_data.push_str("#cloud-config\n");
    user_data.push_str(&body);
    user_data.push('\n');

    let network_config = if spec.nics.is_empty() {
        None
    } else {
        Some(network_config(&spec.nics)?)
    };
    Ok(SeedFiles {
        user_data,
        meta_data,
        network_config,
    })
}

/// `network-config` version 2 for the given NICs.
pub fn network_config(nics: &[SeedNic]) -> Result<String, SeedError> {
    #[derive(Serialize)]
    struct Match<'a> {
        macaddress: &'a str,
    }
    #[derive(Serialize)]
    struct Route {
        to: &'static str,
        via: IpAddr,
    }
    #[derive(Serialize)]
    struct Nameservers<'a> {
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        addresses: &'a [IpAddr],
        #[serde(skip_serializing_if = "<[_]>::is_empty")]
        search: &'a [String],
    }
    #[derive(Serialize)]
    struct Ethernet<'a> {
        #[serde(rename = "match")]
        match_: Match<'a>,
        #[serde(rename = "set-name")]
        set_name: &'a str,
        dhcp4: bool,
        dhcp6: bool,
        #[serde(rename = "dhcp-identifier", skip_serializing_if = "Option::is_none")]
        dhcp_identifier: Option<&'static str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        addresses: Vec<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        routes: Vec<Route>,
        #[serde(skip_serializing_if = "Option::is_none")]
        nameservers: Option<Nameservers<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        mtu: Option<u32>,
    }
    #[derive(Serialize)]
    struct NetworkConfigV2<'a> {
        version: u8,
        ethernets: BTreeMap<&'a str, Ethernet<'a>>,
    }

    let mut ethernets = BTreeMap::new();
    let mut macs = Vec::new();
    for nic in nics {
        validate_interface_name(&nic.name)?;
        let mac = normalize_mac(&nic.mac)?;
        if macs.contains(&mac) {
            return Err(SeedError::InvalidInterface {
                iface: nic.name.clone(),
                reason: format!("MAC {mac} is used twice"),
            });
        }
        macs.push(mac);
        if nic.addresses.iter().any(|a| matches!(a, IpNet::V4(_))) && nic.dhcp4 {
            return Err(SeedError::InvalidInterface {
                iface: nic.name.clone(),
                reason: "static IPv4 addresses together with dhcp4".into(),
            });
        }
        if let Some(m) = nic.mtu
            && !(576..=65535).contains(&m)
        {
            return Err(SeedError::InvalidInterface {
                iface: nic.name.clone(),
                reason: format!("MTU {m} outside 576..65535"),
            });
        }
        for d in &nic.search_domains {
            validate_hostname(d)?;
        }
        let mut routes = Vec::new();
        if let Some(gw) = nic.gateway4 {
            routes.push(Route {
                to: "0.0.0.0/0",
                via: IpAddr::V4(gw),
            });
        }
        if let Some(gw) = nic.gateway6 {
            routes.push(Route {
                to: "::/0",
                via: IpAddr::V6(gw),
            });
        }
        let nameservers = if nic.nameservers.is_empty() && nic.search_domains.is_empty() {
            None
        } else {
            Some(Nameservers {
                addresses: &nic.nameservers,
                search: &nic.search_domains,
            })
        };
        if ethernets.contains_key(nic.name.as_str()) {
            return Err(SeedError::InvalidInterface {
                iface: nic.name.clone(),
                reason: "interface name used twice".into(),
            });
        }
        ethernets.insert(
            nic.name.as_str(),
            Ethernet {
                match_: Match {
                    macaddress: nic.mac.as_str(),
                },
                set_name: nic.name.as_str(),
                dhcp4: nic.dhcp4,
                dhcp6: nic.dhcp6,
                dhcp_identifier: (nic.dhcp4 || nic.dhcp6).then_some("mac"),
                addresses: nic.addresses.iter().map(|a| a.to_string()).collect(),
                routes,
                nameservers,
                mtu: nic.mtu,
            },
        );
    }
    // The MACs were validated; write them in the canonical lower-case form.
    let mut doc = serde_json::to_value(NetworkConfigV2 {
        version: 2,
        ethernets,
    })
    .map_err(|e| SeedError::Image(std::io::Error::other(e)))?;
    if let Some(eths) = doc.get_mut("ethernets").and_then(Value::as_object_mut) {
        for eth in eths.values_mut() {
            if let Some(m) = eth.pointer_mut("/match/macaddress")
                && let Some(s) = m.as_str()
            {
                *m = json!(normalize_mac(s)?);
            }
        }
    }
    serde_json::to_string_pretty(&doc).map_err(|e| SeedError::Image(std::io::Error::other(e)))
}

/// Lower-case `aa:bb:cc:dd:ee:ff`, or an error.
pub fn normalize_mac(mac: &str) -> Result<String, SeedError> {
    let parts: Vec<&str> = mac.split(':').collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok {
        return Err(SeedError::InvalidMac(mac.to_string()));
    }
    Ok(mac.to_ascii_lowercase())
}

fn validate_hostname(name: &str) -> Result<(), SeedError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(SeedError::InvalidHostname(name.to_string()))
    }
}

fn validate_instance_id(id: &str) -> Result<(), SeedError> {
    let ok = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(SeedError::InvalidInstanceId(id.to_string()))
    }
}

fn validate_interface_name(name: &str) -> Result<(), SeedError> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(SeedError::InvalidInterfaceName(name.to_string()))
    }
}

fn validate_user(user: &SeedUser) -> Result<(), SeedError> {
    let n = &user.name;
    let ok = !n.is_empty()
        && n.len() <= 32
        && n.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if !ok || n == "root" {
        return Err(SeedError::InvalidUserName(n.clone()));
    }
    for (index, key) in user.authorized_keys.iter().enumerate() {
        if key.contains('\n') || key.contains('\r') {
            return Err(SeedError::InvalidAuthorizedKey {
                user: n.clone(),
                index,
                reason: "contains a line break".into(),
            });
        }
        PublicKey::from_openssh(key).map_err(|e| SeedError::InvalidAuthorizedKey {
            user: n.clone(),
            index,
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SeedSpec {
        let user_key = HostKey::generate("user").unwrap().public_key_openssh();
        SeedSpec {
            instance_id: "kl-lab1-node1-1".into(),
            hostname: "node1".into(),
            fqdn: Some("node1.lab1.test".into()),
            user: SeedUser {
                name: "kubelab".into(),
                authorized_keys: vec![user_key],
                sudo: true,
                shell: None,
            },
            nics: vec![
                SeedNic {
                    name: "eth0".into(),
                    mac: "52:54:00:AA:00:01".into(),
                    dhcp4: true,
                    dhcp6: true,
                    ..Default::default()
                },
                SeedNic {
                    name: "eth1".into(),
                    mac: "52:54:00:aa:01:01".into(),
                    addresses: vec![
                        "192.168.50.10/24".parse().unwrap(),
                        "fd00:50::10/64".parse().unwrap(),
                    ],
                    gateway4: Some("192.168.50.1".parse().unwrap()),
                    gateway6: Some("fd00:50::1".parse().unwrap()),
                    nameservers: vec!["192.168.50.1".parse().unwrap()],
                    search_domains: vec!["lab1.test".into()],
                    mtu: Some(1450),
                    ..Default::default()
                },
            ],
            extra_user_data: BTreeMap::from([("runcmd".to_string(), json!([["true"]]))]),
        }
    }

    #[test]
    fn host_key_debug_hides_private_key() {
        let key = HostKey::generate("vm1").unwrap();
        let dbg = format!("{key:?}");
        assert!(dbg.contains("ssh-ed25519 "));
        assert!(!dbg.contains("PRIVATE KEY"));
        assert!(
            key.private_key_openssh()
                .contains("BEGIN OPENSSH PRIVATE KEY")
        );
        assert!(key.public_key_openssh().ends_with(" vm1"));
        let line = key.known_hosts_line(&["192.168.1.5".into(), "[fd00::5]:2222".into()]);
        assert!(line.starts_with("192.168.1.5,[fd00::5]:2222 ssh-ed25519 AAAA"));
        assert_eq!(line.split_whitespace().count(), 3);
        // the private key parses back to the same public key
        let back = PrivateKey::from_openssh(key.private_key_openssh()).unwrap();
        assert_eq!(back.public_key().key_data(), key.public_key().key_data());
    }

    #[test]
    fn user_data_is_cloud_config_with_host_key() {
        let key = HostKey::generate("vm1").unwrap();
        let files = seed_files(&spec(), &key).unwrap();
        let ud = files.user_data();
        assert!(ud.starts_with("#cloud-config\n"));
        let doc: Value = serde_json::from_str(&ud["#cloud-config\n".len()..]).unwrap();
        assert_eq!(doc["hostname"], "node1");
        assert_eq!(doc["fqdn"], "node1.lab1.test");
        assert_eq!(doc["users"][0]["name"], "kubelab");
        assert_eq!(doc["users"][0]["sudo"], "ALL=(ALL) NOPASSWD:ALL");
        assert_eq!(doc["ssh_keys"]["ed25519_public"], key.public_key_openssh());
        assert_eq!(doc["ssh_genkeytypes"], json!(["ed25519"]));
        assert_eq!(doc["runcmd"], json!([["true"]]));
        let md: Value = serde_json::from_str(files.meta_data()).unwrap();
        assert_eq!(md["instance-id"], "kl-lab1-node1-1");
        assert_eq!(md["local-hostname"], "node1");
        assert!(!format!("{files:?}").contains("PRIVATE"));
    }

    #[test]
    fn network_config_v2() {
        let key = HostKey::generate("vm1").unwrap();
        let files = seed_files(&spec(), &key).unwrap();
        let nc: Value = serde_json::from_str(files.network_config().unwrap()).unwrap();
        assert_eq!(nc["version"], 2);
        let e0 = &nc["ethernets"]["eth0"];
        assert_eq!(e0["match"]["macaddress"], "52:54:00:aa:00:01");
        assert_eq!(e0["set-name"], "eth0");
        assert_eq!(e0["dhcp4"], true);
        assert_eq!(e0["dhcp-identifier"], "mac");
        let e1 = &nc["ethernets"]["eth1"];
        assert_eq!(
            e1["addresses"],
            json!(["192.168.50.10/24", "fd00:50::10/64"])
        );
        assert_eq!(
            e1["routes"],
            json!([{"to": "0.0.0.0/0", "via": "192.168.50.1"}, {"to": "::/0", "via": "fd00:50::1"}])
        );
        assert_eq!(e1["nameservers"]["addresses"], json!(["192.168.50.1"]));
        assert_eq!(e1["nameservers"]["search"], json!(["lab1.test"]));
        assert_eq!(e1["mtu"], 1450);
    }

    #[test]
    fn invalid_input_is_refused() {
        let key = HostKey::generate("vm1").unwrap();
        let mut s = spec();
        s.hostname = "Bad_Name".into();
        assert!(matches!(
            seed_files(&s, &key),
            Err(SeedError::InvalidHostname(_))
        ));
        let mut s = spec();
        s.nics[0].mac = "52:54:00:zz:00:01".into();
        assert!(matches!(
            seed_files(&s, &key),
            Err(SeedError::InvalidMac(_))
        ));
        let mut s = spec();
        s.nics[1].mac = s.nics[0].mac.to_lowercase();
        assert!(matches!(
            seed_files(&s, &key),
            Err(SeedError::InvalidInterface { .. })
        ));
        let mut s = spec();
        s.extra_user_data.insert("ssh_keys".into(), json!({}));
        assert!(matches!(
            seed_files(&s, &key),
            Err(SeedError::ReservedUserDataKey(_))
        ));
        let mut s = spec();
        s.user.authorized_keys = vec!["ssh-ed25519 notbase64".into()];
        assert!(matches!(
            seed_files(&s, &key),
            Err(SeedError::InvalidAuthorizedKey { .. })
        ));
        let mut s = spec();
        s.user.name = "root".into();
        assert!(matches!(
            seed_files(&s, &key),
            Err(SeedError::InvalidUserName(_))
        ));
    }

    #[test]
    fn vfat_image_has_label_and_files() {
        let key = HostKey::generate("vm1").unwrap();
        let files = seed_files(&spec(), &key).unwrap();
        let image = files.to_vfat().unwrap();
        assert!(image.len() >= 1024 * 1024);
        assert!(!format!("{image:?}").contains("PRIVATE"));
        let mut cursor = Cursor::new(image.as_bytes().to_vec());
        let fs = fatfs::FileSystem::new(&mut cursor, fatfs::FsOptions::new()).unwrap();
        assert_eq!(fs.volume_label().trim_end(), "cidata");
        let mut names: Vec<String> = fs
            .root_dir()
            .iter()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(names, ["meta-data", "network-config", "user-data"]);
        let mut ud = String::new();
        std::io::Read::read_to_string(&mut fs.root_dir().open_file("user-data").unwrap(), &mut ud)
            .unwrap();
        assert_eq!(ud, files.user_data());
    }
}
