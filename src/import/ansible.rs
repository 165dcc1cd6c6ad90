//! `kubelab import-ansible`: turn a kube-ansible virthost inventory and its
//! extra-vars files into an equivalent kubelab lab file.
//!
//! Inputs, lowest precedence first: variables of the inventory (`[all:vars]`,
//! `[virthost:vars]`, the host line), then every `-e` argument in order
//! (`@file.yml` or `key=value`), later ones winning, as with
//! `ansible-playbook -e`. Every variable read keeps its position, so a value
//! of the wrong type is reported as `file:line:col`. Every variable that has
//! no kubelab equivalent is listed with the reason. The lab is written as
//! YAML text and checked by the real loader before it is handed out, so an
//! import never produces a lab that does not validate.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::Ipv4Net;

use super::ini::{self, SectionKind};
use crate::diagnostic::{Diagnostic, Diagnostics, Pos, SourceFile, Span, unreadable};
use crate::lab::validate::{KUBERNETES_MINORS, address_problem, label_problem};
use crate::yaml::{self, Node, NodeKind};

/// What to import.
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// The virthost inventory (INI or YAML).
    pub inventory: PathBuf,
    /// `-e` arguments in order: `@file.yml`, `key=value ...`, or inline YAML/JSON.
    pub extra_vars: Vec<String>,
    /// Lab name (default `kube-ansible`).
    pub name: Option<String>,
    /// SHA-256 of the image at the image URL variable, which kube-ansible
    /// never checked but kubelab requires.
    pub image_sha256: Option<String>,
    /// Where the lab will be written; names the lab in messages of the final check.
    pub output: Option<PathBuf>,
}

/// Something the user should know about the import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A variable that has no kubelab equivalent.
    NotMapped { var: String, reason: String },
    /// A variable that was mapped, but not one to one.
    Adjusted { var: String, message: String },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::NotMapped { var, reason } => write!(f, "not mapped: {var} — {reason}"),
            Note::Adjusted { var, message } => write!(f, "note: {var}: {message}"),
        }
    }
}

/// The lab file text and the notes about it.
#[derive(Clone, Debug)]
pub struct Imported {
    pub lab: String,
    pub notes: Vec<Note>,
}

/// The lab name used when `--name` is not given.
pub const DEFAULT_NAME: &str = "kube-ansible";

/// The NAT subnet used when the variables give none. Not 192.168.122.0/24:
/// that is libvirt's own `default` network, which kube-ansible used and which
/// usually still exists on the virthost, and two networks with one subnet
/// cannot both be up.
pub const DEFAULT_NAT_SUBNET: &str = "192.168.124.0/24";

/// kube-ansible's default `bridge_network_cidr`, assumed for a bridged lab
/// that gives no subnet.
pub const DEFAULT_BRIDGED_SUBNET: &str = "192.168.1.0/24";

/// Pod and service subnets: Kubernetes' usual ones first, others for labs
/// whose networks overlap them.
const POD_SUBNETS: &[&str] = &["10.244.0.0/16", "172.31.0.0/16", "192.168.192.0/18"];
const SERVICE_SUBNETS: &[&str] = &["10.96.0.0/12", "172.30.0.0/16", "192.168.160.0/19"];

/// Names of the networks the importer makes.
const NAT_NETWORK: &str = "nat";
const BRIDGED_NETWORK: &str = "lan";
const IPV6_NETWORK: &str = "k8s-ipv6-private";

/// The IPv6 lab's private prefix and the nat64 VM's address in it.
const IPV6_PREFIX: &str = "fd00::/64";
const NAT64_ADDRESS: u128 = 0x64;
/// The first Kubernetes node's address in the IPv6 lab (fd00::100); the
/// next nodes count up from it.
const IPV6_FIRST_NODE: u128 = 0x100;

/// Read the inventory and extra vars and produce a validated lab file.
pub fn import(opts: &ImportOptions) -> Result<Imported, Diagnostics> {
    let mut r = Reader::default();
    let cli = SourceFile::new("<command line>", "");
    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| DEFAULT_NAME.to_string());
    if let Some(why) = label_problem(&name, 30) {
        r.diags.push(Diagnostic::error(
            &cli,
            None,
            format!(
                "--name `{}` is not a valid lab name: {why}",
                name.escape_debug()
            ),
        ));
    }
    if let Some(h) = &opts.image_sha256
        && (h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()))
    {
        r.diags.push(Diagnostic::error(
            &cli,
            None,
            format!(
                "--image-sha256 must be 64 hex digits, found {} characters",
                h.len()
            ),
        ));
    }
    let host = read_inventory(&opts.inventory, &mut r)?;
    for arg in &opts.extra_vars {
        read_extra_vars(arg, &mut r)?;
    }
    let draft = build(&mut r, &name, &host, opts);
    if r.diags.has_errors() {
        return Err(r.diags.sorted());
    }
    let draft = draft.ok_or_else(|| r.diags.clone())?;
    let lab = emit(&draft, opts);
    let lab_path = opts
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("<imported lab>"));
    // A failure here is the importer's own mistake, or values that are
    // individually fine but do not fit together (e.g. colliding static
    // addresses): the errors point into the generated text.
    crate::lab::load_str(&lab_path, &lab, &crate::lab::LoadOptions::default())?;
    let mut notes = r.notes;
    for var in r.vars.keys() {
        if !r.used.contains(var) {
            notes.push(Note::NotMapped {
                var: var.clone(),
                reason: unmapped_reason(var),
            });
        }
    }
    Ok(Imported { lab, notes })
}

/// A variable's value and the file it came from.
#[derive(Clone, Debug)]
struct Var {
    node: Node,
    file: Arc<SourceFile>,
}

#[derive(Default)]
struct Reader {
    vars: BTreeMap<String, Var>,
    used: BTreeSet<String>,
    notes: Vec<Note>,
    diags: Diagnostics,
}

impl Reader {
    fn set(&mut self, name: &str, node: Node, file: &Arc<SourceFile>) {
        self.vars.insert(
            name.to_string(),
            Var {
                node,
                file: file.clone(),
            },
        );
    }

    fn error(&mut self, v: &Var, node: &Node, message: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(&v.file, Some(node.span), message));
    }

    fn not_mapped(&mut self, var: impl Into<String>, reason: impl Into<String>) {
        self.notes.push(Note::NotMapped {
            var: var.into(),
            reason: reason.into(),
        });
    }

    fn adjusted(&mut self, var: impl Into<String>, message: impl Into<String>) {
        self.notes.push(Note::Adjusted {
            var: var.into(),
            message: message.into(),
        });
    }

    /// The value of `name`, marking it as used. Empty values and Jinja
    /// expressions (which kubelab does not evaluate) read as absent.
    fn take(&mut self, name: &str) -> Option<Var> {
        let v = self.vars.get(name)?.clone();
        self.used.insert(name.to_string());
        if matches!(v.node.kind, NodeKind::Null) {
            return None;
        }
        if contains_template(&v.node) {
            self.not_mapped(
                name,
                "its value is a Jinja expression, which kubelab does not evaluate; write the value itself",
            );
            return None;
        }
        Some(v)
    }

    fn string(&mut self, name: &str) -> Option<(String, Var)> {
        let v = self.take(name)?;
        match v.node.as_str() {
            Some(s) => Some((s.to_string(), v)),
            None => {
                let node = v.node.clone();
                self.error(
                    &v,
                    &node,
                    format!("{name}: expected a string, found {}", v.node.describe()),
                );
                None
            }
        }
    }

    fn bool(&mut self, name: &str) -> Option<bool> {
        let (s, v) = self.string(name)?;
        match ansible_bool(&s) {
            Some(b) => Some(b),
            None => {
                let node = v.node.clone();
                self.error(
                    &v,
                    &node,
                    format!("{name}: expected true or false, found `{s}`"),
                );
                None
            }
        }
    }

    /// An integer in `min..=max`.
    fn uint(&mut self, name: &str, min: u64, max: u64) -> Option<u64> {
        let v = self.take(name)?;
        let node = v.node.clone();
        self.uint_node(name, &v, &node, min, max)
    }

    fn uint_node(&mut self, what: &str, v: &Var, node: &Node, min: u64, max: u64) -> Option<u64> {
        match node.as_str().map(|s| s.trim().parse::<u64>()) {
            Some(Ok(n)) if (min..=max).contains(&n) => Some(n),
            Some(Ok(n)) => {
                self.error(v, node, format!("{what}: {n} is outside {min}..{max}"));
                None
            }
            _ => {
                self.error(
                    v,
                    node,
                    format!(
                        "{what}: expected a whole number, found {}",
                        show_value(node)
                    ),
                );
                None
            }
        }
    }
}

