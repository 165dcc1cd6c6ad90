//! One module per `kubelab` subcommand; `main.rs` only parses and dispatches.

pub mod import_ansible;
pub mod links;
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
    /// `--report FILE.html`: a copy of the run's HTML report.
    pub report: Option<std::path::PathBuf>,
    /// A failed `up`, `verify` or `chaos` writes a forensics bundle.
    pub collect: bool,
    /// Colour on stderr (already decided from `--color`, `NO_COLOR` and the terminal).
    pub color: bool,
}

pub mod bundle;
pub mod collect;
pub mod doctor;
pub mod down;
pub mod graph;
pub mod ls;
pub mod plan;
pub mod reap;
pub mod reset;
pub mod scenario;
pub mod snapshot;
pub mod ssh;
pub mod status;
pub mod up;

use std::process::ExitCode;

use crate::lab::Lab;
use crate::provision::ProvisionError;

/// Load and validate a lab file; an invalid lab is exit code 2.
pub fn load_lab(path: &std::path::Path, ctx: &Context) -> Result<Lab, ExitCode> {
    loaded(
        crate::lab::load(path, &ctx.load),
        &path.display().to_string(),
        "lab",
        ctx,
    )
}

/// A virthost named on the command line (`--virthost`) and a runtime to
/// reach it; an invalid one is exit code 2, as an invalid lab.
pub fn virthost_and_runtime(
    reference: &str,
    ctx: &Context,
) -> Result<(crate::lab::model::Virthost, tokio::runtime::Runtime), ExitCode> {
    let virthost = load_virthost(reference, ctx)?;
    Ok((virthost, runtime()?))
}

/// A `--virthost` reference loaded (an inventory name or file, or
/// `user@host[:port]`); its errors said, exit code 2.
pub fn load_virthost(
    reference: &str,
    ctx: &Context,
) -> Result<crate::lab::model::Virthost, ExitCode> {
    loaded(
        crate::lab::load::load_virthost(reference, &ctx.load),
        reference,
        "virthost",
        ctx,
    )
}

/// What a loader gave: the value (its warnings said unless `--quiet`), or
/// every error and `<what>: invalid <kind>`, exit code 2.
fn loaded<T>(
    result: Result<(T, crate::diagnostic::Diagnostics), crate::diagnostic::Diagnostics>,
    what: &str,
    kind: &str,
    ctx: &Context,
) -> Result<T, ExitCode> {
    match result {
        Ok((value, warnings)) => {
            if !ctx.quiet && !warnings.0.is_empty() {
                eprint!("{}", warnings.render(ctx.color));
            }
            Ok(value)
        }
        Err(errors) => {
            eprint!("{}", errors.render(ctx.color));
            eprintln!("{what}: invalid {kind}");
            Err(ExitCode::from(2))
        }
    }
}

/// Write the HTML report of the run whose log is `log` beside it
/// (`<log>.html`) and, with `--report`, to that file too; say where on
/// stderr (or as a JSON event). Nothing when the run never got as far as
/// its log. A failed run's forensics bundle is named in it.
pub fn write_report(
    ctx: &Context,
    title: &str,
    lab: Option<&Lab>,
    log: Option<&std::path::Path>,
    forensics: Option<&std::path::Path>,
) {
    let Some(log) = log.filter(|l| l.exists()) else {
        return;
    };
    let topology = lab.map(|l| crate::graph::svg::render(&crate::graph::Topology::of(l, None)));
    let page = match crate::output::html::report(log, title, topology.as_deref(), forensics) {
        Ok(page) => page,
        Err(e) => {
            eprintln!("warning: cannot read the events of {}: {e}", log.display());
            return;
        }
    };
    let beside = log.with_extension("html");
    for out in std::iter::once(beside.as_path()).chain(ctx.report.as_deref()) {
        let written = match out.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) => std::fs::create_dir_all(dir),
            None => Ok(()),
        }
        .and_then(|()| std::fs::write(out, &page));
        match written {
            Ok(()) => {
                if ctx.json {
                    println!("{}", serde_json::json!({"event": "report", "path": out}));
                } else if !ctx.quiet {
                    eprintln!("report: {}", out.display());
                }
            }
            Err(e) => eprintln!("warning: cannot write the report {}: {e}", out.display()),
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

/// `up`'s events, through the same sinks as playbooks: one bar per host
/// on a terminal (indicatif), plain timestamped lines otherwise, JSON
/// events with `--json`, and every step with its full message in the run's
/// log `<state>/runs/<UTC time>-<command>.log`. The run's hosts: the
/// virthost and the lab's VMs.
pub fn up_steps(ctx: &Context, command: &str, lab: &Lab) -> crate::output::Steps {
    use crate::output::{JsonSink, LogSink, Reporter};
    let mut reporter = Reporter::new(crate::redact::Redactor::new());
    reporter = if ctx.json {
        reporter.with_sink(Box::new(JsonSink::new(std::io::stdout())))
    } else {
        reporter.with_sink(crate::output::stderr_sink(ctx.quiet))
    };
    let path = crate::state::run_log(&lab.name, command);
    let log_path = match LogSink::create(&path) {
        Ok(sink) => {
            reporter = reporter.with_sink(Box::new(sink));
            Some(path)
        }
        Err(e) => {
            eprintln!("warning: cannot write the run log {}: {e}", path.display());
            None
        }
    };
    let hosts: Vec<String> = std::iter::once(crate::provision::VIRTHOST_HOST.to_string())
        .chain(lab.vms.iter().map(|v| v.name.clone()))
        .collect();
    crate::output::Steps::start(
        reporter,
        format!("{command} {}", lab.file.display()),
        hosts,
        lab.file.display().to_string(),
        log_path,
    )
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
            generated: None,
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
/// On failure: the exit code (the first failing stage's: 1 failed steps, 2
/// invalid playbook, 3 unreachable) and what to say, naming the failed
/// steps with the tail of their stderr.
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
    r.map_err(|f| {
        if ctx.json {
            println!(
                "{}",
                serde_json::json!({"event": "error", "command": "stage", "stage": f.title,
                    "message": f.to_string(), "failures": f.failures, "exit_code": f.code})
            );
        }
        (u8::try_from(f.code).unwrap_or(1), f.to_string())
    })
}
