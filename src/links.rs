//! Lab links: the `links:` section of a lab file and `kubelab link|route
//! add|del`, compiled into a playbook of `link` and `route` steps on the
//! VMs — the same modules scenario playbooks use.
//!
//! Two endpoints on one VM become a veth step on that VM; on two VMs, a
//! vxlan step on each, whose `remote` is the other VM's address (resolved
//! from the lab's state when the step runs). The playbook is built typed,
//! its steps checked as a loaded playbook's are, and `plan` shows them.

use serde_json::{Value, json};

use crate::diagnostic::{SourceFile, Span};
use crate::endpoint::Endpoint;
use crate::lab::Lab;
use crate::lab::model::{Link, LinkEndpoint};
use crate::playbook::{Condition, HostPattern, Play, PlayVars, Playbook, Step};
use crate::stage::model::Stage;

/// One generated step: the VM it runs on, its name, `{module: params}`,
/// and where it comes from for reports (none: the playbook's origin).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkStep {
    pub vm: String,
    pub name: String,
    pub module: Value,
    pub location: Option<String>,
}

/// The endpoint keys of a link end or route.
pub fn endpoint_params(e: &Endpoint) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    match e {
        Endpoint::Host => {}
        Endpoint::Netns { name } => {
            m.insert("netns".into(), json!(name));
        }
        Endpoint::Container { runtime, name } => {
            m.insert("container".into(), json!(name));
            m.insert("runtime".into(), json!(runtime.as_str()));
        }
        Endpoint::Pod { namespace, name } => {
            m.insert("pod".into(), json!(format!("{namespace}/{name}")));
        }
        Endpoint::Pid { pid } => {
            m.insert("pid".into(), json!(pid.to_string()));
        }
    }
    m
}

fn end_params(e: &LinkEndpoint) -> Value {
    let mut m = endpoint_params(&e.endpoint);
    m.insert("ifname".into(), json!(e.ifname));
    m.insert(
        "addresses".into(),
        json!(
            e.addresses
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
        ),
    );
    if let Some(mtu) = e.mtu {
        m.insert("mtu".into(), json!(mtu.to_string()));
    }
    Value::Object(m)
}

/// `node-1 netns blue eth1`.
pub fn describe_end(e: &LinkEndpoint) -> String {
    match e.endpoint {
        Endpoint::Host => format!("{} {}", e.vm, e.ifname),
        ref other => format!("{} {other} {}", e.vm, e.ifname),
    }
}

/// The address of `vm` as the other end of a tunnel sees it.
fn address_of(vm: &str) -> String {
    format!("{{{{ hostvars['{vm}'].address }}}}")
}

/// The steps of one link (`present`: made, `absent`: removed).
pub fn link_steps(link: &Link, present: bool) -> Vec<LinkStep> {
    let state = if present { "present" } else { "absent" };
    let [a, b] = &link.ends;
    if link.is_local() {
        return vec![LinkStep {
            location: None,
            vm: a.vm.clone(),
            name: format!("veth {} <-> {}", describe_end(a), describe_end(b)),
            module: json!({"link": {
                "kind": "veth", "a": end_params(a), "b": end_params(b), "state": state,
            }}),
        }];
    }
    let vni = link.vni.unwrap_or(0);
    [(a, b), (b, a)]
        .into_iter()
        .map(|(here, there)| {
            let mut params = json!({
                "kind": "vxlan", "a": end_params(here), "state": state,
            });
            if present {
                params["vni"] = json!(vni.to_string());
                params["port"] = json!(link.port.to_string());
                params["remote"] = json!(address_of(&there.vm));
            }
            LinkStep {
                location: None,
                vm: here.vm.clone(),
                name: format!(
                    "vxlan {vni} {} -> {}",
                    describe_end(here),
                    describe_end(there)
                ),
                module: json!({ "link": params }),
            }
        })
        .collect()
}

