//! Real SSH hosts for tests: each host is an OpenSSH `sshd` running in its
//! own network namespace, with its own address, its own generated ed25519
//! host key and the lab's client keys authorised. Hosts sit on a per-lab
//! Linux bridge reachable from the test process, or only on point-to-point
//! veth links to other hosts (to test jump hosts).
//!
//! Needs root (CI runs as root) and `scripts/deps.sh test`. Everything is
//! named after the test process id and a per-process counter, and removed
//! in `Drop`, also when a test fails.
#![allow(dead_code)]

#[path = "command.rs"]
mod command;

pub use command::run;
use command::run_quietly;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use kubelab::transport::ssh::{HostKeyPolicy, SshTarget, known_hosts};

/// The non-root login user of the `become` tests (NOPASSWD sudo).
pub const TEST_USER: &str = "kubelab-test";

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);
static SUBNETS: Mutex<()> = Mutex::new(());

fn require_root_and_tools() {
    let uid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert_eq!(
        uid, 0,
        "the SSH transport tests start real sshd hosts in network namespaces and must run \
         as root (CI does); run `sudo -E cargo test` or the CI script"
    );
    for tool in ["/usr/sbin/sshd", "/usr/bin/ssh-keygen", "/usr/bin/sudo"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: run scripts/deps.sh test"
        );
    }
    assert!(
        Command::new("ip").arg("-V").output().is_ok(),
        "`ip` (iproute2) is missing: run scripts/deps.sh test"
    );
    std::fs::create_dir_all("/run/sshd").expect("cannot create /run/sshd");
}

/// Creates the non-root test user with NOPASSWD sudo, once per process.
fn ensure_test_user() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let exists = Command::new("id")
            .arg("-u")
            .arg(TEST_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !exists {
            run("useradd", &["-m", "-s", "/bin/sh", TEST_USER]);
        }
        // `*`, not the `!` of a new account: with UsePAM no, sshd refuses
        // locked accounts even for key authentication.
        run("usermod", &["-p", "*", TEST_USER]);
        std::fs::write(
            format!("/etc/sudoers.d/{TEST_USER}"),
            format!("{TEST_USER} ALL=(ALL) NOPASSWD: ALL\n"),
        )
        .expect("cannot write the sudoers rule");
        run("chmod", &["0440", &format!("/etc/sudoers.d/{TEST_USER}")]);
    });
}

/// The test process that created a namespace or interface named by this
/// module (`kl<pid>x<lab>` followed by `h<n>`, `br`, `v<n>` or `l<n>a|b`).
fn creator_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("kl")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let rest = rest[digits.len()..].strip_prefix('x')?;
    let lab: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let suffix = &rest[lab.len()..];
    let numbered = |prefix: &str| {
        suffix
            .strip_prefix(prefix)
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    };
    let link_end = suffix
        .strip_prefix('l')
        .and_then(|l| l.strip_suffix('a').or_else(|| l.strip_suffix('b')))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
    let known_suffix = suffix == "br" || numbered("h") || numbered("v") || link_end;
    if digits.is_empty() || lab.is_empty() || !known_suffix {
        return None;
    }
    digits.parse().ok()
}

/// Removes namespaces and interfaces left by test processes that no longer
/// exist (killed before their `Drop` ran). Only names of this module's
/// pattern whose creating process is gone are touched.
fn sweep_leftovers_of_dead_test_processes() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dead = |name: &str| {
            creator_pid(name).is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        };
        for line in run("ip", &["netns", "list"]).lines() {
            if let Some(name) = line.split_whitespace().next()
                && dead(name)
            {
                run_quietly("ip", &["netns", "del", name]);
            }
        }
        for line in run("ip", &["-o", "link", "show"]).lines() {
            let Some(name) = line.split(": ").nth(1) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            if dead(name) {
                run_quietly("ip", &["link", "del", name]);
            }
        }
    });
}

/// Creates the lab bridge on a 10.213.N.0/24 not routed on this machine
/// (10.214.N.0/24 is then used for links between namespaces); returns N.
fn create_bridge(bridge: &str, lab_number: u32) -> u8 {
    // Held until the bridge has its address, so that labs starting at the
    // same time see each other's routes.
    let _guard = SUBNETS.lock().unwrap_or_else(|p| p.into_inner());
    let routes = run("ip", &["-4", "route", "show", "table", "all"]);
    let start = (std::process::id() % 200) + lab_number * 3;
    for step in 0..250u32 {
        let n = ((start + step) % 250 + 1) as u8;
        let prefix = format!("10.213.{n}.");
        let link_prefix = format!("10.214.{n}.");
        if !routes.contains(&prefix) && !routes.contains(&link_prefix) {
            run_quietly("ip", &["link", "del", bridge]);
            run("ip", &["link", "add", bridge, "type", "bridge"]);
            run(
                "ip",
                &["addr", "add", &format!("10.213.{n}.1/24"), "dev", bridge],
            );
            run("ip", &["link", "set", bridge, "up"]);
            return n;
        }
    }
    panic!("no free 10.213.x.0/24 subnet on this machine");
}

