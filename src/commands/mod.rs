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

/// `up`'s progress through the engine's output sinks, so that its
/// virthost and VM phases look and log like the playbook stages after it:
/// one bar per host on a terminal (indicatif), plain timestamped lines
/// otherwise, JSON events with `--json`, and every step with its full
/// message in the run's log `<state>/runs/<UTC time>-<command>.log`.
pub struct EngineProgress {
    reporter: crate::output::Reporter,
    location: String,
    log_path: Option<std::path::PathBuf>,
    t0: std::time::Instant,
    play: std::sync::Mutex<String>,
    started: std::sync::Mutex<std::collections::HashMap<(String, String), std::time::Instant>>,
    tallies: std::sync::Mutex<Vec<crate::output::HostTally>>,
    failures: std::sync::Mutex<Vec<crate::output::Failure>>,
}

impl EngineProgress {
    /// Sinks as for playbooks; the run starts (hosts: the virthost and the
    /// lab's VMs).
    pub fn new(ctx: &Context, command: &str, lab: &Lab) -> Self {
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
        reporter.emit(crate::output::Event::RunStart {
            playbook: format!("{command} {}", lab.file.display()),
            check: false,
            hosts,
        });
        EngineProgress {
            reporter,
            location: lab.file.display().to_string(),
            log_path,
            t0: std::time::Instant::now(),
            play: std::sync::Mutex::new(String::new()),
            started: Default::default(),
            tallies: Default::default(),
            failures: Default::default(),
        }
    }

    /// Where this run's log is (printed at the end and on failure).
    pub fn log_path(&self) -> Option<&std::path::Path> {
        self.log_path.as_deref()
    }

    /// The end of the run: its summary to every sink; the log is complete
    /// (and closed) afterwards.
    pub fn finish(self, exit_code: i32) {
        let summary = crate::output::Summary {
            hosts: self.tallies.lock().map(|t| t.clone()).unwrap_or_default(),
            failures: self.failures.lock().map(|f| f.clone()).unwrap_or_default(),
            check: false,
            log: self.log_path.as_ref().map(|p| p.display().to_string()),
            duration_ms: u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX),
            exit_code,
        };
        self.reporter.emit(crate::output::Event::RunEnd { summary });
    }

    fn tally(&self, host: &str, status: crate::output::Status) {
        use crate::output::Status;
        if let Ok(mut all) = self.tallies.lock() {
            let i = match all.iter().position(|t| t.host == host) {
                Some(i) => i,
                None => {
                    all.push(crate::output::HostTally {
                        host: host.to_string(),
                        ..Default::default()
                    });
                    all.len() - 1
                }
            };
            let t = &mut all[i];
            match status {
                Status::Ok => t.ok += 1,
                Status::Changed => t.changed += 1,
                Status::Skipped => t.skipped += 1,
                Status::Failed => t.failed += 1,
                Status::Unreachable => t.unreachable = true,
            }
        }
    }
}

impl Progress for EngineProgress {
    fn phase(&self, name: &str, hosts: &[String], steps: usize) {
        if let Ok(mut p) = self.play.lock() {
            *p = name.to_string();
        }
        self.reporter.emit(crate::output::Event::PlayStart {
            play: name.to_string(),
            hosts: hosts.to_vec(),
            steps,
        });
    }

    fn start(&self, host: &str, step: &str) {
        if let Ok(mut s) = self.started.lock() {
            s.insert(
                (host.to_string(), step.to_string()),
                std::time::Instant::now(),
            );
        }
        self.reporter.emit(crate::output::Event::StepStart {
            host: host.to_string(),
            play: self.play.lock().map(|p| p.clone()).unwrap_or_default(),
            step: step.to_string(),
            location: self.location.clone(),
        });
    }

    fn end(&self, host: &str, step: &str, status: crate::output::Status, message: &str) {
        let play = self.play.lock().map(|p| p.clone()).unwrap_or_default();
        let duration_ms = self
            .started
            .lock()
            .ok()
            .and_then(|mut s| s.remove(&(host.to_string(), step.to_string())))
            .map_or(0, |t| {
                u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
            });
        self.tally(host, status);
        if status == crate::output::Status::Failed
            && let Ok(mut f) = self.failures.lock()
        {
            f.push(crate::output::Failure {
                host: host.to_string(),
                play: play.clone(),
                step: step.to_string(),
                location: self.location.clone(),
                message: message.to_string(),
                stderr_tail: String::new(),
            });
        }
        self.reporter.emit(crate::output::Event::StepEnd {
            host: host.to_string(),
            play,
            step: step.to_string(),
            location: self.location.clone(),
            module: "up".to_string(),
            status,
            changed: status == crate::output::Status::Changed,
            duration_ms,
            message: message.to_string(),
            stdout: String::new(),
            stderr: String::new(),
            diff: None,
        });
    }

    fn phase_end(&self, name: &str) {
        self.reporter.emit(crate::output::Event::PlayEnd {
            play: name.to_string(),
        });
    }

    fn vm_restarted(&self, vm: &str, reason: &str, detail: &str) {
        self.reporter.emit(crate::output::Event::VmRestarted {
            vm: vm.to_string(),
            reason: reason.to_string(),
            detail: detail.to_string(),
        });
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
            inline: None,
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
