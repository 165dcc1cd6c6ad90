//! Files over SSH: SFTP on a channel of the host's connection, or, for
//! root-owned paths when the login user is not root, the content streamed
//! through the stdin of a `sudo -n sh -c` script (SFTP runs as the login
//! user and cannot write there).
//!
//! Writes are atomic: the content goes to a temporary file in the target's
//! directory, gets its mode (and owner), then is renamed over the target.

use std::sync::Arc;

use russh_sftp::client::RawSftpSession;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};

use super::{ChannelFailure, ChannelSlot, Connection, SshTransport, temp_path_beside};
use crate::transport::{Command, Exec, Transport, TransportError, Upload, quote};

/// Bytes per SFTP read or write request (OpenSSH accepts up to 256 KiB
/// packets; 32 KiB is what every server takes).
const SFTP_CHUNK: usize = 32 * 1024;

/// SFTP writes sent before waiting for their answers (1 MiB in flight).
const PIPELINED_WRITES: usize = 32;

/// Exit code of the `sudo` read script when the file does not exist.
const MISSING_FILE_EXIT: i32 = 3;
const MISSING_FILE_MARK: &str = "kubelab: no such file";

pub(super) async fn read_file(
    transport: &SshTransport,
    path: &str,
    become_root: bool,
) -> Result<Option<Vec<u8>>, TransportError> {
    if become_root && !transport.is_root() {
        return read_through_sudo(transport, path).await;
    }
    let what = format!("reading {path}");
    transport
        .with_connection(&what, true, |connection| {
            sftp_read(transport, connection, path)
        })
        .await
}

pub(super) async fn write_file(
    transport: &SshTransport,
    upload: &Upload,
) -> Result<(), TransportError> {
    if upload.become_root && !transport.is_root() {
        return write_through_sudo(transport, upload).await;
    }
    let what = format!("writing {}", upload.path);
    let rename_now = upload.owner.is_none();
    let temp = transport
        .with_connection(&what, true, |connection| {
            sftp_write(transport, connection, upload, rename_now)
        })
        .await?;
    if let Some(owner) = &upload.owner {
        // The owner is set on the temporary file, so the target never
        // appears with the wrong one; then the rename.
        let script = format!(
            "chown -- {owner} {temp} && mv -f -- {temp} {dest} || {{ rc=$?; rm -f -- {temp}; exit \"$rc\"; }}",
            owner = quote(owner),
            temp = quote(&temp),
            dest = quote(&upload.path),
        );
        let req = Exec::new(Command::script(script))
            .become_root(upload.become_root)
            .idempotent(true);
        let out = transport.exec_request(&req).await?;
        if !out.status.success() {
            return Err(TransportError::Io {
                host: transport.target.host_name.clone(),
                what,
                reason: format!(
                    "setting owner {owner} failed ({}): {}",
                    out.status,
                    out.stderr_str().trim()
                ),
            });
        }
    }
    Ok(())
}

async fn read_through_sudo(
    transport: &SshTransport,
    path: &str,
) -> Result<Option<Vec<u8>>, TransportError> {
    let p = quote(path);
    let script = format!(
        "if [ -e {p} ]; then exec cat -- {p}; else echo {mark} >&2; exit {code}; fi",
        mark = quote(MISSING_FILE_MARK),
        code = MISSING_FILE_EXIT,
    );
    let req = Exec::new(Command::script(script))
        .become_root(true)
        .idempotent(true);
    let out = transport.exec_request(&req).await?;
    if out.status.success() {
        return Ok(Some(out.stdout));
    }
    let stderr = out.stderr_str();
    if out.status == crate::transport::ExitStatus::Code(MISSING_FILE_EXIT)
        && stderr.contains(MISSING_FILE_MARK)
    {
        return Ok(None);
    }
    Err(TransportError::Io {
        host: transport.target.host_name.clone(),
        what: format!("reading {path} as root"),
        reason: format!("{}: {}", out.status, stderr.trim()),
    })
}

