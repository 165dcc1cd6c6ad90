//! `link` and `route`: links and routes in network namespaces, with
//! iproute2 on the host.
//!
//! One round trip inspects: each endpoint is resolved on the host to the
//! path of its network namespace (`/run/netns/NAME`, `/proc/PID/ns/net` of
//! a container's process, the CRI's path of a pod's sandbox) and the
//! interfaces (or routes) are read there as JSON (`ip -j`). The comparison
//! with what the step asks for happens here; when something differs a
//! second round trip runs the `ip` commands that fix it (inside a namespace
//! through `nsenter --net=PATH`). Check mode stops after the comparison and
//! reports the commands it would run.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use super::{Outcome, Target, exec};
use crate::endpoint::{ContainerRuntime, Endpoint, describe};
use crate::playbook::links::{LinkArgs, LinkEnd, LinkKind, RouteArgs, parse_destination};
use crate::transport::{Command, TransportError, quote};
use crate::values::Presence;

/// A link end, checked.
#[derive(Clone, Debug)]
struct End {
    endpoint: Endpoint,
    ifname: String,
    addresses: Option<Vec<IpNet>>,
    mtu: Option<u32>,
    up: bool,
    master: Option<String>,
    ipv6: Option<bool>,
}

/// A `link` step, checked.
#[derive(Clone, Debug)]
struct LinkSpec {
    kind: LinkKind,
    a: End,
    b: Option<End>,
    state: Presence,
    vni: Option<u32>,
    remote: Option<IpAddr>,
    /// vxlan: the all-zero FDB entries wanted (head-end replication).
    flood: Option<BTreeSet<IpAddr>>,
    local: Option<IpAddr>,
    port: u16,
    parent: Option<String>,
    vlan_id: Option<u16>,
    mode: String,
}

fn opt_text(t: Option<&crate::values::Text>) -> Option<String> {
    t.map(|t| t.as_str().trim().to_string())
        .filter(|s| !s.is_empty())
}

fn opt_u64(c: Option<crate::values::Count>) -> Result<Option<u64>, String> {
    c.map(|c| c.get()).transpose()
}

