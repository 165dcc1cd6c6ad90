//! Reaching a lab's virthost: the transport for commands (this machine, or
//! SSH honouring the lab's identity files, host-key policy and jump hosts),
//! libvirt on it (through that same SSH connection when it is remote), the
//! lab lock, the VMs behind the virthost.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::lab::model::{
    Connection as VirthostConnection, HostKeyPolicy as LabHostKeyPolicy, SshHost, Virthost,
};
use crate::transport::{
    Command, Exec, HostKeyPolicy, LocalTransport, Output, SshTarget, SshTransport, Transport,
    TransportError, quote,
};
use crate::virthost::libvirt::Connection;
use crate::virthost::scripts::script;

/// The way to the virthost.
pub enum VirthostAccess {
    Local(LocalTransport),
    Remote(Arc<SshTransport>),
}

fn target_of(host: &SshHost, name: &str) -> SshTarget {
    let mut t = SshTarget::new(name, &host.address, &host.user, &host.known_hosts);
    t.port = host.port;
    t.identity_files = host.identity_files.clone();
    t.use_agent = host.agent;
    t.host_key_policy = match host.host_key_policy {
        LabHostKeyPolicy::Strict => HostKeyPolicy::Strict,
        LabHostKeyPolicy::AcceptNew => HostKeyPolicy::AcceptNew,
    };
    t
}

async fn connect_chain(host: &SshHost, name: &str) -> Result<Arc<SshTransport>, TransportError> {
    let target = target_of(host, name);
    match &host.jump {
        None => Ok(Arc::new(SshTransport::connect(target).await?)),
        Some(jump) => {
            let j = Box::pin(connect_chain(jump, &format!("{name}-jump"))).await?;
            Ok(Arc::new(SshTransport::connect_via(j, target).await?))
        }
    }
}

impl VirthostAccess {
    /// Connect to the lab's virthost.
    pub async fn connect(lab: &Lab) -> Result<Self, TransportError> {
        Self::connect_to(&lab.virthost, &crate::state::virthost_alias(lab)).await
    }

    /// Connect to a virthost; `name` is how the connection shows in
    /// messages.
    pub async fn connect_to(virthost: &Virthost, name: &str) -> Result<Self, TransportError> {
        match &virthost.connection {
            VirthostConnection::Local => Ok(VirthostAccess::Local(LocalTransport::new("virthost"))),
            VirthostConnection::Ssh(h) => Ok(VirthostAccess::Remote(connect_chain(h, name).await?)),
        }
    }

    /// Close the connection (a remote virthost's SSH session).
    pub async fn close(self) {
        if let VirthostAccess::Remote(t) = &self {
            t.disconnect().await;
        }
    }

    pub fn transport(&self) -> &dyn Transport {
        match self {
            VirthostAccess::Local(t) => t,
            VirthostAccess::Remote(t) => t.as_ref(),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, VirthostAccess::Local(_))
    }

    /// Run a command as root on the virthost.
    pub async fn run(&self, command: Command, timeout: Duration) -> Result<Output, TransportError> {
        let t = self.transport();
        t.exec(
            Exec::new(command)
                .become_root(!t.is_root())
                .timeout(timeout),
        )
        .await
    }