async fn write_through_sudo(
    transport: &SshTransport,
    upload: &Upload,
) -> Result<(), TransportError> {
    let temp = quote(&temp_path_beside(&upload.path));
    let mut steps = vec![
        format!("cat > {temp}"),
        format!("chmod {:o} {temp}", upload.mode & 0o7777),
    ];
    if let Some(owner) = &upload.owner {
        steps.push(format!("chown -- {} {temp}", quote(owner)));
    }
    steps.push(format!("mv -f -- {temp} {}", quote(&upload.path)));
    let script = format!(
        "umask 077; {} || {{ rc=$?; rm -f -- {temp}; exit \"$rc\"; }}",
        steps.join(" && ")
    );
    let req = Exec::new(Command::script(script))
        .stdin(upload.content.clone())
        .become_root(true)
        .idempotent(true);
    let out = transport.exec_request(&req).await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(TransportError::Io {
            host: transport.target.host_name.clone(),
            what: format!("writing {} as root", upload.path),
            reason: format!("{}: {}", out.status, out.stderr_str().trim()),
        })
    }
}

/// The SFTP session of a connection and its place in the channel budget.
pub(super) struct SftpChannel {
    session: RawSftpSession,
    _slot: ChannelSlot,
}

/// The connection's SFTP session, started on first use.
async fn sftp_session(
    transport: &SshTransport,
    connection: &Arc<Connection>,
) -> Result<Arc<SftpChannel>, ChannelFailure> {
    let mut cached = connection.sftp.lock().await;
    if let Some(sftp) = cached.as_ref() {
        return Ok(sftp.clone());
    }
    let (slot, channel) = transport.open_session_channel(connection).await?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| transport.open_failure(connection, e))?;
    let session = RawSftpSession::new(channel.into_stream());
    match session.init().await {
        Ok(_) => {
            let sftp = Arc::new(SftpChannel {
                session,
                _slot: slot,
            });
            *cached = Some(sftp.clone());
            Ok(sftp)
        }
        Err(e) if connection.handle.is_closed() => Err(ChannelFailure::NotStarted(format!(
            "the connection closed while starting SFTP ({e})"
        ))),
        Err(e) => Err(ChannelFailure::Failed(TransportError::Io {
            host: transport.target.host_name.clone(),
            what: "starting SFTP".to_string(),
            reason: e.to_string(),
        })),
    }
}

/// Forgets a broken SFTP session so that the next file operation starts a
/// new one. Status replies (no such file, permission denied…) are answers,
/// not breakage.
async fn forget_sftp_if_broken(connection: &Connection, error: &SftpError) {
    if !matches!(error, SftpError::Status(_)) {
        connection.sftp.lock().await.take();
    }
}

/// Maps an SFTP error: a dropped connection is `Lost`, the rest is reported.
fn sftp_failure(
    transport: &SshTransport,
    connection: &Connection,
    what: &str,
    error: SftpError,
) -> ChannelFailure {
    if connection.handle.is_closed() {
        return ChannelFailure::Lost(format!("the connection dropped ({error})"));
    }
    ChannelFailure::Failed(TransportError::Io {
        host: transport.target.host_name.clone(),
        what: what.to_string(),
        reason: error.to_string(),
    })
}

fn is_status(error: &SftpError, code: StatusCode) -> bool {
    matches!(error, SftpError::Status(s) if s.status_code == code)
}

async fn sftp_read(
    transport: &SshTransport,
    connection: Arc<Connection>,
    path: &str,
) -> Result<Option<Vec<u8>>, ChannelFailure> {
    let what = format!("reading {path}");
    let channel = sftp_session(transport, &connection).await?;
    let sftp = &channel.session;
    let handle = match sftp
        .open(path, OpenFlags::READ, FileAttributes::empty())
        .await
    {
        Ok(h) => h.handle,
        Err(e) if is_status(&e, StatusCode::NoSuchFile) => return Ok(None),
        Err(e) => {
            forget_sftp_if_broken(&connection, &e).await;
            return Err(sftp_failure(transport, &connection, &what, e));
        }
    };
    let mut content = Vec::new();
    loop {
        match sftp
            .read(handle.as_str(), content.len() as u64, SFTP_CHUNK as u32)
            .await
        {
            Ok(data) if data.data.is_empty() => break,
            Ok(data) => content.extend_from_slice(&data.data),
            Err(e) if is_status(&e, StatusCode::Eof) => break,
            Err(e) => {
                let _ = sftp.close(handle.as_str()).await;
                forget_sftp_if_broken(&connection, &e).await;
                return Err(sftp_failure(transport, &connection, &what, e));
            }
        }
    }
    let _ = sftp.close(handle).await;
    Ok(Some(content))
}

