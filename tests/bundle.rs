//! `kubelab bundle`, run for real: release files from a local HTTP server
//! laid out as a download mirror (`--download-mirror`), images from a local
//! OCI registry (Debian's docker-registry, started here) through
//! `--registry-mirror`, holding images built here from Debian's
//! busybox-static (one of them a two-architecture index). The archives are
//! then imported by containerd (`ctr images import`) and by Docker
//! (`docker load`), both Debian's, started here in temporary directories.
//! (What is real and what is not: tests/support/bundle_sources.rs.)

mod support {
    #[path = "../support/bundle_sources.rs"]
    pub mod bundle_sources;
    #[path = "../support/command.rs"]
    pub mod command;
    #[path = "../support/file_server.rs"]
    pub mod file_server;
}

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kubelab::bundle::Manifest;
use serde_json::Value;
use support::bundle_sources::{BundleSources, Daemon, Pushed, VERSION, sha256_hex, wait_for};
use support::{command, file_server};

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
    sources: BundleSources,
}

fn bed() -> Bed {
    let dirs = tempfile::tempdir().unwrap();
    let root = dirs.path().to_path_buf();
    let lab = root.join("lab.yaml");
    std::fs::write(&lab, LAB).unwrap();
    let sources = BundleSources::start(&root, &KUBEADM_IMAGES, &[KUBE_VIP]);
    Bed {
        _dirs: dirs,
        root,
        lab,
        sources,
    }
}

impl Bed {
    fn bundle(&self, out: &Path, mirror: &str) -> std::process::Output {
        let mut args = vec!["bundle".to_string(), self.lab.display().to_string()];
        args.extend(self.sources.args(out, mirror));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        kubelab(&args)
    }
}

#[test]
fn a_bundle_holds_every_file_and_image_checked_and_importable() {
    let bed = bed();
    let out = bed.root.join("bundle");
    let made = bed.bundle(&out, &bed.sources.mirror);
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
    assert_eq!(files, bed.sources.files);
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
    assert_eq!(
        images, bed.sources.pushed.digests,
        "kubeadm's list, then kube-vip"
    );
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
        !names.contains(
            &format!("blobs/{}", bed.sources.pushed.pause_arm64.replace(':', "/")).as_str()
        )
    );
    for (name, bytes) in &entries {
        if let Some(hex) = name.strip_prefix("blobs/sha256/") {
            assert_eq!(sha256_hex(bytes), hex, "{name}");
        }
    }

    // A second bundle into the same directory downloads nothing again.
    let again = bed.bundle(&out, &bed.sources.mirror);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(
        text(&again).matches("kept   ").count(),
        7,
        "{}",
        text(&again)
    );
    assert_eq!(Manifest::read(&out).unwrap(), manifest);

    imported_by_containerd(&bed.root, &manifest, &out);
    loaded_by_docker(&bed.root, &manifest, &bed.sources.pushed, &out);
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
    let runc_sum = &bed
        .sources
        .files
        .iter()
        .find(|(n, _)| n == "runc")
        .unwrap()
        .1;
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
    let failed = bed.bundle(&out, &bed.sources.mirror);
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
    let arm = kubelab(&[
        "bundle",
        bed.lab.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--arch",
        "arm64",
    ]);
    assert_eq!(arm.status.code(), Some(1));
    assert!(
        text(&arm).contains("make the arm64 bundle on an arm64 machine"),
        "{}",
        text(&arm)
    );
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
