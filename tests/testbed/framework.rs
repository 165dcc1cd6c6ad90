//! The scenario framework on the test bed, with a stand-in scenario whose
//! playbooks come from `tests/testbed/framework/` (`--playbook-dir`): `up`
//! runs its setup, `plan` shows it unchanged, `verify` passes and writes
//! JUnit, `chaos` cycles, a broken scenario fails verify with the evidence,
//! `play --lab` reaches the VMs with the lab's variables, teardown cleans.

use super::Testbed;

const LAB: &str = "tests/labs/e2e/testbed-framework.yaml";
const DIR: &str = "tests/testbed/framework";

fn markers(tb: &Testbed) -> Vec<bool> {
    ["node-1", "node-2", "node-3"]
        .iter()
        .map(|vm| {
            tb.sh(vm, &format!("test -f /run/kl-framework-{vm}"))
                .status
                .success()
        })
        .collect()
}

/// Per VM, how many steps `plan` says would change.
fn would_change(out: &std::process::Output) -> Vec<usize> {
    assert!(out.status.success(), "plan failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let counts: Vec<usize> = text
        .lines()
        .filter_map(|l| l.split_once(": ")?.1.strip_suffix(" step(s) would change"))
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    assert_eq!(counts.len(), 3, "plan output: {text}");
    counts
}

pub fn run(tb: &Testbed) {
    let k = |args: &[&str]| {
        let mut all = vec!["--playbook-dir", DIR];
        all.extend_from_slice(args);
        tb.kubelab(&all)
    };
    assert!(k(&["up", LAB]).status.success());
    assert_eq!(
        markers(tb),
        [true, true, false],
        "setup ran on the scenario's nodes only"
    );

    assert_eq!(
        would_change(&k(&["plan", LAB])),
        [0, 0, 0],
        "plan after setup"
    );

    let junit = tempfile::NamedTempFile::new().unwrap();
    let junit_path = junit.path().to_str().unwrap();
    assert!(k(&["verify", LAB, "--junit", junit_path]).status.success());
    let xml = std::fs::read_to_string(junit.path()).unwrap();
    assert!(xml.contains("tests=\"4\" failures=\"0\""), "{xml}");

    let chaos = k(&["--json", "chaos", LAB, "ipv6-ping6"]);
    assert!(chaos.status.success());
    assert!(String::from_utf8_lossy(&chaos.stdout).contains("\"passed\":true"));

    assert!(
        k(&["scenario", LAB, "ipv6-ping6", "break"])
            .status
            .success()
    );
    let broken = k(&[
        "verify",
        LAB,
        "--scenario",
        "ipv6-ping6",
        "--junit",
        junit_path,
    ]);
    assert_eq!(
        broken.status.code(),
        Some(1),
        "verify must fail while broken"
    );
    let xml = std::fs::read_to_string(junit.path()).unwrap();
    assert!(xml.contains("failures=\"1\""), "{xml}");
    assert!(
        xml.contains("No such file or directory"),
        "evidence in JUnit: {xml}"
    );
    // the failed verify left its forensics: the run log with the failed
    // check's evidence, every VM's side
    let files = super::forensics::bundle_files(&super::forensics::printed_bundle(&broken.stderr));
    // the newest verify log: the failed run's (an earlier one passed)
    let log = files
        .iter()
        .rev()
        .find(|(k, _)| k.starts_with("kubelab/runs/") && k.ends_with("-verify.log"))
        .map(|(_, v)| v)
        .expect("the verify run's log in the bundle");
    assert!(log.contains("No such file or directory"), "{log}");
    for vm in ["node-1", "node-2", "node-3"] {
        assert!(files.contains_key(&format!("vms/{vm}/journal.txt")), "{vm}");
        assert!(files[&format!("vms/{vm}/domain.xml")].contains("kl-testbed-"));
    }

    // play --lab: the stage variables reach an ad-hoc playbook, --limit holds.
    let out = k(&[
        "play",
        &format!("{DIR}/probe.yaml"),
        "--lab",
        LAB,
        "--limit",
        "node-3",
        "--var",
        "expected=testbed",
    ]);
    assert!(out.status.success(), "play --lab");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("node-3") && !log.contains("node-1 |"), "{log}");

    assert!(
        k(&["scenario", LAB, "ipv6-ping6", "teardown"])
            .status
            .success()
    );
    assert_eq!(markers(tb), [false, false, false], "teardown left markers");

    let missing = k(&["chaos", LAB, "overlay"]);
    assert_eq!(
        missing.status.code(),
        Some(2),
        "unknown scenario is a usage error"
    );
}
