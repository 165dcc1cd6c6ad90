//! The links area on the test bed (lab `tests/labs/e2e/testbed-links.yaml`):
//! the lab's `links:` (a veth on node-1, a VXLAN tunnel node-1 ↔ node-2),
//! `kubelab link` / `kubelab route` by hand (vlan and macvlan between
//! node-2 and node-3, routes, a hostile endpoint refused), and the
//! service-chain, cloud-router and ratchet-pairs scenarios end to end:
//! setup by `up`, nothing left to change, verify passes (JUnit), chaos,
//! verify fails when broken by hand, teardown leaves the nodes clean.
//!
//! The overlay/tenants area works on the same VMs at the same time: this
//! area uses VNIs 6100-6111 on UDP port 4796 and only names starting with
//! lk-, sc-, cr-, rp- (and interfaces inside its own namespaces).

use std::process::Output;

use super::Testbed;

const LAB: &str = "tests/labs/e2e/testbed-links.yaml";
const VMS: [&str; 3] = ["node-1", "node-2", "node-3"];

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Steps that changed (or would change) something, from `--json` events.
fn changed_steps(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_end" && e["changed"] == true)
        .map(|e| format!("{} | {}", e["host"], e["step"]))
        .collect()
}

fn ok(tb: &Testbed, args: &[&str]) -> Output {
    let out = tb.kubelab(args);
    assert!(out.status.success(), "kubelab {} failed", args.join(" "));
    out
}

/// `up` of this area's lab file, which other areas' `up` of the same lab
/// (`testbed`) may hold the lock of for minutes: retried while the lock is
/// held, for at most 30 minutes.
fn up(tb: &Testbed) -> Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1800);
    loop {
        let out = tb.kubelab(&["--json", "up", LAB]);
        if out.status.success() {
            return out;
        }
        let held = stderr(&out).contains("holds the lab lock");
        assert!(
            held && std::time::Instant::now() < deadline,
            "kubelab up {LAB} failed"
        );
        std::thread::sleep(std::time::Duration::from_secs(10));
    }
}

/// Everything of this area on a VM, one name per line (empty when clean).
fn leftovers(tb: &Testbed, vm: &str) -> String {
    tb.sh_ok(
        vm,
        "{ ip netns list | awk '{print \"netns \" $1}' | grep -E ' (lk|cr|sc|rp)-';
           podman ps -a --format 'container {{.Names}}' | grep -E ' (sc|cr|rp)-';
           podman images --format 'image {{.Repository}}' | grep -x 'image localhost/kubelab/busybox';
           ip -o link show | awk -F': ' '{print \"link \" $2}' | grep -E ' (lk|link[0-9]|vx0|in[12]|cr-)';
           ls -d /etc/frr/cr-* /run/frr/cr-* 2>/dev/null; } || true",
    )
}

fn lab_links(tb: &Testbed) {
    // node-1: lk-a --veth-- lk-b; lk-b --VXLAN 6100-- lk-c on node-2.
    tb.sh_ok(
        "node-1",
        "ip netns exec lk-a ping -c1 -W3 10.66.0.2 && ip netns exec lk-a ping -6 -c1 -W3 fd66::2",
    );
    tb.sh_ok("node-1", "ip netns exec lk-b ping -c1 -W5 10.66.1.2");
    let vx = tb.sh_ok("node-2", "ip -n lk-c -d -o link show dev lk1");
    assert!(
        vx.contains("vxlan id 6100") && vx.contains("dstport 4796") && vx.contains("mtu 1400"),
        "{vx}"
    );
}