fn show_value(node: &Node) -> String {
    match node.as_str() {
        Some(s) => format!("`{s}`"),
        None => node.describe().to_string(),
    }
}

fn contains_template(node: &Node) -> bool {
    match &node.kind {
        NodeKind::Scalar { text, .. } => text.contains("{{") || text.contains("{%"),
        _ => false,
    }
}

/// Ansible's truthy and falsy words.
fn ansible_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" | "y" | "t" => Some(true),
        "false" | "no" | "off" | "0" | "n" | "f" => Some(false),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Inventory

/// The virthost's entry in the inventory.
struct InventoryHost {
    name: String,
    /// Where the name is written (the address when no `ansible_host`).
    file: Arc<SourceFile>,
    span: Option<Span>,
}

fn read_file(path: &Path) -> Result<Arc<SourceFile>, Diagnostics> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(SourceFile::new(path, t)),
        Err(e) => {
            let mut d = Diagnostics::default();
            d.push(unreadable(path, &e));
            Err(d)
        }
    }
}

fn one_error(
    file: &Arc<SourceFile>,
    span: Option<Span>,
    message: impl Into<String>,
) -> Diagnostics {
    let mut d = Diagnostics::default();
    d.push(Diagnostic::error(file, span, message));
    d
}

/// Group names kube-ansible used for the virthost, newest first.
const VIRTHOST_GROUPS: &[&str] = &["virthost", "kubehost"];

fn read_inventory(path: &Path, r: &mut Reader) -> Result<InventoryHost, Diagnostics> {
    let file = read_file(path)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let first_line = file
        .text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .unwrap_or("");
    let yaml_style = matches!(ext, "yml" | "yaml" | "json")
        || (!first_line.starts_with('[') && first_line.contains(':') && !first_line.contains('='));
    if yaml_style {
        read_yaml_inventory(&file, r)
    } else {
        read_ini_inventory(&file, r)
    }
}

fn scalar_node(text: &str, span: Span) -> Node {
    Node {
        kind: NodeKind::Scalar {
            text: text.to_string(),
            quoted: false,
        },
        span,
    }
}

fn read_ini_inventory(
    file: &Arc<SourceFile>,
    r: &mut Reader,
) -> Result<InventoryHost, Diagnostics> {
    let sections =
        ini::parse(&file.text).map_err(|e| one_error(file, e.span, e.message.clone()))?;
    let group = VIRTHOST_GROUPS
        .iter()
        .find(|g| {
            sections
                .iter()
                .any(|s| s.group == **g && s.kind == SectionKind::Hosts && !s.hosts.is_empty())
        })
        .copied()
        .or_else(|| lone_connected_host(&sections));
    let Some(group) = group else {
        let mut found: Vec<&str> = sections.iter().map(|s| s.group.as_str()).collect();
        found.dedup();
        return Err(one_error(
            file,
            None,
            format!(
                "no [virthost] group (or the older [kubehost]) with a host in this inventory{}",
                if found.is_empty() {
                    String::new()
                } else {
                    format!("; groups found: {}", found.join(", "))
                }
            ),
        ));
    };
    // Variables, lowest precedence first: all, the group, the host line.
    for s in sections
        .iter()
        .filter(|s| s.kind == SectionKind::Vars && s.group == "all")
        .chain(
            sections
                .iter()
                .filter(|s| s.kind == SectionKind::Vars && s.group == group),
        )
    {
        for (k, v) in &s.vars {
            r.set(&k.text, scalar_node(&v.text, v.span), file);
        }
    }
    let mut hosts = sections
        .iter()
        .filter(|s| s.group == group && s.kind == SectionKind::Hosts)
        .flat_map(|s| s.hosts.iter());
    let Some(host) = hosts.next() else {
        return Err(one_error(file, None, "the virthost group has no host"));
    };
    for extra in hosts {
        r.not_mapped(
            format!("[{group}] {}", extra.name.text),
            format!(
                "a lab has one virthost; using `{}`, import once per virthost",
                host.name.text
            ),
        );
    }
    for (k, v) in &host.vars {
        r.set(&k.text, scalar_node(&v.text, v.span), file);
    }
    Ok(InventoryHost {
        name: host.name.text.clone(),
        file: file.clone(),
        span: Some(host.name.span),
    })
}

/// The inventory as kube-ansible's IPv6 walkthrough prints it: no group
/// header, one host line with its connection variables (`ansible_host`,
/// `ansible_ssh_user`). That host is the virthost: the group it is in.
fn lone_connected_host(sections: &[ini::Section]) -> Option<&'static str> {
    let hosts: Vec<&ini::HostLine> = sections
        .iter()
        .filter(|s| s.kind == SectionKind::Hosts)
        .flat_map(|s| s.hosts.iter())
        .collect();
    let connection = [
        "ansible_host",
        "ansible_ssh_host",
        "ansible_user",
        "ansible_ssh_user",
        "ansible_port",
        "ansible_ssh_port",
    ];
    let ungrouped = sections
        .iter()
        .any(|s| s.kind == SectionKind::Hosts && s.group == UNGROUPED && s.hosts.len() == 1);
    match hosts.as_slice() {
        [only]
            if ungrouped
                && only
                    .vars
                    .iter()
                    .any(|(k, _)| connection.contains(&k.text.as_str())) =>
        {
            Some(UNGROUPED)
        }
        _ => None,
    }
}

/// The group of host lines before any section header.
const UNGROUPED: &str = "ungrouped";

fn read_yaml_inventory(
    file: &Arc<SourceFile>,
    r: &mut Reader,
) -> Result<InventoryHost, Diagnostics> {
    let root = yaml::parse(&file.text).map_err(|e| one_error(file, e.span, e.message.clone()))?;
    if root.as_map().is_none() {
        return Err(one_error(
            file,
            Some(root.span),
            format!(
                "a YAML inventory is a mapping of groups (all: children: virthost: hosts: ...), found {}",
                root.describe()
            ),
        ));
    }
    // Groups with their chain of parents' vars: search `all`'s children and
    // the top level.
    fn find<'a>(node: &'a Node, name: &str, chain: &mut Vec<&'a Node>) -> Option<&'a Node> {
        let map = node.as_map()?;
        for (k, v) in map {
            if k.as_str() == Some(name) {
                return Some(v);
            }
        }
        for (k, v) in map {
            let children = if k.as_str() == Some("children") {
                Some(v)
            } else {
                v.get("children")
            };
            if let Some(children) = children {
                chain.push(v);
                if let Some(found) = find(children, name, chain) {
                    return Some(found);
                }
                chain.pop();
            }
        }
        None
    }
    let mut chain = Vec::new();
    let mut found = None;
    for g in VIRTHOST_GROUPS {
        chain.clear();
        if let Some(n) = find(&root, g, &mut chain) {
            found = Some((*g, n));
            break;
        }
    }
    let Some((group, group_node)) = found else {
        return Err(one_error(
            file,
            Some(root.span),
            "no `virthost` group (or the older `kubehost`) in this inventory",
        ));
    };
    let mut var_maps: Vec<&Node> = Vec::new();
    if let Some(all_vars) = root.get("all").and_then(|a| a.get("vars")) {
        var_maps.push(all_vars);
    }
    var_maps.extend(chain.iter().filter_map(|n| n.get("vars")));
    if let Some(v) = group_node.get("vars") {
        var_maps.push(v);
    }
    for vars in var_maps {
        let Some(entries) = vars.as_map() else {
            return Err(one_error(
                file,
                Some(vars.span),
                format!("`vars` must be a mapping, found {}", vars.describe()),
            ));
        };
        for (k, v) in entries {
            r.set(k.as_str().unwrap_or(""), v.clone(), file);
        }
    }
    let hosts = match group_node.get("hosts") {
        Some(h) => h,
        None => {
            return Err(one_error(
                file,
                Some(group_node.span),
                format!("group `{group}` has no `hosts`"),
            ));
        }
    };
    let Some(entries) = hosts.as_map() else {
        return Err(one_error(
            file,
            Some(hosts.span),
            format!(
                "`hosts` must be a mapping of host names, found {}",
                hosts.describe()
            ),
        ));
    };
    let Some((host_key, host_vars)) = entries.first() else {
        return Err(one_error(
            file,
            Some(hosts.span),
            format!("group `{group}` has no host"),
        ));
    };
    let host_name = host_key.as_str().unwrap_or("").to_string();
    for (k, _) in entries.iter().skip(1) {
        r.not_mapped(
            format!("{group}.hosts.{}", k.as_str().unwrap_or("")),
            format!("a lab has one virthost; using `{host_name}`, import once per virthost"),
        );
    }
    match &host_vars.kind {
        NodeKind::Null => {}
        NodeKind::Map(vars) => {
            for (k, v) in vars {
                r.set(k.as_str().unwrap_or(""), v.clone(), file);
            }
        }
        _ => {
            return Err(one_error(
                file,
                Some(host_vars.span),
                format!(
                    "the variables of host `{host_name}` must be a mapping, found {}",
                    host_vars.describe()
                ),
            ));
        }
    }
    Ok(InventoryHost {
        name: host_name,
        file: file.clone(),
        span: Some(host_key.span),
    })
}

