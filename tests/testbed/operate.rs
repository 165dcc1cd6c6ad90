//! Operating a lab on a shared virthost, on the test bed: the forensics
//! bundle of a lab with one VM's sshd stopped, secrets planted in the
//! journals redacted from it; the lab's lease renewed on running VMs,
//! listed by `ls` and weighed by `reap`; lab snapshots saved, reverted (a
//! file on disk and a scenario set up in memory since are gone, the VMs
//! answer and keep time) and deleted without a trace.

use std::time::{Duration, Instant};

use super::forensics::bundle_files;
use super::{Testbed, json_event};

pub fn run(tb: &Testbed) {
    forensics(tb);
    lease(tb);
    snapshots(tb);
}

const FRAMEWORK: [&str; 4] = [
    "--playbook-dir",
    "tests/testbed/framework",
    "scenario",
    "tests/labs/e2e/testbed-framework.yaml",
];

/// The stand-in scenario's markers (in /run: memory) on node-1 and node-2.
fn scenario_markers(tb: &Testbed) -> [bool; 2] {
    ["node-1", "node-2"].map(|vm| {
        tb.sh(vm, &format!("test -f /run/kl-framework-{vm}"))
            .status
            .success()
    })
}

fn snapshots(tb: &Testbed) {
    let lab = tb.lab_arg();
    let out = tb.kubelab(&["--json", "snapshot", lab, "save", "clean"]);
    assert!(out.status.success(), "snapshot save failed");
    let saved = json_event(&out, "snapshot_saved");
    assert_eq!(saved["snapshot"]["state"], "running", "{saved}");
    assert_eq!(saved["snapshot"]["vms"].as_array().unwrap().len(), 3);
    let again = tb.kubelab(&["snapshot", lab, "save", "clean"]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "a second snapshot of the same name"
    );
    assert!(String::from_utf8_lossy(&again.stderr).contains("has a snapshot clean already"));
    let status = tb.kubelab_ok(&["status", lab]);
    assert!(status.contains("snapshots:\nclean  "), "{status}");

    // after the snapshot: a file on disk, a scenario set up (in memory)
    tb.sh_ok("node-1", "echo after > /root/kl-after-snapshot && sync");
    let mut setup = FRAMEWORK.to_vec();
    setup.extend(["ipv6-ping6", "setup"]);
    assert!(tb.kubelab(&setup).status.success());
    assert_eq!(scenario_markers(tb), [true, true]);

    let out = tb.kubelab(&["--json", "snapshot", lab, "revert", "clean"]);
    assert!(out.status.success(), "revert failed");
    let reverted = json_event(&out, "snapshot_reverted");
    assert_eq!(
        reverted["clock_not_set"],
        serde_json::json!([]),
        "{reverted}"
    );
    assert!(
        !tb.sh("node-1", "test -e /root/kl-after-snapshot")
            .status
            .success(),
        "the file written after the snapshot survived the revert"
    );
    assert_eq!(
        scenario_markers(tb),
        [false, false],
        "the scenario survived"
    );
    // the guests keep the host's time, not the snapshot's
    let guest: i64 = tb.sh_ok("node-2", "date +%s").trim().parse().unwrap();
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (guest - host).abs() <= 5,
        "guest clock {guest}, host {host}"
    );
    // the scenario can be set up again, and goes
    assert!(tb.kubelab(&setup).status.success());
    assert_eq!(scenario_markers(tb), [true, true]);
    let mut teardown = FRAMEWORK.to_vec();
    teardown.extend(["ipv6-ping6", "teardown"]);
    assert!(tb.kubelab(&teardown).status.success());

    // delete: no snapshot left in libvirt or in the disks
    let out = tb.kubelab(&["--json", "snapshot", lab, "delete", "clean"]);
    assert!(out.status.success());
    let list = tb.kubelab(&["--json", "snapshot", lab, "list"]);
    assert_eq!(
        json_event(&list, "snapshots")["snapshots"],
        serde_json::json!([])
    );
    for vm in ["node-1", "node-2", "node-3"] {
        assert!(no_snapshot_left(vm), "{vm}");
    }
    let missing = tb.kubelab(&["snapshot", lab, "revert", "clean"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("has no snapshot clean"));
}

