//! Reaching a lab's virthost: the transport for commands (this machine, or
//! SSH honouring the lab's identity files, host-key policy and jump hosts),
//! the libvirt URI, the lab lock, the VMs behind the virthost.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::lab::Lab;
use crate::lab::model::{
    Connection as VirthostConnection, HostKeyPolicy as LabHostKeyPolicy, SshHost,
};
use crate::transport::{
    Command, Exec, HostKeyPolicy, LocalTransport, Output, SshTarget, SshTransport, Transport,
    TransportError, quote,
};

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
        match &lab.virthost.connection {
            VirthostConnection::Local => Ok(VirthostAccess::Local(LocalTransport::new("virthost"))),
            VirthostConnection::Ssh(h) => Ok(VirthostAccess::Remote(
                connect_chain(h, &crate::state::virthost_alias(lab)).await?,
            )),
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

    /// SSH to a VM behind the virthost (direct for a local virthost).
    pub async fn vm(&self, target: SshTarget) -> Result<SshTransport, TransportError> {
        match self {
            VirthostAccess::Local(_) => SshTransport::connect(target).await,
            VirthostAccess::Remote(v) => SshTransport::connect_via(v.clone(), target).await,
        }
    }
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

/// The libvirt URI of the lab's virthost: `qemu:///system` locally;
/// `qemu+libssh2://user@host:port/system?keyfile=…&known_hosts=…` for a
/// remote one (needs `virt-ssh-helper` from libvirt-daemon there). libvirt
/// cannot go through jump hosts: such a virthost is refused here.
pub fn libvirt_uri(lab: &Lab) -> Result<String, String> {
    match &lab.virthost.connection {
        VirthostConnection::Local => Ok("qemu:///system".into()),
        VirthostConnection::Ssh(h) => {
            if h.jump.is_some() {
                return Err(format!(
                    "virthost {} is behind a jump host; libvirt's SSH transport cannot use jump hosts",
                    h.address
                ));
            }
            let mut q = vec![
                format!(
                    "known_hosts={}",
                    encode(&h.known_hosts.display().to_string())
                ),
                format!(
                    "known_hosts_verify={}",
                    match h.host_key_policy {
                        LabHostKeyPolicy::Strict => "normal",
                        LabHostKeyPolicy::AcceptNew => "auto",
                    }
                ),
            ];
            if let Some(k) = h.identity_files.first() {
                q.insert(0, format!("keyfile={}", encode(&k.display().to_string())));
                q.push(format!(
                    "sshauth={}",
                    if h.agent { "agent,privkey" } else { "privkey" }
                ));
            } else if h.agent {
                q.push("sshauth=agent".into());
            }
            let host = if h.address.contains(':') {
                format!("[{}]", h.address)
            } else {
                h.address.clone()
            };
            Ok(format!(
                "qemu+libssh2://{}@{host}:{}/system?{}",
                encode(&h.user),
                h.port,
                q.join("&")
            ))
        }
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

    #[test]
    fn remote_libvirt_uri_carries_key_and_known_hosts() {
        let text = "name: r\nvirthost: {address: 192.0.2.7, port: 2222, user: ops, identity_file: /k/id key, known_hosts: /k/kh}\nimage: {build: debian-12}\nnetworks:\n  - {name: lan, ipv4: 10.9.0.0/24}\nvms:\n  - {name: a}\n";
        let (lab, _) = crate::lab::load_str(Path::new("r.yaml"), text, &Default::default())
            .unwrap_or_else(|d| panic!("{}", d.render(false)));
        assert_eq!(
            libvirt_uri(&lab).unwrap(),
            "qemu+libssh2://ops@192.0.2.7:2222/system?keyfile=/k/id%20key&known_hosts=/k/kh&known_hosts_verify=normal&sshauth=privkey"
        );
    }
}