fn end_spec(e: &LinkEnd, default_mtu: Option<u32>) -> Result<End, String> {
    let addresses = match &e.addresses {
        None => None,
        Some(list) => Some(
            list.items()
                .iter()
                .map(|a| {
                    a.parse::<IpNet>()
                        .map_err(|_| format!("`{a}` is not an address with prefix length"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(End {
        endpoint: e.keys().endpoint()?,
        ifname: e.ifname.as_str().trim().to_string(),
        addresses,
        mtu: opt_u64(e.mtu)?.map(|m| m as u32).or(default_mtu),
        up: e.up.map(|u| u.get()).transpose()?.unwrap_or(true),
        master: opt_text(e.master.as_ref()),
        ipv6: e.ipv6.map(|f| f.get()).transpose()?,
    })
}

impl LinkSpec {
    fn from_args(a: &LinkArgs) -> Result<LinkSpec, String> {
        let problems = a.problems();
        if !problems.is_empty() {
            return Err(describe(&problems));
        }
        let kind = a.kind()?;
        let mtu = opt_u64(a.mtu)?.map(|m| m as u32);
        let ip = |t: Option<&crate::values::Text>| {
            opt_text(t)
                .map(|s| {
                    s.parse::<IpAddr>()
                        .map_err(|_| format!("`{s}` is not an IP address"))
                })
                .transpose()
        };
        Ok(LinkSpec {
            kind,
            a: end_spec(&a.a, mtu)?,
            b: a.b.as_ref().map(|b| end_spec(b, mtu)).transpose()?,
            state: a.state,
            vni: opt_u64(a.vni)?.map(|v| v as u32),
            remote: ip(a.remote.as_ref())?,
            flood: match &a.flood {
                None => None,
                Some(list) => Some(
                    list.items()
                        .iter()
                        .map(|t| {
                            t.parse::<IpAddr>()
                                .map_err(|_| format!("`{t}` is not an IP address"))
                        })
                        .collect::<Result<BTreeSet<_>, _>>()?,
                ),
            },
            local: ip(a.local.as_ref())?,
            port: opt_u64(a.port)?.map_or(4789, |p| p as u16),
            parent: opt_text(a.parent.as_ref()),
            vlan_id: opt_u64(a.vlan_id)?.map(|v| v as u16),
            mode: opt_text(a.mode.as_ref()).unwrap_or_else(|| "bridge".into()),
        })
    }

    fn ends(&self) -> Vec<&End> {
        std::iter::once(&self.a).chain(self.b.as_ref()).collect()
    }
}

/// A regular expression matching exactly `name` (crictl filters by regex;
/// names are letters, digits, `_`, `.`, `-`).
fn exact_regex(name: &str) -> String {
    format!("^{}$", name.replace('.', "\\."))
}

/// Shell lines that set `$ns` to the endpoint's namespace path: empty for
/// the host's own, `missing:<why>` when it cannot be found.
fn resolve_script(e: &Endpoint) -> String {
    let missing = |why: &str| format!("ns={}", quote(&format!("missing:{why}")));
    match e {
        Endpoint::Host => "ns=''\n".to_string(),
        Endpoint::Netns { name: n } => format!(
            "ns={}\n[ -e \"$ns\" ] || {}\n",
            quote(&format!("/run/netns/{n}")),
            missing(&format!("network namespace {n} does not exist"))
        ),
        Endpoint::Pid { pid: p } => format!(
            "ns=/proc/{p}/ns/net\n[ -e \"$ns\" ] || {}\n",
            missing(&format!("no process {p}"))
        ),
        Endpoint::Container {
            runtime: rt @ (ContainerRuntime::Podman | ContainerRuntime::Docker),
            name,
        } => {
            let bin = rt.as_str();
            format!(
                "if ! command -v {bin} >/dev/null 2>&1; then {}\n\
                 else\n  pid=$({bin} inspect --type container --format '{{{{.State.Pid}}}}' -- {} 2>/dev/null || true)\n  \
                 case \"$pid\" in ''|0|*[!0-9]*) {} ;; *) ns=\"/proc/$pid/ns/net\" ;; esac\nfi\n",
                missing(&format!("{bin} is not installed on this host")),
                quote(name),
                missing(&format!(
                    "{bin} container {name} is not running on this host"
                )),
            )
        }
        Endpoint::Container {
            runtime: ContainerRuntime::Crio,
            name,
        } => format!(
            "if ! command -v crictl >/dev/null 2>&1; then {}\n\
             else\n  id=$(crictl ps -q --state running --name {} 2>/dev/null | head -n 1)\n  pid=''\n  \
             if [ -n \"$id\" ]; then pid=$(crictl inspect --output go-template --template '{{{{.info.pid}}}}' \"$id\" 2>/dev/null || true); fi\n  \
             case \"$pid\" in ''|0|*[!0-9]*) {} ;; *) ns=\"/proc/$pid/ns/net\" ;; esac\nfi\n",
            missing("crictl is not installed on this host"),
            quote(&exact_regex(name)),
            missing(&format!("CRI container {name} is not running on this host")),
        ),
        Endpoint::Pod { namespace, name } => format!(
            "if ! command -v crictl >/dev/null 2>&1; then {}\n\
             else\n  id=$(crictl pods -q --state ready --namespace {} --name {} 2>/dev/null | head -n 1)\n  \
             if [ -z \"$id\" ]; then {}\n  else\n    \
             ns=$(crictl inspectp --output go-template --template '{{{{range .info.runtimeSpec.linux.namespaces}}}}{{{{if eq .type \"network\"}}}}{{{{.path}}}}{{{{end}}}}{{{{end}}}}' \"$id\" 2>/dev/null || true)\n    \
             if [ -z \"$ns\" ]; then\n      pid=$(crictl inspectp --output go-template --template '{{{{.info.pid}}}}' \"$id\" 2>/dev/null || true)\n      \
             case \"$pid\" in ''|0|*[!0-9]*) {} ;; *) ns=\"/proc/$pid/ns/net\" ;; esac\n    fi\n  fi\nfi\n",
            missing("crictl is not installed on this host"),
            quote(namespace),
            quote(&exact_regex(name)),
            missing(&format!(
                "pod {namespace}/{name} is not running on this node"
            )),
            missing(&format!(
                "no network namespace found for pod {namespace}/{name}"
            )),
        ),
    }
}

/// `inns PATH CMD…`: run CMD in the namespace at PATH (the host's own when
/// PATH is empty).
const INNS: &str = "inns() { kl_ns=$1; shift; if [ -n \"$kl_ns\" ]; then nsenter --net=\"$kl_ns\" \"$@\"; else \"$@\"; fi; }\n";

/// Where an endpoint was found.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ns {
    /// Its path (empty: the host's own namespace).
    Found(String),
    Missing(String),
}

/// An interface as `ip -j -d addr show` describes it.
#[derive(Clone, Debug, Default, Deserialize)]
struct IpLink {
    ifindex: u32,
    ifname: String,
    #[serde(default)]
    link: Option<String>,
    #[serde(default)]
    link_index: Option<u32>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    mtu: Option<u32>,
    /// The bridge it is a port of.
    #[serde(default)]
    master: Option<String>,
    #[serde(default)]
    linkinfo: Option<LinkInfo>,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct LinkInfo {
    #[serde(default)]
    info_kind: Option<String>,
    #[serde(default)]
    info_data: serde_json::Value,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct AddrInfo {
    #[serde(default)]
    family: String,
    #[serde(default)]
    local: Option<String>,
    #[serde(default)]
    prefixlen: Option<u8>,
    #[serde(default)]
    scope: Option<String>,
}

impl IpLink {
    fn kind(&self) -> &str {
        self.linkinfo
            .as_ref()
            .and_then(|l| l.info_kind.as_deref())
            .unwrap_or("device")
    }
    fn info(&self, key: &str) -> Option<&serde_json::Value> {
        self.linkinfo.as_ref().and_then(|l| l.info_data.get(key))
    }
    fn is_up(&self) -> bool {
        self.flags.iter().any(|f| f == "UP")
    }
    /// Global addresses, as `address/prefix`.
    fn addresses(&self) -> BTreeSet<IpNet> {
        self.addr_info
            .iter()
            .filter(|a| {
                matches!(a.family.as_str(), "inet" | "inet6")
                    && a.scope.as_deref().unwrap_or("global") == "global"
            })
            .filter_map(|a| {
                let addr: IpAddr = a.local.as_deref()?.parse().ok()?;
                IpNet::new(addr, a.prefixlen?).ok()
            })
            .collect()
    }
}

/// What the inspection found for one end.
#[derive(Clone, Debug)]
struct Seen {
    ns: Ns,
    link: Option<IpLink>,
    /// Whether IPv6 is off on it (asked only when the end sets `ipv6`).
    ipv6_off: Option<bool>,
    /// Its all-zero FDB entries' destinations (asked only for `flood`).
    flood: Option<BTreeSet<IpAddr>>,
}

impl Seen {
    #[cfg(test)]
    fn new(ns: Ns, link: Option<IpLink>) -> Seen {
        Seen {
            ns,
            link,
            ipv6_off: None,
            flood: None,
        }
    }
}

/// An entry of `bridge -j fdb show`.
#[derive(Clone, Debug, Deserialize)]
struct FdbEntry {
    #[serde(default)]
    mac: String,
    #[serde(default)]
    dst: Option<String>,
}

/// The destinations of the all-zero (flooding) entries.
fn flood_entries(json: &str) -> Result<BTreeSet<IpAddr>, String> {
    let json = json.trim();
    if json.is_empty() {
        return Ok(BTreeSet::new());
    }
    let entries: Vec<FdbEntry> = serde_json::from_str(json)
        .map_err(|e| format!("cannot read `bridge -j fdb` output ({e}): {json}"))?;
    Ok(entries
        .iter()
        .filter(|e| e.mac == "00:00:00:00:00:00")
        .filter_map(|e| e.dst.as_deref()?.parse().ok())
        .collect())
}

/// Sections of an inspection: `@@ns PATH` then the JSON of `ip -j`.
fn parse_sections(stdout: &str) -> Vec<(Ns, String)> {
    let mut out: Vec<(Ns, String)> = Vec::new();
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("@@ns ") {
            let ns = match rest.strip_prefix("missing:") {
                Some(why) => Ns::Missing(why.to_string()),
                None => Ns::Found(rest.to_string()),
            };
            out.push((ns, String::new()));
        } else if line == "@@ns" {
            out.push((Ns::Found(String::new()), String::new()));
        } else if let Some((_, body)) = out.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

fn parse_links(stdout: &str, expected: usize) -> Result<Vec<Seen>, String> {
    let sections = parse_sections(stdout);
    if sections.len() != expected {
        return Err(format!(
            "unexpected inspection output ({} sections, expected {expected}): {}",
            sections.len(),
            stdout.trim()
        ));
    }
    sections
        .into_iter()
        .map(|(ns, body)| {
            let mut ipv6_off = None;
            let mut flood = None;
            let mut json = String::new();
            for line in body.lines() {
                if let Some(v) = line.strip_prefix("@@ipv6off ") {
                    ipv6_off = Some(v.trim() == "1");
                } else if let Some(v) = line.strip_prefix("@@fdb ") {
                    flood = Some(flood_entries(v)?);
                } else {
                    json.push_str(line);
                    json.push('\n');
                }
            }
            let body = json.trim();
            let link = if body.is_empty() || body == "null" {
                None
            } else {
                let mut list: Vec<IpLink> = serde_json::from_str(body)
                    .map_err(|e| format!("cannot read `ip -j` output ({e}): {body}"))?;
                if list.is_empty() {
                    None
                } else {
                    Some(list.swap_remove(0))
                }
            };
            Ok(Seen {
                ns,
                link,
                ipv6_off,
                flood,
            })
        })
        .collect()
}

/// One command of a fix: argv, run in a namespace (empty: the host's).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Action {
    ns: String,
    argv: Vec<String>,
}

impl Action {
    fn new(ns: &str, argv: &[&str]) -> Action {
        Action {
            ns: ns.to_string(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
        }
    }
    fn shell(&self) -> String {
        let cmd = self
            .argv
            .iter()
            .map(|a| quote(a))
            .collect::<Vec<_>>()
            .join(" ");
        if self.ns.is_empty() {
            cmd
        } else {
            format!("inns {} {cmd}", quote(&self.ns))
        }
    }
    /// How reports show it.
    fn display(&self) -> String {
        let cmd = self.argv.join(" ");
        if self.ns.is_empty() {
            cmd
        } else {
            format!("[{}] {cmd}", self.ns)
        }
    }
}

/// The fix, and one line per change for people.
#[derive(Debug, Default)]
struct Fix {
    actions: Vec<Action>,
    changes: Vec<String>,
}

impl Fix {
    fn push(&mut self, change: String, actions: Vec<Action>) {
        self.changes.push(change);
        self.actions.extend(actions);
    }
}

fn where_(e: &End) -> String {
    match e.endpoint {
        Endpoint::Host => e.ifname.clone(),
        ref other => format!("{} ({other})", e.ifname),
    }
}

/// Settle the end's namespace: found, or (a named one) to be created.
fn end_ns(end: &End, seen: &Seen, fix: &mut Fix) -> Result<String, String> {
    match (&seen.ns, &end.endpoint) {
        (Ns::Found(p), _) => Ok(p.clone()),
        (Ns::Missing(_), Endpoint::Netns { name: n }) => {
            fix.push(
                format!("created network namespace {n}"),
                vec![Action::new("", &["ip", "netns", "add", n])],
            );
            Ok(format!("/run/netns/{n}"))
        }
        (Ns::Missing(why), _) => Err(why.clone()),
    }
}

/// Make one end's interface match its settings (MTU, IPv6, addresses,
/// bridge, up). `ipv6_off` is what the inspection saw (none: a fresh link).
fn settle_end(end: &End, ns: &str, link: Option<&IpLink>, ipv6_off: Option<bool>, fix: &mut Fix) {
    let name = end.ifname.as_str();
    if let Some(mtu) = end.mtu
        && link.and_then(|l| l.mtu) != Some(mtu)
    {
        fix.push(
            format!("{}: MTU {mtu}", where_(end)),
            vec![Action::new(
                ns,
                &["ip", "link", "set", "dev", name, "mtu", &mtu.to_string()],
            )],
        );
    }
    // Before the addresses: IPv6 off takes the interface's IPv6 addresses.
    if let Some(want) = end.ipv6 {
        let off = link.and(ipv6_off).unwrap_or(false);
        if want == off {
            let (value, state) = if want { ("0", "on") } else { ("1", "off") };
            fix.push(
                format!("{}: IPv6 {state}", where_(end)),
                vec![Action::new(
                    ns,
                    &[
                        "sh",
                        "-c",
                        &format!("echo {value} >\"$0\""),
                        &format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"),
                    ],
                )],
            );
        }
    }
    if let Some(want) = &end.addresses {
        let have = link.map(IpLink::addresses).unwrap_or_default();
        let want: BTreeSet<IpNet> = want.iter().copied().collect();
        for a in have.difference(&want) {
            fix.push(
                format!("{}: removed {a}", where_(end)),
                vec![Action::new(
                    ns,
                    &["ip", "addr", "del", &a.to_string(), "dev", name],
                )],
            );
        }
        for a in want.difference(&have) {
            let text = a.to_string();
            let mut argv = vec!["ip", "addr", "add", text.as_str(), "dev", name];
            if a.addr().is_ipv6() {
                argv.push("nodad");
            }
            fix.push(
                format!("{}: added {a}", where_(end)),
                vec![Action::new(ns, &argv)],
            );
        }
    }
    if let Some(master) = &end.master
        && link.and_then(|l| l.master.as_deref()) != Some(master.as_str())
    {
        fix.push(
            format!("{}: port of bridge {master}", where_(end)),
            vec![Action::new(
                ns,
                &["ip", "link", "set", "dev", name, "master", master],
            )],
        );
    }
    let up = link.is_some_and(IpLink::is_up);
    if end.up != up {
        let state = if end.up { "up" } else { "down" };
        fix.push(
            format!("{}: {state}", where_(end)),
            vec![Action::new(ns, &["ip", "link", "set", "dev", name, state])],
        );
    }
}

fn is_peer(a: &IpLink, b: &IpLink) -> bool {
    (a.link.as_deref() == Some(b.ifname.as_str()) && b.link.as_deref() == Some(a.ifname.as_str()))
        || (a.link_index == Some(b.ifindex) && b.link_index == Some(a.ifindex))
}

fn info_str(l: &IpLink, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| l.info(k)).map(|v| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// Why an existing single-ended link differs from the spec, if it does.
fn single_differs(spec: &LinkSpec, l: &IpLink) -> Option<String> {
    let num = |k: &str| l.info(k).and_then(serde_json::Value::as_u64);
    match spec.kind {
        LinkKind::Vxlan => {
            if num("id") != spec.vni.map(u64::from) {
                return Some(format!("VNI {:?}", num("id")));
            }
            let remote = info_str(l, &["remote", "remote6", "group", "group6"])
                .and_then(|s| s.parse::<IpAddr>().ok());
            if remote != spec.remote {
                return Some(format!(
                    "remote {}",
                    remote.map_or("none".into(), |r| r.to_string())
                ));
            }
            if num("port") != Some(u64::from(spec.port)) {
                return Some(format!("port {:?}", num("port")));
            }
            if let Some(want) = spec.local {
                let local = info_str(l, &["local", "local6"]).and_then(|s| s.parse().ok());
                if local != Some(want) {
                    return Some("another local address".into());
                }
            }
            None
        }
        LinkKind::Vlan => {
            (num("id") != spec.vlan_id.map(u64::from)).then(|| format!("VLAN id {:?}", num("id")))
        }
        LinkKind::Macvlan => {
            let mode = info_str(l, &["mode"]).unwrap_or_default();
            (mode != spec.mode).then(|| format!("mode {mode}"))
        }
        LinkKind::Veth | LinkKind::Bridge => None,
    }
}

fn create_single(spec: &LinkSpec, ns: &str) -> Action {
    let a = &spec.a;
    let mut argv: Vec<String> = vec!["ip".into(), "link".into(), "add".into()];
    if matches!(spec.kind, LinkKind::Vlan | LinkKind::Macvlan)
        && let Some(p) = &spec.parent
    {
        argv.extend(["link".into(), p.clone()]);
    }
    argv.extend(["name".into(), a.ifname.clone()]);
    if !ns.is_empty() {
        argv.extend(["netns".into(), ns.to_string()]);
    }
    argv.extend(["type".into(), spec.kind.as_str().into()]);
    match spec.kind {
        LinkKind::Vxlan => {
            argv.extend(["id".into(), spec.vni.unwrap_or(0).to_string()]);
            if let Some(r) = spec.remote {
                argv.extend(["remote".into(), r.to_string()]);
            }
            if let Some(l) = spec.local {
                argv.extend(["local".into(), l.to_string()]);
            }
            argv.extend(["dstport".into(), spec.port.to_string()]);
            if let Some(p) = &spec.parent {
                argv.extend(["dev".into(), p.clone()]);
            }
        }
        LinkKind::Vlan => argv.extend(["id".into(), spec.vlan_id.unwrap_or(0).to_string()]),
        LinkKind::Macvlan => argv.extend(["mode".into(), spec.mode.clone()]),
        LinkKind::Veth | LinkKind::Bridge => {}
    }
    Action {
        ns: String::new(),
        argv,
    }
}

fn refuse(end: &End, found: &IpLink, want: &str) -> String {
    format!(
        "{} exists and is a {}, not a {want}: kubelab does not replace it (remove it or pick another name)",
        where_(end),
        found.kind()
    )
}

/// What to run so that the host matches a `link` step.
fn plan_link(spec: &LinkSpec, seen: &[Seen]) -> Result<Fix, String> {
    let mut fix = Fix::default();
    let kind = spec.kind.as_str();
    let ends = spec.ends();
    if spec.state == Presence::Absent {
        let mut deleted_peer_of_a = None;
        for (i, (end, s)) in ends.iter().zip(seen).enumerate() {
            let (Ns::Found(ns), Some(l)) = (&s.ns, &s.link) else {
                continue;
            };
            if l.kind() != kind {
                return Err(refuse(end, l, kind));
            }
            if i == 1 && deleted_peer_of_a.is_some_and(|a: &IpLink| is_peer(a, l)) {
                continue;
            }
            fix.push(
                format!("deleted {kind} {}", where_(end)),
                vec![Action::new(ns, &["ip", "link", "del", "dev", &end.ifname])],
            );
            if i == 0 {
                deleted_peer_of_a = Some(l);
            }
        }
        return Ok(fix);
    }
    let mut ns = Vec::new();
    for (end, s) in ends.iter().zip(seen) {
        ns.push(end_ns(end, s, &mut fix)?);
    }
    for (end, s) in ends.iter().zip(seen) {
        if let Some(l) = &s.link
            && l.kind() != kind
        {
            return Err(refuse(end, l, kind));
        }
    }
    let current: Vec<Option<&IpLink>> = seen.iter().map(|s| s.link.as_ref()).collect();
    let fresh = match spec.kind {
        LinkKind::Veth => {
            let (a, b) = (&spec.a, spec.b.as_ref().expect("checked: veth has b"));
            let intact = matches!((current[0], current[1]), (Some(x), Some(y)) if is_peer(x, y));
            if intact {
                false
            } else {
                let mut actions = Vec::new();
                let mut why = "created";
                if current[0].is_some() {
                    actions.push(Action::new(
                        &ns[0],
                        &["ip", "link", "del", "dev", &a.ifname],
                    ));
                    why = "replaced";
                }
                if current[1].is_some() {
                    actions.push(Action::new(
                        &ns[1],
                        &["ip", "link", "del", "dev", &b.ifname],
                    ));
                    why = "replaced";
                }
                let mut argv = vec!["ip", "link", "add", "name", a.ifname.as_str()];
                if !ns[0].is_empty() {
                    argv.extend(["netns", ns[0].as_str()]);
                }
                argv.extend(["type", "veth", "peer", "name", b.ifname.as_str()]);
                if !ns[1].is_empty() {
                    argv.extend(["netns", ns[1].as_str()]);
                }
                actions.push(Action::new("", &argv));
                fix.push(
                    format!("{why} veth {} <-> {}", where_(a), where_(b)),
                    actions,
                );
                true
            }
        }
        _ => {
            let differs = current[0].map(|l| single_differs(spec, l));
            match differs {
                Some(None) => false,
                Some(Some(why)) => {
                    fix.push(
                        format!("replaced {kind} {} (it had {why})", where_(&spec.a)),
                        vec![
                            Action::new(&ns[0], &["ip", "link", "del", "dev", &spec.a.ifname]),
                            create_single(spec, &ns[0]),
                        ],
                    );
                    true
                }
                None => {
                    fix.push(
                        format!("created {kind} {}", where_(&spec.a)),
                        vec![create_single(spec, &ns[0])],
                    );
                    true
                }
            }
        }
    };
    for (i, end) in ends.iter().enumerate() {
        let link = if fresh { None } else { current[i] };
        settle_end(end, &ns[i], link, seen[i].ipv6_off, &mut fix);
    }
    if let Some(want) = &spec.flood {
        let have = if fresh {
            BTreeSet::new()
        } else {
            seen[0].flood.clone().unwrap_or_default()
        };
        let vx = spec.a.ifname.as_str();
        for r in have.difference(want) {
            let r = r.to_string();
            fix.push(
                format!("{}: no longer floods to {r}", where_(&spec.a)),
                vec![Action::new(
                    &ns[0],
                    &["bridge", "fdb", "del", ZERO_MAC, "dev", vx, "dst", &r],
                )],
            );
        }
        for r in want.difference(&have) {
            let r = r.to_string();
            fix.push(
                format!("{}: floods to {r}", where_(&spec.a)),
                vec![Action::new(
                    &ns[0],
                    &["bridge", "fdb", "append", ZERO_MAC, "dev", vx, "dst", &r],
                )],
            );
        }
    }
    Ok(fix)
}

/// The all-zero MAC address of flooding FDB entries.
const ZERO_MAC: &str = "00:00:00:00:00:00";

/// The inspection script for the link's ends: per end its namespace, the
/// interface (`ip -j`), and when asked for, whether IPv6 is off on it and
/// (the first end of a `flood` vxlan) its FDB.
fn inspect_links_script(spec: &LinkSpec) -> String {
    let mut s = String::from(INNS);
    for (i, e) in spec.ends().into_iter().enumerate() {
        let name = quote(&e.ifname);
        s.push_str(&resolve_script(&e.endpoint));
        s.push_str("printf '@@ns %s\\n' \"$ns\"\n");
        s.push_str(&format!(
            "case \"$ns\" in missing:*) echo null ;; *) inns \"$ns\" ip -j -d addr show dev {name} 2>/dev/null || echo null ;; esac\n"
        ));
        // No file: no IPv6 in that namespace's kernel, which is off too.
        if e.ipv6.is_some() {
            s.push_str(&format!(
                "case \"$ns\" in missing:*) ;; *) printf '@@ipv6off %s\\n' \"$(inns \"$ns\" cat /proc/sys/net/ipv6/conf/{name}/disable_ipv6 2>/dev/null || echo 1)\" ;; esac\n"
            ));
        }
        if i == 0 && spec.flood.is_some() {
            s.push_str(&format!(
                "case \"$ns\" in missing:*) ;; *) printf '@@fdb %s\\n' \"$(inns \"$ns\" bridge -j fdb show dev {name} 2>/dev/null)\" ;; esac\n"
            ));
        }
    }
    s
}

/// Run a fix (or, in check mode, say what it would run).
async fn run_fix(fix: Fix, target: &Target<'_>) -> Result<Outcome, TransportError> {
    if fix.actions.is_empty() {
        return Ok(Outcome::ok());
    }
    let commands: Vec<String> = fix.actions.iter().map(Action::display).collect();
    if target.check {
        let mut o = Outcome::changed(true);
        o.msg = format!("would: {}", fix.changes.join("; "));
        o.stdout = commands.join("\n");
        return Ok(o);
    }
    let mut script = format!("set -e\n{INNS}");
    for a in &fix.actions {
        script.push_str(&a.shell());
        script.push('\n');
    }
    let out = exec(target, Command::Script(script), None).await?;
    let mut o = Outcome::changed(true).with_output(&out);
    o.stdout = commands.join("\n");
    if out.status.success() {
        o.msg = fix.changes.join("; ");
    } else {
        o.failed = true;
        o.changed = false;
        o.msg = format!("{}: {}", fix.changes.join("; "), out.stderr_str().trim());
    }
    Ok(o)
}

pub async fn link(a: &LinkArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    let spec = match LinkSpec::from_args(a) {
        Ok(s) => s,
        Err(e) => return Ok(Outcome::failed(format!("link: {e}"))),
    };
    let ends = spec.ends();
    let out = exec(target, Command::Script(inspect_links_script(&spec)), None).await?;
    if !out.status.success() {
        return Ok(Outcome::failed(format!(
            "link: inspecting the host failed ({}): {}",
            out.status,
            out.stderr_str().trim()
        )));
    }
    let seen = match parse_links(&out.stdout_str(), ends.len()) {
        Ok(s) => s,
        Err(e) => return Ok(Outcome::failed(format!("link: {e}"))),
    };
    match plan_link(&spec, &seen) {
        Ok(fix) => run_fix(fix, target).await,
        Err(e) => Ok(Outcome::failed(format!("link: {e}"))),
    }
}

/// A route as `ip -j route show` describes it.
#[derive(Clone, Debug, Default, Deserialize)]
struct IpRoute {
    dst: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    dev: Option<String>,
    #[serde(default)]
    metric: Option<u32>,
    #[serde(default, rename = "type")]
    route_type: Option<String>,
}

impl IpRoute {
    fn destination(&self, v6: bool) -> Option<IpNet> {
        if self.dst == "default" {
            return Some(if v6 {
                "::/0".parse().expect("literal")
            } else {
                "0.0.0.0/0".parse().expect("literal")
            });
        }
        parse_destination(&self.dst, None).ok()
    }
    fn gateway(&self) -> Option<IpAddr> {
        self.gateway.as_deref().and_then(|g| g.parse().ok())
    }
}

#[derive(Clone, Debug)]
struct RouteSpec {
    endpoint: Endpoint,
    dest: IpNet,
    via: Option<IpAddr>,
    dev: Option<String>,
    metric: Option<u32>,
    state: Presence,
}

impl RouteSpec {
    fn from_args(a: &RouteArgs) -> Result<RouteSpec, String> {
        let problems = a.problems();
        if !problems.is_empty() {
            return Err(describe(&problems));
        }
        let via = opt_text(a.via.as_ref())
            .map(|v| {
                v.parse::<IpAddr>()
                    .map_err(|_| format!("`{v}` is not an IP address"))
            })
            .transpose()?;
        let via_text = via.map(|v| v.to_string());
        Ok(RouteSpec {
            endpoint: a.keys().endpoint()?,
            dest: parse_destination(a.to.as_str(), via_text.as_deref())?,
            via,
            dev: opt_text(a.dev.as_ref()),
            metric: opt_u64(a.metric)?.map(|m| m as u32),
            state: a.state,
        })
    }
    fn family(&self) -> &'static str {
        if self.dest.addr().is_ipv6() {
            "-6"
        } else {
            "-4"
        }
    }
    fn dest_text(&self) -> String {
        if self.dest.prefix_len() == 0 {
            "default".into()
        } else {
            self.dest.to_string()
        }
    }
    fn describe(&self) -> String {
        let mut s = format!("route {}", self.dest_text());
        if let Some(v) = self.via {
            s.push_str(&format!(" via {v}"));
        }
        if let Some(d) = &self.dev {
            s.push_str(&format!(" dev {d}"));
        }
        if !matches!(self.endpoint, Endpoint::Host) {
            s.push_str(&format!(" ({})", self.endpoint));
        }
        s
    }
    fn argv(&self, verb: &str, metric: Option<u32>) -> Vec<String> {
        let mut argv: Vec<String> = vec![
            "ip".into(),
            self.family().into(),
            "route".into(),
            verb.into(),
            self.dest_text(),
        ];
        if let Some(v) = self.via {
            argv.extend(["via".into(), v.to_string()]);
        }
        if let Some(d) = &self.dev {
            argv.extend(["dev".into(), d.clone()]);
        }
        if let Some(m) = metric {
            argv.extend(["metric".into(), m.to_string()]);
        }
        argv
    }
}

/// What to run so that the namespace has (or lacks) the route.
fn plan_route(spec: &RouteSpec, ns: &Ns, routes: &[IpRoute]) -> Result<Fix, String> {
    let mut fix = Fix::default();
    let ns = match ns {
        Ns::Found(p) => p.clone(),
        Ns::Missing(why) => {
            return if spec.state == Presence::Absent {
                Ok(fix)
            } else {
                Err(why.clone())
            };
        }
    };
    let v6 = spec.dest.addr().is_ipv6();
    let same_dest: Vec<&IpRoute> = routes
        .iter()
        .filter(|r| r.route_type.as_deref().is_none_or(|t| t == "unicast"))
        .filter(|r| r.destination(v6) == Some(spec.dest))
        .filter(|r| spec.metric.is_none() || r.metric.unwrap_or(0) == spec.metric.unwrap_or(0))
        .collect();
    let matches = |r: &&IpRoute| {
        spec.via.is_none_or(|v| r.gateway() == Some(v))
            && spec.dev.as_ref().is_none_or(|d| r.dev.as_ref() == Some(d))
    };
    match spec.state {
        Presence::Present => {
            if same_dest.iter().any(matches) {
                return Ok(fix);
            }
            let metric = spec.metric.or_else(|| {
                (same_dest.len() == 1)
                    .then(|| same_dest[0].metric)
                    .flatten()
            });
            let argv = spec.argv("replace", metric);
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let what = if same_dest.is_empty() {
                "added"
            } else {
                "replaced"
            };
            fix.push(
                format!("{what} {}", spec.describe()),
                vec![Action::new(&ns, &argv)],
            );
        }
        Presence::Absent => {
            let mut metrics: Vec<Option<u32>> = same_dest
                .iter()
                .filter(|r| matches(r))
                .map(|r| r.metric)
                .collect();
            metrics.dedup();
            for m in metrics {
                let argv = spec.argv("del", m);
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                fix.push(
                    format!("deleted {}", spec.describe()),
                    vec![Action::new(&ns, &argv)],
                );
            }
        }
    }
    Ok(fix)
}

pub async fn route(a: &RouteArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    let spec = match RouteSpec::from_args(a) {
        Ok(s) => s,
        Err(e) => return Ok(Outcome::failed(format!("route: {e}"))),
    };
    let mut script = String::from(INNS);
    script.push_str(&resolve_script(&spec.endpoint));
    script.push_str("printf '@@ns %s\\n' \"$ns\"\n");
    script.push_str(&format!(
        "case \"$ns\" in missing:*) echo null ;; *) inns \"$ns\" ip -j {} route show table main ;; esac\n",
        spec.family()
    ));
    let out = exec(target, Command::Script(script), None).await?;
    if !out.status.success() {
        return Ok(Outcome::failed(format!(
            "route: reading routes failed ({}): {}",
            out.status,
            out.stderr_str().trim()
        )));
    }
    let stdout = out.stdout_str();
    let Some((ns, body)) = parse_sections(&stdout).into_iter().next() else {
        return Ok(Outcome::failed(format!(
            "route: unexpected output: {}",
            stdout.trim()
        )));
    };
    let body = body.trim();
    let routes: Vec<IpRoute> = if body.is_empty() || body == "null" {
        Vec::new()
    } else {
        match serde_json::from_str(body) {
            Ok(r) => r,
            Err(e) => {
                return Ok(Outcome::failed(format!(
                    "route: cannot read `ip -j route` output ({e}): {body}"
                )));
            }
        }
    };
    match plan_route(&spec, &ns, &routes) {
        Ok(fix) => run_fix(fix, target).await,
        Err(e) => Ok(Outcome::failed(format!("route: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(endpoint: Endpoint, ifname: &str, addrs: &[&str]) -> End {
        End {
            endpoint,
            ifname: ifname.into(),
            addresses: Some(addrs.iter().map(|a| a.parse().unwrap()).collect()),
            mtu: None,
            up: true,
            master: None,
            ipv6: None,
        }
    }

    fn veth(a: End, b: End) -> LinkSpec {
        LinkSpec {
            kind: LinkKind::Veth,
            a,
            b: Some(b),
            state: Presence::Present,
            vni: None,
            remote: None,
            flood: None,
            local: None,
            port: 4789,
            parent: None,
            vlan_id: None,
            mode: "bridge".into(),
        }
    }

    fn link(json: &str) -> IpLink {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn inspection_sections_are_split_per_endpoint() {
        let out = "@@ns /run/netns/x\n[{\"ifindex\":3,\"ifname\":\"e\",\"link_index\":4,\"flags\":[\"UP\"],\"addr_info\":[{\"family\":\"inet\",\"local\":\"10.0.0.1\",\"prefixlen\":24,\"scope\":\"global\"},{\"family\":\"inet6\",\"local\":\"fe80::1\",\"prefixlen\":64,\"scope\":\"link\"}]}]\n@@ns missing:podman container c is not running on this host\nnull\n";
        let seen = parse_links(out, 2).unwrap();
        assert_eq!(seen[0].ns, Ns::Found("/run/netns/x".into()));
        let l = seen[0].link.as_ref().unwrap();
        assert!(l.is_up());
        assert_eq!(
            l.addresses().into_iter().collect::<Vec<_>>(),
            vec!["10.0.0.1/24".parse::<IpNet>().unwrap()],
            "link-local addresses are not managed"
        );
        assert!(matches!(&seen[1].ns, Ns::Missing(w) if w.contains("not running")));
        assert!(seen[1].link.is_none());
        assert!(parse_links(out, 3).is_err());
    }

    #[test]
    fn an_intact_veth_needs_nothing_and_a_new_one_everything() {
        let spec = veth(
            end(Endpoint::Netns { name: "x".into() }, "e1", &["10.0.0.1/24"]),
            end(
                Endpoint::Netns { name: "y".into() },
                "e2",
                &["10.0.0.2/24", "fd00::2/64"],
            ),
        );
        let a = link(
            r#"{"ifindex":3,"ifname":"e1","link_index":7,"flags":["UP"],"linkinfo":{"info_kind":"veth"},"addr_info":[{"family":"inet","local":"10.0.0.1","prefixlen":24,"scope":"global"}]}"#,
        );
        let b = link(
            r#"{"ifindex":7,"ifname":"e2","link_index":3,"flags":["UP"],"linkinfo":{"info_kind":"veth"},"addr_info":[{"family":"inet","local":"10.0.0.2","prefixlen":24,"scope":"global"},{"family":"inet6","local":"fd00::2","prefixlen":64,"scope":"global"}]}"#,
        );
        let seen = vec![
            Seen::new(Ns::Found("/run/netns/x".into()), Some(a.clone())),
            Seen::new(Ns::Found("/run/netns/y".into()), Some(b)),
        ];
        assert!(plan_link(&spec, &seen).unwrap().actions.is_empty());

        let seen = vec![
            Seen::new(
                Ns::Missing("network namespace x does not exist".into()),
                None,
            ),
            Seen::new(Ns::Found("/run/netns/y".into()), None),
        ];
        let fix = plan_link(&spec, &seen).unwrap();
        let cmds: Vec<String> = fix.actions.iter().map(Action::display).collect();
        assert_eq!(
            cmds,
            vec![
                "ip netns add x",
                "ip link add name e1 netns /run/netns/x type veth peer name e2 netns /run/netns/y",
                "[/run/netns/x] ip addr add 10.0.0.1/24 dev e1",
                "[/run/netns/x] ip link set dev e1 up",
                "[/run/netns/y] ip addr add 10.0.0.2/24 dev e2",
                "[/run/netns/y] ip addr add fd00::2/64 dev e2 nodad",
                "[/run/netns/y] ip link set dev e2 up",
            ]
        );
    }

    #[test]
    fn a_veth_with_another_peer_is_replaced_and_other_kinds_are_refused() {
        let spec = veth(
            end(Endpoint::Host, "e1", &[]),
            end(Endpoint::Netns { name: "y".into() }, "e2", &[]),
        );
        let a = link(
            r#"{"ifindex":3,"ifname":"e1","link":"zz","flags":[],"linkinfo":{"info_kind":"veth"}}"#,
        );
        let seen = vec![
            Seen::new(Ns::Found(String::new()), Some(a)),
            Seen::new(Ns::Found("/run/netns/y".into()), None),
        ];
        let fix = plan_link(&spec, &seen).unwrap();
        assert_eq!(fix.actions[0].display(), "ip link del dev e1");
        assert!(
            fix.changes[0].starts_with("replaced veth"),
            "{:?}",
            fix.changes
        );

        let bridge =
            link(r#"{"ifindex":3,"ifname":"e1","flags":[],"linkinfo":{"info_kind":"bridge"}}"#);
        let seen = vec![
            Seen::new(Ns::Found(String::new()), Some(bridge)),
            Seen::new(Ns::Found("/run/netns/y".into()), None),
        ];
        let e = plan_link(&spec, &seen).unwrap_err();
        assert!(e.contains("is a bridge, not a veth"), "{e}");
    }

    #[test]
    fn a_missing_container_fails_present_and_is_fine_for_absent() {
        let mut spec = veth(
            end(
                Endpoint::Container {
                    runtime: ContainerRuntime::Podman,
                    name: "c".into(),
                },
                "e1",
                &[],
            ),
            end(Endpoint::Netns { name: "y".into() }, "e2", &[]),
        );
        let seen = vec![
            Seen::new(
                Ns::Missing("podman container c is not running on this host".into()),
                None,
            ),
            Seen::new(Ns::Found("/run/netns/y".into()), None),
        ];
        let e = plan_link(&spec, &seen).unwrap_err();
        assert!(e.contains("not running"), "{e}");
        spec.state = Presence::Absent;
        assert!(plan_link(&spec, &seen).unwrap().actions.is_empty());
    }

    #[test]
    fn deleting_a_veth_takes_its_peer() {
        let mut spec = veth(
            end(Endpoint::Netns { name: "x".into() }, "e1", &[]),
            end(Endpoint::Netns { name: "y".into() }, "e2", &[]),
        );
        spec.state = Presence::Absent;
        let a =
            link(r#"{"ifindex":3,"ifname":"e1","link_index":7,"linkinfo":{"info_kind":"veth"}}"#);
        let b =
            link(r#"{"ifindex":7,"ifname":"e2","link_index":3,"linkinfo":{"info_kind":"veth"}}"#);
        let seen = vec![
            Seen::new(Ns::Found("/run/netns/x".into()), Some(a)),
            Seen::new(Ns::Found("/run/netns/y".into()), Some(b)),
        ];
        let fix = plan_link(&spec, &seen).unwrap();
        assert_eq!(fix.actions.len(), 1, "{:?}", fix.actions);
        assert_eq!(
            fix.actions[0].display(),
            "[/run/netns/x] ip link del dev e1"
        );
    }

    #[test]
    fn a_vxlan_with_another_vni_is_replaced() {
        let spec = LinkSpec {
            kind: LinkKind::Vxlan,
            a: end(Endpoint::Netns { name: "x".into() }, "vx0", &[]),
            b: None,
            state: Presence::Present,
            vni: Some(6100),
            remote: Some("192.168.221.12".parse().unwrap()),
            flood: None,
            local: None,
            port: 4796,
            parent: Some("eth0".into()),
            vlan_id: None,
            mode: "bridge".into(),
        };
        let same = link(
            r#"{"ifindex":3,"ifname":"vx0","flags":["UP"],"linkinfo":{"info_kind":"vxlan","info_data":{"id":6100,"remote":"192.168.221.12","port":4796}}}"#,
        );
        let seen = vec![Seen::new(Ns::Found("/run/netns/x".into()), Some(same))];
        assert!(plan_link(&spec, &seen).unwrap().actions.is_empty());
        let other = link(
            r#"{"ifindex":3,"ifname":"vx0","flags":["UP"],"linkinfo":{"info_kind":"vxlan","info_data":{"id":6101,"remote":"192.168.221.12","port":4796}}}"#,
        );
        let seen = vec![Seen::new(Ns::Found("/run/netns/x".into()), Some(other))];
        let fix = plan_link(&spec, &seen).unwrap();
        let cmds: Vec<String> = fix.actions.iter().map(Action::display).collect();
        assert_eq!(
            cmds,
            vec![
                "[/run/netns/x] ip link del dev vx0",
                "ip link add name vx0 netns /run/netns/x type vxlan id 6100 remote 192.168.221.12 dstport 4796 dev eth0",
                "[/run/netns/x] ip link set dev vx0 up",
            ]
        );
    }

    #[test]
    fn routes_are_compared_by_destination_gateway_and_device() {
        let spec = RouteSpec {
            endpoint: Endpoint::Netns { name: "x".into() },
            dest: "0.0.0.0/0".parse().unwrap(),
            via: Some("10.0.1.2".parse().unwrap()),
            dev: None,
            metric: None,
            state: Presence::Present,
        };
        let ns = Ns::Found("/run/netns/x".into());
        let routes: Vec<IpRoute> = serde_json::from_str(r#"[{"dst":"default","gateway":"10.0.1.2","dev":"e1","flags":[]},{"dst":"10.0.1.0/24","dev":"e1","protocol":"kernel","scope":"link","prefsrc":"10.0.1.1","flags":[]}]"#).unwrap();
        assert!(plan_route(&spec, &ns, &routes).unwrap().actions.is_empty());
        let routes: Vec<IpRoute> = serde_json::from_str(
            r#"[{"dst":"default","gateway":"10.0.4.2","dev":"e7","metric":5,"flags":[]}]"#,
        )
        .unwrap();
        let fix = plan_route(&spec, &ns, &routes).unwrap();
        assert_eq!(
            fix.actions[0].display(),
            "[/run/netns/x] ip -4 route replace default via 10.0.1.2 metric 5"
        );
        let mut gone = spec.clone();
        gone.state = Presence::Absent;
        assert!(plan_route(&gone, &ns, &routes).unwrap().actions.is_empty());
        let routes: Vec<IpRoute> = serde_json::from_str(
            r#"[{"dst":"default","gateway":"10.0.1.2","dev":"e1","flags":[]}]"#,
        )
        .unwrap();
        assert_eq!(
            plan_route(&gone, &ns, &routes).unwrap().actions[0].display(),
            "[/run/netns/x] ip -4 route del default via 10.0.1.2"
        );
        let host = RouteSpec {
            endpoint: Endpoint::Host,
            dest: "fd00:5::/64".parse().unwrap(),
            via: None,
            dev: Some("e1".into()),
            metric: None,
            state: Presence::Present,
        };
        let v6: Vec<IpRoute> =
            serde_json::from_str(r#"[{"dst":"fd00:5::/64","dev":"e1","metric":1024,"flags":[]}]"#)
                .unwrap();
        assert!(
            plan_route(&host, &Ns::Found(String::new()), &v6)
                .unwrap()
                .actions
                .is_empty()
        );
    }

    #[test]
    fn resolution_scripts_quote_names() {
        let s = resolve_script(&Endpoint::Container {
            runtime: ContainerRuntime::Docker,
            name: "web.1".into(),
        });
        assert!(
            s.contains("docker inspect --type container --format '{{.State.Pid}}' -- web.1"),
            "{s}"
        );
        let s = resolve_script(&Endpoint::Pod {
            namespace: "default".into(),
            name: "a.b".into(),
        });
        assert!(s.contains("--name '^a\\.b$'"), "{s}");
        let a = Action::new("/proc/1/ns/net", &["ip", "addr", "add", "x y", "dev", "e"]);
        assert_eq!(a.shell(), "inns /proc/1/ns/net ip addr add 'x y' dev e");
    }
}
