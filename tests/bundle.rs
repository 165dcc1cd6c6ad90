//! `kubelab bundle`, run for real: release files from a local HTTP server
//! laid out as a download mirror (`--download-mirror`), images from a local
//! OCI registry (Debian's docker-registry, started here) through
//! `--registry-mirror`, holding images built here from Debian's
//! busybox-static (one of them a two-architecture index). The archives are
//! then imported by containerd (`ctr images import`) and by Docker
//! (`docker load`), both Debian's, started here in temporary directories.
//!
//! What is not real: kubeadm. The mirror's `kubeadm` is a script that
//! answers `config images list` as kubeadm does (kubeadm itself cannot be
//! downloaded on this machine); kubelet, kubectl and the archives are
//! files with the right names whose contents nobody runs.

#[path = "support/command.rs"]
mod command;
#[path = "support/file_server.rs"]
mod file_server;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubelab::bundle::Manifest;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::{Client, Reference};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const VERSION: &str = "1.28.15";
const KUBEADM_IMAGES: [&str; 3] = [
    "registry.k8s.io/kube-apiserver:v1.28.15",
    "registry.k8s.io/pause:3.9",
    "registry.k8s.io/coredns/coredns:v1.10.1",
];
const KUBE_VIP: &str = "ghcr.io/kube-vip/kube-vip:v0.8.9";

const LAB: &str = "name: bundle
virthost: {local: true}
image: {build: debian-12}
networks:
  - {name: lan, ipv4: 192.168.150.0/24}
vms:
  - {name: cp1, roles: [control-plane]}
  - {name: cp2, roles: [control-plane]}
kubernetes:
  version: \"1.28.15\"
  runtime: containerd
  cni: none
  ha: {mode: kube-vip, vip: 192.168.150.250}
";

