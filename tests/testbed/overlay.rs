//! The overlay and tenants scenarios on the test bed, end to end with the
//! built-in playbooks:
//! - `testbed-overlay.yaml`: overlay on Open vSwitch over the three VMs and
//!   tenants (blue, red) on node-1/node-2. `up` runs both setups; a second
//!   setup changes nothing and `plan` has nothing to do; verify passes; the
//!   virthost itself reaches every container through its host's address;
//!   chaos cycles both scenarios; then each check is shown to fail when what
//!   it checks is broken by hand (masquerade rule, DNAT rule, a tunnel, a
//!   tenant's VXLAN device, a leak between two tenants' bridges), and to
//!   pass again once setup has put things back;
//! - `testbed-overlay-linux.yaml`: overlay on Linux bridges and kernel VXLAN
//!   with IPsec: setup, verify, chaos, the IPsec check failing when the
//!   policies are gone;
//! - teardown of every scenario leaves no link, namespace, container, image,
//!   OVS bridge, iptables chain, IPsec state or file of theirs on any VM.
//!
//! Everything on the VMs is named `ovo-`/`ovl-`/`tn<k>-`/`tn-` (chains
//! `OVO-`/`OVL-`/`TN-`), VNIs 7100-7110, UDP ports 4790-4792: other areas
//! use the same VMs at the same time.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::Testbed;
use super::verify::{verify_fails, verify_passes};

const OVS: &str = "tests/labs/e2e/testbed-overlay.yaml";
const LINUX: &str = "tests/labs/e2e/testbed-overlay-linux.yaml";
const VMS: [&str; 3] = ["node-1", "node-2", "node-3"];

/// `kubelab ARGS` on the test bed; the output.
fn k(tb: &Testbed, args: &[&str]) -> std::process::Output {
    tb.kubelab(args)
}

/// `kubelab ARGS`, which must succeed.
fn k_ok(tb: &Testbed, args: &[&str]) {
    assert!(
        k(tb, args).status.success(),
        "kubelab {} failed",
        args.join(" ")
    );
}

/// `kubelab up LAB`, which must succeed. Other areas' `up` of the shared
/// lab may hold its lock: poll until it is free (bounded: 30 minutes).
fn up(tb: &Testbed, lab: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(1800);
    loop {
        let out = k(tb, &["up", lab]);
        if out.status.success() {
            return;
        }
        let busy = String::from_utf8_lossy(&out.stderr).contains("holds the lab lock");
        assert!(
            busy && std::time::Instant::now() < deadline,
            "kubelab up {lab} failed"
        );
        std::thread::sleep(Duration::from_secs(10));
    }
}

/// A root shell script on a VM of the test bed, which must succeed.
fn sh(tb: &Testbed, vm: &str, script: &str) -> String {
    tb.sh_ok(vm, script)
}

/// `kubelab --json scenario LAB NAME setup` changes nothing.
fn setup_changes_nothing(tb: &Testbed, lab: &str, scenario: &str) {
    let out = k(tb, &["--json", "scenario", lab, scenario, "setup"]);
    assert!(out.status.success(), "{scenario} setup failed");
    let changed = super::changed_per_host(&out);
    assert!(!changed.is_empty(), "no run_end event");
    assert!(
        changed.iter().all(|(_, n)| *n == 0),
        "second {scenario} setup changed something: {changed:?}"
    );
}

