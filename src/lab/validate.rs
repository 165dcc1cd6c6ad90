//! Semantic checks of a lab file, and the typed [`Lab`] they produce.
//!
//! Every problem is recorded with the position of the offending value and
//! checking goes on, so one run reports all of them.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::Lab;
use super::checker::{Checker, parse_ip4, parse_ip6, parse_net4, parse_net6};
pub use super::checker::{Located, Unreadable, label_problem};
use super::file::*;
use super::model::*;
use super::placement::{Capacity, Demand, place};
use super::size::{GIB, MIB};
use crate::containerd;
use crate::diagnostic::Diagnostics;
use crate::path;
use crate::scenario::Checks;
use crate::yaml::Seg;

/// Image recipes `image.build` knows.
pub const IMAGE_RECIPES: &[&str] = &["debian-12"];

/// Oldest and newest Kubernetes minors kubelab renders configuration for.
pub const KUBERNETES_MINORS: (u32, u32) = (24, 35);

/// Expand `kube-node-{1..3}` or `name` + `count` into the VM names.
fn expand_names(name: &str, count: Option<u32>) -> Result<Vec<String>, String> {
    if let Some(open) = name.find('{') {
        let close = name[open..]
            .find('}')
            .map(|i| open + i)
            .ok_or("unclosed `{` in name")?;
        if count.is_some() {
            return Err("use either `count` or a `{a..b}` range in the name, not both".into());
        }
        let range = &name[open + 1..close];
        let (a, b) = range
            .split_once("..")
            .ok_or_else(|| format!("`{{{range}}}` is not a range like {{1..3}}"))?;
        let (a, b): (u32, u32) = match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(format!("`{{{range}}}` is not a range like {{1..3}}")),
        };
        if a > b || b - a >= 100 {
            return Err(format!(
                "range `{{{range}}}` must count up and make at most 100 VMs"
            ));
        }
        Ok((a..=b)
            .map(|i| format!("{}{i}{}", &name[..open], &name[close + 1..]))
            .collect())
    } else {
        match count {
            None => Ok(vec![name.to_string()]),
            Some(0) => Err("`count` must be at least 1".into()),
            Some(n) if n > 100 => Err("`count` may make at most 100 VMs".into()),
            Some(n) => Ok((1..=n).map(|i| format!("{name}-{i}")).collect()),
        }
    }
}

fn v4_add(a: Ipv4Addr, n: u32) -> Option<Ipv4Addr> {
    u32::from(a).checked_add(n).map(Ipv4Addr::from)
}
fn v6_add(a: Ipv6Addr, n: u32) -> Option<Ipv6Addr> {
    u128::from(a).checked_add(n as u128).map(Ipv6Addr::from)
}

fn expand_home(p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    PathBuf::from(p)
}

/// One of a lab's virthosts as resolved by the loader: its name, its
/// definition, and where that was written (the lab file itself when
/// inline, or an inventory file).
pub struct VirthostSource<'a> {
    pub name: String,
    pub file: &'a VirthostFile,
    pub at: Located<'a>,
}