/// Nothing of any snapshot of a test-bed VM: libvirt's list and metadata
/// directory, and the snapshot tables of its qcow2 files (read while the
/// VM runs: `-U`).
pub fn no_snapshot_left(vm: &str) -> bool {
    let domain = format!("kl-testbed-{vm}");
    let listed = std::process::Command::new("virsh")
        .args(["-c", "qemu:///system", "snapshot-list", "--name", &domain])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| e.to_string());
    let metadata = std::fs::read_dir(format!("/var/lib/libvirt/qemu/snapshot/{domain}"))
        .map(|d| d.count())
        .unwrap_or(0);
    let in_disks: String = ["root.qcow2", "vdb.qcow2", "seed.img"]
        .iter()
        .map(|f| {
            let path = format!("/var/cache/kubelab-test/testbed/kl-testbed-{vm}-{f}");
            std::process::Command::new("qemu-img")
                .args(["snapshot", "-U", "-l", &path])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        })
        .collect();
    if !listed.is_empty() || metadata != 0 || !in_disks.trim().is_empty() {
        eprintln!(
            "[operate] {vm}: listed {listed:?}, metadata files {metadata}, in disks {in_disks:?}"
        );
        return false;
    }
    true
}

/// `up --ttl` renews the lease of the running VMs in place, `ls` shows it,
/// a plain `up` keeps it, `reap` leaves the lab until it is due.
fn lease(tb: &Testbed) {
    let out = tb.kubelab(&["--json", "up", "--ttl", "8h", tb.lab_arg()]);
    assert!(out.status.success(), "up --ttl failed");
    let up = json_event(&out, "up");
    let actions = up["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 3, "{up}");
    assert!(actions.iter().all(|a| a["action"] == "set-lease"), "{up}");
    let expires = up["lease"]["expires"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        expires > now + 8 * 3600 - 120 && expires <= now + 8 * 3600,
        "{up}"
    );
    // in the running domain and in its definition, nothing restarted
    for flags in ["", "--inactive"] {
        let xml = std::process::Command::new("virsh")
            .args(["-c", "qemu:///system", "dumpxml", "kl-testbed-node-2"])
            .args((!flags.is_empty()).then_some(flags))
            .output()
            .unwrap();
        let xml = String::from_utf8_lossy(&xml.stdout);
        assert!(xml.contains(" expires=\""), "{flags}: {xml}");
        assert!(xml.contains(" seed=\""), "the seed digest kept: {xml}");
    }
    assert!(
        up["vms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["state"] == "running")
    );

    let out = tb.kubelab(&["--json", "ls"]);
    let ls = json_event(&out, "ls");
    let me = ls["labs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["lab"] == "testbed")
        .cloned()
        .expect("testbed listed");
    assert_eq!(me["lease"]["expires"].as_u64(), Some(expires), "{me}");
    assert_eq!(
        (me["vms"].as_u64(), me["vms_running"].as_u64()),
        (Some(3), Some(3))
    );
    let table = tb.kubelab_ok(&["ls"]);
    assert!(
        table.contains("in 7h59m") || table.contains("in 8h"),
        "{table}"
    );

    // a plain up keeps the lease
    let out = tb.kubelab(&["--json", "up", tb.lab_arg()]);
    let up = json_event(&out, "up");
    assert_eq!(up["changes"], 0, "{up}");
    assert_eq!(up["lease"]["expires"].as_u64(), Some(expires), "{up}");

    // not due: kept; older than a second: due (a dry run only)
    let verdict = |args: &[&str]| {
        let mut all = vec!["--json", "reap", "--dry-run"];
        all.extend_from_slice(args);
        let out = tb.kubelab(&all);
        assert!(out.status.success());
        json_event(&out, "reap")["labs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["lab"] == "testbed")
            .cloned()
            .unwrap()
    };
    let kept = verdict(&[]);
    assert_eq!(kept["outcome"], "kept", "{kept}");
    assert!(
        kept["why"]
            .as_str()
            .unwrap()
            .starts_with("expires in 7h59m")
            || kept["why"].as_str().unwrap().starts_with("expires in 8h"),
        "{kept}"
    );
    let due = verdict(&["--older-than", "1s"]);
    assert_eq!(due["outcome"], "would-remove", "{due}");
    assert!(
        tb.sh("node-1", "true").status.success(),
        "a dry run touched the lab"
    );

    // a neighbour whose time is up (a VM that never boots, a lease of one
    // second): reap removes it, and only it
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.qcow2");
    assert!(
        std::process::Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&blank)
            .arg("64M")
            .status()
            .unwrap()
            .success()
    );
    let sum = std::process::Command::new("sha256sum")
        .arg(&blank)
        .output()
        .unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout);
    let expired = dir.path().join("expired.yaml");
    std::fs::write(
        &expired,
        format!(
            "name: tb-expired\nvirthost: {{local: true, domain_type: qemu, tcg_cache: 64MiB, storage_dir: /var/cache/kubelab-test}}\n\
             image: {{url: \"file://{}\", sha256: {}, user: kubelab}}\n\
             networks:\n  - {{name: lan, kind: nat, ipv4: 192.168.223.0/24}}\n\
             vms:\n  - {{name: dud, cpus: 1, memory: 128MiB, disk: 1GiB}}\n",
            blank.display(),
            sum.split_whitespace().next().unwrap()
        ),
    )
    .unwrap();
    let expired = expired.to_str().unwrap();
    let up = tb.kubelab(&[
        "--no-collect",
        "up",
        "--timeout",
        "1",
        "--ttl",
        "1s",
        expired,
    ]);
    assert_eq!(
        up.status.code(),
        Some(1),
        "the dud was expected not to boot"
    );
    // its disks alone, shut off: --disk-only (refused while VMs run)
    let running = tb.kubelab(&["snapshot", tb.lab_arg(), "save", "disks", "--disk-only"]);
    assert_eq!(running.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&running.stderr).contains("these run: node-1, node-2, node-3"));
    assert!(
        std::process::Command::new("virsh")
            .args(["-c", "qemu:///system", "destroy", "kl-tb-expired-dud"])
            .status()
            .unwrap()
            .success()
    );
    let out = tb.kubelab(&[
        "--json",
        "snapshot",
        expired,
        "save",
        "disks",
        "--disk-only",
    ]);
    assert!(out.status.success(), "--disk-only of a shut-off VM");
    assert_eq!(
        json_event(&out, "snapshot_saved")["snapshot"]["state"],
        "shutoff"
    );
    assert_eq!(json_event(&out, "snapshot_saved")["paused_secs"], 0.0);
    let out = tb.kubelab(&["--json", "reap"]);
    assert!(out.status.success(), "reap failed");
    let labs = json_event(&out, "reap")["labs"].as_array().unwrap().clone();
    let of = |lab: &str| labs.iter().find(|l| l["lab"] == lab).cloned().unwrap();
    assert_eq!(of("tb-expired")["outcome"], "removed", "{labs:?}");
    assert_eq!(of("testbed")["outcome"], "kept", "{labs:?}");
    let ls = json_event(&tb.kubelab(&["--json", "ls"]), "ls");
    let names: Vec<&str> = ls["labs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["lab"].as_str())
        .collect();
    assert!(!names.contains(&"tb-expired"), "{names:?}");
    assert!(
        !std::path::Path::new("/var/lib/libvirt/qemu/snapshot/kl-tb-expired-dud").exists(),
        "reap left the snapshot's metadata"
    );
    assert!(
        tb.sh("node-3", "true").status.success(),
        "the test bed was touched"
    );
    tb.kubelab(&["--no-collect", "down", expired]);
}

fn forensics(tb: &Testbed) {
    // secrets where a journal would show them: a bootstrap token, node-1's
    // own SSH host key (a private key), the lab's login key
    let token = "kq3v9x.0b1c2d3e4f5g6h7i";
    let host_key = tb.sh_ok("node-1", "cat /etc/ssh/ssh_host_ed25519_key");
    let login_key = std::fs::read_to_string(tb.state.join("testbed/id_ed25519")).unwrap();
    let login_line = login_key.lines().nth(1).unwrap().to_string();
    tb.sh_ok(
        "node-1",
        &format!(
            "logger -t kl-test 'kubeadm join 192.168.221.10:6443 --token {token}'; logger -t kl-test < /etc/ssh/ssh_host_ed25519_key; logger -t kl-test {}",
            super::shell_quote(&login_line)
        ),
    );
    // node-3 without sshd (the session that stops it stays)
    tb.sh_ok("node-3", "systemctl stop ssh.service");

    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("testbed.tar.gz");
    let out = tb.kubelab(&[
        "--json",
        "collect",
        tb.lab_arg(),
        "-o",
        bundle.to_str().unwrap(),
        "--timeout",
        "20",
    ]);
    let restored = restore_sshd(tb);
    assert!(out.status.success(), "collect failed");
    assert!(restored, "node-3's sshd did not come back");
    let files = bundle_files(&bundle);
    for vm in ["node-1", "node-2", "node-3"] {
        for f in ["domain.xml", "console.log", "qemu.log"] {
            assert!(files.contains_key(&format!("vms/{vm}/{f}")), "{vm}: {f}");
        }
    }
    for vm in ["node-1", "node-2"] {
        for f in [
            "journal.txt",
            "cloud-init.log",
            "cloud-init-status.txt",
            "ip-addr.txt",
            "ss-tlnp.txt",
            "dmesg.txt",
        ] {
            assert!(files.contains_key(&format!("vms/{vm}/{f}")), "{vm}: {f}");
        }
    }
    assert!(files["vms/node-1/ss-tlnp.txt"].contains(":22"));
    assert!(files["networks/lan.leases.txt"].contains("192.168.221."));
    assert!(files["virthost/libvirt.txt"].contains("kl-testbed-node-1"));
    let missing = &files["MISSING.txt"];
    assert!(
        missing.contains("vms/node-3/cloud-init-status.txt: "),
        "node-3 without sshd: {missing}"
    );
    assert!(!missing.contains("node-1"), "{missing}");
    // the journal has the planted lines, each secret redacted
    let journal = &files["vms/node-1/journal.txt"];
    assert!(journal.contains("kubeadm join 192.168.221.10:6443 --token [REDACTED]"));
    assert!(
        journal.contains("PRIVATE KEY-----[REDACTED]"),
        "the host key's block"
    );
    let key_lines: Vec<&str> = host_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert!(!key_lines.is_empty());
    for (path, text) in &files {
        assert!(!text.contains(token), "{path}: the token");
        assert!(!text.contains(&login_line), "{path}: the login key");
        for l in &key_lines {
            assert!(!text.contains(l), "{path}: node-1's host key");
        }
    }
}

/// Start node-3's sshd again through the guest agent, then wait for SSH.
fn restore_sshd(tb: &Testbed) -> bool {
    let started = std::process::Command::new("virsh")
        .args([
            "-c",
            "qemu:///system",
            "qemu-agent-command",
            "kl-testbed-node-3",
            r#"{"execute":"guest-exec","arguments":{"path":"/bin/systemctl","arg":["start","ssh.service"]}}"#,
        ])
        .status()
        .is_ok_and(|s| s.success());
    let deadline = Instant::now() + Duration::from_secs(90);
    while started && Instant::now() < deadline {
        if tb.sh("node-3", "true").status.success() {
            return true;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    false
}
