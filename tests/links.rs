//! The links engine (`link` and `route` modules) against real kernels:
//! network namespaces on this machine through `LocalTransport`, and vxlan
//! and macvlan between real `sshd` hosts, each in its own namespace (see
//! `support`; their ends live in the hosts' own namespaces, since named
//! namespaces made inside an sshd host's mount namespace outlive it). Runs as root. (This machine's kernel has no 802.1Q support:
//! vlan links are tested on the test-bed VMs, `tests/testbed/links.rs`.)
//!
//! Everything these tests create is named after the test process
//! (`lk<pid>…`) and removed at the end, also when a test fails.

#[path = "support/sshd.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use kubelab::executor::{Executor, RunOptions, RunReport};
use kubelab::inventory::{Host, Inventory};
use kubelab::lab::model::Vars;
use kubelab::output::{Reporter, Status};
use kubelab::playbook::{self, Playbook};
use kubelab::redact::Redactor;
use kubelab::template::Templates;
use kubelab::transport::local::LocalTransport;
use kubelab::transport::{SshTransport, Transport};

fn load(text: &str) -> Playbook {
    match playbook::load_str(Path::new("links.yaml"), text, &Templates::default()) {
        Ok(p) => p,
        Err(d) => panic!("invalid playbook:\n{}", d.render(false)),
    }
}

async fn run(pb: &Playbook, inventory: Inventory, check: bool) -> RunReport {
    let exec = Executor::new(
        inventory,
        Arc::new(Templates::default()),
        Arc::new(Reporter::new(Redactor::new())),
        RunOptions {
            check,
            ..Default::default()
        },
    );
    exec.run(pb).await
}

fn local(vars: &[(&str, &str)]) -> Inventory {
    let mut hv = Vars::new();
    for (k, v) in vars {
        hv.insert(k.to_string(), serde_json::Value::from(*v));
    }
    let mut inv = Inventory::new(Vars::new());
    inv.add(Host {
        name: "here".into(),
        groups: vec![],
        vars: hv,
        transport: Arc::new(LocalTransport::new("here")),
    });
    inv
}

fn record<'a>(r: &'a RunReport, host: &'a str, step: &str) -> &'a kubelab::executor::StepRecord {
    r.host_records(host)
        .find(|s| s.step == step)
        .unwrap_or_else(|| {
            panic!(
                "no step {step} on {host}: {:?}",
                r.records
                    .iter()
                    .map(|r| (&r.host, &r.step, r.status, &r.message))
                    .collect::<Vec<_>>()
            )
        })
}

fn sh(script: &str) -> (bool, String) {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn require_root() {
    let (_, uid) = sh("id -u");
    assert_eq!(
        uid.trim(),
        "0",
        "the links tests create network namespaces and must run as root"
    );
}

/// Named namespaces of this test (prefix), deleted on drop.
struct Namespaces(String);

impl Namespaces {
    fn new(test: &str) -> Namespaces {
        require_root();
        let tag = format!("lk{}{test}", std::process::id());
        let ns = Namespaces(tag);
        ns.clean();
        ns
    }
    fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.0)
    }
    fn clean(&self) {
        let (_, list) = sh("ip netns list");
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(&self.0) {
                let _ = Command::new("ip").args(["netns", "del", name]).status();
            }
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.clean();
    }
}

const CHAIN: &str = r#"
- name: chain
  hosts: all
  gather_facts: false
  steps:
    - name: a-b
      link:
        a: {netns: "{{ tag }}a", ifname: eth1, addresses: [10.77.1.1/24, "fd77:1::1/64"]}
        b: {netns: "{{ tag }}b", ifname: eth1, addresses: "10.77.1.2/24, fd77:1::2/64"}
        mtu: 1400
    - name: b-c
      link:
        kind: "{{ 'veth' }}"
        a: {netns: "{{ tag }}b", ifname: eth2, addresses: [10.77.2.1/24]}
        b: {netns: "{{ tag }}c", ifname: eth1, addresses: [10.77.2.2/24], mtu: 1300}
    - name: a default
      route: {netns: "{{ tag }}a", to: default, via: 10.77.1.2}
    - name: c back to a
      route: {netns: "{{ tag }}c", to: 10.77.1.0/24, via: 10.77.2.1}
    - name: c v6 back to a
      route: {netns: "{{ tag }}c", to: "fd77:1::/64", dev: eth1}
    - name: forwarding on b
      command: [ip, netns, exec, "{{ tag }}b", sysctl, -qw, net.ipv4.ip_forward=1]
      changed_when: false
