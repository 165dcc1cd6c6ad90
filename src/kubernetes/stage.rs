//! The `kubernetes` and `nat64` stages: what the built-in playbooks
//! `kubernetes` (and its parts `kubernetes/*`) and `nat64` need beyond the
//! lab, computed here from the typed layer so the playbooks and templates
//! never work out kubeadm settings themselves.
//!
//! Per host: `kubeadm` plus its secret and run-time values
//! ([`KubeadmContext::template_vars`]), `kube_node`
//! ([`NodePrepContext::template_vars`]) and `kube_role`. For every host:
//! `kube_repositories` (both distribution families; facts pick one),
//! `kube_sources_probe` (the check that the downloads answer),
//! `kube_components` (pinned versions of what is not a Kubernetes package),
//! `container_runtime` (the lab's; `--var container_runtime=docker`
//! overrides it), `kube_packages` (the package version patterns) and
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

use serde::Serialize;
use serde_json::{Value, json};

use super::config::{ClusterFacts, KubeadmContext, KubeadmError, NodeAddresses, NodeRole};
use super::node::{DistroFamily, NodePrepContext, RepositoryContext};
use super::secrets::{BootstrapToken, CertificateKey, JoinSecrets, SecretError};
use crate::lab::Lab;
use crate::lab::model::HaMode;
use crate::stage::Stage;
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
/// The NAT64/DNS64 VMs (role `nat64`) and the VMs that use them.
pub const NAT64_GROUP: &str = "nat64";
pub const NAT64_CLIENT_GROUP: &str = "nat64-clients";

/// Versions of what kubelab installs besides the Kubernetes packages;
/// every one is pinned so that a lab builds the same way every night.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Components {
    pub flannel: &'static str,
    pub flannel_cni_plugin: &'static str,
    pub calico: &'static str,
    pub kube_vip: &'static str,
    pub cri_dockerd: &'static str,
}

pub const COMPONENTS: Components = Components {
    flannel: "v0.26.7",
    flannel_cni_plugin: "v1.6.2-flannel1",
    calico: "v3.29.3",
    kube_vip: "v0.8.9",
    cri_dockerd: "0.3.16",
};

/// Why a stage cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Kubeadm(#[from] KubeadmError),
    /// A file of the lab's state directory (secrets, inventory).
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
}

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
        // Cannot fail: the text is a release.
        let _ = facts.set_kubeadm_version(&format!("v1.{minor}.0"));
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
    json!({"deb": deb, "rpm": rpm, "prefix": format!("1.{minor}."), "exact": exact})
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
        "kube_components".into(),
        serde_json::to_value(COMPONENTS).unwrap_or(Value::Null),
    );
    vars.insert(
        "kube_state_dir".into(),
        Value::from(state_dir.display().to_string()),
    );
    vars.insert("kube_api".into(), api_vars(lab, &facts)?);
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
        inline: None,
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

/// The NAT64 prefix (RFC 6052's well-known prefix) unless the lab sets
/// `vars: {nat64_prefix: ...}` (a /96).
pub const NAT64_PREFIX: &str = "64:ff9b::/96";
/// The IPv4 pool tayga maps IPv6 clients into (masqueraded behind the
/// NAT64 VM) unless the lab sets `vars: {nat64_pool4: ...}`.
pub const NAT64_POOL4: &str = "192.168.255.0/24";
/// tayga's own IPv6 address (the source of its ICMPv6 errors), outside
/// the NAT64 prefix, unless the lab sets `vars: {nat64_tayga_ipv6: ...}`.
pub const NAT64_TAYGA_IPV6: &str = "fd64:64:64::1";
/// The prefix tayga itself translates: the NAT64 VM maps the NAT64 prefix
/// onto it (ip6tables NETMAP) on the way in, and back on the way out.
/// tayga 0.9 (Debian 12, Ubuntu 24.04) refuses to translate private IPv4
/// addresses through the well-known prefix 64:ff9b::/96 (RFC 6052), and a
/// lab's IPv4 side is private (the virthost, its NAT): through a
/// unique-local prefix it translates them all.
pub const NAT64_TAYGA_PREFIX: &str = "fd64:64:64:6464::/96";