/// A private key of a given type with its public half.
pub struct ClientKey {
    pub private: PathBuf,
    pub public_line: String,
}

/// One test's network: a bridge, sshd hosts, client keys, a known_hosts file.
pub struct Lab {
    pub tag: String,
    bridge: String,
    pub subnet: u8,
    pub dir: tempfile::TempDir,
    pub ed25519: ClientKey,
    pub ecdsa: ClientKey,
    pub rsa: ClientKey,
    /// A key the hosts do not accept.
    pub stranger: ClientKey,
    authorized_keys: PathBuf,
    pub known_hosts: PathBuf,
    next_host: AtomicU32,
    next_link: AtomicU32,
    /// Root-namespace interfaces to delete.
    interfaces: Mutex<Vec<String>>,
}

impl Lab {
    pub fn new() -> Lab {
        require_root_and_tools();
        ensure_test_user();
        sweep_leftovers_of_dead_test_processes();
        let n = LAB_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("kl{}x{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("kubelab-ssh-test-")
            .tempdir()
            .expect("cannot create a temporary directory");
        // sshd and the test user must read keys and configs in here.
        run("chmod", &["0755", &dir.path().display().to_string()]);
        let ed25519 = client_key(dir.path(), "ed25519");
        let ecdsa = client_key(dir.path(), "ecdsa");
        let rsa = client_key(dir.path(), "rsa");
        let stranger = client_key(dir.path(), "stranger");
        let authorized_keys = dir.path().join("authorized_keys");
        let authorized = format!(
            "{}\n{}\n{}\n",
            ed25519.public_line, ecdsa.public_line, rsa.public_line
        );
        std::fs::write(&authorized_keys, authorized).expect("cannot write authorized_keys");
        let bridge = format!("{tag}br");
        let subnet = create_bridge(&bridge, n);
        Lab {
            tag,
            bridge: bridge.clone(),
            subnet,
            ed25519,
            ecdsa,
            rsa,
            stranger,
            authorized_keys,
            known_hosts: dir.path().join("known_hosts"),
            dir,
            next_host: AtomicU32::new(0),
            next_link: AtomicU32::new(0),
            interfaces: Mutex::new(vec![bridge]),
        }
    }

    /// An address on the lab bridge where nothing answers.
    pub fn unused_address(&self) -> String {
        format!("10.213.{}.250", self.subnet)
    }

    /// Starts a host on the lab bridge.
    pub fn host(&self) -> SshHost {
        self.start_host(true, None)
    }

    /// Starts a host with no link at all yet (reach it through [`Lab::link`]).
    /// Two hosts, each with its key pinned in the lab's known_hosts.
    pub fn pinned_pair(&self) -> (SshHost, SshHost) {
        let (a, b) = (self.host(), self.host());
        a.pin(&a.address);
        b.pin(&b.address);
        (a, b)
    }

    /// A temporary directory anyone may write in (the test user's runs
    /// write their files there).
    pub fn open_workdir(prefix: &str) -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        dir
    }

    pub fn isolated_host(&self) -> SshHost {
        self.start_host(false, None)
    }

    /// Starts a host on the bridge with an explicit `MaxSessions`.
    pub fn host_with_max_sessions(&self, max_sessions: u32) -> SshHost {
        self.start_host(true, Some(max_sessions))
    }

