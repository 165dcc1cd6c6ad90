//! `kubelab ssh LAB VM [-- CMD...]`: run a command on a VM (over russh,
//! through the virthost, with the pinned host key) and relay its output and
//! exit code. The words of CMD are joined with spaces and run by the VM's
//! shell, as `ssh` does. Without CMD: an interactive shell through OpenSSH
//! with the lab's `ssh_config`.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::{Context, fail, load_lab, runtime};
use crate::provision;
use crate::transport::ExitStatus;

pub fn run(path: &Path, vm: &str, command: &[String], ctx: &Context) -> ExitCode {
    let lab = match load_lab(path, ctx) {
        Ok(l) => l,
        Err(c) => return c,
    };
    if command.is_empty() {
        // An interactive shell: OpenSSH with the lab's ssh_config (pinned
        // host keys, the lab's login key, through the virthost).
        let config = crate::state::state_dir(&lab.name).join("ssh_config");
        if config.is_file() {
            use std::os::unix::process::CommandExt;
            let err = std::process::Command::new("ssh")
                .arg("-F")
                .arg(&config)
                .arg(vm)
                .exec();
            eprintln!(
                "cannot run ssh ({err}); for an interactive shell use:\n  ssh -F {} {vm}",
                config.display()
            );
        } else {
            eprintln!(
                "lab {} is not up (no {}); after `kubelab up`, an interactive shell is:\n  ssh -F {} {vm}",
                lab.name,
                config.display(),
                config.display()
            );
        }
        return ExitCode::from(1);
    }
    let rt = match runtime() {
        Ok(r) => r,
        Err(c) => return c,
    };
    match rt.block_on(provision::run_on_vm(&lab, vm, command)) {
        Ok(out) => {
            let _ = std::io::stdout().write_all(&out.stdout);
            let _ = std::io::stderr().write_all(&out.stderr);
            match out.status {
                ExitStatus::Code(c) => ExitCode::from(u8::try_from(c & 0xff).unwrap_or(1)),
                ExitStatus::Signal(s) => {
                    eprintln!("{vm}: command killed by signal {s}");
                    ExitCode::from(255)
                }
            }
        }
        Err(e) => fail(ctx, "ssh", &e),
    }
}