"#;

const CHAIN_GONE: &str = r#"
- name: chain gone
  hosts: all
  gather_facts: false
  steps:
    - name: a-b gone
      link:
        a: {netns: "{{ tag }}a", ifname: eth1}
        b: {netns: "{{ tag }}b", ifname: eth1}
        state: absent
    - name: c route gone
      route: {netns: "{{ tag }}c", to: 10.77.1.0/24, via: 10.77.2.1, state: absent}
"#;

#[tokio::test]
async fn veth_links_and_routes_between_namespaces_converge_and_go_away() {
    let ns = Namespaces::new("v");
    let tag = ns.name("");
    let inv = || local(&[("tag", &tag)]);
    let pb = load(CHAIN);

    let r = run(&pb, inv(), false).await;
    assert!(r.success(), "{:#?}", r.summary);
    let ab = record(&r, "here", "a-b");
    assert_eq!(ab.status, Status::Changed);
    assert!(
        ab.message.contains("created network namespace"),
        "{}",
        ab.message
    );
    assert!(ab.message.contains("created veth"), "{}", ab.message);

    // Through b (a router) from a to c, IPv4; IPv6 across a-b.
    let a = ns.name("a");
    let c = ns.name("c");
    let (ok, out) = sh(&format!("ip netns exec {a} ping -c1 -W3 10.77.2.2"));
    assert!(ok, "a cannot reach c through b: {out}");
    let (ok, out) = sh(&format!("ip netns exec {a} ping -6 -c1 -W3 fd77:1::2"));
    assert!(ok, "a cannot reach b over IPv6: {out}");
    let (_, mtu) = sh(&format!("ip -n {a} -o link show dev eth1"));
    assert!(mtu.contains("mtu 1400"), "{mtu}");
    let (_, mtu) = sh(&format!("ip -n {c} -o link show dev eth1"));
    assert!(mtu.contains("mtu 1300"), "the end's own MTU wins: {mtu}");

    // A second run changes nothing.
    let r = run(&pb, inv(), false).await;
    assert!(r.success(), "{:#?}", r.summary);
    assert_eq!(r.changed_count(), 0, "{:#?}", r.records);

    // Drift: an address gone and a route changed. Check mode sees it and
    // changes nothing; a run repairs it.
    let b = ns.name("b");
    sh(&format!("ip -n {b} addr del 10.77.1.2/24 dev eth1"));
    sh(&format!(
        "ip -n {a} route replace default via 10.77.1.9 dev eth1 onlink"
    ));
    let r = run(&pb, inv(), true).await;
    assert_eq!(r.changed_count(), 2, "{:#?}", r.records);
    let ab = record(&r, "here", "a-b");
    assert!(ab.message.starts_with("would:"), "{}", ab.message);
    assert!(ab.message.contains("added 10.77.1.2/24"), "{}", ab.message);
    let (_, addrs) = sh(&format!("ip -n {b} -o addr show dev eth1"));
    assert!(
        !addrs.contains("10.77.1.2/24"),
        "check mode changed the host"
    );
    let r = run(&pb, inv(), false).await;
    assert!(r.success(), "{:#?}", r.summary);
    assert_eq!(record(&r, "here", "a default").status, Status::Changed);
    let (_, routes) = sh(&format!("ip -n {a} route show default"));
    assert!(routes.contains("via 10.77.1.2"), "{routes}");
    let (ok, out) = sh(&format!("ip netns exec {a} ping -c1 -W3 10.77.2.2"));
    assert!(ok, "not repaired: {out}");

    // Deleting one end of a veth takes the peer; routes go; twice is a no-op.
    let gone = load(CHAIN_GONE);
    let r = run(&gone, inv(), false).await;
    assert!(r.success(), "{:#?}", r.summary);
    assert_eq!(r.changed_count(), 2);
    let (ok, _) = sh(&format!("ip -n {a} link show dev eth1"));
    assert!(!ok, "eth1 still in a");
    let (ok, _) = sh(&format!("ip -n {b} link show dev eth1"));
    assert!(!ok, "the peer of a's eth1 is still in b");
    let (_, routes) = sh(&format!("ip -n {c} route show"));
    assert!(!routes.contains("10.77.1.0/24 via"), "{routes}");
    let r = run(&gone, inv(), false).await;
    assert!(r.success());
    assert_eq!(r.changed_count(), 0, "{:#?}", r.records);
}

