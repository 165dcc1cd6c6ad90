//! The cluster scenarios of issue 7 (ipv6-ping6, glusterfs, crio-buildah)
//! offline: every built-in playbook loads; the stage gives each scenario its
//! groups with defaults resolved; the Kubernetes-mode manifests and heketi's
//! topology render from the shipped lab files exactly as a run would (lab,
//! stage and play variables, `hostvars`, registered values) and parse back
//! as what they claim to be. The host modes run for real on the test bed
//! (tests/testbed/storage.rs).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kubelab::inventory::{Inventory, UnreachableTransport};
use kubelab::lab::Lab;
use kubelab::playbook::{self, Playbook};
use kubelab::stage::{Phase, Stage, stage_inventory};
use kubelab::state::{Inventory as StateInventory, VmRecord};
use kubelab::template::Templates;
use kubelab::transport::Transport;
use minijinja::Value;
use serde_json::json;

fn load_lab(path: &str) -> Lab {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    kubelab::lab::load(&path, &Default::default())
        .map_err(|e| e.render(false))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .0
}

fn lab_from(text: &str) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lab.yaml");
    std::fs::write(&path, text).unwrap();
    kubelab::lab::load(&path, &Default::default())
        .map_err(|e| e.render(false))
        .unwrap()
        .0
}

/// The lab as `up` leaves it: every VM answered with the static IPv4 of its
/// first NIC (else 192.0.2.<n>) and an IPv6 address of the lab network.
fn state_of(lab: &Lab) -> StateInventory {
    let vms = lab
        .vms
        .iter()
        .enumerate()
        .map(|(i, vm)| {
            let v4 = vm
                .nics
                .first()
                .and_then(|n| n.ipv4)
                .unwrap_or_else(|| format!("192.0.2.{}", 10 + i).parse().unwrap());
            let v6 = format!("fd00:99::{:x}", 0x10 + i).parse().unwrap();
            VmRecord {
                name: vm.name.clone(),
                roles: vm.roles.clone(),
                address: v4.to_string(),
                ipv4: vec![v4],
                ipv6: vec![v6],
                macs: Vec::new(),
                disks: Vec::new(),
                host_key: String::new(),
            }
        })
        .collect();
    StateInventory {
        lab: lab.name.clone(),
        user: "debian".into(),
        virthost: "local".into(),
        vms,
    }
}

fn scenario_stage(lab: &Lab, name: &str, phase: Phase) -> Stage {
    let s = lab
        .scenarios
        .iter()
        .find(|s| s.name() == name)
        .unwrap_or_else(|| panic!("lab {} has no scenario {name}", lab.name));
    Stage::scenario(lab, s, phase)
}

fn inventory(lab: &Lab, stage: &Stage) -> Inventory {
    let state = state_of(lab);
    stage_inventory(
        lab,
        stage,
        Some(&state),
        |n| -> Arc<dyn Transport> { Arc::new(UnreachableTransport::new(n, "offline")) },
        Arc::new(UnreachableTransport::new("virthost", "offline")),
    )
}

