//! `kubelab play` end to end: the binary, an INI inventory, real OpenSSH
//! servers in network namespaces (see `support`). Runs as root.

#[path = "support/sshd.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use support::{Lab, TEST_USER};

/// Where the runs of this test process keep their state (logs).
fn state_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("kubelab-play-test-state-{}", std::process::id()))
}

fn play(args: &[&str]) -> Output {
    play_in(&state_dir(), args)
}

fn play_in(state: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubelab"))
        .env("KUBELAB_STATE_DIR", state)
        .arg("play")
        .args(args)
        .output()
        .expect("cannot run kubelab")
}

fn text(output: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `(ok, changed, failed)` of every `step` event of a `--json` run, per host.
fn step_counts(output: &Output) -> std::collections::BTreeMap<String, (u32, u32, u32)> {
    let mut counts = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if event["event"] != "step_end" {
            continue;
        }
        let (Some(host), Some(status)) = (event["host"].as_str(), event["status"].as_str()) else {
            continue;
        };
        let entry: &mut (u32, u32, u32) = counts.entry(host.to_string()).or_default();
        match status {
            "ok" => entry.0 += 1,
            "changed" => entry.1 += 1,
            "failed" | "unreachable" => entry.2 += 1,
            _ => {}
        }
    }
    counts
}

/// Every `step_end` event of a `--json` run, in order.
fn step_ends(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_end")
        .collect()
}