/// A playbook running each step on its VM (one play over all of them, so
/// the VMs work in parallel; a step is skipped on the other VMs), typed:
/// nothing is written out and parsed again. `origin` names it in reports
/// (the lab file's links, `kubelab link add`).
pub fn playbook(title: &str, origin: &str, steps: &[LinkStep]) -> Result<Playbook, String> {
    let mut vms: Vec<&str> = Vec::new();
    for s in steps {
        if !vms.contains(&s.vm.as_str()) {
            vms.push(&s.vm);
        }
    }
    let steps = steps
        .iter()
        .map(|s| {
            let when = (vms.len() > 1)
                .then(|| Condition::Expr(format!("inventory_hostname == '{}'", s.vm)));
            let location = s.location.clone().unwrap_or_else(|| origin.to_string());
            Step::generated(s.name.clone(), s.module.clone(), location, when)
        })
        .collect::<Result<Vec<Step>, String>>()?;
    Ok(Playbook {
        file: SourceFile::new(std::path::Path::new(origin), String::new()),
        plays: vec![Play {
            name: title.to_string(),
            hosts: HostPattern::parse(&vms.join(":"))?,
            vars: PlayVars::default(),
            gather_facts: false,
            serial: None,
            any_errors_fatal: false,
            when: None,
            steps,
            span: Span::default(),
        }],
    })
}

/// The stage `up` runs for the lab's `links:`; each step says which link
/// it makes (`lab.yaml links[2]`).
pub fn stage(lab: &Lab) -> Result<Stage, String> {
    let file = lab.file.display().to_string();
    let mut steps = Vec::new();
    for (i, l) in lab.links.iter().enumerate() {
        for s in link_steps(l, true) {
            steps.push(LinkStep {
                location: Some(format!("{file} links[{i}]")),
                ..s
            });
        }
    }
    let origin = format!("<lab links of {file}>");
    Ok(Stage {
        title: "links".into(),
        generated: Some(playbook("lab links", &origin, &steps)?),
        playbook: origin,
        ..Stage::default()
    })
}

/// An endpoint on the command line: `VM[,key=value…]` with `netns=`,
/// `container=` (+ `runtime=`), `pod=NAMESPACE/NAME`, `pid=`, `ifname=`,
/// `ip=ADDR/LEN` (repeatable), `mtu=`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CliEnd {
    pub vm: String,
    pub netns: Option<String>,
    pub container: Option<String>,
    pub runtime: Option<String>,
    pub pod: Option<String>,
    pub pid: Option<String>,
    pub ifname: Option<String>,
    pub addresses: Vec<String>,
    pub mtu: Option<String>,
}

pub const CLI_END_KEYS: &[&str] = &[
    "netns",
    "container",
    "runtime",
    "pod",
    "pid",
    "ifname",
    "ip",
    "mtu",
];

