//! `kubelab up` / `down` end to end with the real binary, a real libvirtd and
//! QEMU (TCG) guests: the lab of `tests/labs/e2e/lab.yaml` (3 VMs, NAT IPv4 +
//! IPv6, a static address, a spare disk) next to FOREIGN objects on the same
//! libvirtd; a lab whose image cannot boot; and a 1-VM lab on a REMOTE
//! virthost (its own network and mount namespaces, its own libvirtd, reached
//! over SSH only: libvirt through kubelab's SSH connection, the VM through
//! the virthost as jump host).
//!
//! Needs root and `scripts/deps.sh test`; skipped (with a message) otherwise.
//! About 3-5 minutes on 2 cores with a cached base image.

#[path = "support/forensics.rs"]
mod forensics;
#[path = "support/netns_virthost.rs"]
mod netns_virthost;
#[path = "support/libvirt.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kubelab::virthost::libvirt::Connection;
use kubelab::virthost::spec::LabName;
use support::{Foreign, define_foreign, remove_foreign, virsh_ok};

const URI: &str = "qemu:///system";
const KUBELAB: &str = env!("CARGO_BIN_EXE_kubelab");

fn lab_file() -> PathBuf {
    support::repo().join("tests/labs/e2e/lab.yaml")
}

fn kubelab(state: &Path, args: &[&str]) -> Output {
    let out = Command::new(KUBELAB)
        .env("KUBELAB_STATE_DIR", state)
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

/// The last JSON event of a `--json` run with `event == name`.
fn event(out: &Output, name: &str) -> serde_json::Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == name)
        .unwrap_or_else(|| {
            panic!(
                "no {name} event in {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
}

/// `kubelab down` and removal of the foreign objects, even when the test panics.
struct Cleanup {
    lab: PathBuf,
    state: PathBuf,
    foreign: Option<Foreign>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new(KUBELAB)
            .env("KUBELAB_STATE_DIR", &self.state)
            .arg("down")
            .arg(&self.lab)
            .output();
        if let Some(f) = &self.foreign {
            remove_foreign(f);
        }
    }
}

/// Nothing of the lab left: no libvirt object, no pool directory, no
/// dnsmasq file of its network `lan` (matched by the network's full name:
/// another lab's names may share the lab's prefix, `kl-e2e-` of
/// `kl-e2e-noboot-lan`, and that lab runs at the same time).
fn lab_is_gone(lab: &LabName, pool_dir: &Path) {
    let c = Connection::open(URI).unwrap();
    let left = c.lab_objects(lab).unwrap();
    assert!(left.is_empty(), "left after down: {left:?}");
    assert!(!pool_dir.exists(), "{} left after down", pool_dir.display());
    let dnsmasq: Vec<String> = std::fs::read_dir("/var/lib/libvirt/dnsmasq")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{}.", lab.object_name("lan"))))
                .collect()
        })
        .unwrap_or_default();
    assert!(dnsmasq.is_empty(), "dnsmasq files left: {dnsmasq:?}");
}

/// An `up` run's log: the engine's log format (timestamped lines, each
/// step's message), the virthost's and the VMs' phases, no key material.
fn check_up_log(log: &str, vm: &str) {
    assert!(log.contains("=== play virthost"), "{log}");
    assert!(log.contains("=== play vms"), "{log}");
    assert!(log.contains(&format!("] {vm} | addresses [up]")), "{log}");
    assert!(
        log.contains(&format!("] {vm} | SSH with the pinned host key [up]")),
        "{log}"
    );
    assert!(log.contains("] virthost | plan [up]"), "{log}");
    assert!(
        log.lines()
            .filter(|l| l.starts_with('['))
            .all(|l| l.as_bytes().get(3) == Some(&b':') && l.as_bytes().get(9) == Some(&b']')),
        "{log}"
    );
    assert!(!log.contains("PRIVATE KEY"), "{log}");
}

