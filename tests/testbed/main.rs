//! The shared test bed: the lab of `tests/labs/e2e/testbed.yaml` (three
//! Debian VMs under QEMU/TCG on a real libvirtd, NAT IPv4 + IPv6, a spare
//! disk each, every scenario package in the base image) brought up ONCE with
//! the real binary; then every area runs on it in turn — Kubernetes node
//! preparation and runtimes, networking scenarios, cluster scenarios — and
//! the lab goes down at the end. One lab for all areas keeps CI's VM boots
//! to one round.
//!
//! Each area is a module with `pub fn run(tb: &Testbed)` that panics on
//! failure; an area's failure does not stop the others, the test fails with
//! the list at the end.
//!
//! For development:
//! - `KUBELAB_TESTBED_AREAS=network,cluster` runs only those areas;
//! - `KUBELAB_TESTBED_KEEP=1` leaves the lab up afterwards, and reuses one
//!   left up (its `up` then changes nothing and takes seconds). Without it
//!   a run takes down whatever test bed an earlier run left (kept, or
//!   killed before its end) and starts from fresh VMs.
//!
//! Needs root and `scripts/deps.sh test`. About 5 minutes for the first boot
//! on 2 cores with a cached base image (the first image build takes longer).

#[path = "../support/browser.rs"]
mod browser;
#[path = "../support/bundle_sources.rs"]
mod bundle_sources;
#[path = "../support/file_server.rs"]
mod file_server;
#[path = "../support/forensics.rs"]
mod forensics;
#[path = "../support/libvirt.rs"]
mod support;

mod cluster;
mod framework;
mod links;
mod operate;
mod overlay;
mod storage;
mod verify;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KUBELAB: &str = env!("CARGO_BIN_EXE_kubelab");

