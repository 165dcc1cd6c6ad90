//! Parameters of the `link` and `route` modules (the links engine, after
//! koko and koro), and their checks.
//!
//! A link end or a route lives in an *endpoint* on the host: the host's own
//! network namespace (no endpoint key), a named namespace (`netns`), a
//! container (`container`, with `runtime` podman, docker or crio) or a
//! Kubernetes pod (`pod: namespace/name`, through the node's CRI), or the
//! namespace of a process (`pid`). An endpoint key that renders to an empty
//! string counts as not given, so playbooks can choose the endpoint with a
//! template.
//!
//! The same checks run when the playbook is loaded (literal values, with
//! file:line:col) and after templating on each host (every value).

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Deserialize;

use crate::endpoint::{EndpointKeys, Problem, at, given, ifname_problem, key, literal};
use crate::template::has_template_syntax;
use crate::values::{Count, Flag, Presence, Text};
use crate::yaml::Seg;

/// What kind of link: `veth` (both ends on this host), `vxlan` (this host's
/// end of a tunnel), `vlan` or `macvlan` (on a parent interface), or
/// `bridge` (a Linux bridge other links' ends join with `master`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    #[default]
    Veth,
    Vxlan,
    Vlan,
    Macvlan,
    Bridge,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::Veth => "veth",
            LinkKind::Vxlan => "vxlan",
            LinkKind::Vlan => "vlan",
            LinkKind::Macvlan => "macvlan",
            LinkKind::Bridge => "bridge",
        }
    }
    fn parse(s: &str) -> Option<LinkKind> {
        match s {
            "veth" => Some(LinkKind::Veth),
            "vxlan" => Some(LinkKind::Vxlan),
            "vlan" => Some(LinkKind::Vlan),
            "macvlan" => Some(LinkKind::Macvlan),
            "bridge" => Some(LinkKind::Bridge),
            _ => None,
        }
    }
}

const KINDS: &str = "veth, vxlan, vlan, macvlan or bridge";

/// `kind:` as written: a kind, or a template decided on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindText(pub Text);

impl<'de> Deserialize<'de> for KindText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = Text::deserialize(d)?;
        if !has_template_syntax(t.as_str()) && LinkKind::parse(t.as_str().trim()).is_none() {
            return Err(serde::de::Error::custom(format!(
                "unknown link kind `{t}`: expected {KINDS}"
            )));
        }
        Ok(KindText(t))
    }
}

/// Addresses of a link end: a list, or one string of addresses separated
/// by commas or spaces (so a template can give several); empty items are
/// dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressList(pub Vec<Text>);

impl<'de> Deserialize<'de> for AddressList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            List(Vec<Text>),
            One(Text),
        }
        Ok(AddressList(match Form::deserialize(d)? {
            Form::List(l) => l,
            Form::One(t) => vec![t],
        }))
    }
}

impl AddressList {
    /// Every address, split and trimmed (templates kept whole).
    pub fn items(&self) -> Vec<String> {
        let mut out = Vec::new();
        for t in &self.0 {
            if has_template_syntax(t.as_str()) {
                out.push(t.0.clone());
            } else {
                out.extend(
                    t.as_str()
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|s| !s.is_empty())
                        .map(str::to_string),
                );
            }
        }
        out
    }
}

/// One end of a link: where it lives, its name and its settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEnd {
    /// A named network namespace (`ip netns`); created when missing.
    pub netns: Option<Text>,
    /// A container's network namespace (see `runtime`).
    pub container: Option<Text>,
    /// podman (default), docker or crio (`crictl`).
    pub runtime: Option<Text>,
    /// A Kubernetes pod on this node, `namespace/name` (through `crictl`).
    pub pod: Option<Text>,
    /// The network namespace of this process.
    pub pid: Option<Count>,
    /// The interface name in that namespace.
    pub ifname: Text,
    /// Addresses with prefix length (IPv4 and IPv6); when given, exactly
    /// these global addresses are kept on the interface.
    pub addresses: Option<AddressList>,
    pub mtu: Option<Count>,
    /// Bring the interface up (default true).
    pub up: Option<Flag>,
    /// The Linux bridge (in the same namespace) this interface is a port
    /// of; not given: whatever it is.
    pub master: Option<Text>,
    /// `false`: IPv6 off on the interface (no link-local address, no
    /// neighbour or multicast-listener traffic); `true`: on; not given:
    /// as it is.
    pub ipv6: Option<Flag>,
}

