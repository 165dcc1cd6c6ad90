//! The `kubernetes` stage: what the built-in playbook `kubernetes` (and
//! its parts `kubernetes/*`) needs beyond the lab, computed here from the typed layer so the playbooks and templates
//! never work out kubeadm settings themselves.
//!
//! Per host: `kubeadm` plus its secret and run-time values
//! ([`KubeadmContext::template_vars`]), `kube_node`
//! ([`NodePrepContext::template_vars`]) and `kube_role`. For every host:
//! `kube_repositories` (both distribution families; facts pick one),
//! `kube_sources_probe` (the check that the downloads answer),
//! `kube_fetch_key` (how APT signing keys are fetched), `kube_reset_rules`
//! (what `reset` removes from iptables and IPVS),
//! `kube_components` (pinned versions of what is not a Kubernetes package, [`crate::components`]),
//! `container_runtime` (the lab's; `play --var container_runtime=docker`
//! reads the lab with that runtime, so the typed layer follows it),
//! `kube_packages` (the package version patterns) and
//! `kube_state_dir` (where the kubeconfig is fetched to). Groups (declared
//! even when empty): `kube-init`, `kube-control-plane-join`, `kube-workers`,
//! `kube-nodes`, `kube-lb` (HAProxy mode), `kube-vip` (kube-vip mode).
//!
//! The join token and certificate key are made once per lab and kept in
//! the lab's state directory ([`ClusterSecrets`]), so a second `up` renders
//! the same configuration and changes nothing.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::config::{ClusterFacts, KubeadmContext, KubeadmError, NodeAddresses, NodeRole};
use super::node::{DistroFamily, NodePrepContext, RepositoryContext};
use super::secrets::{BootstrapToken, CertificateKey, JoinSecrets, SecretError};
use crate::components::COMPONENTS;
use crate::lab::Lab;
use crate::lab::model::HaMode;
use crate::stage::model::{Stage, StageError};
use crate::state::Inventory as StateInventory;
use crate::template::Vars;

/// The first control plane (`kubeadm init`).
pub const INIT_GROUP: &str = "kube-init";
/// The other control planes (`kubeadm join --control-plane`).
pub const CONTROL_PLANE_JOIN_GROUP: &str = "kube-control-plane-join";
/// Workers that are not control planes (`kubeadm join`).
pub const WORKER_GROUP: &str = "kube-workers";
/// Every Kubernetes node.
pub const NODE_GROUP: &str = "kube-nodes";
/// The HAProxy load balancers (HA mode `haproxy`).
pub const LB_GROUP: &str = "kube-lb";
/// The control planes that run kube-vip (HA mode `kube-vip`).
pub const KUBE_VIP_GROUP: &str = "kube-vip";

/// The cluster's join secrets, made once per lab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSecrets {
    pub token: BootstrapToken,
    pub certificate_key: CertificateKey,
}

/// Where the secrets live in a lab's state directory.
pub fn secrets_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("kubernetes")
}

impl ClusterSecrets {
    /// Read the lab's secrets, or make and keep them (directory 0700,
    /// files 0600) when there are none yet.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, StageError> {
        let dir = secrets_dir(state_dir);
        let token_path = dir.join("bootstrap-token");
        let key_path = dir.join("certificate-key");
        let fail = |path: &Path, message: String| StageError::File {
            path: path.to_path_buf(),
            message,
        };
        let read = |path: &Path| -> Result<Option<String>, StageError> {
            match std::fs::read_to_string(path) {
                Ok(t) => Ok(Some(t.trim().to_string())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(fail(path, e.to_string())),
            }
        };
        let bad = |path: &Path, e: SecretError| {
            fail(
                path,
                format!(
                    "{e}; remove the file to make a new one (nodes already joined keep working)"
                ),
            )
        };
        let token = match read(&token_path)? {
            Some(t) => BootstrapToken::parse(&t).map_err(|e| bad(&token_path, e))?,
            None => {
                let t = BootstrapToken::generate().map_err(|e| fail(&token_path, e.to_string()))?;
                write_private(&token_path, t.secret().expose())
                    .map_err(|e| fail(&token_path, e.to_string()))?;
                t
            }
        };
        let certificate_key = match read(&key_path)? {
            Some(k) => CertificateKey::parse(&k).map_err(|e| bad(&key_path, e))?,
            None => {
                let k = CertificateKey::generate().map_err(|e| fail(&key_path, e.to_string()))?;
                write_private(&key_path, k.secret().expose())
                    .map_err(|e| fail(&key_path, e.to_string()))?;
                k
            }
        };
        Ok(ClusterSecrets {
            token,
            certificate_key,
        })
    }

