//! One call for the commands that run playbooks (`kubelab up`, `kubelab
//! plan`, …): load and check the playbook, set up the sinks (terminal or
//! plain lines, `--json`, the log file), run or plan, print the plan or
//! summary, and return the exit code (0 success, 1 failed steps, 2 invalid
//! input, 3 unreachable hosts).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use crate::executor::{Executor, RunOptions};
use crate::inventory::Inventory;
use crate::output::{JsonSink, LogSink, Reporter};
use crate::plan::Plan;
use crate::redact::Redactor;
use crate::template::Templates;
use crate::template::Vars;

/// What to run and how to report it.
#[derive(Clone, Debug, Default)]
pub struct PlaybookRun {
    /// A playbook file, or the name of a built-in one (`nodeprep-bench`).
    pub playbook: PathBuf,
    /// The playbook, typed, when kubelab made it (`playbook` then only
    /// names it in messages).
    pub generated: Option<crate::playbook::Playbook>,
    /// `--playbook-dir`: playbooks here win over the built-in ones.
    pub playbook_dir: Option<PathBuf>,
    /// `--template-dir`: templates here win over the embedded ones.
    pub template_dir: Option<PathBuf>,
    /// `--check` / `kubelab plan`.
    pub check: bool,
    /// `--var name=value`.
    pub extra_vars: Vars,
    pub tags: Vec<String>,
    /// One JSON event per line on stdout.
    pub json: bool,
    pub quiet: bool,
    pub color: bool,
    /// The per-run log file.
    pub log_path: Option<PathBuf>,
    /// Show unchanged steps in a plan too.
    pub verbose: bool,
}

/// `name=value` from the command line; the value is JSON when it parses as
/// JSON (`3`, `true`, `["a"]`), else the text as it is.
pub fn parse_var(text: &str) -> Result<(String, serde_json::Value), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected name=value"))?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("`{name}` is not a variable name"));
    }
    let value = serde_json::from_str(value)
        .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
    Ok((name.to_string(), value))
}

/// Load, run (or plan) and report; returns the process exit code.
pub async fn run_playbook(inventory: Inventory, req: &PlaybookRun) -> i32 {
    match execute(inventory, req).await {
        Ok(report) => report.exit_code(),
        Err(code) => code,
    }
}

/// Load, run (or plan) and report; the run's report (in check mode, the
/// plan's), or exit code 2 when the playbook is invalid (already reported).
pub async fn execute(
    inventory: Inventory,
    req: &PlaybookRun,
) -> Result<crate::executor::RunReport, i32> {
    let templates = Arc::new(Templates::new(req.template_dir.clone()));
    let loaded = match &req.generated {
        Some(playbook) => Ok(playbook.clone()),
        None => crate::playbook::find(&req.playbook.to_string_lossy(), req.playbook_dir.as_deref())
            .map_err(|message| {
                crate::diagnostic::Diagnostics(vec![crate::diagnostic::Diagnostic::error(
                    &crate::diagnostic::SourceFile::new(&req.playbook, String::new()),
                    None,
                    message,
                )])
            })
            .and_then(|(path, text)| {
                crate::playbook::load_str_in(&path, &text, &templates, req.playbook_dir.as_deref())
            }),
    };
    let playbook = match loaded {
        Ok(p) => p,
        Err(diags) => {
            if req.json {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                for d in &diags.0 {
                    let _ = writeln!(out, "{}", d.to_json());
                }
            } else {
                eprint!("{}", diags.render(req.color));
                eprintln!(
                    "{}: {} error(s)",
                    req.playbook.display(),
                    diags.error_count()
                );
            }
            return Err(2);
        }
    };
    let redactor = Redactor::new();
    let mut reporter = Reporter::new(redactor.clone());
    reporter = if req.json {
        reporter.with_sink(Box::new(JsonSink::new(std::io::stdout())))
    } else {
        reporter.with_sink(crate::output::stderr_sink(req.quiet))
    };
    let mut log_name = None;
    if let Some(path) = &req.log_path {
        match LogSink::create(path) {
            Ok(sink) => {
                log_name = Some(path.display().to_string());
                reporter = reporter.with_sink(Box::new(sink));
            }
            Err(e) => eprintln!("warning: cannot write the log {}: {e}", path.display()),
        }
    }
    let options = RunOptions {
        check: req.check,
        extra_vars: req.extra_vars.clone(),
        tags: req.tags.clone(),
        log_path: log_name,
    };
    let executor = Executor::new(inventory, templates, Arc::new(reporter), options);
    if req.check {
        let (plan, report) = Plan::make(&executor, &playbook, &redactor).await;
        if req.json {
            if let Ok(line) =
                serde_json::to_string(&serde_json::json!({"event": "plan", "plan": plan}))
            {
                println!("{line}");
            }
        } else {
            print!("{}", plan.render(req.verbose));
        }
        Ok(report)
    } else {
        Ok(executor.run(&playbook).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vars() {
        assert_eq!(
            parse_var("a=1").unwrap(),
            ("a".into(), serde_json::json!(1))
        );
        assert_eq!(
            parse_var("a=x y").unwrap(),
            ("a".into(), serde_json::json!("x y"))
        );
        assert_eq!(
            parse_var("a=").unwrap(),
            ("a".into(), serde_json::json!(""))
        );
        assert!(parse_var("novalue").is_err());
        assert!(parse_var("a b=1").is_err());
    }
}