fn ssh_config_run(state: &Path, vm: &str, cmd: &str) -> String {
    let out = Command::new("ssh")
        .arg("-F")
        .arg(state.join("ssh_config"))
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=20"])
        .arg(vm)
        .arg(cmd)
        .output()
        .expect("ssh");
    assert!(
        out.status.success(),
        "ssh -F ssh_config {vm} {cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn up_reaches_every_vm_and_down_removes_exactly_the_lab() {
    support::require_root();
    support::libvirt_ready();
    support::base_image();
    let lab_path = lab_file();
    let lab = lab_path.to_str().unwrap();
    let name = LabName::new("e2e").unwrap();
    let pool_dir = PathBuf::from("/var/cache/kubelab-test/e2e");
    let work = tempfile::tempdir().unwrap();
    let state_parent = work.path().join("state");
    let state = state_parent.join("e2e");
    let mut cleanup = Cleanup {
        lab: lab_path.clone(),
        state: state_parent.clone(),
        foreign: None,
    };
    // a leftover of an interrupted run would make the first up change less
    kubelab(&state_parent, &["down", lab]);
    cleanup.foreign = Some(define_foreign(&name, "e2e", work.path()));

    // ---- up -------------------------------------------------------------------------
    let t0 = Instant::now();
    // bounded, with room for a machine that other jobs load (TCG guests)
    let up_out = kubelab(&state_parent, &["--json", "up", "--timeout", "480", lab]);
    assert!(up_out.status.success(), "up failed");
    let up = event(&up_out, "up");
    eprintln!(
        "[e2e] up: {:.1}s in all, boot to SSH of all 3 VMs {:.1}s",
        t0.elapsed().as_secs_f64(),
        up["boot_to_ssh_secs"].as_f64().unwrap_or(-1.0)
    );
    assert!(up["changes"].as_u64().unwrap() >= 12, "{up}");
    assert_eq!(up["domain_type"], "qemu", "auto must pick qemu here: {up}");
    // healthy boots are not taken for panics or boot loops
    assert_eq!(up["restarted"], serde_json::json!([]), "{up}");
    assert_eq!(
        up["phases"],
        serde_json::json!([
            "connect",
            "place",
            "prepare",
            "plan",
            "apply lab objects",
            "start VMs",
            "addresses",
            "write state",
            "SSH"
        ]),
        "{up}"
    );
    assert!(
        !String::from_utf8_lossy(&up_out.stdout).contains("vm_restarted"),
        "a VM was restarted"
    );
    // the base image's kernel skips the timer check a starved vCPU fails
    let cmdline = ssh_config_run(&state, "web-1", "cat /proc/cmdline");
    assert!(cmdline.contains(" no_timer_check"), "{cmdline}");

    // every VM by kubelab's own ssh, and by ssh -F ssh_config
    for vm in ["web-1", "web-2", "db"] {
        let out = kubelab(&state_parent, &["ssh", lab, vm, "--", "hostname"]);
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), vm);
        let addrs = ssh_config_run(&state, vm, "ip -o addr show dev eth0");
        assert!(addrs.contains("inet 192.168.213."), "{vm}: {addrs}");
        assert!(addrs.contains("inet6 fd42:6b6c:d5:"), "{vm}: {addrs}");
    }
    // exit codes are relayed
    let out = kubelab(&state_parent, &["ssh", lab, "web-1", "--", "exit", "7"]);
    assert_eq!(out.status.code(), Some(7));
    // the static address and the spare disk
    let out = kubelab(
        &state_parent,
        &[
            "ssh",
            lab,
            "db",
            "--",
            "test -b /dev/vdb && ip -o -4 addr show dev eth0",
        ],
    );
    assert!(out.status.success(), "no /dev/vdb on db");
    assert!(String::from_utf8_lossy(&out.stdout).contains("192.168.213.50/24"));
    let out = kubelab(
        &state_parent,
        &["ssh", lab, "web-1", "--", "test -b /dev/vdb"],
    );
    assert_eq!(out.status.code(), Some(1), "web-1 has no spare disk");

    // state directory
    let ini = std::fs::read_to_string(state.join("inventory.ini")).unwrap();
    assert!(ini.contains("[storage]\ndb\n"), "{ini}");
    assert!(ini.contains("[worker]\nweb-1\nweb-2\n"), "{ini}");
    assert!(ini.contains("db ansible_host=192.168.213.50\n"), "{ini}");
    let cfg = std::fs::read_to_string(state.join("ssh_config")).unwrap();
    assert!(cfg.contains("Host db 192.168.213.50\n"), "{cfg}");
    assert!(cfg.contains("StrictHostKeyChecking yes"), "{cfg}");
    let known = std::fs::read_to_string(state.join("known_hosts")).unwrap();
    assert_eq!(known.lines().count(), 6, "{known}");
    let mode = std::fs::metadata(state.join("id_ed25519"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // secrets are never logged
    assert!(!String::from_utf8_lossy(&up_out.stdout).contains("PRIVATE KEY"));
    assert!(!String::from_utf8_lossy(&up_out.stderr).contains("PRIVATE KEY"));
    // The run's log: every progress line, timestamped, no key material.
    let logs: Vec<_> = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-up.log"))
        .collect();
    assert!(!logs.is_empty(), "no up log in {}", state.display());
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    check_up_log(&log, "web-1");

    // ---- a second up changes nothing -------------------------------------------------
    let out = kubelab(&state_parent, &["--json", "up", lab]);
    assert!(out.status.success());
    assert_eq!(event(&out, "up")["changes"], 0);
    let out = kubelab(&state_parent, &["up", lab]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("lab e2e: 0 changes"));

    // ---- status ------------------------------------------------------------------------
    let out = kubelab(&state_parent, &["status", "--json", lab]);
    assert!(out.status.success());
    let st = event(&out, "status");
    let vms = st["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 3);
    assert!(vms.iter().all(|v| v["state"] == "running"), "{st}");

    // ---- a changed lab shows in plan: running VMs need a restart ----------------------
    let changed = work.path().join("e2e-more-memory.yaml");
    std::fs::write(
        &changed,
        std::fs::read_to_string(&lab_path)
            .unwrap()
            .replace("memory: 640MiB", "memory: 700MiB"),
    )
    .unwrap();
    let out = kubelab(
        &state_parent,
        &["--json", "plan", changed.to_str().unwrap()],
    );
    let plan = event(&out, "plan");
    assert_eq!(plan["changes"], 3, "{plan}");
    assert!(
        plan["actions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["action"] == "restart-needed"),
        "{plan}"
    );

    // ---- down: exactly the lab --------------------------------------------------------
    let out = kubelab(&state_parent, &["--json", "down", lab]);
    assert!(out.status.success());
    let down = event(&out, "down");
    assert_eq!(down["domains"].as_array().unwrap().len(), 3, "{down}");
    lab_is_gone(&name, &pool_dir);
    for f in [
        "inventory.yaml",
        "inventory.ini",
        "ssh_config",
        "known_hosts",
    ] {
        assert!(!state.join(f).exists(), "{f} left after down");
    }
    let f = cleanup.foreign.as_ref().unwrap();
    virsh_ok(&["dominfo", &f.domain]);
    virsh_ok(&["net-info", &f.network]);
    virsh_ok(&["vol-info", "--pool", &f.pool, &f.volume]);

    // down of a lab that is not there: says so, exit 0
    let out = kubelab(&state_parent, &["--json", "down", lab]);
    assert!(out.status.success());
    assert_eq!(event(&out, "down")["was_absent"], true);
}

#[test]
fn vm_that_never_boots_fails_in_time_with_console_and_down_cleans() {
    support::require_root();
    support::libvirt_ready();
    let work = tempfile::tempdir().unwrap();
    // a blank disk as the base image: no boot loader, the VM never gets an address
    let blank = work.path().join("blank.qcow2");
    let st = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&blank)
        .arg("64M")
        .status()
        .unwrap();
    assert!(st.success());
    let sum = Command::new("sha256sum").arg(&blank).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let lab_path = work.path().join("noboot.yaml");
    std::fs::write(
        &lab_path,
        format!(
            "name: e2e-noboot\nvirthost: {{local: true, domain_type: qemu, tcg_cache: 64MiB, storage_dir: /var/cache/kubelab-test}}\n\
             image: {{url: \"file://{}\", sha256: {sum}, user: kubelab}}\n\
             networks:\n  - {{name: lan, kind: nat, ipv4: 192.168.214.0/24}}\n\
             vms:\n  - {{name: dud, cpus: 1, memory: 256MiB, disk: 1GiB}}\n",
            blank.display()
        ),
    )
    .unwrap();
    let lab = lab_path.to_str().unwrap();
    let state_parent = work.path().join("state");
    let name = LabName::new("e2e-noboot").unwrap();
    let mut cleanup = Cleanup {
        lab: lab_path.clone(),
        state: state_parent.clone(),
        foreign: None,
    };
    cleanup.foreign = Some(define_foreign(&name, "noboot", work.path()));
    let t0 = Instant::now();
    // a lease of one second: expired when up gives up
    let out = kubelab(
        &state_parent,
        &["up", "--timeout", "40", "--ttl", "1s", lab],
    );
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dud: no addresses in time"), "{err}");
    assert!(err.contains("serial console (tail)"), "{err}");
    assert!(err.contains("wrote nothing to its serial console"), "{err}");
    assert!(err.contains("kubelab down"), "{err}");
    assert!(took < Duration::from_secs(40 + 90), "up took {took:?}");
    // its forensics: the console (empty) and the definition from the
    // virthost; nothing over SSH (no address), and MISSING.txt says why
    let bundle = forensics::printed_bundle(&out.stderr);
    assert!(
        bundle.starts_with(state_parent.join("e2e-noboot/forensics")),
        "{}",
        bundle.display()
    );
    let files = forensics::bundle_files(&bundle);
    assert!(files["vms/dud/domain.xml"].contains("<name>kl-e2e-noboot-dud</name>"));
    assert!(files.contains_key("vms/dud/qemu.log"), "{:?}", files.keys());
    assert!(files["networks/lan.xml"].contains("kl-e2e-noboot-lan"));
    assert!(files["lab/noboot.yaml"].contains("name: e2e-noboot"));
    assert!(
        files
            .keys()
            .any(|k| k.starts_with("kubelab/runs/") && k.ends_with("-up.log")),
        "{:?}",
        files.keys()
    );
    let missing = &files["MISSING.txt"];
    assert!(missing.contains("vms/dud/ over SSH: "), "{missing}");
    assert!(
        missing.contains("vms/dud/console.log"),
        "an empty console: {missing}"
    );
    // the report names the bundle
    let report = std::fs::read_dir(state_parent.join("e2e-noboot/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "html"))
        .expect("up's report");
    let html = std::fs::read_to_string(report).unwrap();
    assert!(
        html.contains(&format!("<b>forensics</b>{}", bundle.display())),
        "the report does not name the bundle"
    );
    // the lab is left in place for down
    let c = Connection::open(URI).unwrap();
    assert_eq!(c.lab_objects(&name).unwrap().domains.len(), 1);

    // ---- ls: the lab and its lease, from libvirt alone -----------------------------
    let out = kubelab(&state_parent, &["--json", "ls"]);
    assert!(out.status.success(), "ls failed");
    let ls = event(&out, "ls");
    let listed = |ls: &serde_json::Value| {
        ls["labs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["lab"] == "e2e-noboot")
            .cloned()
    };
    let me = listed(&ls).expect("e2e-noboot listed");
    assert_eq!(
        (me["vms"].as_u64(), me["networks"].as_u64()),
        (Some(1), Some(1)),
        "{me}"
    );
    assert_eq!(me["memory_mib"], 256, "{me}");
    assert!(me["disk_bytes"].as_u64().unwrap() > 0, "{me}");
    let lease = &me["lease"];
    assert!(lease["owner"].as_str().unwrap().contains('@'), "{me}");
    assert_eq!(
        lease["expires"].as_u64().unwrap(),
        lease["created"].as_u64().unwrap() + 1,
        "{me}"
    );
    let text = kubelab(&state_parent, &["ls"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("EXPIRED"));

    // ---- reap: not while a run holds the lab's lock, then exactly the lab ----------
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open("/var/cache/kubelab-test/e2e-noboot.lock")
        .unwrap();
    lock.lock().unwrap();
    let out = kubelab(&state_parent, &["--json", "reap"]);
    assert!(out.status.success(), "reap failed");
    let reaped = |out: &Output| {
        event(out, "reap")["labs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["lab"] == "e2e-noboot")
            .cloned()
            .expect("e2e-noboot in reap's answer")
    };
    assert_eq!(reaped(&out)["outcome"], "locked");
    assert_eq!(
        c.lab_objects(&name).unwrap().domains.len(),
        1,
        "reaped while locked"
    );
    let out = kubelab(&state_parent, &["--json", "reap", "--dry-run"]);
    assert_eq!(reaped(&out)["outcome"], "locked");
    lock.unlock().unwrap();
    let out = kubelab(&state_parent, &["--json", "reap", "--dry-run"]);
    assert_eq!(reaped(&out)["outcome"], "would-remove");
    assert_eq!(
        c.lab_objects(&name).unwrap().domains.len(),
        1,
        "dry run removed"
    );
    // reap needs no state directory (a CI job's workspace is long gone)
    std::fs::remove_dir_all(state_parent.join("e2e-noboot")).unwrap();
    let out = kubelab(&state_parent, &["--json", "reap"]);
    assert!(out.status.success(), "reap failed");
    let r = reaped(&out);
    assert_eq!(r["outcome"], "removed", "{r}");
    assert!(r["why"].as_str().unwrap().starts_with("expired "), "{r}");
    assert_eq!(r["removed"]["domains"].as_array().unwrap().len(), 1, "{r}");
    lab_is_gone(&name, Path::new("/var/cache/kubelab-test/e2e-noboot"));
    // labs that are not due stay (those of the tests running beside this
    // one have no expiry), and so do the neighbours that are not the lab's
    assert!(
        event(&out, "reap")["labs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["lab"] == "e2e-noboot" || l["outcome"] == "kept"),
        "{}",
        event(&out, "reap")
    );
    let f = cleanup.foreign.as_ref().unwrap();
    virsh_ok(&["dominfo", &f.domain]);
    virsh_ok(&["net-info", &f.network]);
    virsh_ok(&["vol-info", "--pool", &f.pool, &f.volume]);
    assert!(listed(&event(&kubelab(&state_parent, &["--json", "ls"]), "ls")).is_none());

    // down after reap: nothing left of it
    let out = kubelab(&state_parent, &["--json", "down", lab]);
    assert!(out.status.success());
    assert_eq!(event(&out, "down")["was_absent"], true);
}

/// A file removed when this goes out of scope, even when the test panics.
struct RemoveFile(PathBuf);

impl Drop for RemoveFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs a command; the test fails with its output if it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of the test bed's base image whose kernel panics at every boot,
/// in `dir`: its syslinux command line (FAT partition 1) gets
/// `rdinit=/nonexistent`: the kernel finds no such init in the initramfs,
/// mounts the root file system itself, cannot (`root=LABEL=` needs the
/// initramfs) and panics, and `panic=0` keeps it halted there. (`init=`
/// would not do: the initramfs falls back to /sbin/init.)
fn panicking_image(dir: &Path) -> PathBuf {
    let raw = dir.join("panic.raw");
    run(Command::new("qemu-img")
        .args(["convert", "-q", "-O", "raw"])
        .arg(support::base_image())
        .arg(&raw));
    let table: serde_json::Value =
        serde_json::from_str(&run(Command::new("sfdisk").arg("-J").arg(&raw))).unwrap();
    let sector = table["partitiontable"]["sectorsize"]
        .as_u64()
        .unwrap_or(512);
    let start = table["partitiontable"]["partitions"][0]["start"]
        .as_u64()
        .expect("partition 1 in the base image");
    let fat = format!("{}@@{}", raw.display(), start * sector);
    let mtools = |args: &[&str]| {
        run(Command::new(args[0])
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(&args[1..]))
    };
    let cfg = mtools(&["mtype", "-i", &fat, "::/syslinux.cfg"]);
    assert!(cfg.contains("  APPEND root="), "{cfg}");
    let panicking: String = cfg
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("APPEND ") {
                format!("{l} rdinit=/nonexistent panic=0\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let cfg_path = dir.join("syslinux.cfg");
    std::fs::write(&cfg_path, &panicking).unwrap();
    mtools(&[
        "mcopy",
        "-o",
        "-i",
        &fat,
        cfg_path.to_str().unwrap(),
        "::/syslinux.cfg",
    ]);
    assert_eq!(mtools(&["mtype", "-i", &fat, "::/syslinux.cfg"]), panicking);
    let image = dir.join("panic.qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&image));
    std::fs::remove_file(&raw).unwrap();
    image
}

#[test]
fn vm_that_panics_at_boot_is_restarted_once_then_fails_fast() {
    support::require_root();
    support::libvirt_ready();
    let work = tempfile::tempdir().unwrap();
    let image = panicking_image(work.path());
    let sum = run(Command::new("sha256sum").arg(&image));
    let sum = sum.split_whitespace().next().unwrap();
    let lab_path = work.path().join("panic.yaml");
    std::fs::write(
        &lab_path,
        format!(
            "name: e2e-panic\nvirthost: {{local: true, domain_type: qemu, tcg_cache: 64MiB, storage_dir: /var/cache/kubelab-test}}\n\
             image: {{url: \"file://{}\", sha256: {sum}, user: kubelab}}\n\
             networks:\n  - {{name: lan, kind: nat, ipv4: 192.168.216.0/24}}\n\
             vms:\n  - {{name: panicky, cpus: 1, memory: 384MiB, disk: 4GiB}}\n",
            image.display()
        ),
    )
    .unwrap();
    let lab = lab_path.to_str().unwrap();
    let state_parent = work.path().join("state");
    // up caches the image by checksum, a new one every run (mcopy stamps
    // the file's time): removed after the lab (drop order)
    let _cached = RemoveFile(PathBuf::from(format!(
        "/var/cache/kubelab-test/images/{sum}.img"
    )));
    let _cleanup = Cleanup {
        lab: lab_path.clone(),
        state: state_parent.clone(),
        foreign: None,
    };
    // generous: a loaded machine boots TCG guests slowly; failing fast means
    // a small part of it
    let timeout = Duration::from_secs(900);
    let t0 = Instant::now();
    let out = kubelab(
        &state_parent,
        &[
            "--json",
            "up",
            "--timeout",
            &timeout.as_secs().to_string(),
            lab,
        ],
    );
    let took = t0.elapsed();
    eprintln!("[e2e-panic] up failed after {:.1}s", took.as_secs_f64());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "panicky: kernel panic at boot again after a restart (restarted once after a kernel panic; not waiting for the timeout): Kernel panic - not syncing: VFS: Unable to mount root fs"
        ),
        "{err}"
    );
    assert!(err.contains("serial console (tail):"), "{err}");
    assert!(err.contains("kubelab down"), "{err}");
    // the second panic failed the VM at once: nowhere near the timeout
    // (about 25 s on an idle machine, 2 minutes on a loaded one)
    assert!(took < timeout / 3, "up took {took:?}");

    // restarted exactly once, said as an event and in the run log
    let stdout = String::from_utf8_lossy(&out.stdout);
    let restarts: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "vm_restarted")
        .collect();
    assert_eq!(restarts.len(), 1, "{stdout}");
    assert_eq!(restarts[0]["vm"], "panicky", "{stdout}");
    assert_eq!(restarts[0]["reason"], "kernel panic", "{stdout}");
    assert!(
        restarts[0]["detail"].as_str().is_some_and(
            |d| d.starts_with("Kernel panic - not syncing: VFS: Unable to mount root fs")
        ),
        "{stdout}"
    );
    assert_eq!(event(&out, "error")["exit_code"], 1, "{stdout}");
    let runs = state_parent.join("e2e-panic").join("runs");
    let log: String = std::fs::read_dir(&runs)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with("-up.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        log.contains("] panicky | restarted after a kernel panic: Kernel panic - not syncing"),
        "{log}"
    );
    assert!(log.contains("FAILED panicky | addresses"), "{log}");

    // the console log holds the boot after the restart only: the restart
    // started it anew, so the second panic was not the first one read again
    let console = std::fs::read_to_string(
        "/var/cache/kubelab-test/e2e-panic/kl-e2e-panic-panicky.console.log",
    )
    .unwrap();
    assert_eq!(
        console.matches("] Kernel panic - not syncing").count(),
        1,
        "{console}"
    );

    // the lab is left in place for down
    let name = LabName::new("e2e-panic").unwrap();
    let c = Connection::open(URI).unwrap();
    assert_eq!(c.lab_objects(&name).unwrap().domains.len(), 1);
    let out = kubelab(&state_parent, &["down", lab]);
    assert!(out.status.success());
    lab_is_gone(&name, Path::new("/var/cache/kubelab-test/e2e-panic"));
}

#[test]
fn remote_virthost_over_ssh_only() {
    support::require_root();
    let mut virthost = netns_virthost::NetnsVirthost::start();
    // a NIC of the virthost for a bridged network that kubelab makes
    let lan = virthost.add_lan();
    let vm_on_lan = format!("10.217.{}.50", virthost.n);
    let work = tempfile::tempdir().unwrap();
    // a storage directory of its own: on this machine the virthost shares the
    // file system with other labs, whose runs' locks would (rightly) keep
    // down from giving the virthost back; the base image is linked in
    let storage = support::cache_dir().join("netns-virthost");
    let image = support::base_image();
    std::fs::create_dir_all(storage.join("images")).unwrap();
    let linked = storage.join("images").join(image.file_name().unwrap());
    if !linked.exists() {
        std::fs::hard_link(&image, &linked).unwrap();
    }
    let lab_path = work.path().join("e2e-remote.yaml");
    let lab_text = format!(
        "name: e2e-remote\n{}image: {{build: debian-12}}\n\
         networks:\n  - {{name: lan, kind: nat, ipv4: 192.168.215.0/24, ipv6: \"fd42:6b6c:d7::/64\"}}\n\
         \x20 - {{name: ext, kind: bridged, nic: lan0, ipv4: {}}}\n\
         defaults: {{cpus: 1, memory: 640MiB, disk: 4GiB}}\n\
         vms:\n  - {{name: rvm, roles: [worker], spare_disks: [{{size: 256MiB}}], \
         nics: [{{network: lan}}, {{network: ext, ipv4: {vm_on_lan}}}]}}\n",
        virthost.lab_virthost(&storage),
        lan.subnet
    );
    std::fs::write(&lab_path, &lab_text).unwrap();
    let lab = lab_path.to_str().unwrap();
    let state_parent = work.path().join("state");
    let state = state_parent.join("e2e-remote");
    let pool_dir = storage.join("e2e-remote");
    // a leftover pool directory of a killed run: no daemon knows it any more
    let _ = std::fs::remove_dir_all(&pool_dir);
    let _cleanup = Cleanup {
        lab: lab_path.clone(),
        state: state_parent.clone(),
        foreign: None,
    };

    // ---- up: prepare.sh starts the virthost's own libvirtd ---------------------------
    let t0 = Instant::now();
    let out = kubelab(&state_parent, &["--json", "up", "--timeout", "480", lab]);
    assert!(out.status.success(), "remote up failed");
    let up = event(&out, "up");
    eprintln!(
        "[e2e-remote] up: {:.1}s in all, boot to SSH {:.1}s",
        t0.elapsed().as_secs_f64(),
        up["boot_to_ssh_secs"].as_f64().unwrap_or(-1.0)
    );
    assert!(up["virthost_changes"].as_u64().unwrap() >= 2, "{up}");
    assert_eq!(up["domain_type"], "qemu", "{up}");
    // the VM exists on the virthost's libvirtd only
    let listed = virthost.ssh_ok("virsh -c qemu:///system list --name");
    assert!(listed.contains("kl-e2e-remote-rvm"), "{listed}");
    let (_, here) = support::virsh(&["list", "--all", "--name"]);
    assert!(!here.contains("kl-e2e-remote"), "{here}");
    // the lab subnet is not routed on this machine: the VM is reachable only
    // through the virthost
    let routes = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["route", "get", "192.168.215.200"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    assert!(!routes.contains("virbr"), "{routes}");
    let out = kubelab(
        &state_parent,
        &[
            "ssh",
            lab,
            "rvm",
            "--",
            "hostname; ip -o addr show dev eth0; test -b /dev/vdb",
        ],
    );
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("rvm\n"), "{text}");
    assert!(text.contains("inet 192.168.215."), "{text}");
    assert!(text.contains("inet6 fd42:6b6c:d7:"), "{text}");
    // OpenSSH with the state's ssh_config: ProxyJump through the virthost
    let hostname = ssh_config_run(&state, "rvm", "hostname");
    assert_eq!(hostname.trim(), "rvm");
    // kubelab's own interactive session, through the virthost
    interactive_ssh(&state_parent, lab, "rvm");
    // the first NIC's address is the one kubelab connects to
    assert!(
        up["vms"][0]["addresses"][0]
            .as_str()
            .unwrap()
            .starts_with("192.168.215."),
        "{up}"
    );

    // the bridge made from lan0 carries lan0's address and route; the VM's
    // second NIC is on the LAN
    let bridge = virthost
        .ssh_ok("basename \"$(readlink /sys/class/net/lan0/master)\"")
        .trim()
        .to_string();
    assert!(
        bridge.starts_with("klbr-"),
        "lan0 is not in a bridge: {bridge}"
    );
    let on_bridge = virthost.ssh_ok(&format!(
        "ip -o -4 addr show dev {bridge}; ip -o -4 addr show dev lan0; ip route show {}",
        lan.routed
    ));
    assert!(
        on_bridge.contains(&format!("{bridge}    inet {}/24", lan.virthost)),
        "{on_bridge}"
    );
    assert!(!on_bridge.contains("lan0    inet"), "{on_bridge}");
    assert!(
        on_bridge.contains(&format!("via {} dev {bridge}", lan.router)),
        "{on_bridge}"
    );
    assert!(
        lan.reaches(&vm_on_lan, 22),
        "the VM does not answer on the bridged LAN"
    );

    // the run's log, in the engine's format
    let logs: Vec<_> = std::fs::read_dir(state.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with("-up.log"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    check_up_log(&std::fs::read_to_string(&logs[0]).unwrap(), "rvm");

    // ---- idempotent; status ----------------------------------------------------------
    let out = kubelab(&state_parent, &["--json", "up", lab]);
    assert!(out.status.success());
    assert_eq!(event(&out, "up")["changes"], 0);
    // the JSON events are the engine's: a run, plays, steps per host
    let steps = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_end" && e["host"] == "rvm")
        .count();
    assert_eq!(steps, 3, "one step_end per VM step");
    // off a terminal: plain timestamped lines, like the playbook stages
    let out = kubelab(&state_parent, &["up", lab]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("] rvm | SSH with the pinned host key: ok ("),
        "{err}"
    );
    assert!(err.contains("] virthost | plan: ok ("), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("lab e2e-remote: 0 changes"));
    up_on_a_terminal(&state_parent, lab, "rvm");
    let out = kubelab(&state_parent, &["--json", "status", lab]);
    let st = event(&out, "status");
    assert_eq!(st["vms"][0]["state"], "running", "{st}");

    // ---- a changed lab: network settings, memory, a bigger disk ------------------------
    let changed_path = work.path().join("e2e-remote-changed.yaml");
    std::fs::write(
        &changed_path,
        lab_text
            .replace(
                "ipv4: 192.168.215.0/24,",
                "ipv4: 192.168.215.0/24, mtu: 1400,",
            )
            .replace("memory: 640MiB", "memory: 700MiB")
            .replace("size: 256MiB", "size: 384MiB"),
    )
    .unwrap();
    let changed = changed_path.to_str().unwrap();
    let out = kubelab(&state_parent, &["--json", "plan", changed]);
    assert!(out.status.success());
    let plan = event(&out, "plan");
    assert_eq!(plan["changes"], 3, "{plan}");
    let actions = plan["actions"].as_array().unwrap();
    let find = |kind: &str| {
        actions
            .iter()
            .find(|a| a["action"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {plan}"))
    };
    let net = find("replace-network");
    assert_eq!(net["network"], "lan", "{net}");
    assert!(
        net["why"].as_str().unwrap().contains("mtu none -> 1400"),
        "{net}"
    );
    assert_eq!(net["vms"], serde_json::json!(["rvm"]), "{net}");
    assert_eq!(find("grow-volume")["dev"], "vdb");
    // the guest's MTU comes from its seed: reported, not applied
    assert!(
        find("not-applied")["subject"]
            .as_str()
            .unwrap()
            .contains("guest settings of vm rvm")
    );
    assert!(
        find("restart-needed")["why"]
            .as_str()
            .unwrap()
            .contains("memory 640 MiB -> 700 MiB")
    );
    let out = kubelab(&state_parent, &["--json", "up", changed]);
    assert!(out.status.success(), "up of the changed lab failed");
    let up = event(&out, "up");
    assert_eq!(up["changes"], 3, "{up}");
    assert_eq!(up["restart_needed"], serde_json::json!(["rvm"]), "{up}");
    assert_eq!(up["not_applied"].as_array().unwrap().len(), 1, "{up}");
    let xml = virthost.ssh_ok("virsh -c qemu:///system net-dumpxml kl-e2e-remote-lan");
    assert!(xml.contains("<mtu size='1400'/>"), "{xml}");
    // the running VM is back on its restarted network and sees the bigger disk
    let out = kubelab(
        &state_parent,
        &["ssh", changed, "rvm", "--", "cat /sys/block/vdb/size"],
    );
    assert!(out.status.success());
    // 512-byte sectors: 384 MiB
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "786432");
    // applied: nothing left to change; the guest settings are still reported
    let out = kubelab(&state_parent, &["--json", "plan", changed]);
    let plan = event(&out, "plan");
    assert_eq!(plan["changes"], 0, "{plan}");
    assert_eq!(plan["actions"][0]["action"], "not-applied", "{plan}");

    // ---- forensics with libvirtd dead on the virthost -----------------------------------
    // the VM, its console file and the virthost's shell still answer; what
    // only libvirt knows is missing, with libvirt's reason
    // its own daemon only: the virthost shares this machine's process IDs
    // (a `pkill` there would kill every libvirtd here, the other tests' too)
    virthost.ssh_ok(
        "pid=$(cat /run/libvirtd.pid) && kill \"$pid\" && while kill -0 \"$pid\" 2>/dev/null; do sleep 0.2; done",
    );
    let bundle = work.path().join("remote.tar.gz");
    let out = kubelab(
        &state_parent,
        &[
            "--json",
            "collect",
            lab,
            "-o",
            bundle.to_str().unwrap(),
            "--timeout",
            "20",
        ],
    );
    assert!(out.status.success(), "collect failed");
    let collected = event(&out, "collect");
    let files = forensics::bundle_files(&bundle);
    assert!(
        files["vms/rvm/journal.txt"].contains("kernel"),
        "{:?}",
        files.keys()
    );
    assert!(files["vms/rvm/ip-addr.txt"].contains(&vm_on_lan));
    assert!(
        files["vms/rvm/console.log"].contains("rvm login:"),
        "console"
    );
    assert!(files["virthost/ip-addr.txt"].contains("lan0"));
    // the daemons that still run, but no list of libvirt's
    assert!(!files["virthost/libvirt.txt"].contains("kl-e2e-remote-rvm"));
    let missing = &files["MISSING.txt"];
    assert!(
        missing.contains("vms/rvm/domain.xml: error: Failed to connect socket"),
        "{missing}"
    );
    assert!(missing.contains("networks/lan.xml: "), "{missing}");
    assert!(
        collected["missing"].as_array().unwrap().len() >= 3,
        "{collected}"
    );
    // no key material: the lab's login key, the VM's host key
    let login_key = std::fs::read_to_string(state.join("id_ed25519")).unwrap();
    let key_line = login_key.lines().nth(1).unwrap();
    for (path, text) in &files {
        assert!(
            !text.contains("PRIVATE KEY-----\n"),
            "{path}: a private key"
        );
        assert!(!text.contains(key_line), "{path}: the login key");
    }

    // ---- down: the lab's objects, then what kubelab changed on the virthost -----------
    let forwarding = "sysctl -n net.ipv4.ip_forward net.ipv6.conf.all.forwarding";
    // libvirt turned forwarding on for the NAT network (the virthost had it off)
    assert_eq!(virthost.ssh_ok(forwarding), "1\n1\n");
    let out = kubelab(&state_parent, &["--json", "down", lab]);
    assert!(out.status.success(), "remote down failed");
    let down = event(&out, "down");
    let released = down["virthost_released"].to_string();
    for what in [
        "libvirtd stopped",
        "virtlogd stopped",
        "empty chain LIBVIRT_INP removed",
        "net.ipv4.ip_forward=0",
        "net.ipv6.conf.all.forwarding=0",
    ] {
        assert!(released.contains(what), "{what} not in {down}");
    }
    assert_eq!(virthost.ssh_ok(forwarding), "0\n0\n");
    assert!(
        released.contains(&format!("bridge {bridge} removed")),
        "{down}"
    );
    let lan0 = virthost.ssh_ok(&format!(
        "ip -o -4 addr show dev lan0; ip route show {}; ip -o link show type bridge",
        lan.routed
    ));
    assert!(
        lan0.contains(&format!("lan0    inet {}/24", lan.virthost)),
        "{lan0}"
    );
    assert!(
        lan0.contains(&format!("via {} dev lan0", lan.router)),
        "{lan0}"
    );
    assert!(!lan0.contains("klbr-"), "{lan0}");
    let rules = virthost
        .ssh_ok("for t in filter nat mangle; do iptables -t $t -S; ip6tables -t $t -S; done");
    assert!(!rules.contains("LIBVIRT"), "{rules}");
    let left = virthost.ssh_ok(
        "ls /etc/libvirt/qemu /etc/libvirt/qemu/networks /etc/libvirt/storage \
         /var/lib/libvirt/dnsmasq 2>/dev/null; cat /run/libvirtd.pid 2>/dev/null | xargs -r ps -p || true",
    );
    assert!(
        !left.contains("kl-e2e-remote"),
        "left on the virthost: {left}"
    );
    assert!(!left.contains("libvirtd"), "libvirtd still runs: {left}");
    assert!(!pool_dir.exists(), "{} left after down", pool_dir.display());
    // again: nothing of the lab there (libvirtd started to look, stopped again)
    let out = kubelab(&state_parent, &["--json", "down", lab]);
    assert!(out.status.success());
    let again = event(&out, "down");
    assert_eq!(again["was_absent"], true, "{again}");
    assert!(
        again["virthost_released"]
            .to_string()
            .contains("libvirtd stopped"),
        "{again}"
    );
}

/// `kubelab ARGS` on a real pseudo-terminal of 37 rows and 111 columns,
/// as its session leader (so size changes reach it as SIGWINCH); everything
/// it writes is collected.
struct PtyRun {
    child: std::process::Child,
    master: std::os::fd::OwnedFd,
    slave: std::os::fd::OwnedFd,
    seen: std::sync::Arc<std::sync::Mutex<String>>,
}

impl PtyRun {
    fn spawn(state: &Path, args: &[&str]) -> PtyRun {
        use std::io::Read;
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::process::CommandExt;
        let mut master = -1;
        let mut slave = -1;
        let size = libc::winsize {
            ws_row: 37,
            ws_col: 111,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty fills two fds; the termios pointer may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty");
        // SAFETY: both fds were just opened and are owned here.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut cmd = Command::new(KUBELAB);
        cmd.env("KUBELAB_STATE_DIR", state)
            .env("TERM", "xterm")
            .args(args)
            .stdin(std::process::Stdio::from(slave.try_clone().unwrap()))
            .stdout(std::process::Stdio::from(slave.try_clone().unwrap()))
            .stderr(std::process::Stdio::from(slave.try_clone().unwrap()));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("kubelab on a terminal");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let collected = seen.clone();
        let mut from = std::fs::File::from(master.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                collected
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        PtyRun {
            child,
            master,
            slave,
            seen,
        }
    }

    fn seen(&self) -> String {
        self.seen.lock().unwrap().clone()
    }

    fn type_in(&self, text: &str) {
        use std::io::Write;
        let mut to = std::fs::File::from(self.master.try_clone().unwrap());
        to.write_all(text.as_bytes()).unwrap();
    }

    /// Wait (bounded) until the output holds `what`; `again` runs every
    /// 200 ms meanwhile.
    fn wait_for(&self, what: &str, limit: Duration, mut again: impl FnMut(&PtyRun)) {
        let deadline = Instant::now() + limit;
        while !self.seen().contains(what) {
            assert!(
                Instant::now() < deadline,
                "no {what:?} within {limit:?}:\n{}",
                self.seen()
            );
            again(self);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn exit_status(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                self.drained(deadline);
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "kubelab did not end:\n{}",
                self.seen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until the reader has taken everything the ended child wrote:
    /// nothing left unread on the terminal and the output no longer
    /// growing (the child's last frames arrive after its exit is seen).
    fn drained(&self, deadline: Instant) {
        use std::os::fd::AsRawFd;
        let mut last = usize::MAX;
        loop {
            let mut unread: libc::c_int = 0;
            // SAFETY: FIONREAD writes the count of unread bytes into `unread`.
            let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::FIONREAD, &mut unread) };
            let len = self.seen.lock().unwrap().len();
            if rc == 0 && unread == 0 && len == last {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal output never settled"
            );
            last = len;
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// ICANON and ECHO of the terminal (both set: cooked mode).
    fn modes(&self) -> libc::tcflag_t {
        use std::os::fd::AsRawFd;
        // SAFETY: tcgetattr fills the termios owned here.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        assert_eq!(
            unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) },
            0
        );
        t.c_lflag & (libc::ICANON | libc::ECHO)
    }
}

/// `kubelab ssh LAB VM` without a command on a real terminal: a login
/// shell with the terminal's size, a size change followed, the exit status
/// relayed, and the terminal out of raw mode afterwards.
fn interactive_ssh(state: &Path, lab: &str, vm: &str) {
    use std::os::fd::AsRawFd;
    let mut run = PtyRun::spawn(state, &["ssh", lab, vm]);
    let cooked = run.modes();
    assert_eq!(cooked, libc::ICANON | libc::ECHO);
    run.wait_for("$ ", Duration::from_secs(60), |_| {});
    run.type_in("stty size; tty\n");
    run.wait_for("37 111", Duration::from_secs(20), |_| {});
    run.wait_for("/dev/pts/", Duration::from_secs(20), |_| {});
    let bigger = libc::winsize {
        ws_row: 41,
        ws_col: 121,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: sets the size of the terminal we own; the kernel sends SIGWINCH
    // to its foreground process group (kubelab).
    assert_eq!(
        unsafe { libc::ioctl(run.master.as_raw_fd(), libc::TIOCSWINSZ, &bigger) },
        0
    );
    let mut tries = 0;
    run.wait_for("41 121", Duration::from_secs(20), |r| {
        // every second, ask again (the change travels asynchronously)
        if tries % 5 == 0 {
            r.type_in("stty size\n");
        }
        tries += 1;
    });
    run.type_in("exit 7\n");
    let status = run.exit_status(Duration::from_secs(30));
    assert_eq!(status.code(), Some(7), "{}", run.seen());
    assert_eq!(run.modes(), cooked, "the terminal was left in raw mode");
}

/// `kubelab up` on a terminal: a progress bar per host (indicatif), the
/// summary after them.
fn up_on_a_terminal(state: &Path, lab: &str, vm: &str) {
    let mut run = PtyRun::spawn(state, &["up", lab]);
    let status = run.exit_status(Duration::from_secs(300));
    let seen = strip_ansi(&run.seen());
    assert!(status.success(), "{seen}");
    // the template right-aligns the host in 16 columns, then the bar and
    // the step counter
    assert!(
        seen.contains(&format!("{vm:>16} [====================] 3/3")),
        "no bar for {vm}:\n{seen}"
    );
    assert!(
        seen.contains(&format!("{:>16} [====================] 6/6", "virthost")),
        "{seen}"
    );
    assert!(seen.contains("Summary:"), "{seen}");
    assert!(seen.contains("lab e2e-remote: 0 changes"), "{seen}");
}

/// The text without terminal escape sequences (`ESC [ ... letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A lab over two virthosts, each in its own namespaces with its own
/// libvirtd, reached over SSH only, joined by a LAN namespace: one VM on
/// each; the VMs get their addresses from the one DHCP server (on the first
/// virthost), reach each other over IPv4 and IPv6 through the VXLAN tunnel,
/// and the outside through the first virthost's NAT; a second `up` changes
/// nothing; `down` leaves both virthosts as they were, a foreign domain,
/// network and VXLAN device on each untouched.
#[test]
fn lab_over_two_virthosts() {
    support::require_root();
    let mut a = netns_virthost::NetnsVirthost::start();
    let b = netns_virthost::NetnsVirthost::start();
    let (tunnel_a, tunnel_b) = a.join(&b);
    let work = tempfile::tempdir().unwrap();
    // each virthost its own storage directory (they share this machine's
    // file system), the base image linked into each
    let image = support::base_image();
    let storage: Vec<PathBuf> = ["two-a", "two-b"]
        .iter()
        .map(|d| {
            let dir = support::cache_dir().join(d);
            std::fs::create_dir_all(dir.join("images")).unwrap();
            let linked = dir.join("images").join(image.file_name().unwrap());
            if !linked.exists() {
                std::fs::hard_link(&image, &linked).unwrap();
            }
            let _ = std::fs::remove_dir_all(dir.join("e2e-two"));
            dir
        })
        .collect();
    let lab_path = work.path().join("e2e-two.yaml");
    std::fs::write(
        &lab_path,
        format!(
            "name: e2e-two\nvirthosts:\n{}{}image: {{build: debian-12}}\n\
             networks:\n  - {{name: lan, kind: nat, ipv4: 192.168.226.0/24, ipv6: \"fd42:6b6c:da::/64\"}}\n\
             defaults: {{cpus: 1, memory: 640MiB, disk: 4GiB}}\n\
             vms:\n  - {{name: va, virthost: rack-a}}\n  - {{name: vb, virthost: rack-b}}\n",
            a.lab_virthosts_entry("rack-a", &tunnel_a, &storage[0]),
            b.lab_virthosts_entry("rack-b", &tunnel_b, &storage[1]),
        ),
    )
    .unwrap();
    let lab = lab_path.to_str().unwrap();
    let state_parent = work.path().join("state");
    let _cleanup = Cleanup {
        lab: lab_path.clone(),
        state: state_parent.clone(),
        foreign: None,
    };

    let out = kubelab(&state_parent, &["--json", "up", "--timeout", "480", lab]);
    assert!(out.status.success(), "up over two virthosts failed");
    let up = event(&out, "up");
    eprintln!(
        "[e2e-two] boot to SSH {:.1}s, up {:.1}s",
        up["boot_to_ssh_secs"].as_f64().unwrap_or(-1.0),
        up["total_secs"].as_f64().unwrap_or(-1.0)
    );
    // each VM on its own virthost's libvirtd
    for (v, mine, other) in [
        (&a, "kl-e2e-two-va", "kl-e2e-two-vb"),
        (&b, "kl-e2e-two-vb", "kl-e2e-two-va"),
    ] {
        let listed = v.ssh_ok("virsh -c qemu:///system list --name");
        assert!(listed.contains(mine) && !listed.contains(other), "{listed}");
    }
    // the second virthost's copy of the network is a bare bridge
    let bare = b.ssh_ok("virsh -c qemu:///system net-dumpxml kl-e2e-two-lan");
    assert!(
        !bare.contains("<ip") && !bare.contains("<forward"),
        "{bare}"
    );
    assert!(
        bare.contains("<mtu size=\"1450\"") || bare.contains("<mtu size='1450'"),
        "{bare}"
    );
    // both VMs addressed by the first virthost's DHCP (IPv4) and RA/DHCPv6
    let addr = |vm: &str, family: &str| -> String {
        let out = kubelab(
            &state_parent,
            &[
                "ssh",
                lab,
                vm,
                "--",
                &format!("ip -o -{family} addr show dev eth0 scope global"),
            ],
        );
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .skip_while(|w| *w != "inet" && *w != "inet6")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .unwrap_or_else(|| panic!("{vm}: no IPv{family} address: {text}"))
            .to_string()
    };
    let (va4, va6) = (addr("va", "4"), addr("va", "6"));
    let (vb4, vb6) = (addr("vb", "4"), addr("vb", "6"));
    for ip in [&va4, &vb4] {
        assert!(ip.starts_with("192.168.226."), "{ip}");
    }
    for ip in [&va6, &vb6] {
        assert!(ip.starts_with("fd42:6b6c:da:"), "{ip}");
    }
    let leases = a.ssh_ok("virsh -c qemu:///system net-dhcp-leases kl-e2e-two-lan");
    assert!(
        leases.contains(&vb4),
        "vb's lease is not the first virthost's: {leases}"
    );
    // across the tunnel, both ways, both families; out through NAT
    let run_on = |vm: &str, cmd: &str| {
        let out = kubelab(&state_parent, &["ssh", lab, vm, "--", cmd]);
        assert!(out.status.success(), "{vm}: {cmd} failed");
    };
    run_on(
        "vb",
        &format!("ping -c 2 -W 5 {va4} && ping -6 -c 2 -W 5 {va6}"),
    );
    run_on(
        "va",
        &format!("ping -c 2 -W 5 {vb4} && ping -6 -c 2 -W 5 {vb6}"),
    );
    // full-size frames fit: 1450-byte packets, DF set
    run_on("vb", &format!("ping -c 1 -W 5 -M do -s 1422 {va4}"));
    // this machine is the outside of the first virthost: only NAT there
    // lets it answer vb (it has no route to the lab's subnet)
    run_on("vb", &format!("ping -c 2 -W 5 {}", a.gateway));
    // the tunnels: one VXLAN device per virthost, the other as its peer
    for (v, peer) in [(&a, &tunnel_b), (&b, &tunnel_a)] {
        let fdb = v.ssh_ok("for d in $(ip -o link show type vxlan | awk -F': ' '{print $2}' | cut -d@ -f1); do cat /sys/class/net/$d/ifalias; bridge fdb show dev $d | grep 00:00:00:00:00:00; done");
        assert!(fdb.contains("kubelab:e2e-two:lan"), "{fdb}");
        assert!(fdb.contains(&format!("dst {peer}")), "{fdb}");
    }

    // status: every VM running, each virthost's objects named after it
    let out = kubelab(&state_parent, &["--json", "status", lab]);
    let st = event(&out, "status");
    for vm in st["vms"].as_array().unwrap() {
        assert_eq!(vm["state"], "running", "{st}");
    }
    let objects = st["objects"].as_array().unwrap();
    for (place, domain) in [("rack-a", "kl-e2e-two-va"), ("rack-b", "kl-e2e-two-vb")] {
        let has = |kind: &str, name: Option<&str>| {
            objects.iter().any(|o| {
                o["virthost"] == place && o["kind"] == kind && name.is_none_or(|n| o["name"] == n)
            })
        };
        assert!(has("domain", Some(domain)), "{place}: {st}");
        assert!(has("tunnel", None) && has("network", None), "{place}: {st}");
    }

    // ls over both virthosts at once: the lab on each, with its part there
    let inventories: Vec<String> = [(&a, "rack-a", 0), (&b, "rack-b", 1)]
        .iter()
        .map(|(v, name, i)| {
            let path = work.path().join(format!("{name}.yaml"));
            std::fs::write(&path, v.inventory(&storage[*i])).unwrap();
            path.display().to_string()
        })
        .collect();
    let ls_args = |json: bool| {
        let mut args: Vec<&str> = if json {
            vec!["--json", "ls"]
        } else {
            vec!["ls"]
        };
        for inventory in &inventories {
            args.extend(["--virthost", inventory.as_str()]);
        }
        kubelab(&state_parent, &args)
    };
    let out = ls_args(true);
    assert!(out.status.success(), "ls over two virthosts failed");
    let listed: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &serde_json::Value| e["event"] == "ls")
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for (e, inventory) in listed.iter().zip(&inventories) {
        assert_eq!(e["virthost"], inventory.as_str(), "{e}");
        let me = e["labs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["lab"] == "e2e-two")
            .unwrap_or_else(|| panic!("e2e-two not on {inventory}: {e}"));
        assert_eq!(
            (&me["vms"], &me["vms_running"]),
            (&1.into(), &1.into()),
            "{me}"
        );
    }
    let table = String::from_utf8_lossy(&ls_args(false).stdout).into_owned();
    assert!(table.starts_with("VIRTHOST "), "{table}");
    for inventory in &inventories {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(inventory.as_str()) && l.contains(" e2e-two ")),
            "{table}"
        );
    }

    // a second up changes nothing
    let out = kubelab(&state_parent, &["--json", "up", "--timeout", "480", lab]);
    assert!(out.status.success(), "second up failed");
    let again = event(&out, "up");
    assert_eq!(again["changes"], 0, "{again}");
    assert_eq!(again["virthost_changes"], 0, "{again}");

    // foreign objects on each virthost: libvirt's and a VXLAN device
    for (v, tunnel) in [(&a, &tunnel_a), (&b, &tunnel_b)] {
        v.ssh_ok(&format!(
            "set -e; cd /tmp; echo \"<network><name>foreign-net</name></network>\" > fn.xml; \
             virsh -q -c qemu:///system net-define fn.xml; \
             echo \"<domain type='qemu'><name>foreign-vm</name><memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>\" > fd.xml; \
             virsh -q -c qemu:///system define fd.xml; \
             ip link add foreignvx type vxlan id 4242 local {tunnel} dstport 4789"
        ));
    }
    // on rack-b the foreign network runs: libvirtd stays there
    b.ssh_ok("virsh -q -c qemu:///system net-start foreign-net");
    let out = kubelab(&state_parent, &["--json", "down", lab]);
    assert!(out.status.success(), "down failed");
    let released = event(&out, "down")["virthost_released"].to_string();
    assert!(
        released.contains("rack-a: libvirtd stopped")
            && released
                .contains("rack-b: left as it is: libvirt still runs 1 network(s) and 0 VM(s)"),
        "{released}"
    );
    let libvirtd = "cat /run/libvirtd.pid 2>/dev/null | xargs -r ps -o comm= -p || true";
    assert!(!a.ssh_ok(libvirtd).contains("libvirtd"), "rack-a");
    assert!(b.ssh_ok(libvirtd).contains("libvirtd"), "rack-b");
    for v in [&a, &b] {
        // libvirt's own definitions (down stops the libvirtd kubelab
        // started, once no lab of it is left: the files are what it keeps)
        let left = v.ssh_ok(
            "ls /etc/libvirt/qemu /etc/libvirt/qemu/networks /etc/libvirt/storage; \
             ip -o link show type vxlan",
        );
        assert!(!left.contains("kl-e2e-two"), "left after down: {left}");
        assert!(
            left.contains("foreign-vm.xml") && left.contains("foreign-net.xml"),
            "{left}"
        );
        assert!(left.contains("foreignvx"), "{left}");
        assert!(!left.contains("kx"), "a tunnel of the lab is left: {left}");
    }
    for dir in &storage {
        assert!(!dir.join("e2e-two").exists(), "{} left", dir.display());
    }
}
