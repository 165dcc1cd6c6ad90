//! The cluster scenarios of issue 7 in their host (non-Kubernetes) modes on
//! the test bed (`tests/labs/e2e/testbed-storage.yaml`): GlusterFS on the
//! spare disks of node-1 and node-2 mounted on node-3, a buildah image run
//! by podman on node-3, ping6 between node-1 and node-2.
//!
//! `up` runs the three setups (a second setup changes nothing), every
//! verify passes, each verify fails when what it checks is broken (chaos:
//! a stopped brick, a removed container, dropped ICMPv6; and a removed
//! image), the GlusterFS data survives a real reboot of a storage node, and
//! teardown leaves the nodes as the image had them (twice: the second
//! changes nothing).

use std::time::{Duration, Instant};

use super::Testbed;

const LAB: &str = "tests/labs/e2e/testbed-storage.yaml";
const SCENARIOS: [&str; 3] = ["glusterfs", "crio-buildah", "ipv6-ping6"];

/// `kubelab --json ARGS`: its exit code and the JSON events.
fn json_run(tb: &Testbed, args: &[&str]) -> (Option<i32>, Vec<serde_json::Value>) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = tb.kubelab(&all);
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    (out.status.code(), events)
}

/// Changed steps over every host of every run in the events.
fn changed(events: &[serde_json::Value]) -> u64 {
    events
        .iter()
        .filter(|e| e["event"] == "run_end")
        .flat_map(|e| {
            e["summary"]["hosts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|h| h["changed"].as_u64().unwrap_or(0))
        .sum()
}

/// Run one phase, which must succeed; returns how many steps changed.
fn phase(tb: &Testbed, scenario: &str, phase: &str) -> u64 {
    let (code, events) = json_run(tb, &["scenario", LAB, scenario, phase]);
    assert_eq!(code, Some(0), "{scenario} {phase} failed");
    changed(&events)
}

/// `verify --scenario NAME --junit`: the exit code and the JUnit XML.
fn verify(tb: &Testbed, scenario: &str) -> (Option<i32>, String) {
    let junit = tempfile::NamedTempFile::new().unwrap();
    let path = junit.path().to_str().unwrap();
    let out = tb.kubelab(&["verify", LAB, "--scenario", scenario, "--junit", path]);
    (out.status.code(), std::fs::read_to_string(path).unwrap())
}

fn verify_passes(tb: &Testbed, scenario: &str) {
    let (code, xml) = verify(tb, scenario);
    assert_eq!(code, Some(0), "verify {scenario} must pass: {xml}");
    assert!(xml.contains("failures=\"0\""), "{xml}");
}

/// Verify fails, and the JUnit report names the failed check with evidence.
fn verify_fails(tb: &Testbed, scenario: &str, check: &str, evidence: &str) {
    let (code, xml) = verify(tb, scenario);
    assert_eq!(code, Some(1), "verify {scenario} must fail: {xml}");
    assert!(!xml.contains("failures=\"0\""), "{xml}");
    assert!(xml.contains(check), "failed check `{check}` in {xml}");
    assert!(xml.contains(evidence), "evidence `{evidence}` in {xml}");
}

fn boot_id(tb: &Testbed, vm: &str) -> Option<String> {
    let out = tb.sh(vm, "cat /proc/sys/kernel/random/boot_id");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Poll `probe` every 3 s until it returns true, at most `limit`.
fn wait_until(what: &str, limit: Duration, mut probe: impl FnMut() -> bool) {
    let start = Instant::now();
    while !probe() {
        assert!(start.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_secs(3));
    }
}

pub fn run(tb: &Testbed) {
    // up runs the three setups; a second setup of each changes nothing.
    assert!(
        tb.kubelab(&["up", LAB]).status.success(),
        "up with the storage scenarios"
    );
    for s in SCENARIOS {
        assert_eq!(
            phase(tb, s, "setup"),
            0,
            "second {s} setup changed something"
        );
    }

    // Every verify passes, all at once.
    let junit = tempfile::NamedTempFile::new().unwrap();
    let path = junit.path().to_str().unwrap();
    let out = tb.kubelab(&["verify", LAB, "--junit", path]);
    let xml = std::fs::read_to_string(path).unwrap();
    assert!(out.status.success(), "verify: {xml}");
    for s in SCENARIOS {
        assert!(xml.contains(&format!("name=\"{s}\"")), "suite {s} in {xml}");
    }
    assert!(!xml.contains("<failure"), "{xml}");

    // Each verify fails when what it checks is broken, and passes after
    // repair: `chaos` for two of them (glusterfs the same way by hand below,
    // with its evidence).
    for s in ["crio-buildah", "ipv6-ping6"] {
        let (code, events) = json_run(tb, &["chaos", LAB, s]);
        let chaos = events.iter().find(|e| e["event"] == "chaos");
        assert_eq!(code, Some(0), "chaos {s}: {chaos:?}");
        assert_eq!(chaos.unwrap()["passed"], true, "chaos {s}");
    }
    // glusterfs: a stopped brick, with glusterd's view as evidence.
    phase(tb, "glusterfs", "break");
    verify_fails(
        tb,
        "glusterfs",
        "the brick is online in glusterd",
        "is not online",
    );
    phase(tb, "glusterfs", "repair");
    verify_passes(tb, "glusterfs");
    // crio-buildah: the image removed from the node's store.
    tb.sh_ok(
        "node-3",
        "podman rm --force --time 0 kubelab-crio-demo && podman rmi localhost/kubelab/crio-demo:latest",
    );
    verify_fails(
        tb,
        "crio-buildah",
        "the image built by buildah is in the node&apos;s image store",
        "image not known",
    );
    assert!(
        phase(tb, "crio-buildah", "setup") > 0,
        "setup rebuilds the image"
    );
    verify_passes(tb, "crio-buildah");
    // ipv6-ping6: ICMPv6 echo dropped on node-2.
    phase(tb, "ipv6-ping6", "break");
    verify_fails(
        tb,
        "ipv6-ping6",
        "the other node answers ping6 on the lab&apos;s IPv6 network",
        "100% packet loss",
    );
    assert!(
        phase(tb, "ipv6-ping6", "repair") > 0,
        "repair deletes the rule"
    );
    verify_passes(tb, "ipv6-ping6");

    gluster_survives_a_reboot(tb);

    // Teardown leaves the nodes clean; a second teardown changes nothing.
    for s in SCENARIOS {
        phase(tb, s, "teardown");
        assert_eq!(
            phase(tb, s, "teardown"),
            0,
            "second {s} teardown changed something"
        );
    }
    for vm in ["node-1", "node-2"] {
        let state = tb.sh_ok(
            vm,
            "echo signatures=$(wipefs --noheadings /dev/vdb | wc -l); \
             echo mounted=$(findmnt -n /srv/kubelab-gluster | wc -l); \
             echo fstab=$(grep -c kubelab /etc/fstab); \
             echo volumes=$(ls -A /var/lib/glusterd/vols | wc -l) peers=$(ls -A /var/lib/glusterd/peers | wc -l); \
             echo glusterd=$(systemctl is-active glusterd),$(systemctl is-enabled glusterd); \
             echo rules=$(ip6tables -S INPUT | grep -c kubelab-ipv6-ping6); true",
        );
        assert_eq!(
            state.split_whitespace().collect::<Vec<_>>(),
            [
                "signatures=0",
                "mounted=0",
                "fstab=0",
                "volumes=0",
                "peers=0",
                "glusterd=inactive,disabled",
                "rules=0"
            ],
            "{vm} after teardown"
        );
    }
    let state = tb.sh_ok(
        "node-3",
        "echo mounted=$(findmnt -n /mnt/kubelab-gluster | wc -l) fstab=$(grep -c kubelab /etc/fstab); \
         echo containers=$(podman ps -a --filter label=io.kubelab.scenario=crio-buildah -q | wc -l); \
         echo images=$(podman images -q --filter label=io.kubelab.scenario=crio-buildah | wc -l); \
         echo context=$(ls -d /var/lib/kubelab-crio-buildah 2>/dev/null | wc -l); true",
    );
    assert_eq!(
        state.split_whitespace().collect::<Vec<_>>(),
        [
            "mounted=0",
            "fstab=0",
            "containers=0",
            "images=0",
            "context=0"
        ],
        "node-3 after teardown"
    );
}

/// node-2 (a storage node) reboots for real: the client keeps reading and
/// writing through node-1's brick while it is down; once it is back, its
/// brick is online again (fstab, glusterd at boot), self-heal brings it
/// the file written meanwhile, and verify passes.
fn gluster_survives_a_reboot(tb: &Testbed) {
    let before = boot_id(tb, "node-2").expect("boot id of node-2");
    tb.sh_ok("node-2", "systemd-run --on-active=2 systemctl reboot");
    wait_until("node-2 goes down", Duration::from_secs(120), || {
        boot_id(tb, "node-2").is_none_or(|id| id != before)
    });
    let during = tb.sh_ok(
        "node-3",
        "cat /mnt/kubelab-gluster/kubelab-data.txt && \
         echo written while node-2 reboots > /mnt/kubelab-gluster/kubelab-outage.txt && \
         cat /mnt/kubelab-gluster/kubelab-outage.txt",
    );
    assert_eq!(
        during,
        "kubelab glusterfs: written at setup to volume kubelab-testbed\n\
         written while node-2 reboots\n"
    );
    wait_until("node-2 is back", Duration::from_secs(600), || {
        boot_id(tb, "node-2").is_some_and(|id| id != before)
    });
    // Nothing is repaired by hand: the brick comes back by itself (fstab,
    // glusterd enabled), in a bounded time.
    wait_until(
        "node-2's brick online again",
        Duration::from_secs(600),
        || {
            let out = tb.sh(
                "node-1",
                "gluster volume status kubelab-testbed detail | grep -c '^Online *: Y'",
            );
            String::from_utf8_lossy(&out.stdout).trim() == "2"
        },
    );
    verify_passes(tb, "glusterfs");
    let healed = tb.sh_ok(
        "node-2",
        "cat /srv/kubelab-gluster/brick/kubelab-outage.txt",
    );
    assert_eq!(healed, "written while node-2 reboots\n");
    tb.sh_ok("node-3", "rm /mnt/kubelab-gluster/kubelab-outage.txt");
}
