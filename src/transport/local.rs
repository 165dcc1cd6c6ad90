//! The transport for this machine (`local: true` virthosts): commands run
//! through `/bin/sh -c`, with `sudo -n` when root is needed and kubelab does
//! not run as root.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::{Command, Exec, ExitStatus, Output, Transport, TransportError, Tunnel, Upload};

/// Runs everything on the machine kubelab runs on.
pub struct LocalTransport {
    host_name: String,
    is_root: bool,
}

impl LocalTransport {
    /// `host_name` is how reports name this machine.
    pub fn new(host_name: impl Into<String>) -> Self {
        let is_root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        LocalTransport {
            host_name: host_name.into(),
            is_root,
        }
    }

    fn io_error(&self, what: impl Into<String>, reason: impl ToString) -> TransportError {
        TransportError::Io {
            host: self.host_name.clone(),
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    fn process(&self, command: &Command, become_root: bool) -> tokio::process::Command {
        let shell = command.to_shell();
        let mut process = if become_root && !self.is_root {
            let mut p = tokio::process::Command::new("sudo");
            p.args(["-n", "--", "/bin/sh", "-c", &shell]);
            p
        } else {
            let mut p = tokio::process::Command::new("/bin/sh");
            p.args(["-c", &shell]);
            p
        };
        // Its own process group, so that a timeout can end the command's
        // whole process tree, not only the shell.
        process.process_group(0).kill_on_drop(true);
        process
    }

    async fn run(&self, req: &Exec) -> Result<Output, TransportError> {
        let what = format!("running `{}`", req.command.to_shell());
        let mut process = self.process(&req.command, req.become_root);
        process
            .stdin(if req.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = process.spawn().map_err(|e| self.io_error(&what, e))?;
        let process_group = child.id();
        let feed = child
            .stdin
            .take()
            .zip(req.stdin.clone())
            .map(|(mut pipe, data)| {
                tokio::spawn(async move {
                    // A command that exits without reading its input is not an error.
                    let _ = pipe.write_all(&data).await;
                })
            });
        let waited = match req.timeout {
            Some(limit) => match tokio::time::timeout(limit, child.wait_with_output()).await {
                Ok(r) => r,
                Err(_) => {
                    // TERM to the process group (sudo relays it to a root
                    // command); dropping the future killed the shell itself
                    // (kill_on_drop).
                    if let Some(group) = process_group {
                        let _ = tokio::process::Command::new("kill")
                            .args(["-TERM", "--", &format!("-{group}")])
                            .stderr(Stdio::null())
                            .status()
                            .await;
                    }
                    return Err(TransportError::Timeout {
                        host: self.host_name.clone(),
                        what,
                        after: limit,
                    });
                }
            },
            None => child.wait_with_output().await,
        };
        if let Some(task) = feed {
            task.abort();
        }
        let out = waited.map_err(|e| self.io_error(&what, e))?;
        let status = match out.status.code() {
            Some(code) => ExitStatus::Code(code),
            None => {
                use std::os::unix::process::ExitStatusExt;
                ExitStatus::Signal(
                    out.status
                        .signal()
                        .map(signal_name)
                        .unwrap_or_else(|| "unknown".to_string()),
                )
            }
        };
        Ok(Output {
            status,
            stdout: out.stdout,
            stderr: out.stderr,
        })
    }
}

/// Temporary file beside the target, fsync, mode, rename over the target.
fn write_atomically(upload: &Upload) -> std::io::Result<()> {
    let target = PathBuf::from(&upload.path);
    let temp = PathBuf::from(super::ssh::temp_path_beside(&upload.path));
    let result = write_temp_then_rename(&temp, &target, &upload.content, upload.mode);
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn write_temp_then_rename(
    temp: &Path,
    target: &Path,
    content: &[u8],
    mode: u32,
) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)?;
    file.write_all(content)?;
    file.sync_all()?;
    std::fs::set_permissions(temp, std::fs::Permissions::from_mode(mode & 0o7777))?;
    std::fs::rename(temp, target)
}

fn signal_name(number: i32) -> String {
    match number {
        1 => "HUP",
        2 => "INT",
        3 => "QUIT",
        6 => "ABRT",
        9 => "KILL",
        11 => "SEGV",
        13 => "PIPE",
        14 => "ALRM",
        15 => "TERM",
        _ => return format!("signal {number}"),
    }
    .to_string()
}

#[async_trait::async_trait]
impl Transport for LocalTransport {
    fn host(&self) -> &str {
        &self.host_name
    }

    fn is_root(&self) -> bool {
        self.is_root
    }

    async fn exec(&self, req: Exec) -> Result<Output, TransportError> {
        self.run(&req).await
    }

    async fn read_file(
        &self,
        path: &str,
        become_root: bool,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        if become_root && !self.is_root {
            let script = format!(
                "if [ -e {p} ]; then exec cat -- {p}; else exit 3; fi",
                p = super::quote(path)
            );
            let out = self
                .run(&Exec::new(Command::script(script)).become_root(true))
                .await?;
            return match &out.status {
                ExitStatus::Code(0) => Ok(Some(out.stdout)),
                ExitStatus::Code(3) if out.stderr.is_empty() => Ok(None),
                status => Err(self.io_error(
                    format!("reading {path} as root"),
                    format!("{status}: {}", out.stderr_str().trim()),
                )),
            };
        }
        match tokio::fs::read(path).await {
            Ok(content) => Ok(Some(content)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error(format!("reading {path}"), e)),
        }
    }

    async fn write_file(&self, upload: Upload) -> Result<(), TransportError> {
        let what = format!("writing {}", upload.path);
        if upload.become_root && !self.is_root {
            let temp = super::quote(&super::ssh::temp_path_beside(&upload.path));
            let mut steps = vec![
                format!("cat > {temp}"),
                format!("chmod {:o} {temp}", upload.mode & 0o7777),
            ];
            if let Some(owner) = &upload.owner {
                steps.push(format!("chown -- {} {temp}", super::quote(owner)));
            }
            steps.push(format!("mv -f -- {temp} {}", super::quote(&upload.path)));
            let script = format!(
                "umask 077; {} || {{ rc=$?; rm -f -- {temp}; exit \"$rc\"; }}",
                steps.join(" && ")
            );
            let out = self
                .run(
                    &Exec::new(Command::script(script))
                        .stdin(upload.content)
                        .become_root(true),
                )
                .await?;
            if !out.status.success() {
                return Err(
                    self.io_error(what, format!("{}: {}", out.status, out.stderr_str().trim()))
                );
            }
            return Ok(());
        }
        match &upload.owner {
            None => {
                let upload_for_blocking = upload.clone();
                tokio::task::spawn_blocking(move || write_atomically(&upload_for_blocking))
                    .await
                    .map_err(|e| self.io_error(&what, e))?
                    .map_err(|e| self.io_error(&what, e))
            }
            Some(owner) => {
                // Owner names need the system's user database: let chown
                // resolve them, on the temporary file before the rename.
                let temp = super::ssh::temp_path_beside(&upload.path);
                let temp_path = PathBuf::from(&temp);
                let content = upload.content.clone();
                let mode = upload.mode;
                let written = tokio::task::spawn_blocking(move || {
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&temp_path)?;
                    file.write_all(&content)?;
                    file.sync_all()?;
                    std::fs::set_permissions(
                        &temp_path,
                        std::fs::Permissions::from_mode(mode & 0o7777),
                    )
                })
                .await
                .map_err(|e| self.io_error(&what, e))?;
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&temp);
                    return Err(self.io_error(&what, e));
                }
                let chown = Exec::new(Command::argv([
                    "chown",
                    "--",
                    owner.as_str(),
                    temp.as_str(),
                ]));
                let out = self.run(&chown).await?;
                if !out.status.success() {
                    let _ = std::fs::remove_file(&temp);
                    return Err(self.io_error(
                        what,
                        format!("setting owner {owner}: {}", out.stderr_str().trim()),
                    ));
                }
                std::fs::rename(&temp, &upload.path).map_err(|e| {
                    let _ = std::fs::remove_file(&temp);
                    self.io_error(&what, e)
                })
            }
        }
    }

    async fn open_tunnel(&self, host: &str, port: u16) -> Result<Box<dyn Tunnel>, TransportError> {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| self.io_error(format!("connecting to {host}:{port}"), e))?;
        Ok(Box::new(stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_commands_with_output_status_and_stdin() {
        let t = LocalTransport::new("here");
        let out = t
            .exec(Exec::new(Command::script("cat; echo err >&2; exit 4")).stdin(b"in".to_vec()))
            .await
            .unwrap();
        assert_eq!(out.stdout, b"in");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status, ExitStatus::Code(4));
        let hostile = "; rm -rf / $(touch /tmp/x) `id` 'q' \"d\"\nnl";
        let out = t
            .exec(Exec::new(Command::argv(["printf", "%s", hostile])))
            .await
            .unwrap();
        assert_eq!(out.stdout, hostile.as_bytes());
    }

    #[tokio::test]
    async fn times_out() {
        let t = LocalTransport::new("here");
        let started = std::time::Instant::now();
        let err = t
            .exec(
                Exec::new(Command::script("sleep 30"))
                    .timeout(std::time::Duration::from_millis(200)),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));

        // A grandchild (the shell does not exec it) is ended too.
        let marker = format!("sleep {}.5", 30 + std::process::id() % 1000);
        let script = format!("{marker}; :");
        t.exec(Exec::new(Command::script(script)).timeout(std::time::Duration::from_millis(300)))
            .await
            .unwrap_err();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while running_command_lines().contains(&marker) {
            assert!(std::time::Instant::now() < deadline, "{marker} still runs");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    fn running_command_lines() -> Vec<String> {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
            .map(|raw| {
                String::from_utf8_lossy(&raw)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .collect()
    }

    #[tokio::test]
    async fn writes_atomically_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.conf").display().to_string();
        let t = LocalTransport::new("here");
        assert_eq!(t.read_file(&path, false).await.unwrap(), None);
        for content in [&b"one"[..], &b"two, longer"[..]] {
            t.write_file(Upload {
                path: path.clone(),
                content: content.to_vec(),
                mode: 0o640,
                owner: None,
                become_root: false,
            })
            .await
            .unwrap();
            assert_eq!(
                t.read_file(&path, false).await.unwrap().as_deref(),
                Some(content)
            );
        }
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        // With an owner (our own uid, so this works as any user).
        let uid = std::fs::metadata("/proc/self").unwrap().uid();
        t.write_file(Upload {
            path: path.clone(),
            content: b"owned".to_vec(),
            mode: 0o600,
            owner: Some(uid.to_string()),
            become_root: false,
        })
        .await
        .unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.permissions().mode() & 0o7777),
            (uid, 0o600)
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"owned");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
