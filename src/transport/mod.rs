//! Transports: how kubelab reaches a host. One implementation speaks SSH
//! (russh, one connection per host for the whole run, channels multiplexed),
//! the other runs on this machine (`local: true` virthosts).
//!
//! Every command crosses this boundary as a [`Command`]: either an argument
//! vector, which is quoted here and only here, or a script whose variable
//! parts were quoted by the template that produced it. Nothing from a lab
//! file is ever pasted into a command line unquoted.

pub mod local;
pub mod ssh;

pub use local::LocalTransport;
pub use ssh::{HostKeyPolicy, SshTarget, SshTransport};

use std::fmt;
use std::time::Duration;

/// What to run on a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Program and arguments; each argument is shell-quoted before it is sent.
    Argv(Vec<String>),
    /// A POSIX `sh` script, run as `sh -c SCRIPT`. The script text is trusted:
    /// it comes from a playbook or template that quoted its variables.
    Script(String),
}

impl Command {
    /// An argument vector from anything string-like.
    pub fn argv<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Command::Argv(args.into_iter().map(Into::into).collect())
    }

    /// A shell script.
    pub fn script(text: impl Into<String>) -> Self {
        Command::Script(text.into())
    }

    /// The single string handed to the remote `sh -c`.
    pub fn to_shell(&self) -> String {
        match self {
            Command::Argv(args) => args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" "),
            Command::Script(s) => s.clone(),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_shell())
    }
}

/// Quote one word for POSIX `sh`. Words made only of safe characters stay as
/// they are; everything else is wrapped in single quotes, with embedded single
/// quotes written as `'\''`.
pub fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b'@' | b',' | b'+' | b'%'
                )
        });
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// One command execution request.
#[derive(Clone, Debug)]
pub struct Exec {
    pub command: Command,
    /// Bytes written to the command's standard input, then EOF.
    pub stdin: Option<Vec<u8>>,
    /// Run as root through `sudo -n` when the login user is not root.
    pub become_root: bool,
    /// Give up (and report a failure) after this long.
    pub timeout: Option<Duration>,
    /// Running the command twice does no harm. When the connection drops
    /// while it runs, an idempotent command is run again on a new
    /// connection; any other fails with `ConnectionLost`.
    pub idempotent: bool,
}

impl Exec {
    pub fn new(command: Command) -> Self {
        Exec {
            command,
            stdin: None,
            become_root: false,
            timeout: None,
            idempotent: false,
        }
    }
    pub fn become_root(mut self, yes: bool) -> Self {
        self.become_root = yes;
        self
    }
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
    pub fn idempotent(mut self, yes: bool) -> Self {
        self.idempotent = yes;
        self
    }
}

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(String),
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit code {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// What a command printed and how it ended.
#[derive(Clone, Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// A file to place on a host, atomically (temporary file, then rename).
#[derive(Clone, Debug)]
pub struct Upload {
    pub path: String,
    pub content: Vec<u8>,
    /// Octal mode, e.g. `0o644`.
    pub mode: u32,
    /// `user` or `user:group`; `None` keeps the writer's.
    pub owner: Option<String>,
    pub become_root: bool,
}

/// Why a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The host could not be reached at all (connect refused / timed out /
    /// no route), after the configured retries.
    #[error("{host}: unreachable: {reason}")]
    Unreachable { host: String, reason: String },
    /// The server's host key is not known and the policy is `strict`.
    #[error(
        "{host}: unknown host key {fingerprint}; to trust it, add it to {known_hosts} \
         (or set host_key_policy: accept-new for this host)"
    )]
    HostKeyUnknown {
        host: String,
        fingerprint: String,
        known_hosts: String,
    },
    /// The server's host key differs from the one recorded.
    #[error(
        "{host}: HOST KEY CHANGED: the server offered {fingerprint}, which does not match \
         {known_hosts} line {line}; if the host was rebuilt, remove that line"
    )]
    HostKeyChanged {
        host: String,
        fingerprint: String,
        known_hosts: String,
        line: usize,
    },
    #[error("{host}: authentication failed as {user}: {reason}")]
    Auth {
        host: String,
        user: String,
        reason: String,
    },
    /// The connection broke while a non-idempotent operation was running.
    #[error("{host}: connection lost: {reason}")]
    ConnectionLost { host: String, reason: String },
    #[error("{host}: timed out after {after:?} running {what}")]
    Timeout {
        host: String,
        what: String,
        after: Duration,
    },
    #[error("{host}: {what}: {reason}")]
    Io {
        host: String,
        what: String,
        reason: String,
    },
}

impl TransportError {
    /// Whether this error means the host was never reached (its own exit code).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TransportError::Unreachable { .. })
    }
}

/// A byte stream to a TCP port seen from a host (an SSH `direct-tcpip`
/// channel), used to reach VMs through their virthost.
pub trait Tunnel: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Tunnel for T {}

/// A way to run commands and move files on one host.
#[async_trait::async_trait]
pub trait Transport: Send + Sync {
    /// The host's name as kubelab reports it (inventory name).
    fn host(&self) -> &str;

    /// Whether commands run as root without `sudo`.
    fn is_root(&self) -> bool;

    /// Run one command.
    async fn exec(&self, req: Exec) -> Result<Output, TransportError>;

    /// Read a whole file; `Ok(None)` when it does not exist.
    async fn read_file(
        &self,
        path: &str,
        become_root: bool,
    ) -> Result<Option<Vec<u8>>, TransportError>;

    /// Write a file atomically with mode and owner.
    async fn write_file(&self, upload: Upload) -> Result<(), TransportError>;

    /// Open a TCP stream to `host:port` as seen from this host.
    async fn open_tunnel(&self, host: &str, port: u16) -> Result<Box<dyn Tunnel>, TransportError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_leaves_safe_words() {
        assert_eq!(quote("kube-node-1"), "kube-node-1");
        assert_eq!(quote("/etc/hosts"), "/etc/hosts");
    }

    #[test]
    fn quote_wraps_hostile_words() {
        assert_eq!(quote("; rm -rf /"), "'; rm -rf /'");
        assert_eq!(quote("$(id)"), "'$(id)'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a\nb"), "'a\nb'");
    }

    #[test]
    fn argv_is_quoted_word_by_word() {
        let c = Command::argv(["echo", "a b", "$HOME"]);
        assert_eq!(c.to_shell(), "echo 'a b' '$HOME'");
    }
}
