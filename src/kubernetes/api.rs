//! Typed models of the kubeadm configuration documents kubelab writes.
//!
//! Only the fields kubelab sets are modelled, and every struct refuses
//! unknown fields: a rendered configuration is parsed back through these
//! types (by the renderer itself and by the golden tests), so a misspelt key
//! or a field in the wrong place is an error here rather than a surprise on
//! a node.
//!
//! The kubeadm group comes in two versions kubelab renders: `v1beta3`
//! (Kubernetes 1.24 to 1.30) and `v1beta4` (1.31 and later). They differ, for
//! the fields used here, in the shape of extra arguments (a map in `v1beta3`,
//! a list of `{name, value}` in `v1beta4`) and in where timeouts live.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// `apiVersion` of the kubelet's configuration.
pub const KUBELET_API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
/// `apiVersion` of kube-proxy's configuration.
pub const KUBE_PROXY_API_VERSION: &str = "kubeproxy.config.k8s.io/v1alpha1";

/// A version of the `kubeadm.k8s.io` API group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KubeadmApi {
    V1beta3,
    V1beta4,
}

impl KubeadmApi {
    /// The first minor whose kubeadm is configured with `v1beta4`.
    pub const V1BETA4_SINCE_MINOR: u32 = 31;

    /// The API version kubelab renders for Kubernetes `1.<minor>`: `v1beta4`
    /// from 1.31 (where it became available; `v1beta3` is deprecated there
    /// and removed later), `v1beta3` before.
    pub fn for_minor(minor: u32) -> Self {
        if minor >= Self::V1BETA4_SINCE_MINOR {
            KubeadmApi::V1beta4
        } else {
            KubeadmApi::V1beta3
        }
    }

    /// The `apiVersion` string, e.g. `kubeadm.k8s.io/v1beta4`.
    pub fn api_version(self) -> &'static str {
        match self {
            KubeadmApi::V1beta3 => "kubeadm.k8s.io/v1beta3",
            KubeadmApi::V1beta4 => "kubeadm.k8s.io/v1beta4",
        }
    }

    pub fn from_api_version(s: &str) -> Option<Self> {
        [KubeadmApi::V1beta3, KubeadmApi::V1beta4]
            .into_iter()
            .find(|a| a.api_version() == s)
    }
}

impl fmt::Display for KubeadmApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_version())
    }
}

/// A value that must not appear in logs: `Debug` prints a placeholder.
/// Serializes and deserializes as the plain string.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself; callers decide where it may go.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// One extra command-line argument of a component (`v1beta4` shape).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arg {
    pub name: String,
    pub value: String,
}

/// Extra arguments: a map in `v1beta3`, a list in `v1beta4`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExtraArgs {
    Map(BTreeMap<String, String>),
    List(Vec<Arg>),
}

impl ExtraArgs {
    /// The value of argument `name` (the last one, for lists with repeats).
    pub fn get(&self, name: &str) -> Option<&str> {
        match self {
            ExtraArgs::Map(m) => m.get(name).map(String::as_str),
            ExtraArgs::List(l) => l
                .iter()
                .rev()
                .find(|a| a.name == name)
                .map(|a| a.value.as_str()),
        }
    }
    fn check_shape(&self, api: KubeadmApi, field: &str) -> Result<(), ApiError> {
        match (self, api) {
            (ExtraArgs::Map(_), KubeadmApi::V1beta3)
            | (ExtraArgs::List(_), KubeadmApi::V1beta4) => Ok(()),
            (ExtraArgs::Map(_), KubeadmApi::V1beta4) => Err(ApiError::Shape(format!(
                "{field} is a map, but {api} wants a list of {{name, value}}"
            ))),
            (ExtraArgs::List(_), KubeadmApi::V1beta3) => Err(ApiError::Shape(format!(
                "{field} is a list, but {api} wants a map"
            ))),
        }
    }
}

