//! What an air-gap bundle of a lab holds: the files the Kubernetes stage
//! installs from `airgap_dir` (under the names `playbooks/kubernetes/`
//! reads) and the container images its nodes run, each with where it comes
//! from and how it is checked. Pure: computed from the validated lab, so
//! the same lab always asks for the same bundle.

use serde::Serialize;

use crate::components::COMPONENTS;
use crate::containerd;
use crate::lab::Lab;
use crate::lab::model::{Cni, HaMode, Runtime};

/// The CNI reference plugins the air-gapped nodes get (the packages'
/// `kubernetes-cni` is not there without a repository).
pub const CNI_PLUGINS: &str = "v1.6.2";

/// A node architecture as release files name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    pub fn name(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// This machine's architecture, when it is one kubelab bundles for.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::Amd64),
            "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "amd64" | "x86_64" => Some(Arch::Amd64),
            "arm64" | "aarch64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

/// How a downloaded file's SHA-256 is known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Checksum {
    /// Pinned in kubelab.
    Pinned(String),
    /// Published by the project beside the file: a `sha256`/`sha256sum`
    /// file with either the bare digest or `DIGEST  NAME` lines, of which
    /// the line naming `name` (the last part of the file's URL) counts.
    Published { url: String, name: String },
}

/// One file of the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileSource {
    /// Its name in the bundle (what the stage's playbooks upload).
    pub name: String,
    pub url: String,
    pub checksum: Checksum,
    /// Mode bits of the bundled file (binaries are executable).
    pub executable: bool,
}

/// Where one image of the bundle comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImageSource {
    /// The reference the nodes' manifests use, e.g.
    /// `registry.k8s.io/kube-apiserver:v1.28.15` (possibly `@sha256:…`).
    pub reference: String,
    /// Which part of the lab runs it.
    pub used_by: &'static str,
}

/// Everything a lab's bundle holds, except kubeadm's own image list, which
/// comes from the bundled kubeadm (`kubeadm config images list`) once it
/// is downloaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Contents {
    /// The exact Kubernetes release, `1.28.15`.
    pub kubernetes: String,
    pub arch: Arch,
    pub containerd: &'static str,
    pub runc: &'static str,
    pub files: Vec<FileSource>,
    /// Images besides kubeadm's.
    pub images: Vec<ImageSource>,
}

/// Why a lab cannot be bundled.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContentsError {
    #[error(
        "the lab has no `kubernetes:` section; a bundle holds what its Kubernetes stage installs"
    )]
    NoKubernetes,
    #[error(
        "kubernetes.version is {0:?}: a bundle is made for one exact release; write it as 1.MINOR.PATCH (for example \"{0}.0\")"
    )]
    NotExact(String),
    #[error(
        "air-gapped nodes run containerd from the bundle (kubernetes.runtime: containerd); runtime {0} needs its package repository"
    )]
    Runtime(&'static str),
    #[error(
        "Calico's images are chosen by the Tigera operator at run time and its manifest has no checksum kubelab can verify: air-gapped labs use cni: flannel (or none)"
    )]
    Calico,
}

impl Contents {
    pub fn for_lab(lab: &Lab, arch: Arch) -> Result<Contents, ContentsError> {
        let k = lab.kubernetes.as_ref().ok_or(ContentsError::NoKubernetes)?;
        let exact = k.version.split('.').count() == 3;
        if !exact {
            return Err(ContentsError::NotExact(k.version.clone()));
        }
        match k.runtime {
            Runtime::Containerd => {}
            Runtime::Docker => return Err(ContentsError::Runtime("docker")),
            Runtime::Crio => return Err(ContentsError::Runtime("crio")),
        }
        let minor = k.minor();
        let version = k.version.clone();
        let a = arch.name();
        let line = containerd::upstream_line(minor);
        let (containerd, runc) = containerd::bundle_release(line);

        let kube = |name: &str| {
            let url = format!("https://dl.k8s.io/release/v{version}/bin/linux/{a}/{name}");
            FileSource {
                name: name.to_string(),
                checksum: published(&url, ".sha256"),
                url,
                executable: true,
            }
        };
        let crictl = format!("v1.{minor}.0");
        let crictl_url = format!(
            "https://github.com/kubernetes-sigs/cri-tools/releases/download/{crictl}/crictl-{crictl}-linux-{a}.tar.gz"
        );
        let cni_url = format!(
            "https://github.com/containernetworking/plugins/releases/download/{CNI_PLUGINS}/cni-plugins-linux-{a}-{CNI_PLUGINS}.tgz"
        );
        let containerd_url = format!(
            "https://github.com/containerd/containerd/releases/download/v{containerd}/containerd-{containerd}-linux-{a}.tar.gz"
        );
        let runc_dir = format!("https://github.com/opencontainers/runc/releases/download/v{runc}");
        let files = vec![
            kube("kubeadm"),
            kube("kubelet"),
            kube("kubectl"),
            FileSource {
                name: "crictl.tar.gz".into(),
                checksum: published(&crictl_url, ".sha256"),
                url: crictl_url,
                executable: false,
            },
            FileSource {
                name: "cni-plugins.tgz".into(),
                checksum: published(&cni_url, ".sha256"),
                url: cni_url,
                executable: false,
            },
            FileSource {
                name: "containerd.tar.gz".into(),
                checksum: published(&containerd_url, ".sha256sum"),
                url: containerd_url,
                executable: false,
            },
            FileSource {
                name: "runc".into(),
                url: format!("{runc_dir}/runc.{a}"),
                checksum: Checksum::Published {
                    url: format!("{runc_dir}/runc.sha256sum"),
                    name: format!("runc.{a}"),
                },
                executable: true,
            },
        ];

        let mut images = Vec::new();
        match k.cni {
            Cni::Flannel => {
                images.push(ImageSource {
                    reference: COMPONENTS.images.flannel.into(),
                    used_by: "flannel",
                });
                images.push(ImageSource {
                    reference: COMPONENTS.images.flannel_cni_plugin.into(),
                    used_by: "flannel",
                });
            }
            Cni::Calico => return Err(ContentsError::Calico),
            Cni::None => {}
        }
        if k.ha.as_ref().is_some_and(|h| h.mode == HaMode::KubeVip) {
            images.push(ImageSource {
                reference: COMPONENTS.images.kube_vip.into(),
                used_by: "kube-vip",
            });
        }
        for scenario in &lab.scenarios {
            for reference in scenario.kind().images(&lab.parts()) {
                if !images.iter().any(|i| i.reference == reference) {
                    images.push(ImageSource {
                        reference,
                        used_by: scenario.name(),
                    });
                }
            }
        }
        Ok(Contents {
            kubernetes: version,
            arch,
            containerd,
            runc,
            files,
            images,
        })
    }
}