/// One line to `addr:port`, the echo server's answer.
fn echo(addr: &str, port: u16, line: &str) -> String {
    let target = format!("{addr}:{port}");
    let sock = target.parse().unwrap();
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("connect {target}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    writeln!(s, "{line}").unwrap();
    let mut reply = String::new();
    BufReader::new(s).read_line(&mut reply).unwrap();
    reply.trim().to_string()
}

/// The VM's address on the lab network.
fn address(tb: &Testbed, vm: &str) -> String {
    sh(
        tb,
        vm,
        "ip -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1",
    )
    .trim()
    .to_string()
}

/// What the scenarios could have left on a VM; empty when clean.
fn leftovers(tb: &Testbed, vm: &str) -> String {
    sh(
        tb,
        vm,
        r#"
ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E '^(ovo-|ovl-|tn[0-9]+-|tnleak-)' | sed 's/^/link /'
ip netns list | grep -E '^tn-' | sed 's/^/netns /'
podman ps -a --format json | jq -r '.[].Names[]' | grep -E '^(ovo-|ovl-|tn-)' | sed 's/^/container /'
podman image exists localhost/overlay-echo:1 && echo 'image localhost/overlay-echo:1'
iptables-save 2>/dev/null | grep -E -- '(OVO|OVL|TN)-' | sed 's/^/iptables /'
if systemctl is-active -q openvswitch-switch; then ovs-vsctl list-br | grep -E '^ovo-' | sed 's/^/ovs /'; fi
ip xfrm state list | grep -E 'reqid (7100|7110) ' | sed 's/^/xfrm state /'
ip xfrm policy list | grep -E 'dport (4790|4791) ' | sed 's/^/xfrm policy /'
ls -d /run/kubelab/ovo /run/kubelab/ovl /run/kubelab/tn /etc/kubelab/ovo-ipsec.psk /etc/kubelab/ovl-ipsec.psk 2>/dev/null
true
"#,
    )
}

/// On a failure, take the scenarios down anyway: the VMs are shared.
struct Teardown<'a>(&'a Testbed);

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0
                .sh("node-1", "ip link del tnleak-a 2>/dev/null; true");
            for (lab, scenario) in [(OVS, "overlay"), (OVS, "tenants"), (LINUX, "overlay")] {
                k(self.0, &["scenario", lab, scenario, "teardown"]);
            }
        }
    }
}

pub fn run(tb: &Testbed) {
    let _teardown = Teardown(tb);
    ovs_overlay_and_tenants(tb);
    linux_overlay(tb);
}