/// Check a lab file and build the [`Lab`] (`virthosts`: one for a lab with
/// `virthost:`).
pub fn check(
    file: &LabFile,
    lab: Located<'_>,
    virthosts: &[VirthostSource<'_>],
    lab_path: &Path,
    unreadable: &Unreadable,
) -> Result<(Lab, Diagnostics), Diagnostics> {
    let mut c = Checker {
        lab,
        diags: Diagnostics::default(),
        unreadable,
    };
    c.label(&path!["name"], "lab name", &file.name, 30);

    let lab_virthosts = check_lab_virthosts(&mut c, virthosts);
    let mut networks = check_networks(&mut c, &file.name, &file.networks);
    if virthosts.len() > 1 {
        spread_mtu(&mut c, &mut networks);
    }
    let image = check_image(&mut c, &file.image);
    let mut vms = check_vms(&mut c, file, &networks);
    let placement = file.placement.unwrap_or_default();
    if let Some(vhs) = &lab_virthosts {
        place_vms(&mut c, file, vhs, placement, &mut vms);
    }
    let kubernetes = file
        .kubernetes
        .as_ref()
        .and_then(|k| check_kubernetes(&mut c, k, &networks, &vms, image.as_ref(), lab_path));
    check_scenarios(&mut c, file, &networks, &vms, kubernetes.as_ref());
    let links = check_links(&mut c, file, &vms);
    for key in file.vars.keys() {
        if !is_identifier(key) {
            c.error(
                &path!["vars", key.as_str()],
                format!("variable name `{key}` must be an identifier (letters, digits, `_`)"),
            );
        }
    }
    let nat64 = check_nat64(&mut c, file, &networks);
    let ttl = file.ttl.as_deref().and_then(|t| {
        match super::duration::parse_duration(t) {
            Ok(0) => {
                c.error(&path!["ttl"], "ttl: `0` would remove the lab at once; leave `ttl` out for a lab that stays until `down`");
                None
            }
            Ok(secs) => Some(secs),
            Err(e) => {
                c.error(&path!["ttl"], format!("ttl: {e}"));
                None
            }
        }
    });

    if c.diags.has_errors() {
        return Err(c.diags.sorted());
    }
    let (Some(virthosts), Some(image)) = (lab_virthosts, image) else {
        return Err(c.diags);
    };
    Ok((
        Lab {
            name: file.name.clone(),
            description: file.description.clone(),
            file: lab_path.to_path_buf(),
            virthost: virthosts[0].virthost.clone(),
            virthosts,
            placement,
            fabric: None,
            elsewhere: Vec::new(),
            networks,
            image,
            vms,
            kubernetes,
            links,
            scenarios: file.scenarios.clone(),
            vars: file.vars.clone(),
            nat64,
            ttl,
        },
        c.diags.sorted(),
    ))
}

/// The NAT64 variables kubelab itself reads from `vars`, each checked at
/// its position; defaults for those not given.
fn check_nat64(c: &mut Checker<'_>, file: &LabFile, networks: &[Network]) -> Nat64 {
    let mut nat64 = Nat64::default();
    // A variable given as text (YAML may read `true` or a number otherwise).
    let text = |key: &str| -> Option<String> {
        file.vars.get(key).map(|v| match v {
            serde_json::Value::String(s) => s.trim().to_string(),
            other => other.to_string(),
        })
    };
    // Parsed as the lab's own subnets and addresses are (host bits, the
    // family, an example), then checked for what NAT64 needs.
    let prefix_at = path!["vars", "nat64_prefix"];
    if let Some(p) = text("nat64_prefix").and_then(|t| parse_net6(c, &prefix_at, &t)) {
        if p.prefix_len() == 96 {
            nat64.prefix = p;
        } else {
            c.error(
                &prefix_at,
                format!("nat64_prefix: {p} is not a /96 network prefix"),
            );
        }
    }
    let pool_at = path!["vars", "nat64_pool4"];
    if let Some(p) = text("nat64_pool4").and_then(|t| parse_net4(c, &pool_at, &t)) {
        let overlapping = networks.iter().find(|n| {
            n.ipv4
                .is_some_and(|n| n.contains(&p.network()) || p.contains(&n.network()))
        });
        // tayga takes the pool's first address; the clients need more.
        if p.prefix_len() > 30 {
            c.error(
                &pool_at,
                format!("nat64_pool4: {p} has no room for tayga and its clients (a /30 or larger)"),
            );
        } else if let Some(n) = overlapping {
            c.error(
                &pool_at,
                format!("nat64_pool4: {p} overlaps network `{}`", n.name),
            );
        } else {
            nat64.pool4 = p;
        }
    }
    let tayga_at = path!["vars", "nat64_tayga_ipv6"];
    if let Some(a) = text("nat64_tayga_ipv6").and_then(|t| parse_ip6(c, &tayga_at, &t)) {
        if nat64.prefix.contains(&a) {
            c.error(
                &tayga_at,
                format!(
                    "nat64_tayga_ipv6: {a} is inside the NAT64 prefix {}",
                    nat64.prefix
                ),
            );
        } else {
            nat64.tayga_ipv6 = a;
        }
    }
    match file.vars.get("nat64_resolver") {
        None => {}
        Some(serde_json::Value::Bool(b)) => nat64.resolver = *b,
        Some(_) => {
            c.error(
                &path!["vars", "nat64_resolver"],
                "nat64_resolver is true or false",
            );
        }
    }
    nat64
}

fn family_name(f: IpFamily) -> &'static str {
    match f {
        IpFamily::Ipv4 => "ipv4",
        IpFamily::Ipv6 => "ipv6",
        IpFamily::Dual => "dual",
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A virthost definition alone (an inventory file, or one made from the
/// command line), checked as a lab's would be.
pub fn virthost(v: &VirthostFile, at: Located<'_>) -> Result<(Virthost, Diagnostics), Diagnostics> {
    let mut diags = Diagnostics::default();
    match check_virthost(v, at, &mut diags) {
        Some(vh) if !diags.has_errors() => Ok((vh, diags)),
        _ => Err(diags.sorted()),
    }
}

fn check_virthost(v: &VirthostFile, at: Located<'_>, diags: &mut Diagnostics) -> Option<Virthost> {
    let mut c = Checker {
        lab: at,
        diags: Diagnostics::default(),
        unreadable: &Unreadable::NOTHING,
    };
    let domain_type = v.domain_type.unwrap_or(DomainType::Auto);
    let tcg_cache_mib = v.tcg_cache.as_ref().and_then(|t| {
        c.size(&path!["tcg_cache"], t, 32 * MIB, 16 * GIB, "tcg_cache")
            .map(|b| b / MIB)
    });
    if tcg_cache_mib.is_some() && domain_type == DomainType::Kvm {
        c.warning(
            &path!["tcg_cache"],
            "tcg_cache only applies to domain type qemu; it is ignored with kvm",
        );
    }
    let storage_dir = v
        .storage_dir
        .clone()
        .unwrap_or_else(|| "/var/lib/kubelab".to_string());
    if !storage_dir.starts_with('/') {
        c.error(
            &path!["storage_dir"],
            "storage_dir must be an absolute path",
        );
    }
    let connection = if v.local {
        for (key, set) in [
            ("address", v.address.is_some()),
            ("jump", v.jump.is_some()),
            ("port", v.port.is_some()),
        ] {
            if set {
                c.error(
                    &path![key],
                    format!("`{key}` makes no sense with `local: true`"),
                );
            }
        }
        Some(Connection::Local)
    } else {
        match &v.address {
            None => {
                c.error_help(
                    &[],
                    "the virthost needs an `address` (or `local: true`)",
                    "e.g. `address: 192.0.2.10`, or use the `local` inventory",
                );
                None
            }
            Some(addr) => {
                let mut files: Vec<PathBuf> =
                    v.identity_files.iter().map(|f| expand_home(f)).collect();
                if let Some(f) = &v.identity_file {
                    files.insert(0, expand_home(f));
                }
                let jump = v
                    .jump
                    .as_ref()
                    .map(|j| Box::new(jump_host(&mut c, j, vec![Seg::Key("jump".into())])));
                check_address(&mut c, &path!["address"], addr);
                if v.port == Some(0) {
                    c.error(&path!["port"], "port 0 is not a valid SSH port");
                }
                Some(Connection::Ssh(SshHost {
                    address: addr.clone(),
                    port: v.port.unwrap_or(22),
                    user: v.user.clone().unwrap_or_else(|| "root".into()),
                    agent: v.agent.unwrap_or(files.is_empty()),
                    identity_files: files,
                    host_key_policy: v.host_key_policy.unwrap_or(HostKeyPolicy::Strict),
                    known_hosts: expand_home(
                        v.known_hosts.as_deref().unwrap_or("~/.ssh/known_hosts"),
                    ),
                    jump,
                }))
            }
        }
    };
    let ok = !c.diags.has_errors();
    let source = c.lab.file.path.clone();
    diags.extend(c.diags);
    let connection = connection?;
    ok.then_some(Virthost {
        source,
        connection,
        domain_type,
        tcg_cache_mib,
        storage_dir,
    })
}

/// Each of the lab's virthosts checked where it is written, with its name
/// and placement figures; names unique; for several virthosts, each with an
/// address the others reach it at (the VXLAN underlay).
fn check_lab_virthosts(
    c: &mut Checker<'_>,
    sources: &[VirthostSource<'_>],
) -> Option<Vec<LabVirthost>> {
    let several = sources.len() > 1;
    let mut out = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, s) in sources.iter().enumerate() {
        let entry = path!["virthosts", i];
        if several {
            if s.name.is_empty() {
                c.error_help(
                    &entry,
                    "this virthost has no `name`",
                    "inline entries of `virthosts` need a `name:` (inventory references are named after their file)",
                );
            } else {
                c.label(&entry, "virthost name", &s.name, 40);
            }
            if let Some(first) = seen.insert(&s.name, i) {
                c.error(
                    &entry,
                    format!(
                        "duplicate virthost name `{}` (also virthosts[{first}])",
                        s.name
                    ),
                );
            }
        }
        let vh = check_virthost(s.file, s.at, &mut c.diags);
        let mut own = Checker {
            lab: s.at,
            diags: Diagnostics::default(),
            unreadable: &Unreadable::NOTHING,
        };
        let memory_mib = s.file.memory.as_ref().and_then(|m| {
            own.size(&path!["memory"], m, 128 * MIB, 64 << 40, "memory")
                .map(|b| b / MIB)
        });
        if s.file.cpus == Some(0) {
            own.error(&path!["cpus"], "cpus: a virthost has at least 1 CPU");
        }
        let tunnel_address = match &s.file.tunnel_address {
            Some(t) => match t.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    own.error(
                        &path!["tunnel_address"],
                        format!("tunnel_address: `{t}` is not an IP address"),
                    );
                    None
                }
            },
            None => s.file.address.as_deref().and_then(|a| a.parse().ok()),
        };
        if several && tunnel_address.is_none() && !own.diags.has_errors() {
            own.error_help(
                &[],
                format!(
                    "virthost {}: the other virthosts reach it at which address? (for the VXLAN tunnels)",
                    s.name
                ),
                "give `tunnel_address:` (an IP address of this virthost the others reach), needed when `address` is a name or the virthost is `local`",
            );
        }
        c.diags.extend(own.diags);
        if let Some(virthost) = vh {
            out.push(LabVirthost {
                name: s.name.clone(),
                virthost,
                memory_mib,
                cpus: s.file.cpus,
                tunnel_address,
            });
        }
    }
    (out.len() == sources.len() && !sources.is_empty()).then_some(out)
}

/// The networks of a lab over several virthosts carry VXLAN's 50 bytes
/// on the virthosts' links: their MTU is lowered to [`SPREAD_MTU`] unless
/// the lab gives one, which must leave the room itself.
fn spread_mtu(c: &mut Checker<'_>, networks: &mut [Network]) {
    for (i, n) in networks.iter_mut().enumerate() {
        if matches!(n.kind, NetworkKind::Bridged { .. }) {
            continue;
        }
        match n.mtu {
            None => n.mtu = Some(SPREAD_MTU),
            Some(m) if m > SPREAD_MTU => {
                c.warning(
                    &path!["networks", i, "mtu"],
                    format!(
                        "network {}: mtu {m} spans several virthosts over VXLAN, which adds 50 bytes: the virthosts' own links need an MTU of {} or more",
                        n.name,
                        m + 50
                    ),
                );
            }
            Some(_) => {}
        }
    }
}

/// Every VM's virthost: the one it names (which must exist), else placed
/// now when every virthost says what it may give (`memory`, `cpus`), else
/// at `up` from what they have then. A lab with one virthost has them all.
fn place_vms(
    c: &mut Checker<'_>,
    file: &LabFile,
    virthosts: &[LabVirthost],
    how: Placement,
    vms: &mut [Vm],
) {
    let names: Vec<String> = virthosts.iter().map(|v| v.name.clone()).collect();
    // the lab file entry each VM comes from
    let origin = |vm: &str| {
        file.vms
            .iter()
            .position(|v| expand_names(&v.name, v.count).is_ok_and(|n| n.iter().any(|n| n == vm)))
    };
    let mut pinned = Vec::new();
    let mut unknown = false;
    for vm in vms.iter() {
        let at = origin(&vm.name);
        pinned.push(match &vm.virthost {
            None => None,
            Some(name) => match names.iter().position(|n| n == name) {
                Some(h) => Some(h),
                None => {
                    unknown = true;
                    let at = at.map(|i| path!["vms", i, "virthost"].to_vec());
                    c.error_help(
                        at.as_deref().unwrap_or(&[]),
                        format!("VM {}: unknown virthost `{name}`", vm.name),
                        format!(
                            "the lab's virthosts: {}",
                            names
                                .iter()
                                .filter(|n| !n.is_empty())
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                    None
                }
            },
        });
    }
    // placing around a mistake would only report more of it
    if unknown || names.iter().any(|n| n.is_empty()) {
        return;
    }
    if virthosts.len() == 1 {
        for vm in vms.iter_mut() {
            vm.virthost = Some(names[0].clone());
        }
        return;
    }
    let capacities: Option<Vec<Capacity>> = virthosts
        .iter()
        .map(|v| {
            Some(Capacity {
                memory_mib: v.memory_mib?,
                cpus: v.cpus?,
            })
        })
        .collect();
    let Some(capacities) = capacities else {
        return;
    };
    let demands: Vec<Demand<'_>> = vms
        .iter()
        .zip(&pinned)
        .map(|(vm, p)| Demand {
            name: &vm.name,
            memory_mib: vm.memory_mib,
            cpus: vm.cpus,
            pinned: *p,
        })
        .collect();
    match place(&demands, &capacities, &names, how) {
        Ok(placed) => {
            for (vm, h) in vms.iter_mut().zip(placed) {
                vm.virthost = Some(names[h].clone());
            }
        }
        Err(no) => {
            let at = origin(&vms[no.vm].name).map(|i| path!["vms", i].to_vec());
            c.error(at.as_deref().unwrap_or(&[]), no.message);
        }
    }
}

fn jump_host(c: &mut Checker<'_>, j: &JumpFile, at: Vec<Seg>) -> SshHost {
    let mut addr_path = at.clone();
    addr_path.push(Seg::Key("address".into()));
    check_address(c, &addr_path, &j.address);
    let inner = j.jump.as_ref().map(|n| {
        let mut p = at.clone();
        p.push(Seg::Key("jump".into()));
        Box::new(jump_host(c, n, p))
    });
    SshHost {
        address: j.address.clone(),
        port: j.port.unwrap_or(22),
        user: j.user.clone().unwrap_or_else(|| "root".into()),
        identity_files: j.identity_file.iter().map(|f| expand_home(f)).collect(),
        agent: j.identity_file.is_none(),
        host_key_policy: j.host_key_policy.unwrap_or(HostKeyPolicy::Strict),
        known_hosts: expand_home("~/.ssh/known_hosts"),
        jump: inner,
    }
}

/// A host name or IP address: no spaces, no shell metacharacters.
fn check_address(c: &mut Checker<'_>, path: &[Seg], addr: &str) {
    if let Some(problem) = address_problem(addr) {
        c.error(path, problem);
    }
}

/// Why `addr` is neither an IP address nor a host name (None when it is
/// one): for the lab's addresses and for what importers take from other
/// tools' files.
pub fn address_problem(addr: &str) -> Option<String> {
    if addr.parse::<IpAddr>().is_ok() {
        return None;
    }
    let ok = !addr.is_empty()
        && addr.len() <= 253
        && addr
            .split('.')
            .all(|part| label_problem(&part.to_ascii_lowercase(), 63).is_none());
    (!ok).then(|| {
        format!(
            "`{}` is neither an IP address nor a host name",
            addr.escape_debug()
        )
    })
}

fn check_networks(c: &mut Checker<'_>, lab: &str, nets: &[NetworkFile]) -> Vec<Network> {
    let mut out: Vec<Network> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nets.iter().enumerate() {
        let at = |k: &str| path!["networks", i, k];
        c.label(&at("name"), "network name", &n.name, 30);
        if let Some(first) = seen.insert(&n.name, i) {
            c.error(
                &at("name"),
                format!(
                    "duplicate network name `{}` (also networks[{first}])",
                    n.name
                ),
            );
        }
        let kind_file = n.kind.unwrap_or(NetworkKindFile::Nat);
        let ipv4: Option<Ipv4Net> = n.ipv4.as_ref().and_then(|t| parse_net4(c, &at("ipv4"), t));
        let ipv6: Option<Ipv6Net> = n.ipv6.as_ref().and_then(|t| parse_net6(c, &at("ipv6"), t));
        if let Some(v6) = ipv6
            && v6.prefix_len() > 64
        {
            c.error_help(
                &at("ipv6"),
                format!("IPv6 prefix {v6} is longer than /64"),
                "SLAAC and DHCPv6 for VMs need a /64 (or shorter) prefix",
            );
        }
        if let Some(v4) = ipv4
            && v4.prefix_len() > 29
        {
            c.error(
                &at("ipv4"),
                format!("IPv4 subnet {v4} is too small for a gateway and VMs (at most /29)"),
            );
        }
        let kind = match kind_file {
            NetworkKindFile::Nat => {
                if n.ipv4.is_none() {
                    c.error(
                        &at("name"),
                        format!("NAT network `{}` needs an `ipv4` subnet", n.name),
                    );
                }
                NetworkKind::Nat
            }
            NetworkKindFile::Isolated => NetworkKind::Isolated,
            NetworkKindFile::Bridged => {
                if n.bridge.is_none() && n.nic.is_none() {
                    c.error_help(
                        &at("kind"),
                        format!("bridged network `{}` needs `bridge` or `nic`", n.name),
                        "`bridge: br0` attaches to an existing bridge; `nic: enp1s0` makes one from that NIC",
                    );
                }
                if n.dhcp == Some(true) || n.dhcp_range.is_some() {
                    c.error(
                        &at(if n.dhcp_range.is_some() { "dhcp_range" } else { "dhcp" }),
                        "kubelab does not serve DHCP on a bridged network (the LAN's own server does)",
                    );
                }
                for (k, v) in [("bridge", &n.bridge), ("nic", &n.nic)] {
                    if let Some(v) = v
                        && let Some(why) = ifname_problem(v)
                    {
                        c.error(
                            &at(k),
                            format!("`{}` is not an interface name: {why}", v.escape_debug()),
                        );
                    }
                }
                let bridge = n
                    .bridge
                    .clone()
                    // per lab and network: two labs' bridges never share a name
                    .unwrap_or_else(|| {
                        format!("klbr-{}", &short_hash(&format!("{lab}/{}", n.name))[..8])
                    });
                NetworkKind::Bridged {
                    bridge,
                    nic: n.nic.clone(),
                }
            }
        };
        if kind_file != NetworkKindFile::Bridged {
            for k in ["bridge", "nic"] {
                let set = if k == "bridge" {
                    n.bridge.is_some()
                } else {
                    n.nic.is_some()
                };
                if set {
                    c.error(&at(k), format!("`{k}` only applies to `kind: bridged`"));
                }
            }
        }
        let dhcp_on = n
            .dhcp
            .unwrap_or(kind_file != NetworkKindFile::Bridged && ipv4.is_some());
        if dhcp_on && n.ipv4.is_none() && kind_file != NetworkKindFile::Bridged {
            c.error(&at("dhcp"), "DHCP needs an `ipv4` subnet on this network");
        }
        let mut dhcp_range = None;
        if let (true, Some(net)) = (dhcp_on && kind_file != NetworkKindFile::Bridged, ipv4) {
            dhcp_range = match &n.dhcp_range {
                Some(r) => {
                    let s = parse_ip4(c, &path!["networks", i, "dhcp_range", "start"], &r.start);
                    let e = parse_ip4(c, &path!["networks", i, "dhcp_range", "end"], &r.end);
                    match (s, e) {
                        (Some(s), Some(e)) => {
                            let gw = net.hosts().next();
                            if !net.contains(&s) || !net.contains(&e) {
                                c.error(
                                    &path!["networks", i, "dhcp_range"],
                                    format!("DHCP range {s}-{e} is not inside {net}"),
                                );
                            } else if s > e {
                                c.error(
                                    &path!["networks", i, "dhcp_range"],
                                    format!("DHCP range starts at {s}, after its end {e}"),
                                );
                            } else if gw.is_some_and(|g| g >= s && g <= e) {
                                c.error(
                                    &path!["networks", i, "dhcp_range"],
                                    format!(
                                        "DHCP range {s}-{e} includes the gateway {}",
                                        gw.unwrap_or(s)
                                    ),
                                );
                            }
                            Some((s, e))
                        }
                        _ => None,
                    }
                }
                None => default_dhcp_range(net),
            };
        } else if n.dhcp_range.is_some() && n.dhcp == Some(false) {
            c.error(&at("dhcp_range"), "`dhcp_range` given but `dhcp: false`");
        }
        if let Some(mtu) = n.mtu {
            let min = if ipv6.is_some() { 1280 } else { 576 };
            if !(min..=9216).contains(&mtu) {
                c.error(&at("mtu"), format!("MTU {mtu} is outside {min}..9216"));
            }
        }
        // Overlaps with earlier networks.
        for (j, other) in out.iter().enumerate() {
            if let (Some(a), Some(b)) = (ipv4, other.ipv4)
                && (a.contains(&b.network()) || b.contains(&a.network()))
            {
                c.error(
                    &at("ipv4"),
                    format!(
                        "{a} overlaps {b} of network `{}` (networks[{j}])",
                        other.name
                    ),
                );
            }
            if let (Some(a), Some(b)) = (ipv6, other.ipv6)
                && (a.contains(&b.network()) || b.contains(&a.network()))
            {
                c.error(
                    &at("ipv6"),
                    format!(
                        "{a} overlaps {b} of network `{}` (networks[{j}])",
                        other.name
                    ),
                );
            }
        }
        out.push(Network {
            name: n.name.clone(),
            kind,
            ipv4,
            dhcp_range,
            ipv6,
            mtu: n.mtu,
        });
    }
    out
}

/// The upper half of the subnet, leaving the lower half for static addresses.
pub fn default_dhcp_range(net: Ipv4Net) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let first = u32::from(net.network());
    let last = u32::from(net.broadcast());
    let size = last - first;
    let start = first + size.div_ceil(2);
    // 0.0.0.0/32 has no address below its last one.
    let end = last.checked_sub(1)?;
    (start < end).then(|| (Ipv4Addr::from(start), Ipv4Addr::from(end)))
}

/// Linux interface names: at most 15 bytes, no `/`, spaces or shell specials.
pub(crate) fn ifname_problem(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 15 {
        return Some("it must be 1 to 15 characters".into());
    }
    s.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .map(|c| format!("`{}` is not allowed", c.escape_debug()))
}

pub(crate) fn short_hash(s: &str) -> String {
    use sha2::{Digest, Sha256};
    let h = Sha256::digest(s.as_bytes());
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn check_image(c: &mut Checker<'_>, img: &ImageFile) -> Option<Image> {
    let user = img.user.clone().unwrap_or_else(|| "kubelab".into());
    let user_ok = !user.is_empty()
        && user.len() <= 32
        && user.starts_with(|ch: char| ch.is_ascii_lowercase() || ch == '_')
        && user
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-');
    if !user_ok {
        c.error(
            &path!["image", "user"],
            format!("`{}` is not a valid login name", user.escape_debug()),
        );
    }
    if user == "root" {
        c.error_help(
            &path!["image", "user"],
            "the image user cannot be root",
            "kubelab creates this user with passwordless sudo; it reaches root through it",
        );
    }
    for (i, p) in img.packages.iter().enumerate() {
        let ok = p.len() >= 2
            && p.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && p.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '+' | '-' | '.')
            });
        if !ok {
            c.error(
                &path!["image", "packages", i],
                format!("`{}` is not a package name", p.escape_debug()),
            );
        }
    }
    match (&img.url, &img.build) {
        (Some(_), Some(_)) => {
            c.error(
                &path!["image", "build"],
                "give either `url` or `build`, not both",
            );
            None
        }
        (None, None) => {
            c.error_help(
                &path!["image"],
                "the image needs `url` + `sha256`, or `build`",
                format!("offline builds: {}", IMAGE_RECIPES.join(", ")),
            );
            None
        }
        (Some(url), None) => {
            if !img.packages.is_empty() {
                c.error(
                    &path!["image", "packages"],
                    "`packages` only applies to built images",
                );
            }
            let scheme_ok = ["https://", "http://", "file://"]
                .iter()
                .any(|s| url.starts_with(s))
                && !url.chars().any(|ch| ch.is_whitespace() || ch.is_control());
            if !scheme_ok {
                c.error(
                    &path!["image", "url"],
                    format!(
                        "`{}` is not an http(s):// or file:// URL",
                        url.escape_debug()
                    ),
                );
            }
            match &img.sha256 {
                None => {
                    c.error_help(
                        &path!["image", "url"],
                        "a downloaded image needs its `sha256`",
                        "kubelab verifies every download; take the checksum from the distribution's SHA256SUMS",
                    );
                    None
                }
                Some(h) if h.len() != 64 || !h.chars().all(|ch| ch.is_ascii_hexdigit()) => {
                    c.error(
                        &path!["image", "sha256"],
                        format!("sha256 must be 64 hex digits, found {} characters", h.len()),
                    );
                    None
                }
                Some(h) => Some(Image::Download {
                    url: url.clone(),
                    sha256: h.to_ascii_lowercase(),
                    user,
                }),
            }
        }
        (None, Some(recipe)) => {
            if img.sha256.is_some() {
                c.error(&path!["image", "sha256"], "`sha256` only applies to `url`");
            }
            if !IMAGE_RECIPES.contains(&recipe.as_str()) {
                let mut help = format!("known recipes: {}", IMAGE_RECIPES.join(", "));
                if let Some(best) = crate::yaml::closest(recipe, IMAGE_RECIPES.iter().copied()) {
                    help = format!("did you mean `{best}`? ({help})");
                }
                c.error_help(
                    &path!["image", "build"],
                    format!("unknown image recipe `{recipe}`"),
                    help,
                );
                return None;
            }
            Some(Image::Build {
                recipe: recipe.clone(),
                packages: img.packages.clone(),
                user,
            })
        }
    }
}

