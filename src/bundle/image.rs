//! Container images pulled through the OCI distribution API (oci-client)
//! and written as one archive per image that both `ctr images import` (an
//! OCI image layout) and `docker load` (a `manifest.json`) read.
//!
//! Every blob is checked against its digest: the manifest kubelab names
//! (by tag, or by the digest pinned in the reference), the platform's
//! manifest inside an index, the config and each layer. The archive keeps
//! the index itself, so the image imported on a node has the digest the
//! registry gives it and the manifests pin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::BundleError;
use super::contents::Arch;

/// A registry mirror: every registry (`None`) or one (`Some("ghcr.io")`)
/// is read from `host` instead, with the same repository paths (as
/// containerd's `hosts.toml` mirrors work).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mirror {
    pub registry: Option<String>,
    pub host: String,
    /// Plain HTTP (a mirror given as `http://…`).
    pub http: bool,
}

impl Mirror {
    /// `URL` or `REGISTRY=URL`, the URL `http://HOST[:PORT]` or
    /// `https://HOST[:PORT]` (a bare `HOST[:PORT]` is HTTPS).
    pub fn parse(text: &str) -> Result<Mirror, String> {
        let (registry, url) = match text.split_once('=') {
            Some((r, u)) if !r.is_empty() => (Some(r.to_string()), u),
            Some(_) => return Err(format!("{text:?}: the registry before `=` is empty")),
            None => (None, text),
        };
        let (http, host) = if let Some(h) = url.strip_prefix("http://") {
            (true, h)
        } else {
            (false, url.strip_prefix("https://").unwrap_or(url))
        };
        let host = host.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(format!(
                "{text:?}: a registry mirror is a host (http://HOST:PORT or https://HOST), without a path"
            ));
        }
        Ok(Mirror {
            registry,
            host: host.to_string(),
            http,
        })
    }
}

/// An image written into the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PulledImage {
    pub reference: String,
    /// The digest of what the reference names (an index or a manifest).
    pub digest: String,
    /// The manifest of the bundle's architecture.
    pub manifest: String,
    /// The image's config (Docker's image ID).
    pub config: String,
    /// The archive, relative to the bundle.
    pub archive: String,
    pub sha256: String,
    pub size: u64,
    /// The registry it was read from.
    pub origin: String,
}

pub struct Puller {
    client: Client,
    mirrors: Vec<Mirror>,
    arch: Arch,
}

const ACCEPTED: [&str; 4] = [
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
];

impl Puller {
    pub fn new(mirrors: Vec<Mirror>, arch: Arch) -> Puller {
        super::tls_provider();
        let plain: Vec<String> = mirrors
            .iter()
            .filter(|m| m.http)
            .map(|m| m.host.clone())
            .collect();
        let config = ClientConfig {
            protocol: if plain.is_empty() {
                ClientProtocol::Https
            } else {
                ClientProtocol::HttpsExcept(plain)
            },
            ..Default::default()
        };
        Puller {
            client: Client::new(config),
            mirrors,
            arch,
        }
    }

    fn mirror_for(&self, registry: &str) -> Option<&Mirror> {
        self.mirrors
            .iter()
            .find(|m| m.registry.as_deref() == Some(registry))
            .or_else(|| self.mirrors.iter().find(|m| m.registry.is_none()))
    }