fn check_args(args: &Option<ExtraArgs>, api: KubeadmApi, field: &str) -> Result<(), ApiError> {
    match args {
        Some(a) => a.check_shape(api, field),
        None => Ok(()),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BootstrapTokenSpec {
    /// `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub token: Secret,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiEndpoint {
    pub advertise_address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_port: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NodeRegistration {
    pub name: String,
    pub cri_socket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_extra_args: Option<ExtraArgs>,
    /// `None`: kubeadm's default (control planes tainted); `Some([])`: no
    /// taints at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taints: Option<Vec<Taint>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_preflight_errors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
}

/// `v1beta4` timeouts (durations like `10m0s`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Timeouts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_component_health_check: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_health_check: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_bootstrap: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InitConfiguration {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bootstrap_tokens: Vec<BootstrapTokenSpec>,
    #[serde(
        rename = "localAPIEndpoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub local_api_endpoint: Option<ApiEndpoint>,
    pub node_registration: NodeRegistration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_key: Option<Secret>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Networking {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_subnet: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_domain: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiServer {
    #[serde(rename = "certSANs", default, skip_serializing_if = "Vec::is_empty")]
    pub cert_sans: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_args: Option<ExtraArgs>,
    /// `v1beta3` only (`v1beta4` moved it to `InitConfiguration.timeouts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_for_control_plane: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ControlPlaneComponent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_args: Option<ExtraArgs>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterConfiguration {
    pub api_version: String,
    pub kind: String,
    pub kubernetes_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<Networking>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_server: Option<ApiServer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_manager: Option<ControlPlaneComponent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler: Option<ControlPlaneComponent>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BootstrapTokenDiscovery {
    pub token: Secret,
    pub api_server_endpoint: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_cert_hashes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsafe_skip_ca_verification: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Discovery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_token: Option<BootstrapTokenDiscovery>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_bootstrap_token: Option<Secret>,
    /// `v1beta3` only (`v1beta4`: `JoinConfiguration.timeouts.discovery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinControlPlane {
    #[serde(
        rename = "localAPIEndpoint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub local_api_endpoint: Option<ApiEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_key: Option<Secret>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct JoinConfiguration {
    pub api_version: String,
    pub kind: String,
    pub node_registration: NodeRegistration,
    pub discovery: Discovery,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane: Option<JoinControlPlane>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeletConfiguration {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_driver: Option<String>,
    #[serde(rename = "clusterDNS", default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_dns: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_swap_on: Option<bool>,
    /// Kubelet 1.27 and later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolv_conf: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KubeProxyConfiguration {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(
        rename = "clusterCIDR",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind_address: Option<String>,
}

/// One document of a kubeadm configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Document {
    Init(KubeadmApi, InitConfiguration),
    Cluster(KubeadmApi, ClusterConfiguration),
    Join(KubeadmApi, JoinConfiguration),
    Kubelet(KubeletConfiguration),
    KubeProxy(KubeProxyConfiguration),
}

impl Document {
    pub fn kind(&self) -> &'static str {
        match self {
            Document::Init(..) => "InitConfiguration",
            Document::Cluster(..) => "ClusterConfiguration",
            Document::Join(..) => "JoinConfiguration",
            Document::Kubelet(_) => "KubeletConfiguration",
            Document::KubeProxy(_) => "KubeProxyConfiguration",
        }
    }
}

/// Why a configuration file does not parse into [`Document`]s.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not YAML: {0}")]
    Yaml(String),
    #[error("document {index}: {message}")]
    Document { index: usize, message: String },
    #[error("document {index}: unknown apiVersion/kind {api_version:?}/{kind:?}")]
    UnknownType {
        index: usize,
        api_version: String,
        kind: String,
    },
    #[error("{0}")]
    Shape(String),
    #[error("documents use different kubeadm API versions ({0} and {1})")]
    MixedVersions(KubeadmApi, KubeadmApi),
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> &'a str {
    v.get(name).and_then(|s| s.as_str()).unwrap_or("")
}

/// Parse a `---`-separated configuration file into typed documents,
/// checking each document's apiVersion and kind, the shape of extra
/// arguments per API version, and that all kubeadm documents share one
/// version. Empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Document>, ApiError> {
    let values: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ApiError::Yaml(e.to_string()))?;
    let mut docs = Vec::new();
    let mut seen_api: Option<KubeadmApi> = None;
    for (index, value) in values.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        let api_version = field(&value, "apiVersion").to_string();
        let kind = field(&value, "kind").to_string();
        let doc_err = |e: serde_json::Error| ApiError::Document {
            index,
            message: format!("{kind}: {e}"),
        };
        let kubeadm = KubeadmApi::from_api_version(&api_version);
        let doc = match (kubeadm, api_version.as_str(), kind.as_str()) {
            (Some(api), _, "InitConfiguration") => {
                let c: InitConfiguration = serde_json::from_value(value).map_err(doc_err)?;
                check_args(
                    &c.node_registration.kubelet_extra_args,
                    api,
                    "nodeRegistration.kubeletExtraArgs",
                )?;
                if api == KubeadmApi::V1beta3 && c.timeouts.is_some() {
                    return Err(ApiError::Shape(format!(
                        "InitConfiguration.timeouts needs {}",
                        KubeadmApi::V1beta4
                    )));
                }
                Document::Init(api, c)
            }
            (Some(api), _, "ClusterConfiguration") => {
                let c: ClusterConfiguration = serde_json::from_value(value).map_err(doc_err)?;
                if let Some(s) = &c.api_server {
                    check_args(&s.extra_args, api, "apiServer.extraArgs")?;
                    if api == KubeadmApi::V1beta4 && s.timeout_for_control_plane.is_some() {
                        return Err(ApiError::Shape(format!(
                            "apiServer.timeoutForControlPlane does not exist in {api}"
                        )));
                    }
                }
                for (name, comp) in [
                    ("controllerManager", &c.controller_manager),
                    ("scheduler", &c.scheduler),
                ] {
                    if let Some(comp) = comp {
                        check_args(&comp.extra_args, api, &format!("{name}.extraArgs"))?;
                    }
                }
                Document::Cluster(api, c)
            }
            (Some(api), _, "JoinConfiguration") => {
                let c: JoinConfiguration = serde_json::from_value(value).map_err(doc_err)?;
                check_args(
                    &c.node_registration.kubelet_extra_args,
                    api,
                    "nodeRegistration.kubeletExtraArgs",
                )?;
                match api {
                    KubeadmApi::V1beta3 if c.timeouts.is_some() => {
                        return Err(ApiError::Shape(format!(
                            "JoinConfiguration.timeouts needs {}",
                            KubeadmApi::V1beta4
                        )));
                    }
                    KubeadmApi::V1beta4 if c.discovery.timeout.is_some() => {
                        return Err(ApiError::Shape(format!(
                            "discovery.timeout does not exist in {api}"
                        )));
                    }
                    _ => {}
                }
                Document::Join(api, c)
            }
            (None, KUBELET_API_VERSION, "KubeletConfiguration") => {
                Document::Kubelet(serde_json::from_value(value).map_err(doc_err)?)
            }
            (None, KUBE_PROXY_API_VERSION, "KubeProxyConfiguration") => {
                Document::KubeProxy(serde_json::from_value(value).map_err(doc_err)?)
            }
            _ => {
                return Err(ApiError::UnknownType {
                    index,
                    api_version,
                    kind,
                });
            }
        };
        if let Some(api) = kubeadm {
            match seen_api {
                Some(seen) if seen != api => return Err(ApiError::MixedVersions(seen, api)),
                _ => seen_api = Some(api),
            }
        }
        docs.push(doc);
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_follows_the_minor() {
        assert_eq!(KubeadmApi::for_minor(24), KubeadmApi::V1beta3);
        assert_eq!(KubeadmApi::for_minor(30), KubeadmApi::V1beta3);
        assert_eq!(KubeadmApi::for_minor(31), KubeadmApi::V1beta4);
        assert_eq!(KubeadmApi::for_minor(35), KubeadmApi::V1beta4);
        assert_eq!(
            KubeadmApi::from_api_version("kubeadm.k8s.io/v1beta4"),
            Some(KubeadmApi::V1beta4)
        );
        assert_eq!(KubeadmApi::from_api_version("kubeadm.k8s.io/v1beta2"), None);
    }

    const INIT_V4: &str = "\
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  name: cp
  criSocket: unix:///run/containerd/containerd.sock
  kubeletExtraArgs:
    - name: node-ip
      value: 10.0.0.2
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: systemd
";

    #[test]
    fn parses_several_documents() {
        let docs = parse_documents(INIT_V4).unwrap();
        assert_eq!(docs.len(), 2);
        let Document::Init(api, init) = &docs[0] else {
            panic!("{docs:?}")
        };
        assert_eq!(*api, KubeadmApi::V1beta4);
        let args = init.node_registration.kubelet_extra_args.as_ref().unwrap();
        assert_eq!(args.get("node-ip"), Some("10.0.0.2"));
        assert_eq!(docs[1].kind(), "KubeletConfiguration");
    }

    #[test]
    fn rejects_unknown_fields_kinds_and_shapes() {
        let typo = INIT_V4.replace("criSocket", "criSoket");
        assert!(matches!(
            parse_documents(&typo),
            Err(ApiError::Document { index: 0, .. })
        ));
        let old = INIT_V4.replace("v1beta4", "v1beta3");
        assert!(matches!(parse_documents(&old), Err(ApiError::Shape(_))));
        let kind = INIT_V4.replace("kind: KubeletConfiguration", "kind: KubeletConfig");
        assert!(matches!(
            parse_documents(&kind),
            Err(ApiError::UnknownType { index: 1, .. })
        ));
        let group = INIT_V4.replace("kubelet.config.k8s.io", "kubeadm.k8s.io");
        assert!(matches!(
            parse_documents(&group),
            Err(ApiError::UnknownType { .. })
        ));
        let mixed = format!(
            "{INIT_V4}---\napiVersion: kubeadm.k8s.io/v1beta3\nkind: ClusterConfiguration\nkubernetesVersion: v1.30.1\n"
        );
        assert!(matches!(
            parse_documents(&mixed),
            Err(ApiError::MixedVersions(..))
        ));
        assert!(matches!(
            parse_documents("a: [unclosed"),
            Err(ApiError::Yaml(_))
        ));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let twice = INIT_V4.replace(
            "  name: cp\n",
            "  name: cp\n  criSocket: unix:///var/run/crio/crio.sock\n",
        );
        assert!(matches!(parse_documents(&twice), Err(ApiError::Yaml(_))));
    }

    #[test]
    fn empty_documents_are_skipped() {
        let docs = parse_documents(&format!("---\n# nothing\n---\n{INIT_V4}")).unwrap();
        assert_eq!(docs.len(), 2);
        assert!(parse_documents("").unwrap().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,200}") {
            let _ = parse_documents(&text);
        }

        #[test]
        fn parsing_mangled_configurations_never_panics(cut in 0usize..400, junk in "[ :\\-\\[\\]{}a-z0-9\n]{0,20}") {
            let mut text: String = INIT_V4.chars().take(cut).collect();
            text.push_str(&junk);
            let _ = parse_documents(&text);
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let s = Secret::new("abcdef.0123456789abcdef");
        assert!(!format!("{s:?}").contains("abcdef"));
        assert_eq!(s.expose(), "abcdef.0123456789abcdef");
    }
}
