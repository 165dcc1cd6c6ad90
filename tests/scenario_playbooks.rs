//! Every scenario's playbooks load (every phase, checked like any
//! playbook), and what the ratchet-cni mode renders for a real cluster —
//! which cannot run here (no Kubernetes packages, no Ratchet binaries) — is
//! pinned by golden files: the etcd manifest, a node's CNI configuration
//! and the labelled pods.

use std::collections::BTreeMap;
use std::sync::Arc;

use kubelab::inventory::UnreachableTransport;
use kubelab::scenario::ScenarioFile;
use kubelab::stage::{Phase, Stage, stage_inventory};
use kubelab::template::Templates;

/// Every phase of every registered scenario loads (checked like any
/// playbook); `break` and `repair` are optional, together.
#[test]
fn every_phase_of_every_scenario_loads() {
    let templates = Templates::default();
    for name in ScenarioFile::NAMES {
        let mut missing = Vec::new();
        for phase in Phase::ALL {
            let playbook = kubelab::stage::scenario_playbook(name, phase);
            let Ok((path, text)) = kubelab::playbook::find(&playbook, None) else {
                missing.push(phase);
                continue;
            };
            match kubelab::playbook::load_str(&path, &text, &templates) {
                Ok(book) => assert!(!book.plays.is_empty(), "{playbook} has no plays"),
                Err(d) => panic!("{playbook}:\n{}", d.render(false)),
            }
        }
        assert!(
            missing.is_empty() || missing == [Phase::Break, Phase::Repair],
            "{name} has no {missing:?} phase"
        );
    }
}

/// The playbooks take the scenario's parameters resolved: every
/// `scenario.<key>` they (or their templates) read is a key of the
/// resolved parameters, even when the lab file gives none.
#[test]
fn playbooks_read_only_resolved_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lab.yaml");
    std::fs::write(&path, LAB).unwrap();
    let (lab, _) = kubelab::lab::load(&path, &Default::default())
        .map_err(|d| d.render(false))
        .unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let key = regex::Regex::new(r"\bscenario\.([a-z_0-9]+)").unwrap();
    for name in ScenarioFile::NAMES {
        let entry: ScenarioFile =
            serde_json::from_value(serde_json::json!({"name": name, "params": {}})).unwrap();
        let resolved = entry.kind().resolved(&lab.parts());
        let serde_json::Value::Object(resolved) = resolved else {
            panic!("{name}: resolved parameters are not a mapping: {resolved}");
        };
        for dir in ["playbooks/scenarios", "templates/scenarios"] {
            let Ok(files) = std::fs::read_dir(root.join(dir).join(name)) else {
                continue;
            };
            for file in files {
                let file = file.unwrap().path();
                let text = std::fs::read_to_string(&file).unwrap();
                for k in key.captures_iter(&text) {
                    assert!(
                        resolved.contains_key(&k[1]),
                        "{}: `scenario.{}` is not a resolved parameter of {name}",
                        file.display(),
                        &k[1]
                    );
                }
            }
        }
    }
}

const LAB: &str = r#"
name: rc
virthost: {local: true}
image: {build: debian-12}
networks: [{name: lan, kind: nat, ipv4: 192.168.123.0/24}]
vms:
  - {name: cp, roles: [control-plane], nics: [{network: lan, ipv4: 192.168.123.10}]}
  - {name: w-1, roles: [worker], nics: [{network: lan, ipv4: 192.168.123.11}]}
  - {name: w-2, roles: [worker], nics: [{network: lan, ipv4: 192.168.123.12}]}
kubernetes: {version: "1.31", runtime: crio, cni: flannel}
scenarios:
  - name: ratchet-pairs
    params:
      mode: ratchet-cni
      binaries_url: https://example.org/ratchet.tar.gz
      binaries_sha256: 0000000000000000000000000000000000000000000000000000000000000000
      pairs:
        - primary: {name: primary-pod, vm: w-1, ip: 192.168.2.100/24, ifname: in1}
          pair: {name: pair-pod, vm: w-2, ip: 192.168.2.101/24, ifname: in2}
"#;

/// The variables a template sees on `host` in the ratchet-cni setup.
fn context(host: &str) -> minijinja::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rc.yaml");
    std::fs::write(&path, LAB).unwrap();
    let (lab, _) = kubelab::lab::load(&path, &Default::default())
        .map_err(|d| d.render(false))
        .unwrap();
    let stage = Stage::scenario(&lab, &lab.scenarios[0], Phase::Setup);
    let inv = stage_inventory(
        &lab,
        &stage,
        None,
        |n| Arc::new(UnreachableTransport::new(n, "offline")),
        Arc::new(UnreachableTransport::new("virthost", "offline")),
    );
    let mut hostvars = BTreeMap::new();
    for h in &inv.hosts {
        let mut m = inv.vars.clone();
        m.extend(h.vars.clone());
        hostvars.insert(
            h.name.clone(),
            serde_json::Value::Object(m.into_iter().collect()),
        );
    }
    let mut ctx = match hostvars[host].clone() {
        serde_json::Value::Object(m) => m,
        _ => unreachable!(),
    };
    ctx.insert("inventory_hostname".into(), host.into());
    ctx.insert("hostvars".into(), serde_json::to_value(&hostvars).unwrap());
    ctx.insert("groups".into(), serde_json::to_value(inv.groups()).unwrap());
    ctx.insert("etcd_image".into(), "registry.k8s.io/etcd:3.5.16-0".into());
    ctx.insert("pod_image".into(), "docker.io/library/busybox:1.36".into());
    ctx.insert("etcd_host".into(), "10.96.12.34".into());
    ctx.insert("parent_interface".into(), "eth0".into());
    minijinja::Value::from(minijinja::value::Serde(serde_json::Value::Object(ctx)))
}

#[test]
fn ratchet_cni_install_renders_as_the_golden_files() {
    let templates = Templates::default();
    let render = |name: &str, host: &str| {
        templates
            .render_file(&format!("scenarios/ratchet-pairs/{name}"), &context(host))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let conf = render("ratchet.conf.j2", "w-1");
    let parsed: serde_json::Value =
        serde_json::from_str(&conf).expect("the CNI configuration is JSON");
    assert_eq!(parsed["type"], "ratchet");
    assert_eq!(parsed["parent_address"], "192.168.123.11");
    assert_eq!(parsed["delegate"]["type"], "flannel");
    assert_eq!(parsed["boot_network"]["type"], "loopback");
    insta::assert_snapshot!("ratchet_cni_conf_w1", conf);

    let pods = render("pods.yaml.j2", "cp");
    assert_eq!(pods.matches("kind: Pod").count(), 2);
    assert!(pods.contains("ratchet.primary: \"true\""), "{pods}");
    assert!(
        pods.contains("ratchet.pair_ip: \"192.168.2.101\""),
        "{pods}"
    );
    assert!(
        pods.contains("ratchet.public_ip: \"192.168.123.12\""),
        "{pods}"
    );
    insta::assert_snapshot!("ratchet_cni_pods", pods);

    let etcd = render("etcd.yaml.j2", "cp");
    assert!(etcd.contains("name: etcd-client"), "{etcd}");
    insta::assert_snapshot!("ratchet_cni_etcd", etcd);
}