/// Writes `upload.content` to a new temporary file with the upload's mode;
/// renames it over the target when `rename_now` (otherwise the caller does,
/// after `chown`). Returns the temporary file's path. Each call uses a new
/// temporary name, so a re-run after a dropped connection never collides
/// with a leftover of the first run.
async fn sftp_write(
    transport: &SshTransport,
    connection: Arc<Connection>,
    upload: &Upload,
    rename_now: bool,
) -> Result<String, ChannelFailure> {
    let what = format!("writing {}", upload.path);
    let temp = temp_path_beside(&upload.path);
    let channel = sftp_session(transport, &connection).await?;
    let sftp = &channel.session;
    match sftp_write_steps(sftp, upload, &temp, rename_now).await {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = sftp.remove(temp.as_str()).await;
            forget_sftp_if_broken(&connection, &e).await;
            Err(sftp_failure(transport, &connection, &what, e))
        }
    }
}

async fn sftp_write_steps(
    sftp: &RawSftpSession,
    upload: &Upload,
    temp: &str,
    rename_now: bool,
) -> Result<(), SftpError> {
    let private = FileAttributes {
        permissions: Some(0o600),
        ..FileAttributes::empty()
    };
    // `write` alone neither creates nor truncates: all three flags, plus
    // EXCLUDE so an existing file (or symlink) at the temporary name is
    // never written through.
    let handle = sftp
        .open(
            temp,
            OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE | OpenFlags::EXCLUDE,
            private,
        )
        .await?
        .handle;
    // The rest of the temporary file's life in (about) one round trip: the
    // writes, its mode, fsync and close are sent together. Requests on one
    // handle are answered in order (the SFTP drafts require it; OpenSSH's
    // server handles every request in order anyway). A large file goes in
    // groups of PIPELINED_WRITES chunks, each answered before the next, so
    // that the copies in flight stay bounded.
    let chunks: Vec<&[u8]> = upload.content.chunks(SFTP_CHUNK).collect();
    let write = |index: usize| {
        let offset = (index * SFTP_CHUNK) as u64;
        sftp.write(handle.as_str(), offset, chunks[index].to_vec())
    };
    let last_group = chunks.len().saturating_sub(1) / PIPELINED_WRITES * PIPELINED_WRITES;
    for start in (0..last_group).step_by(PIPELINED_WRITES) {
        let group = futures::future::join_all((start..start + PIPELINED_WRITES).map(write));
        if let Some(e) = group.await.into_iter().find_map(Result::err) {
            let _ = sftp.close(handle.as_str()).await;
            return Err(e);
        }
    }
    let mode = FileAttributes {
        permissions: Some(upload.mode & 0o7777),
        ..FileAttributes::empty()
    };
    let (written, moded, _synced, closed) = tokio::join!(
        futures::future::join_all((last_group..chunks.len()).map(write)),
        sftp.fsetstat(handle.as_str(), mode),
        // fsync@openssh.com, when the server has it; not every server does.
        sftp.fsync(handle.as_str()),
        sftp.close(handle.as_str()),
    );
    if let Some(e) = written.into_iter().find_map(Result::err) {
        return Err(e);
    }
    moded?;
    closed?;
    if rename_now {
        rename_over(sftp, temp, &upload.path).await?;
    }
    Ok(())
}

/// `posix-rename@openssh.com` (rename(2), replaces the target atomically);
/// servers without it get a plain SFTP rename, and only if that fails
/// because the target exists, remove-then-rename.
async fn rename_over(sftp: &RawSftpSession, from: &str, to: &str) -> Result<(), SftpError> {
    let mut data = Vec::with_capacity(8 + from.len() + to.len());
    for s in [from, to] {
        data.extend_from_slice(&(s.len() as u32).to_be_bytes());
        data.extend_from_slice(s.as_bytes());
    }
    match sftp.extended("posix-rename@openssh.com", data).await {
        Ok(Packet::Status(s)) if s.status_code == StatusCode::Ok => return Ok(()),
        Ok(Packet::Status(s)) if s.status_code != StatusCode::OpUnsupported => {
            return Err(SftpError::Status(s));
        }
        Err(e) if !is_status(&e, StatusCode::OpUnsupported) => return Err(e),
        _ => {}
    }
    match sftp.rename(from, to).await {
        Ok(_) => Ok(()),
        Err(first) => match sftp.remove(to).await {
            Ok(_) => sftp.rename(from, to).await.map(|_| ()),
            Err(_) => Err(first),
        },
    }
}
