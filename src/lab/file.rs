//! The lab file as written: what the YAML may say, field by field.
//!
//! These types mirror the file one to one (and give the JSON Schema). Values
//! that need parsing beyond YAML (addresses, CIDRs, sizes) stay strings here;
//! [`super::validate`] turns them into the typed [`super::Lab`] and
//! reports every problem with its position.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::scenario::ScenarioFile;

pub use super::choices::{
    CniFile, DiskFormatFile, DomainTypeFile, FirewallFile, HaModeFile, HostKeyPolicyFile,
    IpFamilyFile, RuntimeFile, RuntimePackagesFile, SelinuxFile,
};
pub use crate::template::Vars;

/// A kubelab lab file.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "kubelab lab file")]
pub struct LabFile {
    /// Lab name: a DNS-1123 label; prefixes everything kubelab creates.
    pub name: String,
    /// Free text shown by `status`.
    #[serde(default)]
    pub description: Option<String>,
    /// How long the lab may stay after `up` created it, e.g. `8h`, `2d`:
    /// recorded on the virthost with its owner; `kubelab reap` removes it
    /// when the time is up (`up --ttl` renews it from now).
    #[serde(default)]
    pub ttl: Option<String>,
    /// The machine that runs the VMs: the name of a file in `inventories/`
    /// (e.g. `local`), a path to such a file, or the definition inline.
    /// A lab has `virthost` or `virthosts`.
    #[serde(default)]
    pub virthost: Option<VirthostRef>,
    /// Several machines running the lab's VMs as one lab: each entry an
    /// inventory reference (named after it) or an inline definition with a
    /// `name`. Each lab network is one layer-2 segment across them, joined
    /// by VXLAN; the first virthost is every network's gateway.
    #[serde(default)]
    pub virthosts: Vec<VirthostRef>,
    /// How VMs without a `virthost:` are placed over `virthosts`:
    /// `spread` (default) or `pack`.
    #[serde(default)]
    pub placement: Option<super::choices::PlacementFile>,
    /// libvirt networks the VMs attach to.
    #[serde(default)]
    pub networks: Vec<NetworkFile>,
    /// The base image every VM boots from.
    pub image: ImageFile,
    /// Values used by VMs that do not set their own.
    #[serde(default)]
    pub defaults: VmDefaultsFile,
    /// The virtual machines.
    #[serde(default)]
    pub vms: Vec<VmFile>,
    /// Install Kubernetes on the VMs with kubeadm.
    #[serde(default)]
    pub kubernetes: Option<KubernetesFile>,
    /// Links between network namespaces, containers and pods on the VMs,
    /// made after the VMs (and the cluster) are up, before the scenarios:
    /// two endpoints on one VM are a veth pair, on two VMs a VXLAN tunnel.
    #[serde(default)]
    pub links: Vec<LinkFile>,
    /// Lab scenarios run after the VMs (and cluster) are up.
    #[serde(default)]
    pub scenarios: Vec<ScenarioFile>,
    /// Free variables for playbooks and templates (lowest precedence: lab
    /// `vars` < VM `vars` < `--var` on the command line).
    #[serde(default)]
    pub vars: Vars,
}

/// `virthost:` is a reference to an inventory file or an inline definition.
#[derive(Clone, Debug, JsonSchema)]
#[serde(untagged)]
pub enum VirthostRef {
    /// Name of a file in `inventories/` (`local` → `inventories/local.yaml`)
    /// or a path ending in `.yaml`.
    Inventory(String),
    Inline(Box<VirthostFile>),
}

