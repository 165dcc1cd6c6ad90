//! What `kubelab bundle` reads, run for real on this machine: a download
//! mirror of the upstream release files (a local HTTP server) and an OCI
//! registry (Debian's docker-registry) holding images built here from
//! Debian's busybox-static. Used by tests/bundle.rs and the test bed.
//!
//! Not real: kubeadm. The mirror's `kubeadm` is a script that answers
//! `config images list` as kubeadm does (kubeadm cannot be downloaded on
//! this machine); kubelet, kubectl and the archives are files with the
//! right names whose contents nobody runs.
#![allow(dead_code)]

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::{Client, Reference};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::file_server;

/// The release the mirror serves.
pub const VERSION: &str = "1.28.15";

pub fn sha256_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
}

pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until `ready` holds, failing the test after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what} not ready after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Debian's docker-registry on 127.0.0.1, storing under `dir`.
pub fn registry(dir: &Path) -> (Daemon, u16) {
    let port = free_port();
    let config = dir.join("registry.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: error}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
            dir.join("storage").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (scripts/deps.sh test installs it)");
    let daemon = Daemon(child);
    wait_for("docker-registry", Duration::from_secs(30), || {
        http_status(port, "/v2/") == Some(200)
    });
    (daemon, port)
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::Write;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A layer: Debian's static busybox as /bin/busybox and /bin/sh.
pub fn busybox_layer() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_path_with_name("/bin/busybox", "bin/busybox")
        .expect("/bin/busybox (busybox-static; scripts/deps.sh test installs it)");
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    tar.append_link(&mut link, "bin/sh", "busybox").unwrap();
    tar.into_inner().unwrap()
}

/// Images pushed to the test registry under their upstream repository
/// paths (what a mirror serves). Returns each reference's digest.
pub struct Pushed {
    /// Each reference and its digest (of the index for the pause image).
    pub digests: Vec<(String, String)>,
    /// The pause image is an index of amd64 and arm64 images: this is
    /// the arm64 one's manifest.
    pub pause_arm64: String,
    /// Each reference and its amd64 config's digest.
    pub configs: Vec<(String, String)>,
}

pub async fn push_images(port: u16, references: &[&str]) -> Pushed {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let layer = busybox_layer();
    let layer_digest = digest(&layer);
    let mut digests = Vec::new();
    let mut configs = Vec::new();
    let mut pause_arm64 = String::new();
    let local = |reference: &str| -> Reference {
        let r: Reference = reference.parse().unwrap();
        format!("127.0.0.1:{port}/{}:{}", r.repository(), r.tag().unwrap())
            .parse()
            .unwrap()
    };
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    for reference in references {
        let target = local(reference);
        client
            .push_blob(&target, layer.clone(), &layer_digest)
            .await
            .unwrap();
        let image_manifest = |arch: &str| {
            let config = serde_json::to_vec(&json!({
                "architecture": arch, "os": "linux",
                "config": {"Cmd": ["/bin/sh"], "Labels": {"kubelab.test/image": reference}},
                "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            }))
            .unwrap();
            let manifest = serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": manifest_type,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": digest(&config), "size": config.len()},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                            "digest": layer_digest, "size": layer.len()}],
            }))
            .unwrap();
            (config, manifest)
        };
        let (config, manifest) = image_manifest("amd64");
        client
            .push_blob(&target, config.clone(), &digest(&config))
            .await
            .unwrap();
        configs.push((reference.to_string(), digest(&config)));
        let header = |t: &str| reqwest::header::HeaderValue::from_str(t).unwrap();
        if reference.contains("/pause:") {
            let (arm_config, arm_manifest) = image_manifest("arm64");
            client
                .push_blob(&target, arm_config.clone(), &digest(&arm_config))
                .await
                .unwrap();
            for m in [&manifest, &arm_manifest] {
                let by_digest = target.clone_with_digest(digest(m));
                client
                    .push_manifest_raw(&by_digest, m.clone(), header(manifest_type))
                    .await
                    .unwrap();
            }
            pause_arm64 = digest(&arm_manifest);
            let index_type = "application/vnd.oci.image.index.v1+json";
            let index = serde_json::to_vec(&json!({
                "schemaVersion": 2, "mediaType": index_type,
                "manifests": [
                    {"mediaType": manifest_type, "digest": digest(&arm_manifest), "size": arm_manifest.len(),
                     "platform": {"architecture": "arm64", "os": "linux"}},
                    {"mediaType": manifest_type, "digest": digest(&manifest), "size": manifest.len(),
                     "platform": {"architecture": "amd64", "os": "linux"}},
                ],
            }))
            .unwrap();
            client
                .push_manifest_raw(&target, index.clone(), header(index_type))
                .await
                .unwrap();
            digests.push((reference.to_string(), digest(&index)));
        } else {
            client
                .push_manifest_raw(&target, manifest.clone(), header(manifest_type))
                .await
                .unwrap();
            digests.push((reference.to_string(), digest(&manifest)));
        }
    }
    Pushed {
        digests,
        pause_arm64,
        configs,
    }
}