    /// Pull `reference` and write it to `dir/<archive>`.
    pub async fn pull(&self, reference: &str, dir: &Path) -> Result<PulledImage, BundleError> {
        let fail = |message: String| BundleError::Image {
            reference: reference.to_string(),
            message,
        };
        let mut r: Reference = reference
            .parse()
            .map_err(|e| fail(format!("not an image reference: {e}")))?;
        let origin = match self.mirror_for(r.registry()) {
            Some(m) => {
                r.set_mirror_registry(m.host.clone());
                m.host.clone()
            }
            None => r.resolve_registry().to_string(),
        };
        let auth = RegistryAuth::Anonymous;
        let (top, top_digest) = self
            .client
            .pull_manifest_raw(&r, &auth, &ACCEPTED)
            .await
            .map_err(|e| fail(format!("{origin}: {e}")))?;
        let top_digest = checked(&top, &top_digest, r.digest()).map_err(&fail)?;
        let top_json: Value = serde_json::from_slice(&top).map_err(|e| fail(e.to_string()))?;
        let top_type = media_type(&top_json);

        let mut blobs: Vec<(String, Vec<u8>)> = vec![(top_digest.clone(), top.to_vec())];
        let (manifest_digest, manifest_json) = if top_json.get("manifests").is_some() {
            let wanted = self.arch.name();
            let entry = top_json["manifests"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == wanted)
                .ok_or_else(|| fail(format!("the image index has no linux/{wanted} image")))?;
            let digest = entry["digest"].as_str().unwrap_or_default().to_string();
            let (bytes, _) = self
                .client
                .pull_manifest_raw(&r.clone_with_digest(digest.clone()), &auth, &ACCEPTED)
                .await
                .map_err(|e| fail(format!("{origin}: {e}")))?;
            let digest = checked(&bytes, &digest, Some(&digest)).map_err(&fail)?;
            let json: Value = serde_json::from_slice(&bytes).map_err(|e| fail(e.to_string()))?;
            blobs.push((digest.clone(), bytes.to_vec()));
            (digest, json)
        } else {
            (top_digest.clone(), top_json.clone())
        };

        let config = manifest_json["config"]["digest"]
            .as_str()
            .ok_or_else(|| fail("the manifest names no config".into()))?
            .to_string();
        let layers: Vec<String> = manifest_json["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["digest"].as_str().map(str::to_string))
            .collect();

        let archive = archive_name(reference);
        let path = dir.join(&archive);
        let staging = dir.join(format!(".{archive}.blobs"));
        let result = async {
            tokio::fs::create_dir_all(&staging)
                .await
                .map_err(|e| BundleError::io(&staging, e))?;
            let mut files: Vec<(String, PathBuf)> = Vec::new();
            for digest in std::iter::once(&config).chain(&layers) {
                let file = staging.join(digest.replace(':', "-"));
                let out = tokio::fs::File::create(&file)
                    .await
                    .map_err(|e| BundleError::io(&file, e))?;
                self.client
                    .pull_blob(&r, digest.as_str(), out)
                    .await
                    .map_err(|e| fail(format!("{origin}: blob {digest}: {e}")))?;
                let got = format!(
                    "sha256:{}",
                    super::fetch::file_sha256(&file).map_err(|e| BundleError::io(&file, e))?
                );
                if &got != digest {
                    return Err(fail(format!("blob {digest} arrived as {got}")));
                }
                files.push((digest.clone(), file));
            }
            let names = ImageNames::of(&r);
            let index = oci_index(&names, &top_type, &top_digest, top.len());
            let docker = json!([{
                "Config": blob_path(&config),
                "RepoTags": names.tagged.iter().collect::<Vec<_>>(),
                "Layers": layers.iter().map(|l| blob_path(l)).collect::<Vec<_>>(),
            }]);
            write_archive(&path, &index, &docker, &blobs, &files)
                .map_err(|e| BundleError::io(&path, e))
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&staging).await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
        let sha256 = super::fetch::file_sha256(&path).map_err(|e| BundleError::io(&path, e))?;
        let size = std::fs::metadata(&path)
            .map_err(|e| BundleError::io(&path, e))?
            .len();
        Ok(PulledImage {
            reference: reference.to_string(),
            digest: top_digest,
            manifest: manifest_digest,
            config,
            archive: format!("{}/{archive}", super::IMAGES_DIR),
            sha256,
            size,
            origin,
        })
    }
}

fn media_type(manifest: &Value) -> String {
    match manifest["mediaType"].as_str() {
        Some(t) => t.to_string(),
        None if manifest.get("manifests").is_some() => OCI_IMAGE_INDEX_MEDIA_TYPE.into(),
        None => OCI_IMAGE_MEDIA_TYPE.into(),
    }
}

/// The digest of `bytes`, which must be what the registry said and, when
/// the reference pins one, the pinned digest.
fn checked(bytes: &[u8], said: &str, pinned: Option<&str>) -> Result<String, String> {
    let got = format!(
        "sha256:{}",
        data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
    );
    if let Some(p) = pinned
        && p != got
    {
        return Err(format!(
            "the registry sent a manifest of digest {got}, not the pinned {p}"
        ));
    }
    if !said.is_empty() && said != got {
        return Err(format!(
            "the registry said digest {said} for a manifest of digest {got}"
        ));
    }
    Ok(got)
}

/// The names an imported image gets.
struct ImageNames {
    /// `registry/repository:tag` (what Docker keeps and kubelet asks for
    /// by tag).
    tagged: Option<String>,
    /// `registry/repository@sha256:…` when the reference pins a digest:
    /// what kubelet asks containerd for when a manifest pins one.
    digested: Option<String>,
}

impl ImageNames {
    fn of(r: &Reference) -> ImageNames {
        // The reference as written (registry() is not the mirror), in
        // containerd's normalised form (docker.io/library/…).
        let name = format!("{}/{}", r.registry(), r.repository());
        ImageNames {
            tagged: r
                .tag()
                .map(|t| format!("{name}:{t}"))
                .or_else(|| r.digest().is_none().then(|| format!("{name}:latest"))),
            digested: r.digest().map(|d| format!("{name}@{d}")),
        }
    }
}

/// The name containerd lists an imported image under: the reference as
/// written, tag kept and a pinned digest dropped
/// (`ghcr.io/flannel-io/flannel:v0.27.2`); the `…@sha256:` name is
/// imported beside it.
pub fn containerd_name(reference: &str) -> String {
    match reference.parse::<Reference>() {
        Ok(r) => {
            let names = ImageNames::of(&r);
            names
                .tagged
                .or(names.digested)
                .unwrap_or_else(|| reference.to_string())
        }
        Err(_) => reference.to_string(),
    }
}

fn oci_index(names: &ImageNames, media_type: &str, digest: &str, size: usize) -> Value {
    let entry = |name: &str| {
        let mut annotations = BTreeMap::new();
        annotations.insert("io.containerd.image.name", name.to_string());
        if let Some(tag) = name.rsplit_once(':').map(|(_, t)| t)
            && !name.contains('@')
        {
            annotations.insert("org.opencontainers.image.ref.name", tag.to_string());
        }
        json!({"mediaType": media_type, "digest": digest, "size": size, "annotations": annotations})
    };
    let manifests: Vec<Value> = names
        .tagged
        .iter()
        .chain(&names.digested)
        .map(|n| entry(n))
        .collect();
    json!({"schemaVersion": 2, "mediaType": OCI_IMAGE_INDEX_MEDIA_TYPE, "manifests": manifests})
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replace(':', "/"))
}