struct Defaults {
    cpus: u32,
    memory_mib: u64,
    disk_gib: u64,
}

fn check_defaults(c: &mut Checker<'_>, d: &VmDefaultsFile) -> Defaults {
    let mut out = Defaults {
        cpus: 2,
        memory_mib: 2048,
        disk_gib: 20,
    };
    if let Some(cpus) = d.cpus
        && check_cpus(c, &path!["defaults", "cpus"], cpus)
    {
        out.cpus = cpus;
    }
    if let Some(m) = &d.memory
        && let Some(b) = c.size(
            &path!["defaults", "memory"],
            m,
            128 * MIB,
            1 << 40,
            "memory",
        )
    {
        out.memory_mib = b / MIB;
    }
    if let Some(m) = &d.disk
        && let Some(b) = c.size(&path!["defaults", "disk"], m, GIB, 64 << 40, "disk")
    {
        out.disk_gib = b.div_ceil(GIB);
    }
    out
}

fn check_cpus(c: &mut Checker<'_>, path: &[Seg], cpus: u32) -> bool {
    if cpus == 0 || cpus > 256 {
        c.error(path, format!("{cpus} CPUs is absurd (1 to 256)"));
        false
    } else {
        true
    }
}

fn check_vms(c: &mut Checker<'_>, file: &LabFile, networks: &[Network]) -> Vec<Vm> {
    let defaults = check_defaults(c, &file.defaults);
    let mut out: Vec<Vm> = Vec::new();
    let mut origin: HashMap<String, usize> = HashMap::new();
    // Static addresses taken so far: address → (VM name).
    let mut taken: HashMap<IpAddr, String> = HashMap::new();
    if file.vms.is_empty() && !c.unreadable.vms {
        c.error(&[], "the lab has no `vms`");
    }
    for (i, v) in file.vms.iter().enumerate() {
        let at = |k: &str| path!["vms", i, k];
        let names = match expand_names(&v.name, v.count) {
            Ok(n) => n,
            Err(e) => {
                c.error(
                    &at(if v.count.is_some() && !v.name.contains('{') {
                        "count"
                    } else {
                        "name"
                    }),
                    e,
                );
                continue;
            }
        };
        let mut names_ok = true;
        for n in &names {
            names_ok &= c.label(&at("name"), "VM name", n, 40);
            if let Some(first) = origin.get(n) {
                c.error(
                    &at("name"),
                    format!("duplicate VM name `{n}` (also vms[{first}])"),
                );
            }
        }
        for (r, role) in v.roles.iter().enumerate() {
            c.label(&path!["vms", i, "roles", r], "role", role, 40);
        }
        let cpus = match v.cpus {
            Some(n) if check_cpus(c, &at("cpus"), n) => n,
            _ => defaults.cpus,
        };
        let memory_mib = v
            .memory
            .as_ref()
            .and_then(|m| c.size(&at("memory"), m, 128 * MIB, 1 << 40, "memory"))
            .map_or(defaults.memory_mib, |b| b / MIB);
        let disk_gib = v
            .disk
            .as_ref()
            .and_then(|m| c.size(&at("disk"), m, GIB, 64 << 40, "disk"))
            .map_or(defaults.disk_gib, |b| b.div_ceil(GIB));
        let mut spare = Vec::new();
        for (d, disk) in v.spare_disks.iter().enumerate() {
            let p = path!["vms", i, "spare_disks", d].to_vec();
            let mut sp = p.clone();
            sp.push(Seg::Key("size".into()));
            let size = c.size(&sp, &disk.size, MIB, 64 << 40, "spare disk size");
            let count = disk.count.unwrap_or(1);
            if count == 0 {
                let mut cp = p.clone();
                cp.push(Seg::Key("count".into()));
                c.error(&cp, "`count` must be at least 1");
            }
            for _ in 0..count {
                if spare.len() >= 24 {
                    c.error(&p, "at most 24 spare disks per VM (vdb to vdz)");
                    break;
                }
                let dev = format!("vd{}", (b'b' + spare.len() as u8) as char);
                spare.push(SpareDisk {
                    dev,
                    size_mib: size.unwrap_or(0).div_ceil(MIB),
                    format: disk.format.unwrap_or(DiskFormat::Qcow2),
                });
            }
        }
        // NICs
        let nic_files: Vec<(Option<usize>, NicFile)> = if v.nics.is_empty() {
            match networks.first() {
                Some(n) => vec![(
                    None,
                    NicFile {
                        network: n.name.clone(),
                        ipv4: None,
                        ipv6: None,
                    },
                )],
                None => {
                    if !c.unreadable.networks {
                        c.error(
                            &at("name"),
                            format!("VM `{}` has no NIC and the lab has no networks", v.name),
                        );
                    }
                    Vec::new()
                }
            }
        } else {
            v.nics
                .iter()
                .cloned()
                .enumerate()
                .map(|(j, n)| (Some(j), n))
                .collect()
        };
        struct NicPlan {
            network: String,
            ipv4: Option<Ipv4Addr>,
            ipv6: Option<Ipv6Addr>,
            path: Vec<Seg>,
        }
        let mut plans = Vec::new();
        for (j, nf) in &nic_files {
            let p = match j {
                Some(j) => path!["vms", i, "nics", *j].to_vec(),
                None => at("name").to_vec(),
            };
            let sub = |k: &str| {
                let mut q = p.clone();
                q.push(Seg::Key(k.into()));
                q
            };
            let net = networks.iter().find(|n| n.name == nf.network);
            if net.is_none() && !c.unreadable.network(&nf.network) {
                let mut help = format!(
                    "networks of this lab: {}",
                    networks
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                if let Some(best) =
                    crate::yaml::closest(&nf.network, networks.iter().map(|n| n.name.as_str()))
                {
                    help = format!("did you mean `{best}`? ({help})");
                }
                c.error_help(
                    &sub("network"),
                    format!("unknown network `{}`", nf.network),
                    help,
                );
            }
            let ipv4 = nf.ipv4.as_ref().and_then(|t| parse_ip4(c, &sub("ipv4"), t));
            let ipv6 = nf.ipv6.as_ref().and_then(|t| parse_ip6(c, &sub("ipv6"), t));
            if let Some(net) = net {
                if nf.ipv4.is_some() && net.ipv4.is_none() {
                    c.error(
                        &sub("ipv4"),
                        format!(
                            "static IPv4 requested on network `{}`, which has no `ipv4` subnet",
                            net.name
                        ),
                    );
                }
                if nf.ipv6.is_some() && net.ipv6.is_none() {
                    c.error_help(
                        &sub("ipv6"),
                        format!(
                            "IPv6 requested on network `{}`, which has no IPv6 prefix",
                            net.name
                        ),
                        format!(
                            "add e.g. `ipv6: fd00:{}::/64` to network `{}`",
                            &short_hash(&net.name)[..4],
                            net.name
                        ),
                    );
                }
                if matches!(net.kind, NetworkKind::Isolated)
                    && net.dhcp_range.is_none()
                    && nf.ipv4.is_none()
                    && nf.ipv6.is_none()
                    && net.ipv6.is_none()
                {
                    c.warning(
                        &p,
                        format!(
                            "NIC on `{}` gets no address (no DHCP, no static address)",
                            net.name
                        ),
                    );
                }
            }
            plans.push(NicPlan {
                network: nf.network.clone(),
                ipv4,
                ipv6,
                path: p,
            });
        }
        for (k, name) in names.iter().enumerate() {
            let mut nics = Vec::new();
            for (j, plan) in plans.iter().enumerate() {
                let net = networks.iter().find(|n| n.name == plan.network);
                let ipv4 = plan.ipv4.and_then(|a| v4_add(a, k as u32));
                let ipv6 = plan.ipv6.and_then(|a| v6_add(a, k as u32));
                if let (Some(net), true) = (net, names_ok) {
                    let mut p4 = plan.path.clone();
                    p4.push(Seg::Key("ipv4".into()));
                    let mut p6 = plan.path.clone();
                    p6.push(Seg::Key("ipv6".into()));
                    if let (Some(a), Some(subnet)) = (ipv4, net.ipv4) {
                        if !subnet.contains(&a) {
                            c.error(
                                &p4,
                                format!(
                                    "{a} (for `{name}`) is outside {subnet} of network `{}`",
                                    net.name
                                ),
                            );
                        } else if a == subnet.network() || a == subnet.broadcast() {
                            c.error(&p4, format!("{a} (for `{name}`) is the network or broadcast address of {subnet}"));
                        } else if Some(a) == net.gateway4() {
                            c.error(
                                &p4,
                                format!(
                                    "{a} (for `{name}`) is the virthost's gateway address on `{}`",
                                    net.name
                                ),
                            );
                        } else if let Some((s, e)) = net.dhcp_range
                            && a >= s
                            && a <= e
                        {
                            c.error_help(
                                &p4,
                                format!("{a} (for `{name}`) lies in the DHCP range {s}-{e} of `{}`", net.name),
                                "static addresses must stay outside the DHCP range, or DHCP may hand them out too",
                            );
                        }
                    }
                    if let (Some(a), Some(prefix)) = (ipv6, net.ipv6) {
                        if !prefix.contains(&a) {
                            c.error(
                                &p6,
                                format!(
                                    "{a} (for `{name}`) is outside {prefix} of network `{}`",
                                    net.name
                                ),
                            );
                        } else if Some(a) == net.gateway6() || a == prefix.network() {
                            c.error(&p6, format!("{a} (for `{name}`) is reserved on `{}` (subnet-router or gateway address)", net.name));
                        }
                    }
                    for (addr, p) in [(ipv4.map(IpAddr::V4), &p4), (ipv6.map(IpAddr::V6), &p6)] {
                        if let Some(addr) = addr {
                            if let Some(other) = taken.get(&addr) {
                                c.error(
                                    p,
                                    format!("{addr} is given to both `{other}` and `{name}`"),
                                );
                            } else {
                                taken.insert(addr, name.clone());
                            }
                        }
                    }
                }
                nics.push(Nic {
                    network: plan.network.clone(),
                    mac: mac_for(&file.name, name, j),
                    ipv4,
                    ipv6,
                });
            }
            origin.entry(name.clone()).or_insert(i);
            out.push(Vm {
                name: name.clone(),
                roles: v.roles.clone(),
                cpus,
                memory_mib,
                disk_gib,
                spare_disks: spare.clone(),
                nics,
                vars: v.vars.clone(),
                virthost: v.virthost.clone(),
            });
        }
    }
    out
}

fn check_kubernetes(
    c: &mut Checker<'_>,
    k: &KubernetesFile,
    networks: &[Network],
    vms: &[Vm],
    image: Option<&Image>,
    lab_path: &Path,
) -> Option<Kubernetes> {
    let at = |f: &str| path!["kubernetes", f];
    let version = k.version.clone().unwrap_or_else(|| "1.31".into());
    let minor = {
        let parts: Vec<&str> = version.trim_start_matches('v').split('.').collect();
        let numeric = parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !(numeric && (parts.len() == 2 || parts.len() == 3) && parts[0] == "1") {
            c.error_help(
                &at("version"),
                format!("`{version}` is not a Kubernetes version"),
                "write a minor like \"1.31\" or a patch release like \"1.31.2\" (quoted)",
            );
            None
        } else {
            parts[1].parse::<u32>().ok()
        }
    };
    if let Some(m) = minor
        && !(KUBERNETES_MINORS.0..=KUBERNETES_MINORS.1).contains(&m)
    {
        c.error(
            &at("version"),
            format!(
                "Kubernetes 1.{m} is not supported (1.{} to 1.{})",
                KUBERNETES_MINORS.0, KUBERNETES_MINORS.1
            ),
        );
    }
    let ip_family = k.ip_family.unwrap_or(IpFamily::Ipv4);
    let control_planes: Vec<&Vm> = vms.iter().filter(|v| v.has_role("control-plane")).collect();
    if control_planes.is_empty() {
        c.error_help(
            &path!["kubernetes"],
            "`kubernetes` is set but no VM has the role `control-plane`",
            "add `roles: [control-plane]` to the VM that runs kubeadm init",
        );
    }
    // The node network.
    let network = match &k.network {
        Some(n) => {
            if !networks.iter().any(|x| &x.name == n) && !c.unreadable.network(n) {
                c.error(&at("network"), format!("unknown network `{n}`"));
            }
            n.clone()
        }
        None => control_planes
            .first()
            .and_then(|v| v.nics.first())
            .map(|n| n.network.clone())
            .or_else(|| networks.first().map(|n| n.name.clone()))
            .unwrap_or_default(),
    };
    let net = networks.iter().find(|n| n.name == network);
    if let Some(net) = net {
        let wants6 = matches!(ip_family, IpFamily::Ipv6 | IpFamily::Dual);
        let wants4 = matches!(ip_family, IpFamily::Ipv4 | IpFamily::Dual);
        let fam_path = if k.ip_family.is_some() {
            at("ip_family").to_vec()
        } else {
            path!["kubernetes"].to_vec()
        };
        if wants6 && net.ipv6.is_none() {
            c.error_help(
                &fam_path,
                format!(
                    "IPv6 requested (ip_family {}) but network `{}` has no IPv6 prefix",
                    family_name(ip_family),
                    net.name
                ),
                format!(
                    "add `ipv6: fd00:{}::/64` to network `{}`",
                    &short_hash(&net.name)[..4],
                    net.name
                ),
            );
        }
        if wants4 && net.ipv4.is_none() {
            c.error(
                &fam_path,
                format!(
                    "IPv4 requested but network `{}` has no `ipv4` subnet",
                    net.name
                ),
            );
        }
        for v in vms
            .iter()
            .filter(|v| v.has_role("control-plane") || v.has_role("worker"))
        {
            if !v.nics.iter().any(|n| n.network == network) {
                c.error(
                    &at("network"),
                    format!(
                        "node `{}` has no NIC on the Kubernetes network `{network}`",
                        v.name
                    ),
                );
            }
        }
    }
    let (pod_default, svc_default): (Vec<&str>, Vec<&str>) = match ip_family {
        IpFamily::Ipv4 => (vec!["10.244.0.0/16"], vec!["10.96.0.0/12"]),
        IpFamily::Ipv6 => (vec!["fd00:10:244::/56"], vec!["fd00:10:96::/112"]),
        IpFamily::Dual => (
            vec!["10.244.0.0/16", "fd00:10:244::/56"],
            vec!["10.96.0.0/12", "fd00:10:96::/112"],
        ),
    };
    let mut cidrs = |key: &str, given: &[String], defaults: &[&str]| -> Vec<IpNet> {
        let texts: Vec<String> = if given.is_empty() {
            defaults.iter().map(|s| s.to_string()).collect()
        } else {
            given.to_vec()
        };
        let mut out = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let p = if given.is_empty() {
                path!["kubernetes"].to_vec()
            } else {
                path!["kubernetes", key, i].to_vec()
            };
            match t.parse::<IpNet>() {
                Ok(n) if n.network() != n.addr() => {
                    c.error_help(
                        &p,
                        format!("`{t}` has host bits set"),
                        format!("did you mean {}?", n.trunc()),
                    );
                }
                Ok(n) => out.push(n),
                Err(_) => {
                    c.error(&p, format!("`{t}` is not a CIDR"));
                }
            }
        }
        let v4 = out.iter().filter(|n| matches!(n, IpNet::V4(_))).count();
        let v6 = out.len() - v4;
        let expected = match ip_family {
            IpFamily::Ipv4 => (1, 0),
            IpFamily::Ipv6 => (0, 1),
            IpFamily::Dual => (1, 1),
        };
        if out.len() == texts.len() && (v4, v6) != expected {
            c.error(
                &path!["kubernetes", key],
                format!(
                    "{key} must hold {} for ip_family {}",
                    match ip_family {
                        IpFamily::Ipv4 => "one IPv4 CIDR",
                        IpFamily::Ipv6 => "one IPv6 CIDR",
                        IpFamily::Dual => "one IPv4 and one IPv6 CIDR",
                    },
                    family_name(ip_family)
                ),
            );
        }
        out
    };
    let pod_cidrs = cidrs("pod_cidrs", &k.pod_cidrs, &pod_default);
    let service_cidrs = cidrs("service_cidrs", &k.service_cidrs, &svc_default);
    for (i, s) in service_cidrs.iter().enumerate() {
        if let IpNet::V6(n) = s
            && n.prefix_len() < 108
        {
            c.error(
                &path!["kubernetes", "service_cidrs", i],
                format!("IPv6 service subnet {n} is too large: kubeadm needs /108 or longer"),
            );
        }
    }
    // Overlaps: pods vs services vs lab networks.
    let mut all: Vec<(String, IpNet, Vec<Seg>)> = Vec::new();
    for (i, n) in pod_cidrs.iter().enumerate() {
        all.push((
            "pod_cidrs".into(),
            *n,
            path!["kubernetes", "pod_cidrs", i].to_vec(),
        ));
    }
    for (i, n) in service_cidrs.iter().enumerate() {
        all.push((
            "service_cidrs".into(),
            *n,
            path!["kubernetes", "service_cidrs", i].to_vec(),
        ));
    }
    for (a_i, (a_name, a, a_path)) in all.iter().enumerate() {
        for (b_name, b, _) in all.iter().skip(a_i + 1) {
            if a.contains(&b.network()) || b.contains(&a.network()) {
                c.error(a_path, format!("{a} ({a_name}) overlaps {b} ({b_name})"));
            }
        }
        for net in networks {
            let lab_nets = [net.ipv4.map(IpNet::V4), net.ipv6.map(IpNet::V6)];
            for b in lab_nets.into_iter().flatten() {
                if a.contains(&b.network()) || b.contains(&a.network()) {
                    c.error(
                        a_path,
                        format!("{a} ({a_name}) overlaps {b} of lab network `{}`", net.name),
                    );
                }
            }
        }
    }
    let ha = match &k.ha {
        None => {
            if control_planes.len() > 1 {
                c.error_help(
                    &path!["kubernetes"],
                    format!("{} control planes need `ha` (a load balancer in front of them)", control_planes.len()),
                    "add `ha: {mode: haproxy}` with a VM of role `lb`, or `ha: {mode: kube-vip, vip: ...}`",
                );
            }
            None
        }
        Some(h) => {
            let vip = h.vip.as_ref().and_then(|t| match t.parse::<IpAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    c.error(
                        &path!["kubernetes", "ha", "vip"],
                        format!("`{t}` is not an IP address"),
                    );
                    None
                }
            });
            match h.mode {
                HaMode::Haproxy => {
                    if !vms.iter().any(|v| v.has_role("lb")) {
                        c.error(
                            &path!["kubernetes", "ha", "mode"],
                            "ha mode haproxy needs a VM with role `lb`",
                        );
                    }
                    if h.vip.is_some() {
                        c.error(
                            &path!["kubernetes", "ha", "vip"],
                            "`vip` only applies to mode kube-vip",
                        );
                    }
                }
                HaMode::KubeVip => match (vip, net) {
                    (None, _) if h.vip.is_none() => {
                        c.error(&path!["kubernetes", "ha"], "ha mode kube-vip needs a `vip`");
                    }
                    (Some(a), Some(net)) => {
                        let inside = match a {
                            IpAddr::V4(a4) => net.ipv4.is_some_and(|n| n.contains(&a4)),
                            IpAddr::V6(a6) => net.ipv6.is_some_and(|n| n.contains(&a6)),
                        };
                        if !inside {
                            c.error(
                                &path!["kubernetes", "ha", "vip"],
                                format!("vip {a} is not inside network `{}`", net.name),
                            );
                        }
                        if vms.iter().flat_map(|v| &v.nics).any(|n| {
                            n.ipv4.map(IpAddr::V4) == Some(a) || n.ipv6.map(IpAddr::V6) == Some(a)
                        }) {
                            c.error(
                                &path!["kubernetes", "ha", "vip"],
                                format!("vip {a} is already a VM's address"),
                            );
                        }
                    }
                    _ => {}
                },
            }
            if control_planes.len() < 2 {
                c.warning(
                    &path!["kubernetes", "ha"],
                    "`ha` with a single control plane balances nothing",
                );
            }
            Some(Ha { mode: h.mode, vip })
        }
    };
    let airgap_dir = k.airgap_dir.as_ref().map(|d| {
        let p = expand_home(d);
        if p.is_relative() {
            lab_path.parent().unwrap_or(Path::new(".")).join(p)
        } else {
            p
        }
    });
    let runtime = k.runtime.unwrap_or(Runtime::Containerd);
    let runtime_packages = k.runtime_packages.unwrap_or(RuntimePackages::Upstream);
    if runtime == Runtime::Crio && runtime_packages == RuntimePackages::Distro {
        c.error_help(
            &at("runtime_packages"),
            "CRI-O comes from its own repository, matching the Kubernetes minor",
            "`runtime_packages: distro` applies to docker and containerd; remove it for crio",
        );
    }
    // The nodes are built from Debian 12, whose containerd is 1.6.20.
    if runtime == Runtime::Containerd
        && runtime_packages == RuntimePackages::Distro
        && let Some(Image::Build { recipe, .. }) = image
        && recipe == "debian-12"
        && let Some(m) = minor
        && let Some((_, oldest)) = containerd::supported(m)
            .iter()
            .find(|(line, _)| *line == containerd::DEBIAN_12_LINE)
        && *oldest > containerd::DEBIAN_12_RELEASE
    {
        c.error_help(
            &at("runtime_packages"),
            format!(
                "Debian 12's containerd {} does not support Kubernetes 1.{m} (containerd's support table: {})",
                containerd::dotted(containerd::DEBIAN_12_RELEASE),
                containerd::stage_vars(m)["supported"].as_str().unwrap_or_default()
            ),
            format!(
                "use `runtime_packages: upstream` (containerd {} from Docker's repository), or Kubernetes 1.28 or older",
                containerd::upstream_line(m)
            ),
        );
    }
    Some(Kubernetes {
        version: version.trim_start_matches('v').to_string(),
        runtime,
        runtime_packages,
        cni: k.cni.unwrap_or(Cni::Flannel),
        ip_family,
        pod_cidrs,
        service_cidrs,
        network,
        ha,
        airgap_dir,
        merge_kubeconfig: k.merge_kubeconfig.unwrap_or(false),
        selinux: k.selinux.unwrap_or(Selinux::Permissive),
        firewall: k.firewall.unwrap_or(Firewall::Disable),
    })
}

