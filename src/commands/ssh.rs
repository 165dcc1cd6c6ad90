//! `kubelab ssh LAB VM [-- CMD...]`: run a command on a VM (over russh,
//! through the virthost, with the pinned host key) and relay its output and
//! exit code. The words of CMD are joined with spaces and run by the VM's
//! shell, as `ssh` does. Without CMD: an interactive login shell on the same
//! connection — with a pseudo-terminal of the local terminal's type and size
//! (size changes follow) when stdin is a terminal, which is put in raw mode
//! for the session and restored afterwards, even on errors.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;
use std::process::ExitCode;

use super::{Context, fail, load_lab, runtime};
use crate::provision;
use crate::transport::ExitStatus;
use crate::transport::ssh::shell::{ShellInput, ShellRequest, TermSize};

pub fn run(path: &Path, vm: &str, command: &[String], ctx: &Context) -> ExitCode {
    let lab = match load_lab(path, ctx) {
        Ok(l) => l,
        Err(c) => return c,
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    if command.is_empty() {
        return match rt.block_on(interactive(&lab, vm)) {
            Ok(status) => exit_code(vm, status),
            Err(e) => fail(ctx, "ssh", &e),
        };
    }
    match rt.block_on(provision::run_on_vm(&lab, vm, command)) {
        Ok(out) => {
            let _ = std::io::stdout().write_all(&out.stdout);
            let _ = std::io::stderr().write_all(&out.stderr);
            exit_code(vm, out.status)
        }
        Err(e) => fail(ctx, "ssh", &e),
    }
}

fn exit_code(vm: &str, status: ExitStatus) -> ExitCode {
    match status {
        ExitStatus::Code(c) => ExitCode::from(u8::try_from(c & 0xff).unwrap_or(1)),
        ExitStatus::Signal(s) => {
            eprintln!("{vm}: killed by signal {s}");
            ExitCode::from(255)
        }
    }
}

/// A login shell on the VM, wired to this process's stdin/stdout/stderr.
async fn interactive(
    lab: &crate::lab::Lab,
    vm: &str,
) -> Result<ExitStatus, provision::ProvisionError> {
    let t = provision::connect_vm(lab, vm).await?;
    let tty = std::io::stdin().is_terminal();
    let size = if tty { terminal_size() } else { None };
    let request = ShellRequest {
        pty: tty.then(|| {
            (
                std::env::var("TERM").unwrap_or_else(|_| "xterm".into()),
                size.unwrap_or(TermSize { cols: 80, rows: 24 }),
            )
        }),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    // stdin on a thread of its own: a read blocked there does not hold up
    // the end of the process (a tokio blocking task would)
    let keys = tx.clone();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 4096];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = keys.blocking_send(ShellInput::Eof);
                    return;
                }
                Ok(n) => {
                    if keys
                        .blocking_send(ShellInput::Data(buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    if tty
        && let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    {
        let resize = tx.clone();
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some(size) = terminal_size()
                    && resize.send(ShellInput::Resize(size)).await.is_err()
                {
                    return;
                }
            }
        });
    }
    drop(tx);
    // raw mode from here to the end of the session, whatever happens
    let _raw = if tty { RawMode::enter() } else { None };
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let status = t
        .shell(&request, rx, &mut stdout, &mut stderr)
        .await
        .map_err(|e| provision::ProvisionError::Failed(e.to_string()));
    t.disconnect().await;
    status
}

/// The size of the terminal on stdout (else stdin).
fn terminal_size() -> Option<TermSize> {
    for fd in [libc::STDOUT_FILENO, libc::STDIN_FILENO] {
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes a winsize into the struct we own.
        let ok = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0;
        if ok && ws.ws_col > 0 && ws.ws_row > 0 {
            return Some(TermSize {
                cols: u32::from(ws.ws_col),
                rows: u32::from(ws.ws_row),
            });
        }
    }
    None
}

/// stdin's terminal in raw mode (no echo, no line editing, no signals from
/// keys: ^C goes to the remote side), restored when dropped.
struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        // SAFETY: tcgetattr fills the termios we own; an all-zero termios is
        // a valid value to be overwritten.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return None;
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw only changes the flags of the struct given.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: sets the terminal of stdin from a valid termios.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            return None;
        }
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the termios read in `enter`.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, &self.saved) };
    }
}
