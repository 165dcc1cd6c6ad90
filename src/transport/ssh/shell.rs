//! An interactive session on an SSH connection: a login shell, with a
//! pseudo-terminal when the caller has one (its size, and size changes
//! while it runs), input and output passed through as bytes, and the remote
//! exit status. What to do with the local terminal (raw mode and restoring
//! it) is the caller's business: this only moves bytes.

use russh::ChannelMsg;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{ChannelFailure, SshTransport};
use crate::transport::{ExitStatus, TransportError};

/// A terminal's size in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermSize {
    pub cols: u32,
    pub rows: u32,
}

/// What the session asks of the server.
#[derive(Clone, Debug)]
pub struct ShellRequest {
    /// `Some`: a pseudo-terminal of this type (`$TERM`) and size.
    pub pty: Option<(String, TermSize)>,
}

/// Input to a session: bytes typed, a new terminal size, or the end of input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShellInput {
    Data(Vec<u8>),
    Resize(TermSize),
    Eof,
}

impl SshTransport {
    /// Run a login shell. `input` feeds it (its end counts as end of
    /// input); its output goes to `stdout` and `stderr` as it comes. Returns
    /// the shell's exit status.
    pub async fn shell<W: AsyncWrite + Unpin, E: AsyncWrite + Unpin>(
        &self,
        request: &ShellRequest,
        mut input: mpsc::Receiver<ShellInput>,
        stdout: &mut W,
        stderr: &mut E,
    ) -> Result<ExitStatus, TransportError> {
        let host = self.target.host_name.clone();
        let io = |what: &str, e: std::io::Error| TransportError::Io {
            host: host.clone(),
            what: what.to_string(),
            reason: e.to_string(),
        };
        let connection = self.connection().await?;
        let (_slot, mut channel) = match self.open_session_channel(&connection).await {
            Ok(x) => x,
            Err(ChannelFailure::Failed(e)) => return Err(e),
            Err(ChannelFailure::Lost(r) | ChannelFailure::NotStarted(r)) => {
                return Err(TransportError::ConnectionLost { host, reason: r });
            }
        };
        let refused = |what: &str| TransportError::Io {
            host: host.clone(),
            what: what.to_string(),
            reason: "the server refused".to_string(),
        };
        let lost = |what: &str, e: russh::Error| TransportError::ConnectionLost {
            host: host.clone(),
            reason: format!("{what}: {e}"),
        };
        if let Some((term, size)) = &request.pty {
            channel
                .request_pty(true, term, size.cols, size.rows, 0, 0, &[])
                .await
                .map_err(|e| lost("requesting a terminal", e))?;
            if !wait_reply(&mut channel).await {
                return Err(refused("a pseudo-terminal"));
            }
        }
        channel
            .request_shell(true)
            .await
            .map_err(|e| lost("starting the shell", e))?;
        if !wait_reply(&mut channel).await {
            return Err(refused("a login shell"));
        }
        let mut status = None;
        let mut input_open = true;
        loop {
            tokio::select! {
                got = input.recv(), if input_open => match got {
                    Some(ShellInput::Data(bytes)) => {
                        channel.data(&bytes[..]).await.map_err(|e| lost("sending input", e))?;
                    }
                    Some(ShellInput::Resize(size)) => {
                        let _ = channel.window_change(size.cols, size.rows, 0, 0).await;
                    }
                    Some(ShellInput::Eof) | None => {
                        input_open = false;
                        let _ = channel.eof().await;
                    }
                },
                msg = channel.wait() => match msg {
                    Some(ChannelMsg::Data { data }) => {
                        stdout.write_all(&data).await.map_err(|e| io("writing output", e))?;
                        stdout.flush().await.map_err(|e| io("writing output", e))?;
                    }
                    Some(ChannelMsg::ExtendedData { data, .. }) => {
                        stderr.write_all(&data).await.map_err(|e| io("writing output", e))?;
                        stderr.flush().await.map_err(|e| io("writing output", e))?;
                    }
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        status = Some(ExitStatus::Code(i32::try_from(exit_status).unwrap_or(i32::MAX)));
                    }
                    Some(ChannelMsg::ExitSignal { signal_name, .. }) => {
                        status = Some(ExitStatus::Signal(super::signal_text(&signal_name)));
                    }
                    Some(ChannelMsg::Close) | None => break,
                    Some(_) => {}
                },
            }
        }
        status.ok_or_else(|| TransportError::ConnectionLost {
            host: self.target.host_name.clone(),
            reason: "the session ended without an exit status (connection dropped)".to_string(),
        })
    }
}

/// Wait for the answer to a request sent with `want_reply`.
async fn wait_reply(channel: &mut russh::Channel<russh::client::Msg>) -> bool {
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Success => return true,
            ChannelMsg::Failure | ChannelMsg::Close => return false,
            _ => {}
        }
    }
    false
}
