//! One module per `kubelab` subcommand; `main.rs` only parses and dispatches.

pub mod import_ansible;
pub mod play;
pub mod validate;

use crate::lab::LoadOptions;

/// What every command gets from the global flags.
#[derive(Clone, Debug)]
pub struct Context {
    pub load: LoadOptions,
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    /// `--playbook-dir`: playbooks here win over the built-in ones.
    pub playbook_dir: Option<std::path::PathBuf>,
    /// `--template-dir`: templates here win over the built-in ones.
    pub template_dir: Option<std::path::PathBuf>,
    /// Colour on stderr (already decided from `--color`, `NO_COLOR` and the terminal).
    pub color: bool,
}

pub mod doctor;
pub mod down;
pub mod plan;
pub mod ssh;
pub mod status;
pub mod up;

use std::process::ExitCode;

use crate::lab::Lab;
use crate::provision::{Progress, ProvisionError};

/// Load and validate a lab file; an invalid lab is exit code 2.
pub fn load_lab(path: &std::path::Path, ctx: &Context) -> Result<Lab, ExitCode> {
    match crate::lab::load(path, &ctx.load) {
        Ok((lab, warnings)) => {
            if !ctx.quiet && !warnings.0.is_empty() {
                eprint!("{}", warnings.render(ctx.color));
            }
            Ok(lab)
        }
        Err(errors) => {
            eprint!("{}", errors.render(ctx.color));
            eprintln!("{}: invalid lab", path.display());
            Err(ExitCode::from(2))
        }
    }
}

/// The tokio runtime of a command.
pub fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(1)
        })
}

/// The lab and a runtime to drive it: what every lab command starts with.
pub fn lab_and_runtime(
    path: &std::path::Path,
    ctx: &Context,
) -> Result<(Lab, tokio::runtime::Runtime), ExitCode> {
    let lab = load_lab(path, ctx)?;
    Ok((lab, runtime()?))
}

/// Report a provisioning error on stderr (and as a JSON event) and turn it
/// into the exit code.
pub fn fail(ctx: &Context, command: &str, e: &ProvisionError) -> ExitCode {
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"event": "error", "command": command, "message": e.to_string(), "exit_code": e.exit_code()})
        );
    }
    eprintln!("error: {command}: {e}");
    ExitCode::from(e.exit_code())
}

/// Progress lines: to stderr for people, as JSON events on stdout with `--json`.
pub struct ProgressLines<'a> {
    pub ctx: &'a Context,
    pub command: &'a str,
}

impl Progress for ProgressLines<'_> {
    fn step(&self, event: &str, message: &str) {
        if self.ctx.json {
            println!(
                "{}",
                serde_json::json!({"event": "step", "command": self.command, "step": event, "message": message})
            );
        } else if !self.ctx.quiet {
            eprintln!("[{event}] {message}");
        }
    }
}