/// An area: its name and what it runs on the test bed.
type Area = (&'static str, fn(&Testbed));

/// The areas, in the order they run.
const AREAS: &[Area] = &[
    ("lab", lab_area),
    ("operate", operate::run),
    ("framework", framework::run),
    ("links", links::run),
    ("storage", storage::run),
    ("overlay", overlay::run),
    ("cluster", cluster::run),
];

/// The running test bed and ways to drive it.
pub struct Testbed {
    pub lab: PathBuf,
    pub state: PathBuf,
}

impl Testbed {
    /// Run `kubelab ARGS` with the test bed's state directory; output echoed
    /// to the test log.
    pub fn kubelab(&self, args: &[&str]) -> Output {
        self.kubelab_in(&support::repo(), args)
    }

    /// Same, from another working directory.
    pub fn kubelab_in(&self, dir: &Path, args: &[&str]) -> Output {
        let out = Command::new(KUBELAB)
            .current_dir(dir)
            .env("KUBELAB_STATE_DIR", &self.state)
            .args(args)
            .output()
            .expect("run kubelab");
        eprintln!(
            "[kubelab {}] {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `kubelab ARGS` on the test bed lab file, which must succeed.
    pub fn kubelab_ok(&self, args: &[&str]) -> String {
        let out = self.kubelab(args);
        assert!(out.status.success(), "kubelab {} failed", args.join(" "));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The lab file's path as an argument.
    pub fn lab_arg(&self) -> &str {
        self.lab.to_str().expect("UTF-8 path")
    }

    /// Run a shell script as root on a VM (through the virthost, natively):
    /// the whole output.
    pub fn sh(&self, vm: &str, script: &str) -> Output {
        let wrapped = format!("sudo sh -c {}", shell_quote(script));
        self.kubelab(&["ssh", self.lab_arg(), vm, "--", &wrapped])
    }

    /// Like [`Testbed::sh`], which must exit 0: its stdout.
    pub fn sh_ok(&self, vm: &str, script: &str) -> String {
        let out = self.sh(vm, script);
        assert!(out.status.success(), "on {vm}: `{script}` failed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Per host, the steps a `--json` playbook run reported changed (from its
/// `run_end` events).
pub fn changed_per_host(out: &Output) -> Vec<(String, u64)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "run_end")
        .flat_map(|v| {
            v["summary"]["hosts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|h| {
            (
                h["host"].as_str().unwrap_or("").to_string(),
                h["changed"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

/// Single-quote a string for sh.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The first event of `kind` a `--json` run printed.
pub fn json_event(out: &Output, kind: &str) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event"))
}

const VMS: [&str; 3] = ["node-1", "node-2", "node-3"];

/// The lab itself: a second `up` changes nothing, `plan` is empty, every VM
/// answers with its spare disk; `up`'s HTML report and a failing run's, as
/// Chromium renders them, with the lab's topology; `graph --live`.
fn lab_area(tb: &Testbed) {
    let out = tb.kubelab(&["--json", "up", tb.lab_arg()]);
    assert!(out.status.success());
    let up = json_event(&out, "up");
    assert_eq!(up["changes"], 0, "second up changed something: {up}");
    for vm in VMS {
        let lsblk = tb.sh_ok(vm, "lsblk -dn -o NAME");
        assert!(lsblk.lines().any(|l| l.trim() == "vdb"), "{vm}: {lsblk}");
    }

    // up's report: passed, the topology with every VM, a lane per host.
    let page = PathBuf::from(json_event(&out, "report")["path"].as_str().unwrap());
    let (dom, log) = browser::render(&page, &browser::artifacts().join("testbed-up.png"));
    assert!(dom.contains("id=\"result\">passed<"), "{}", page.display());
    for host in VMS.iter().chain(&["virthost"]) {
        assert!(
            dom.contains(&format!("data-host=\"{host}\"")),
            "no lane for {host}"
        );
    }
    for vm in VMS {
        assert!(
            dom.contains(&format!("class=\"vm\" data-name=\"{vm}\"")),
            "{vm} not drawn"
        );
    }
    assert!(!log.contains("CONSOLE("), "{log}");

    // A run that fails on one VM: its report opens that step.
    let dir = tempfile::tempdir().unwrap();
    let playbook = dir.path().join("probe.yaml");
    std::fs::write(
        &playbook,
        "- name: probe\n  hosts: all\n  steps:\n    - name: every VM but node-2\n      shell: \"echo on $(hostname); test {{ inventory_hostname | quote }} != node-2\"\n      changed_when: false\n",
    )
    .unwrap();
    let report = dir.path().join("failed.html");
    let failed = tb.kubelab(&[
        "--report",
        report.to_str().unwrap(),
        "play",
        playbook.to_str().unwrap(),
        "--lab",
        tb.lab_arg(),
    ]);
    assert_eq!(failed.status.code(), Some(1));
    let (dom, _) = browser::render(&report, &browser::artifacts().join("testbed-failed.png"));
    assert!(dom.contains("id=\"result\">failed<"));
    assert!(dom.contains("class=\"bar s-failed\" data-host=\"node-2\" data-play=\"probe\""));
    let open = dom
        .find("<details class=\"play failed\" open=\"\">")
        .expect("failed play open");
    assert!(
        dom[open..].contains("on node-2"),
        "the failed step's output"
    );
    assert!(
        dom.contains("class=\"vm\" data-name=\"node-3\""),
        "no topology"
    );

    // graph --live: every VM running, with its addresses.
    let live = tb.kubelab_ok(&["graph", tb.lab_arg(), "--live", "--format", "dot"]);
    for vm in VMS {
        assert!(live.contains(&format!("{vm}\\n")), "{vm} not in the graph");
    }
    assert_eq!(live.matches("[running]").count(), 3, "{live}");
}

/// Take the lab down at the end unless asked to keep it.
struct Down<'a>(&'a Testbed);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if std::env::var_os("KUBELAB_TESTBED_KEEP").is_some() {
            eprintln!("[testbed] KUBELAB_TESTBED_KEEP: the lab stays up");
            return;
        }
        // a lab snapshot goes with the lab: no metadata, no disks left
        let panicking = std::thread::panicking();
        let saved = self
            .0
            .kubelab(&["snapshot", self.0.lab_arg(), "save", "at-down"]);
        let out = self.0.kubelab(&["down", self.0.lab_arg()]);
        if panicking {
            return;
        }
        assert!(saved.status.success(), "snapshot before down failed");
        assert!(out.status.success(), "kubelab down failed");
        for vm in VMS {
            assert!(operate::no_snapshot_left(vm), "{vm} after down");
        }
        assert!(
            !std::path::Path::new("/var/cache/kubelab-test/testbed").exists(),
            "the lab's pool directory is left after down"
        );
    }
}

#[test]
fn testbed() {
    support::require_root();
    support::libvirt_ready();
    let tb = Testbed {
        lab: support::repo().join("tests/labs/e2e/testbed.yaml"),
        state: support::cache_dir().join("state"),
    };
    let only: Option<Vec<String>> = std::env::var("KUBELAB_TESTBED_AREAS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    if std::env::var_os("KUBELAB_TESTBED_KEEP").is_none() {
        // A test bed left by a run that was kept or killed (its disks hold
        // that run's packages, images and files) would carry its state
        // into these areas: this run starts from fresh VMs.
        tb.kubelab_ok(&["down", tb.lab_arg()]);
        let _ = std::fs::remove_dir_all(support::cache_dir().join("testbed"));
    }
    let _down = Down(&tb);
    tb.kubelab_ok(&["up", tb.lab_arg()]);
    let mut failed = Vec::new();
    for (name, area) in AREAS {
        if only.as_ref().is_some_and(|o| !o.iter().any(|a| a == name)) {
            continue;
        }
        eprintln!("[testbed] === area {name}");
        let t0 = std::time::Instant::now();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| area(&tb))).is_err() {
            failed.push(*name);
        }
        eprintln!(
            "[testbed] === area {name}: {} in {:.0}s",
            if failed.last() == Some(name) {
                "FAILED"
            } else {
                "ok"
            },
            t0.elapsed().as_secs_f64()
        );
    }
    assert!(failed.is_empty(), "test-bed areas failed: {failed:?}");
}
