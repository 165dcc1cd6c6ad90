//! Test support for tests that need a real virthost on this machine: a
//! running libvirtd and a cached base image, both made by kubelab's own
//! scripts (`templates/virthost/`).
//!
//! Needs root and the packages of `scripts/deps.sh test`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use kubelab::virthost::spec::{LabName, METADATA_NAMESPACE};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

/// These tests drive the real libvirt daemon (`qemu:///system`) and build
/// an image with debootstrap: they need root. Fail loudly otherwise.
pub fn require_root() {
    let uid = Command::new("id").arg("-u").output().map(|o| o.stdout);
    assert_eq!(
        uid.as_deref()
            .map(|u| String::from_utf8_lossy(u).trim().to_string())
            .ok(),
        Some("0".to_string()),
        "this test needs root (libvirt qemu:///system, debootstrap); CI runs as root"
    );
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where the tests keep the base image: `$KUBELAB_TEST_CACHE` or
/// `/var/cache/kubelab-test`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KUBELAB_TEST_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/kubelab-test"))
}

fn run_script(script: &Path, env: &[(&str, &str)]) -> String {
    let t0 = Instant::now();
    let out = Command::new("sh")
        .arg(script)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{stdout}\n{stderr}",
        script.display(),
        out.status
    );
    eprintln!(
        "[support] {} ok in {:.1}s",
        script.file_name().unwrap_or_default().to_string_lossy(),
        t0.elapsed().as_secs_f64()
    );
    stdout
}

/// Make sure libvirtd runs: kubelab's own `prepare.sh` without package
/// installation (it starts virtlogd/libvirtd by hand when there is no
/// systemd and waits, bounded, for the socket). Once per test process.
pub fn libvirt_ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let out = run_script(
            &repo().join("templates/virthost/prepare.sh"),
            &[("KUBELAB_INSTALL", "0"), ("KUBELAB_IMAGE_TOOLS", "1")],
        );
        let last = out.lines().last().unwrap_or_default();
        assert!(
            last.starts_with("changed="),
            "prepare.sh summary missing: {out}"
        );
        for line in out.lines().filter(|l| l.starts_with("changed:")) {
            eprintln!("[support] prepare.sh {line}");
        }
    });
}

/// The cached Debian base image, built by `build-image-debian.sh` on first
/// use (about 1-2 minutes, needs Debian's mirror), reused afterwards (the
/// script caches by recipe hash and serializes concurrent builds).
///
/// `KUBELAB_TEST_BASE_IMAGE=/path.qcow2` uses that image instead (for
/// comparisons; tests that need cloud-init may then fail).
pub fn base_image() -> PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("KUBELAB_TEST_BASE_IMAGE") {
                return PathBuf::from(p);
            }
            let dir = cache_dir().join("images");
            let out = run_script(
                &repo().join("templates/virthost/build-image-debian.sh"),
                &[("KUBELAB_IMAGE_DIR", dir.to_str().expect("UTF-8 cache path"))],
            );
            let path = PathBuf::from(out.lines().last().unwrap_or_default().trim());
            assert!(
                path.is_file(),
                "build-image-debian.sh printed no image path: {out}"
            );
            path
        })
        .clone()
}

/// A /24 in 192.168.0.0/16 that no route of this machine covers, from
/// `start` upwards, and an IPv6 /64 of the same number.
pub fn free_subnets(start: u8) -> (u8, String, String) {
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for n in start..=254 {
        let prefix = format!("192.168.{n}.");
        if !routes.contains(&prefix) {
            return (n, format!("192.168.{n}"), format!("fd42:6b6c:{n:x}"));
        }
    }
    panic!("no free 192.168.x.0/24 on this machine");
}

/// Objects that are not a lab's, named like its objects on purpose.
pub struct Foreign {
    pub domain: String,
    pub network: String,
    pub pool: String,
    pub pool_dir: PathBuf,
    pub volume: String,
}

/// Run virsh on qemu:///system: success and its output.
pub fn virsh(args: &[&str]) -> (bool, String) {
    let out = Command::new("virsh")
        .arg("-c")
        .arg("qemu:///system")
        .args(args)
        .output()
        .expect("virsh");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Run virsh; the test fails if it fails.
pub fn virsh_ok(args: &[&str]) -> String {
    let (ok, out) = virsh(args);
    assert!(ok, "virsh {args:?} failed: {out}");
    out
}

/// Define (and start) a foreign domain, network, pool and volume that a lab
/// must leave alone; leftovers of an earlier run are removed first.
pub fn define_foreign(lab: &LabName, tag: &str, dir: &Path) -> Foreign {
    let f = Foreign {
        domain: lab.object_name("foreign"),
        network: lab.object_name("fnet"),
        pool: format!("kltest-foreign-{tag}"),
        pool_dir: dir.join("foreign-pool"),
        volume: lab.object_name("foreign.img"),
    };
    remove_foreign(&f);
    // a domain of lab "<lab>-x": same prefix, other metadata
    let dom = format!(
        r#"<domain type="qemu"><name>{}</name>
<metadata><kubelab:lab xmlns:kubelab="{METADATA_NAMESPACE}" name="{}-x" object="foreign"/></metadata>
<memory unit="MiB">64</memory><vcpu>1</vcpu><os><type arch="x86_64" machine="pc">hvm</type></os></domain>"#,
        f.domain, lab
    );
    let net = format!(
        r#"<network><name>{}</name><bridge name="klf{tag}" stp="off" delay="0"/></network>"#,
        f.network
    );
    let pool = format!(
        r#"<pool type="dir"><name>{}</name><target><path>{}</path></target></pool>"#,
        f.pool,
        f.pool_dir.display()
    );
    for (kind, xml) in [("domain", dom), ("network", net), ("pool", pool)] {
        let path = dir.join(format!("foreign-{kind}.xml"));
        std::fs::write(&path, xml).unwrap();
        let p = path.to_str().unwrap();
        match kind {
            "domain" => virsh_ok(&["define", p]),
            "network" => virsh_ok(&["net-define", p]),
            _ => virsh_ok(&["pool-define", p]),
        };
    }
    virsh_ok(&["net-start", &f.network]);
    virsh_ok(&["pool-build", &f.pool]);
    virsh_ok(&["pool-start", &f.pool]);
    virsh_ok(&["vol-create-as", &f.pool, &f.volume, "1M", "--format", "raw"]);
    f
}

/// Remove what `define_foreign` made.
pub fn remove_foreign(f: &Foreign) {
    let _ = virsh(&["undefine", &f.domain]);
    let _ = virsh(&["net-destroy", &f.network]);
    let _ = virsh(&["net-undefine", &f.network]);
    let _ = virsh(&["vol-delete", "--pool", &f.pool, &f.volume]);
    let _ = virsh(&["pool-destroy", &f.pool]);
    let _ = virsh(&["pool-delete", &f.pool]);
    let _ = virsh(&["pool-undefine", &f.pool]);
}