/// Every scenario entry: what the registry checks of each (listed once,
/// known VMs, a cluster where its mode needs one), then the scenario's own
/// checks.
fn check_scenarios(
    c: &mut Checker<'_>,
    file: &LabFile,
    networks: &[Network],
    vms: &[Vm],
    kubernetes: Option<&Kubernetes>,
) {
    let names: Vec<&str> = vms.iter().map(|v| v.name.as_str()).collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in file.scenarios.iter().enumerate() {
        if let Some(first) = seen.insert(s.name(), i) {
            c.error(
                &path!["scenarios", i, "name"],
                format!(
                    "scenario `{}` is listed twice (also scenarios[{first}])",
                    s.name()
                ),
            );
        }
        let kind = s.kind();
        for (sub, vm) in kind.vm_refs() {
            if !names.contains(&vm) {
                let mut p = path!["scenarios", i, "params"].to_vec();
                p.extend(sub);
                let mut help = format!("VMs of this lab: {}", names.join(", "));
                if let Some(best) = crate::yaml::closest(vm, names.iter().copied()) {
                    help = format!("did you mean `{best}`? ({help})");
                }
                c.error_help(&p, format!("unknown VM `{vm}`"), help);
            }
        }
        if kind.needs_kubernetes() && file.kubernetes.is_none() && !c.unreadable.kubernetes {
            c.error(
                &path!["scenarios", i, "params", "mode"],
                format!(
                    "scenario `{}` in this mode needs `kubernetes` in the lab",
                    s.name()
                ),
            );
        }
        kind.check(&mut Checks::new(c, i, networks, vms, kubernetes));
    }
}

