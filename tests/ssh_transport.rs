//! The SSH transport against real OpenSSH servers, each in its own network
//! namespace (see `support`). Runs as root.

#[path = "support/sshd.rs"]
mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubelab::transport::ssh::{HostKeyPolicy, SshTransport, known_hosts};
use kubelab::transport::{Command, Exec, ExitStatus, Transport, TransportError, Upload};
use support::{Lab, SshHost, TEST_USER};
use tokio::io::AsyncReadExt;

async fn connect_root(lab: &Lab, host: &SshHost) -> SshTransport {
    host.pin(&host.address);
    SshTransport::connect(lab.target("node", &host.address, "root"))
        .await
        .unwrap_or_else(|e| panic!("connect failed: {e}\nsshd log:\n{}", host.log()))
}

fn script(text: &str) -> Exec {
    Exec::new(Command::script(text))
}

/// A root-owned scratch directory that every user may enter.
fn scratch_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kubelab-files-")
        .tempdir()
        .expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

#[tokio::test]
async fn exec_reports_stdout_stderr_exit_code_signal_and_takes_stdin() {
    let lab = Lab::new();
    let host = lab.host();
    let ssh = connect_root(&lab, &host).await;
    assert!(ssh.is_root());
    assert_eq!(ssh.host(), "node");

    let out = ssh
        .exec(script("echo out; echo err >&2; exit 3"))
        .await
        .expect("exec");
    assert_eq!(out.stdout_str(), "out\n");
    assert_eq!(out.stderr_str(), "err\n");
    assert_eq!(out.status, ExitStatus::Code(3));

    let out = ssh.exec(script("kill -TERM $$")).await.expect("exec");
    assert_eq!(out.status, ExitStatus::Signal("TERM".to_string()));

    let out = ssh
        .exec(Exec::new(Command::argv(["tr", "a-z", "A-Z"])).stdin(b"hello\n".to_vec()))
        .await
        .expect("exec");
    assert_eq!(out.stdout_str(), "HELLO\n");
    assert!(out.status.success());

    // 3 MB through stdin and back while it is still being sent: no deadlock.
    let input: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let out = ssh
        .exec(Exec::new(Command::argv(["cat"])).stdin(input.clone()))
        .await
        .expect("exec");
    assert!(out.stdout == input, "stdin echoed back differs");
}

#[tokio::test]
async fn ten_megabytes_of_output_arrive_complete() {
    let lab = Lab::new();
    let host = lab.host();
    let ssh = connect_root(&lab, &host).await;
    let started = Instant::now();
    let out = ssh
        .exec(script(
            "head -c 10485760 /dev/zero | tr '\\0' x; head -c 1048576 /dev/zero | tr '\\0' y >&2",
        ))
        .await
        .expect("exec");
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 10 * 1024 * 1024);
    assert!(out.stdout.iter().all(|b| *b == b'x'));
    assert_eq!(out.stderr.len(), 1024 * 1024);
    assert!(out.stderr.iter().all(|b| *b == b'y'));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn fifty_concurrent_commands_share_one_connection_within_max_sessions() {
    let lab = Lab::new();
    let host = lab.host(); // OpenSSH default MaxSessions (10)
    let ssh = Arc::new(connect_root(&lab, &host).await);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let ssh = ssh.clone();
        tasks.spawn(async move {
            let out = ssh
                .exec(Exec::new(Command::script(format!("sleep 0.2; echo {i}"))))
                .await;
            (i, out)
        });
    }
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, out) = joined.expect("task");
        let out = out.unwrap_or_else(|e| panic!("command {i} failed: {e}"));
        assert_eq!(out.stdout_str(), format!("{i}\n"));
        done += 1;
    }
    assert_eq!(done, 50);
    // All of them on one connection: sshd logged a single accepted login.
    let logins = host.log().matches("Accepted publickey").count();
    assert_eq!(logins, 1, "sshd log:\n{}", host.log());
}