    /// Read the lab's secrets, or make ones that are not kept (for a plan,
    /// which must not write into the state directory).
    pub fn load_or_make(state_dir: &Path) -> Result<Self, StageError> {
        let dir = secrets_dir(state_dir);
        if dir.join("bootstrap-token").exists() || dir.join("certificate-key").exists() {
            return Self::load_or_create(state_dir);
        }
        let fail = |e: SecretError| StageError::File {
            path: dir.clone(),
            message: e.to_string(),
        };
        Ok(ClusterSecrets {
            token: BootstrapToken::generate().map_err(fail)?,
            certificate_key: CertificateKey::generate().map_err(fail)?,
        })
    }

    fn join(&self) -> JoinSecrets {
        JoinSecrets {
            token: self.token.clone(),
            certificate_key: Some(self.certificate_key.clone()),
            ca_cert_hashes: Vec::new(),
        }
    }
}

/// Write a secret file readable by its owner only, from its creation on.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")
}

/// The addresses kubeadm uses: the lab's static ones, then for each VM
/// that `up` recorded, its first address inside the Kubernetes network's
/// subnets (DHCP and SLAAC ones included).
pub fn cluster_facts(lab: &Lab, state: Option<&StateInventory>) -> ClusterFacts {
    let mut facts = ClusterFacts::from_lab(lab);
    let network = lab
        .kubernetes
        .as_ref()
        .and_then(|k| lab.network(&k.network))
        .or_else(|| lab.networks.first());
    if let (Some(state), Some(net)) = (state, network) {
        for rec in &state.vms {
            let found = NodeAddresses {
                ipv4: rec
                    .ipv4
                    .iter()
                    .copied()
                    .find(|a| net.ipv4.is_some_and(|n| n.contains(a))),
                ipv6: rec
                    .ipv6
                    .iter()
                    .copied()
                    .find(|a| net.ipv6.is_some_and(|n| n.contains(a))),
            };
            facts.set_addresses(&rec.name, found);
        }
    }
    facts
}

/// `kubeadm`'s release when the lab names only a minor and nothing is
/// installed yet: the minor's first release, replaced at run time by what
/// the packages installed (`kubeadm version`).
fn provisional_release(facts: &mut ClusterFacts, version: &str, minor: u32) {
    if version.split('.').count() < 3 {
        facts.set_first_release_of(minor);
    }
}

/// The package version patterns of the lab's Kubernetes version: the
/// minor's latest, or exactly the patch release the lab names.
fn package_versions(version: &str, minor: u32) -> Value {
    let exact = version.split('.').count() == 3;
    let (deb, rpm) = if exact {
        (format!("{version}-*"), version.to_string())
    } else {
        (format!("1.{minor}.*"), format!("1.{minor}.*"))
    };
    // What an APT candidate of the lab's version starts with.
    let deb_prefix = if exact {
        format!("{version}-")
    } else {
        format!("1.{minor}.")
    };
    json!({"deb": deb, "rpm": rpm, "prefix": format!("1.{minor}."), "deb_prefix": deb_prefix, "exact": exact})
}

/// Whether a built-in playbook (its name without `playbooks/` and `.yaml`)
/// runs in the Kubernetes stage: `kubernetes` and its parts.
pub fn runs(playbook: &str) -> bool {
    playbook == "kubernetes" || playbook.starts_with("kubernetes/")
}