#[tokio::test]
async fn process_endpoints_and_missing_containers() {
    let ns = Namespaces::new("p");
    let tag = ns.name("");
    // A process in a namespace of its own, like a container's.
    let mut child = Command::new("unshare")
        .args(["--net", "sleep", "120"])
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    // unshare execs sleep in the new namespace: wait until it has.
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .as_ref()
        == Some(&own)
    {
        assert!(
            std::time::Instant::now() < deadline,
            "unshare did not start"
        );
        std::thread::yield_now();
    }
    let pb = load(
        r#"
- name: pid
  hosts: all
  gather_facts: false
  steps:
    - name: to the process
      link:
        a: {netns: "{{ tag }}x", ifname: p0, addresses: [10.78.0.1/30]}
        b: {pid: "{{ pid }}", ifname: p1, addresses: [10.78.0.2/30]}
    - name: to a container that is not there
      link:
        a: {netns: "{{ tag }}x", ifname: q0}
        b: {container: "{{ tag }}-nothing", runtime: "{{ rt }}", ifname: q1}
"#,
    );
    for rt in ["podman", "docker"] {
        let r = run(
            &pb,
            local(&[("tag", &tag), ("pid", &pid), ("rt", rt)]),
            false,
        )
        .await;
        let to = record(&r, "here", "to the process");
        assert!(
            matches!(to.status, Status::Changed | Status::Ok),
            "{}",
            to.message
        );
        let missing = record(&r, "here", "to a container that is not there");
        assert_eq!(missing.status, Status::Failed);
        assert!(
            missing
                .message
                .contains(&format!("{tag}-nothing is not running"))
                || missing.message.contains(&format!("{rt} is not installed")),
            "{}",
            missing.message
        );
    }
    let (ok, out) = sh(&format!(
        "nsenter --net=/proc/{pid}/ns/net ip -o addr show dev p1"
    ));
    assert!(ok && out.contains("10.78.0.2/30"), "{out}");
    let (ok, out) = sh(&format!("ip netns exec {tag}x ping -c1 -W3 10.78.0.2"));
    assert!(ok, "{out}");
    let _ = child.kill();
    let _ = child.wait();
}

const SWITCHES: &str = r#"
- name: switches
  hosts: all
  gather_facts: false
  steps:
    - name: bridge
      link: {kind: bridge, a: {ifname: br79, addresses: ["{{ overlay }}"], ipv6: false}}
    - name: tunnel
      link:
        kind: vxlan
        a: {ifname: vx79, master: br79, ipv6: false}
        vni: 5079
        port: 4797
        local: "{{ address }}"
        flood: "{{ peer }}"
        mtu: 1400
    - name: a veth port
      link:
        a: {ifname: wa79, master: br79, ipv6: false}
        b: {ifname: wb79, up: false}
"#;

const SWITCHES_CHECK: &str = r#"
- name: across
  hosts: first
  gather_facts: false
  steps:
    - name: what the kernel has
      shell: "cat /proc/sys/net/ipv6/conf/br79/disable_ipv6 /proc/sys/net/ipv6/conf/wa79/disable_ipv6; bridge fdb show dev vx79; ip -o link show master br79"
      register: kernel
      changed_when: false
    - name: bridge to bridge
      command: [ping, -c1, -W5, 10.79.1.2]
"#;

const SWITCHES_DRIFT: &str = r#"
- name: drift
  hosts: first
  gather_facts: false
  steps:
    - name: drift
      shell: |
        bridge fdb del 00:00:00:00:00:00 dev vx79 dst {{ peer | quote }}
        ip link set dev wa79 nomaster
        echo 0 >/proc/sys/net/ipv6/conf/br79/disable_ipv6
"#;