// ---------------------------------------------------------------------------
// Extra vars

fn read_extra_vars(arg: &str, r: &mut Reader) -> Result<(), Diagnostics> {
    let (file, root) = if let Some(path) = arg.strip_prefix('@') {
        let file = read_file(Path::new(path))?;
        let root =
            yaml::parse(&file.text).map_err(|e| one_error(&file, e.span, e.message.clone()))?;
        (file, root)
    } else if arg.trim_start().starts_with('{') {
        let file = SourceFile::new("<-e argument>", arg);
        let root =
            yaml::parse(&file.text).map_err(|e| one_error(&file, e.span, e.message.clone()))?;
        (file, root)
    } else {
        // `key=value key2=value2`: values are words, as on Ansible's command line.
        let file = SourceFile::new("<-e argument>", arg);
        let mut entries = Vec::new();
        let mut col = 0usize;
        for word in arg.split(' ') {
            let start = col;
            col += word.chars().count() + 1;
            if word.is_empty() {
                continue;
            }
            let at = |c: usize, len: usize| Span {
                start: Pos {
                    line: 1,
                    col: c as u32 + 1,
                },
                end: Pos {
                    line: 1,
                    col: (c + len) as u32 + 1,
                },
            };
            let Some((k, v)) = word.split_once('=') else {
                return Err(one_error(
                    &file,
                    Some(at(start, word.chars().count())),
                    format!(
                        "-e expects `@file.yml`, `key=value` or a YAML mapping, found `{word}`"
                    ),
                ));
            };
            if k.is_empty() {
                return Err(one_error(
                    &file,
                    Some(at(start, word.chars().count())),
                    format!("`{word}` has no variable name before `=`"),
                ));
            }
            let vcol = start + k.chars().count() + 1;
            entries.push((
                scalar_node(k, at(start, k.chars().count())),
                scalar_node(v, at(vcol, v.chars().count())),
            ));
        }
        let root = Node {
            kind: NodeKind::Map(entries),
            span: Span::default(),
        };
        (file, root)
    };
    match &root.kind {
        NodeKind::Null => Ok(()),
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                r.set(k.as_str().unwrap_or(""), v.clone(), &file);
            }
            Ok(())
        }
        _ => Err(one_error(
            &file,
            Some(root.span),
            format!(
                "extra vars must be a mapping of variable names to values, found {}",
                root.describe()
            ),
        )),
    }
}

// ---------------------------------------------------------------------------
// The lab, as the importer builds it

#[derive(Debug, Default)]
struct Draft {
    name: String,
    description: String,
    virthost: VirthostDraft,
    image: ImageDraft,
    networks: Vec<NetworkDraft>,
    defaults: DefaultsDraft,
    vms: Vec<VmDraft>,
    kubernetes: Option<KubernetesDraft>,
    scenario_ipv6: Option<bool>,
}

#[derive(Debug, Default)]
struct VirthostDraft {
    local: bool,
    address: Option<String>,
    port: Option<u64>,
    user: Option<String>,
    identity_file: Option<String>,
    storage_dir: Option<String>,
}

#[derive(Debug, Default)]
struct ImageDraft {
    url: Option<(String, String)>,
    user: Option<String>,
    packages: Vec<String>,
}

#[derive(Debug, Default)]
struct NetworkDraft {
    name: &'static str,
    kind: &'static str,
    ipv4: Option<Ipv4Net>,
    ipv6: Option<&'static str>,
    dhcp_range: Option<(Ipv4Addr, Ipv4Addr)>,
    bridge: Option<String>,
    nic: Option<String>,
}

#[derive(Debug, Default)]
struct DefaultsDraft {
    cpus: Option<u64>,
    memory_mb: Option<u64>,
    disk_gb: Option<u64>,
}

#[derive(Debug, Default)]
struct VmDraft {
    name: String,
    roles: Vec<String>,
    cpus: Option<u64>,
    memory_mb: Option<u64>,
    spare_disk_mb: Option<u64>,
    nics: Vec<NicDraft>,
}

#[derive(Debug, Default)]
struct NicDraft {
    network: &'static str,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
}

#[derive(Debug, Default)]
struct KubernetesDraft {
    version: Option<String>,
    runtime: Option<&'static str>,
    cni: Option<&'static str>,
    ipv6: bool,
    network: Option<&'static str>,
    pod_cidr: Option<String>,
    service_cidr: Option<String>,
    ha: Option<HaDraft>,
}

#[derive(Debug)]
enum HaDraft {
    Haproxy,
    KubeVip(IpAddr),
}

/// One entry of `virtual_machines`, as read.
struct VmEntry {
    name: String,
    node_type: Option<String>,
    ram_mb: Option<u64>,
    cpus: Option<u64>,
    static_ip: Option<Ipv4Addr>,
    /// Where the entry is, for messages: `virtual_machines[2]`.
    at: String,
}