/// `ghcr.io/flannel-io/flannel:v0.27.2@sha256:…` → `ghcr.io_flannel-io_flannel_v0.27.2.tar`.
pub fn archive_name(reference: &str) -> String {
    let without_digest = reference.split('@').next().unwrap_or(reference);
    let name: String = without_digest
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{name}.tar")
}

fn write_archive(
    path: &Path,
    index: &Value,
    docker: &Value,
    manifests: &[(String, Vec<u8>)],
    blobs: &[(String, PathBuf)],
) -> std::io::Result<()> {
    let tmp = path.with_extension("tar.partial");
    let result = (|| {
        let mut tar = tar::Builder::new(std::fs::File::create(&tmp)?);
        tar.mode(tar::HeaderMode::Deterministic);
        let mut add = |name: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_ustar();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_cksum();
            tar.append_data(&mut header, name, bytes)
        };
        add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        add("index.json", &serde_json::to_vec(index)?)?;
        add("manifest.json", &serde_json::to_vec(docker)?)?;
        for (digest, bytes) in manifests {
            add(&blob_path(digest), bytes)?;
        }
        for (digest, file) in blobs {
            tar.append_path_with_name(file, blob_path(digest))?;
        }
        tar.into_inner()?.sync_all()
    })();
    match result {
        Ok(()) => std::fs::rename(&tmp, path),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_name_a_host_and_maybe_a_registry() {
        assert_eq!(
            Mirror::parse("http://127.0.0.1:5000").unwrap(),
            Mirror {
                registry: None,
                host: "127.0.0.1:5000".into(),
                http: true
            }
        );
        let m = Mirror::parse("ghcr.io=https://mirror.example/").unwrap();
        assert_eq!(m.registry.as_deref(), Some("ghcr.io"));
        assert_eq!(m.host, "mirror.example");
        assert!(!m.http);
        assert!(Mirror::parse("http://host/path").is_err());
        assert!(Mirror::parse("=http://host").is_err());
    }

    #[test]
    fn archives_are_named_after_the_reference_without_its_digest() {
        assert_eq!(
            archive_name("ghcr.io/flannel-io/flannel:v0.27.2@sha256:782c"),
            "ghcr.io_flannel-io_flannel_v0.27.2.tar"
        );
        assert_eq!(
            archive_name("registry.k8s.io/kube-apiserver:v1.28.15"),
            "registry.k8s.io_kube-apiserver_v1.28.15.tar"
        );
    }

    #[test]
    fn a_manifest_is_checked_against_what_was_said_and_pinned() {
        let bytes = b"{}";
        let d = format!(
            "sha256:{}",
            data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
        );
        assert_eq!(checked(bytes, &d, Some(&d)).unwrap(), d);
        assert_eq!(checked(bytes, "", None).unwrap(), d);
        let other = format!("sha256:{}", "0".repeat(64));
        assert!(
            checked(bytes, &d, Some(&other))
                .unwrap_err()
                .contains("not the pinned")
        );
        assert!(
            checked(bytes, &other, None)
                .unwrap_err()
                .contains("said digest")
        );
    }
}
