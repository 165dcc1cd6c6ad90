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
pub mod reset;
pub mod scenario;
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

/// Progress of a lab command: plain lines on stderr for people (with a
/// UTC timestamp when stderr is not a terminal, e.g. in CI), JSON events on
/// stdout with `--json`, and every line in the run's log file
/// `<state>/runs/<unix time>-<command>.log`.
pub struct ProgressLines<'a> {
    ctx: &'a Context,
    command: &'a str,
    timestamps: bool,
    log: Option<std::sync::Mutex<std::io::BufWriter<std::fs::File>>>,
    log_path: Option<std::path::PathBuf>,
}

impl<'a> ProgressLines<'a> {
    pub fn new(ctx: &'a Context, command: &'a str, lab: &Lab) -> Self {
        use std::io::IsTerminal;
        let path =
            crate::runner::log_path(&crate::state::state_dir(&lab.name).join("runs"), command);
        let file = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::File::create(&path));
        let (log, log_path) = match file {
            Ok(f) => (
                Some(std::sync::Mutex::new(std::io::BufWriter::new(f))),
                Some(path),
            ),
            Err(e) => {
                eprintln!("warning: cannot write the run log {}: {e}", path.display());
                (None, None)
            }
        };
        ProgressLines {
            ctx,
            command,
            timestamps: !std::io::stderr().is_terminal(),
            log,
            log_path,
        }
    }

    /// Where this run's log is (printed at the end and on failure).
    pub fn log_path(&self) -> Option<&std::path::Path> {
        self.log_path.as_deref()
    }
}

/// `HH:MM:SS` (UTC) of now.
fn clock() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60
    )
}

impl Progress for ProgressLines<'_> {
    fn step(&self, event: &str, message: &str) {
        if let Some(log) = &self.log
            && let Ok(mut out) = log.lock()
        {
            use std::io::Write;
            let _ = writeln!(out, "{} [{event}] {message}", clock());
            let _ = out.flush();
        }
        if self.ctx.json {
            println!(
                "{}",
                serde_json::json!({"event": "step", "command": self.command, "step": event, "message": message})
            );
        } else if !self.ctx.quiet {
            if self.timestamps {
                eprintln!("{} [{event}] {message}", clock());
            } else {
                eprintln!("[{event}] {message}");
            }
        }
    }
}

impl Context {
    /// How the lab commands run playbooks: this context's sinks and
    /// override directories, the run's log file.
    pub fn playbook_run(
        &self,
        check: bool,
        log_path: Option<&std::path::Path>,
    ) -> crate::runner::PlaybookRun {
        crate::runner::PlaybookRun {
            playbook: std::path::PathBuf::new(),
            playbook_dir: self.playbook_dir.clone(),
            template_dir: self.template_dir.clone(),
            check,
            extra_vars: Default::default(),
            tags: Vec::new(),
            json: self.json,
            quiet: self.quiet,
            color: self.color,
            log_path: log_path.map(|p| p.to_path_buf()),
            verbose: self.verbose > 0,
        }
    }
}

/// Connect to an `up` lab's VMs and run `stages` in order (check mode for
/// `plan`); progress through the engine's sinks, the log in `log_path`.
/// The exit code is the first failing stage's (1 failed steps, 2 invalid
/// playbook, 3 unreachable).
pub async fn run_stages(
    ctx: &Context,
    lab: &Lab,
    stages: &[crate::stage::Stage],
    check: bool,
    log_path: Option<&std::path::Path>,
) -> Result<(), (u8, String)> {
    if stages.is_empty() {
        return Ok(());
    }
    let hosts = crate::stage::LabHosts::connect(lab)
        .await
        .map_err(|e| (e.exit_code(), e.to_string()))?;
    let base = ctx.playbook_run(check, log_path);
    let r = crate::stage::run_all(lab, &hosts, stages, &base, |s| {
        if !ctx.quiet && !ctx.json {
            eprintln!("== {} ({})", s.title, s.playbook);
        }
    })
    .await;
    hosts.close().await;
    r.map_err(|(code, title)| {
        (
            u8::try_from(code).unwrap_or(1),
            format!("stage `{title}` failed (exit code {code})"),
        )
    })
}
