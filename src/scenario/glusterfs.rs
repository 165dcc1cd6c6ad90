//! `glusterfs`: GlusterFS on the storage VMs' spare disks, mounted by a
//! client VM (host mode), or with heketi and a StorageClass on the cluster.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Checks, LabParts, ClusterMode, Scenario, many, one, owned, to_json};
use crate::lab::model::Vm;
use crate::yaml::Seg;

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GlusterfsParams {
    /// `host`: glusterd on the storage VMs; `kubernetes`: heketi + StorageClass.
    #[serde(default)]
    pub mode: ClusterMode,
    /// The storage VMs; the first spare disk of each becomes a brick
    /// (default: the VMs with role `storage`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage: Vec<String>,
    /// Replica count (default: the number of storage VMs, at most 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<u32>,
    /// VM that mounts the volume (default: the first non-storage VM, else
    /// the first storage VM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Name of the volume (host mode; default `kubelab`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
    /// `kubernetes`: GlusterFS's image (default
    /// docker.io/gluster/gluster-centos:latest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glusterfs_image: Option<String>,
    /// `kubernetes`: heketi's image (default docker.io/heketi/heketi:9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heketi_image: Option<String>,
    /// `kubernetes`: the verify's MySQL image (default
    /// docker.io/library/mysql:8.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mysql_image: Option<String>,
}

/// What the playbooks see as `scenario`.
#[derive(Serialize)]
struct Resolved {
    mode: ClusterMode,
    storage: Vec<String>,
    replica: u32,
    client: Option<String>,
    volume: String,
    glusterfs_image: String,
    heketi_image: String,
    mysql_image: String,
}

impl GlusterfsParams {
    /// The storage VMs, defaults resolved.
    pub fn storage_vms<'a>(&'a self, vms: &'a [Vm]) -> Vec<&'a str> {
        if !self.storage.is_empty() {
            return self.storage.iter().map(String::as_str).collect();
        }
        vms.iter()
            .filter(|v| v.has_role("storage"))
            .map(|v| v.name.as_str())
            .collect()
    }

    /// The client VM, defaults resolved.
    pub fn client_vm<'a>(&'a self, vms: &'a [Vm]) -> Option<&'a str> {
        if let Some(c) = &self.client {
            return Some(c);
        }
        let storage = self.storage_vms(vms);
        vms.iter()
            .map(|v| v.name.as_str())
            .find(|n| !storage.contains(n))
            .or_else(|| storage.first().copied())
    }

    /// The replica count, defaults resolved.
    pub fn replica_count(&self, vms: &[Vm]) -> u32 {
        self.replica
            .unwrap_or_else(|| self.storage_vms(vms).len().min(3) as u32)
    }
}

impl Scenario for GlusterfsParams {
    fn vm_refs(&self) -> Vec<(Vec<Seg>, &str)> {
        let mut refs = many("storage", &self.storage);
        refs.extend(one("client", &self.client));
        refs
    }

    /// `gluster_storage` and `gluster_client`.
    fn groups(&self, vms: &[Vm]) -> Vec<(String, Vec<String>)> {
        vec![
            ("gluster_storage".into(), owned(self.storage_vms(vms))),
            ("gluster_client".into(), owned(self.client_vm(vms))),
        ]
    }

    fn needs_kubernetes(&self) -> bool {
        self.mode == ClusterMode::Kubernetes
    }

    fn check(&self, c: &mut Checks<'_, '_>) {
        let p = self;
        for (param, image) in [
            ("glusterfs_image", &p.glusterfs_image),
            ("heketi_image", &p.heketi_image),
            ("mysql_image", &p.mysql_image),
        ] {
            super::check_image(c, param, image.as_ref());
        }
        let vms = c.vms;
        let storage_names = p.storage_vms(vms);
        let storage: Vec<&Vm> = storage_names
            .iter()
            .filter_map(|n| vms.iter().find(|v| &v.name == n))
            .collect();
        // Where the storage VMs were chosen: the params, or the scenario itself
        // (roles).
        let storage_at = if p.storage.is_empty() {
            c.name()
        } else {
            c.param("storage")
        };
        if storage_names.len() < 2 {
            if p.storage.is_empty() {
                c.error_help(
                    &storage_at,
                    format!(
                        "glusterfs needs at least two VMs with role `storage` (found {})",
                        storage_names.len()
                    ),
                    "give the storage VMs `roles: [storage]` and a spare disk each",
                );
            } else {
                c.error(&storage_at, "glusterfs needs at least two storage VMs");
            }
        }
        if p.mode == ClusterMode::Kubernetes && storage_names.len() == 2 {
            c.error_help(
                &storage_at,
                "glusterfs in Kubernetes mode needs three storage VMs: heketi keeps its own database on a replica-3 volume",
                "add a third storage VM, or use `mode: host`",
            );
        }
        for (k, name) in storage_names.iter().enumerate() {
            if storage_names[..k].contains(name) {
                c.error(&storage_at, format!("storage VM `{name}` is listed twice"));
            }
        }
        for v in &storage {
            if v.spare_disks.is_empty() {
                c.error(
                    &storage_at,
                    format!("storage VM `{}` has no spare disk for a brick", v.name),
                );
            }
        }
        if let Some(r) = p.replica {
            let why = if r < 2 {
                Some(format!("replica {r} is no replication: use 2 or more"))
            } else if r as usize > storage_names.len().max(2) {
                Some(format!(
                    "replica {r} needs {r} storage VMs, the lab has {}",
                    storage_names.len()
                ))
            } else {
                None
            };
            if let Some(why) = why {
                c.error(&c.param("replica"), why);
            }
        }
        let replica = p.replica_count(vms) as usize;
        if replica >= 2
            && storage_names.len() > replica
            && !storage_names.len().is_multiple_of(replica)
        {
            let at = if p.replica.is_some() {
                c.param("replica")
            } else {
                storage_at.clone()
            };
            c.error_help(
                &at,
                format!(
                    "{} storage VMs do not make whole replica sets of {replica}",
                    storage_names.len()
                ),
                "use a number of storage VMs that is a multiple of `replica`, or set `replica`",
            );
        }
        if let Some(v) = &p.volume {
            c.label(&c.param("volume"), "volume name", v, 40);
        }
    }

    fn resolved(&self, lab: &LabParts<'_>) -> Value {
        let [glusterfs_image, heketi_image, mysql_image] = self.images_resolved();
        to_json(Resolved {
            mode: self.mode,
            storage: owned(self.storage_vms(lab.vms)),
            replica: self.replica_count(lab.vms),
            client: self.client_vm(lab.vms).map(str::to_string),
            volume: self.volume.clone().unwrap_or_else(|| "kubelab".into()),
            glusterfs_image,
            heketi_image,
            mysql_image,
        })
    }

    fn images(&self, _lab: &LabParts<'_>) -> Vec<String> {
        if self.mode == ClusterMode::Kubernetes {
            self.images_resolved().to_vec()
        } else {
            Vec::new()
        }
    }
}

impl GlusterfsParams {
    /// GlusterFS's, heketi's and MySQL's images, defaults resolved.
    fn images_resolved(&self) -> [String; 3] {
        let or = |image: &Option<String>, default: &str| {
            image.clone().unwrap_or_else(|| default.to_string())
        };
        [
            or(&self.glusterfs_image, "docker.io/gluster/gluster-centos:latest"),
            or(&self.heketi_image, "docker.io/heketi/heketi:9"),
            or(&self.mysql_image, "docker.io/library/mysql:8.0"),
        ]
    }
}