impl<'de> Deserialize<'de> for VirthostRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = VirthostRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an inventory name (e.g. `local`) or a virthost mapping")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<VirthostRef, E> {
                Ok(VirthostRef::Inventory(s.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                m: A,
            ) -> Result<VirthostRef, A::Error> {
                VirthostFile::deserialize(serde::de::value::MapAccessDeserializer::new(m))
                    .map(|v| VirthostRef::Inline(Box::new(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A virthost: this machine (`local: true`) or one reached over SSH.
/// This is also the format of the files in `inventories/`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VirthostFile {
    /// Run everything on this machine, without SSH.
    #[serde(default)]
    pub local: bool,
    /// Host name or IP address to connect to.
    #[serde(default)]
    pub address: Option<String>,
    /// SSH port (default 22).
    #[serde(default)]
    pub port: Option<u16>,
    /// Login user (default root; other users need passwordless sudo).
    #[serde(default)]
    pub user: Option<String>,
    /// Private key file(s); `~` is expanded.
    #[serde(default)]
    pub identity_file: Option<String>,
    #[serde(default)]
    pub identity_files: Vec<String>,
    /// Also offer the keys of the running ssh-agent (`SSH_AUTH_SOCK`).
    #[serde(default)]
    pub agent: Option<bool>,
    /// What to do with a host key not yet known (default strict).
    #[serde(default)]
    pub host_key_policy: Option<HostKeyPolicyFile>,
    /// known_hosts file to check and learn host keys (default ~/.ssh/known_hosts).
    #[serde(default)]
    pub known_hosts: Option<String>,
    /// Reach the virthost through this SSH host first.
    #[serde(default)]
    pub jump: Option<Box<JumpFile>>,
    /// libvirt domain type: `auto` probes whether KVM really works.
    #[serde(default)]
    pub domain_type: Option<DomainTypeFile>,
    /// TCG translation cache per VM (domain type qemu), e.g. `256MiB`.
    #[serde(default)]
    pub tcg_cache: Option<String>,
    /// Directory for kubelab's storage pools and image cache on the virthost.
    #[serde(default)]
    pub storage_dir: Option<String>,
    /// The virthost's name in a lab's `virthosts` (DNS-1123 label).
    #[serde(default)]
    pub name: Option<String>,
    /// Memory kubelab may give VMs here when it places them, e.g. `48GiB`
    /// (default: what the virthost has available at `up`).
    #[serde(default)]
    pub memory: Option<String>,
    /// CPUs kubelab counts here when it places VMs (default: the
    /// virthost's own count at `up`).
    #[serde(default)]
    pub cpus: Option<u32>,
    /// The address the other virthosts of a lab reach this one at, for the
    /// VXLAN tunnels (default: `address`, when it is an IP address).
    #[serde(default)]
    pub tunnel_address: Option<String>,
}

/// An SSH jump host in front of the virthost.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JumpFile {
    pub address: String,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub identity_file: Option<String>,
    #[serde(default)]
    pub host_key_policy: Option<HostKeyPolicyFile>,
    /// A further jump in front of this one.
    #[serde(default)]
    pub jump: Option<Box<JumpFile>>,
}

/// A libvirt network.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkFile {
    /// DNS-1123 label, unique in the lab.
    pub name: String,
    /// `nat` (default), `isolated` (no route out), or `bridged` (a host bridge).
    #[serde(default)]
    pub kind: Option<NetworkKindFile>,
    /// IPv4 subnet, e.g. `192.168.150.0/24`; the virthost takes the first address.
    #[serde(default)]
    pub ipv4: Option<String>,
    /// DHCPv4 on this network (default: on when `ipv4` is set, except bridged).
    #[serde(default)]
    pub dhcp: Option<bool>,
    /// DHCPv4 range; default: the upper half of the subnet.
    #[serde(default)]
    pub dhcp_range: Option<DhcpRangeFile>,
    /// IPv6 prefix, e.g. `fd00:150::/64` (DHCPv6 + router advertisements).
    #[serde(default)]
    pub ipv6: Option<String>,
    /// Interface MTU.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// bridged: an existing host bridge to attach to.
    #[serde(default)]
    pub bridge: Option<String>,
    /// bridged: a host NIC kubelab enslaves into a bridge it creates.
    #[serde(default)]
    pub nic: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkKindFile {
    Nat,
    Isolated,
    Bridged,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DhcpRangeFile {
    pub start: String,
    pub end: String,
}

/// The base image: downloaded (`url` + `sha256`) or built offline (`build`).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageFile {
    /// qcow2 or raw image, optionally `.xz` / `.gz` compressed.
    #[serde(default)]
    pub url: Option<String>,
    /// SHA-256 of the file at `url`, as 64 hex digits.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Build a cloud-init image on the virthost from distribution packages.
    #[serde(default)]
    pub build: Option<String>,
    /// Extra packages baked into a built image.
    #[serde(default)]
    pub packages: Vec<String>,
    /// Login user created in every VM (default `kubelab`).
    #[serde(default)]
    pub user: Option<String>,
}

/// Defaults for every VM.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmDefaultsFile {
    #[serde(default)]
    pub cpus: Option<u32>,
    /// e.g. `2GiB`, `768MiB`.
    #[serde(default)]
    pub memory: Option<String>,
    /// Root disk size, e.g. `20GiB`.
    #[serde(default)]
    pub disk: Option<String>,
}

/// A virtual machine (or several, with `count` or a `{1..3}` range in the name).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmFile {
    /// DNS-1123 label; `kube-node-{1..3}` makes three VMs.
    pub name: String,
    /// Make this many VMs named `<name>-1` … `<name>-N`; static addresses
    /// count up from the one given.
    #[serde(default)]
    pub count: Option<u32>,
    /// Groups this VM belongs to: `control-plane`, `worker`, `lb`, `nat64`,
    /// `storage`, or any DNS-1123 label.
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub cpus: Option<u32>,
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub disk: Option<String>,
    /// Extra disks, attached as vdb, vdc, …
    #[serde(default)]
    pub spare_disks: Vec<SpareDiskFile>,
    /// Network interfaces; default one on the first network.
    #[serde(default)]
    pub nics: Vec<NicFile>,
    /// The virthost (of the lab's `virthosts`) this VM runs on; without
    /// it, kubelab places the VM (`placement`).
    #[serde(default)]
    pub virthost: Option<String>,
    /// Variables for this VM's playbooks and templates.
    #[serde(default)]
    pub vars: Vars,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpareDiskFile {
    /// e.g. `10GiB`.
    pub size: String,
    /// How many disks of this size (default 1).
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub format: Option<DiskFormatFile>,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NicFile {
    /// Name of a network of this lab.
    pub network: String,
    /// Static IPv4 address inside the network's subnet.
    #[serde(default)]
    pub ipv4: Option<String>,
    /// Static IPv6 address inside the network's prefix.
    #[serde(default)]
    pub ipv6: Option<String>,
}

/// Kubernetes with kubeadm.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesFile {
    /// Kubernetes minor or patch version, e.g. `"1.31"` or `"1.31.2"`.
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub runtime: Option<RuntimeFile>,
    /// Where the runtime's packages come from: `upstream` (default; Docker's
    /// repository for docker and containerd, CRI-O's for crio) or `distro`
    /// (the distribution's docker.io / containerd; docker and containerd only).
    #[serde(default)]
    pub runtime_packages: Option<RuntimePackagesFile>,
    #[serde(default)]
    pub cni: Option<CniFile>,
    #[serde(default)]
    pub ip_family: Option<IpFamilyFile>,
    /// Pod subnets (one per IP family).
    #[serde(default)]
    pub pod_cidrs: Vec<String>,
    /// Service subnets (one per IP family).
    #[serde(default)]
    pub service_cidrs: Vec<String>,
    /// The lab network that carries node traffic (default: the first NIC's).
    #[serde(default)]
    pub network: Option<String>,
    /// Several control planes behind a load balancer.
    #[serde(default)]
    pub ha: Option<HaFile>,
    /// Install from binaries in this local directory instead of repositories.
    #[serde(default)]
    pub airgap_dir: Option<String>,
    /// Merge the kubeconfig into ~/.kube/config as a context named after the lab.
    #[serde(default)]
    pub merge_kubeconfig: Option<bool>,
    /// SELinux mode on RHEL-like nodes (default permissive).
    #[serde(default)]
    pub selinux: Option<SelinuxFile>,
    /// Host firewall on nodes: `disable` (default), `open` the needed ports, or `keep`.
    #[serde(default)]
    pub firewall: Option<FirewallFile>,
}

#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HaFile {
    /// `haproxy` (a VM with role `lb`) or `kube-vip` (a virtual IP).
    pub mode: HaModeFile,
    /// kube-vip: the virtual IP, inside the Kubernetes network.
    #[serde(default)]
    pub vip: Option<String>,
}

/// A link between two endpoints (containerlab style). Both on one VM: a
/// veth pair; on two VMs: a VXLAN tunnel between them over the lab network
/// (each VM's end reaches the other VM's address).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkFile {
    /// Exactly two endpoints.
    pub endpoints: Vec<LinkEndpointFile>,
    /// VXLAN network identifier (1-16777215); default: derived from the
    /// lab's name and the endpoints, stable across runs.
    #[serde(default)]
    pub vni: Option<u32>,
    /// VXLAN UDP port (default 4789).
    #[serde(default)]
    pub port: Option<u16>,
    /// MTU of both ends (an endpoint's own `mtu` wins).
    #[serde(default)]
    pub mtu: Option<u32>,
}

/// One end of a link: a VM and, on it, the host's own network namespace
/// (no `netns`/`container`/`pod`), a named namespace (created when
/// missing), a container or a Kubernetes pod running there.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkEndpointFile {
    /// The VM this end is on.
    pub vm: String,
    /// A named network namespace (`ip netns`).
    #[serde(default)]
    pub netns: Option<String>,
    /// A container on the VM (see `runtime`).
    #[serde(default)]
    pub container: Option<String>,
    /// The container's runtime (default podman).
    #[serde(default)]
    pub runtime: Option<ContainerRuntimeFile>,
    /// A Kubernetes pod on the VM, `namespace/name` (found through crictl).
    #[serde(default)]
    pub pod: Option<String>,
    /// The interface name in the endpoint.
    pub ifname: String,
    /// Addresses with prefix length, IPv4 and IPv6.
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRuntimeFile {
    Podman,
    Docker,
    Crio,
}