/// A DNS-1123 label made from any text: lowercase, `_` and other
/// characters become `-`, at most `max` characters.
pub fn to_label(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let mut out: String = out.trim_matches('-').chars().take(max).collect();
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// kube-ansible's `node_type` (the inventory group of a VM) as kubelab roles.
fn roles_for(node_type: &str) -> Vec<String> {
    match node_type {
        "master" | "masters" => vec!["control-plane".into()],
        // Extra control planes of an HA cluster.
        "master_slave" | "master-slave" => vec!["control-plane".into()],
        "nodes" | "node" | "minions" | "minion" => vec!["worker".into()],
        "lb" => vec!["lb".into()],
        other => {
            let l = to_label(other, 40);
            if l.is_empty() { vec![] } else { vec![l] }
        }
    }
}

fn read_vms(r: &mut Reader) -> Vec<VmEntry> {
    let Some(v) = r.take("virtual_machines") else {
        r.adjusted(
            "virtual_machines",
            "not given: using kube-ansible's default VMs kube-master, kube-node-1, kube-node-2",
        );
        return [
            ("kube-master", "master"),
            ("kube-node-1", "nodes"),
            ("kube-node-2", "nodes"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (n, t))| VmEntry {
            name: n.to_string(),
            node_type: Some(t.to_string()),
            ram_mb: None,
            cpus: None,
            static_ip: None,
            at: format!("virtual_machines[{i}]"),
        })
        .collect();
    };
    let Some(items) = v.node.as_seq() else {
        let node = v.node.clone();
        r.error(
            &v,
            &node,
            format!(
                "virtual_machines: expected a list of VMs, found {}",
                v.node.describe()
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut plain_names = false;
    for (i, item) in items.iter().enumerate() {
        let at = format!("virtual_machines[{i}]");
        match &item.kind {
            // Before kube-ansible v0.1.6: a plain list of names.
            NodeKind::Scalar { text, .. } => {
                plain_names = true;
                out.push(VmEntry {
                    name: text.clone(),
                    node_type: None,
                    ram_mb: None,
                    cpus: None,
                    static_ip: None,
                    at,
                });
            }
            NodeKind::Map(entries) => {
                let mut e = VmEntry {
                    name: String::new(),
                    node_type: None,
                    ram_mb: None,
                    cpus: None,
                    static_ip: None,
                    at: at.clone(),
                };
                let mut has_name = false;
                for (k, val) in entries {
                    let key = k.as_str().unwrap_or("");
                    if matches!(val.kind, NodeKind::Null) {
                        continue;
                    }
                    let text = val.as_str();
                    if contains_template(val) {
                        r.not_mapped(
                            format!("{at}.{key}"),
                            "its value is a Jinja expression, which kubelab does not evaluate",
                        );
                        continue;
                    }
                    match key {
                        "name" => match text {
                            Some(t) => {
                                e.name = t.to_string();
                                has_name = true;
                            }
                            None => r.error(&v, val, format!("{at}.name: expected a name")),
                        },
                        "node_type" => match text {
                            Some(t) => e.node_type = Some(t.to_string()),
                            None => r.error(&v, val, format!("{at}.node_type: expected a name")),
                        },
                        "system_ram_mb" => {
                            e.ram_mb =
                                r.uint_node(&format!("{at}.system_ram_mb"), &v, val, 128, 1 << 20)
                        }
                        "system_cpus" => {
                            e.cpus = r.uint_node(&format!("{at}.system_cpus"), &v, val, 1, 256)
                        }
                        "static_ip" => match text.map(|t| t.trim().parse::<Ipv4Addr>()) {
                            Some(Ok(a)) => e.static_ip = Some(a),
                            _ => r.error(
                                &v,
                                val,
                                format!(
                                    "{at}.static_ip: expected an IPv4 address, found {}",
                                    show_value(val)
                                ),
                            ),
                        },
                        "add_param" => r.not_mapped(
                            format!("{at}.add_param"),
                            "kubelab does not pass raw virt-install arguments; the lab file describes the VM instead",
                        ),
                        other => r.not_mapped(
                            format!("{at}.{other}"),
                            "not a virtual_machines key kubelab knows",
                        ),
                    }
                }
                if !has_name {
                    r.error(&v, item, format!("{at} has no `name`"));
                    continue;
                }
                out.push(e);
            }
            _ => r.error(
                &v,
                item,
                format!(
                    "{at}: expected a VM name or a mapping with `name`, found {}",
                    item.describe()
                ),
            ),
        }
    }
    if plain_names {
        r.adjusted(
            "virtual_machines",
            "a plain list of names (kube-ansible before v0.1.6): VMs named like `*master*` become control planes, the others workers",
        );
    }
    out
}

fn build(r: &mut Reader, name: &str, host: &InventoryHost, opts: &ImportOptions) -> Option<Draft> {
    let mut d = Draft {
        name: name.to_string(),
        ..Draft::default()
    };
    let inputs: Vec<String> = std::iter::once(file_name(&opts.inventory))
        .chain(opts.extra_vars.iter().map(|a| match a.strip_prefix('@') {
            Some(p) => file_name(Path::new(p)),
            None => "-e".to_string(),
        }))
        .collect();
    d.description = format!("imported from kube-ansible ({})", inputs.join(", "));

    // --- The virthost.
    let connection = r.string("ansible_connection").map(|(s, _)| s);
    if connection.as_deref() == Some("local") {
        d.virthost.local = true;
        for k in [
            "ansible_host",
            "ansible_ssh_host",
            "ansible_port",
            "ansible_ssh_port",
        ] {
            if r.take(k).is_some() {
                r.not_mapped(k, "the virthost is this machine (ansible_connection=local)");
            }
        }
    } else {
        if let Some(c) = &connection
            && c != "ssh"
            && c != "smart"
            && c != "paramiko"
        {
            r.not_mapped(
                "ansible_connection",
                format!("kubelab reaches the virthost over SSH; connection `{c}` is not supported"),
            );
        }
        // The lab would refuse an address that is no address: say so about
        // the inventory, where it was written.
        let address = match r
            .string("ansible_host")
            .or_else(|| r.string("ansible_ssh_host"))
        {
            Some((address, var)) => {
                // kube-ansible's walkthrough prints `ansible_host=` for the
                // reader to fill in.
                let problem = if address.trim().is_empty() {
                    Some(
                        "the virthost's address is empty: write its IP address or host name after the `=`"
                            .to_string(),
                    )
                } else {
                    address_problem(&address)
                };
                if let Some(problem) = problem {
                    let node = var.node.clone();
                    r.error(&var, &node, problem);
                }
                address
            }
            None => {
                if let Some(problem) = address_problem(&host.name) {
                    r.diags.push(Diagnostic::error(
                        &host.file,
                        host.span,
                        format!(
                            "{problem} (the virthost's name is its address without ansible_host)"
                        ),
                    ));
                }
                host.name.clone()
            }
        };
        d.virthost.address = Some(address);
        d.virthost.port = r
            .uint("ansible_port", 1, 65535)
            .or_else(|| r.uint("ansible_ssh_port", 1, 65535));
        d.virthost.user = r
            .string("ansible_user")
            .or_else(|| r.string("ansible_ssh_user"))
            .map(|(s, _)| s);
        d.virthost.identity_file = r
            .string("ansible_ssh_private_key_file")
            .or_else(|| r.string("ansible_private_key_file"))
            .map(|(s, _)| s);
    }
    if let Some((dir, _)) = r.string("images_directory") {
        if dir.starts_with('/') {
            d.virthost.storage_dir = Some(dir);
            r.adjusted(
                "images_directory",
                "became virthost.storage_dir: kubelab keeps its image cache and VM disks there",
            );
        } else {
            r.not_mapped(
                "images_directory",
                "not an absolute path; kubelab's storage_dir must be one",
            );
        }
    }

    // --- The image.
    let image_var = ["centos_genericcloud_url", "image_url", "cloud_image_url"]
        .into_iter()
        .find(|v| r.vars.contains_key(*v));
    let url = image_var.and_then(|v| r.string(v).map(|(s, _)| (v, s)));
    match (url, &opts.image_sha256) {
        (Some((_, url)), Some(sha)) => {
            d.image.url = Some((url, sha.to_ascii_lowercase()));
        }
        (Some((var, _)), None) => {
            r.not_mapped(
                var,
                "kubelab verifies every downloaded image by its sha256, and kube-ansible gave none; rerun with --image-sha256 <hex> to use this URL (the lab builds a debian-12 image instead)",
            );
        }
        (None, Some(_)) => {
            r.not_mapped(
                "--image-sha256",
                "no image URL variable (centos_genericcloud_url) to go with it",
            );
        }
        (None, None) => {
            r.adjusted(
                "centos_genericcloud_url",
                "not given; kube-ansible's default CentOS 7 image has no checksum, so the lab builds a debian-12 image",
            );
        }
    }
    if let Some((user, _)) = r.string("default_ansible_user") {
        if user == "root" {
            r.not_mapped(
                "default_ansible_user",
                "kubelab's image user cannot be root (it reaches root through sudo)",
            );
        } else if label_problem(&user.replace('_', "a"), 32).is_some() {
            r.not_mapped("default_ansible_user", "not a valid login name");
        } else {
            d.image.user = Some(user);
        }
    }
    if let Some(v) = r.take("optional_packages") {
        let names: Vec<String> = match &v.node.kind {
            NodeKind::Seq(items) => items
                .iter()
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect(),
            NodeKind::Scalar { text, .. } => text
                .split([',', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        if d.image.url.is_some() {
            r.not_mapped(
                "optional_packages",
                "extra packages can only be baked into a built image (image.build)",
            );
        } else {
            for p in names {
                let ok = p.len() >= 2
                    && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && p.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
                    });
                if ok {
                    d.image.packages.push(p);
                } else {
                    r.not_mapped(
                        format!("optional_packages: {}", p.escape_debug()),
                        "not a Debian package name",
                    );
                }
            }
        }
    }

    // --- VMs and their roles.
    let entries = read_vms(r);
    let ipv6 = r.bool("ipv6_enabled").unwrap_or(false);
    let bridged = r.bool("bridge_networking").unwrap_or(false);

    // --- Networks.
    let netmask_cidr = network_from_system_vars(r);
    let statics: Vec<Ipv4Addr> = entries.iter().filter_map(|e| e.static_ip).collect();
    let main_net_name = if bridged {
        BRIDGED_NETWORK
    } else {
        NAT_NETWORK
    };
    let mut main = NetworkDraft {
        name: main_net_name,
        kind: if bridged { "bridged" } else { "nat" },
        ..NetworkDraft::default()
    };
    if bridged {
        let bridge_name = r.string("bridge_name").map(|(s, _)| s);
        let bridge_network_name = r.string("bridge_network_name").map(|(s, _)| s);
        main.nic = r.string("bridge_physical_nic").map(|(s, _)| s);
        main.bridge = match (bridge_network_name, bridge_name) {
            (Some(b), other) => {
                if other.is_some() {
                    r.not_mapped(
                        "bridge_name",
                        "with bridge_networking the VMs attach to bridge_network_name",
                    );
                }
                Some(b)
            }
            // virbr0 is libvirt's NAT bridge, kube-ansible's default for
            // bridge_name; it is no host bridge to attach to.
            (None, Some(b)) if b == "virbr0" => None,
            (None, b) => b,
        };
        if main.bridge.is_none() && main.nic.is_none() {
            main.bridge = Some("br0".into());
            r.adjusted(
                "bridge_networking",
                "no bridge_network_name or bridge_physical_nic: attaching to kube-ansible's default host bridge br0",
            );
        }
        let cidr = match r.string("bridge_network_cidr") {
            Some((t, v)) => match t.trim().parse::<Ipv4Net>() {
                Ok(n) => Some(n.trunc()),
                Err(_) => {
                    let node = v.node.clone();
                    r.error(
                        &v,
                        &node,
                        format!("bridge_network_cidr: `{t}` is not an IPv4 CIDR"),
                    );
                    None
                }
            },
            None => None,
        };
        let cidr = cidr.and_then(|n| usable_subnet(r, "bridge_network_cidr", n));
        main.ipv4 = cidr.or(netmask_cidr).or_else(|| {
            Some(match statics.first() {
                Some(a) => {
                    r.adjusted(
                        "static_ip",
                        "no bridge_network_cidr: assumed the /24 around the first static address",
                    );
                    slash24(*a)
                }
                None => {
                    r.adjusted(
                        "bridge_network_cidr",
                        format!("not given: assumed kube-ansible's default {DEFAULT_BRIDGED_SUBNET}; check that it is your LAN's subnet"),
                    );
                    DEFAULT_BRIDGED_SUBNET.parse().unwrap_or_default()
                }
            })
        });
    } else {
        for k in [
            "bridge_name",
            "bridge_physical_nic",
            "bridge_network_name",
            "bridge_network_cidr",
        ] {
            if r.take(k).is_some() {
                r.not_mapped(
                    k,
                    "only used with bridge_networking: true; the lab has its own NAT network",
                );
            }
        }
        main.ipv4 = Some(match (netmask_cidr, statics.first()) {
            (Some(n), _) => n,
            (None, Some(a)) => {
                r.adjusted(
                    "static_ip",
                    "the NAT network is the /24 around the first static address",
                );
                slash24(*a)
            }
            (None, None) => {
                r.adjusted(
                    "bridge_networking",
                    format!(
                        "NAT network `{NAT_NETWORK}` on {DEFAULT_NAT_SUBNET} (kube-ansible used libvirt's `default` network, 192.168.122.0/24, which kubelab leaves alone)"
                    ),
                );
                DEFAULT_NAT_SUBNET.parse().unwrap_or_default()
            }
        });
    }
    // Static addresses must be inside the subnet, and off the gateway and
    // DHCP range (a NAT network serves DHCP on what is left).
    let subnet = main.ipv4;
    let gateway = if bridged {
        None
    } else {
        subnet.and_then(|n| n.hosts().next())
    };
    let mut used_static: Vec<Ipv4Addr> = Vec::new();
    let mut statics_ok: Vec<Option<Ipv4Addr>> = Vec::new();
    for e in &entries {
        let ok = e.static_ip.filter(|a| {
            let why = match subnet {
                Some(n) if !n.contains(a) => Some(format!("outside the network {n}")),
                Some(n) if *a == n.network() || *a == n.broadcast() => {
                    Some(format!("the network or broadcast address of {n}"))
                }
                _ if Some(*a) == gateway => Some("the virthost's gateway address".to_string()),
                _ if used_static.contains(a) => Some("given to another VM already".to_string()),
                None => Some("no subnet to put it in".to_string()),
                _ => None,
            };
            match why {
                Some(why) => {
                    r.not_mapped(format!("{}.static_ip", e.at), format!("{a} is {why}"));
                    false
                }
                None => true,
            }
        });
        if let Some(a) = ok {
            used_static.push(a);
        }
        statics_ok.push(ok);
    }
    if !bridged && let Some(n) = subnet {
        main.dhcp_range = dhcp_range_avoiding(n, &used_static);
    }
    if !bridged {
        for k in ["system_gateway", "system_nameservers", "system_dns_search"] {
            if r.take(k).is_some() {
                r.not_mapped(
                    k,
                    "the NAT network's virthost address is the gateway and DNS server",
                );
            }
        }
    }
    d.networks.push(main);
    let nat64_name = entries
        .iter()
        .find(|e| e.name.contains("nat64"))
        .map(|e| e.name.clone());
    if ipv6 {
        d.networks.push(NetworkDraft {
            name: IPV6_NETWORK,
            kind: "isolated",
            ipv6: Some(IPV6_PREFIX),
            ..NetworkDraft::default()
        });
        r.adjusted(
            "ipv6_enabled",
            format!(
                "IPv6 lab: every VM gets a second NIC on the isolated network `{IPV6_NETWORK}` ({IPV6_PREFIX}), Kubernetes runs IPv6-only on it, and the ipv6-ping6 scenario checks it"
            ),
        );
    }

    // --- VMs.
    let mut next_v6 = IPV6_FIRST_NODE;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for (e, static_ip) in entries.iter().zip(statics_ok) {
        let vm_name = to_label(&e.name, 40);
        if vm_name.is_empty() {
            r.not_mapped(
                format!("{}.name", e.at),
                format!(
                    "`{}` has nothing usable for a DNS-1123 name; VM left out",
                    e.name.escape_debug()
                ),
            );
            continue;
        }
        if vm_name != e.name {
            r.adjusted(
                format!("{}.name", e.at),
                format!(
                    "`{}` renamed `{vm_name}` (VM names are DNS-1123 labels)",
                    e.name.escape_debug()
                ),
            );
        }
        if !seen.insert(vm_name.clone()) {
            r.not_mapped(
                format!("{}.name", e.at),
                format!("a second VM named `{vm_name}`; left out"),
            );
            continue;
        }
        let is_nat64 = ipv6 && nat64_name.as_deref() == Some(e.name.as_str());
        let roles = if is_nat64 {
            vec!["nat64".to_string()]
        } else {
            match &e.node_type {
                Some(t) => roles_for(t),
                None if e.name.contains("master") => vec!["control-plane".into()],
                None => vec!["worker".into()],
            }
        };
        let mut nics = vec![NicDraft {
            network: main_net_name,
            ipv4: static_ip,
            ipv6: None,
        }];
        if ipv6 {
            let host = if is_nat64 {
                NAT64_ADDRESS
            } else {
                let h = next_v6;
                next_v6 += 1;
                h
            };
            nics.push(NicDraft {
                network: IPV6_NETWORK,
                ipv4: None,
                ipv6: Some(Ipv6Addr::from(0xfd00_u128 << 112 | host)),
            });
        }
        d.vms.push(VmDraft {
            name: vm_name,
            roles,
            cpus: e.cpus,
            memory_mb: e.ram_mb,
            spare_disk_mb: None,
            nics,
        });
    }
    if d.vms.is_empty() && !r.diags.has_errors() {
        r.diags.push(Diagnostic::error(
            &SourceFile::new("<command line>", ""),
            None,
            "no VMs to import: virtual_machines is empty",
        ));
    }

    // --- Defaults and spare disks.
    d.defaults.cpus = r.uint("system_default_cpus", 1, 256);
    d.defaults.memory_mb = r.uint("system_default_ram_mb", 128, 1 << 20);
    d.defaults.disk_gb = r.uint("set_root_disk_gb", 1, 65536);
    let attach = r
        .bool("spare_disk_attach")
        .or_else(|| r.bool("gluster_attach_disk"));
    let spare_size = r.uint("spare_disk_size_megs", 1, 64 << 20);
    if let Some((dev, _)) = r.string("spare_disk_dev")
        && dev != "vdb"
    {
        r.not_mapped(
            "spare_disk_dev",
            "kubelab attaches spare disks as vdb, vdc, … in order",
        );
    }
    if r.take("spare_disk_location").is_some() {
        r.not_mapped(
            "spare_disk_location",
            "kubelab keeps spare disks in its storage pool under virthost.storage_dir",
        );
    }
    match attach {
        Some(true) => {
            let size = spare_size.unwrap_or(10240);
            for vm in d
                .vms
                .iter_mut()
                .filter(|v| !v.roles.iter().any(|r| r == "nat64"))
            {
                vm.spare_disk_mb = Some(size);
            }
        }
        _ => {
            if spare_size.is_some() {
                r.not_mapped(
                    "spare_disk_size_megs",
                    "spare_disk_attach is not true, so no spare disks are made",
                );
            }
        }
    }

    // --- Kubernetes.
    let control_planes = d
        .vms
        .iter()
        .filter(|v| v.roles.iter().any(|r| r == "control-plane"))
        .count();
    let version = r.string("kube_version");
    let runtime = r.string("container_runtime");
    let cni = r.string("pod_network_type");
    let pod_cidr = r.string("pod_network_cidr");
    if control_planes == 0 {
        for (var, set) in [
            ("kube_version", version.is_some()),
            ("container_runtime", runtime.is_some()),
            ("pod_network_type", cni.is_some()),
            ("pod_network_cidr", pod_cidr.is_some()),
        ] {
            if set {
                r.not_mapped(
                    var,
                    "no VM has node_type master, so the lab installs no Kubernetes",
                );
            }
        }
        r.adjusted(
            "virtual_machines",
            "no VM has node_type master: the lab has no `kubernetes` section",
        );
    } else {
        let mut k = KubernetesDraft {
            ipv6,
            ..KubernetesDraft::default()
        };
        if ipv6 {
            k.network = Some(IPV6_NETWORK);
        }
        if let Some((v, _)) = version {
            k.version = map_version(r, &v);
        }
        if let Some((rt, _)) = runtime {
            k.runtime = match rt.as_str() {
                "docker" => Some("docker"),
                "crio" | "cri-o" => Some("crio"),
                "containerd" => Some("containerd"),
                other => {
                    r.not_mapped(
                        "container_runtime",
                        format!("kubelab has no runtime `{other}` (crio, docker, containerd); the default containerd is used"),
                    );
                    None
                }
            };
        }
        if let Some((c, _)) = cni {
            k.cni = match c.as_str() {
                "flannel" => Some("flannel"),
                "calico" => Some("calico"),
                "none" => Some("none"),
                other => {
                    r.not_mapped(
                        "pod_network_type",
                        format!("kubelab installs flannel, calico or none, not `{other}`; the default flannel is used"),
                    );
                    None
                }
            };
        }
        if let Some((c, v)) = pod_cidr {
            if ipv6 {
                r.not_mapped(
                    "pod_network_cidr",
                    "an IPv4 pod subnet in an IPv6-only lab; kubelab's IPv6 default is used",
                );
            } else {
                let text = if c.contains('/') {
                    c.clone()
                } else {
                    format!("{c}/16")
                };
                match text.parse::<Ipv4Net>() {
                    Ok(n) if n.network() == n.addr() => {
                        if let Some(lab) =
                            subnet.filter(|l| l.contains(&n.network()) || n.contains(&l.network()))
                        {
                            let node = v.node.clone();
                            r.error(
                                &v,
                                &node,
                                format!("pod_network_cidr: {n} overlaps the lab network {lab}"),
                            );
                        } else {
                            k.pod_cidr = Some(text);
                        }
                    }
                    _ => {
                        let node = v.node.clone();
                        r.error(
                            &v,
                            &node,
                            format!("pod_network_cidr: `{c}` is not an IPv4 network address"),
                        );
                    }
                }
            }
        }
        // Kubernetes' default subnets, unless the lab network is in them.
        if !ipv6 && let Some(lab) = subnet {
            let mut taken = vec![lab];
            if let Some(p) = k.pod_cidr.as_ref().and_then(|p| p.parse().ok()) {
                taken.push(p);
            }
            let service = first_free(SERVICE_SUBNETS, &taken);
            if let Some(svc) = service.filter(|s| s.to_string() != SERVICE_SUBNETS[0]) {
                r.adjusted(
                    "kubernetes",
                    format!("the lab network {lab} overlaps Kubernetes' default service subnet: services use {svc}"),
                );
                k.service_cidr = Some(svc.to_string());
            }
            if let Some(svc) = service {
                taken.push(svc);
            }
            if k.pod_cidr.is_none()
                && let Some(pods) =
                    first_free(POD_SUBNETS, &taken).filter(|p| p.to_string() != POD_SUBNETS[0])
            {
                r.adjusted(
                    "kubernetes",
                    format!(
                        "the lab network {lab} overlaps the default pod subnet: pods use {pods}"
                    ),
                );
                k.pod_cidr = Some(pods.to_string());
            }
        }
        if control_planes > 1 {
            if d.vms.iter().any(|v| v.roles.iter().any(|r| r == "lb")) {
                k.ha = Some(HaDraft::Haproxy);
                r.adjusted(
                    "virtual_machines",
                    "several masters and an `lb` VM: kubernetes.ha is haproxy, as in kube-ansible",
                );
            } else if ipv6 {
                // The Kubernetes network is the IPv6 one; the nodes count
                // up from fd00::100 and the NAT64 VM is fd00::64.
                let vip = Ipv6Addr::from(0xfd00_u128 << 112 | 0x10);
                k.ha = Some(HaDraft::KubeVip(IpAddr::V6(vip)));
                r.adjusted(
                    "virtual_machines",
                    format!("several masters and no `lb` VM: kubernetes.ha is kube-vip with the virtual IP {vip}"),
                );
            } else if let (Some(n), false) = (subnet, bridged) {
                // A virtual IP from the static half of the NAT subnet.
                let vip = n
                    .hosts()
                    .skip(9)
                    .find(|a| !used_static.contains(a) && main_outside_dhcp(&d.networks[0], *a));
                match vip {
                    Some(vip) => {
                        k.ha = Some(HaDraft::KubeVip(IpAddr::V4(vip)));
                        r.adjusted(
                            "virtual_machines",
                            format!("several masters and no `lb` VM: kubernetes.ha is kube-vip with the virtual IP {vip}"),
                        );
                    }
                    None => {
                        r.diags.push(Diagnostic::error(
                            &SourceFile::new("<command line>", ""),
                            None,
                            "several masters but no `lb` VM and no free address for a virtual IP; add a VM with node_type lb",
                        ));
                    }
                }
            } else {
                r.diags.push(Diagnostic::error(
                    &SourceFile::new("<command line>", ""),
                    None,
                    "several masters on a bridged network but no `lb` VM; add a VM with node_type lb (kubelab cannot pick a virtual IP on your LAN)",
                ));
            }
        }
        d.kubernetes = Some(k);
    }
    // The ping6 scenario needs two nodes besides the NAT64 box.
    let nodes = d
        .vms
        .iter()
        .filter(|v| !v.roles.iter().any(|r| r == "nat64"))
        .count();
    if ipv6 && nodes >= 2 {
        d.scenario_ipv6 = Some(nat64_name.is_some());
    }
    Some(d)
}

fn main_outside_dhcp(net: &NetworkDraft, a: Ipv4Addr) -> bool {
    match net.dhcp_range {
        Some((s, e)) => a < s || a > e,
        None => net
            .ipv4
            .and_then(default_dhcp_start)
            .is_none_or(|start| a < start),
    }
}

/// Where kubelab's default DHCP range starts.
fn default_dhcp_start(n: Ipv4Net) -> Option<Ipv4Addr> {
    crate::lab::validate::default_dhcp_range(n).map(|(start, _)| start)
}

/// Keep kubelab's default DHCP range (the upper half) unless a static
/// address falls in it; then the largest run of free addresses after the
/// gateway.
fn dhcp_range_avoiding(n: Ipv4Net, statics: &[Ipv4Addr]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let start = default_dhcp_start(n)?;
    if !statics.iter().any(|a| *a >= start) {
        return None;
    }
    let first = u32::from(n.network()).checked_add(2)?;
    let last = u32::from(n.broadcast()).checked_sub(1)?;
    let mut best: Option<(u32, u32)> = None;
    let mut run: Option<u32> = None;
    for a in first..=last + 1 {
        let taken = a > last || statics.contains(&Ipv4Addr::from(a));
        match (taken, run) {
            (false, None) => run = Some(a),
            (true, Some(s)) => {
                if best.is_none_or(|(bs, be)| a - 1 - s > be - bs) {
                    best = Some((s, a - 1));
                }
                run = None;
            }
            _ => {}
        }
    }
    best.map(|(s, e)| (Ipv4Addr::from(s), Ipv4Addr::from(e)))
}

fn slash24(a: Ipv4Addr) -> Ipv4Net {
    Ipv4Net::new(a, 24).map(|n| n.trunc()).unwrap_or_default()
}

/// A subnet big enough for a lab network (kubelab wants /29 or larger).
fn usable_subnet(r: &mut Reader, var: &str, n: Ipv4Net) -> Option<Ipv4Net> {
    if n.prefix_len() > 29 {
        r.not_mapped(
            var,
            format!("{n} is too small for a lab network (kubelab needs /29 or larger)"),
        );
        None
    } else {
        Some(n)
    }
}

/// The first candidate subnet that overlaps none of `taken`.
fn first_free(candidates: &[&str], taken: &[Ipv4Net]) -> Option<Ipv4Net> {
    candidates
        .iter()
        .filter_map(|c| c.parse::<Ipv4Net>().ok())
        .find(|c| {
            !taken
                .iter()
                .any(|t| t.contains(&c.network()) || c.contains(&t.network()))
        })
}

/// `system_network` + `system_netmask` as a CIDR.
fn network_from_system_vars(r: &mut Reader) -> Option<Ipv4Net> {
    let net = r.string("system_network");
    let mask = r.string("system_netmask");
    let (Some((net, nv)), Some((mask, mv))) = (net, mask) else {
        return None;
    };
    let addr = match net.trim().parse::<Ipv4Addr>() {
        Ok(a) => a,
        Err(_) => {
            let node = nv.node.clone();
            r.error(
                &nv,
                &node,
                format!("system_network: `{net}` is not an IPv4 address"),
            );
            return None;
        }
    };
    let prefix = match mask.trim().parse::<Ipv4Addr>() {
        Ok(m) => ipnet::ipv4_mask_to_prefix(m).ok(),
        Err(_) => mask.trim().trim_start_matches('/').parse::<u8>().ok(),
    };
    match prefix.and_then(|p| Ipv4Net::new(addr, p).ok()) {
        Some(n) => usable_subnet(r, "system_netmask", n.trunc()),
        None => {
            let node = mv.node.clone();
            r.error(
                &mv,
                &node,
                format!("system_netmask: `{mask}` is not a netmask"),
            );
            None
        }
    }
}

/// `latest`, `1.17.3-0`, `v1.17.3`, `1.17` as a kubelab version.
fn map_version(r: &mut Reader, v: &str) -> Option<String> {
    let t = v.trim();
    if t == "latest" {
        r.adjusted(
            "kube_version",
            "`latest`: kubelab pins a version; its default is used",
        );
        return None;
    }
    let t = t.trim_start_matches('v');
    // RPM release suffix: 1.17.3-0
    let t = t.split_once('-').map_or(t, |(v, _)| v);
    let parts: Vec<&str> = t.split('.').collect();
    let numeric = parts
        .iter()
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let minor = match (numeric, parts.as_slice()) {
        (true, ["1", m] | ["1", m, _]) => m.parse::<u32>().ok(),
        _ => None,
    };
    let Some(minor) = minor else {
        r.not_mapped(
            "kube_version",
            format!("`{v}` is not a Kubernetes version; kubelab's default is used"),
        );
        return None;
    };
    let (oldest, newest) = KUBERNETES_MINORS;
    if minor < oldest {
        r.adjusted(
            "kube_version",
            format!(
                "`{v}` is older than kubelab supports; using 1.{oldest}, the oldest supported minor"
            ),
        );
        return Some(format!("1.{oldest}"));
    }
    if minor > newest {
        r.adjusted(
            "kube_version",
            format!("`{v}` is newer than kubelab supports; using 1.{newest}"),
        );
        return Some(format!("1.{newest}"));
    }
    if t != v.trim() {
        r.adjusted("kube_version", format!("`{v}` written as `{t}`"));
    }
    Some(t.to_string())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// Why a variable the importer did not read has no kubelab equivalent.
fn unmapped_reason(var: &str) -> String {
    let known: &[(&[&str], &str)] = &[
        (&["enable_auditlog"], "kubelab has no audit-log option"),
        (
            &[
                "kube_baseurl",
                "k8s_use_rpms",
                "binary_install",
                "binary_kubeadm_url",
                "binary_kubelet_url",
                "binary_kubectl_url",
            ],
            "kubelab installs Kubernetes from the upstream package repositories, or from kubernetes.airgap_dir",
        ),
        (
            &["skip_preflight_checks"],
            "kubelab runs kubeadm with its preflight checks",
        ),
        (
            &["kubectl_user", "kubectl_group", "kubectl_home"],
            "kubelab sets up kubectl for the image user (image.user)",
        ),
        (
            &["kubectl_proxy_port"],
            "kubelab does not run kubectl proxy",
        ),
        (
            &["enable_endpointslice"],
            "EndpointSlices are always on in the Kubernetes versions kubelab supports",
        ),
        (
            &["k8s_image_repository"],
            "kubelab has no image repository option",
        ),
        (
            &["control_plane_listen_all"],
            "kubelab's control plane listens on the Kubernetes network",
        ),
        (
            &["enable_device_plugins"],
            "kubelab has no device plugin option",
        ),
        (
            &[
                "crio_version",
                "crio_build_install",
                "crio_use_copr",
                "crio_baseurl",
                "crio_binary_url",
                "crictl_binary_url",
                "conmon_binary_url",
            ],
            "kubelab installs CRI-O from the upstream repositories matching the Kubernetes version",
        ),
        (&["buildah_install"], "use the crio-buildah scenario"),
        (
            &["image_destination_name"],
            "kubelab names its cached images itself",
        ),
        (
            &[
                "ssh_proxy_enabled",
                "ssh_proxy_user",
                "ssh_proxy_host",
                "ssh_proxy_port",
            ],
            "kubelab always reaches the VMs through its own SSH connection to the virthost",
        ),
        (
            &["vm_ssh_key_path"],
            "kubelab generates and keeps the VMs' SSH key itself",
        ),
        (
            &["skip_virthost_depedencies", "skip_virthost_dependencies"],
            "kubelab checks the virthost's packages itself",
        ),
        (
            &["use_host_passthrough"],
            "kubelab picks the CPU model itself (host-passthrough with KVM)",
        ),
        (&["hugepages_enabled"], "kubelab has no huge pages option"),
        (
            &["nested_virt_qemu_skip_vcpus"],
            "kubelab has no nested virtualization option",
        ),
        (
            &["system_network", "system_netmask"],
            "both are needed to make a subnet",
        ),
        (
            &["system_gateway", "system_nameservers", "system_dns_search"],
            "a lab network has no gateway or DNS settings; VMs on a bridged network take them from the LAN's DHCP",
        ),
        (
            &[
                "gluster_kubernetes_version",
                "heketi_image_name",
                "gk_deploy_wait_seconds",
                "gluster_storageclasses",
            ],
            "use the glusterfs scenario (with VMs of role storage)",
        ),
        (
            &[
                "ansible_become",
                "ansible_become_user",
                "ansible_become_method",
                "ansible_become_pass",
                "ansible_sudo",
            ],
            "kubelab logs in as virthost.user and uses sudo when that user is not root",
        ),
        (
            &["ansible_python_interpreter"],
            "kubelab needs no Python on the virthost",
        ),
        (
            &["ansible_ssh_pass", "ansible_password", "ansible_sudo_pass"],
            "kubelab logs in with SSH keys only; passwords are not copied",
        ),
        (
            &[
                "ansible_ssh_common_args",
                "ansible_ssh_extra_args",
                "ansible_ssh_args",
            ],
            "kubelab does not pass raw ssh arguments; use virthost.jump for a bastion host",
        ),
    ];
    for (names, reason) in known {
        if names.contains(&var) {
            return reason.to_string();
        }
    }
    if var.starts_with("ansible_") {
        return "an Ansible connection setting kubelab has no equivalent for".into();
    }
    "kubelab has no equivalent for this variable".into()
}

// ---------------------------------------------------------------------------
// Writing the lab

/// A YAML scalar: plain when that reads back as the same string, else
/// double-quoted (a JSON string is a valid YAML double-quoted scalar).
fn scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '~' | ':'))
        && s.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '/' || c == '~')
        && !s.ends_with(':')
        && s != "~"
        && s.parse::<f64>().is_err()
        && ansible_bool(s).is_none()
        && !matches!(s.to_ascii_lowercase().as_str(), "null" | "nan" | "inf");
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default()))
    }
}