fn builtin(name: &str) -> Playbook {
    let (path, text) = playbook::find(name, None).unwrap();
    playbook::load_str(&path, &text, &Templates::default())
        .map_err(|d| d.render(false))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// What a template sees on `host` in the play named `play` of the stage's
/// playbook: lab and stage variables, the host's, `groups`, `hostvars`,
/// then the play's variables rendered in order, then `registered` values.
fn play_context(
    lab: &Lab,
    stage: &Stage,
    play: &str,
    host: &str,
    registered: serde_json::Value,
) -> Value {
    let inv = inventory(lab, stage);
    let templates = Templates::default();
    let h = inv
        .hosts
        .iter()
        .find(|h| h.name == host)
        .unwrap_or_else(|| panic!("no host {host}"));
    let to_value = |v: &serde_json::Value| Value::from(minijinja::value::Serde(v));
    let mut hostvars = BTreeMap::new();
    for other in &inv.hosts {
        let mut m: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in inv.vars.iter().chain(other.vars.iter()) {
            m.insert(k.clone(), to_value(v));
        }
        m.insert("inventory_hostname".into(), Value::from(other.name.clone()));
        hostvars.insert(other.name.clone(), Value::from(m));
    }
    let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
    for (k, v) in inv.vars.iter().chain(h.vars.iter()) {
        ctx.insert(k.clone(), to_value(v));
    }
    ctx.insert("inventory_hostname".into(), Value::from(host));
    ctx.insert(
        "groups".into(),
        Value::from(minijinja::value::Serde(inv.groups())),
    );
    ctx.insert("hostvars".into(), Value::from(hostvars));
    let book = builtin(&stage.playbook);
    let p = book
        .plays
        .iter()
        .find(|p| p.name == play)
        .unwrap_or_else(|| panic!("{}: no play `{play}`", stage.playbook));
    for (k, v) in p.vars.iter() {
        let rendered =
            kubelab::executor::render_json(&templates, v, &Value::from(ctx.clone())).unwrap();
        ctx.insert(k.clone(), to_value(&rendered));
    }
    if let serde_json::Value::Object(m) = registered {
        for (k, v) in m {
            ctx.insert(k, to_value(&v));
        }
    }
    Value::from(ctx)
}

fn render(template: &str, ctx: &Value) -> String {
    Templates::default()
        .render_file(template, ctx)
        .unwrap_or_else(|e| panic!("{template}: {e}"))
}

/// Every YAML document of a manifest, as JSON values.
fn documents(text: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn kind<'a>(docs: &'a [serde_json::Value], kind: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {docs:?}"))
}

/// Every built-in playbook loads; every scenario's phases are
/// tests/scenario_playbooks.rs's.
#[test]
fn every_builtin_playbook_loads() {
    for (name, _) in playbook::EMBEDDED {
        builtin(name);
    }
}

#[test]
fn stage_groups_resolve_the_defaults() {
    let lab = lab_from(
        r#"
name: t
virthost: local
image: {build: debian-12}
networks: [{name: lan, ipv4: 10.9.0.0/24, ipv6: "fd00:9::/64"}]
vms:
  - {name: cp, roles: [control-plane]}
  - {name: nat, roles: [nat64]}
  - {name: "s-{1..3}", roles: [worker, storage], spare_disks: [{size: 1GiB}]}
kubernetes: {ip_family: dual, runtime: crio}
scenarios:
  - {name: glusterfs, params: {mode: kubernetes}}
  - {name: crio-buildah}
  - {name: ipv6-ping6, params: {through_nat64: true}}
"#,
    );
    let groups = |name: &str| inventory(&lab, &scenario_stage(&lab, name, Phase::Setup)).groups();
    let g = groups("glusterfs");
    assert_eq!(g["gluster_storage"], ["s-1", "s-2", "s-3"]);
    assert_eq!(g["gluster_client"], ["cp"], "first VM not storing");
    assert_eq!(groups("crio-buildah")["crio_node"], ["s-1"], "first worker");
    let g = groups("ipv6-ping6");
    assert_eq!(g["ping6_nodes"], ["s-1", "s-2"], "first two workers");
    assert_eq!(g["nat64"], ["nat"]);
    // Named VMs win over roles, and unset parameters reach the playbooks
    // resolved.
    let stage = scenario_stage(
        &load_lab("tests/labs/e2e/testbed-storage.yaml"),
        "glusterfs",
        Phase::Verify,
    );
    assert_eq!(stage.groups["gluster_storage"], ["node-1", "node-2"]);
    assert_eq!(stage.groups["gluster_client"], ["node-3"]);
    assert_eq!(stage.vars["scenario"]["mode"], "host");
    assert_eq!(stage.vars["scenario"]["replica"], 2, "both storage VMs");
}

#[test]
fn gluster_topology_and_manifests_from_the_lab() {
    let lab = load_lab("labs/gluster.yaml");
    assert_eq!(
        lab.kubernetes.as_ref().unwrap().minor(),
        25,
        "in-tree provisioner pinned"
    );
    let stage = scenario_stage(&lab, "glusterfs", Phase::Setup);
    let play = "GlusterFS pods and heketi (Kubernetes mode)";
    let key = "0123456789abcdef0123456789abcdef0123456789abcdef";
    let ctx = play_context(
        &lab,
        &stage,
        play,
        "master",
        json!({"heketi_admin_secret": {"stdout": key}}),
    );

    // The topology: every storage VM under its node name, at its address,
    // with exactly its spare disks as devices.
    let topology: serde_json::Value =
        serde_json::from_str(&render("scenarios/glusterfs/topology.json.j2", &ctx)).unwrap();
    let nodes = topology["clusters"][0]["nodes"].as_array().unwrap();
    let storage: Vec<&kubelab::lab::model::Vm> =
        lab.vms.iter().filter(|v| v.has_role("storage")).collect();
    assert_eq!(nodes.len(), storage.len());
    for (i, (node, vm)) in nodes.iter().zip(&storage).enumerate() {
        assert_eq!(node["node"]["hostnames"]["manage"], json!([vm.name]));
        let addr = vm.nics[0].ipv4.unwrap().to_string();
        assert_eq!(node["node"]["hostnames"]["storage"], json!([addr]));
        assert_eq!(node["node"]["zone"], i + 1);
        let devices: Vec<String> = vm
            .spare_disks
            .iter()
            .map(|d| format!("/dev/{}", d.dev))
            .collect();
        let listed: Vec<&str> = node["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap())
            .collect();
        assert_eq!(listed, devices, "{}", vm.name);
        assert!(
            node["devices"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["destroydata"] == false)
        );
    }
    assert_eq!(
        nodes[2]["node"]["hostnames"]["storage"],
        json!(["192.168.157.13"])
    );

    // heketi's configuration carries the generated key for admin and user.
    let config: serde_json::Value =
        serde_json::from_str(&render("scenarios/glusterfs/heketi.json.j2", &ctx)).unwrap();
    assert_eq!(config["use_auth"], true);
    assert_eq!(config["jwt"]["admin"]["key"], key);
    assert_eq!(config["glusterfs"]["executor"], "kubernetes");
    let secret = documents(&render(
        "scenarios/glusterfs/heketi-admin-secret.yaml.j2",
        &ctx,
    ));
    assert_eq!(secret[0]["type"], "kubernetes.io/glusterfs");
    let encoded = secret[0]["data"]["key"].as_str().unwrap();
    assert_eq!(
        data_encoding::BASE64.decode(encoded.as_bytes()).unwrap(),
        key.as_bytes(),
        "the key, base64"
    );

    // GlusterFS pods only on labelled nodes, on the host network, found by
    // heketi through their label.
    let ds = documents(&render(
        "scenarios/glusterfs/glusterfs-daemonset.yaml.j2",
        &ctx,
    ));
    assert_eq!(
        kind(&ds, "Namespace")["metadata"]["name"],
        "kubelab-gluster"
    );
    let ds = kind(&ds, "DaemonSet");
    let pod = &ds["spec"]["template"];
    assert_eq!(
        pod["spec"]["nodeSelector"],
        json!({"storagenode": "glusterfs"})
    );
    assert_eq!(pod["metadata"]["labels"]["glusterfs-node"], "pod");
    assert_eq!(pod["spec"]["hostNetwork"], true);
    assert_eq!(
        pod["spec"]["containers"][0]["securityContext"]["privileged"],
        true
    );
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "docker.io/gluster/gluster-centos:latest"
    );

    // Bootstrap and final heketi: the same container, the database first in
    // the pod, then on the GlusterFS volume heketidbstorage.
    for (template, name, db) in [
        (
            "heketi-bootstrap.yaml.j2",
            "deploy-heketi",
            json!({"name": "db", "emptyDir": {}}),
        ),
        (
            "heketi.yaml.j2",
            "heketi",
            json!({"name": "db", "glusterfs": {"endpoints": "heketi-storage-endpoints", "path": "heketidbstorage"}}),
        ),
    ] {
        let text = render(&format!("scenarios/glusterfs/{template}"), &ctx);
        let docs = documents(&text);
        let deploy = kind(&docs, "Deployment");
        assert_eq!(deploy["metadata"]["name"], name);
        let spec = &deploy["spec"]["template"]["spec"];
        assert_eq!(spec["serviceAccountName"], "heketi-service-account");
        assert_eq!(spec["volumes"][0], db, "{template}");
        assert_eq!(spec["volumes"][1]["secret"]["secretName"], "heketi-config");
        let c = &spec["containers"][0];
        assert_eq!(c["image"], "docker.io/heketi/heketi:9");
        let env: BTreeMap<String, serde_json::Value> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_string(), e.clone()))
            .collect();
        assert_eq!(env["HEKETI_EXECUTOR"]["value"], "kubernetes");
        assert_eq!(
            env["HEKETI_CLI_KEY"]["valueFrom"]["secretKeyRef"],
            json!({"name": "heketi-admin", "key": "key"}),
            "the key reaches heketi-cli from the secret, never a command line"
        );
        assert_eq!(kind(&docs, "Service")["spec"]["ports"][0]["port"], 8080);
        assert!(
            !serde_json::to_string(&docs).unwrap().contains(key),
            "{template} leaks the key"
        );
    }

    // The StorageClass points at heketi's ClusterIP (bracketed when IPv6).
    let stage_sc = "the StorageClass (Kubernetes mode)";
    for (ip, url) in [
        ("10.96.3.4", "http://10.96.3.4:8080"),
        ("fd00:10:96::3", "http://[fd00:10:96::3]:8080"),
    ] {
        let ctx = play_context(
            &lab,
            &stage,
            stage_sc,
            "master",
            json!({"heketi_service": {"stdout": ip}}),
        );
        let sc = documents(&render("scenarios/glusterfs/storageclass.yaml.j2", &ctx));
        let sc = kind(&sc, "StorageClass");
        assert_eq!(sc["provisioner"], "kubernetes.io/glusterfs");
        assert_eq!(sc["metadata"]["name"], "glusterfs");
        assert_eq!(sc["parameters"]["resturl"], url);
        assert_eq!(sc["parameters"]["restuser"], "admin");
        assert_eq!(sc["parameters"]["secretName"], "heketi-admin");
        assert_eq!(sc["parameters"]["volumetype"], "replicate:3");
    }

    // The verify's claim and MySQL StatefulSet use the StorageClass.
    let verify = scenario_stage(&lab, "glusterfs", Phase::Verify);
    let ctx = play_context(
        &lab,
        &verify,
        "dynamic provisioning (Kubernetes mode)",
        "master",
        json!({}),
    );
    let claim = documents(&render("scenarios/glusterfs/claim.yaml.j2", &ctx));
    assert_eq!(claim[0]["spec"]["storageClassName"], "glusterfs");
    let mysql = documents(&render("scenarios/glusterfs/mysql.yaml.j2", &ctx));
    let sts = kind(&mysql, "StatefulSet");
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"],
        "glusterfs"
    );
    assert_eq!(
        sts["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/lib/mysql"
    );
    assert_eq!(kind(&mysql, "Service")["spec"]["clusterIP"], "None");
}