#[test]
fn play_runs_the_bench_playbook_from_an_ini_inventory_then_changes_nothing() {
    let lab = Lab::new();
    let (a, b) = lab.pinned_pair();
    let work = Lab::open_workdir("kubelab-play-");
    let inventory = work.path().join("inventory.ini");
    std::fs::write(
        &inventory,
        format!(
            "[node]\nalpha ansible_host={}\n[other]\nbeta ansible_host={} ansible_port=22\n\
             [all:vars]\nansible_user={TEST_USER}\nansible_ssh_private_key_file={}\n",
            a.address,
            b.address,
            lab.ed25519.private.display()
        ),
    )
    .unwrap();
    let root = work.path().join("root");
    let root_var = format!("bench_root={}", root.display());
    let playbook = concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/nodeprep-bench.yaml");
    let known_hosts = lab.known_hosts.display().to_string();
    let inventory_arg = inventory.display().to_string();
    let args = [
        "--json",
        playbook,
        "-i",
        &inventory_arg,
        "--known-hosts",
        &known_hosts,
        "--var",
        &root_var,
    ];

    let state = work.path().join("state");
    let sessions_before = (a.sessions_started(), b.sessions_started());
    let first = play_in(&state, &args);
    let sessions_first = (a.sessions_started(), b.sessions_started());
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let counts = step_counts(&first);
    assert_eq!(counts.len(), 2, "{}", text(&first));
    for host in ["alpha", "beta"] {
        // 5 unchanged fact commands, 9 changes (directories, 5 templates,
        // a line, 2 files).
        assert_eq!(counts.get(host), Some(&(5, 9, 0)), "{}", text(&first));
    }
    // Host vars reach the playbook: `address` comes from ansible_host.
    let hosts_file = std::fs::read_to_string(root.join("beta/etc/hosts")).unwrap();
    assert_eq!(hosts_file, format!("{} beta\n", b.address));
    let kubeadm = std::fs::read_to_string(root.join("alpha/etc/kubernetes/kubeadm.yaml")).unwrap();
    assert!(kubeadm.contains(&format!("advertiseAddress: {}", a.address)));
    // One log per run under the state directory, with every step, and no
    // private key material.
    let logs: Vec<_> = std::fs::read_dir(state.join("play/runs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(log.contains("kubeadm config"), "{log}");
    assert!(!log.contains("PRIVATE KEY"), "{log}");

    let second = play(&args);
    let sessions_second = (a.sessions_started(), b.sessions_started());
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    // Sessions (each a fork on the host, each but SFTP a shell) per host:
    // the 5 read-only commands and the state of the 7 directories and 8
    // files are asked in one script; the first run then creates the
    // directories in a second and writes the files through one SFTP
    // session; the no-change run needs nothing more. (Step by step, that
    // was 14 shells for each run, plus SFTP for the first.)
    let first_run = (
        sessions_first.0 - sessions_before.0,
        sessions_first.1 - sessions_before.1,
    );
    let no_change_run = (
        sessions_second.0 - sessions_first.0,
        sessions_second.1 - sessions_first.1,
    );
    eprintln!("sessions per host: first run {first_run:?}, no-change run {no_change_run:?}");
    // Bounds, not equalities: a connection that drops is opened again and
    // an idempotent command re-run, which the log counts too.
    assert!(first_run.0 <= 3 && first_run.1 <= 3, "{first_run:?}");
    assert!(
        no_change_run.0 <= 1 && no_change_run.1 <= 1,
        "{no_change_run:?}"
    );
    // Still one report per step and host, each with its own status,
    // duration and (for a changed file) diff.
    let ends = step_ends(&first);
    assert_eq!(ends.len(), 28, "{}", text(&first));
    for e in &ends {
        assert!(e["duration_ms"].is_u64(), "{e}");
        if e["module"] == "template" || e["module"] == "copy" {
            assert_eq!(e["status"], "changed", "{e}");
            let diff = e["diff"].as_str().unwrap_or_default();
            assert!(diff.contains("(after)"), "{e}");
        }
    }
    let marker = ends
        .iter()
        .find(|e| e["host"] == "beta" && e["step"] == "marker")
        .expect("marker step reported");
    assert!(marker["diff"].as_str().unwrap().contains("+"), "{marker}");
    for host in ["alpha", "beta"] {
        assert_eq!(
            step_counts(&second).get(host),
            Some(&(14, 0, 0)),
            "{}",
            text(&second)
        );
    }

    // --limit: only the `other` group runs.
    let mut limited = args.to_vec();
    limited.extend(["--limit", "other"]);
    let only_beta = play(&limited);
    assert_eq!(only_beta.status.code(), Some(0), "{}", text(&only_beta));
    let counts = step_counts(&only_beta);
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["beta"],
        "{}",
        text(&only_beta)
    );
}

#[test]
fn play_reports_an_unreachable_host_with_exit_3_while_the_others_finish() {
    let lab = Lab::new();
    let a = lab.host();
    a.pin(&a.address);
    let work = tempfile::Builder::new()
        .prefix("kubelab-play-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let inventory = work.path().join("inventory.ini");
    // `down` is the same machine on a port where nothing listens: the
    // connection is refused at once.
    std::fs::write(
        &inventory,
        format!(
            "up ansible_host={0}\ndown ansible_host={0} ansible_port=1\n\
             [all:vars]\nansible_user={TEST_USER}\nansible_ssh_private_key_file={1}\n",
            a.address,
            lab.ed25519.private.display()
        ),
    )
    .unwrap();
    let root = work.path().join("root");
    let output = play(&[
        "--json",
        concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/nodeprep-bench.yaml"),
        "-i",
        &inventory.display().to_string(),
        "--known-hosts",
        &lab.known_hosts.display().to_string(),
        "--var",
        &format!("bench_root={}", root.display()),
    ]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    let counts = step_counts(&output);
    assert_eq!(counts.get("up"), Some(&(5, 9, 0)), "{}", text(&output));
    assert!(root.join("up/prepared").exists());
    assert!(!root.join("down").exists());
    assert!(
        counts.get("down").is_some_and(|c| c.2 > 0),
        "{}",
        text(&output)
    );
}

#[test]
fn play_rejects_a_broken_inventory_with_exit_2() {
    let work = tempfile::tempdir().unwrap();
    let inventory = work.path().join("inventory.ini");
    std::fs::write(&inventory, "[unclosed\nhost\n").unwrap();
    let output = play(&[
        concat!(env!("CARGO_MANIFEST_DIR"), "/playbooks/nodeprep-bench.yaml"),
        "-i",
        &inventory.display().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 1"));
}
