//! SSH transport on russh: one connection per host for the whole run, every
//! command a channel on it, files through SFTP on a channel of the same
//! connection, jump hosts through `direct-tcpip` channels. Nothing here
//! spawns OpenSSH.

mod files;
pub mod known_hosts;
pub mod shell;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelId, ChannelMsg, Sig};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, oneshot};

use super::{Command, Exec, ExitStatus, Output, Transport, TransportError, Tunnel, Upload, quote};
use known_hosts::HostKeyVerdict;

/// What to do with a server key that the known_hosts file does not hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// Refuse it (`HostKeyUnknown`). A changed key is always refused.
    #[default]
    Strict,
    /// Append it to the known_hosts file and go on; a changed key is still
    /// refused.
    AcceptNew,
}

/// Everything needed to reach one host over SSH.
#[derive(Clone, Debug)]
pub struct SshTarget {
    /// The host's name in reports (inventory name).
    pub host_name: String,
    /// Address or DNS name to connect to; for a host reached through a jump
    /// host, as seen from the jump host. Also the name looked up in
    /// known_hosts.
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Private keys tried in order (OpenSSH format: ed25519, ecdsa, rsa).
    pub identity_files: Vec<PathBuf>,
    /// Also try the keys of an ssh-agent.
    pub use_agent: bool,
    /// The agent's socket; `None` means `SSH_AUTH_SOCK`.
    pub agent_socket: Option<PathBuf>,
    pub host_key_policy: HostKeyPolicy,
    pub known_hosts: PathBuf,
    /// Limit for one connection attempt (TCP connect, handshake and
    /// authentication together).
    pub connect_timeout: Duration,
    /// Connection attempts before giving up as `Unreachable`; waits between
    /// attempts double from 500 ms.
    pub connect_attempts: u32,
    /// Interval of SSH keepalives; after 3 unanswered ones the connection is
    /// considered dead.
    pub keepalive: Duration,
    /// Session channels open at once on the connection (SFTP included).
    /// OpenSSH refuses the 11th with its default `MaxSessions 10`.
    pub max_channels: usize,
    /// How long a refused channel open is retried (sshd frees a closed
    /// session a moment after the close).
    pub channel_open_patience: Duration,
}

impl SshTarget {
    /// A target with the defaults: port 22, strict host keys, no agent,
    /// 10 s connect timeout, 3 attempts, 15 s keepalive, 8 channels, 5 s of
    /// retrying refused channel opens.
    pub fn new(
        host_name: impl Into<String>,
        address: impl Into<String>,
        user: impl Into<String>,
        known_hosts: impl Into<PathBuf>,
    ) -> Self {
        SshTarget {
            host_name: host_name.into(),
            address: address.into(),
            port: 22,
            user: user.into(),
            identity_files: Vec::new(),
            use_agent: false,
            agent_socket: None,
            host_key_policy: HostKeyPolicy::Strict,
            known_hosts: known_hosts.into(),
            connect_timeout: Duration::from_secs(10),
            connect_attempts: 3,
            keepalive: Duration::from_secs(15),
            max_channels: 8,
            channel_open_patience: Duration::from_secs(5),
        }
    }
}

/// How the TCP stream to the target is obtained.
enum Route {
    Direct,
    /// A `direct-tcpip` channel on another host's connection.
    Via(Arc<SshTransport>),
}

/// One authenticated SSH connection and its channel budget.
struct Connection {
    handle: Handle<ServerKeyCheck>,
    channels: Arc<Semaphore>,
    closes: Arc<ChannelCloses>,
    /// The connection's SFTP session, opened on first use and shared by all
    /// file operations (it multiplexes requests); it keeps one channel slot.
    sftp: Mutex<Option<Arc<files::SftpChannel>>>,
}

/// Whoever waits for the server to close a channel (see [`ChannelSlot`]).
#[derive(Default)]
struct ChannelCloses {
    waiters: std::sync::Mutex<HashMap<ChannelId, oneshot::Sender<()>>>,
}

