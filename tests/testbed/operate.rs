//! Operating a lab on a shared virthost, on the test bed: the forensics
//! bundle of a lab with one VM's sshd stopped, secrets planted in the
//! journals redacted from it; the lab's lease renewed on running VMs,
//! listed by `ls` and weighed by `reap`.

use std::time::{Duration, Instant};

use super::forensics::bundle_files;
use super::{Testbed, json_event};

pub fn run(tb: &Testbed) {
    forensics(tb);
    lease(tb);
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