/// `link:` — a veth pair, or this host's end of a vxlan, vlan or macvlan.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkArgs {
    #[serde(default)]
    pub kind: KindText,
    /// The end on this host (both ends of a veth are on this host).
    pub a: LinkEnd,
    /// The other end of a veth.
    pub b: Option<LinkEnd>,
    #[serde(default)]
    pub state: Presence,
    /// MTU of every end that does not set its own.
    pub mtu: Option<Count>,
    /// vxlan: network identifier (1-16777215).
    pub vni: Option<Count>,
    /// vxlan: the other host's underlay address.
    pub remote: Option<Text>,
    /// vxlan without `remote`: the underlay addresses of every other host,
    /// each sent a copy of broadcast and unknown frames (all-zero FDB
    /// entries: head-end replication); exactly these are kept.
    pub flood: Option<AddressList>,
    /// vxlan: this host's underlay source address.
    pub local: Option<Text>,
    /// vxlan: UDP port (default 4789).
    pub port: Option<Count>,
    /// vxlan (underlay device), vlan and macvlan: the parent interface in
    /// the host's namespace.
    pub parent: Option<Text>,
    /// vlan: the VLAN id (1-4094).
    pub vlan_id: Option<Count>,
    /// macvlan: bridge (default), private, vepa, passthru.
    pub mode: Option<Text>,
}

/// `route:` — a route in an endpoint's namespace.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteArgs {
    pub netns: Option<Text>,
    pub container: Option<Text>,
    pub runtime: Option<Text>,
    pub pod: Option<Text>,
    pub pid: Option<Count>,
    /// `default`, a prefix (`10.0.3.0/24`, `fd00::/64`) or an address.
    pub to: Text,
    /// Gateway address.
    pub via: Option<Text>,
    /// Output interface.
    pub dev: Option<Text>,
    pub metric: Option<Count>,
    #[serde(default)]
    pub state: Presence,
}

impl LinkEnd {
    pub fn keys(&self) -> EndpointKeys<'_> {
        EndpointKeys {
            netns: self.netns.as_ref(),
            container: self.container.as_ref(),
            runtime: self.runtime.as_ref(),
            pod: self.pod.as_ref(),
            pid: self.pid,
        }
    }

    fn problems(&self, base: &[Seg], out: &mut Vec<Problem>) {
        self.keys().problems(base, out);
        if let Some(n) = literal(Some(&self.ifname))
            && let Some(p) = ifname_problem(n)
        {
            out.push((at(base, "ifname"), p));
        }
        if let Some(list) = &self.addresses {
            for (i, a) in list.items().iter().enumerate() {
                if !has_template_syntax(a) && a.parse::<IpNet>().is_err() {
                    let mut p = at(base, "addresses");
                    if list.0.len() > 1 {
                        p.push(Seg::Index(i.min(list.0.len() - 1)));
                    }
                    out.push((
                        p,
                        format!(
                            "`{}` is not an address with prefix length (e.g. 10.0.1.1/24 or fd00::1/64)",
                            a.escape_debug()
                        ),
                    ));
                }
            }
        }
        mtu_problem(self.mtu, &at(base, "mtu"), out);
        if let Some(m) = literal(self.master.as_ref())
            && let Some(p) = ifname_problem(m)
        {
            out.push((at(base, "master"), p));
        }
    }
}

fn mtu_problem(mtu: Option<Count>, path: &[Seg], out: &mut Vec<Problem>) {
    if let Some(Count(Some(m))) = mtu
        && !(68..=65535).contains(&m)
    {
        out.push((path.to_vec(), format!("MTU {m} is outside 68..65535")));
    }
}

