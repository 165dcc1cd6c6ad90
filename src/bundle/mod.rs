//! `kubelab bundle`: everything a lab's Kubernetes stage needs, gathered on
//! a connected machine into one directory that `kubernetes.airgap_dir`
//! points at: the binaries and archives (each checked against the SHA-256
//! its project publishes or kubelab pins), the images of kubeadm's
//! control plane, the CNI and kube-vip as OCI archives (pulled through the
//! OCI distribution API, every blob checked against its digest), and
//! `bundle.json` listing every file with its SHA-256 and origin.
//!
//! `bundle.json` is written last: a directory without it is not a bundle.
//! A failed run removes what it wrote.

pub mod contents;
pub mod fetch;
pub mod image;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lab::Lab;
use contents::{Arch, Checksum, Contents, ContentsError};
use fetch::Downloader;
use image::{Mirror, Puller};

/// The manifest's name inside a bundle.
pub const MANIFEST: &str = "bundle.json";
/// Where image archives go inside a bundle.
pub const IMAGES_DIR: &str = "images";

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{0}")]
    Contents(#[from] ContentsError),
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    #[error("{url}: checksum mismatch: expected sha256 {expected}, got {got}; nothing kept")]
    Checksum {
        url: String,
        expected: String,
        got: String,
    },
    #[error("{url}: the published checksum file has no SHA-256 for {name}")]
    NoPublishedChecksum { url: String, name: String },
    #[error("{reference}: {message}")]
    Image { reference: String, message: String },
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("kubeadm config images list: {0}")]
    Kubeadm(String),
    #[error("{}: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
}