fn ovs_overlay_and_tenants(tb: &Testbed) {
    // `up` runs the setups of both scenarios; doing them again changes
    // nothing, and `plan` (check mode) has nothing to do either.
    up(tb, OVS);
    setup_changes_nothing(tb, OVS, "overlay");
    setup_changes_nothing(tb, OVS, "tenants");
    let plan = k(tb, &["plan", OVS]);
    assert!(plan.status.success());
    let text = String::from_utf8_lossy(&plan.stdout);
    let would: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("would change"))
        .collect();
    assert!(
        !would.is_empty() && would.iter().all(|l| l.contains(": 0 step(s)")),
        "plan after setup: {text}"
    );

    verify_passes(tb, OVS, "overlay");
    verify_passes(tb, OVS, "tenants");

    // The virthost is outside the overlay: each host's own address on the
    // ingress port answers from that host's container.
    for (i, vm) in VMS.iter().enumerate() {
        let addr = address(tb, vm);
        assert_eq!(
            echo(&addr, 9071, "from-virthost"),
            format!("from-virthost from ovo-c{}", i + 1),
            "ingress through {vm} ({addr})"
        );
    }

    for scenario in ["overlay", "tenants"] {
        let out = k(tb, &["--json", "chaos", OVS, scenario]);
        assert!(out.status.success(), "chaos {scenario}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"passed\":true"));
    }

    // Egress: node-3 loses its masquerade rule. Ingress: node-2 loses its
    // DNAT rule, which node-1 probes (hosts probe the next one's address).
    sh(
        tb,
        "node-3",
        "iptables -w -t nat -D OVO-POSTROUTING -s 172.23.71.0/24 ! -d 172.23.71.0/24 -j MASQUERADE",
    );
    sh(tb, "node-2", "iptables -w -t nat -F OVO-INGRESS");
    verify_fails(
        tb,
        OVS,
        "overlay",
        &[
            (
                "node-3",
                "container to an address outside the overlay, masqueraded behind the host",
                "ping 192.168.221.1 from ovo-c3: FAILED",
            ),
            (
                "node-1",
                "outside to a container port through the host's address",
                "node-1 -> node-2",
            ),
        ],
    );
    k_ok(tb, &["scenario", OVS, "overlay", "setup"]);

    // The tunnels: break deletes node-1's VXLAN ports.
    k_ok(tb, &["scenario", OVS, "overlay", "break"]);
    verify_fails(
        tb,
        OVS,
        "overlay",
        &[
            (
                "node-1",
                "a VXLAN tunnel (VNI and UDP port) to every other host",
                "MISSING tunnel to node-2",
            ),
            (
                "node-2",
                "container to container across hosts over the overlay",
                "ovo-c2 -> ovo-c1 on node-1 (172.23.71.101): ping FAILED",
            ),
            (
                "node-3",
                "container to container across hosts over the overlay",
                "ovo-c3 -> ovo-c1 on node-1 (172.23.71.101): ping FAILED",
            ),
        ],
    );
    k_ok(tb, &["scenario", OVS, "overlay", "repair"]);
    verify_passes(tb, OVS, "overlay");

    // Tenants, isolation: a veth joining blue's and red's bridges on node-1.
    sh(
        tb,
        "node-1",
        "ip link add tnleak-a type veth peer name tnleak-b \
         && ip link set tnleak-a master tn1-br up && ip link set tnleak-b master tn2-br up \
         || { ip link del tnleak-a; exit 1; }",
    );
    let isolation = "the identical address in another tenant is unreachable (ARP and TCP answered only within the tenant)";
    verify_fails(
        tb,
        OVS,
        "tenants",
        &[
            ("node-1", isolation, "FOREIGN"),
            ("node-2", isolation, "FOREIGN"),
        ],
    );
    sh(tb, "node-1", "ip link del tnleak-a");

    // Tenants, reachability: blue's VXLAN device on node-2 is gone.
    sh(tb, "node-2", "ip link del tn1-vx");
    let same =
        "same tenant reachable across hosts, the identical address answered by the same tenant";
    verify_fails(
        tb,
        OVS,
        "tenants",
        &[
            (
                "node-1",
                same,
                "tenant blue: tn-blue-1 -> 10.1.2.12: ARP answered by nobody",
            ),
            (
                "node-2",
                same,
                "tenant blue: tn-blue-2 -> 10.1.2.11: ARP answered by nobody",
            ),
        ],
    );
    k_ok(tb, &["scenario", OVS, "tenants", "setup"]);
    verify_passes(tb, OVS, "tenants");
    verify_passes(tb, OVS, "overlay");

    k_ok(tb, &["scenario", OVS, "overlay", "teardown"]);
    k_ok(tb, &["scenario", OVS, "tenants", "teardown"]);
    for vm in VMS {
        assert_eq!(leftovers(tb, vm).trim(), "", "{vm} after teardown");
    }
}

fn linux_overlay(tb: &Testbed) {
    up(tb, LINUX);
    setup_changes_nothing(tb, LINUX, "overlay");
    verify_passes(tb, LINUX, "overlay");

    let out = k(tb, &["--json", "chaos", LINUX, "overlay"]);
    assert!(out.status.success(), "chaos overlay (linux)");

    // IPsec: without the policies the tunnels carry clear text again, and
    // the check says so on every host.
    for vm in VMS {
        sh(tb, vm, "ip xfrm policy deleteall proto udp dport 4791");
    }
    let ipsec = "tunnel traffic to every other host encrypted (ESP security associations in use)";
    verify_fails(
        tb,
        LINUX,
        "overlay",
        &[
            ("node-1", ipsec, "policy out MISSING"),
            ("node-2", ipsec, "policy out MISSING"),
            ("node-3", ipsec, "policy out MISSING"),
        ],
    );
    k_ok(tb, &["scenario", LINUX, "overlay", "repair"]);
    verify_passes(tb, LINUX, "overlay");

    k_ok(tb, &["scenario", LINUX, "overlay", "teardown"]);
    for vm in VMS {
        assert_eq!(leftovers(tb, vm).trim(), "", "{vm} after teardown");
    }
}
