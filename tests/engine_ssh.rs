//! The playbook engine over the SSH transport, against real OpenSSH
//! servers in network namespaces (see `support`). Runs as root.

#[path = "support/sshd.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use kubelab::executor::{Executor, RunOptions};
use kubelab::inventory::{Host, Inventory, UnreachableTransport};
use kubelab::output::{Reporter, Status};
use kubelab::playbook;
use kubelab::redact::Redactor;
use kubelab::template::Templates;
use kubelab::transport::{SshTransport, Transport};
use support::{Lab, TEST_USER};

async fn connect(lab: &Lab, name: &str, address: &str, user: &str) -> Arc<dyn Transport> {
    Arc::new(
        SshTransport::connect(lab.target(name, address, user))
            .await
            .unwrap_or_else(|e| panic!("connect {name}: {e}")),
    )
}

#[tokio::test]
async fn bench_playbook_over_ssh_then_idempotent_and_become_as_a_user() {
    let lab = Lab::new();
    let a = lab.host();
    let b = lab.host();
    a.pin(&a.address);
    b.pin(&b.address);
    let tag = format!("kle{}", std::process::id());
    let names = [format!("{tag}a"), format!("{tag}b")];
    // The work tree, writable by the test user (who logs in with /bin/sh:
    // root's login shell may run arbitrary start-up files).
    let work = tempfile::Builder::new()
        .prefix("kubelab-engine-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut inv = Inventory::new(
        [(
            "bench_root".to_string(),
            serde_json::json!(work.path().display().to_string()),
        )]
        .into(),
    );
    for (name, host) in names.iter().zip([&a, &b]) {
        let mut vars = kubelab::lab::model::Vars::new();
        vars.insert("address".into(), host.address.clone().into());
        inv.add(Host {
            name: name.clone(),
            groups: vec!["node".into()],
            vars,
            transport: connect(&lab, name, &host.address, TEST_USER).await,
        });
    }
    // A host that cannot be reached: the others still run, exit code 3.
    let mut bad_target = lab.target("down", &lab.unused_address(), "root");
    bad_target.connect_attempts = 1;
    bad_target.connect_timeout = std::time::Duration::from_secs(1);
    let err = match SshTransport::connect(bad_target).await {
        Ok(_) => panic!("connected to an unused address"),
        Err(e) => e,
    };
    assert!(err.is_unreachable(), "{err}");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/nodeprep-bench.yaml"
    ))
    .unwrap();
    let templates = Arc::new(Templates::default());
    let pb = playbook::load_str(Path::new("nodeprep-bench.yaml"), &text, &templates).unwrap();
    let run = |inv: Inventory| {
        let exec = Executor::new(
            inv,
            templates.clone(),
            Arc::new(Reporter::new(Redactor::new())),
            RunOptions::default(),
        );
        let pb = pb.clone();
        async move { exec.run(&pb).await }
    };
    let mut with_down = inv.clone();
    with_down.add(Host {
        name: "down".into(),
        groups: vec![],
        vars: Default::default(),
        transport: Arc::new(UnreachableTransport::from_error("down", &err)),
    });
    let first = run(with_down).await;
    assert_eq!(first.exit_code(), 3, "{}", first.summary.render());
    for n in &names {
        let root = work.path().join(n).display().to_string();
        let kubeadm =
            std::fs::read_to_string(format!("{root}/etc/kubernetes/kubeadm.yaml")).unwrap();
        assert!(kubeadm.contains(&format!("name: {n}\n")));
        assert_eq!(
            std::fs::metadata(format!("{root}/etc/kubernetes/kubeadm.yaml"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    let second = run(inv.clone()).await;
    assert!(second.success(), "{}", second.summary.render());
    eprintln!(
        "bench over ssh, 2 hosts: first run {} ms, second run {} ms",
        first.summary.duration_ms, second.summary.duration_ms
    );
    assert_eq!(second.changed_count(), 0);

    // become: a non-root login user writes a root-owned file through sudo.
    let dir = tempfile::Builder::new()
        .prefix("kubelab-engine-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut user_inv = Inventory::new(Default::default());
    user_inv.add(Host {
        name: "user".into(),
        groups: vec![],
        vars: [(
            "dir".to_string(),
            serde_json::json!(dir.path().display().to_string()),
        )]
        .into(),
        transport: connect(&lab, "user", &a.address, TEST_USER).await,
    });
    let pb2 = playbook::load_str(
        Path::new("become.yaml"),
        r#"
- name: become
  hosts: all
  steps:
    - name: as root
      copy: { dest: "{{ dir }}/root-file", content: "x\n", mode: "0600" }
    - name: who
      command: [id, -un]
      register: who
      changed_when: false
    - name: as the user
      command: [id, -un]
      become: false
      register: me
      changed_when: false
    - name: check
      assert: { that: ["who.stdout == 'root'", "me.stdout == '{{ user }}'"] }
"#
        .replace("{{ user }}", TEST_USER)
        .as_str(),
        &templates,
    )
    .unwrap();
    let exec = Executor::new(
        user_inv,
        templates.clone(),
        Arc::new(Reporter::new(Redactor::new())),
        RunOptions::default(),
    );
    let r = exec.run(&pb2).await;
    assert!(r.success(), "{}", r.summary.render());
    assert_eq!(r.records[0].status, Status::Changed);
    let meta = std::fs::metadata(dir.path().join("root-file")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}