#[test]
fn ping6_workload_pins_two_pods_and_an_ipv6_service() {
    let lab = lab_from(
        r#"
name: v6
virthost: local
image: {build: debian-12}
networks: [{name: lan, ipv4: 10.9.0.0/24, ipv6: "fd00:9::/64"}]
vms:
  - {name: cp, roles: [control-plane]}
  - {name: "w-{1..3}", roles: [worker]}
kubernetes: {ip_family: ipv6}
scenarios:
  - {name: ipv6-ping6, params: {nodes: [w-3, w-1]}}
"#,
    );
    let stage = scenario_stage(&lab, "ipv6-ping6", Phase::Setup);
    let ctx = play_context(
        &lab,
        &stage,
        "ping6 pods and service (Kubernetes mode)",
        "cp",
        json!({}),
    );
    let docs = documents(&render("scenarios/ipv6-ping6/workload.yaml.j2", &ctx));
    let pods: Vec<(&str, &str)> = docs
        .iter()
        .filter(|d| d["kind"] == "Pod")
        .map(|d| {
            (
                d["metadata"]["name"].as_str().unwrap(),
                d["spec"]["nodeName"].as_str().unwrap(),
            )
        })
        .collect();
    // Groups keep the lab's order: the client runs on the first of the two.
    assert_eq!(pods, [("ping6-client", "w-1"), ("ping6-server", "w-3")]);
    let svc = kind(&docs, "Service");
    assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv6"]));
    assert_eq!(svc["spec"]["ipFamilyPolicy"], "SingleStack");
    assert_eq!(
        svc["spec"]["selector"],
        json!({"kubelab.io/role": "server"})
    );
    assert!(
        docs.iter()
            .all(|d| d["kind"] == "Namespace" || d["metadata"]["namespace"] == "kubelab-ping6")
    );
    // The mode follows the lab: Kubernetes here, so the pod plays run.
    assert_eq!(
        Templates::default()
            .eval(
                "scenario.mode | default('kubernetes' if kubernetes is defined else 'host', true)",
                &ctx
            )
            .unwrap()
            .to_string(),
        "kubernetes"
    );
}