    /// Run one of kubelab's virthost scripts (`templates/virthost/`, its
    /// `KUBELAB_*` variables exported first) as root: what it printed, or
    /// an error naming it (`what`) with the end of its output.
    pub async fn run_script(
        &self,
        what: &str,
        template: &str,
        vars: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<String, String> {
        let out = self
            .run(Command::script(script(template, vars)), timeout)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let stdout = out.stdout_str();
        if !out.status.success() {
            return Err(format!(
                "{what} failed ({}):\n{}{}",
                out.status,
                tail(&stdout, 20),
                tail(&out.stderr_str(), 30)
            ));
        }
        Ok(stdout)
    }

    /// SSH to a VM behind the virthost (direct for a local virthost).
    pub async fn vm(&self, target: SshTarget) -> Result<SshTransport, TransportError> {
        match self {
            VirthostAccess::Local(_) => SshTransport::connect(target).await,
            VirthostAccess::Remote(v) => SshTransport::connect_via(v.clone(), target).await,
        }
    }
}

/// libvirt's sockets on a virthost, in the order they are tried: the
/// monolithic daemon's (Debian, Ubuntu; virtproxyd's on Fedora), then the
/// modular QEMU daemon's.
pub const LIBVIRT_SOCKETS: [&str; 2] = ["/run/libvirt/libvirt-sock", "/run/libvirt/virtqemud-sock"];

/// A local Unix socket whose every connection is forwarded, over kubelab's
/// own SSH connection to the virthost (so with the lab's keys, host-key
/// policy and jump hosts), to libvirt's socket there: a
/// `direct-streamlocal` channel per connection. libvirt on the workstation
/// opens `qemu+unix:///system?socket=<local socket>`; nothing needs to be
/// installed on the virthost besides libvirt and sshd. The socket lives in
/// a fresh directory of mode 0700 (only this user can connect) and both go
/// away on drop.
pub struct LibvirtTunnel {
    dir: PathBuf,
    socket: PathBuf,
    accept: tokio::task::JoinHandle<()>,
}

impl LibvirtTunnel {
    /// Find libvirt's socket on the virthost and listen locally.
    pub async fn open(ssh: Arc<SshTransport>) -> Result<LibvirtTunnel, String> {
        let probe = LIBVIRT_SOCKETS
            .iter()
            .map(|s| format!("if [ -S {s} ]; then echo {s}; exit 0; fi"))
            .collect::<Vec<_>>()
            .join("; ");
        let out = ssh
            .exec(
                Exec::new(Command::script(format!("{probe}; exit 1")))
                    .timeout(Duration::from_secs(30)),
            )
            .await
            .map_err(|e| e.to_string())?;
        let remote = out.stdout_str().trim().to_string();
        if !out.status.success() || remote.is_empty() {
            return Err(format!(
                "no libvirt socket on the virthost ({}): is libvirtd running there?",
                LIBVIRT_SOCKETS.join(", ")
            ));
        }
        let dir = private_dir()
            .map_err(|e| format!("cannot create a directory for the libvirt tunnel: {e}"))?;
        let socket = dir.join("libvirt-sock");
        let listener = match tokio::net::UnixListener::bind(&socket) {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("cannot listen on {}: {e}", socket.display()));
            }
        };
        let accept = tokio::spawn(async move {
            while let Ok((mut local, _)) = listener.accept().await {
                let ssh = ssh.clone();
                let remote = remote.clone();
                tokio::spawn(async move {
                    match ssh.open_unix_socket(&remote).await {
                        Ok(mut channel) => {
                            let _ = tokio::io::copy_bidirectional(&mut local, &mut channel).await;
                        }
                        // libvirt sees the connection close and reports it
                        Err(e) => eprintln!("warning: libvirt tunnel: {e}"),
                    }
                });
            }
        });
        Ok(LibvirtTunnel {
            dir,
            socket,
            accept,
        })
    }

    /// The libvirt URI that goes through this tunnel.
    pub fn uri(&self) -> String {
        format!(
            "qemu+unix:///system?socket={}",
            encode(&self.socket.display().to_string())
        )
    }
}

impl Drop for LibvirtTunnel {
    fn drop(&mut self) {
        self.accept.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new directory of mode 0700 under `$XDG_RUNTIME_DIR` (else the temp dir).
pub fn private_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let mut last = None;
    for _ in 0..8 {
        let mut b = [0u8; 6];
        let _ = getrandom::fill(&mut b);
        let name: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let dir = base.join(format!("kubelab-{}-{name}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free name")))
}

/// Percent-encode a URI query value.
fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// libvirt on the lab's virthost: the connection, and for a remote virthost
/// the tunnel it goes through (closed after the connection).
pub struct Libvirt {
    conn: Connection,
    _tunnel: Option<LibvirtTunnel>,
}

impl std::ops::Deref for Libvirt {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Libvirt {
    /// `qemu:///system` on this machine; on a remote virthost, through a
    /// [`LibvirtTunnel`] over the access's SSH connection.
    pub async fn open(access: &VirthostAccess) -> Result<Libvirt, String> {
        let (uri, tunnel) = match access {
            VirthostAccess::Local(_) => ("qemu:///system".to_string(), None),
            VirthostAccess::Remote(ssh) => {
                let t = LibvirtTunnel::open(ssh.clone()).await?;
                (t.uri(), Some(t))
            }
        };
        let conn =
            blocking(|| Connection::open(&uri)).map_err(|e| format!("libvirt at {uri}: {e}"))?;
        Ok(Libvirt {
            conn,
            _tunnel: tunnel,
        })
    }

