//! Golden plans of the Kubernetes stages, rendered offline (no hosts): for
//! every lab in `labs/` with a cluster, with each container runtime and IP
//! family (and the lab as written on a RHEL-like distribution), every step
//! per host with its parameters and templated files, compared with
//! snapshots under `tests/snapshots/`. Every rendered kubeadm document is
//! parsed back through the typed models, and must be byte for byte what the
//! typed layer renders for that node itself.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kubelab::facts::{Address, Facts, PackageManager};
use kubelab::inventory::UnreachableTransport;
use kubelab::kubernetes::api::{Document, parse_documents};
use kubelab::kubernetes::stage::{ClusterSecrets, kubernetes_stage};
use kubelab::kubernetes::{
    BootstrapToken, CaCertHash, CertificateKey, ClusterFacts, JoinSecrets, KubeadmApi,
    KubeadmContext, NodeRole,
};
use kubelab::lab::{Lab, LoadOptions, load_str};
use kubelab::nat64;
use kubelab::stage::{Stage, stage_inventory};
use kubelab::template::Templates;

#[path = "support/offline.rs"]
mod offline;

use offline::{Assumptions, OfflinePlan};

const TOKEN: &str = "abcdef.0123456789abcdef";
const CA_HASH: &str = "sha256:1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f1f";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Distro {
    Debian,
    Rocky,
}

fn secrets() -> ClusterSecrets {
    ClusterSecrets {
        token: BootstrapToken::parse(TOKEN).unwrap(),
        certificate_key: CertificateKey::parse(&"0a".repeat(32)).unwrap(),
    }
}

/// The release the packages would install for the lab's version.
fn installed_release(lab: &Lab) -> String {
    let k = lab.kubernetes.as_ref().unwrap();
    if k.version.split('.').count() == 3 {
        format!("v{}", k.version)
    } else {
        format!("v{}.3", k.version)
    }
}

fn facts(lab: &Lab, vm: &str, distro: Distro) -> Facts {
    let mut addresses = Vec::new();
    for nic in &lab.vm(vm).unwrap().nics {
        if let Some(a) = nic.ipv4 {
            addresses.push(Address {
                interface: "eth0".into(),
                family: "inet".into(),
                cidr: format!("{a}/24"),
                address: a.to_string(),
            });
        }
        if let Some(a) = nic.ipv6 {
            addresses.push(Address {
                interface: "eth0".into(),
                family: "inet6".into(),
                cidr: format!("{a}/64"),
                address: a.to_string(),
            });
        }
    }
    let (id, version, codename, like, family, pm) = match distro {
        Distro::Debian => (
            "debian",
            "12",
            "bookworm",
            "",
            "debian",
            PackageManager::Apt,
        ),
        Distro::Rocky => (
            "rocky",
            "9.4",
            "",
            "rhel centos fedora",
            "redhat",
            PackageManager::Dnf,
        ),
    };
    Facts {
        distro_id: id.into(),
        distro_version: version.into(),
        distro_like: like.into(),
        distro_codename: codename.into(),
        family: family.into(),
        package_manager: pm,
        arch: "x86_64".into(),
        kernel: "6.1.0".into(),
        hostname: vm.into(),
        memory_mib: 2000,
        systemd: true,
        is_root: true,
        addresses,
    }
}

/// A first run on fresh hosts: kubeadm installed at the lab's version, a CA
/// on the first control plane, no cluster before init, no node joined yet,
/// no firewall.
fn assumptions(lab: &Lab, distro: Distro) -> Assumptions {
    let registered = BTreeMap::from([
        (
            "kubeadm_installed".to_string(),
            serde_json::json!({"stdout": installed_release(lab), "changed": false}),
        ),
        (
            "kube_ca_hash".to_string(),
            serde_json::json!({"stdout": CA_HASH, "changed": false}),
        ),
        (
            "kube_joined".to_string(),
            serde_json::json!({"rc": 1, "changed": false}),
        ),
        (
            "kube_vip_cluster".to_string(),
            serde_json::json!({"rc": 1, "changed": false}),
        ),
        (
            "firewalld".to_string(),
            serde_json::json!({"rc": 1, "changed": false}),
        ),
        (
            "ufw".to_string(),
            serde_json::json!({"rc": 1, "changed": false}),
        ),
    ]);
    Assumptions {
        facts: lab
            .vms
            .iter()
            .map(|v| (v.name.clone(), facts(lab, &v.name, distro)))
            .collect(),
        registered,
        ..Assumptions::default()
    }
}