fn range_problem(
    v: Option<Count>,
    name: &str,
    what: &str,
    range: std::ops::RangeInclusive<u64>,
    out: &mut Vec<Problem>,
) {
    if let Some(Count(Some(n))) = v
        && !range.contains(&n)
    {
        out.push((
            vec![key(name)],
            format!("{what} {n} is outside {}..{}", range.start(), range.end()),
        ));
    }
}

fn ip_problem(t: Option<&Text>, name: &str, out: &mut Vec<Problem>) {
    if let Some(s) = literal(t)
        && s.parse::<IpAddr>().is_err()
    {
        out.push((
            vec![key(name)],
            format!("`{}` is not an IP address", s.escape_debug()),
        ));
    }
}

pub const MACVLAN_MODES: &[&str] = &["bridge", "private", "vepa", "passthru"];

impl LinkArgs {
    /// The kind, once rendered.
    pub fn kind(&self) -> Result<LinkKind, String> {
        let k = self.kind.0.as_str().trim();
        if k.is_empty() {
            return Ok(LinkKind::Veth);
        }
        LinkKind::parse(k).ok_or_else(|| format!("unknown link kind `{k}`: expected {KINDS}"))
    }

    /// Every problem of the literal values; templates are checked once
    /// rendered.
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let kind = if has_template_syntax(self.kind.0.as_str()) {
            None
        } else {
            match self.kind() {
                Ok(k) => Some(k),
                Err(e) => {
                    out.push((vec![key("kind")], e));
                    None
                }
            }
        };
        self.a.problems(&[key("a")], &mut out);
        if let Some(b) = &self.b {
            b.problems(&[key("b")], &mut out);
        }
        mtu_problem(self.mtu, &[key("mtu")], &mut out);
        range_problem(self.vni, "vni", "VNI", 1..=0xFF_FFFF, &mut out);
        range_problem(self.port, "port", "UDP port", 1..=65535, &mut out);
        range_problem(self.vlan_id, "vlan_id", "VLAN id", 1..=4094, &mut out);
        ip_problem(self.remote.as_ref(), "remote", &mut out);
        if let Some(list) = &self.flood {
            for (i, a) in list.items().iter().enumerate() {
                if !has_template_syntax(a) && a.parse::<IpAddr>().is_err() {
                    out.push((
                        vec![
                            key("flood"),
                            Seg::Index(i.min(list.0.len().saturating_sub(1))),
                        ],
                        format!("`{}` is not an IP address", a.escape_debug()),
                    ));
                }
            }
        }
        ip_problem(self.local.as_ref(), "local", &mut out);
        if let (Some(r), Some(l)) = (literal(self.remote.as_ref()), literal(self.local.as_ref()))
            && let (Ok(r), Ok(l)) = (r.parse::<IpAddr>(), l.parse::<IpAddr>())
            && r.is_ipv4() != l.is_ipv4()
        {
            out.push((
                vec![key("local")],
                "`local` and `remote` must be of the same IP family".into(),
            ));
        }
        if let Some(p) = literal(self.parent.as_ref())
            && let Some(why) = ifname_problem(p)
        {
            out.push((vec![key("parent")], why));
        }
        if let Some(m) = literal(self.mode.as_ref())
            && !MACVLAN_MODES.contains(&m)
        {
            out.push((
                vec![key("mode")],
                format!(
                    "unknown macvlan mode `{m}`: expected {}",
                    MACVLAN_MODES.join(", ")
                ),
            ));
        }
        let Some(kind) = kind else {
            return out;
        };
        let present = self.state == Presence::Present;
        let only_for = |field: &str, set: bool, kinds: &str, out: &mut Vec<Problem>| {
            if set {
                out.push((
                    vec![key(field)],
                    format!("`{field}` is only for {kinds} links"),
                ));
            }
        };
        match kind {
            LinkKind::Veth => {
                if self.b.is_none() {
                    out.push((
                        vec![key("a")],
                        "a veth has two ends: give `b` too (on this host)".into(),
                    ));
                }
            }
            _ => {
                if self.b.is_some() {
                    out.push((
                        vec![key("b")],
                        format!(
                            "a {} link has one end on this host (`a`); `b` is only for veth",
                            kind.as_str()
                        ),
                    ));
                }
            }
        }
        if kind == LinkKind::Vxlan {
            if present && self.vni.is_none() {
                out.push((vec![key("a")], "a vxlan link needs `vni`".into()));
            }
            let flood = self.flood.is_some();
            if present && !given(self.remote.as_ref()) && !flood {
                out.push((
                    vec![key("a")],
                    "a vxlan link needs `remote` (the other host's address) or `flood` (every other host's)".into(),
                ));
            }
            if self.remote.is_some() && flood {
                out.push((
                    vec![key("flood")],
                    "give `remote` (one other host) or `flood` (several), not both".into(),
                ));
            }
        } else {
            only_for("vni", self.vni.is_some(), "vxlan", &mut out);
            only_for("remote", self.remote.is_some(), "vxlan", &mut out);
            only_for("flood", self.flood.is_some(), "vxlan", &mut out);
            only_for("local", self.local.is_some(), "vxlan", &mut out);
            only_for("port", self.port.is_some(), "vxlan", &mut out);
        }
        if matches!(kind, LinkKind::Vlan | LinkKind::Macvlan) {
            if present && !given(self.parent.as_ref()) {
                out.push((
                    vec![key("a")],
                    format!("a {} link needs `parent`", kind.as_str()),
                ));
            }
        } else if matches!(kind, LinkKind::Veth | LinkKind::Bridge) {
            only_for(
                "parent",
                self.parent.is_some(),
                "vxlan, vlan and macvlan",
                &mut out,
            );
        }
        if kind == LinkKind::Vlan {
            if present && self.vlan_id.is_none() {
                out.push((vec![key("a")], "a vlan link needs `vlan_id`".into()));
            }
        } else {
            only_for("vlan_id", self.vlan_id.is_some(), "vlan", &mut out);
        }
        if kind != LinkKind::Macvlan {
            only_for("mode", self.mode.is_some(), "macvlan", &mut out);
        }
        out
    }
}