/// The upstream release files under a mirror's `/<host>/<path>` layout,
/// each with the checksum file its project publishes.
pub fn release_files(root: &Path, kubeadm_images: &[&str]) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let put = |path: &str, bytes: &[u8]| {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        sha256_hex(bytes)
    };
    let kube = format!("dl.k8s.io/release/v{VERSION}/bin/linux/amd64");
    let kubeadm = format!(
        "#!/bin/sh\n[ \"$*\" = 'config images list --kubernetes-version v{VERSION}' ] || {{ echo \"unexpected: $*\" >&2; exit 1; }}\nprintf '%s\\n' {}\n",
        kubeadm_images.join(" ")
    );
    for (name, bytes) in [
        ("kubeadm", kubeadm.into_bytes()),
        ("kubelet", b"kubelet binary\n".repeat(1000)),
        ("kubectl", b"kubectl binary\n".repeat(1000)),
    ] {
        let sum = put(&format!("{kube}/{name}"), &bytes);
        put(&format!("{kube}/{name}.sha256"), sum.as_bytes());
        files.push((name.to_string(), sum));
    }
    let gh = "github.com";
    let crictl = format!(
        "{gh}/kubernetes-sigs/cri-tools/releases/download/v1.28.0/crictl-v1.28.0-linux-amd64.tar.gz"
    );
    let sum = put(&crictl, b"crictl archive");
    put(&format!("{crictl}.sha256"), sum.as_bytes());
    files.push(("crictl.tar.gz".into(), sum));
    let cni = format!(
        "{gh}/containernetworking/plugins/releases/download/v1.6.2/cni-plugins-linux-amd64-v1.6.2.tgz"
    );
    let sum = put(&cni, b"cni plugins archive");
    put(
        &format!("{cni}.sha256"),
        format!("{sum}  cni-plugins-linux-amd64-v1.6.2.tgz\n").as_bytes(),
    );
    files.push(("cni-plugins.tgz".into(), sum));
    let ctrd = format!(
        "{gh}/containerd/containerd/releases/download/v1.7.27/containerd-1.7.27-linux-amd64.tar.gz"
    );
    let sum = put(&ctrd, b"containerd archive");
    put(
        &format!("{ctrd}.sha256sum"),
        format!("{sum}  containerd-1.7.27-linux-amd64.tar.gz\n").as_bytes(),
    );
    files.push(("containerd.tar.gz".into(), sum));
    let runc = format!("{gh}/opencontainers/runc/releases/download/v1.2.5");
    let sum = put(&format!("{runc}/runc.amd64"), b"runc binary");
    let arm = sha256_hex(b"runc arm64");
    put(
        &format!("{runc}/runc.sha256sum"),
        format!("{arm}  runc.arm64\n{sum}  runc.amd64\n").as_bytes(),
    );
    files.push(("runc".into(), sum));
    files
}

/// A mirror and a registry, ready for `kubelab bundle`.
pub struct BundleSources {
    /// Each bundle file's name and SHA-256, in the bundle's order.
    pub files: Vec<(String, String)>,
    pub pushed: Pushed,
    pub mirror_root: PathBuf,
    pub registry_root: PathBuf,
    _registry: Daemon,
    pub registry_port: u16,
    _server: file_server::FileServer,
    pub mirror: String,
}

impl BundleSources {
    /// Under `root`: the mirror with kubeadm listing `kubeadm_images`, the
    /// registry holding those and `other_images`.
    pub fn start(root: &Path, kubeadm_images: &[&str], other_images: &[&str]) -> BundleSources {
        let mirror_root = root.join("mirror");
        let files = release_files(&mirror_root, kubeadm_images);
        let server = file_server::http(&mirror_root);
        let registry_root = root.join("registry");
        std::fs::create_dir_all(&registry_root).unwrap();
        let (registry, registry_port) = registry(&registry_root);
        let all: Vec<&str> = kubeadm_images.iter().chain(other_images).copied().collect();
        let pushed = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(push_images(registry_port, &all));
        let mirror = format!("http://127.0.0.1:{}", server.port);
        BundleSources {
            files,
            pushed,
            mirror_root,
            registry_root,
            _registry: registry,
            registry_port,
            _server: server,
            mirror,
        }
    }

    /// `kubelab bundle`'s arguments after the lab for these sources.
    pub fn args(&self, out: &Path, mirror: &str) -> Vec<String> {
        vec![
            "-o".into(),
            out.display().to_string(),
            "--arch".into(),
            "amd64".into(),
            "--download-mirror".into(),
            mirror.into(),
            "--registry-mirror".into(),
            format!("http://127.0.0.1:{}", self.registry_port),
        ]
    }
}