impl BundleError {
    /// A file of the bundle could not be read or written.
    fn io(path: &Path, e: std::io::Error) -> BundleError {
        BundleError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// rustls' crypto provider for the HTTPS clients (ring, as russh uses);
/// installed once per process.
fn tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// How to make a bundle.
#[derive(Clone, Debug)]
pub struct Request {
    pub arch: Arch,
    /// Base URL serving the upstream files under `/<host>/<path>`.
    pub download_mirror: Option<String>,
    pub registry_mirrors: Vec<Mirror>,
}

/// `bundle.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format of this file.
    pub format: u32,
    pub lab: String,
    pub kubernetes: String,
    pub arch: String,
    pub containerd: String,
    pub runc: String,
    pub files: Vec<BundledFile>,
    pub images: Vec<BundledImage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundledFile {
    /// Path inside the bundle.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// Where it came from (upstream URL).
    pub origin: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundledImage {
    pub reference: String,
    /// `kubeadm`, `flannel`, `kube-vip`.
    pub used_by: String,
    /// Digest of what the reference names (index or manifest).
    pub digest: String,
    /// The manifest of the bundle's architecture.
    pub manifest: String,
    /// The image config's digest (Docker's image ID).
    pub config: String,
    /// The archive inside the bundle.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    /// The registry it was read from.
    pub origin: String,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Manifest, BundleError> {
        let path = dir.join(MANIFEST);
        let fail = |message: String| BundleError::Manifest {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| fail(e.to_string()))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| fail(format!("not a kubelab bundle manifest: {e}")))?;
        if manifest.format != 1 {
            return Err(fail(format!(
                "format {} (this kubelab reads 1)",
                manifest.format
            )));
        }
        Ok(manifest)
    }

    /// Every file and archive the manifest lists, present in `dir` with its
    /// SHA-256; the problems otherwise, one per file.
    pub fn check(&self, dir: &Path) -> Vec<String> {
        let entries = self
            .files
            .iter()
            .map(|f| (&f.path, &f.sha256))
            .chain(self.images.iter().map(|i| (&i.path, &i.sha256)));
        let mut problems = Vec::new();
        for (path, sha256) in entries {
            let Some(file) = inside(dir, path) else {
                problems.push(format!("{path}: not a path inside the bundle"));
                continue;
            };
            match fetch::file_sha256(&file) {
                Ok(got) if &got == sha256 => {}
                Ok(got) => {
                    problems.push(format!("{path}: sha256 {got}, the manifest says {sha256}"))
                }
                Err(e) => problems.push(format!("{path}: {e}")),
            }
        }
        problems
    }
}

/// The `kube_bundle` variable of the Kubernetes stage for a lab with
/// `airgap_dir: dir` and Kubernetes `version` (a minor or a release):
/// the bundle's release and its images (`path` inside the bundle, `file`
/// its name on the node, `reference`, `digest`, `config`). The bundle must
/// be whole (every file with the SHA-256 its `bundle.json` says) and of
/// the lab's release; otherwise the reasons, one per line.
pub fn stage_vars(dir: &Path, version: &str) -> Result<serde_json::Value, String> {
    let manifest = Manifest::read(dir).map_err(|e| {
        format!(
            "{e}; make the bundle with `kubelab bundle LAB -o {}`",
            dir.display()
        )
    })?;
    let same_release = if version.split('.').count() == 3 {
        manifest.kubernetes == version
    } else {
        manifest.kubernetes.starts_with(&format!("{version}."))
    };
    if !same_release {
        return Err(format!(
            "the bundle holds Kubernetes {}, the lab wants {version}",
            manifest.kubernetes
        ));
    }
    let problems = manifest.check(dir);
    if !problems.is_empty() {
        return Err(format!(
            "the bundle does not match its {MANIFEST}:\n  {}",
            problems.join("\n  ")
        ));
    }
    let images: Vec<serde_json::Value> = manifest
        .images
        .iter()
        .map(|i| {
            serde_json::json!({
                "path": i.path,
                "file": Path::new(&i.path).file_name().map(|f| f.to_string_lossy().into_owned()),
                "reference": i.reference,
                "name": image::containerd_name(&i.reference),
                "digest": i.digest,
                "config": i.config,
            })
        })
        .collect();
    Ok(serde_json::json!({"kubernetes": manifest.kubernetes, "images": images}))
}

/// `rel` under `dir`, when it is a plain relative path.
fn inside(dir: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    let plain = p
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    (plain && !rel.is_empty()).then(|| dir.join(p))
}

/// What `make` reports as it goes.
pub enum Progress<'a> {
    File {
        name: &'a str,
        size: u64,
        kept: bool,
    },
    Image(&'a BundledImage),
}

/// Make the bundle of `lab` in `dir` (created if missing; files already
/// there with the right SHA-256 are kept).
pub async fn make(
    lab: &Lab,
    dir: &Path,
    request: &Request,
    mut progress: impl FnMut(Progress<'_>),
) -> Result<Manifest, BundleError> {
    let contents = Contents::for_lab(lab, request.arch)?;
    // kubeadm's image list comes from running the bundled kubeadm: say so
    // before anything is downloaded.
    kubeadm_runs_here(&contents)?;
    let created_dir = !dir.exists();
    let mut written: Vec<PathBuf> = Vec::new();
    let result = fill(lab, dir, request, &contents, &mut written, &mut progress).await;
    if result.is_err() {
        for path in &written {
            let _ = std::fs::remove_file(path);
        }
        if created_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    result
}

async fn fill(
    lab: &Lab,
    dir: &Path,
    request: &Request,
    contents: &Contents,
    written: &mut Vec<PathBuf>,
    progress: &mut impl FnMut(Progress<'_>),
) -> Result<Manifest, BundleError> {
    let io = BundleError::io;
    let images_dir = dir.join(IMAGES_DIR);
    std::fs::create_dir_all(&images_dir).map_err(|e| io(&images_dir, e))?;
    // A manifest from an earlier bundle no longer describes the directory.
    let manifest_path = dir.join(MANIFEST);
    if manifest_path.exists() {
        std::fs::remove_file(&manifest_path).map_err(|e| io(&manifest_path, e))?;
    }

    let downloader = Downloader::new(request.download_mirror.as_deref())?;
    let mut files = Vec::new();
    for source in &contents.files {
        let sha256 = match &source.checksum {
            Checksum::Pinned(s) => s.clone(),
            Checksum::Published { url, name } => {
                let text = downloader.text(url).await?;
                contents::published_digest(&text, name).ok_or_else(|| {
                    BundleError::NoPublishedChecksum {
                        url: downloader.location(url),
                        name: name.clone(),
                    }
                })?
            }
        };
        let dest = dir.join(&source.name);
        let kept = fetch::file_sha256(&dest).is_ok_and(|got| got == sha256);
        let size = if kept {
            std::fs::metadata(&dest).map_err(|e| io(&dest, e))?.len()
        } else {
            written.push(dest.clone());
            downloader.file(&source.url, &dest, &sha256).await?
        };
        set_mode(&dest, if source.executable { 0o755 } else { 0o644 }).map_err(|e| io(&dest, e))?;
        progress(Progress::File {
            name: &source.name,
            size,
            kept,
        });
        files.push(BundledFile {
            path: source.name.clone(),
            sha256,
            size,
            origin: source.url.clone(),
        });
    }

    let mut wanted: Vec<(String, String)> = kubeadm_images(dir, contents)
        .await?
        .into_iter()
        .map(|r| (r, "kubeadm".to_string()))
        .collect();
    for image in &contents.images {
        if !wanted.iter().any(|(r, _)| r == &image.reference) {
            wanted.push((image.reference.clone(), image.used_by.to_string()));
        }
    }
    let puller = Puller::new(request.registry_mirrors.clone(), request.arch);
    let mut images = Vec::new();
    for (reference, used_by) in wanted {
        let archive = images_dir.join(image::archive_name(&reference));
        written.push(archive);
        let pulled = puller.pull(&reference, &images_dir).await?;
        let bundled = BundledImage {
            reference: pulled.reference,
            used_by,
            digest: pulled.digest,
            manifest: pulled.manifest,
            config: pulled.config,
            path: pulled.archive,
            sha256: pulled.sha256,
            size: pulled.size,
            origin: pulled.origin,
        };
        progress(Progress::Image(&bundled));
        images.push(bundled);
    }

    let manifest = Manifest {
        format: 1,
        lab: lab.name.clone(),
        kubernetes: contents.kubernetes.clone(),
        arch: contents.arch.name().to_string(),
        containerd: contents.containerd.to_string(),
        runc: contents.runc.to_string(),
        files,
        images,
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| BundleError::Manifest {
        path: manifest_path.clone(),
        message: e.to_string(),
    })?;
    let tmp = dir.join(format!("{MANIFEST}.partial"));
    std::fs::write(&tmp, text + "\n").map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, &manifest_path).map_err(|e| io(&manifest_path, e))?;
    Ok(manifest)
}

/// The images kubeadm of the bundle's release pulls, as the bundled
/// kubeadm itself lists them: only kubeadm knows its etcd, CoreDNS and
/// pause versions for a patch release. (`make` checked first that it runs
/// on this machine.)
async fn kubeadm_images(dir: &Path, contents: &Contents) -> Result<Vec<String>, BundleError> {
    let kubeadm = dir.join("kubeadm");
    let run = tokio::process::Command::new(&kubeadm)
        .args([
            "config",
            "images",
            "list",
            "--kubernetes-version",
            &format!("v{}", contents.kubernetes),
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .map_err(|_| BundleError::Kubeadm("no answer within 60 s".into()))?
        .map_err(|e| BundleError::Kubeadm(format!("{}: {e}", kubeadm.display())))?;
    if !output.status.success() {
        return Err(BundleError::Kubeadm(format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let images: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if images.is_empty() {
        return Err(BundleError::Kubeadm("it listed no image".into()));
    }
    if let Some(bad) = images
        .iter()
        .find(|i| i.contains(char::is_whitespace) || !i.contains('/'))
    {
        return Err(BundleError::Kubeadm(format!(
            "{bad:?} is not an image reference"
        )));
    }
    Ok(images)
}

/// The bundle's kubeadm can run on this machine (same architecture).
fn kubeadm_runs_here(contents: &Contents) -> Result<(), BundleError> {
    if Arch::host() == Some(contents.arch) {
        return Ok(());
    }
    Err(BundleError::Kubeadm(format!(
        "the bundled kubeadm is for {a} and cannot run on this {} machine: kubeadm lists its images; make the {a} bundle on an {a} machine",
        std::env::consts::ARCH,
        a = contents.arch.name(),
    )))
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(dir: &Path, version: &str, content: &[u8]) {
        std::fs::create_dir_all(dir.join(IMAGES_DIR)).unwrap();
        std::fs::write(dir.join("kubeadm"), content).unwrap();
        std::fs::write(dir.join("images/pause.tar"), b"archive").unwrap();
        let manifest = Manifest {
            format: 1,
            lab: "t".into(),
            kubernetes: version.into(),
            arch: "amd64".into(),
            containerd: "1.7.27".into(),
            runc: "1.2.5".into(),
            files: vec![BundledFile {
                path: "kubeadm".into(),
                sha256: fetch::file_sha256(&dir.join("kubeadm")).unwrap(),
                size: 1,
                origin: "https://dl.k8s.io/x".into(),
            }],
            images: vec![BundledImage {
                reference: "registry.k8s.io/pause:3.9".into(),
                used_by: "kubeadm".into(),
                digest: "sha256:1".into(),
                manifest: "sha256:2".into(),
                config: "sha256:3".into(),
                path: "images/pause.tar".into(),
                sha256: fetch::file_sha256(&dir.join("images/pause.tar")).unwrap(),
                size: 7,
                origin: "registry.k8s.io".into(),
            }],
        };
        std::fs::write(
            dir.join(MANIFEST),
            serde_json::to_string(&manifest).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn the_stage_gets_a_whole_bundle_of_the_labs_release_or_the_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let missing = stage_vars(dir.path(), "1.28").unwrap_err();
        assert!(
            missing.contains("bundle.json") && missing.contains("kubelab bundle LAB -o"),
            "{missing}"
        );

        bundle_with(dir.path(), "1.28.15", b"kubeadm");
        let vars = stage_vars(dir.path(), "1.28").unwrap();
        assert_eq!(vars["kubernetes"], "1.28.15");
        assert_eq!(vars["images"][0]["file"], "pause.tar");
        assert_eq!(vars["images"][0]["name"], "registry.k8s.io/pause:3.9");
        assert!(stage_vars(dir.path(), "1.28.15").is_ok());
        let other = stage_vars(dir.path(), "1.29").unwrap_err();
        assert_eq!(
            other,
            "the bundle holds Kubernetes 1.28.15, the lab wants 1.29"
        );
        assert!(
            stage_vars(dir.path(), "1.28.1").is_err(),
            "1.28.1 is not 1.28.15"
        );

        std::fs::write(dir.path().join("kubeadm"), b"changed").unwrap();
        let changed = stage_vars(dir.path(), "1.28").unwrap_err();
        assert!(
            changed.contains("does not match its bundle.json")
                && changed.contains("kubeadm: sha256 "),
            "{changed}"
        );
        std::fs::remove_file(dir.path().join("images/pause.tar")).unwrap();
        let gone = stage_vars(dir.path(), "1.28").unwrap_err();
        assert!(gone.contains("images/pause.tar: "), "{gone}");
    }

    #[test]
    fn manifest_paths_stay_inside_the_bundle() {
        let d = Path::new("/b");
        assert_eq!(
            inside(d, "images/x.tar"),
            Some(PathBuf::from("/b/images/x.tar"))
        );
        for bad in ["../x", "/etc/passwd", "", "a/../../b"] {
            assert_eq!(inside(d, bad), None, "{bad}");
        }
    }
}
