//! The stage's downloads, run for real against a local HTTPS server: an
//! APT signing key (`kube_fetch_key`) lands whole with mode 0644, and a
//! release file (`kube_fetch_file`) only with the SHA-256 kubelab pins; a
//! download that fails, is not a key or has another checksum leaves
//! nothing behind, so the step's `creates:` fetches it again next time.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use kubelab::kubernetes::node::{FETCH_FILE_SCRIPT, FETCH_KEY_SCRIPT};

const KEY: &str =
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ0test\n-----END PGP PUBLIC KEY BLOCK-----\n";

#[path = "support/file_server.rs"]
mod file_server;

/// An HTTPS server serving `dir`, its certificate beside the files.
fn serve(dir: &Path) -> file_server::FileServer {
    file_server::https(dir, dir)
}

fn fetch(dir: &Path, url: &str, dest: &Path) -> std::process::Output {
    run(dir, FETCH_KEY_SCRIPT, &[url, &dest.to_string_lossy()])
}

/// `script` as the stage runs it (`sh -c SCRIPT NAME ARGS...`), trusting
/// the test server's certificate.
fn run(dir: &Path, script: &str, args: &[&str]) -> std::process::Output {
    Command::new("sh")
        .args(["-c", script, "fetch"])
        .args(args)
        .env("CURL_CA_BUNDLE", dir.join("tls.crt"))
        .output()
        .unwrap()
}

fn leftovers(p: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_release_file_lands_only_with_its_pinned_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let archive = b"cri-dockerd release archive\n".repeat(1000);
    std::fs::write(dir.path().join("release.tgz"), &archive).unwrap();
    let sha256 = {
        let out = Command::new("sha256sum")
            .arg(dir.path().join("release.tgz"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let server = serve(dir.path());
    let cache = tempfile::tempdir().unwrap();
    let dest = cache.path().join("kubelab-cri-dockerd.tgz");
    let dest_s = dest.to_string_lossy().into_owned();
    let url = |file: &str| format!("https://127.0.0.1:{}/{file}", server.port);

    let wrong = "0".repeat(64);
    let bad = run(
        dir.path(),
        FETCH_FILE_SCRIPT,
        &[&url("release.tgz"), &dest_s, &wrong],
    );
    assert!(
        !bad.status.success(),
        "a file with another checksum was kept"
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains(&format!(
            "has SHA-256 {sha256}, not the pinned {wrong}: not kept"
        )),
        "{stderr}"
    );
    assert!(
        leftovers(cache.path()).is_empty(),
        "{:?}",
        leftovers(cache.path())
    );
    let missing = run(
        dir.path(),
        FETCH_FILE_SCRIPT,
        &[&url("gone.tgz"), &dest_s, &sha256],
    );
    assert!(!missing.status.success());
    assert!(leftovers(cache.path()).is_empty());

    let ok = run(
        dir.path(),
        FETCH_FILE_SCRIPT,
        &[&url("release.tgz"), &dest_s, &sha256],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(std::fs::read(&dest).unwrap(), archive);
    assert_eq!(leftovers(cache.path()), ["kubelab-cri-dockerd.tgz"]);
}

#[test]
fn a_key_lands_whole_and_nothing_else_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key.asc"), KEY).unwrap();
    std::fs::write(dir.path().join("page.html"), "<html>not a key</html>").unwrap();
    let server = serve(dir.path());
    let keyrings = tempfile::tempdir().unwrap();
    let dest = keyrings.path().join("kubernetes.asc");
    let url = |file: &str| format!("https://127.0.0.1:{}/{file}", server.port);

    let ok = fetch(dir.path(), &url("key.asc"), &dest);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), KEY);
    let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);

    for (file, why) in [
        ("page.html", "is not an armored OpenPGP key"),
        ("missing.asc", ""),
    ] {
        let dest = keyrings.path().join("other.asc");
        let bad = fetch(dir.path(), &url(file), &dest);
        assert!(!bad.status.success(), "{file} was accepted");
        assert!(
            String::from_utf8_lossy(&bad.stderr).contains(why),
            "{file}: {bad:?}"
        );
        assert_eq!(
            leftovers(keyrings.path()),
            ["kubernetes.asc"],
            "{file} left a file"
        );
    }
}