#[tokio::test]
async fn without_the_channel_limit_max_sessions_refuses_channels() {
    // The control experiment for the test above: allowing more channels than
    // MaxSessions makes sshd refuse some, which the semaphore prevents.
    let lab = Lab::new();
    let host = lab.host_with_max_sessions(4);
    host.pin(&host.address);
    let mut target = lab.target("node", &host.address, "root");
    target.max_channels = 20;
    target.channel_open_patience = Duration::ZERO;
    let ssh = Arc::new(SshTransport::connect(target).await.expect("connect"));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let ssh = ssh.clone();
        tasks.spawn(async move { ssh.exec(script("sleep 0.5")).await });
    }
    let mut refused = 0;
    while let Some(joined) = tasks.join_next().await {
        if let Err(e) = joined.expect("task") {
            assert!(matches!(e, TransportError::Io { .. }), "{e}");
            refused += 1;
        }
    }
    assert!(refused > 0, "sshd accepted 20 sessions with MaxSessions 4");
}

#[tokio::test]
async fn timeout_closes_the_channel_and_the_connection_stays_usable() {
    let lab = Lab::new();
    let host = lab.host();
    let ssh = connect_root(&lab, &host).await;
    let started = Instant::now();
    let err = ssh
        .exec(Exec::new(Command::argv(["sleep", "31"])).timeout(Duration::from_millis(500)))
        .await
        .expect_err("must time out");
    assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The command was signalled, not left running (checked for at most 10 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while host.command_lines().iter().any(|c| c == "sleep 31") {
        assert!(
            Instant::now() < deadline,
            "sleep 31 still runs: {:?}",
            host.command_lines()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = ssh.exec(script("echo still here")).await.expect("exec");
    assert_eq!(out.stdout_str(), "still here\n");

    // sshd counts a timed-out session until its command has ended; the
    // channel budget must too, or the commands right after a burst of
    // timeouts would be refused (MaxSessions 10).
    let ssh = Arc::new(ssh);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let ssh = ssh.clone();
        tasks.spawn(async move {
            ssh.exec(script("sleep 30").timeout(Duration::from_millis(300)))
                .await
                .map(|_| ())
                .map_err(|e| matches!(e, TransportError::Timeout { .. }))
        });
    }
    while let Some(joined) = tasks.join_next().await {
        assert_eq!(joined.expect("task"), Err(true), "every one times out");
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let ssh = ssh.clone();
        tasks.spawn(async move {
            ssh.exec(Exec::new(Command::argv(["echo", &i.to_string()])))
                .await
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let out = joined
            .expect("task")
            .unwrap_or_else(|e| panic!("after timeouts: {e}"));
        assert!(out.status.success());
    }
}

#[tokio::test]
async fn upload_replaces_atomically_with_mode_and_owner() {
    let lab = Lab::new();
    let host = lab.host();
    let ssh = connect_root(&lab, &host).await;
    let dir = scratch_dir();
    let path = dir.path().join("app.conf").display().to_string();

    assert_eq!(ssh.read_file(&path, false).await.expect("read"), None);

    let first = b"first version\n".to_vec();
    ssh.write_file(Upload {
        path: path.clone(),
        content: first.clone(),
        mode: 0o644,
        owner: None,
        become_root: false,
    })
    .await
    .expect("write");
    assert_eq!(std::fs::read(&path).expect("local read"), first);
    assert_eq!(
        std::fs::metadata(&path).expect("stat").permissions().mode() & 0o7777,
        0o644
    );
    let before = std::fs::metadata(&path).expect("stat").ino();

    // Replace with a bigger file (several SFTP chunks), another mode and owner.
    let second: Vec<u8> = (0..300_000).map(|i| (i % 97) as u8).collect();
    ssh.write_file(Upload {
        path: path.clone(),
        content: second.clone(),
        mode: 0o600,
        owner: Some("nobody:nogroup".to_string()),
        become_root: false,
    })
    .await
    .expect("write");
    let meta = std::fs::metadata(&path).expect("stat");
    assert_eq!(std::fs::read(&path).expect("local read"), second);
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(meta.uid(), 65534, "owner nobody");
    assert_ne!(
        meta.ino(),
        before,
        "replaced by rename, not rewritten in place"
    );
    assert_eq!(
        ssh.read_file(&path, false).await.expect("read").as_deref(),
        Some(&second[..])
    );

    // Larger than one group of pipelined writes (1 MiB), ending in a
    // partial chunk: every byte at its place, empty content too.
    let large: Vec<u8> = (0..(2 * 1024 * 1024 + 40_000))
        .map(|i| (i % 251) as u8)
        .collect();
    for content in [large, Vec::new()] {
        ssh.write_file(Upload {
            path: path.clone(),
            content: content.clone(),
            mode: 0o640,
            owner: None,
            become_root: false,
        })
        .await
        .expect("write");
        assert_eq!(std::fs::read(&path).expect("local read"), content);
        assert_eq!(
            std::fs::metadata(&path).expect("stat").permissions().mode() & 0o7777,
            0o640
        );
    }

    // Replace once more without owner (the SFTP rename path over an existing file).
    ssh.write_file(Upload {
        path: path.clone(),
        content: b"third".to_vec(),
        mode: 0o640,
        owner: None,
        become_root: false,
    })
    .await
    .expect("write");
    assert_eq!(std::fs::read(&path).expect("local read"), b"third");

    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        vec!["app.conf".to_string()],
        "no temporary file left"
    );

    // A write into a missing directory fails cleanly.
    let err = ssh
        .write_file(Upload {
            path: dir.path().join("missing/x").display().to_string(),
            content: b"x".to_vec(),
            mode: 0o644,
            owner: None,
            become_root: false,
        })
        .await
        .expect_err("no such directory");
    assert!(matches!(err, TransportError::Io { .. }), "{err}");
}

#[tokio::test]
async fn become_through_sudo_as_a_non_root_user() {
    let lab = Lab::new();
    let host = lab.host();
    host.pin(&host.address);
    let ssh = SshTransport::connect(lab.target("node", &host.address, TEST_USER))
        .await
        .unwrap_or_else(|e| panic!("connect failed: {e}\n{}", host.log()));
    assert!(!ssh.is_root());

    let out = ssh
        .exec(Exec::new(Command::argv(["id", "-un"])))
        .await
        .expect("exec");
    assert_eq!(out.stdout_str(), format!("{TEST_USER}\n"));
    let out = ssh
        .exec(Exec::new(Command::argv(["id", "-u"])).become_root(true))
        .await
        .expect("exec");
    assert_eq!(out.stdout_str(), "0\n");

    let dir = scratch_dir(); // root-owned, 0755: the login user cannot write
    let path = dir.path().join("root-only.conf").display().to_string();
    let upload = Upload {
        path: path.clone(),
        content: b"secret: yes\n".to_vec(),
        mode: 0o600,
        owner: Some("root:root".to_string()),
        become_root: false,
    };
    let err = ssh
        .write_file(upload.clone())
        .await
        .expect_err("not writable by the user");
    assert!(matches!(err, TransportError::Io { .. }), "{err}");

    ssh.write_file(Upload {
        become_root: true,
        ..upload.clone()
    })
    .await
    .expect("write as root");
    let meta = std::fs::metadata(&path).expect("stat");
    assert_eq!(meta.uid(), 0);
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    assert_eq!(std::fs::read(&path).expect("read"), b"secret: yes\n");

    // Replace it as root, then read it back as root; the user cannot.
    ssh.write_file(Upload {
        content: b"secret: no\n".to_vec(),
        become_root: true,
        ..upload
    })
    .await
    .expect("rewrite as root");
    assert_eq!(
        ssh.read_file(&path, true)
            .await
            .expect("read as root")
            .as_deref(),
        Some(&b"secret: no\n"[..])
    );
    assert!(
        ssh.read_file(&path, false).await.is_err(),
        "0600 root file read as user"
    );
    assert_eq!(
        ssh.read_file(&dir.path().join("nope").display().to_string(), true)
            .await
            .expect("read missing as root"),
        None
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("list").count(),
        1,
        "no temp file left"
    );
}

#[tokio::test]
async fn hostile_arguments_arrive_byte_exact_and_do_nothing() {
    let lab = Lab::new();
    let host = lab.host();
    let root = connect_root(&lab, &host).await;
    let user = SshTransport::connect(lab.target("node", &host.address, TEST_USER))
        .await
        .expect("connect as user");
    let marker = format!("/tmp/kubelab-pwned-{}", std::process::id());
    let hostile = format!(
        "; rm -rf / $(touch {marker}) `touch {marker}` 'single' \"double\" \\ back\nnewline\t* $HOME ${{x}} &"
    );
    for (ssh, become_root) in [(&root, false), (&user, false), (&user, true)] {
        let out = ssh
            .exec(
                Exec::new(Command::argv(["printf", "%s", hostile.as_str()]))
                    .become_root(become_root),
            )
            .await
            .expect("exec");
        assert!(out.status.success(), "{}", out.stderr_str());
        assert_eq!(out.stdout, hostile.as_bytes(), "become_root={become_root}");
    }
    assert!(
        !std::path::Path::new(&marker).exists(),
        "a command substitution ran"
    );
}

#[tokio::test]
async fn authenticates_with_ed25519_ecdsa_rsa_and_agent_and_names_failures() {
    let lab = Lab::new();
    let host = lab.host();
    host.pin(&host.address);
    for key in [&lab.ed25519, &lab.ecdsa, &lab.rsa] {
        let mut target = lab.target("node", &host.address, "root");
        target.identity_files = vec![key.private.clone()];
        let ssh = SshTransport::connect(target)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.private.display()));
        let out = ssh.exec(script("echo ok")).await.expect("exec");
        assert_eq!(out.stdout_str(), "ok\n");
    }

    let mut target = lab.target("node", &host.address, "root");
    target.identity_files = vec![lab.stranger.private.clone()];
    let err = SshTransport::connect(target)
        .await
        .err()
        .expect("stranger key refused");
    let text = err.to_string();
    assert!(matches!(err, TransportError::Auth { .. }), "{err}");
    assert!(text.contains("node") && text.contains("root"), "{text}");
    let secret = std::fs::read_to_string(&lab.stranger.private).expect("read key");
    let secret_body = secret.lines().nth(1).expect("key body");
    assert!(!text.contains(secret_body), "the error shows key material");

    // ssh-agent on its own socket, holding the rsa key.
    let socket = lab.dir.path().join("agent.sock");
    let mut agent = std::process::Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start ssh-agent");
    support::wait_for_file(&socket, Duration::from_secs(10)).await;
    let added = std::process::Command::new("ssh-add")
        .arg(&lab.rsa.private)
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .expect("ssh-add");
    let mut target = lab.target("node", &host.address, "root");
    target.identity_files = vec![lab.stranger.private.clone()];
    target.use_agent = true;
    target.agent_socket = Some(socket.clone());
    let result = SshTransport::connect(target).await;
    let _ = agent.kill();
    let _ = agent.wait();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let ssh = result.expect("agent authentication");
    assert_eq!(
        ssh.exec(script("echo agent"))
            .await
            .expect("exec")
            .stdout_str(),
        "agent\n"
    );
}

#[tokio::test]
async fn strict_host_keys_unknown_accept_new_and_changed() {
    let lab = Lab::new();
    let host = lab.host();

    // Unknown key, strict: refused with the fingerprint and how to accept it.
    let err = SshTransport::connect(lab.target("node", &host.address, "root"))
        .await
        .err()
        .expect("unknown key refused");
    match &err {
        TransportError::HostKeyUnknown {
            host: name,
            fingerprint,
            known_hosts,
        } => {
            assert_eq!(name, "node");
            assert_eq!(fingerprint, &host.fingerprint());
            assert_eq!(known_hosts, &lab.known_hosts.display().to_string());
        }
        other => panic!("expected HostKeyUnknown, got {other}"),
    }
    assert!(err.to_string().contains("accept-new"), "{err}");

    // accept-new learns it; a strict connection then works.
    let mut target = lab.target("node", &host.address, "root");
    target.host_key_policy = HostKeyPolicy::AcceptNew;
    SshTransport::connect(target).await.expect("accept-new");
    let recorded = std::fs::read_to_string(&lab.known_hosts).expect("known_hosts");
    assert!(recorded.contains(&host.address), "{recorded}");
    SshTransport::connect(lab.target("node", &host.address, "root"))
        .await
        .expect("strict after learning");

    // A different key recorded for the host on line 4: changed, named with
    // file and line, refused by accept-new too.
    let other_host = lab.host();
    let other_key = known_hosts::parse_public_key(&other_host.host_key_public).expect("key");
    let changed_file = lab.dir.path().join("known_hosts_changed");
    std::fs::write(
        &changed_file,
        format!(
            "# kubelab test\n\n10.99.99.99 {}\n{} {}\n",
            host.host_key_public,
            host.address,
            other_key.to_openssh().expect("openssh")
        ),
    )
    .expect("write");
    for policy in [HostKeyPolicy::Strict, HostKeyPolicy::AcceptNew] {
        let mut target = lab.target("node", &host.address, "root");
        target.known_hosts = changed_file.clone();
        target.host_key_policy = policy;
        match SshTransport::connect(target).await {
            Err(TransportError::HostKeyChanged {
                line,
                known_hosts,
                fingerprint,
                ..
            }) => {
                assert_eq!(line, 4);
                assert_eq!(known_hosts, changed_file.display().to_string());
                assert_eq!(fingerprint, host.fingerprint());
            }
            Err(other) => panic!("expected HostKeyChanged, got {other}"),
            Ok(_) => panic!("connected despite a changed host key ({policy:?})"),
        }
    }
}

#[tokio::test]
async fn jump_hosts_reach_hosts_only_their_jump_can_see() {
    let lab = Lab::new();
    let jump = lab.host();
    let middle = lab.isolated_host();
    let target = lab.isolated_host();
    let (_, middle_addr) = lab.link(&jump, &middle);
    let (_, target_addr) = lab.link(&middle, &target);
    let (_, behind_jump_addr) = lab.link(&jump, &target);

    // Not reachable from here.
    let mut direct = lab.target("target", &behind_jump_addr, "root");
    direct.connect_timeout = Duration::from_secs(1);
    direct.connect_attempts = 1;
    target.pin(&behind_jump_addr);
    let err = SshTransport::connect(direct)
        .await
        .err()
        .expect("no direct route");
    assert!(err.is_unreachable(), "{err}");

    let jump_ssh = Arc::new(connect_root(&lab, &jump).await);

    // One hop.
    let via_one = SshTransport::connect_via(
        jump_ssh.clone(),
        lab.target("target", &behind_jump_addr, "root"),
    )
    .await
    .unwrap_or_else(|e| panic!("one hop: {e}"));
    let out = via_one
        .exec(script("ip -o -4 addr show"))
        .await
        .expect("exec");
    assert!(
        out.stdout_str().contains(&behind_jump_addr),
        "{}",
        out.stdout_str()
    );

    // Two hops: jump -> middle -> target, target reachable only from middle.
    middle.pin(&middle_addr);
    target.pin(&target_addr);
    let middle_ssh = Arc::new(
        SshTransport::connect_via(jump_ssh.clone(), lab.target("middle", &middle_addr, "root"))
            .await
            .unwrap_or_else(|e| panic!("middle: {e}")),
    );
    let via_two = SshTransport::connect_via(
        middle_ssh.clone(),
        lab.target("target", &target_addr, "root"),
    )
    .await
    .unwrap_or_else(|e| panic!("two hops: {e}"));
    let out = via_two
        .exec(script("ip -o -4 addr show"))
        .await
        .expect("exec");
    assert!(
        out.stdout_str().contains(&target_addr),
        "{}",
        out.stdout_str()
    );
    via_two
        .write_file(Upload {
            path: lab.dir.path().join("via-two-hops").display().to_string(),
            content: b"hop hop".to_vec(),
            mode: 0o644,
            owner: None,
            become_root: false,
        })
        .await
        .expect("sftp through two hops");

    // open_tunnel: the same direct-tcpip stream, here to the target's sshd.
    let mut tunnel = middle_ssh
        .open_tunnel(&target_addr, 22)
        .await
        .expect("tunnel");
    let mut banner = [0u8; 8];
    tunnel.read_exact(&mut banner).await.expect("banner");
    assert_eq!(&banner, b"SSH-2.0-");
}

#[tokio::test]
async fn unreachable_address_fails_within_the_configured_bound() {
    let lab = Lab::new();
    let mut target = lab.target("ghost", &lab.unused_address(), "root");
    target.connect_timeout = Duration::from_secs(2);
    target.connect_attempts = 3;
    let started = Instant::now();
    let err = SshTransport::connect(target)
        .await
        .err()
        .expect("nobody there");
    let took = started.elapsed();
    assert!(err.is_unreachable(), "{err}");
    assert!(err.to_string().contains("ghost"), "{err}");
    // 3 attempts of at most 2 s, plus 0.5 s + 1 s of backoff.
    assert!(took < Duration::from_secs(15), "took {took:?}");
}

#[tokio::test]
async fn killed_sshd_gives_connection_lost_then_unreachable_without_hanging() {
    let lab = Lab::new();
    let mut host = lab.host();
    host.pin(&host.address);
    let mut target = lab.target("node", &host.address, "root");
    target.connect_timeout = Duration::from_secs(2);
    target.connect_attempts = 2;
    let ssh = Arc::new(SshTransport::connect(target).await.expect("connect"));
    let marker = lab.dir.path().join("long-command-started");
    let command = format!("touch {} && sleep 60", marker.display());
    let running = {
        let ssh = ssh.clone();
        tokio::spawn(async move { ssh.exec(script(&command)).await })
    };
    support::wait_for_file(&marker, Duration::from_secs(10)).await;
    host.kill_everything();

    let result = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("exec hung after sshd was killed")
        .expect("task");
    let err = result.expect_err("the command cannot have succeeded");
    assert!(
        matches!(err, TransportError::ConnectionLost { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("not marked idempotent"), "{err}");

    let err = tokio::time::timeout(Duration::from_secs(20), ssh.exec(script("true")))
        .await
        .expect("next exec hung")
        .expect_err("sshd is gone");
    assert!(err.is_unreachable(), "{err}");
}

#[tokio::test]
async fn dropped_connection_is_reestablished_and_idempotent_commands_rerun() {
    let lab = Lab::new();
    let host = lab.host();
    let ssh = Arc::new(connect_root(&lab, &host).await);
    let marker = lab.dir.path().join("first-run");
    let command = format!(
        "if [ -e {m} ]; then echo second run; else touch {m}; sleep 60; fi",
        m = marker.display()
    );
    let running = {
        let ssh = ssh.clone();
        tokio::spawn(async move { ssh.exec(script(&command).idempotent(true)).await })
    };
    support::wait_for_file(&marker, Duration::from_secs(10)).await;
    host.kill_connections(); // the listener stays

    let out = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("exec hung")
        .expect("task")
        .expect("re-run on a new connection");
    assert_eq!(out.stdout_str(), "second run\n");
    let logins = host.log().matches("Accepted publickey").count();
    assert_eq!(logins, 2, "exactly one re-connection");

    // Later commands use the new connection.
    assert_eq!(
        ssh.exec(script("echo ok"))
            .await
            .expect("exec")
            .stdout_str(),
        "ok\n"
    );
}

#[tokio::test]
async fn silently_vanished_host_is_detected_by_keepalives() {
    let lab = Lab::new();
    let host = lab.host();
    host.pin(&host.address);
    let mut target = lab.target("node", &host.address, "root");
    target.keepalive = Duration::from_secs(1);
    target.connect_timeout = Duration::from_secs(1);
    target.connect_attempts = 1;
    let ssh = Arc::new(SshTransport::connect(target).await.expect("connect"));
    let marker = lab.dir.path().join("long-command-started");
    let command = format!("touch {} && sleep 60", marker.display());
    let running = {
        let ssh = ssh.clone();
        tokio::spawn(async move { ssh.exec(script(&command)).await })
    };
    support::wait_for_file(&marker, Duration::from_secs(10)).await;
    let started = Instant::now();
    host.cut_network();
    // 1 s keepalive interval, 3 unanswered keepalives: well under 15 s.
    let err = tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("exec hung on a dead connection")
        .expect("task")
        .expect_err("the connection is dead");
    assert!(
        matches!(err, TransportError::ConnectionLost { .. }),
        "{err}"
    );
    eprintln!("dead connection noticed after {:?}", started.elapsed());
}

#[tokio::test]
async fn concurrent_uploads_reads_and_commands_share_the_channel_budget() {
    let lab = Lab::new();
    let host = lab.host();
    let ssh = Arc::new(connect_root(&lab, &host).await);
    let dir = Arc::new(scratch_dir());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let ssh = ssh.clone();
        let dir = dir.clone();
        tasks.spawn(async move {
            let path = dir.path().join(format!("file-{i}")).display().to_string();
            let content = format!("content {i}\n").repeat(1000).into_bytes();
            ssh.write_file(Upload {
                path: path.clone(),
                content: content.clone(),
                mode: 0o640,
                owner: None,
                become_root: false,
            })
            .await
            .map_err(|e| format!("write {i}: {e}"))?;
            let back = ssh
                .read_file(&path, false)
                .await
                .map_err(|e| format!("read {i}: {e}"))?;
            if back.as_deref() != Some(&content[..]) {
                return Err(format!("file {i} read back differently"));
            }
            let out = ssh
                .exec(Exec::new(Command::argv(["wc", "-c", path.as_str()])))
                .await
                .map_err(|e| format!("exec {i}: {e}"))?;
            if !out.stdout_str().starts_with(&content.len().to_string()) {
                return Err(format!("wc {i}: {}", out.stdout_str()));
            }
            Ok::<(), String>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").unwrap_or_else(|e| panic!("{e}"));
    }
    assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 30);
    assert_eq!(host.log().matches("Accepted publickey").count(), 1);
}
