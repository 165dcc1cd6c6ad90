//! `ratchet-pairs` (after Ratchet CNI): pairs of workloads linked by a veth
//! on one host, a VXLAN link across two; in mode `ratchet-cni` the real
//! Ratchet CNI plugin links pods on the cluster instead.

use std::collections::BTreeMap;

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Checks, LabParts, Scenario, VXLAN_PORT, to_json};
use crate::yaml::Seg;

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatchetPairsParams {
    /// `kubelab` links the workloads itself; `ratchet-cni` installs the
    /// Ratchet CNI plugin on the cluster (needs `kubernetes`).
    #[serde(default)]
    pub mode: RatchetMode,
    /// The workloads and their links (default: one pair, `rp-primary`
    /// 192.168.2.100/24 `in1` on the first VM and `rp-pair`
    /// 192.168.2.101/24 `in2` on the second, as in Ratchet's example).
    #[serde(default)]
    pub pairs: Vec<RatchetPair>,
    /// VNI of the first pair across hosts; pair k uses `vni + k`
    /// (default 11, as Ratchet counted).
    #[serde(default)]
    pub vni: Option<u32>,
    /// UDP port of the VXLAN links (default 4789).
    #[serde(default)]
    pub port: Option<u16>,
    /// ratchet-cni: a .tar.gz with the `ratchet` and `ratchet-child`
    /// binaries (built from github.com/dougbtv/ratchet-cni), installed in
    /// /opt/cni/bin on every node; without it they must be there already.
    #[serde(default)]
    pub binaries_url: Option<String>,
    /// ratchet-cni: its SHA-256, as 64 hex digits.
    #[serde(default)]
    pub binaries_sha256: Option<String>,
    /// ratchet-cni: the etcd image (default registry.k8s.io/etcd:3.5.16-0,
    /// which kubeadm's control planes already hold).
    #[serde(default)]
    pub etcd_image: Option<String>,
    /// ratchet-cni: the pairs' pod image (default docker.io/library/busybox:1.36).
    #[serde(default)]
    pub pod_image: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RatchetMode {
    #[default]
    Kubelab,
    RatchetCni,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatchetPair {
    pub primary: RatchetEnd,
    pub pair: RatchetEnd,
}

#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RatchetEnd {
    /// Workload name (container or pod).
    pub name: String,
    /// The VM it runs on.
    pub vm: String,
    /// Address with prefix length, e.g. `192.168.2.100/24`.
    pub ip: String,
    /// Interface name inside the workload (default `in1`).
    #[serde(default)]
    pub ifname: Option<String>,
}

/// What the playbooks see as `scenario`.
#[derive(Serialize)]
struct Resolved {
    mode: RatchetMode,
    /// Every end with its `ifname`.
    pairs: Vec<RatchetPair>,
    vni: u32,
    port: u16,
    binaries_url: Option<String>,
    binaries_sha256: Option<String>,
    etcd_image: String,
    pod_image: String,
}

impl RatchetPair {
    /// Both ends, with the names their paths take.
    fn ends(&self) -> [(&'static str, &RatchetEnd); 2] {
        [("primary", &self.primary), ("pair", &self.pair)]
    }
}

/// The pair of Ratchet's example, on the first VM and the second (the first
/// when there is one).
fn default_pair(vms: &[String]) -> RatchetPair {
    let first = vms.first().cloned().unwrap_or_default();
    let second = vms.get(1).cloned().unwrap_or_else(|| first.clone());
    let end = |name: &str, vm: String, ip: &str, ifname: &str| RatchetEnd {
        name: name.into(),
        vm,
        ip: ip.into(),
        ifname: Some(ifname.into()),
    };
    RatchetPair {
        primary: end("rp-primary", first, "192.168.2.100/24", "in1"),
        pair: end("rp-pair", second, "192.168.2.101/24", "in2"),
    }
}

impl Scenario for RatchetPairsParams {
    fn vm_refs(&self) -> Vec<(Vec<Seg>, &str)> {
        self.pairs
            .iter()
            .enumerate()
            .flat_map(|(i, pair)| {
                pair.ends()
                    .into_iter()
                    .map(move |(side, end)| (crate::path!["pairs", i, side, "vm"], end.vm.as_str()))
            })
            .collect()
    }

    fn needs_kubernetes(&self) -> bool {
        self.mode == RatchetMode::RatchetCni
    }

    fn check(&self, c: &mut Checks<'_, '_>) {
        c.vxlan(self.vni, self.port);
        if self.mode == RatchetMode::RatchetCni {
            match &self.binaries_url {
                Some(u) if !(u.starts_with("https://") || u.starts_with("http://")) => {
                    c.error(
                        &c.param("binaries_url"),
                        format!("`{u}` is not an http(s) URL"),
                    );
                }
                _ => {}
            }
            let sha_ok = self
                .binaries_sha256
                .as_ref()
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if self.binaries_url.is_some() && !sha_ok {
                c.error(
                    &c.param("binaries_sha256"),
                    "binaries_sha256 must be the archive's SHA-256 as 64 hex digits",
                );
            }
        } else {
            for (key, set) in [
                ("binaries_url", self.binaries_url.is_some()),
                ("binaries_sha256", self.binaries_sha256.is_some()),
                ("etcd_image", self.etcd_image.is_some()),
                ("pod_image", self.pod_image.is_some()),
            ] {
                if set {
                    c.warning(
                        &c.param(key),
                        format!("`{key}` is only used in mode ratchet-cni"),
                    );
                }
            }
        }
        super::check_image(c, "etcd_image", self.etcd_image.as_ref());
        super::check_image(c, "pod_image", self.pod_image.as_ref());
        if let Some(v) = self.vni
            && u64::from(v) + self.pairs.len() as u64 > 0xFF_FFFF
        {
            c.error(
                &c.param("vni"),
                format!("VNI {v} + {} pairs goes past 16777215", self.pairs.len()),
            );
        }
        if self.pairs.is_empty() && c.vms.len() < 2 && !c.vms_unreadable() {
            c.error_help(
                &c.name(),
                "the default ratchet pair spans two VMs: the lab needs two, or give `pairs`",
                "pairs: [{primary: {name: a, vm: node-1, ip: 192.168.2.100/24}, pair: {name: b, vm: node-1, ip: 192.168.2.101/24}}]",
            );
        }
        let mut names: BTreeMap<(&str, &str), (usize, &str)> = BTreeMap::new();
        for (k, pair) in self.pairs.iter().enumerate() {
            for (side, end) in pair.ends() {
                if let Some((first, first_side)) =
                    names.insert((end.vm.as_str(), end.name.as_str()), (k, side))
                {
                    c.error(
                        &c.under(crate::path!["pairs", k, side, "name"]),
                        format!(
                            "workload `{}` on {} is also pairs[{first}].{first_side}: one link per workload",
                            end.name, end.vm
                        ),
                    );
                }
            }
        }
        for (k, pair) in self.pairs.iter().enumerate() {
            for (side, end) in pair.ends() {
                let at = |key: &str| c.under(crate::path!["pairs", k, side, key]);
                let (ip_at, name_at, ifname_at) = (at("ip"), at("name"), at("ifname"));
                if end.ip.parse::<IpNet>().is_err() {
                    c.error(
                        &ip_at,
                        format!(
                            "`{}` is not an address with prefix length (e.g. 192.168.2.100/24)",
                            end.ip
                        ),
                    );
                }
                c.label(&name_at, "workload name", &end.name, 40);
                if let Some(ifname) = &end.ifname
                    && let Some(why) = crate::lab::validate::ifname_problem(ifname)
                {
                    c.error(
                        &ifname_at,
                        format!("`{ifname}` is not an interface name: {why}"),
                    );
                }
            }
        }
    }

    fn resolved(&self, lab: &LabParts<'_>) -> Value {
        let pairs = if self.pairs.is_empty() {
            vec![default_pair(&super::all(lab.vms))]
        } else {
            let with_ifname = |end: &RatchetEnd| RatchetEnd {
                ifname: Some(end.ifname.clone().unwrap_or_else(|| "in1".into())),
                ..end.clone()
            };
            self.pairs
                .iter()
                .map(|p| RatchetPair {
                    primary: with_ifname(&p.primary),
                    pair: with_ifname(&p.pair),
                })
                .collect()
        };
        let [etcd_image, pod_image] = self.images_resolved();
        to_json(Resolved {
            mode: self.mode,
            pairs,
            vni: self.vni.unwrap_or(11),
            port: self.port.unwrap_or(VXLAN_PORT),
            binaries_url: self.binaries_url.clone(),
            binaries_sha256: self.binaries_sha256.clone(),
            etcd_image,
            pod_image,
        })
    }

    fn images(&self, _lab: &LabParts<'_>) -> Vec<String> {
        if self.mode == RatchetMode::RatchetCni {
            self.images_resolved().to_vec()
        } else {
            Vec::new()
        }
    }
}

impl RatchetPairsParams {
    /// etcd's and the pairs' pod image, defaults resolved.
    fn images_resolved(&self) -> [String; 2] {
        [
            self.etcd_image
                .clone()
                .unwrap_or_else(|| "registry.k8s.io/etcd:3.5.16-0".into()),
            self.pod_image
                .clone()
                .unwrap_or_else(|| "docker.io/library/busybox:1.36".into()),
        ]
    }
}
