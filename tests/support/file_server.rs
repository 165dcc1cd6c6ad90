//! A static file server on 127.0.0.1 (Python's http.server), plain HTTP or
//! HTTPS with a certificate for 127.0.0.1 made here; killed on drop.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct FileServer {
    child: Child,
    pub port: u16,
    /// The server's certificate (HTTPS only).
    pub certificate: Option<PathBuf>,
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SERVER: &str = r#"
import http.server, ssl, sys, functools
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
if len(sys.argv) > 2:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
print(httpd.server_address[1], flush=True)
httpd.serve_forever()
"#;

/// Serve `dir` over plain HTTP.
pub fn http(dir: &Path) -> FileServer {
    start(dir, None)
}

/// Serve `dir` over HTTPS; the key and certificate are written to
/// `tls_dir` (outside `dir`, or served with it).
pub fn https(dir: &Path, tls_dir: &Path) -> FileServer {
    let key = tls_dir.join("tls.key");
    let crt = tls_dir.join("tls.crt");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&crt)
        .output()
        .expect("openssl (scripts/deps.sh test installs it)");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    start(dir, Some((crt, key)))
}

fn start(dir: &Path, tls: Option<(PathBuf, PathBuf)>) -> FileServer {
    let mut command = Command::new("python3");
    command.args(["-c", SERVER]).arg(dir);
    if let Some((crt, key)) = &tls {
        command.arg(crt).arg(key);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 (scripts/deps.sh test installs it)");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server's port");
    FileServer {
        child,
        port,
        certificate: tls.map(|(crt, _)| crt),
    }
}