fn lab_var<T: std::str::FromStr>(
    lab: &Lab,
    name: &str,
    default: &str,
    expected: &str,
) -> Result<T, StageError> {
    let text = match lab.vars.get(name) {
        None => default.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    text.parse().map_err(|_| StageError::Invalid {
        what: format!("vars.{name}"),
        message: format!("`{text}` is not {expected}"),
    })
}

/// The `nat64` stage: the VMs with role `nat64` translate the NAT64 prefix
/// to IPv4 (tayga) and answer DNS with synthesized AAAA records (bind9,
/// forwarding to the virthost); every other VM routes the prefix through
/// the first of them. Var `nat64` holds the checked settings, the DNS zone
/// `<lab>.test` (the VMs, and `virthost` with an A record only) and the
/// server's IPv6 address.
pub fn nat64_stage(
    lab: &Lab,
    playbook: &str,
    state: Option<&StateInventory>,
) -> Result<Stage, StageError> {
    let facts = cluster_facts(lab, state);
    let servers: Vec<String> = lab.group("nat64").iter().map(|v| v.name.clone()).collect();
    let clients: Vec<String> = lab
        .vms
        .iter()
        .filter(|v| !v.has_role("nat64"))
        .map(|v| v.name.clone())
        .collect();
    let server6 = servers
        .first()
        .and_then(|s| facts.addresses(s).ipv6)
        .map(|a| a.to_string());
    let prefix: ipnet::Ipv6Net = lab_var(lab, "nat64_prefix", NAT64_PREFIX, "an IPv6 prefix")?;
    if prefix.prefix_len() != 96 || prefix.trunc() != prefix {
        return Err(StageError::Invalid {
            what: "vars.nat64_prefix".into(),
            message: format!("{prefix} is not a /96 network prefix"),
        });
    }
    let pool4: ipnet::Ipv4Net = lab_var(lab, "nat64_pool4", NAT64_POOL4, "an IPv4 subnet")?;
    let tayga4 = pool4.hosts().next().ok_or_else(|| StageError::Invalid {
        what: "vars.nat64_pool4".into(),
        message: format!("{pool4} has no room for addresses"),
    })?;
    let tayga6: std::net::Ipv6Addr =
        lab_var(lab, "nat64_tayga_ipv6", NAT64_TAYGA_IPV6, "an IPv6 address")?;
    let tayga_prefix: ipnet::Ipv6Net =
        NAT64_TAYGA_PREFIX
            .parse()
            .map_err(|_| StageError::Invalid {
                what: "NAT64_TAYGA_PREFIX".into(),
                message: NAT64_TAYGA_PREFIX.into(),
            })?;
    if prefix.contains(&tayga6) {
        return Err(StageError::Invalid {
            what: "vars.nat64_tayga_ipv6".into(),
            message: format!("{tayga6} is inside the NAT64 prefix {prefix}"),
        });
    }
    for net in &lab.networks {
        if net
            .ipv4
            .is_some_and(|n| n.contains(&pool4.network()) || pool4.contains(&n.network()))
        {
            return Err(StageError::Invalid {
                what: "vars.nat64_pool4".into(),
                message: format!("{pool4} overlaps network `{}`", net.name),
            });
        }
    }
    let network = lab
        .kubernetes
        .as_ref()
        .and_then(|k| lab.network(&k.network))
        .or_else(|| lab.networks.first());
    let forwarders: Vec<String> = network
        .and_then(|n| n.gateway4())
        .map(|g| g.to_string())
        .into_iter()
        .collect();
    let hosts: Vec<Value> = lab
        .vms
        .iter()
        .map(|v| {
            let a = facts.addresses(&v.name);
            json!({"name": v.name, "ipv4": a.ipv4.map(|x| x.to_string()),
                   "ipv6": a.ipv6.map(|x| x.to_string())})
        })
        .collect();
    let mut vars = Vars::new();
    vars.insert(
        "nat64".into(),
        json!({
            "prefix": prefix.to_string(),
            "tayga_prefix": tayga_prefix.to_string(),
            "pool4": pool4.to_string(),
            "tayga_ipv4": tayga4.to_string(),
            "tayga_ipv6": tayga6.to_string(),
            "tun": "kl-nat64",
            "server": servers.first(),
            "server_ipv6": server6,
            "forwarders": forwarders,
            "zone": format!("{}.test", lab.name),
            // A unique-local lab prefix (fc00::/7) reaches no global IPv6.
            "synthesize_global": network
                .and_then(|n| n.ipv6)
                .is_some_and(|p| (p.network().segments()[0] & 0xfe00) == 0xfc00),
            "virthost_ipv4": network.and_then(|n| n.gateway4()).map(|g| g.to_string()),
            "hosts": hosts,
        }),
    );
    Ok(Stage {
        title: playbook.to_string(),
        playbook: playbook.to_string(),
        vars,
        host_vars: BTreeMap::new(),
        groups: BTreeMap::from([
            (NAT64_GROUP.to_string(), servers),
            (NAT64_CLIENT_GROUP.to_string(), clients),
        ]),
        virthost: false,
        inline: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    use crate::lab::from_test_yaml as lab;

    const LAB: &str = r#"
name: k
virthost: local
image: {build: debian-12}
networks: [{name: lan, kind: nat, ipv4: 10.9.0.0/24, ipv6: "fd00:9::/64"}]
vms:
  - {name: cp, roles: [control-plane], cpus: 2, memory: 2GiB, nics: [{network: lan, ipv4: 10.9.0.10, ipv6: "fd00:9::10"}]}
  - {name: w, roles: [worker], nics: [{network: lan, ipv4: 10.9.0.20, ipv6: "fd00:9::20"}]}
  - {name: gw, roles: [nat64], nics: [{network: lan, ipv4: 10.9.0.64, ipv6: "fd00:9::64"}]}
kubernetes: {version: "1.31", ip_family: ipv6}
"#;

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

    #[test]
    fn the_nat64_stage_checks_its_settings() {
        let l = lab(LAB);
        let stage = nat64_stage(&l, "nat64", None).unwrap();
        assert_eq!(stage.groups[NAT64_GROUP], ["gw"]);
        assert_eq!(stage.groups[NAT64_CLIENT_GROUP], ["cp", "w"]);
        let n = &stage.vars["nat64"];
        assert_eq!(n["server_ipv6"], "fd00:9::64");
        assert_eq!(n["prefix"], "64:ff9b::/96");
        assert_eq!(n["tayga_ipv4"], "192.168.255.1");
        assert_eq!(n["forwarders"], serde_json::json!(["10.9.0.1"]));
        assert_eq!(n["synthesize_global"], true, "fd00::/8 is unique-local");
        let bad = lab(&format!("{LAB}vars: {{nat64_pool4: 10.9.0.0/25}}\n"));
        let e = nat64_stage(&bad, "nat64", None).unwrap_err().to_string();
        assert!(e.contains("overlaps network `lan`"), "{e}");
        let bad = lab(&format!("{LAB}vars: {{nat64_prefix: \"64:ff9b::/64\"}}\n"));
        let e = nat64_stage(&bad, "nat64", None).unwrap_err().to_string();
        assert!(e.contains("not a /96"), "{e}");
    }
}