/// The `kubernetes` stage running `playbook` (`kubernetes` or one of its
/// parts), with addresses from `state` when the lab is up.
pub fn kubernetes_stage(
    lab: &Lab,
    playbook: &str,
    state: Option<&StateInventory>,
    secrets: &ClusterSecrets,
    state_dir: &Path,
) -> Result<Stage, StageError> {
    let k = lab.kubernetes.as_ref().ok_or(KubeadmError::NoKubernetes)?;
    let minor = k.minor();
    let mut facts = cluster_facts(lab, state);
    provisional_release(&mut facts, &k.version, minor);
    let join = secrets.join();

    let mut groups: BTreeMap<String, Vec<String>> = [
        INIT_GROUP,
        CONTROL_PLANE_JOIN_GROUP,
        WORKER_GROUP,
        NODE_GROUP,
        LB_GROUP,
        KUBE_VIP_GROUP,
    ]
    .iter()
    .map(|g| (g.to_string(), Vec::new()))
    .collect();
    let mut host_vars: BTreeMap<String, Vars> = BTreeMap::new();
    for vm in &lab.vms {
        let role = match NodeRole::of(lab, vm) {
            Ok(r) => r,
            Err(KubeadmError::NotANode(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        let ctx = KubeadmContext::for_node_with(lab, vm, &facts, Some(&join))?;
        let prep = NodePrepContext::for_node(lab, vm, &facts)?;
        let mut vars: Vars = ctx.template_vars().into_iter().collect();
        vars.extend(prep.template_vars());
        let (group, name) = match role {
            NodeRole::Init => (INIT_GROUP, "init"),
            NodeRole::ControlPlane => (CONTROL_PLANE_JOIN_GROUP, "control-plane"),
            NodeRole::Worker => (WORKER_GROUP, "worker"),
        };
        vars.insert("kube_role".into(), Value::from(name));
        groups
            .entry(group.into())
            .or_default()
            .push(vm.name.clone());
        groups
            .entry(NODE_GROUP.into())
            .or_default()
            .push(vm.name.clone());
        if role != NodeRole::Worker && k.ha.as_ref().is_some_and(|h| h.mode == HaMode::KubeVip) {
            groups
                .entry(KUBE_VIP_GROUP.into())
                .or_default()
                .push(vm.name.clone());
        }
        host_vars.insert(vm.name.clone(), vars);
    }
    if k.ha.as_ref().is_some_and(|h| h.mode == HaMode::Haproxy) {
        let lbs: Vec<String> = lab.group("lb").iter().map(|v| v.name.clone()).collect();
        groups.insert(LB_GROUP.into(), lbs);
    }

    let mut vars = Vars::new();
    vars.insert(
        "container_runtime".into(),
        serde_json::to_value(k.runtime).unwrap_or(Value::Null),
    );
    let repos = |family| serde_json::to_value(RepositoryContext::new(minor, k.runtime, family));
    vars.insert(
        "kube_repositories".into(),
        json!({
            "debian": repos(DistroFamily::Debian).unwrap_or(Value::Null),
            "redhat": repos(DistroFamily::RedHat).unwrap_or(Value::Null),
        }),
    );
    vars.insert("kube_packages".into(), package_versions(&k.version, minor));
    vars.insert(
        "kube_containerd".into(),
        crate::containerd::stage_vars(minor),
    );
    // Air-gapped: the bundle, checked whole before any node is touched.
    let bundle = match &k.airgap_dir {
        Some(dir) => {
            crate::bundle::stage_vars(dir, &k.version).map_err(|message| StageError::Invalid {
                what: format!("kubernetes.airgap_dir {}", dir.display()),
                message,
            })?
        }
        None => Value::Null,
    };
    vars.insert("kube_bundle".into(), bundle);
    vars.insert(
        "kube_components".into(),
        serde_json::to_value(COMPONENTS).unwrap_or(Value::Null),
    );
    vars.insert(
        "kube_state_dir".into(),
        Value::from(state_dir.display().to_string()),
    );
    vars.insert("kube_api".into(), api_vars(lab, &facts)?);
    vars.insert(
        "kube_fetch_key".into(),
        Value::from(super::node::FETCH_KEY_SCRIPT),
    );
    vars.insert(
        "kube_fetch_file".into(),
        Value::from(super::node::FETCH_FILE_SCRIPT),
    );
    vars.insert(
        "kube_reset_rules".into(),
        Value::from(super::node::RESET_RULES_SCRIPT),
    );
    // Run by `kubernetes/sources` on the first control plane (kube-init).
    if let Some(init) = lab.group("control-plane").first() {
        vars.insert(
            "kube_sources_probe".into(),
            Value::from(super::sources::probe_script(
                &init.name,
                &super::sources::sources(k),
            )),
        );
    }
    vars.insert(
        "kube_login_user".into(),
        Value::from(lab.image.user().to_string()),
    );
    Ok(Stage {
        title: playbook.to_string(),
        playbook: playbook.to_string(),
        vars,
        host_vars,
        groups,
        virthost: false,
        generated: None,
    })
}

/// Where the API is reached: the endpoint every kubeconfig names, the
/// control planes behind it (for HAProxy) and the VIP (for kube-vip).
fn api_vars(lab: &Lab, facts: &ClusterFacts) -> Result<Value, KubeadmError> {
    let init = lab
        .group("control-plane")
        .first()
        .map(|v| v.name.clone())
        .ok_or(KubeadmError::NoControlPlane)?;
    let vm = lab.vm(&init).ok_or(KubeadmError::NoControlPlane)?;
    let ctx = KubeadmContext::for_node_with(lab, vm, facts, None)?;
    let primary = ctx.advertise_address;
    let backends: Vec<Value> = lab
        .group("control-plane")
        .iter()
        .filter_map(|cp| {
            let a = facts.addresses(&cp.name);
            let addr: Option<IpAddr> = match primary {
                IpAddr::V4(_) => a.ipv4.map(IpAddr::V4),
                IpAddr::V6(_) => a.ipv6.map(IpAddr::V6),
            };
            addr.map(|addr| {
                json!({"name": cp.name, "address": addr.to_string(),
                       "endpoint": super::config::host_port(addr, super::config::API_SERVER_PORT)})
            })
        })
        .collect();
    let vip = lab
        .kubernetes
        .as_ref()
        .and_then(|k| k.ha.as_ref())
        .and_then(|h| h.vip)
        .map(|v| v.to_string());
    Ok(json!({
        "endpoint": ctx.control_plane_endpoint.clone().unwrap_or_else(|| ctx.join_endpoint.clone()),
        "port": super::config::API_SERVER_PORT,
        "backends": backends,
        "vip": vip,
        "vip_ipv6": ctx.control_plane_endpoint.is_some() && matches!(primary, IpAddr::V6(_)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use crate::lab::from_test_yaml as lab;

    use crate::lab::IPV6_TEST_LAB as LAB;

    #[test]
    fn secrets_are_made_once_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let first = ClusterSecrets::load_or_create(dir.path()).unwrap();
        let again = ClusterSecrets::load_or_create(dir.path()).unwrap();
        assert_eq!(first, again);
        let mode = |p: PathBuf| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(secrets_dir(dir.path())), 0o700);
        assert_eq!(mode(secrets_dir(dir.path()).join("bootstrap-token")), 0o600);
        assert_eq!(mode(secrets_dir(dir.path()).join("certificate-key")), 0o600);
        let other = tempfile::tempdir().unwrap();
        let fresh = ClusterSecrets::load_or_make(other.path()).unwrap();
        assert_ne!(fresh, first);
        assert!(!secrets_dir(other.path()).exists(), "a plan keeps nothing");
        std::fs::write(secrets_dir(dir.path()).join("bootstrap-token"), "nope\n").unwrap();
        let e = ClusterSecrets::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("bootstrap-token"), "{e}");
        assert!(e.contains("remove the file"), "{e}");
    }

    #[test]
    fn the_kubernetes_stage_has_groups_and_per_node_configuration() {
        let lab = lab(LAB);
        let dir = tempfile::tempdir().unwrap();
        let keys = ClusterSecrets::load_or_create(dir.path()).unwrap();
        let stage = kubernetes_stage(&lab, "kubernetes/init", None, &keys, dir.path()).unwrap();
        assert_eq!(stage.playbook, "kubernetes/init");
        assert_eq!(stage.groups[INIT_GROUP], ["cp"]);
        assert_eq!(stage.groups[WORKER_GROUP], ["w"]);
        assert_eq!(stage.groups[NODE_GROUP], ["cp", "w"]);
        assert!(stage.groups[LB_GROUP].is_empty());
        assert!(stage.groups[CONTROL_PLANE_JOIN_GROUP].is_empty());
        assert!(!stage.host_vars.contains_key("gw"), "not a node");
        let cp = &stage.host_vars["cp"];
        assert_eq!(cp["kube_role"], "init");
        assert_eq!(cp["kubeadm"]["advertise_address"], "fd00:9::10");
        assert_eq!(
            cp["kubeadm_release"], "v1.31.0",
            "provisional until installed"
        );
        assert_eq!(cp["kube_node"]["node_ip"], "fd00:9::10");
        let token = keys.token.secret().expose();
        assert_eq!(cp["kubeadm_bootstrap_token"], token);
        let public = serde_json::to_string(&cp["kubeadm"]).unwrap();
        assert!(!public.contains(token), "the token is in `kubeadm`");
        assert!(!public.contains(keys.certificate_key.secret().expose()));
        assert_eq!(stage.vars["kube_packages"]["deb"], "1.31.*");
        assert_eq!(stage.vars["kube_api"]["endpoint"], "[fd00:9::10]:6443");
    }
}