/// A VNI for a link across VMs that gives none: from a hash of the lab's
/// name and both endpoints, in 100000..16000000 (clear of the small VNIs
/// people pick by hand), stable across runs.
pub fn derived_vni(lab: &str, a: &LinkEndpoint, b: &LinkEndpoint) -> u32 {
    use sha2::{Digest, Sha256};
    let key = format!(
        "{lab}/{}/{}/{}/{}/{}/{}",
        a.vm, a.endpoint, a.ifname, b.vm, b.endpoint, b.ifname
    );
    let h = Sha256::digest(key.as_bytes());
    let n = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    100_000 + n % 15_900_000
}

fn check_links(c: &mut Checker<'_>, file: &LabFile, vms: &[Vm]) -> Vec<Link> {
    use crate::endpoint::{EndpointKeys, ifname_problem};
    use crate::values::{Count, Text};
    let names: Vec<&str> = vms.iter().map(|v| v.name.as_str()).collect();
    let mut links = Vec::new();
    // (vm, endpoint, ifname) → where it was first used.
    let mut used: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let mut vnis: BTreeMap<u32, usize> = BTreeMap::new();
    for (i, l) in file.links.iter().enumerate() {
        if l.endpoints.len() != 2 {
            c.error_help(
                &path!["links", i, "endpoints"],
                format!(
                    "a link has exactly two endpoints, this one has {}",
                    l.endpoints.len()
                ),
                "one VM twice: a veth pair; two VMs: a VXLAN tunnel",
            );
            continue;
        }
        let mut ends = Vec::new();
        for (k, e) in l.endpoints.iter().enumerate() {
            let base = path!["links", i, "endpoints", k];
            let at = |key: &str| {
                let mut p = base.clone();
                p.push(Seg::Key(key.into()));
                p
            };
            let mut ok = true;
            if !names.contains(&e.vm.as_str()) && !c.unreadable.vms {
                let mut help = format!("VMs of this lab: {}", names.join(", "));
                if let Some(best) = crate::yaml::closest(&e.vm, names.iter().copied()) {
                    help = format!("did you mean `{best}`? ({help})");
                }
                c.error_help(&at("vm"), format!("unknown VM `{}`", e.vm), help);
                ok = false;
            }
            let text = |s: &Option<String>| s.as_ref().map(|v| Text(v.clone()));
            let (netns, container, pod) = (text(&e.netns), text(&e.container), text(&e.pod));
            let runtime = e.runtime.map(|r| {
                Text(
                    match r {
                        ContainerRuntimeFile::Podman => "podman",
                        ContainerRuntimeFile::Docker => "docker",
                        ContainerRuntimeFile::Crio => "crio",
                    }
                    .into(),
                )
            });
            let keys = EndpointKeys {
                netns: netns.as_ref(),
                container: container.as_ref(),
                runtime: runtime.as_ref(),
                pod: pod.as_ref(),
                pid: None::<Count>,
            };
            let mut problems = Vec::new();
            keys.problems(&base, &mut problems);
            for (p, m) in problems {
                c.error(&p, m);
                ok = false;
            }
            if let Some(why) = ifname_problem(&e.ifname) {
                c.error(&at("ifname"), why);
                ok = false;
            }
            let mut addresses = Vec::new();
            for (j, a) in e.addresses.iter().enumerate() {
                match a.parse::<IpNet>() {
                    Ok(n) => addresses.push(n),
                    Err(_) => {
                        let mut p = at("addresses");
                        p.push(Seg::Index(j));
                        c.error(
                            &p,
                            format!("`{a}` is not an address with prefix length (e.g. 10.0.1.1/24 or fd00::1/64)"),
                        );
                        ok = false;
                    }
                }
            }
            for (key, mtu) in [("mtu", e.mtu)] {
                if let Some(m) = mtu
                    && !(68..=65535).contains(&m)
                {
                    c.error(&at(key), format!("MTU {m} is outside 68..65535"));
                    ok = false;
                }
            }
            let endpoint = if ok { keys.endpoint().ok() } else { None };
            if let Some(endpoint) = endpoint {
                let id = (e.vm.clone(), endpoint.to_string(), e.ifname.clone());
                if let Some(first) = used.insert(id, i)
                    && first != i
                {
                    c.error(
                        &at("ifname"),
                        format!(
                            "{} on {} ({endpoint}) is already an end of links[{first}]",
                            e.ifname, e.vm
                        ),
                    );
                }
                ends.push(LinkEndpoint {
                    vm: e.vm.clone(),
                    endpoint,
                    ifname: e.ifname.clone(),
                    addresses,
                    mtu: e.mtu.or(l.mtu),
                });
            }
        }
        if let Some(m) = l.mtu
            && !(68..=65535).contains(&m)
        {
            c.error(
                &path!["links", i, "mtu"],
                format!("MTU {m} is outside 68..65535"),
            );
        }
        if l.port == Some(0) {
            c.error(&path!["links", i, "port"], "UDP port 0 is not a port");
        }
        let [a, b]: [LinkEndpoint; 2] = match ends.try_into() {
            Ok(pair) => pair,
            Err(_) => continue,
        };
        let local = a.vm == b.vm;
        if local && a.endpoint == b.endpoint && a.ifname == b.ifname {
            c.error(
                &path!["links", i, "endpoints", 1, "ifname"],
                "both ends of this veth are the same interface",
            );
            continue;
        }
        let vni = if local {
            if l.vni.is_some() || l.port.is_some() {
                c.warning(
                    &path!["links", i],
                    "both ends are on one VM (a veth pair): `vni` and `port` are not used",
                );
            }
            None
        } else {
            let vni = match l.vni {
                Some(v) if v == 0 || v > 0xFF_FFFF => {
                    c.error(
                        &path!["links", i, "vni"],
                        format!("VNI {v} is outside 1..16777215"),
                    );
                    continue;
                }
                Some(v) => {
                    if let Some(first) = vnis.get(&v) {
                        c.error(
                            &path!["links", i, "vni"],
                            format!("VNI {v} is also used by links[{first}]"),
                        );
                    }
                    v
                }
                None => {
                    let mut v = derived_vni(&file.name, &a, &b);
                    while vnis.contains_key(&v) {
                        v += 1;
                    }
                    v
                }
            };
            vnis.insert(vni, i);
            Some(vni)
        };
        links.push(Link {
            ends: [a, b],
            vni,
            port: l.port.unwrap_or(4789),
        });
    }
    links
}