/// Where a route goes: `default` or a prefix.
pub fn parse_destination(to: &str, via: Option<&str>) -> Result<IpNet, String> {
    let to = to.trim();
    if to == "default" {
        let v6 = via
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
            .is_some_and(|a| a.is_ipv6());
        return Ok(if v6 {
            "::/0".parse().expect("literal")
        } else {
            "0.0.0.0/0".parse().expect("literal")
        });
    }
    if let Ok(n) = to.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    if let Ok(a) = to.parse::<IpAddr>() {
        return Ok(IpNet::from(a));
    }
    Err(format!(
        "`{}` is not a destination: write default, a prefix (10.0.3.0/24) or an address",
        to.escape_debug()
    ))
}

impl RouteArgs {
    pub fn keys(&self) -> EndpointKeys<'_> {
        EndpointKeys {
            netns: self.netns.as_ref(),
            container: self.container.as_ref(),
            runtime: self.runtime.as_ref(),
            pod: self.pod.as_ref(),
            pid: self.pid,
        }
    }

    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        self.keys().problems(&[], &mut out);
        ip_problem(self.via.as_ref(), "via", &mut out);
        if let Some(d) = literal(self.dev.as_ref())
            && let Some(p) = ifname_problem(d)
        {
            out.push((vec![key("dev")], p));
        }
        if let Some(to) = literal(Some(&self.to)) {
            match parse_destination(to, literal(self.via.as_ref())) {
                Err(e) => out.push((vec![key("to")], e)),
                Ok(dest) => {
                    if let Some(via) = literal(self.via.as_ref())
                        && let Ok(via) = via.parse::<IpAddr>()
                        && via.is_ipv4() != dest.addr().is_ipv4()
                    {
                        out.push((
                            vec![key("via")],
                            format!("gateway {via} is not of the family of {to}"),
                        ));
                    }
                }
            }
        }
        if self.state == Presence::Present && self.via.is_none() && self.dev.is_none() {
            out.push((
                vec![key("to")],
                "a route needs `via` (a gateway), `dev` (an interface) or both".into(),
            ));
        }
        out
    }
}