fn sha256_hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(bytes))
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until `ready` holds, failing the test after `limit`.
fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < limit, "{what} not ready after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Debian's docker-registry on 127.0.0.1, storing under `dir`.
fn registry(dir: &Path) -> (Daemon, u16) {
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
fn busybox_layer() -> Vec<u8> {
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
struct Pushed {
    digests: Vec<(String, String)>,
    /// The pause image is an index of amd64 and arm64 images.
    pause_arm64: String,
    configs: Vec<(String, String)>,
}

async fn push_images(port: u16) -> Pushed {
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
    for reference in KUBEADM_IMAGES.iter().chain([&KUBE_VIP]) {
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
fn release_files(root: &Path) -> Vec<(String, String)> {
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
        KUBEADM_IMAGES.join(" ")
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

fn kubelab(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kubelab"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The entries of an image archive, by name.
fn archive_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut tar = tar::Archive::new(std::fs::File::open(path).unwrap());
    tar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            e.read_to_end(&mut bytes).unwrap();
            (name, bytes)
        })
        .collect()
}

struct Bed {
    _dirs: tempfile::TempDir,
    root: PathBuf,
    lab: PathBuf,
    files: Vec<(String, String)>,
    pushed: Pushed,
    _registry: Daemon,
    registry_port: u16,
    _server: file_server::FileServer,
    mirror: String,
}

fn bed() -> Bed {
    let dirs = tempfile::tempdir().unwrap();
    let root = dirs.path().to_path_buf();
    let lab = root.join("lab.yaml");
    std::fs::write(&lab, LAB).unwrap();
    let files = release_files(&root.join("mirror"));
    let server = file_server::http(&root.join("mirror"));
    std::fs::create_dir_all(root.join("registry")).unwrap();
    let (registry, registry_port) = registry(&root.join("registry"));
    let pushed = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(push_images(registry_port));
    let mirror = format!("http://127.0.0.1:{}", server.port);
    Bed {
        _dirs: dirs,
        root,
        lab,
        files,
        pushed,
        _registry: registry,
        registry_port,
        _server: server,
        mirror,
    }
}

impl Bed {
    fn bundle(&self, out: &Path, mirror: &str) -> std::process::Output {
        kubelab(&[
            "bundle",
            self.lab.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--arch",
            "amd64",
            "--download-mirror",
            mirror,
            "--registry-mirror",
            &format!("http://127.0.0.1:{}", self.registry_port),
        ])
    }
}

#[test]
fn a_bundle_holds_every_file_and_image_checked_and_importable() {
    let bed = bed();
    let out = bed.root.join("bundle");
    let made = bed.bundle(&out, &bed.mirror);
    assert!(made.status.success(), "{}", text(&made));

    let manifest = Manifest::read(&out).unwrap();
    assert_eq!(manifest.kubernetes, VERSION);
    assert_eq!(
        (manifest.containerd.as_str(), manifest.runc.as_str()),
        ("1.7.27", "1.2.5")
    );
    let files: Vec<(String, String)> = manifest
        .files
        .iter()
        .map(|f| (f.path.clone(), f.sha256.clone()))
        .collect();
    assert_eq!(files, bed.files);
    assert!(
        manifest
            .files
            .iter()
            .all(|f| f.origin.starts_with("https://"))
    );
    let mode = |name: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(out.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(
        (mode("kubeadm"), mode("runc"), mode("crictl.tar.gz")),
        (0o755, 0o755, 0o644)
    );
    let images: Vec<(String, String)> = manifest
        .images
        .iter()
        .map(|i| (i.reference.clone(), i.digest.clone()))
        .collect();
    assert_eq!(images, bed.pushed.digests, "kubeadm's list, then kube-vip");
    assert_eq!(manifest.images[3].used_by, "kube-vip");
    assert!(
        manifest.check(&out).is_empty(),
        "{:?}",
        manifest.check(&out)
    );

    // The pause index keeps its digest and only the amd64 image's blobs.
    let pause = &manifest.images[1];
    let entries = archive_entries(&out.join(&pause.path));
    let names: Vec<&str> = entries.iter().map(|(n, _)| n.as_str()).collect();
    let index: Value =
        serde_json::from_slice(&entries.iter().find(|(n, _)| n == "index.json").unwrap().1)
            .unwrap();
    assert_eq!(index["manifests"][0]["digest"], pause.digest.as_str());
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "registry.k8s.io/pause:3.9"
    );
    assert!(names.contains(&format!("blobs/{}", pause.digest.replace(':', "/")).as_str()));
    assert!(names.contains(&format!("blobs/{}", pause.manifest.replace(':', "/")).as_str()));
    assert!(
        !names.contains(&format!("blobs/{}", bed.pushed.pause_arm64.replace(':', "/")).as_str())
    );
    for (name, bytes) in &entries {
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            assert_eq!(sha256_hex(bytes), hex, "{name}");
        }
    }

    // A second bundle into the same directory downloads nothing again.
    let again = bed.bundle(&out, &bed.mirror);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        text(&again).matches("kept   ").count(),
        7,
        "{}",
        text(&again)
    );
    assert_eq!(Manifest::read(&out).unwrap(), manifest);

    imported_by_containerd(&bed.root, &manifest, &out);
    loaded_by_docker(&bed.root, &manifest, &bed.pushed, &out);
}

/// Debian's containerd, in a temporary root: every archive imports, under
/// the reference's name and with the bundle's digest.
fn imported_by_containerd(root: &Path, manifest: &Manifest, out: &Path) {
    let dir = root.join("containerd");
    let socket = dir.join("containerd.sock");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    // Only what an import needs: no CRI plugin, no network.
    std::fs::write(
        &config,
        "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n",
    )
    .unwrap();
    let child = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .arg("--root")
        .arg(dir.join("root"))
        .arg("--state")
        .arg(dir.join("state"))
        .arg("--address")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("containerd (scripts/deps.sh test installs it)");
    let _containerd = Daemon(child);
    let address = socket.to_str().unwrap();
    wait_for("containerd", Duration::from_secs(30), || {
        Command::new("ctr")
            .args(["--address", address, "version"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    for image in &manifest.images {
        command::run(
            "ctr",
            &[
                "--address",
                address,
                "-n",
                "k8s.io",
                "images",
                "import",
                "--no-unpack",
                out.join(&image.path).to_str().unwrap(),
            ],
        );
    }
    let listed = command::run(
        "ctr",
        &["--address", address, "-n", "k8s.io", "images", "ls"],
    );
    for image in &manifest.images {
        let line = listed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(image.reference.as_str()))
            .unwrap_or_else(|| panic!("{} not imported:\n{listed}", image.reference));
        assert!(line.contains(&image.digest), "{line}");
    }
}

/// Debian's Docker, in a temporary data root without networking: every
/// archive loads, tagged, with the image's config as its ID.
fn loaded_by_docker(root: &Path, manifest: &Manifest, pushed: &Pushed, out: &Path) {
    let dir = root.join("docker");
    std::fs::create_dir_all(&dir).unwrap();
    let host = format!("unix://{}", dir.join("docker.sock").display());
    let child = Command::new("dockerd")
        .arg("--data-root")
        .arg(dir.join("data"))
        .arg("--exec-root")
        .arg(dir.join("exec"))
        .arg("--pidfile")
        .arg(dir.join("docker.pid"))
        .args([
            "--host",
            &host,
            "--bridge",
            "none",
            "--iptables=false",
            "--ip6tables=false",
        ])
        .args([
            "--containerd-namespace",
            "kubelab-test",
            "--storage-driver",
            "vfs",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dockerd (scripts/deps.sh test installs docker.io)");
    let _dockerd = Daemon(child);
    // Debian's client, not another one on PATH.
    let docker = "/usr/bin/docker";
    wait_for("dockerd", Duration::from_secs(60), || {
        Command::new(docker)
            .args(["-H", &host, "version"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    for image in &manifest.images {
        command::run(
            docker,
            &[
                "-H",
                &host,
                "load",
                "-i",
                out.join(&image.path).to_str().unwrap(),
            ],
        );
        let id = command::run(
            docker,
            &[
                "-H",
                &host,
                "image",
                "inspect",
                "-f",
                "{{.Id}}",
                &image.reference,
            ],
        );
        let config = &pushed
            .configs
            .iter()
            .find(|(r, _)| r == &image.reference)
            .unwrap()
            .1;
        assert_eq!(id.trim(), config, "{}", image.reference);
        assert_eq!(&image.config, config);
    }
}

#[test]
fn a_wrong_checksum_or_a_missing_image_leaves_no_bundle() {
    let bed = bed();
    // The same mirror, but runc's published checksum names another file.
    let bad = bed.root.join("bad-mirror");
    command::run(
        "cp",
        &[
            "-a",
            bed.root.join("mirror").to_str().unwrap(),
            bad.to_str().unwrap(),
        ],
    );
    let sums = bad.join("github.com/opencontainers/runc/releases/download/v1.2.5/runc.sha256sum");
    let wrong = "0".repeat(64);
    std::fs::write(&sums, format!("{wrong}  runc.amd64\n")).unwrap();
    let server = file_server::http(&bad);
    let out = bed.root.join("refused");
    let refused = bed.bundle(&out, &format!("http://127.0.0.1:{}", server.port));
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    let runc_sum = &bed.files.iter().find(|(n, _)| n == "runc").unwrap().1;
    let message = text(&refused);
    assert!(message.contains("checksum mismatch"), "{message}");
    assert!(
        message.contains(&wrong) && message.contains(runc_sum.as_str()),
        "{message}"
    );
    assert!(!out.exists(), "a refused bundle left {}", out.display());

    // A registry without one of the images: the bundle names it.
    std::fs::remove_dir_all(
        bed.root
            .join("registry/storage/docker/registry/v2/repositories/kube-vip"),
    )
    .unwrap();
    let out = bed.root.join("incomplete");
    let failed = bed.bundle(&out, &bed.mirror);
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));
    assert!(text(&failed).contains(KUBE_VIP), "{}", text(&failed));
    assert!(!out.exists());

    // What cannot be bundled is said before anything is fetched.
    let calico = bed.root.join("calico.yaml");
    std::fs::write(&calico, LAB.replace("cni: none", "cni: calico")).unwrap();
    let said = kubelab(&[
        "bundle",
        calico.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(said.status.code(), Some(1));
    assert!(text(&said).contains("Tigera operator"), "{}", text(&said));
    let minor = bed.root.join("minor.yaml");
    std::fs::write(&minor, LAB.replace("\"1.28.15\"", "\"1.28\"")).unwrap();
    let said = kubelab(&[
        "bundle",
        minor.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(text(&said).contains("exact release"), "{}", text(&said));
    assert!(!out.exists());
}
