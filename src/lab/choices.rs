//! The fixed choices a lab file offers (runtime, CNI, IP family, ...):
//! the same values in the file as written and in the validated model, so
//! both use these types (the model under names without `File`).

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostKeyPolicyFile {
    /// Unknown keys are an error that shows the fingerprint (default).
    Strict,
    /// Unknown keys are learned; changed keys are still an error.
    AcceptNew,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DomainTypeFile {
    Auto,
    Kvm,
    Qemu,
}

/// How kubelab places the VMs that name no virthost, over a lab's
/// `virthosts`: each on the virthost with the most memory left (`spread`),
/// or on the first one in the list it fits on (`pack`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlacementFile {
    #[default]
    Spread,
    Pack,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormatFile {
    Qcow2,
    Raw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeFile {
    Crio,
    Docker,
    Containerd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimePackagesFile {
    Upstream,
    Distro,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CniFile {
    Flannel,
    Calico,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamilyFile {
    Ipv4,
    Ipv6,
    Dual,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HaModeFile {
    Haproxy,
    KubeVip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SelinuxFile {
    Permissive,
    Enforcing,
    Disabled,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FirewallFile {
    Disable,
    Open,
    Keep,
}