    /// The blocking connection.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

/// Run blocking libvirt work from async code: on a multi-threaded runtime
/// the worker hands its other tasks (the SSH connection, the libvirt
/// tunnel) to the other workers first, so they go on while this blocks.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The lab lock, held until dropped. Locally a real `flock` on
/// `<storage_dir>/<lab>.lock`; on a remote virthost a lock directory
/// `<storage_dir>/<lab>.lock.d` made with `mkdir` (atomic) and removed on
/// release (a run that was killed leaves it: the error says how to remove it).
pub enum LabLock {
    Local(std::fs::File),
    Remote { dir: String, released: bool },
}

impl LabLock {
    pub async fn acquire(access: &VirthostAccess, path: &Path) -> Result<LabLock, String> {
        match access {
            VirthostAccess::Local(_) => {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(path)
                    .map_err(|e| format!("cannot open lock {}: {e}", path.display()))?;
                match f.try_lock() {
                    Ok(()) => Ok(LabLock::Local(f)),
                    Err(std::fs::TryLockError::WouldBlock) => Err(format!(
                        "another kubelab run holds the lab lock {} (up/down of this lab); try again when it has finished",
                        path.display()
                    )),
                    Err(std::fs::TryLockError::Error(e)) => {
                        Err(format!("cannot lock {}: {e}", path.display()))
                    }
                }
            }
            VirthostAccess::Remote(_) => {
                let dir = format!("{}.d", path.display());
                let parent = path
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "/".into());
                let script = format!(
                    "mkdir -p {} && mkdir {} 2>/dev/null",
                    quote(&parent),
                    quote(&dir)
                );
                let out = access
                    .run(Command::script(script), Duration::from_secs(30))
                    .await
                    .map_err(|e| e.to_string())?;
                if out.status.success() {
                    Ok(LabLock::Remote {
                        dir,
                        released: false,
                    })
                } else {
                    Err(format!(
                        "another kubelab run holds the lab lock {dir} on the virthost; if no run is active (a killed run), remove it: rmdir {dir}"
                    ))
                }
            }
        }
    }

    pub async fn release(mut self, access: &VirthostAccess) {
        if let LabLock::Remote { dir, released } = &mut self {
            let _ = access
                .run(
                    Command::argv(["rmdir", dir.as_str()]),
                    Duration::from_secs(30),
                )
                .await;
            *released = true;
        }
    }
}

/// Poll `f` until it returns `Some`, or the deadline passes.
pub async fn poll_until<T, F, Fut>(deadline: Instant, every: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() + every >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}

/// `<state>/id_ed25519`: the lab's VM login key.
pub fn login_key_path(state: &Path) -> PathBuf {
    state.join("id_ed25519")
}

/// The last `lines` lines of a script's output, each ending in a newline.
pub(super) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    all[from..].iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_lab_lock_refuses_a_second_run_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/lab.lock");
        let access = VirthostAccess::Local(LocalTransport::new("virthost"));
        let first = LabLock::acquire(&access, &path).await.unwrap();
        let second = LabLock::acquire(&access, &path).await;
        assert!(
            second
                .as_ref()
                .is_err_and(|e| e.contains("holds the lab lock")),
            "second lock taken while the first is held"
        );
        // another lab's lock is independent
        let other = LabLock::acquire(&access, &dir.path().join("sub/other.lock")).await;
        assert!(other.is_ok());
        first.release(&access).await;
        assert!(LabLock::acquire(&access, &path).await.is_ok());
    }
}