fn size_mb(mb: u64) -> String {
    if mb.is_multiple_of(1024) {
        format!("{}GiB", mb / 1024)
    } else {
        format!("{mb}MiB")
    }
}

fn emit(d: &Draft, opts: &ImportOptions) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# Generated by `kubelab import-ansible` from kube-ansible"
    );
    let _ = writeln!(
        o,
        "# inventory {} and extra vars {}.",
        file_name(&opts.inventory),
        if opts.extra_vars.is_empty() {
            "(none)".to_string()
        } else {
            opts.extra_vars
                .iter()
                .map(|a| match a.strip_prefix('@') {
                    Some(p) => file_name(Path::new(p)),
                    None => a.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let _ = writeln!(o, "name: {}", scalar(&d.name));
    let _ = writeln!(o, "description: {}", scalar(&d.description));
    let _ = writeln!(o, "virthost:");
    let v = &d.virthost;
    if v.local {
        let _ = writeln!(o, "  local: true");
    }
    if let Some(a) = &v.address {
        let _ = writeln!(o, "  address: {}", scalar(a));
    }
    if let Some(p) = v.port {
        let _ = writeln!(o, "  port: {p}");
    }
    if let Some(u) = &v.user {
        let _ = writeln!(o, "  user: {}", scalar(u));
    }
    if let Some(f) = &v.identity_file {
        let _ = writeln!(o, "  identity_file: {}", scalar(f));
    }
    if let Some(s) = &v.storage_dir {
        let _ = writeln!(o, "  storage_dir: {}", scalar(s));
    }
    let _ = writeln!(o, "image:");
    match &d.image.url {
        Some((url, sha)) => {
            let _ = writeln!(o, "  url: {}", scalar(url));
            let _ = writeln!(o, "  sha256: {sha}");
        }
        None => {
            let _ = writeln!(o, "  build: debian-12");
            if !d.image.packages.is_empty() {
                let list: Vec<String> = d.image.packages.iter().map(|p| scalar(p)).collect();
                let _ = writeln!(o, "  packages: [{}]", list.join(", "));
            }
        }
    }
    if let Some(u) = &d.image.user {
        let _ = writeln!(o, "  user: {}", scalar(u));
    }
    let _ = writeln!(o, "networks:");
    for n in &d.networks {
        let _ = writeln!(o, "  - name: {}", n.name);
        let _ = writeln!(o, "    kind: {}", n.kind);
        if let Some(b) = &n.bridge {
            let _ = writeln!(o, "    bridge: {}", scalar(b));
        }
        if let Some(nic) = &n.nic {
            let _ = writeln!(o, "    nic: {}", scalar(nic));
        }
        if let Some(v4) = n.ipv4 {
            let _ = writeln!(o, "    ipv4: {v4}");
        }
        if let Some((s, e)) = n.dhcp_range {
            let _ = writeln!(o, "    dhcp_range: {{start: {s}, end: {e}}}");
        }
        if let Some(v6) = n.ipv6 {
            let _ = writeln!(o, "    ipv6: {}", scalar(v6));
        }
    }
    let df = &d.defaults;
    if df.cpus.is_some() || df.memory_mb.is_some() || df.disk_gb.is_some() {
        let _ = writeln!(o, "defaults:");
        if let Some(c) = df.cpus {
            let _ = writeln!(o, "  cpus: {c}");
        }
        if let Some(m) = df.memory_mb {
            let _ = writeln!(o, "  memory: {}", size_mb(m));
        }
        if let Some(g) = df.disk_gb {
            let _ = writeln!(o, "  disk: {g}GiB");
        }
    }
    let _ = writeln!(o, "vms:");
    for vm in &d.vms {
        let _ = writeln!(o, "  - name: {}", scalar(&vm.name));
        if !vm.roles.is_empty() {
            let _ = writeln!(o, "    roles: [{}]", vm.roles.join(", "));
        }
        if let Some(c) = vm.cpus {
            let _ = writeln!(o, "    cpus: {c}");
        }
        if let Some(m) = vm.memory_mb {
            let _ = writeln!(o, "    memory: {}", size_mb(m));
        }
        if let Some(s) = vm.spare_disk_mb {
            let _ = writeln!(o, "    spare_disks:");
            let _ = writeln!(o, "      - size: {}", size_mb(s));
            let _ = writeln!(o, "        format: raw");
        }
        let needs_nics = vm.nics.len() > 1 || vm.nics.iter().any(|n| n.ipv4.is_some());
        if needs_nics {
            let _ = writeln!(o, "    nics:");
            for n in &vm.nics {
                let mut parts = vec![format!("network: {}", n.network)];
                if let Some(a) = n.ipv4 {
                    parts.push(format!("ipv4: {a}"));
                }
                if let Some(a) = n.ipv6 {
                    parts.push(format!("ipv6: {}", scalar(&IpAddr::V6(a).to_string())));
                }
                let _ = writeln!(o, "      - {{{}}}", parts.join(", "));
            }
        }
    }
    if let Some(k) = &d.kubernetes {
        let _ = writeln!(o, "kubernetes:");
        if let Some(v) = &k.version {
            let _ = writeln!(o, "  version: {}", scalar(v));
        }
        if let Some(rt) = k.runtime {
            let _ = writeln!(o, "  runtime: {rt}");
        }
        if let Some(c) = k.cni {
            let _ = writeln!(o, "  cni: {c}");
        }
        if k.ipv6 {
            let _ = writeln!(o, "  ip_family: ipv6");
        }
        if let Some(n) = k.network {
            let _ = writeln!(o, "  network: {n}");
        }
        if let Some(p) = &k.pod_cidr {
            let _ = writeln!(o, "  pod_cidrs: [{}]", scalar(p));
        }
        if let Some(p) = &k.service_cidr {
            let _ = writeln!(o, "  service_cidrs: [{}]", scalar(p));
        }
        match &k.ha {
            Some(HaDraft::Haproxy) => {
                let _ = writeln!(o, "  ha: {{mode: haproxy}}");
            }
            Some(HaDraft::KubeVip(vip)) => {
                let _ = writeln!(
                    o,
                    "  ha: {{mode: kube-vip, vip: {}}}",
                    scalar(&vip.to_string())
                );
            }
            None => {}
        }
    }
    if let Some(nat64) = d.scenario_ipv6 {
        let _ = writeln!(o, "scenarios:");
        if nat64 {
            let _ = writeln!(o, "  - name: ipv6-ping6");
            let _ = writeln!(o, "    params: {{through_nat64: true}}");
        } else {
            let _ = writeln!(o, "  - name: ipv6-ping6");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_any_text() {
        assert_eq!(to_label("Kube_Master", 40), "kube-master");
        assert_eq!(to_label("a;rm -rf /", 40), "a-rm-rf");
        assert_eq!(to_label("___", 40), "");
    }

    #[test]
    fn scalars_that_would_change_meaning_are_quoted() {
        assert_eq!(scalar("kube-master"), "kube-master");
        assert_eq!(scalar("1.24"), "\"1.24\"");
        assert_eq!(scalar("yes"), "\"yes\"");
        assert_eq!(scalar("fd00::/64"), "fd00::/64");
        assert_eq!(scalar("https://x/y"), "https://x/y");
        assert_eq!(scalar("a:"), "\"a:\"");
        assert_eq!(scalar("a b"), "\"a b\"");
    }

    #[test]
    fn dhcp_range_moves_away_from_static_addresses() {
        let n: Ipv4Net = "192.168.1.0/24".parse().unwrap();
        assert_eq!(
            dhcp_range_avoiding(n, &["192.168.1.10".parse().unwrap()]),
            None
        );
        let r = dhcp_range_avoiding(n, &["192.168.1.200".parse().unwrap()]).unwrap();
        assert_eq!(
            r,
            (
                "192.168.1.2".parse().unwrap(),
                "192.168.1.199".parse().unwrap()
            )
        );
    }

    #[test]
    fn ansible_bools() {
        assert_eq!(ansible_bool("True"), Some(true));
        assert_eq!(ansible_bool("no"), Some(false));
        assert_eq!(ansible_bool("maybe"), None);
    }
}