/// `kubelab link` and `kubelab route` by hand: a VLAN and a macvlan
/// between namespaces on node-2 and node-3, over the lab network.
fn by_hand(tb: &Testbed) {
    let lab = LAB;
    for (vm, n) in [("node-2", 1), ("node-3", 2)] {
        let vlan = format!("{vm},netns=lk-v,ifname=lk-vl61,ip=10.67.0.{n}/24");
        let add = [
            "--json",
            "link",
            "add",
            lab,
            &vlan,
            "--kind",
            "vlan",
            "--parent",
            "eth0",
            "--vlan-id",
            "61",
        ];
        let first = ok(tb, &add);
        assert!(!changed_steps(&first).is_empty(), "the vlan was not made");
        let again = ok(tb, &add);
        assert_eq!(
            changed_steps(&again),
            Vec::<String>::new(),
            "link add twice"
        );
        let mac = format!("{vm},netns=lk-v,ifname=lk-mv,ip=10.68.0.{n}/24");
        ok(
            tb,
            &[
                "link", "add", lab, &mac, "--kind", "macvlan", "--parent", "eth0",
            ],
        );
    }
    let vl = tb.sh_ok("node-2", "ip -n lk-v -d -o link show dev lk-vl61");
    assert!(vl.contains("vlan protocol 802.1Q id 61"), "{vl}");
    tb.sh_ok("node-2", "ip netns exec lk-v ping -c1 -W5 10.67.0.2");
    tb.sh_ok("node-2", "ip netns exec lk-v ping -c1 -W5 10.68.0.2");

    let route = [
        "route",
        "add",
        lab,
        "node-2,netns=lk-v",
        "10.69.0.0/24",
        "--via",
        "10.67.0.2",
    ];
    ok(tb, &route);
    let r = tb.sh_ok("node-2", "ip -n lk-v route show 10.69.0.0/24");
    assert!(r.contains("via 10.67.0.2 dev lk-vl61"), "{r}");
    let check = ok(tb, &{
        let mut c = vec!["--json"];
        c.extend_from_slice(&route);
        c.push("--check");
        c
    });
    assert_eq!(changed_steps(&check), Vec::<String>::new());
    let mut del = route;
    del[1] = "del";
    ok(tb, &del);
    let r = tb.sh_ok("node-2", "ip -n lk-v route show 10.69.0.0/24");
    assert!(r.trim().is_empty(), "{r}");

    // Hostile and wrong endpoints are refused before anything runs.
    let bad = tb.kubelab(&[
        "link",
        "add",
        lab,
        "node-2,netns=x;reboot,ifname=e1",
        "node-2,netns=y,ifname=e2",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("is not a network namespace name"),
        "{}",
        stderr(&bad)
    );
    let bad = tb.kubelab(&["link", "add", lab, "node-9,ifname=e1", "node-2,ifname=e2"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("no VM `node-9`"), "{}", stderr(&bad));

    for vm in ["node-2", "node-3"] {
        for ifname in ["lk-vl61", "lk-mv"] {
            let end = format!("{vm},netns=lk-v,ifname={ifname}");
            let kind = if ifname == "lk-mv" { "macvlan" } else { "vlan" };
            ok(tb, &["link", "del", lab, &end, "--kind", kind]);
        }
        let left = tb.sh_ok(vm, "ip -n lk-v -o link show");
        assert!(
            !left.contains("lk-vl61") && !left.contains("lk-mv"),
            "{left}"
        );
    }
}

/// service-chain: verify fails without the firewall's ICMP rule; setup
/// brings it back.
fn service_chain_icmp_rule(tb: &Testbed) {
    ok(tb, &["scenario", LAB, "service-chain", "setup"]);
    tb.sh_ok(
        "node-1",
        "pid=$(podman inspect --type container sc-firewall | sed -n 's/^ *\"Pid\": *\\([0-9]*\\),*$/\\1/p' | head -n 1);
         nsenter -t \"$pid\" -n iptables -D FORWARD -p icmp -m comment --comment kubelab-sc-icmp -j DROP",
    );
    let junit = tempfile::NamedTempFile::new().unwrap();
    let path = junit.path().to_str().unwrap();
    let broken = tb.kubelab(&[
        "verify",
        LAB,
        "--scenario",
        "service-chain",
        "--junit",
        path,
    ]);
    assert_eq!(
        broken.status.code(),
        Some(1),
        "verify passed without the ICMP rule"
    );
    let xml = std::fs::read_to_string(junit.path()).unwrap();
    assert!(
        xml.contains("the firewall&apos;s ICMP rule drops the pings")
            && xml.contains("ping 10.0.3.2"),
        "{xml}"
    );
    ok(tb, &["scenario", LAB, "service-chain", "setup"]);
    ok(tb, &["verify", LAB, "--scenario", "service-chain"]);
}

/// ratchet-pairs: verify fails when a pair's link is cut (by hand, with
/// `kubelab link del`); setup relinks it.
fn ratchet_cut(tb: &Testbed) {
    ok(
        tb,
        &[
            "link",
            "del",
            LAB,
            "node-3,container=rp-b1,ifname=in1",
            "node-3,container=rp-b2,ifname=in2",
        ],
    );
    let broken = tb.kubelab(&["verify", LAB, "--scenario", "ratchet-pairs"]);
    assert_eq!(
        broken.status.code(),
        Some(1),
        "verify passed with a cut pair"
    );
    assert!(
        stderr(&broken).contains("FAILED rp-b1"),
        "{}",
        stderr(&broken)
    );
    ok(tb, &["scenario", LAB, "ratchet-pairs", "setup"]);
    ok(tb, &["verify", LAB, "--scenario", "ratchet-pairs"]);
}

fn teardown(tb: &Testbed) {
    for s in ["service-chain", "cloud-router", "ratchet-pairs"] {
        ok(tb, &["scenario", LAB, s, "teardown"]);
    }
    // The lab's own links, then the namespaces they made.
    ok(
        tb,
        &[
            "link",
            "del",
            LAB,
            "node-1,netns=lk-a,ifname=lk0",
            "node-1,netns=lk-b,ifname=lk0",
        ],
    );
    ok(
        tb,
        &[
            "link",
            "del",
            LAB,
            "node-1,netns=lk-b,ifname=lk1",
            "node-2,netns=lk-c,ifname=lk1",
        ],
    );
    for vm in VMS {
        tb.sh_ok(
            vm,
            "for n in lk-a lk-b lk-c lk-v; do [ -e /run/netns/$n ] && ip netns del $n; done; true",
        );
    }
}

pub fn run(tb: &Testbed) {
    // A run that died half-way leaves things behind: start clean.
    teardown(tb);

    let up = up(tb);
    assert!(
        stdout(&up).contains("\"event\":\"up\""),
        "no up event: {}",
        stdout(&up)
    );
    let plan = ok(tb, &["--json", "plan", LAB]);
    assert_eq!(changed_steps(&plan), Vec::<String>::new(), "plan after up");

    lab_links(tb);

    let junit = tempfile::NamedTempFile::new().unwrap();
    let path = junit.path().to_str().unwrap();
    ok(tb, &["verify", LAB, "--junit", path]);
    let xml = std::fs::read_to_string(junit.path()).unwrap();
    for suite in ["service-chain", "cloud-router", "ratchet-pairs"] {
        assert!(
            xml.contains(&format!("<testsuite name=\"{suite}\"")),
            "{xml}"
        );
    }
    assert!(xml.contains("failures=\"0\""), "{xml}");
    assert!(
        xml.contains("OSPF adjacency with the other router is Full"),
        "{xml}"
    );

    for s in ["service-chain", "cloud-router"] {
        let chaos = ok(tb, &["--json", "chaos", LAB, s]);
        assert!(stdout(&chaos).contains("\"passed\":true"), "chaos {s}");
    }
    service_chain_icmp_rule(tb);
    ratchet_cut(tb);
    by_hand(tb);

    teardown(tb);
    for vm in VMS {
        let left = leftovers(tb, vm);
        assert!(left.trim().is_empty(), "{vm} is not clean:\n{left}");
    }
}
