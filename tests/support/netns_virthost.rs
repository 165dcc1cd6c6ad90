//! A "remote" virthost on this machine for tests: its own network namespace
//! (reached over a veth link, so the lab's VM subnets exist only in there
//! and are reachable only THROUGH the virthost), its own mount namespace
//! with private `/run`, `/etc/libvirt`, `/var/lib/libvirt`,
//! `/var/cache/libvirt`, `/var/log/libvirt` and `/root` (so its libvirtd,
//! started by kubelab's `prepare.sh` over SSH, is a second daemon that sees
//! none of this machine's domains and networks, and root's shell startup
//! files do not matter), and an OpenSSH `sshd` as the way in.
//!
//! Needs root. Everything is named `klv<pid>…` and removed on drop (every
//! process in the namespace is killed); leftovers of test processes that
//! died are swept on the next start.
#![allow(dead_code)]

#[path = "command.rs"]
mod command;

use command::{run, run_quietly};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

/// The letters after `kl` in this module's names, one per virthost of a
/// test process.
const TAGS: [char; 4] = ['v', 'w', 'x', 'y'];

/// The pid in a name made by this module (`kl` + a tag + `<pid>`, + one
/// letter or none).
fn creator_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("kl").and_then(|r| r.strip_prefix(TAGS))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let suffix = &rest[digits.len()..];
    if digits.is_empty() || !matches!(suffix, "" | "a" | "b" | "j" | "k" | "l" | "m") {
        return None;
    }
    digits.parse().ok()
}