fn offline_plan(lab: &Lab, stage: &Stage, distro: Distro) -> OfflinePlan {
    let templates = Templates::default();
    let (path, text) = kubelab::playbook::find(&stage.playbook, None).unwrap();
    let playbook = kubelab::playbook::load_str_in(&path, &text, &templates, None)
        .map_err(|d| d.render(false))
        .unwrap();
    let inventory = stage_inventory(
        lab,
        stage,
        None,
        |vm| Arc::new(UnreachableTransport::new(vm, "offline")),
        Arc::new(UnreachableTransport::new("virthost", "offline")),
    );
    let plan = offline::render(&playbook, &inventory, &templates, &assumptions(lab, distro))
        .unwrap_or_else(|e| panic!("{}: {e}", lab.name));
    let errors = plan.errors();
    assert!(errors.is_empty(), "{}: {errors:#?}", lab.name);
    plan
}

/// Every kubeadm file of the plan parses through the typed models and is
/// exactly what the typed layer renders for that node.
fn check_kubeadm_files(lab: &Lab, plan: &OfflinePlan) -> usize {
    let k = lab.kubernetes.as_ref().unwrap();
    let api = KubeadmApi::for_minor(k.minor());
    let mut facts = ClusterFacts::from_lab(lab);
    facts.set_kubeadm_version(&installed_release(lab)).unwrap();
    let join = JoinSecrets {
        token: secrets().token,
        certificate_key: Some(secrets().certificate_key),
        ca_cert_hashes: vec![CaCertHash::parse(CA_HASH).unwrap()],
    };
    let mut seen = 0;
    for host in &plan.hosts {
        for step in &host.steps {
            for item in &step.items {
                let dest = item.params["template"]["dest"].as_str().unwrap_or("");
                if !dest.starts_with("/etc/kubernetes/kubelab/kubeadm-") {
                    continue;
                }
                let text = item.content.as_deref().unwrap();
                let docs = parse_documents(text)
                    .unwrap_or_else(|e| panic!("{} {}: {e}\n{text}", lab.name, host.host));
                let vm = lab.vm(&host.host).unwrap();
                let ctx = KubeadmContext::for_node_with(lab, vm, &facts, Some(&join)).unwrap();
                let kinds: Vec<&str> = docs.iter().map(Document::kind).collect();
                match ctx.role {
                    NodeRole::Init => assert_eq!(
                        kinds,
                        [
                            "InitConfiguration",
                            "ClusterConfiguration",
                            "KubeletConfiguration",
                            "KubeProxyConfiguration"
                        ]
                    ),
                    _ => assert_eq!(kinds, ["JoinConfiguration"]),
                }
                for d in &docs {
                    if let Document::Init(a, _) | Document::Cluster(a, _) | Document::Join(a, _) = d
                    {
                        assert_eq!(*a, api, "{} {}", lab.name, host.host);
                    }
                }
                assert_eq!(
                    ctx.render().unwrap().text,
                    text,
                    "{} {}: the playbook's file differs from the typed layer's",
                    lab.name,
                    host.host
                );
                seen += 1;
            }
        }
    }
    seen
}

fn labs() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("labs");
    let mut labs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    labs.sort();
    labs
}

fn load(path: &Path, text: &str) -> Lab {
    match load_str(path, text, &LoadOptions::default()) {
        Ok((lab, _)) => lab,
        Err(d) => panic!("{}:\n{}", path.display(), d.render(false)),
    }
}