/// The checksum file a project publishes beside `url` with `suffix`.
fn published(url: &str, suffix: &str) -> Checksum {
    Checksum::Published {
        url: format!("{url}{suffix}"),
        name: url.rsplit('/').next().unwrap_or(url).to_string(),
    }
}

/// The SHA-256 a published checksum file gives for `name`: the file's
/// only word when it holds a bare digest, else the digest of the line
/// `DIGEST  NAME` (or `DIGEST *NAME`, sha256sum's binary mode).
pub fn published_digest(text: &str, name: &str) -> Option<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let hex = |w: &str| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit());
    if words.len() == 1 && hex(words[0]) {
        return Some(words[0].to_ascii_lowercase());
    }
    text.lines().find_map(|line| {
        let mut parts = line.split_whitespace();
        let digest = parts.next()?;
        let file = parts.next()?.trim_start_matches('*');
        let file = file.rsplit('/').next().unwrap_or(file);
        (hex(digest) && file == name && parts.next().is_none()).then(|| digest.to_ascii_lowercase())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::{LoadOptions, load_str};

    fn lab(kubernetes: &str) -> Lab {
        let text = format!(
            "name: t\nvirthost: {{local: true}}\nimage: {{build: debian-12}}\n\
             networks: [{{name: lan, kind: nat, ipv4: 192.168.50.0/24}}]\n\
             vms:\n  - {{name: cp, roles: [control-plane]}}\n  - {{name: w, roles: [worker]}}\n\
             kubernetes: {{{kubernetes}}}\n"
        );
        match load_str(
            std::path::Path::new("t.yaml"),
            &text,
            &LoadOptions::default(),
        ) {
            Ok((lab, _)) => lab,
            Err(d) => panic!("{d:?}\n{text}"),
        }
    }

    #[test]
    fn the_release_files_of_a_minor_and_architecture() {
        let c =
            Contents::for_lab(&lab("version: '1.31.4', runtime: containerd"), Arch::Arm64).unwrap();
        let urls: Vec<(&str, &str)> = c
            .files
            .iter()
            .map(|f| (f.name.as_str(), f.url.as_str()))
            .collect();
        assert_eq!(
            urls,
            [
                (
                    "kubeadm",
                    "https://dl.k8s.io/release/v1.31.4/bin/linux/arm64/kubeadm"
                ),
                (
                    "kubelet",
                    "https://dl.k8s.io/release/v1.31.4/bin/linux/arm64/kubelet"
                ),
                (
                    "kubectl",
                    "https://dl.k8s.io/release/v1.31.4/bin/linux/arm64/kubectl"
                ),
                (
                    "crictl.tar.gz",
                    "https://github.com/kubernetes-sigs/cri-tools/releases/download/v1.31.0/crictl-v1.31.0-linux-arm64.tar.gz"
                ),
                (
                    "cni-plugins.tgz",
                    "https://github.com/containernetworking/plugins/releases/download/v1.6.2/cni-plugins-linux-arm64-v1.6.2.tgz"
                ),
                (
                    "containerd.tar.gz",
                    "https://github.com/containerd/containerd/releases/download/v2.1.1/containerd-2.1.1-linux-arm64.tar.gz"
                ),
                (
                    "runc",
                    "https://github.com/opencontainers/runc/releases/download/v1.3.0/runc.arm64"
                ),
            ]
        );
        assert_eq!(
            c.files[6].checksum,
            Checksum::Published {
                url:
                    "https://github.com/opencontainers/runc/releases/download/v1.3.0/runc.sha256sum"
                        .into(),
                name: "runc.arm64".into()
            }
        );
        assert_eq!(
            c.files[5].checksum,
            Checksum::Published {
                url: "https://github.com/containerd/containerd/releases/download/v2.1.1/containerd-2.1.1-linux-arm64.tar.gz.sha256sum".into(),
                name: "containerd-2.1.1-linux-arm64.tar.gz".into()
            }
        );
        // Flannel (the default CNI) by digest.
        let images: Vec<&str> = c.images.iter().map(|i| i.reference.as_str()).collect();
        assert_eq!(images.len(), 2);
        assert!(
            images
                .iter()
                .all(|i| i.starts_with("ghcr.io/flannel-io/") && i.contains("@sha256:")),
            "{images:?}"
        );
        let old = Contents::for_lab(
            &lab("version: '1.28.15', runtime: containerd, cni: none"),
            Arch::Amd64,
        )
        .unwrap();
        assert_eq!((old.containerd, old.runc), ("1.7.27", "1.2.5"));
        assert!(old.images.is_empty());
        // Every bundled containerd is one its minor supports.
        for minor in 24..=35 {
            let (release, _) = containerd::bundle_release(containerd::upstream_line(minor));
            assert!(
                containerd::supported(minor)
                    .iter()
                    .any(|(line, _)| release.starts_with(&format!("{line}."))),
                "1.{minor}: {release}"
            );
        }
    }

    #[test]
    fn scenarios_bring_the_images_their_kubernetes_mode_runs() {
        let text = [
            "name: t",
            "virthost: {local: true}",
            "image: {build: debian-12}",
            "networks: [{name: lan, kind: nat, ipv4: 192.168.50.0/24, ipv6: 'fd00:50::/64'}]",
            "vms:",
            "  - {name: cp, roles: [control-plane]}",
            "  - {name: w1, roles: [worker, storage], spare_disks: [{size: 10GiB}]}",
            "  - {name: w2, roles: [worker, storage], spare_disks: [{size: 10GiB}]}",
            "  - {name: w3, roles: [worker, storage], spare_disks: [{size: 10GiB}]}",
            "kubernetes: {version: '1.31.4', runtime: containerd, cni: none, ip_family: dual}",
            "scenarios:",
            "  - {name: glusterfs, params: {mode: kubernetes, heketi_image: 'quay.io/x/heketi:1'}}",
            "  - {name: ipv6-ping6}",
        ]
        .join("\n");
        let l = match load_str(
            std::path::Path::new("t.yaml"),
            &text,
            &LoadOptions::default(),
        ) {
            Ok((lab, _)) => lab,
            Err(d) => panic!("{d:?}"),
        };
        let c = Contents::for_lab(&l, Arch::Amd64).unwrap();
        let images: Vec<(&str, &str)> = c
            .images
            .iter()
            .map(|i| (i.reference.as_str(), i.used_by))
            .collect();
        assert_eq!(
            images,
            [
                ("docker.io/gluster/gluster-centos:latest", "glusterfs"),
                ("quay.io/x/heketi:1", "glusterfs"),
                ("docker.io/library/mysql:8.0", "glusterfs"),
                ("docker.io/library/busybox:1.36", "ipv6-ping6"),
            ]
        );
    }

    #[test]
    fn what_cannot_be_bundled_is_said() {
        let err = |k: &str| Contents::for_lab(&lab(k), Arch::Amd64).unwrap_err();
        assert_eq!(
            err("version: '1.31'"),
            ContentsError::NotExact("1.31".into())
        );
        assert_eq!(
            err("version: '1.31.1', runtime: crio"),
            ContentsError::Runtime("crio")
        );
        assert_eq!(
            err("version: '1.31.1', runtime: containerd, cni: calico"),
            ContentsError::Calico
        );
    }

    #[test]
    fn checksum_files_of_each_published_shape() {
        let d = "a".repeat(64);
        assert_eq!(
            published_digest(&format!("{d}\n"), "kubeadm"),
            Some(d.clone())
        );
        let runc = format!("{}  runc.arm64\n{d}  runc.amd64\n", "b".repeat(64));
        assert_eq!(published_digest(&runc, "runc.amd64"), Some(d.clone()));
        assert_eq!(published_digest(&runc, "runc.ppc64le"), None);
        let star = format!("{d} *containerd-1.7.27-linux-amd64.tar.gz\n");
        assert_eq!(
            published_digest(&star, "containerd-1.7.27-linux-amd64.tar.gz"),
            Some(d.clone())
        );
        assert_eq!(published_digest("not a digest", "x"), None);
        assert_eq!(published_digest(&"c".repeat(63), "x"), None);
    }
}
