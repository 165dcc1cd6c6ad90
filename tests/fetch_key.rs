//! The stage's downloads, run for real against a local HTTPS server: an
//! APT signing key (`kube_fetch_key`) lands whole with mode 0644, and a
//! release file (`kube_fetch_file`) only with the SHA-256 kubelab pins; a
//! download that fails, is not a key or has another checksum leaves
//! nothing behind, so the step's `creates:` fetches it again next time.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use kubelab::kubernetes::node::{FETCH_FILE_SCRIPT, FETCH_KEY_SCRIPT};

const KEY: &str =
    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ0test\n-----END PGP PUBLIC KEY BLOCK-----\n";

/// An HTTPS server on 127.0.0.1 serving `dir`, with a certificate for
/// 127.0.0.1 made here; killed on drop.
struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(dir: &Path) -> Server {
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("tls.key"))
        .arg("-out")
        .arg(dir.join("tls.crt"))
        .output()
        .expect("openssl (scripts/deps.sh test installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let server = r#"
import http.server, ssl, sys, functools
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1] + "/tls.crt", sys.argv[1] + "/tls.key")
httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"#;
    let mut child = Command::new("python3")
        .args(["-c", server])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server's port");
    Server(child, port)
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
    let url = |file: &str| format!("https://127.0.0.1:{}/{file}", server.1);

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
    let url = |file: &str| format!("https://127.0.0.1:{}/{file}", server.1);

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
