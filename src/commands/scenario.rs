//! The scenario commands on an up lab:
//! - `kubelab scenario LAB NAME PHASE`: one phase of one scenario;
//! - `kubelab verify LAB [--scenario NAME] [--junit FILE]`: every (or one)
//!   scenario's checks; exit 1 when any fails;
//! - `kubelab chaos LAB NAME`: break, verify (must fail), repair, verify
//!   (must pass).
//!
//! Each phase is the built-in playbook `scenarios/<name>/<phase>` run on
//! the lab's VMs over one connection per VM for the whole command.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{Context, lab_and_runtime};
use crate::executor::RunReport;
use crate::lab::Lab;
use crate::scenario::ScenarioFile;
use crate::stage::{LabHosts, Phase, Stage};

/// The scenario of the lab named `name`; exit 2 with the lab's list if none.
fn find<'a>(lab: &'a Lab, name: &str) -> Result<&'a ScenarioFile, ExitCode> {
    lab.scenarios
        .iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| {
            let listed: Vec<&str> = lab.scenarios.iter().map(|s| s.name()).collect();
            eprintln!(
                "error: lab {} has no scenario `{name}` (its scenarios: {})",
                lab.name,
                if listed.is_empty() {
                    "none".to_string()
                } else {
                    listed.join(", ")
                }
            );
            ExitCode::from(2)
        })
}

/// A phase's stage, or exit 2 when the scenario has no such playbook.
fn stage_of(lab: &Lab, s: &ScenarioFile, phase: Phase, ctx: &Context) -> Result<Stage, ExitCode> {
    let stage = Stage::scenario(lab, s, phase);
    if crate::stage::playbook_exists(&stage.playbook, ctx.playbook_dir.as_deref()) {
        Ok(stage)
    } else {
        eprintln!(
            "error: scenario `{}` has no {} phase (no playbook {})",
            s.name(),
            phase.as_str(),
            stage.playbook
        );
        Err(ExitCode::from(2))
    }
}

/// Everything a scenario command holds for its whole run.
struct Session {
    lab: Lab,
    rt: tokio::runtime::Runtime,
    hosts: LabHosts,
    log: PathBuf,
    /// `verify labs/x.yaml`, the report's title.
    title: String,
}

impl Session {
    fn open(path: &Path, ctx: &Context, command: &str) -> Result<Session, ExitCode> {
        let (lab, rt) = lab_and_runtime(path, ctx)?;
        let hosts = match rt.block_on(LabHosts::connect(&lab)) {
            Ok(h) => h,
            Err(e) => return Err(super::fail(ctx, command, &e)),
        };
        let log = crate::state::run_log(&lab.name, command);
        Ok(Session {
            title: format!("{command} {}", path.display()),
            lab,
            rt,
            hosts,
            log,
        })
    }

    /// Run a stage; its report, or the exit code of an invalid playbook.
    fn run(&self, stage: &Stage, ctx: &Context) -> Result<RunReport, i32> {
        if !ctx.quiet && !ctx.json {
            eprintln!("== {} ({})", stage.title, stage.playbook);
        }
        let mut req = ctx.playbook_run(false, Some(&self.log));
        req.playbook = stage.playbook.clone().into();
        self.rt.block_on(crate::runner::execute(
            self.hosts.inventory(&self.lab, stage),
            &req,
        ))
    }

    /// After a failed run, the forensics bundle (over the run's own
    /// connections); then close them and write the run's report.
    fn close(self, ctx: &Context, command: &str, failed: bool) {
        let bundle = failed
            .then(|| {
                super::collect::after_failure(ctx, &self.lab, &self.rt, command, Some(&self.hosts))
            })
            .flatten();
        self.rt.block_on(self.hosts.close());
        super::write_report(
            ctx,
            &self.title,
            Some(&self.lab),
            Some(&self.log),
            bundle.as_deref(),
        );
    }
}

/// Whether a command's outcome is success (a bad argument, exit 2 before
/// anything ran, is not a failed run to collect for either).
fn is_success(result: &Result<ExitCode, ExitCode>) -> bool {
    match result {
        Ok(c) => *c == ExitCode::SUCCESS,
        Err(_) => true,
    }
}

fn code(c: i32) -> ExitCode {
    ExitCode::from(u8::try_from(c).unwrap_or(1))
}