    fn start_host(&self, on_bridge: bool, max_sessions: Option<u32>) -> SshHost {
        let i = self.next_host.fetch_add(1, Ordering::Relaxed);
        let netns = format!("{}h{i}", self.tag);
        run_quietly("ip", &["netns", "del", &netns]);
        run("ip", &["netns", "add", &netns]);
        let mut host = SshHost {
            netns: netns.clone(),
            bridge_port: None,
            address: String::new(),
            dir: self.dir.path().join(&netns),
            host_key_public: String::new(),
            sshd: None,
            log: Arc::new(Mutex::new(String::new())),
            known_hosts: self.known_hosts.clone(),
            client_key: self.ed25519.private.clone(),
        };
        run("ip", &["-n", &netns, "link", "set", "lo", "up"]);
        if on_bridge {
            let outside = format!("{}v{i}", self.tag);
            let inside = format!("{}p{i}", self.tag);
            run_quietly("ip", &["link", "del", &outside]);
            run(
                "ip",
                &[
                    "link", "add", &outside, "type", "veth", "peer", "name", &inside,
                ],
            );
            self.interfaces
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(outside.clone());
            run("ip", &["link", "set", &inside, "netns", &netns]);
            run(
                "ip",
                &["-n", &netns, "link", "set", &inside, "name", "eth0"],
            );
            host.address = format!("10.213.{}.{}", self.subnet, 10 + i);
            run(
                "ip",
                &[
                    "-n",
                    &netns,
                    "addr",
                    "add",
                    &format!("{}/24", host.address),
                    "dev",
                    "eth0",
                ],
            );
            run("ip", &["-n", &netns, "link", "set", "eth0", "up"]);
            run(
                "ip",
                &["link", "set", &outside, "master", &self.bridge, "up"],
            );
            host.bridge_port = Some(outside);
        }
        std::fs::create_dir_all(&host.dir).expect("cannot create the host directory");
        let host_key = host.dir.join("ssh_host_ed25519_key");
        run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "",
                "-f",
                &host_key.display().to_string(),
            ],
        );
        host.host_key_public = std::fs::read_to_string(host_key.with_extension("pub"))
            .expect("cannot read the host public key")
            .trim()
            .to_string();
        let config = host.dir.join("sshd_config");
        let mut text = format!(
            "Port 22\nListenAddress 0.0.0.0\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             AllowTcpForwarding yes\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n",
            host_key.display(),
            self.authorized_keys.display()
        );
        if let Some(max) = max_sessions {
            text.push_str(&format!("MaxSessions {max}\n"));
        }
        std::fs::write(&config, text).expect("cannot write sshd_config");
        host.start_sshd(&config);
        host
    }

    /// A point-to-point link between two hosts' namespaces; returns
    /// (address of `a`, address of `b`). Only `a` and `b` can use it.
    pub fn link(&self, a: &SshHost, b: &SshHost) -> (String, String) {
        let k = self.next_link.fetch_add(1, Ordering::Relaxed);
        assert!(k < 60, "too many links in one lab");
        let a_name = format!("{}l{k}a", self.tag);
        let b_name = format!("{}l{k}b", self.tag);
        run(
            "ip",
            &[
                "link", "add", &a_name, "type", "veth", "peer", "name", &b_name,
            ],
        );
        run("ip", &["link", "set", &a_name, "netns", &a.netns]);
        run("ip", &["link", "set", &b_name, "netns", &b.netns]);
        let a_addr = format!("10.214.{}.{}", self.subnet, 4 * k + 1);
        let b_addr = format!("10.214.{}.{}", self.subnet, 4 * k + 2);
        run(
            "ip",
            &[
                "-n",
                &a.netns,
                "addr",
                "add",
                &format!("{a_addr}/30"),
                "dev",
                &a_name,
            ],
        );
        run(
            "ip",
            &[
                "-n",
                &b.netns,
                "addr",
                "add",
                &format!("{b_addr}/30"),
                "dev",
                &b_name,
            ],
        );
        run("ip", &["-n", &a.netns, "link", "set", &a_name, "up"]);
        run("ip", &["-n", &b.netns, "link", "set", &b_name, "up"]);
        (a_addr, b_addr)
    }

    /// A strict target for `address` logging in as `user` with the ed25519
    /// key; the host's key must be in the known_hosts file (see
    /// [`SshHost::pin`]).
    pub fn target(&self, name: &str, address: &str, user: &str) -> SshTarget {
        let mut target = SshTarget::new(name, address, user, &self.known_hosts);
        target.identity_files = vec![self.ed25519.private.clone()];
        target.host_key_policy = HostKeyPolicy::Strict;
        target.connect_timeout = Duration::from_secs(5);
        target.keepalive = Duration::from_secs(5);
        target
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let interfaces =
            std::mem::take(self.interfaces.get_mut().unwrap_or_else(|p| p.into_inner()));
        for name in interfaces.iter().rev() {
            run_quietly("ip", &["link", "del", name]);
        }
    }
}

fn client_key(dir: &Path, kind: &str) -> ClientKey {
    let private = dir.join(format!("id_{kind}"));
    let key_type = match kind {
        "ecdsa" => "ecdsa",
        "rsa" => "rsa",
        _ => "ed25519",
    };
    run(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            key_type,
            "-N",
            "",
            "-C",
            "",
            "-f",
            &private.display().to_string(),
        ],
    );
    let public_line = std::fs::read_to_string(private.with_extension("pub"))
        .expect("cannot read a client public key")
        .trim()
        .to_string();
    ClientKey {
        private,
        public_line,
    }
}

/// An sshd in its own network namespace.
pub struct SshHost {
    pub netns: String,
    /// The root-namespace end of the host's bridge link.
    bridge_port: Option<String>,
    /// Address on the lab bridge (empty for isolated hosts).
    pub address: String,
    dir: PathBuf,
    /// `ssh-ed25519 AAAA…` of the host key.
    pub host_key_public: String,
    sshd: Option<Child>,
    log: Arc<Mutex<String>>,
    known_hosts: PathBuf,
    client_key: PathBuf,
}

