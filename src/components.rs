//! Versions, images and release files kubelab installs besides the
//! Kubernetes packages, each pinned so that a lab builds the same way
//! every night. Low in the house: the Kubernetes stage and `bundle` both
//! read it.

use serde::Serialize;

/// The pins, as the Kubernetes stage's playbooks see them
/// (`kube_components`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Components {
    pub flannel: &'static str,
    pub calico: &'static str,
    pub kube_vip: &'static str,
    /// The images of kubelab's own manifests (flannel's DaemonSet,
    /// kube-vip's static pod).
    pub images: ComponentImages,
    pub cri_dockerd: &'static str,
    /// cri-dockerd's release archive per node architecture (`uname -m`);
    /// the playbooks see a map.
    #[serde(serialize_with = "as_map")]
    pub cri_dockerd_archives: &'static [(&'static str, Download)],
}

fn as_map<S: serde::Serializer>(
    entries: &&'static [(&'static str, Download)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(entries.iter().map(|(k, v)| (k, v)))
}

/// Image references, `REGISTRY/REPOSITORY:TAG[@sha256:DIGEST]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ComponentImages {
    pub flannel: &'static str,
    pub flannel_cni_plugin: &'static str,
    pub kube_vip: &'static str,
}

/// A file kubelab downloads, with the SHA-256 it must have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Download {
    pub url: &'static str,
    pub sha256: &'static str,
}

pub const COMPONENTS: Components = Components {
    flannel: "v0.27.2",
    calico: "v3.29.3",
    kube_vip: "v0.8.9",
    // Pinned by the digest of each tag's image index (all architectures),
    // as published with flannel v0.27.2's pairing of flannel and its CNI
    // plugin (NVIDIA doca-platform's dpu-networking chart pins these two).
    // kube-vip by tag only: no published digest of v0.8.9 could be
    // verified, and a digest kubelab cannot check is not pinned.
    images: ComponentImages {
        flannel: "ghcr.io/flannel-io/flannel:v0.27.2@sha256:782c111d55e850e8038cdaf35454987e6c170ae9b54d5b12895b02d45c908caf",
        flannel_cni_plugin: "ghcr.io/flannel-io/flannel-cni-plugin:v1.7.1-flannel1@sha256:cb3176a2c9eae5fa0acd7f45397e706eacb4577dac33cad89f93b775ff5611df",
        kube_vip: "ghcr.io/kube-vip/kube-vip:v0.8.9",
    },
    cri_dockerd: "0.3.16",
    // Mirantis publishes no checksums; these are the release assets'
    // SHA-256 as kubespray pins them (roles/kubespray_defaults/vars/main/
    // checksums.yml, cri_dockerd_archive_checksums).
    cri_dockerd_archives: &[
        (
            "x86_64",
            Download {
                url: "https://github.com/Mirantis/cri-dockerd/releases/download/v0.3.16/cri-dockerd-0.3.16.amd64.tgz",
                sha256: "cc7f181ce850130dc375515c54cd8a27e1e862252abc5b7eade7b4a03ddabd8e",
            },
        ),
        (
            "aarch64",
            Download {
                url: "https://github.com/Mirantis/cri-dockerd/releases/download/v0.3.16/cri-dockerd-0.3.16.arm64.tgz",
                sha256: "0ab930b6f7ab87697cd94c954d01e19fdd5b5d65810662effb957c5db49a55d4",
            },
        ),
    ],
};