/// Parse `VM[,key=value…]`.
pub fn parse_cli_end(spec: &str) -> Result<CliEnd, String> {
    let mut parts = spec.split(',');
    let vm = parts.next().unwrap_or("").trim();
    if vm.is_empty() || vm.contains('=') {
        return Err(format!(
            "`{spec}`: an endpoint starts with the VM's name (node-1,netns=blue,ifname=eth1,ip=10.0.0.1/24)"
        ));
    }
    let mut end = CliEnd {
        vm: vm.to_string(),
        ..CliEnd::default()
    };
    for part in parts {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{spec}`: `{part}` is not key=value"))?;
        let v = v.trim().to_string();
        let slot = match k.trim() {
            "netns" => &mut end.netns,
            "container" => &mut end.container,
            "runtime" => &mut end.runtime,
            "pod" => &mut end.pod,
            "pid" => &mut end.pid,
            "ifname" | "if" => &mut end.ifname,
            "mtu" => &mut end.mtu,
            "ip" | "address" => {
                end.addresses.push(v);
                continue;
            }
            other => {
                let mut msg = format!("`{spec}`: unknown key `{other}`");
                if let Some(best) = crate::yaml::closest(other, CLI_END_KEYS.iter().copied()) {
                    msg.push_str(&format!(", did you mean `{best}`?"));
                } else {
                    msg.push_str(&format!(" (keys: {})", CLI_END_KEYS.join(", ")));
                }
                return Err(msg);
            }
        };
        if slot.replace(v).is_some() {
            return Err(format!("`{spec}`: `{}` is given twice", k.trim()));
        }
    }
    Ok(end)
}

impl CliEnd {
    /// The endpoint keys and interface of a link end (as module parameters).
    pub fn link_params(&self) -> Value {
        let mut m = self.endpoint_params();
        if let Some(i) = &self.ifname {
            m.insert("ifname".into(), json!(i));
        }
        if !self.addresses.is_empty() {
            m.insert("addresses".into(), json!(self.addresses));
        }
        if let Some(mtu) = &self.mtu {
            m.insert("mtu".into(), json!(mtu));
        }
        Value::Object(m)
    }

    /// The endpoint keys alone.
    pub fn endpoint_params(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            ("netns", &self.netns),
            ("container", &self.container),
            ("runtime", &self.runtime),
            ("pod", &self.pod),
            ("pid", &self.pid),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        }
        m
    }

    fn describe(&self) -> String {
        let mut s = self.vm.clone();
        for (k, v) in self.endpoint_params() {
            s.push_str(&format!(" {k} {}", v.as_str().unwrap_or("")));
        }
        if let Some(i) = &self.ifname {
            s.push_str(&format!(" {i}"));
        }
        s
    }
}

/// What `kubelab link add|del` was asked for.
#[derive(Clone, Debug, Default)]
pub struct CliLink {
    pub ends: Vec<CliEnd>,
    pub kind: Option<String>,
    pub vni: Option<u32>,
    pub port: Option<u16>,
    pub mtu: Option<u32>,
    pub parent: Option<String>,
    pub vlan_id: Option<u16>,
    pub mode: Option<String>,
    pub remote: Option<String>,
    pub present: bool,
}

/// The steps of a command-line link; every step's parameters are checked
/// like a playbook's (the error names the offending value).
pub fn cli_link_steps(lab: &Lab, cli: &CliLink) -> Result<Vec<LinkStep>, String> {
    for e in &cli.ends {
        if lab.vm(&e.vm).is_none() {
            let names: Vec<&str> = lab.vms.iter().map(|v| v.name.as_str()).collect();
            return Err(format!(
                "lab {} has no VM `{}` (its VMs: {})",
                lab.name,
                e.vm,
                names.join(", ")
            ));
        }
        if e.ifname.is_none() {
            return Err(format!("endpoint `{}` needs ifname=NAME", e.describe()));
        }
    }
    let state = if cli.present { "present" } else { "absent" };
    let steps = match cli.ends.as_slice() {
        [a, b] if a.vm == b.vm => {
            if let Some(k) = cli.kind.as_deref().filter(|k| *k != "veth") {
                return Err(format!(
                    "two ends on one VM are a veth pair, not a {k} link"
                ));
            }
            let mut params =
                json!({"kind": "veth", "a": a.link_params(), "b": b.link_params(), "state": state});
            if let Some(m) = cli.mtu {
                params["mtu"] = json!(m.to_string());
            }
            vec![LinkStep {
                location: None,
                vm: a.vm.clone(),
                name: format!("veth {} <-> {}", a.describe(), b.describe()),
                module: json!({ "link": params }),
            }]
        }
        [a, b] => {
            if let Some(k) = cli.kind.as_deref().filter(|k| *k != "vxlan") {
                return Err(format!(
                    "two ends on two VMs are a vxlan tunnel, not a {k} link"
                ));
            }
            let vni = cli.vni.unwrap_or_else(|| {
                let as_end = |e: &CliEnd| LinkEndpoint {
                    vm: e.vm.clone(),
                    endpoint: Endpoint::Host,
                    ifname: format!("{}/{}", e.describe(), e.ifname.clone().unwrap_or_default()),
                    addresses: Vec::new(),
                    mtu: None,
                };
                crate::lab::validate::derived_vni(&lab.name, &as_end(a), &as_end(b))
            });
            [(a, b), (b, a)]
                .into_iter()
                .map(|(here, there)| {
                    let mut params =
                        json!({"kind": "vxlan", "a": here.link_params(), "state": state});
                    if cli.present {
                        params["vni"] = json!(vni.to_string());
                        params["port"] = json!(cli.port.unwrap_or(4789).to_string());
                        params["remote"] = json!(address_of(&there.vm));
                        if let Some(m) = cli.mtu {
                            params["mtu"] = json!(m.to_string());
                        }
                    }
                    LinkStep {
                        location: None,
                        vm: here.vm.clone(),
                        name: format!("vxlan {vni} {} -> {}", here.describe(), there.describe()),
                        module: json!({ "link": params }),
                    }
                })
                .collect()
        }
        [a] => {
            let kind = cli.kind.clone().ok_or(
                "one endpoint is a vxlan (--kind vxlan --vni N --remote ADDR), vlan (--kind vlan --parent IF --vlan-id N) or macvlan (--kind macvlan --parent IF) link: give --kind",
            )?;
            let mut params = json!({"kind": kind, "a": a.link_params(), "state": state});
            let set = |params: &mut Value, k: &str, v: Option<String>| {
                if let Some(v) = v {
                    params[k] = json!(v);
                }
            };
            if cli.present {
                set(&mut params, "vni", cli.vni.map(|v| v.to_string()));
                set(&mut params, "port", cli.port.map(|v| v.to_string()));
                set(&mut params, "remote", cli.remote.clone());
                set(&mut params, "parent", cli.parent.clone());
                set(&mut params, "vlan_id", cli.vlan_id.map(|v| v.to_string()));
                set(&mut params, "mode", cli.mode.clone());
                set(&mut params, "mtu", cli.mtu.map(|v| v.to_string()));
            }
            vec![LinkStep {
                location: None,
                vm: a.vm.clone(),
                name: format!("{kind} {}", a.describe()),
                module: json!({ "link": params }),
            }]
        }
        _ => return Err("give one or two endpoints".into()),
    };
    for s in &steps {
        crate::playbook::check_module(&s.module)?;
    }
    Ok(steps)
}

/// What `kubelab route add|del` was asked for.
#[derive(Clone, Debug, Default)]
pub struct CliRoute {
    pub at: CliEnd,
    pub to: String,
    pub via: Option<String>,
    pub dev: Option<String>,
    pub metric: Option<u32>,
    pub present: bool,
}

pub fn cli_route_steps(lab: &Lab, cli: &CliRoute) -> Result<Vec<LinkStep>, String> {
    if lab.vm(&cli.at.vm).is_none() {
        return Err(format!("lab {} has no VM `{}`", lab.name, cli.at.vm));
    }
    if cli.at.ifname.is_some() || !cli.at.addresses.is_empty() || cli.at.mtu.is_some() {
        return Err(format!(
            "`{}`: a route's endpoint takes netns, container, runtime, pod or pid (use --dev for the interface)",
            cli.at.describe()
        ));
    }
    let mut params = Value::Object(cli.at.endpoint_params());
    params["to"] = json!(cli.to);
    if let Some(v) = &cli.via {
        params["via"] = json!(v);
    }
    if let Some(d) = &cli.dev {
        params["dev"] = json!(d);
    }
    if let Some(m) = cli.metric {
        params["metric"] = json!(m.to_string());
    }
    params["state"] = json!(if cli.present { "present" } else { "absent" });
    let module = json!({ "route": params });
    crate::playbook::check_module(&module)?;
    Ok(vec![LinkStep {
        location: None,
        vm: cli.at.vm.clone(),
        name: format!(
            "route {} {}{}",
            cli.to,
            cli.via
                .as_ref()
                .map(|v| format!("via {v} "))
                .unwrap_or_default(),
            cli.at.describe()
        ),
        module,
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::lab::from_test_yaml as lab;

    const LAB: &str = r#"
name: lk
virthost: {local: true}
image: {build: debian-12}
networks: [{name: lan, kind: nat, ipv4: 10.9.0.0/24}]
vms:
  - {name: a}
  - {name: b}
links:
  - endpoints:
      - {vm: a, netns: blue, ifname: eth1, addresses: [10.10.0.1/24]}
      - {vm: a, container: web, ifname: eth1, addresses: [10.10.0.2/24, "fd10::2/64"], mtu: 1400}
  - endpoints:
      - {vm: a, netns: blue, ifname: vx1, addresses: [10.11.0.1/24]}
      - {vm: b, ifname: vx1, addresses: [10.11.0.2/24]}
    vni: 6100
    port: 4796
  - endpoints:
      - {vm: a, pod: default/web, ifname: net2}
      - {vm: b, netns: red, ifname: net2}
"#;

    #[test]
    fn lab_links_compile_to_veth_and_vxlan_steps() {
        let lab = lab(LAB);
        assert_eq!(lab.links.len(), 3);
        let derived = lab.links[2].vni.unwrap();
        assert!((100_000..16_000_000).contains(&derived), "{derived}");
        assert_eq!(
            derived,
            crate::lab::validate::derived_vni("lk", &lab.links[2].ends[0], &lab.links[2].ends[1]),
            "derived VNIs are stable"
        );
        let pb = stage(&lab).unwrap().generated.unwrap();
        let play = &pb.plays[0];
        assert_eq!(play.hosts.to_string(), "a:b");
        assert_eq!(
            play.steps[1].when,
            Some(Condition::Expr("inventory_hostname == 'a'".into()))
        );
        assert_eq!(play.steps[3].location, "lab.yaml links[2]");
        let names: Vec<&str> = play.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "veth a netns blue eth1 <-> a podman web eth1",
                "vxlan 6100 a netns blue vx1 -> b vx1",
                "vxlan 6100 b vx1 -> a netns blue vx1",
                &format!("vxlan {derived} a pod default/web net2 -> b netns red net2"),
                &format!("vxlan {derived} b netns red net2 -> a pod default/web net2"),
            ]
        );
        let vx = &play.steps[2].params["link"];
        assert_eq!(vx["remote"], "{{ hostvars['a'].address }}");
        assert_eq!(vx["port"], "4796");
        assert_eq!(
            play.steps[0].params["link"]["b"]["addresses"],
            json!(["10.10.0.2/24", "fd10::2/64"])
        );
        assert_eq!(play.steps[0].params["link"]["b"]["mtu"], "1400");
        // The module is typed as a loaded step's: a broken one is refused.
        let mut broken: Vec<LinkStep> =
            lab.links.iter().flat_map(|l| link_steps(l, true)).collect();
        broken[0].module["link"]["a"]["netns"] = json!("-bad");
        let e = playbook("t", "o", &broken).unwrap_err();
        assert!(e.contains("not a network namespace name"), "{e}");
    }

    #[test]
    fn bad_lab_links_are_reported_with_positions() {
        let text = r#"
name: lk
virthost: {local: true}
image: {build: debian-12}
networks: [{name: lan, kind: nat, ipv4: 10.9.0.0/24}]
vms:
  - {name: a}
  - {name: b}
links:
  - endpoints:
      - {vm: c, netns: "x y", ifname: eth1}
      - {vm: a, netns: blue, container: web, ifname: "much-too-long-name"}
  - endpoints:
      - {vm: a, ifname: e1, addresses: [10.0.0.1]}
  - endpoints:
      - {vm: a, ifname: v1}
      - {vm: b, ifname: v1}
    vni: 16777216
  - endpoints:
      - {vm: a, netns: blue, ifname: e2}
      - {vm: a, netns: blue, ifname: e2}
"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.yaml");
        std::fs::write(&path, text).unwrap();
        let err = crate::lab::load(&path, &Default::default()).unwrap_err();
        let found: Vec<(String, String)> = err
            .0
            .iter()
            .map(|d| {
                let loc = d.location();
                (
                    loc.rsplit_once("lab.yaml:")
                        .map_or(loc.clone(), |(_, l)| l.to_string()),
                    d.message.clone(),
                )
            })
            .collect();
        let expect = |loc: &str, words: &str| {
            assert!(
                found.iter().any(|(l, m)| l == loc && m.contains(words)),
                "no `{words}` at {loc} in {found:#?}"
            );
        };
        expect("11:14", "unknown VM `c`");
        expect("11:24", "is not a network namespace name");
        expect(
            "12:41",
            "an endpoint is one of netns, container, pod or pid",
        );
        expect("12:54", "is not an interface name");
        expect("14:7", "a link has exactly two endpoints");
        expect("18:10", "VNI 16777216 is outside");
        expect("21:38", "both ends of this veth are the same interface");
        assert_eq!(found.len(), 7, "{found:#?}");
    }

    #[test]
    fn command_line_endpoints_parse_and_hostile_values_are_refused() {
        let e =
            parse_cli_end("node-1,netns=blue,ifname=eth1,ip=10.0.0.1/24,ip=fd00::1/64").unwrap();
        assert_eq!(e.vm, "node-1");
        assert_eq!(e.netns.as_deref(), Some("blue"));
        assert_eq!(e.addresses, vec!["10.0.0.1/24", "fd00::1/64"]);
        assert!(
            parse_cli_end("netns=blue")
                .unwrap_err()
                .contains("starts with the VM")
        );
        assert!(
            parse_cli_end("a,netnz=x")
                .unwrap_err()
                .contains("did you mean `netns`")
        );
        assert!(
            parse_cli_end("a,netns=x,netns=y")
                .unwrap_err()
                .contains("given twice")
        );
        let lab = lab(LAB);
        let bad = CliLink {
            ends: vec![
                parse_cli_end("a,netns=x;reboot,ifname=e1").unwrap(),
                parse_cli_end("a,netns=y,ifname=e2").unwrap(),
            ],
            present: true,
            ..CliLink::default()
        };
        let e = cli_link_steps(&lab, &bad).unwrap_err();
        assert!(e.contains("is not a network namespace name"), "{e}");
        let across = CliLink {
            ends: vec![
                parse_cli_end("a,netns=x,ifname=e1").unwrap(),
                parse_cli_end("b,ifname=e1").unwrap(),
            ],
            vni: Some(6150),
            present: true,
            ..CliLink::default()
        };
        let steps = cli_link_steps(&lab, &across).unwrap();
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[1].vm, "b");
        assert_eq!(
            steps[1].module["link"]["remote"],
            "{{ hostvars['a'].address }}"
        );
        let one = CliLink {
            ends: vec![parse_cli_end("a,ifname=eth0.7").unwrap()],
            kind: Some("vlan".into()),
            present: true,
            ..CliLink::default()
        };
        let e = cli_link_steps(&lab, &one).unwrap_err();
        assert!(e.contains("needs `parent`"), "{e}");
        let route = CliRoute {
            at: parse_cli_end("a,container=web").unwrap(),
            to: "default".into(),
            via: Some("10.10.0.1".into()),
            present: true,
            ..CliRoute::default()
        };
        let steps = cli_route_steps(&lab, &route).unwrap();
        assert_eq!(
            steps[0].module,
            json!({"route": {"container": "web", "to": "default", "via": "10.10.0.1", "state": "present"}})
        );
    }
}