impl ChannelCloses {
    fn watch(&self, id: ChannelId) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.insert(id, tx);
        }
        rx
    }

    fn closed(&self, id: ChannelId) {
        if let Some(tx) = self.waiters.lock().ok().and_then(|mut w| w.remove(&id)) {
            let _ = tx.send(());
        }
    }

    /// The connection is gone: nobody needs to wait any more.
    fn forget_all(&self) {
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.clear();
        }
    }
}

/// Longest wait for the server's close of a channel before its slot is
/// given back anyway.
const CHANNEL_CLOSE_LIMIT: Duration = Duration::from_secs(10);

/// A place in the connection's channel budget. The server counts a session
/// channel until it has closed it (for a command still running after a
/// timeout, until that command ended), so the slot is given back only when
/// the server's close arrived, never earlier: otherwise the next channel
/// could be the server's `MaxSessions + 1`th.
struct ChannelSlot {
    permit: Option<OwnedSemaphorePermit>,
    closed: Option<oneshot::Receiver<()>>,
}

impl ChannelSlot {
    /// Gives the slot back without waiting for the server's close (after
    /// closing a channel from this side, russh does not report the
    /// server's close).
    fn release_now(&mut self) {
        self.closed = None;
    }
}

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        let permit = self.permit.take();
        if let Some(closed) = self.closed.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = tokio::time::timeout(CHANNEL_CLOSE_LIMIT, closed).await;
                drop(permit);
            });
        }
    }
}

/// An SSH connection to one host, opened once and re-opened when it drops.
pub struct SshTransport {
    target: SshTarget,
    route: Route,
    connection: Mutex<Option<Arc<Connection>>>,
}

/// Why an operation on a channel did not complete.
pub(crate) enum ChannelFailure {
    /// The connection was gone before the operation started on the server.
    NotStarted(String),
    /// The connection dropped while the operation was running.
    Lost(String),
    /// Anything else; reported as is.
    Failed(TransportError),
}

/// Why one connection attempt failed.
enum AttemptFailure {
    /// Worth another attempt (refused, timed out, dropped during handshake).
    Retry(String),
    /// Host key or authentication problems, or an unreachable jump host.
    Fatal(TransportError),
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// How much longer than the client the remote `timeout` lets a command run.
const REMOTE_TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// A name for a temporary file next to `path` (same directory, so the final
/// rename is atomic).
pub(crate) fn temp_path_beside(path: &str) -> String {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let (dir, name) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    format!("{dir}.{name}.kubelab-{}-{n}.tmp", std::process::id())
}

impl SshTransport {
    /// Connects (with retries) and authenticates to `target` directly.
    pub async fn connect(target: SshTarget) -> Result<SshTransport, TransportError> {
        Self::open(target, Route::Direct).await
    }

    /// Connects to `target` through `jump`: the TCP stream is a
    /// `direct-tcpip` channel on the jump host's connection, so `target.address`
    /// is resolved and reached from the jump host. `jump` may itself be
    /// connected through another jump host.
    pub async fn connect_via(
        jump: Arc<SshTransport>,
        target: SshTarget,
    ) -> Result<SshTransport, TransportError> {
        Self::open(target, Route::Via(jump)).await
    }

    async fn open(target: SshTarget, route: Route) -> Result<SshTransport, TransportError> {
        let transport = SshTransport {
            target,
            route,
            connection: Mutex::new(None),
        };
        transport.connection().await?;
        Ok(transport)
    }

    pub fn target(&self) -> &SshTarget {
        &self.target
    }

    /// Closes the connection politely; a later operation opens a new one.
    pub async fn disconnect(&self) {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.take() {
            let _ = connection
                .handle
                .disconnect(russh::Disconnect::ByApplication, "kubelab done", "en")
                .await;
        }
    }

    /// Runs a command; `Exec::idempotent` says whether it may be run again
    /// on a new connection when the connection drops while it runs.
    async fn exec_request(&self, req: &Exec) -> Result<Output, TransportError> {
        let what = describe(&req.command);
        self.with_connection(&what, req.idempotent, |connection| {
            self.run_exec(connection, req)
        })
        .await
    }