/// `kubelab scenario LAB NAME PHASE`.
pub fn phase(path: &Path, name: &str, phase: Phase, ctx: &Context) -> ExitCode {
    let session = match Session::open(path, ctx, "scenario") {
        Ok(s) => s,
        Err(c) => return c,
    };
    let result = find(&session.lab, name)
        .and_then(|s| stage_of(&session.lab, s, phase, ctx))
        .map(|stage| session.run(&stage, ctx));
    session.close(ctx, "scenario", false);
    match result {
        Err(c) => c,
        Ok(Err(c)) => code(c),
        Ok(Ok(report)) => code(report.exit_code()),
    }
}

/// `kubelab verify LAB [--scenario NAME] [--junit FILE]`.
pub fn verify(path: &Path, only: Option<&str>, junit: Option<&Path>, ctx: &Context) -> ExitCode {
    let session = match Session::open(path, ctx, "verify") {
        Ok(s) => s,
        Err(c) => return c,
    };
    let result = verify_all(&session, only, junit, ctx);
    session.close(ctx, "verify", !is_success(&result));
    result.unwrap_or_else(|c| c)
}

fn verify_all(
    session: &Session,
    only: Option<&str>,
    junit: Option<&Path>,
    ctx: &Context,
) -> Result<ExitCode, ExitCode> {
    let lab = &session.lab;
    let scenarios: Vec<&ScenarioFile> = match only {
        Some(name) => vec![find(lab, name)?],
        None => lab.scenarios.iter().collect(),
    };
    if scenarios.is_empty() {
        eprintln!("error: lab {} lists no scenarios to verify", lab.name);
        return Err(ExitCode::from(2));
    }
    let stages = scenarios
        .iter()
        .map(|s| stage_of(lab, s, Phase::Verify, ctx))
        .collect::<Result<Vec<_>, _>>()?;
    let mut reports = Vec::new();
    for (s, stage) in scenarios.iter().zip(&stages) {
        match session.run(stage, ctx) {
            Ok(r) => reports.push((s.name(), r)),
            Err(c) => return Err(code(c)),
        }
    }
    if let Some(file) = junit {
        let suites: Vec<crate::junit::Suite> = reports
            .iter()
            .map(|(name, report)| crate::junit::Suite { name, report })
            .collect();
        if let Err(e) = std::fs::write(file, crate::junit::render(&suites)) {
            eprintln!("error: cannot write {}: {e}", file.display());
            return Err(ExitCode::from(1));
        }
    }
    let worst = reports
        .iter()
        .map(|(_, r)| r.exit_code())
        .max()
        .unwrap_or(0);
    let results: Vec<serde_json::Value> = reports
        .iter()
        .map(|(name, r)| serde_json::json!({"scenario": name, "passed": r.success()}))
        .collect();
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"event": "verify", "lab": lab.name, "scenarios": results,
                "passed": worst == 0})
        );
    } else {
        for (name, r) in &reports {
            println!("{name}: {}", if r.success() { "PASSED" } else { "FAILED" });
        }
    }
    Ok(code(worst))
}

/// `kubelab chaos LAB NAME`.
pub fn chaos(path: &Path, name: &str, ctx: &Context) -> ExitCode {
    let session = match Session::open(path, ctx, "chaos") {
        Ok(s) => s,
        Err(c) => return c,
    };
    let result = chaos_cycle(&session, name, ctx);
    session.close(ctx, "chaos", !is_success(&result));
    result.unwrap_or_else(|c| c)
}

fn chaos_cycle(session: &Session, name: &str, ctx: &Context) -> Result<ExitCode, ExitCode> {
    let lab = &session.lab;
    let s = find(lab, name)?;
    let [brk, verify, repair] =
        [Phase::Break, Phase::Verify, Phase::Repair].map(|p| stage_of(lab, s, p, ctx));
    let (brk, verify, repair) = (brk?, verify?, repair?);
    let mut outcome = Vec::new();
    let mut step = |what: &str, ok: bool| {
        outcome.push(serde_json::json!({"step": what, "ok": ok}));
        if !ctx.json {
            println!("chaos {name}: {what}: {}", if ok { "ok" } else { "FAILED" });
        }
        ok
    };
    let run = |stage: &Stage| session.run(stage, ctx).map_err(code);
    let ok = step("break", run(&brk)?.success())
        && step("verify fails while broken", run(&verify)?.exit_code() == 1)
        && step("repair", run(&repair)?.success())
        && step("verify passes after repair", run(&verify)?.success());
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"event": "chaos", "lab": lab.name, "scenario": name,
                "steps": outcome, "passed": ok})
        );
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