/// Two hosts' bridges joined by a VXLAN port that floods to the other host
/// (the overlay and tenants scenarios' switch), with a veth port and IPv6
/// off, converge, are idempotent and are repaired after drift.
#[tokio::test]
async fn bridges_with_ports_and_flooding_vxlan_between_ssh_hosts() {
    let lab = support::Lab::new();
    let (inv, hosts) = two_ssh_hosts(&lab, |i, peer, own| {
        vec![
            ("peer", peer.to_string()),
            ("address", own.to_string()),
            ("overlay", format!("10.79.1.{}/24", i + 1)),
        ]
    })
    .await;
    let pb = load(SWITCHES);
    let r = run(&pb, inv.clone(), false).await;
    assert!(r.success(), "{:#?}", r.records);
    let r = run(&load(SWITCHES_CHECK), inv.clone(), false).await;
    assert!(r.success(), "no way across the overlay: {:#?}", r.records);
    let kernel = record(&r, "h0", "what the kernel has").stdout.clone();
    assert!(kernel.starts_with("1\n1\n"), "IPv6 is not off: {kernel}");
    assert!(
        kernel.contains(&format!("00:00:00:00:00:00 dst {} ", hosts[1].address)),
        "{kernel}"
    );
    assert!(
        kernel.contains("wa79@wb79") && kernel.contains("vx79"),
        "{kernel}"
    );

    let r = run(&pb, inv.clone(), false).await;
    assert!(r.success(), "{:#?}", r.summary);
    assert_eq!(r.changed_count(), 0, "second run: {:#?}", r.records);

    // Drift: the flooding entry gone, the veth out of its bridge, IPv6 back
    // on the bridge. Check mode names each and changes nothing.
    let r = run(&load(SWITCHES_DRIFT), inv.clone(), false).await;
    assert!(r.success(), "{:#?}", r.records);
    let r = run(&pb, inv.clone(), true).await;
    assert_eq!(r.changed_count(), 3, "{:#?}", r.records);
    let said: Vec<&str> = r.records.iter().map(|r| r.message.as_str()).collect();
    let said = said.join("\n");
    for want in ["floods to ", "port of bridge br79", "IPv6 off"] {
        assert!(
            said.contains(want),
            "check mode does not say `{want}`: {said}"
        );
    }
    // (Learned entries may still carry the ping: look at the kernel.)
    let r = run(&load(SWITCHES_CHECK), inv.clone(), false).await;
    let kernel = record(&r, "h0", "what the kernel has").stdout.clone();
    assert!(
        kernel.starts_with("0\n1\n") && !kernel.contains("00:00:00:00:00:00 dst"),
        "check mode changed the host: {kernel}"
    );
    let r = run(&pb, inv.clone(), false).await;
    assert!(r.success(), "{:#?}", r.records);
    assert_eq!(r.changed_count(), 3, "{:#?}", r.records);
    let r = run(&load(SWITCHES_CHECK), inv.clone(), false).await;
    assert!(r.success(), "not repaired: {:#?}", r.records);

    // Another flooding list: the old entry goes, the new one comes.
    let moved = SWITCHES.replace("flood: \"{{ peer }}\"", "flood: [192.0.2.79]");
    let r = run(&load(&moved), inv.clone(), false).await;
    assert!(r.success(), "{:#?}", r.records);
    let r = run(&load(SWITCHES_CHECK), inv.clone(), false).await;
    let kernel = record(&r, "h0", "what the kernel has").stdout.clone();
    assert!(
        kernel.contains("00:00:00:00:00:00 dst 192.0.2.79 ")
            && !kernel.contains(&format!("00:00:00:00:00:00 dst {} ", hosts[1].address)),
        "{kernel}"
    );
}