    /// The live connection, opening one when there is none or it dropped.
    async fn connection(&self) -> Result<Arc<Connection>, TransportError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref()
            && !connection.handle.is_closed()
        {
            return Ok(connection.clone());
        }
        *slot = None;
        let connection = Arc::new(self.establish().await?);
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Replaces `broken` with a new connection (unless another task already did).
    async fn reconnect(&self, broken: &Arc<Connection>) -> Result<Arc<Connection>, TransportError> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = slot.as_ref()
            && !Arc::ptr_eq(connection, broken)
            && !connection.handle.is_closed()
        {
            return Ok(connection.clone());
        }
        *slot = None;
        let connection = Arc::new(self.establish().await?);
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Runs `op` on the connection; when the connection turns out broken,
    /// re-connects once and runs it again if that is safe: always when it
    /// never started, only when `rerun_safe` when it was interrupted.
    async fn with_connection<T, F, Fut>(
        &self,
        what: &str,
        rerun_safe: bool,
        op: F,
    ) -> Result<T, TransportError>
    where
        F: Fn(Arc<Connection>) -> Fut,
        Fut: Future<Output = Result<T, ChannelFailure>>,
    {
        let connection = self.connection().await?;
        let first_reason = match op(connection.clone()).await {
            Ok(value) => return Ok(value),
            Err(ChannelFailure::Failed(e)) => return Err(e),
            Err(ChannelFailure::Lost(reason)) if !rerun_safe => {
                return Err(TransportError::ConnectionLost {
                    host: self.target.host_name.clone(),
                    reason: format!(
                        "{reason} while running {what}; it was not re-run because it is not \
                         marked idempotent, so it may or may not have taken effect"
                    ),
                });
            }
            Err(ChannelFailure::Lost(reason) | ChannelFailure::NotStarted(reason)) => reason,
        };
        let connection = match self.reconnect(&connection).await {
            Ok(c) => c,
            Err(TransportError::Unreachable { host, reason }) => {
                return Err(TransportError::ConnectionLost {
                    host,
                    reason: format!(
                        "{first_reason} while running {what}, and re-connecting failed: {reason}"
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        match op(connection).await {
            Ok(value) => Ok(value),
            Err(ChannelFailure::Failed(e)) => Err(e),
            Err(ChannelFailure::Lost(reason) | ChannelFailure::NotStarted(reason)) => {
                Err(TransportError::ConnectionLost {
                    host: self.target.host_name.clone(),
                    reason: format!("{reason} while running {what}, again after re-connecting"),
                })
            }
        }
    }

    /// Connection attempts with exponential backoff.
    async fn establish(&self) -> Result<Connection, TransportError> {
        let attempts = self.target.connect_attempts.max(1);
        let mut backoff = Duration::from_millis(500);
        let mut last_reason = String::new();
        for attempt in 1..=attempts {
            match self.attempt().await {
                Ok(connection) => return Ok(connection),
                Err(AttemptFailure::Fatal(e)) => return Err(e),
                Err(AttemptFailure::Retry(reason)) => last_reason = reason,
            }
            if attempt < attempts {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(TransportError::Unreachable {
            host: self.target.host_name.clone(),
            reason: format!(
                "{}:{}: {last_reason} (gave up after {attempts} attempt{})",
                self.target.address,
                self.target.port,
                if attempts == 1 { "" } else { "s" }
            ),
        })
    }

    /// One connection attempt: stream, handshake, host key, authentication.
    async fn attempt(&self) -> Result<Connection, AttemptFailure> {
        let t = &self.target;
        let rejection = Arc::new(std::sync::Mutex::new(None));
        let closes = Arc::new(ChannelCloses::default());
        let checker = ServerKeyCheck {
            closes: closes.clone(),
            address: t.address.clone(),
            port: t.port,
            known_hosts: t.known_hosts.clone(),
            policy: t.host_key_policy,
            rejection: rejection.clone(),
        };
        let config = Arc::new(client::Config {
            keepalive_interval: Some(t.keepalive),
            keepalive_max: 3,
            nodelay: true,
            ..Default::default()
        });
        let handshake = async {
            match &self.route {
                Route::Direct => {
                    let stream = tokio::net::TcpStream::connect((t.address.as_str(), t.port))
                        .await
                        .map_err(|e| AttemptFailure::Retry(e.to_string()))?;
                    let _ = stream.set_nodelay(true);
                    client::connect_stream(config, stream, checker)
                        .await
                        .map_err(|e| self.handshake_failure(e, &rejection))
                }
                Route::Via(jump) => {
                    let stream = jump
                        .tunnel_for_jump(&t.address, t.port)
                        .await
                        .map_err(|e| self.jump_failure(&jump.target.host_name, e))?;
                    client::connect_stream(config, stream, checker)
                        .await
                        .map_err(|e| self.handshake_failure(e, &rejection))
                }
            }
        };
        let deadline = tokio::time::Instant::now() + t.connect_timeout;
        let mut handle = match tokio::time::timeout_at(deadline, handshake).await {
            Ok(result) => result?,
            Err(_) => {
                return Err(AttemptFailure::Retry(format!(
                    "no SSH connection within {:?}",
                    t.connect_timeout
                )));
            }
        };
        match tokio::time::timeout_at(deadline, self.authenticate(&mut handle)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(AttemptFailure::Retry(format!(
                    "no authenticated connection within {:?}",
                    t.connect_timeout
                )));
            }
        }
        Ok(Connection {
            handle,
            channels: Arc::new(Semaphore::new(t.max_channels.max(1))),
            closes,
            sftp: Mutex::new(None),
        })
    }

    /// A failed `direct-tcpip` channel on the jump host: the jump host
    /// could not connect (worth retrying), the jump host itself is out of
    /// reach (so is this host), or its own key or login failed (reported as
    /// is: it names the jump host).
    fn jump_failure(&self, jump_name: &str, error: TransportError) -> AttemptFailure {
        match error {
            TransportError::Io { reason, .. } => {
                AttemptFailure::Retry(format!("through jump host {jump_name}: {reason}"))
            }
            TransportError::Unreachable { reason, .. }
            | TransportError::ConnectionLost { reason, .. } => {
                AttemptFailure::Fatal(TransportError::Unreachable {
                    host: self.target.host_name.clone(),
                    reason: format!("jump host {jump_name} is unreachable: {reason}"),
                })
            }
            other => AttemptFailure::Fatal(other),
        }
    }

    fn handshake_failure(
        &self,
        error: russh::Error,
        rejection: &std::sync::Mutex<Option<KeyRejection>>,
    ) -> AttemptFailure {
        let host = self.target.host_name.clone();
        let known_hosts = self.target.known_hosts.display().to_string();
        let recorded = rejection.lock().map(|mut r| r.take()).unwrap_or(None);
        match recorded {
            Some(KeyRejection::Unknown { fingerprint }) => {
                AttemptFailure::Fatal(TransportError::HostKeyUnknown {
                    host,
                    fingerprint,
                    known_hosts,
                })
            }
            Some(KeyRejection::Changed { fingerprint, line }) => {
                AttemptFailure::Fatal(TransportError::HostKeyChanged {
                    host,
                    fingerprint,
                    known_hosts,
                    line,
                })
            }
            Some(KeyRejection::Unusable { reason }) => AttemptFailure::Fatal(TransportError::Io {
                host,
                what: "checking the host key".to_string(),
                reason,
            }),
            None => AttemptFailure::Retry(format!("SSH handshake failed: {error}")),
        }
    }

    /// Identity files first, then the agent's keys.
    async fn authenticate(
        &self,
        handle: &mut Handle<ServerKeyCheck>,
    ) -> Result<(), AttemptFailure> {
        let t = &self.target;
        let mut tried: Vec<String> = Vec::new();
        let auth_error = |reason: String| {
            AttemptFailure::Fatal(TransportError::Auth {
                host: t.host_name.clone(),
                user: t.user.clone(),
                reason,
            })
        };
        let dropped =
            |e: russh::Error| AttemptFailure::Retry(format!("during authentication: {e}"));
        for path in &t.identity_files {
            let key = match russh::keys::load_secret_key(path, None) {
                Ok(key) => key,
                Err(russh::keys::Error::KeyIsEncrypted) => {
                    tried.push(format!(
                        "{} is passphrase-protected (load it into ssh-agent instead)",
                        path.display()
                    ));
                    continue;
                }
                Err(e) => {
                    // The error names the problem, never the key's content.
                    tried.push(format!("{} could not be loaded ({e})", path.display()));
                    continue;
                }
            };
            let hash = rsa_hash(handle, key.algorithm()).await.map_err(dropped)?;
            let result = handle
                .authenticate_publickey(&t.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
                .map_err(dropped)?;
            if result.success() {
                return Ok(());
            }
            tried.push(format!("{} was refused", path.display()));
        }
        if t.use_agent {
            let agent = match &t.agent_socket {
                Some(path) => russh::keys::agent::client::AgentClient::connect_uds(path).await,
                None => russh::keys::agent::client::AgentClient::connect_env().await,
            };
            match agent {
                Err(e) => tried.push(format!("ssh-agent not usable ({e})")),
                Ok(mut agent) => {
                    if let Some(binding) = handle.agent_session_binding() {
                        let _ = agent.bind_session(binding, false).await;
                    }
                    let identities = agent.request_identities().await.unwrap_or_default();
                    let mut offered = 0;
                    for identity in identities {
                        let russh::keys::agent::AgentIdentity::PublicKey { key, .. } = identity
                        else {
                            continue;
                        };
                        offered += 1;
                        let hash = rsa_hash(handle, key.algorithm()).await.map_err(dropped)?;
                        match handle
                            .authenticate_publickey_with(&t.user, key, hash, &mut agent)
                            .await
                        {
                            Ok(result) if result.success() => return Ok(()),
                            Ok(_) => {}
                            Err(e) => tried.push(format!("ssh-agent failed to sign ({e})")),
                        }
                    }
                    tried.push(format!("{offered} ssh-agent key(s) were refused"));
                }
            }
        }
        if tried.is_empty() {
            return Err(auth_error(
                "no identity file or agent configured".to_string(),
            ));
        }
        Err(auth_error(tried.join("; ")))
    }

    /// The command line sent in the `exec` request.
    ///
    /// With a timeout, the command runs under coreutils `timeout`, one
    /// second longer than the client waits: when the client gives up and
    /// closes the channel, the remote side ends the command and its whole
    /// process group (OpenSSH ignores `signal` requests in many setups,
    /// root logins included, and closing a channel does not stop a command).
    fn command_line(
        &self,
        command: &Command,
        become_root: bool,
        timeout: Option<Duration>,
    ) -> String {
        let shell = command.to_shell();
        let limit = timeout.map(|t| {
            format!(
                "timeout -k 5 {:.3} ",
                t.as_secs_f64() + REMOTE_TIMEOUT_GRACE.as_secs_f64()
            )
        });
        let limit = limit.as_deref().unwrap_or("");
        if become_root && !self.is_root() {
            format!("sudo -n -- {limit}sh -c {}", quote(&shell))
        } else {
            match (command, limit) {
                (Command::Argv(_), "") => shell,
                _ => format!("{limit}sh -c {}", quote(&shell)),
            }
        }
    }

    /// Opens a session channel (waiting for a free slot) and runs the command.
    async fn run_exec(
        &self,
        connection: Arc<Connection>,
        req: &Exec,
    ) -> Result<Output, ChannelFailure> {
        let (mut slot, channel) = self.open_session_channel(&connection).await?;
        let line = self.command_line(&req.command, req.become_root, req.timeout);
        channel
            .exec(true, line.into_bytes())
            .await
            .map_err(|e| self.open_failure(&connection, e))?;
        let (mut reader, writer) = channel.split();

        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let mut status = None;
        let mut refused = false;
        let collect = async {
            while let Some(msg) = reader.wait().await {
                match msg {
                    ChannelMsg::Data { data } => stdout.extend_from_slice(&data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => stderr.extend_from_slice(&data),
                    ChannelMsg::ExitStatus { exit_status } => {
                        status = Some(ExitStatus::Code(
                            i32::try_from(exit_status).unwrap_or(i32::MAX),
                        ))
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        status = Some(ExitStatus::Signal(signal_text(&signal_name)))
                    }
                    ChannelMsg::Failure => {
                        refused = true;
                        break;
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
        };
        let feed = async {
            if let Some(data) = &req.stdin {
                writer.data(&data[..]).await?;
            }
            writer.eof().await
        };
        let run = async {
            tokio::pin!(collect);
            tokio::pin!(feed);
            let mut fed = false;
            loop {
                tokio::select! {
                    _ = &mut feed, if !fed => fed = true,
                    () = &mut collect => break,
                }
            }
        };
        let finished = match req.timeout {
            Some(limit) => tokio::time::timeout(limit, run).await.is_ok(),
            None => {
                run.await;
                true
            }
        };
        if !finished {
            // The command runs under a remote `timeout` that ends it a
            // moment later (see `command_line`); TERM now as well, for
            // servers that honour `signal` requests. The channel is drained
            // in the background until the server closes it: until then the
            // server still counts it against MaxSessions, so the slot stays
            // taken. Should the server never close it, the channel is closed
            // from here after CHANNEL_CLOSE_LIMIT.
            let _ = writer.signal(Sig::TERM).await;
            let _ = writer.eof().await;
            tokio::spawn(async move {
                let drained = tokio::time::timeout(CHANNEL_CLOSE_LIMIT, async {
                    while let Some(msg) = reader.wait().await {
                        if matches!(msg, ChannelMsg::Close) {
                            break;
                        }
                    }
                })
                .await;
                if drained.is_err() {
                    let _ = writer.close().await;
                    slot.release_now();
                }
                drop(slot);
            });
            return Err(ChannelFailure::Failed(TransportError::Timeout {
                host: self.target.host_name.clone(),
                what: describe(&req.command),
                after: req.timeout.unwrap_or_default(),
            }));
        }
        if refused {
            let _ = writer.close().await;
            slot.release_now();
            return Err(ChannelFailure::Failed(TransportError::Io {
                host: self.target.host_name.clone(),
                what: describe(&req.command),
                reason: "the server refused to run the command".to_string(),
            }));
        }
        match status {
            Some(status) => Ok(Output {
                status,
                stdout,
                stderr,
            }),
            None => Err(ChannelFailure::Lost(
                "the channel closed without an exit status (connection dropped)".to_string(),
            )),
        }
    }

    /// Waits for a free slot in the channel budget, then opens a session
    /// channel.
    async fn open_session_channel(
        &self,
        connection: &Arc<Connection>,
    ) -> Result<(ChannelSlot, russh::Channel<client::Msg>), ChannelFailure> {
        let permit = connection
            .channels
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ChannelFailure::NotStarted("the connection was closed".to_string()))?;
        let mut slot = ChannelSlot {
            permit: Some(permit),
            closed: None,
        };
        // sshd frees a session only some time after both sides sent their
        // close, so right after a close it may still count it and refuse a
        // new one although the budget has room. Nothing ran: retry, with
        // backoff, for a bounded time.
        let started = std::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        let channel = loop {
            match connection.handle.channel_open_session().await {
                Ok(channel) => break channel,
                Err(russh::Error::ChannelOpenFailure(_))
                    if started.elapsed() + pause <= self.target.channel_open_patience =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(self.open_failure(connection, e)),
            }
        };
        slot.closed = Some(connection.closes.watch(channel.id()));
        Ok((slot, channel))
    }

    /// Classifies a failure to open or start a channel.
    fn open_failure(&self, connection: &Connection, error: russh::Error) -> ChannelFailure {
        match error {
            russh::Error::ChannelOpenFailure(reason) => {
                ChannelFailure::Failed(TransportError::Io {
                    host: self.target.host_name.clone(),
                    what: "opening a channel".to_string(),
                    reason: format!("the server refused ({reason:?})"),
                })
            }
            other if connection.handle.is_closed() => {
                ChannelFailure::NotStarted(format!("the connection is closed ({other})"))
            }
            other => ChannelFailure::NotStarted(format!("could not open a channel ({other})")),
        }
    }

    /// [`Self::direct_tcpip`] boxed: connecting through a jump host may
    /// connect the jump host itself, through its own jump host.
    fn tunnel_for_jump<'a>(
        &'a self,
        host: &'a str,
        port: u16,
    ) -> std::pin::Pin<
        Box<
            dyn Future<Output = Result<russh::ChannelStream<client::Msg>, TransportError>>
                + Send
                + 'a,
        >,
    > {
        Box::pin(self.direct_tcpip(host, port))
    }

    /// A `direct-tcpip` channel to `host:port` as seen from this host.
    async fn direct_tcpip(
        &self,
        host: &str,
        port: u16,
    ) -> Result<russh::ChannelStream<client::Msg>, TransportError> {
        let what = format!("a TCP tunnel to {host}:{port}");
        let what_ref = &what;
        self.with_connection(&what, true, |connection| async move {
            match connection
                .handle
                .channel_open_direct_tcpip(host, u32::from(port), "127.0.0.1", 0)
                .await
            {
                Ok(channel) => Ok(channel.into_stream()),
                Err(russh::Error::ChannelOpenFailure(reason)) => {
                    Err(ChannelFailure::Failed(TransportError::Io {
                        host: self.target.host_name.clone(),
                        what: what_ref.clone(),
                        reason: format!("the server could not open it ({reason:?})"),
                    }))
                }
                Err(e) => Err(ChannelFailure::NotStarted(format!(
                    "could not open a channel ({e})"
                ))),
            }
        })
        .await
    }

    /// A `direct-streamlocal@openssh.com` channel to the Unix socket `path`
    /// on this host (sshd connects to it as the login user; OpenSSH allows
    /// it unless `AllowStreamLocalForwarding no`). Used for libvirt's socket
    /// on a remote virthost.
    pub async fn open_unix_socket(
        &self,
        path: &str,
    ) -> Result<russh::ChannelStream<client::Msg>, TransportError> {
        let what = format!("a stream to the socket {path}");
        let what_ref = &what;
        self.with_connection(&what, true, |connection| async move {
            match connection
                .handle
                .channel_open_direct_streamlocal(path)
                .await
            {
                Ok(channel) => Ok(channel.into_stream()),
                Err(russh::Error::ChannelOpenFailure(reason)) => {
                    Err(ChannelFailure::Failed(TransportError::Io {
                        host: self.target.host_name.clone(),
                        what: what_ref.clone(),
                        reason: format!(
                            "the server could not open it ({reason:?}; is the socket there, and \
                             does sshd allow stream-local forwarding?)"
                        ),
                    }))
                }
                Err(e) => Err(ChannelFailure::NotStarted(format!(
                    "could not open a channel ({e})"
                ))),
            }
        })
        .await
    }
}

fn describe(command: &Command) -> String {
    let text = command.to_shell();
    let first_line = text.lines().next().unwrap_or_default();
    let mut short: String = first_line.chars().take(80).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    format!("`{short}`")
}

fn signal_text(signal: &Sig) -> String {
    match signal {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

#[async_trait::async_trait]
impl Transport for SshTransport {
    fn host(&self) -> &str {
        &self.target.host_name
    }

    fn is_root(&self) -> bool {
        self.target.user == "root"
    }

    async fn exec(&self, req: Exec) -> Result<Output, TransportError> {
        self.exec_request(&req).await
    }

    async fn read_file(
        &self,
        path: &str,
        become_root: bool,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        files::read_file(self, path, become_root).await
    }

    async fn write_file(&self, upload: Upload) -> Result<(), TransportError> {
        files::write_file(self, &upload).await
    }

    async fn open_tunnel(&self, host: &str, port: u16) -> Result<Box<dyn Tunnel>, TransportError> {
        let stream = self.direct_tcpip(host, port).await?;
        Ok(Box::new(stream))
    }
}

/// Why the server key was refused, kept for the error the caller sees
/// (russh itself only reports "unknown key").
enum KeyRejection {
    Unknown { fingerprint: String },
    Changed { fingerprint: String, line: usize },
    Unusable { reason: String },
}

/// The russh client handler: checks the server key against known_hosts.
struct ServerKeyCheck {
    closes: Arc<ChannelCloses>,
    address: String,
    port: u16,
    known_hosts: PathBuf,
    policy: HostKeyPolicy,
    rejection: Arc<std::sync::Mutex<Option<KeyRejection>>>,
}

impl ServerKeyCheck {
    fn verdict(&self, key: &PublicKey) -> Result<(), KeyRejection> {
        let fingerprint = known_hosts::fingerprint(key);
        let verdict = known_hosts::check_host_key(&self.known_hosts, &self.address, self.port, key)
            .map_err(|e| KeyRejection::Unusable {
                reason: format!("cannot read {}: {e}", self.known_hosts.display()),
            })?;
        match (verdict, self.policy) {
            (HostKeyVerdict::Known, _) => Ok(()),
            (HostKeyVerdict::Changed { line }, _) => {
                Err(KeyRejection::Changed { fingerprint, line })
            }
            (HostKeyVerdict::Unknown, HostKeyPolicy::Strict) => {
                Err(KeyRejection::Unknown { fingerprint })
            }
            (HostKeyVerdict::Unknown, HostKeyPolicy::AcceptNew) => {
                known_hosts::learn_host_key(&self.known_hosts, &self.address, self.port, key)
                    .map_err(|e| KeyRejection::Unusable {
                        reason: format!(
                            "cannot record the new key in {}: {e}",
                            self.known_hosts.display()
                        ),
                    })
            }
        }
    }
}

impl Drop for ServerKeyCheck {
    fn drop(&mut self) {
        self.closes.forget_all();
    }
}

impl client::Handler for ServerKeyCheck {
    type Error = russh::Error;

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.closes.closed(channel);
        Ok(())
    }

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let outcome = match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => self.verdict(key),
            PublicKeyOrCertificate::Certificate(_) => Err(KeyRejection::Unusable {
                reason: "the server offered a host certificate; only plain host keys are supported"
                    .to_string(),
            }),
        };
        match outcome {
            Ok(()) => Ok(true),
            Err(rejection) => {
                if let Ok(mut slot) = self.rejection.lock() {
                    *slot = Some(rejection);
                }
                Ok(false)
            }
        }
    }
}

/// The signature hash to use with an RSA key (the best the server offers);
/// `None` for other key types.
async fn rsa_hash(
    handle: &Handle<ServerKeyCheck>,
    algorithm: russh::keys::Algorithm,
) -> Result<Option<russh::keys::HashAlg>, russh::Error> {
    if algorithm.is_rsa() {
        Ok(handle.best_supported_rsa_hash().await?.flatten())
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_path_is_a_hidden_sibling() {
        let t = temp_path_beside("/etc/kubernetes/admin.conf");
        assert!(t.starts_with("/etc/kubernetes/.admin.conf.kubelab-"));
        assert!(t.ends_with(".tmp"));
        assert!(temp_path_beside("x").starts_with(".x.kubelab-"));
    }

    #[test]
    fn become_wraps_in_sudo_sh() {
        let target = SshTarget::new("h", "10.0.0.1", "kube", "/dev/null");
        let t = SshTransport {
            target,
            route: Route::Direct,
            connection: Mutex::new(None),
        };
        let c = Command::argv(["echo", "a b"]);
        assert_eq!(t.command_line(&c, false, None), "echo 'a b'");
        assert_eq!(
            t.command_line(&c, true, None),
            r"sudo -n -- sh -c 'echo '\''a b'\'''"
        );
        assert_eq!(
            t.command_line(&Command::script("cd /; ls"), false, None),
            "sh -c 'cd /; ls'"
        );
        let limit = Some(Duration::from_millis(1500));
        assert_eq!(
            t.command_line(&c, false, limit),
            r"timeout -k 5 2.500 sh -c 'echo '\''a b'\'''"
        );
        assert_eq!(
            t.command_line(&c, true, limit),
            r"sudo -n -- timeout -k 5 2.500 sh -c 'echo '\''a b'\'''"
        );
    }
}
