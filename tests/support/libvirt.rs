//! Test support for tests that need a real virthost on this machine: a
//! running libvirtd and a cached base image, both made by kubelab's own
//! scripts (`templates/virthost/`).
//!
//! Needs root and the packages of `scripts/deps.sh test`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
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