#[test]
fn crio_pod_runs_the_local_image_on_the_labelled_node() {
    let lab = load_lab("labs/crio.yaml");
    let stage = scenario_stage(&lab, "crio-buildah", Phase::Setup);
    let ctx = play_context(
        &lab,
        &stage,
        "run the image in a pod (Kubernetes mode)",
        "master",
        json!({}),
    );
    let docs = documents(&render("scenarios/crio-buildah/pod.yaml.j2", &ctx));
    let pod = kind(&docs, "Pod");
    assert_eq!(pod["spec"]["nodeSelector"], json!({"beefylevel": "expert"}));
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], "localhost/kubelab/crio-demo:latest");
    assert_eq!(c["imagePullPolicy"], "Never");
    assert_eq!(stage.groups["crio_node"], ["node-1"]);

    // The Containerfile: FROM scratch, the node's busybox, the message.
    let build = play_context(
        &lab,
        &stage,
        "build the image with buildah",
        "node-1",
        json!({}),
    );
    let file = render("scenarios/crio-buildah/Containerfile.j2", &build);
    assert!(file.contains("\nFROM scratch\n"), "{file}");
    assert!(file.contains("COPY busybox /bin/busybox"), "{file}");
    assert!(
        file.contains(
            r#"ENV KUBELAB_MESSAGE="kubelab crio-buildah: hello from an image built by buildah""#
        ),
        "{file}"
    );
    // A label with a prefix splits at the `=` only.
    let custom = lab_from(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("labs/crio.yaml"))
            .unwrap()
            .replace(
                "node_label: beefylevel=expert",
                "node_label: example.com/tier=a-b",
            ),
    );
    let stage = scenario_stage(&custom, "crio-buildah", Phase::Setup);
    let ctx = play_context(
        &custom,
        &stage,
        "run the image in a pod (Kubernetes mode)",
        "master",
        json!({}),
    );
    let docs = documents(&render("scenarios/crio-buildah/pod.yaml.j2", &ctx));
    assert_eq!(
        kind(&docs, "Pod")["spec"]["nodeSelector"],
        json!({"example.com/tier": "a-b"})
    );
}

#[test]
fn heketi_key_only_passes_through_secret_steps() {
    let book = builtin("scenarios/glusterfs/setup");
    let mut touching = 0;
    for play in &book.plays {
        for step in &play.steps {
            let params = step.params.to_string();
            let handles_key = step.register.as_deref() == Some("heketi_admin_secret")
                || params.contains("heketi.json.j2")
                || params.contains("heketi-admin-secret.yaml.j2");
            if handles_key {
                touching += 1;
                assert!(
                    step.secret,
                    "step `{}` handles heketi's key but is not secret",
                    step.name
                );
            }
        }
    }
    assert_eq!(touching, 3, "read, heketi.json, the Secret manifest");
    // The register name alone makes the value redacted too.
    assert!(kubelab::redact::is_secret_name("heketi_admin_secret"));
}