impl SshHost {
    fn start_sshd(&mut self, config: &Path) {
        // `ip netns exec` gives sshd its own mount namespace: an empty
        // tmpfs over /root there keeps the machine's root shell startup
        // files (which may do slow or locking things on every login) out of
        // the test hosts. The mount is not visible outside.
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "sh",
                "-c",
                "mount -t tmpfs -o mode=0700 kubelab-test-root /root && exec \"$0\" \"$@\"",
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
            ])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start sshd");
        let stderr = child.stderr.take().expect("sshd stderr is piped");
        self.sshd = Some(child);
        let (ready_tx, ready_rx) = mpsc::channel();
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("Server listening on 0.0.0.0 port 22")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(());
                }
                if let Ok(mut log) = log.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        // sshd says it listens once the socket is bound and listening.
        if ready_rx.recv_timeout(Duration::from_secs(15)).is_err() {
            panic!(
                "sshd in {} did not start listening within 15 s; its log:\n{}",
                self.netns,
                self.log()
            );
        }
    }

    /// What sshd logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// How many sessions (`exec` commands, shells, subsystems such as
    /// SFTP) sshd started so far: each is a fork on the host, and each but
    /// SFTP a shell. sshd logs each (`LogLevel VERBOSE`); the log is read
    /// by a thread, so this waits until the count holds still for 200 ms.
    pub fn sessions_started(&self) -> usize {
        let count = || self.log().matches("Starting session: ").count();
        let mut last = count();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = count();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    /// Records this host's key for `address` (port 22) in the lab's
    /// known_hosts, through the transport's own pinning API.
    pub fn pin(&self, address: &str) {
        let key = known_hosts::parse_public_key(&self.host_key_public).expect("host key parses");
        known_hosts::pin_host_key(&self.known_hosts, address, 22, &key).expect("pin host key");
    }

    /// The SHA256 fingerprint as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        let out = run(
            "ssh-keygen",
            &[
                "-l",
                "-E",
                "sha256",
                "-f",
                &self
                    .dir
                    .join("ssh_host_ed25519_key.pub")
                    .display()
                    .to_string(),
            ],
        );
        out.split_whitespace()
            .nth(1)
            .expect("ssh-keygen -l prints a fingerprint")
            .to_string()
    }

    /// Process ids in this host's namespace.
    pub fn pids(&self) -> Vec<i32> {
        run("ip", &["netns", "pids", &self.netns])
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    fn listener_pid(&self) -> Option<i32> {
        self.sshd.as_ref().map(|c| c.id() as i32)
    }

    /// Kills every sshd and command of this host (SIGKILL).
    pub fn kill_everything(&mut self) {
        for pid in self.pids() {
            run_quietly("kill", &["-KILL", &pid.to_string()]);
        }
        if let Some(mut child) = self.sshd.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Takes the host's bridge link down: from now on its packets vanish
    /// silently (no reset, no ICMP), like a host that froze.
    pub fn cut_network(&self) {
        let port = self
            .bridge_port
            .as_ref()
            .expect("only hosts on the lab bridge can be cut off");
        run("ip", &["link", "set", port, "down"]);
    }

    /// Command lines of the processes in this host's namespace.
    pub fn command_lines(&self) -> Vec<String> {
        self.pids()
            .into_iter()
            .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
            .map(|raw| {
                String::from_utf8_lossy(&raw)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .collect()
    }

    /// Kills the per-connection sshd processes and commands, keeping the
    /// listener: existing connections drop, new ones are accepted.
    pub fn kill_connections(&self) {
        let listener = self.listener_pid();
        for pid in self.pids() {
            if Some(pid) != listener {
                run_quietly("kill", &["-KILL", &pid.to_string()]);
            }
        }
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        self.kill_everything();
        run_quietly("ip", &["netns", "del", &self.netns]);
    }
}

/// Waits (bounded) until `path` exists, checking every 20 ms.
pub async fn wait_for_file(path: &Path, limit: Duration) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < limit,
            "{} did not appear within {limit:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn creator_pid_reads_only_this_modules_names() {
    assert_eq!(creator_pid("kl725x0h1"), Some(725));
    assert_eq!(creator_pid("kl725x12br"), Some(725));
    assert_eq!(creator_pid("kl725x3v2"), Some(725));
    assert_eq!(creator_pid("kl725x3l4b"), Some(725));
    assert_eq!(creator_pid("kl725x3"), None);
    assert_eq!(creator_pid("kl725br"), None);
    assert_eq!(creator_pid("klx0h1"), None);
    assert_eq!(creator_pid("kubelab0"), None);
    assert_eq!(creator_pid("kl725x0h"), None);
}