/// The lab with another runtime and IP family (a kube-vip VIP moves to the
/// network's IPv6 prefix when IPv6 is the primary family), without its
/// scenarios (their playbooks are not part of these plans, and some only
/// accept one runtime).
fn variant(text: &str, runtime: &str, family: &str) -> String {
    let mut in_scenarios = false;
    text.lines()
        .filter(|l| {
            let top = !l.starts_with([' ', '-', '#']) && !l.is_empty();
            if top {
                in_scenarios = l.starts_with("scenarios:");
            }
            !in_scenarios
        })
        .map(|l| {
            let t = l.trim_start();
            let pad = &l[..l.len() - t.len()];
            if t.starts_with("runtime: ") {
                format!("{pad}runtime: {runtime}")
            } else if t.starts_with("ip_family: ") {
                format!("{pad}ip_family: {family}")
            } else if family == "ipv6" && t.contains("vip: 192.168.") {
                let (head, _) = l.split_once("vip: ").unwrap();
                let third = t.split('.').nth(2).unwrap();
                format!("{head}vip: \"fd00:{third}::100\"}}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn stage_plans(lab: &Lab, distro: Distro) -> (String, usize) {
    let state = PathBuf::from(format!("/home/user/.local/state/kubelab/{}", lab.name));
    let mut text = String::new();
    let mut stages = Vec::new();
    if !lab.group(nat64::SERVER_GROUP).is_empty() {
        stages.push(nat64::stage(lab, "nat64", None).unwrap());
    }
    stages.push(kubernetes_stage(lab, "kubernetes", None, &secrets(), &state).unwrap());
    let mut kubeadm_files = 0;
    for stage in &stages {
        let plan = offline_plan(lab, stage, distro);
        if stage.playbook == "kubernetes" {
            kubeadm_files = check_kubeadm_files(lab, &plan);
        }
        text.push_str(&format!("##### stage {}\n", stage.playbook));
        text.push_str(&plan.text());
    }
    assert!(!text.contains(TOKEN), "the token leaked into the plan");
    assert!(
        !text.contains(&"0a".repeat(32)),
        "the certificate key leaked"
    );
    (text, kubeadm_files)
}

#[test]
fn every_lab_with_every_runtime_and_ip_family() {
    let mut cases = 0;
    for path in labs() {
        let text = std::fs::read_to_string(&path).unwrap();
        let lab = load(&path, &text);
        if lab.kubernetes.is_none() {
            continue;
        }
        let nodes = lab
            .vms
            .iter()
            .filter(|v| v.has_role("control-plane") || v.has_role("worker"))
            .count();
        for runtime in ["containerd", "docker", "crio"] {
            for family in ["ipv4", "ipv6", "dual"] {
                let text = variant(&text, runtime, family);
                let lab = load(&path, &text);
                let (plan, kubeadm_files) = stage_plans(&lab, Distro::Debian);
                assert_eq!(kubeadm_files, nodes, "{} {runtime} {family}", lab.name);
                let mut settings = insta::Settings::clone_current();
                settings.set_prepend_module_to_snapshot(false);
                settings.set_snapshot_suffix(format!("{runtime}-{family}"));
                settings.bind(|| insta::assert_snapshot!(lab.name.clone(), plan));
                cases += 1;
            }
        }
        let (plan, _) = stage_plans(&lab, Distro::Rocky);
        let mut settings = insta::Settings::clone_current();
        settings.set_prepend_module_to_snapshot(false);
        settings.set_snapshot_suffix("as-written-rocky");
        settings.bind(|| insta::assert_snapshot!(lab.name.clone(), plan));
    }
    assert!(
        cases >= 27,
        "{cases} cases: fewer labs with a cluster than expected"
    );
}

#[test]
fn the_ipv6_lab_is_ipv6_only_with_nat64() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("labs/ipv6.yaml");
    let lab = load(&path, &std::fs::read_to_string(&path).unwrap());
    let names: Vec<&str> = lab.vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "kube-master",
            "kube-node-1",
            "kube-node-2",
            "kube-nat64-dns64"
        ]
    );
    let (plan, _) = stage_plans(&lab, Distro::Debian);
    assert!(
        plan.contains("-d 64:ff9b::/96 -j NETMAP --to fd64:64:64:6464::/96"),
        "the well-known prefix mapped onto tayga's"
    );
    assert!(
        plan.contains("prefix fd64:64:64:6464::/96"),
        "tayga's prefix"
    );
    assert!(
        plan.contains("exclude { !fc00::/7; any; };"),
        "global AAAA synthesized"
    );
    assert!(plan.contains("dns64 64:ff9b::/96"), "BIND's dns64");
    assert!(plan.contains("advertiseAddress: \"fd00:152::10\""));
    assert!(plan.contains("podSubnet: \"fd00:10:244::/56\""));
    assert!(
        plan.contains("ip -6 route replace 64:ff9b::/96 via fd00:152::64"),
        "clients route through the NAT64 VM"
    );
    let addr: IpAddr = "fd00:152::10".parse().unwrap();
    assert!(addr.is_ipv6());
    // kubelet (and CoreDNS upstream of it) resolves through DNS64 only: the
    // node's IPv4 resolver is out of the pods' reach.
    assert!(plan.contains("resolvConf: \"/etc/kubernetes/kubelab/resolv.conf\""));
    assert_eq!(
        plan.matches("kubelet on ").count(),
        3,
        "every Kubernetes node gets the resolver file"
    );
    assert_eq!(plan.matches("  | nameserver fd00:152::64\n").count(), 3);
}

/// kube-vip 0.8 with cp_enable dials `kubernetes:6443`: every manifest maps
/// that name to the node's own API server. The first control plane's, for
/// kubeadm init, uses super-admin.conf (admin.conf has no rights until init
/// ends, 1.29 and later); once the API server answers, and on the control
/// planes that join, admin.conf.
#[test]
fn kube_vip_reaches_its_own_api_server_and_leaves_super_admin_after_init() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("labs/docker-kube-vip.yaml");
    let lab = load(&path, &std::fs::read_to_string(&path).unwrap());
    let (plan, _) = stage_plans(&lab, Distro::Debian);
    // Each kube-vip manifest the plan writes: the step's title and its text.
    let manifests: Vec<(&str, String)> = plan
        .split("\n* ")
        .filter(|s| s.contains("\"dest\":\"/etc/kubernetes/manifests/kube-vip.yaml\""))
        .map(|s| {
            let title = s.lines().next().unwrap_or("");
            let text: Vec<&str> = s.lines().filter_map(|l| l.strip_prefix("  | ")).collect();
            (title, text.join("\n"))
        })
        .collect();
    let titles: Vec<&str> = manifests.iter().map(|(t, _)| *t).collect();
    assert_eq!(manifests.len(), 3, "{titles:?}");
    for (title, text) in &manifests {
        assert!(
            text.contains("hostAliases:\n    - ip: \"127.0.0.1\"\n      hostnames: [kubernetes]"),
            "{title}: no host alias for `kubernetes`:\n{text}"
        );
    }
    let kubeconfig = |text: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix("path: "))
            .unwrap_or("")
            .to_string()
    };
    assert!(
        titles[0].starts_with("kube-vip static pod for kubeadm init"),
        "{titles:?}"
    );
    assert_eq!(
        kubeconfig(&manifests[0].1),
        "/etc/kubernetes/super-admin.conf"
    );
    assert!(titles[1].starts_with("kube-vip uses admin.conf now that the cluster is up"));
    assert_eq!(kubeconfig(&manifests[1].1), "/etc/kubernetes/admin.conf");
    assert_eq!(kubeconfig(&manifests[2].1), "/etc/kubernetes/admin.conf");
}