fn netns_pids(netns: &str) -> Vec<String> {
    Command::new("ip")
        .args(["netns", "pids", netns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Kill every process of a namespace and wait (bounded) until they are gone.
fn empty_netns(netns: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pids = netns_pids(netns);
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        for p in &pids {
            run_quietly("kill", &["-KILL", p]);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn sweep_leftovers() {
    let dead =
        |name: &str| creator_pid(name).is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists());
    for line in run("ip", &["netns", "list"]).lines() {
        if let Some(name) = line.split_whitespace().next()
            && dead(name)
        {
            empty_netns(name);
            run_quietly("ip", &["netns", "del", name]);
        }
    }
    for line in run("ip", &["-o", "link", "show"]).lines() {
        if let Some(name) = line.split(": ").nth(1) {
            let name = name.split('@').next().unwrap_or(name);
            if dead(name) {
                run_quietly("ip", &["link", "del", name]);
            }
        }
    }
}

/// The mount namespace of the virthost, made by `ip netns exec` (which
/// already unshares mounts, as slaves of this machine's): private state for
/// its libvirtd, the configuration files of this machine's libvirt copied
/// (not its domain, network and pool definitions), then sshd.
const START: &str = r#"set -eu
conf=$(mktemp -d)
cp -p /etc/libvirt/*.conf "$conf"/
mount -t tmpfs -o mode=0700 klv-root /root
mount -t tmpfs -o mode=0755 klv-run /run
mkdir -p /run/sshd /run/lock
mount -t tmpfs -o mode=0755 klv-etc /etc/libvirt
cp -p "$conf"/*.conf /etc/libvirt/
rm -rf "$conf"
for d in /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
  mount -t tmpfs -o mode=0755 klv-state "$d"
done
# a virthost that did not forward before kubelab (libvirt turns it on)
sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
exec /usr/sbin/sshd -D -e -f "$1"
"#;

/// A virthost in its own namespaces, reached over SSH.
pub struct NetnsVirthost {
    pub netns: String,
    /// The root-namespace end of the link.
    outside: String,
    /// The virthost's address (sshd listens there, port 22).
    pub address: String,
    /// This machine's address on the link.
    pub gateway: String,
    pub dir: tempfile::TempDir,
    /// Login key for root.
    pub key: PathBuf,
    /// known_hosts with the virthost's key pinned (by kubelab's own API).
    pub known_hosts: PathBuf,
    sshd: Option<Child>,
    /// The number in the namespace's subnets (10.216.N.0/30, 10.217.N.0/24).
    pub n: u32,
    /// The LAN namespace of [`Self::add_lan`].
    lan: Option<String>,
    /// The LAN namespace of [`Self::join`].
    joined: Option<String>,
    /// `klv<pid>` or `klw<pid>`: what this virthost's names start with.
    prefix: String,
}

/// A LAN behind the virthost: its router in a namespace of its own.
pub struct Lan {
    pub netns: String,
    /// The LAN: 10.217.N.0/24.
    pub subnet: String,
    /// The router's address (10.217.N.1).
    pub router: String,
    /// The virthost's address on it (10.217.N.2, on `lan0`).
    pub virthost: String,
    /// A subnet behind the router that the virthost routes to (10.218.N.0/24).
    pub routed: String,
}

impl NetnsVirthost {
    /// A virthost whose names start with `kl<tag><pid>`: `v` for the
    /// process's first, then `w`, `x`, `y` (tests run in parallel threads).
    pub fn start() -> NetnsVirthost {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        static STARTING: Mutex<()> = Mutex::new(());
        // one at a time: each picks a free subnet, then takes it
        let _one = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        let k = STARTED.fetch_add(1, Ordering::SeqCst);
        let tag = *TAGS
            .get(k)
            .expect("at most four netns virthosts per test process");
        if k == 0 {
            sweep_leftovers();
        }
        let pid = std::process::id();
        let prefix = format!("kl{tag}{pid}");
        let netns = prefix.clone();
        let outside = format!("{prefix}a");
        let routes = run("ip", &["-4", "route", "show", "table", "all"]);
        let n = (0..250u32)
            .map(|i| (pid + i) % 250 + 1)
            .find(|n| !routes.contains(&format!("10.216.{n}.")))
            .expect("no free 10.216.x.0/30");
        let gateway = format!("10.216.{n}.1");
        let address = format!("10.216.{n}.2");
        run("ip", &["netns", "add", &netns]);
        run(
            "ip",
            &[
                "link",
                "add",
                &outside,
                "type",
                "veth",
                "peer",
                "name",
                &format!("{prefix}m"),
            ],
        );
        run(
            "ip",
            &["link", "set", &format!("{prefix}m"), "netns", &netns],
        );
        run(
            "ip",
            &[
                "-n",
                &netns,
                "link",
                "set",
                &format!("{prefix}m"),
                "name",
                "eth0",
            ],
        );
        run(
            "ip",
            &["addr", "add", &format!("{gateway}/30"), "dev", &outside],
        );
        run("ip", &["link", "set", &outside, "up"]);
        run(
            "ip",
            &[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{address}/30"),
                "dev",
                "eth0",
            ],
        );
        run("ip", &["-n", &netns, "link", "set", "eth0", "up"]);
        run("ip", &["-n", &netns, "link", "set", "lo", "up"]);
        run(
            "ip",
            &["-n", &netns, "route", "add", "default", "via", &gateway],
        );

        let dir = tempfile::Builder::new()
            .prefix("kubelab-virthost-")
            .tempdir()
            .expect("temporary directory");
        run("chmod", &["0755", &dir.path().display().to_string()]);
        let key = dir.path().join("id_ed25519");
        let host_key = dir.path().join("ssh_host_ed25519_key");
        for k in [&key, &host_key] {
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
                    k.to_str().unwrap(),
                ],
            );
        }
        let authorized = dir.path().join("authorized_keys");
        std::fs::copy(key.with_extension("pub"), &authorized).unwrap();
        let config = dir.path().join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port 22\nListenAddress {address}\nHostKey {}\nAuthorizedKeysFile {}\n\
                 PidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
                 AllowTcpForwarding yes\nAllowStreamLocalForwarding yes\n\
                 Subsystem sftp internal-sftp\nLogLevel INFO\n",
                host_key.display(),
                authorized.display()
            ),
        )
        .unwrap();
        let start = dir.path().join("start.sh");
        std::fs::write(&start, START).unwrap();
        let known_hosts = dir.path().join("known_hosts");
        let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let parsed = kubelab::transport::ssh::known_hosts::parse_public_key(public.trim()).unwrap();
        kubelab::transport::ssh::known_hosts::pin_host_key(&known_hosts, &address, 22, &parsed)
            .unwrap();

        let mut child = Command::new("ip")
            .args(["netns", "exec", &netns, "sh"])
            .arg(&start)
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sshd");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[virthost sshd] {line}");
                if line.contains("Server listening on")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        let mut v = NetnsVirthost {
            netns,
            outside,
            address,
            gateway,
            dir,
            key,
            known_hosts,
            sshd: None,
            n,
            lan: None,
            joined: None,
            prefix,
        };
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.kill();
            panic!("the virthost's sshd did not start listening within 20 s");
        }
        v.sshd = Some(child);
        v
    }

    /// A NIC `lan0` on the virthost with an address (10.217.N.2/24) and a
    /// route (10.218.N.0/24 via 10.217.N.1), wired to a router in a
    /// namespace of its own: what a bridged network is made from.
    pub fn add_lan(&mut self) -> Lan {
        let netns = format!("{}l", self.prefix);
        let n = self.n;
        run("ip", &["netns", "add", &netns]);
        self.lan = Some(netns.clone());
        let inside = format!("{}b", self.prefix);
        run(
            "ip",
            &[
                "link",
                "add",
                "lan0",
                "netns",
                &self.netns,
                "type",
                "veth",
                "peer",
                "name",
                &inside,
                "netns",
                &netns,
            ],
        );
        let router = format!("10.217.{n}.1");
        let virthost = format!("10.217.{n}.2");
        run(
            "ip",
            &[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{router}/24"),
                "dev",
                &inside,
            ],
        );
        run("ip", &["-n", &netns, "link", "set", &inside, "up"]);
        run("ip", &["-n", &netns, "link", "set", "lo", "up"]);
        run(
            "ip",
            &[
                "-n",
                &self.netns,
                "addr",
                "add",
                &format!("{virthost}/24"),
                "dev",
                "lan0",
            ],
        );
        run("ip", &["-n", &self.netns, "link", "set", "lan0", "up"]);
        let routed = format!("10.218.{n}.0/24");
        run(
            "ip",
            &["-n", &self.netns, "route", "add", &routed, "via", &router],
        );
        Lan {
            netns,
            subnet: format!("10.217.{n}.0/24"),
            router,
            virthost,
            routed,
        }
    }

    /// A LAN shared with `other`: a namespace with a bridge, and a NIC
    /// `lan1` on each virthost plugged into it (this one 10.219.N.1/24, the
    /// other 10.219.N.2/24). Returns the two addresses.
    pub fn join(&mut self, other: &NetnsVirthost) -> (String, String) {
        let netns = format!("{}j", self.prefix);
        let n = self.n;
        run("ip", &["netns", "add", &netns]);
        self.joined = Some(netns.clone());
        run(
            "ip",
            &["-n", &netns, "link", "add", "br0", "type", "bridge"],
        );
        run("ip", &["-n", &netns, "link", "set", "br0", "up"]);
        let mut addresses = Vec::new();
        for (i, v) in [&self.netns, &other.netns].into_iter().enumerate() {
            let port = format!("p{i}");
            run(
                "ip",
                &[
                    "link", "add", "lan1", "netns", v, "type", "veth", "peer", "name", &port,
                    "netns", &netns,
                ],
            );
            run("ip", &["-n", &netns, "link", "set", &port, "master", "br0"]);
            run("ip", &["-n", &netns, "link", "set", &port, "up"]);
            let address = format!("10.219.{n}.{}", i + 1);
            run(
                "ip",
                &[
                    "-n",
                    v,
                    "addr",
                    "add",
                    &format!("{address}/24"),
                    "dev",
                    "lan1",
                ],
            );
            run("ip", &["-n", v, "link", "set", "lan1", "up"]);
            addresses.push(address);
        }
        (addresses[0].clone(), addresses[1].clone())
    }

    /// An entry of a lab file's `virthosts:` for this virthost.
    pub fn lab_virthosts_entry(&self, name: &str, tunnel: &str, storage_dir: &Path) -> String {
        format!(
            "  - name: {name}\n    address: {}\n    tunnel_address: {tunnel}\n    user: root\n    identity_file: {}\n    known_hosts: {}\n    host_key_policy: strict\n    domain_type: auto\n    tcg_cache: 128MiB\n    storage_dir: {}\n",
            self.address,
            self.key.display(),
            self.known_hosts.display(),
            storage_dir.display()
        )
    }

    /// The `virthost:` block of a lab file for this virthost.
    pub fn lab_virthost(&self, storage_dir: &Path) -> String {
        let mut block = "virthost:\n".to_string();
        for line in self.inventory(storage_dir).lines() {
            block.push_str(&format!("  {line}\n"));
        }
        block
    }

    /// An inventory file's text for this virthost (for `--virthost`).
    pub fn inventory(&self, storage_dir: &Path) -> String {
        format!(
            "address: {}\nuser: root\nidentity_file: {}\nknown_hosts: {}\nhost_key_policy: strict\ndomain_type: auto\ntcg_cache: 128MiB\nstorage_dir: {}\n",
            self.address,
            self.key.display(),
            self.known_hosts.display(),
            storage_dir.display()
        )
    }

    /// Run a shell command on the virthost (OpenSSH, the pinned key).
    pub fn ssh(&self, script: &str) -> Output {
        Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .arg("-i")
            .arg(&self.key)
            .arg(format!("root@{}", self.address))
            .arg(script)
            .output()
            .expect("ssh")
    }

    /// Like [`Self::ssh`]; the test fails if the command does; its stdout.
    pub fn ssh_ok(&self, script: &str) -> String {
        let out = self.ssh(script);
        assert!(
            out.status.success(),
            "on the virthost: {script}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Lan {
    /// Whether a TCP connection from the LAN's router to `address:port`
    /// succeeds within 5 s.
    pub fn reaches(&self, address: &str, port: u16) -> bool {
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "timeout", "5", "bash", "-c"])
            .arg(format!("exec 3<>/dev/tcp/{address}/{port}"))
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for NetnsVirthost {
    fn drop(&mut self) {
        for lan in [self.lan.take(), self.joined.take()].into_iter().flatten() {
            empty_netns(&lan);
            run_quietly("ip", &["netns", "del", &lan]);
        }
        empty_netns(&self.netns);
        if let Some(mut c) = self.sshd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        run_quietly("ip", &["netns", "del", &self.netns]);
        run_quietly("ip", &["link", "del", &self.outside]);
    }
}

#[test]
fn creator_pid_reads_only_this_modules_names() {
    assert_eq!(creator_pid("klv725"), Some(725));
    assert_eq!(creator_pid("klw725j"), Some(725));
    assert_eq!(creator_pid("klz725"), None);
    assert_eq!(creator_pid("klv725a"), Some(725));
    assert_eq!(creator_pid("klv725x"), None);
    assert_eq!(creator_pid("klvx"), None);
    assert_eq!(creator_pid("kl725x0h1"), None);
}
