//! Interactive sessions on the SSH transport (what `kubelab ssh LAB VM`
//! without a command runs) against a real OpenSSH server in its own network
//! namespace: a pseudo-terminal of the asked size, size changes while it
//! runs, input passed through, the shell's exit status; and a session
//! without a terminal. Runs as root.

#[path = "support/sshd.rs"]
mod support;

use kubelab::transport::ExitStatus;
use kubelab::transport::ssh::SshTransport;
use kubelab::transport::ssh::shell::{ShellInput, ShellRequest, TermSize};
use support::Lab;

async fn root(lab: &Lab, host: &support::SshHost) -> SshTransport {
    host.pin(&host.address);
    SshTransport::connect(lab.target("node", &host.address, "root"))
        .await
        .unwrap_or_else(|e| panic!("connect failed: {e}\nsshd log:\n{}", host.log()))
}

/// Read from `out` into `seen` until it holds `what` (bounded).
async fn read_until(out: &mut tokio::io::DuplexStream, seen: &mut String, what: &str) {
    use tokio::io::AsyncReadExt;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut buf = [0u8; 4096];
    while !seen.contains(what) {
        let n = tokio::time::timeout_at(deadline, out.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {what:?} within 30 s in:\n{seen}"))
            .expect("read");
        assert!(n > 0, "output ended before {what:?}:\n{seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[tokio::test]
async fn a_shell_with_a_terminal_follows_its_size_and_returns_the_exit_status() {
    let lab = Lab::new();
    let host = lab.host();
    let ssh = std::sync::Arc::new(root(&lab, &host).await);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let (mut out_read, mut out_write) = tokio::io::duplex(1 << 16);
    let request = ShellRequest {
        pty: Some((
            "xterm".into(),
            TermSize {
                cols: 101,
                rows: 33,
            },
        )),
    };
    let session = {
        let ssh = ssh.clone();
        tokio::spawn(async move {
            let mut err = Vec::new();
            ssh.shell(&request, rx, &mut out_write, &mut err).await
        })
    };
    let mut seen = String::new();
    tx.send(ShellInput::Data(b"stty size; tty\n".to_vec()))
        .await
        .unwrap();
    read_until(&mut out_read, &mut seen, "33 101").await;
    read_until(&mut out_read, &mut seen, "/dev/pts/").await;
    // the terminal grows while the shell runs
    tx.send(ShellInput::Resize(TermSize {
        cols: 121,
        rows: 41,
    }))
    .await
    .unwrap();
    tx.send(ShellInput::Data(b"stty size; exit 5\n".to_vec()))
        .await
        .unwrap();
    read_until(&mut out_read, &mut seen, "41 121").await;
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), session)
        .await
        .expect("the session ends within 30 s")
        .expect("session task")
        .expect("shell");
    assert_eq!(status, ExitStatus::Code(5), "{seen}");
}

#[tokio::test]
async fn a_shell_without_a_terminal_reads_its_input_to_the_end() {
    let lab = Lab::new();
    let host = lab.host();
    let ssh = root(&lab, &host).await;
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tx.send(ShellInput::Data(b"tty; echo to-stderr >&2; cat\n".to_vec()))
        .await
        .unwrap();
    tx.send(ShellInput::Data(b"passed through\n".to_vec()))
        .await
        .unwrap();
    tx.send(ShellInput::Eof).await.unwrap();
    let mut out = Vec::new();
    let mut err = Vec::new();
    let status = ssh
        .shell(&ShellRequest { pty: None }, rx, &mut out, &mut err)
        .await
        .expect("shell");
    assert_eq!(status, ExitStatus::Code(0));
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("not a tty"), "{text}");
    assert!(text.contains("passed through"), "{text}");
    assert_eq!(String::from_utf8_lossy(&err), "to-stderr\n");
}