#[test]
fn flooding_and_bridge_keys_are_checked_when_loading() {
    let text = r#"
- name: bad
  hosts: all
  steps:
    - name: both
      link: {kind: vxlan, a: {ifname: vx0}, vni: 5, remote: 10.0.0.2, flood: [10.0.0.3]}
    - name: neither
      link: {kind: vxlan, a: {ifname: vx1}, vni: 5}
    - name: flood on a veth
      link: {a: {ifname: a0}, b: {ifname: a1}, flood: [10.0.0.3]}
    - name: not an address
      link: {kind: vxlan, a: {ifname: vx2}, vni: 5, flood: [10.0.0.3, "x;y"]}
    - name: bad master
      link: {kind: bridge, a: {ifname: br1, master: "b r"}}
"#;
    let err = playbook::load_str(Path::new("bad.yaml"), text, &Templates::default())
        .expect_err("refused")
        .render(false);
    for want in [
        "error: give `remote` (one other host) or `flood` (several), not both\n --> bad.yaml:6:78",
        "error: a vxlan link needs `remote` (the other host's address) or `flood` (every other host's)\n --> bad.yaml:8:30",
        "error: `flood` is only for vxlan links\n  --> bad.yaml:10:55",
        "error: `x;y` is not an IP address\n  --> bad.yaml:12:71",
        "error: `b r` is not an interface name: ` ` is not allowed (letters, digits, `-`, `_`, `.`)\n  --> bad.yaml:14:53",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}

#[test]
fn hostile_and_wrong_parameters_are_refused_when_loading() {
    let text = r#"
- name: bad
  hosts: all
  steps:
    - name: shell in a name
      link:
        a: {netns: "a;rm -rf /", ifname: eth1}
        b: {netns: b, ifname: "eth1 up"}
    - name: veth with one end
      link:
        a: {netns: b, ifname: eth1, addresses: [10.0.0.1]}
    - name: vxlan out of range
      link: {kind: vxlan, a: {ifname: vx0}, vni: 16777216, remote: 10.0.0.2, port: 0}
    - name: two endpoints
      link:
        a: {netns: b, pod: default/web, ifname: eth1}
        b: {container: "$(reboot)", ifname: eth2}
    - name: route without a way
      route: {netns: x, to: 10.0.0.0/33}
    - name: wrong family
      route: {to: "fd00::/64", via: 10.0.0.1}
    - name: no such kind
      link: {kind: gre, a: {ifname: g0}}
"#;
    let err = playbook::load_str(Path::new("bad.yaml"), text, &Templates::default()).unwrap_err();
    let found: Vec<(String, String)> = err
        .0
        .iter()
        .map(|d| (d.location(), d.message.clone()))
        .collect();
    let expect = |loc: &str, words: &str| {
        assert!(
            found.iter().any(|(l, m)| l == loc && m.contains(words)),
            "no `{words}` at {loc} in {found:#?}"
        );
    };
    expect("bad.yaml:7:20", "is not a network namespace name");
    expect("bad.yaml:8:31", "is not an interface name");
    expect("bad.yaml:11:12", "a veth has two ends");
    expect("bad.yaml:11:48", "is not an address with prefix length");
    expect("bad.yaml:13:50", "VNI 16777216 is outside");
    expect("bad.yaml:13:84", "UDP port 0 is outside");
    expect(
        "bad.yaml:16:28",
        "an endpoint is one of netns, container, pod or pid",
    );
    expect("bad.yaml:17:24", "is not a container name");
    expect("bad.yaml:19:29", "is not a destination");
    expect("bad.yaml:19:29", "a route needs `via`");
    expect("bad.yaml:21:37", "is not of the family");
    expect("bad.yaml:23:20", "unknown link kind `gre`");
}

#[tokio::test]
async fn hostile_values_from_templates_are_refused_on_the_host() {
    let ns = Namespaces::new("h");
    let tag = ns.name("");
    let marker = std::env::temp_dir().join(format!("{tag}-pwned"));
    let evil = format!("x$(touch {})", marker.display());
    let pb = load(
        r#"
- name: evil
  hosts: all
  gather_facts: false
  steps:
    - name: evil name
      link:
        a: {netns: "{{ evil }}", ifname: eth1}
        b: {netns: "{{ tag }}b", ifname: eth1}
"#,
    );
    let r = run(&pb, local(&[("tag", &tag), ("evil", &evil)]), false).await;
    let rec = record(&r, "here", "evil name");
    assert_eq!(rec.status, Status::Failed);
    assert!(
        rec.message.contains("is not a network namespace name"),
        "{}",
        rec.message
    );
    assert!(!marker.exists(), "a value was run as shell code");
    let (_, list) = sh("ip netns list");
    assert!(!list.contains(&format!("{tag}b")), "something was created");
}

const OVERLAY: &str = r#"
- name: overlay
  hosts: all
  gather_facts: false
  steps:
    - name: tunnel
      link:
        kind: vxlan
        a: {ifname: vx6100, addresses: ["{{ overlay }}"]}
        vni: 6100
        port: 4796
        remote: "{{ peer }}"
        parent: eth0
    - name: macvlan
      link: {kind: macvlan, a: {ifname: mv0, addresses: ["{{ mv }}"]}, parent: eth0}
"#;

const OVERLAY_CHECK: &str = r#"
- name: overlay works
  hosts: first
  gather_facts: false
  steps:
    - name: over the tunnel
      command: [ping, -c1, -W5, 10.61.0.2]
    - name: over the macvlans
      command: [ping, -c1, -W5, 10.63.0.2]
"#;

const OVERLAY_GONE: &str = r#"
- name: overlay gone
  hosts: all
  gather_facts: false
  steps:
    - name: tunnel gone
      link: {kind: vxlan, a: {ifname: vx6100}, state: absent}
    - name: macvlan gone
      link: {kind: macvlan, a: {ifname: mv0}, state: absent}
    - name: what is left
      shell: "ip -o link show"
      register: left
      changed_when: false
"#;

#[tokio::test]
async fn vxlan_and_macvlan_between_ssh_hosts() {
    let lab = support::Lab::new();
    let (inv, _hosts) = two_ssh_hosts(&lab, |i, peer, _| {
        vec![
            ("peer", peer.to_string()),
            ("overlay", format!("10.61.0.{}/24", i + 1)),
            ("mv", format!("10.63.0.{}/24", i + 1)),
        ]
    })
    .await;
    let pb = load(OVERLAY);
    let r = run(&pb, inv.clone(), false).await;
    assert!(r.success(), "{:#?}", r.summary);
    assert_eq!(r.changed_count(), 4, "{:#?}", r.records);
    let r = run(&load(OVERLAY_CHECK), inv.clone(), false).await;
    assert!(r.success(), "{:#?}", r.records);
    let r = run(&pb, inv.clone(), false).await;
    assert!(r.success());
    assert_eq!(r.changed_count(), 0, "second run: {:#?}", r.records);
    // Another VNI asked for: the tunnel is replaced, not duplicated.
    let other = load(&OVERLAY.replace("vni: 6100", "vni: 6101"));
    let r = run(&other, inv.clone(), false).await;
    assert!(r.success());
    let t = record(&r, "h0", "tunnel");
    assert!(t.message.contains("replaced vxlan"), "{}", t.message);
    let r = run(&load(OVERLAY_GONE), inv.clone(), false).await;
    assert!(r.success(), "{:#?}", r.records);
    for h in ["h0", "h1"] {
        let left = record(&r, h, "what is left").stdout.clone();
        for name in ["vx6100", "mv0"] {
            assert!(!left.contains(name), "{h}: {name} left: {left}");
        }
    }
}

#[tokio::test]
async fn loops_give_each_item_its_position() {
    let ns = Namespaces::new("l");
    let tag = ns.name("");
    let pb = load(
        r#"
- name: numbered
  hosts: all
  gather_facts: false
  steps:
    - name: one veth per item
      link:
        a: {netns: "{{ tag }}{{ item }}", ifname: "e{{ loop_index }}", addresses: ["10.79.{{ loop_index }}.1/24"]}
        b: {netns: "{{ tag }}z", ifname: "z{{ loop_index }}", addresses: ["10.79.{{ loop_index }}.2/24"]}
      loop: [x, y]
"#,
    );
    let r = run(&pb, local(&[("tag", &tag)]), false).await;
    assert!(r.success(), "{:#?}", r.records);
    let (_, z) = sh(&format!("ip -n {tag}z -o addr show"));
    assert!(z.contains("z0") && z.contains("10.79.0.2/24"), "{z}");
    assert!(z.contains("z1") && z.contains("10.79.1.2/24"), "{z}");
    let (ok, out) = sh(&format!("ip netns exec {tag}y ping -c1 -W3 10.79.1.2"));
    assert!(ok, "{out}");
}

/// Two sshd hosts of `lab`, `h0` (in group `first`) and `h1`, each with the
/// variables `vars(index, the other's address, its own address)`; and
/// the hosts, which live as long as the caller keeps them.
async fn two_ssh_hosts(
    lab: &support::Lab,
    vars: impl Fn(usize, &str, &str) -> Vec<(&'static str, String)>,
) -> (Inventory, [support::SshHost; 2]) {
    let hosts = [lab.host(), lab.host()];
    let mut inv = Inventory::new(Vars::new());
    for (i, h) in hosts.iter().enumerate() {
        h.pin(&h.address);
        let mut host_vars = Vars::new();
        for (k, v) in vars(i, &hosts[1 - i].address, &h.address) {
            host_vars.insert(k.into(), v.into());
        }
        let name = format!("h{i}");
        let t: Arc<dyn Transport> = Arc::new(
            SshTransport::connect(lab.target(&name, &h.address, "root"))
                .await
                .unwrap(),
        );
        inv.add(Host {
            name,
            groups: if i == 0 { vec!["first".into()] } else { vec![] },
            vars: host_vars,
            transport: t,
        });
    }
    (inv, hosts)
}
