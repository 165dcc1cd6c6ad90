//! `kubelab validate LAB...`: check lab files and explain every mistake.

use std::io::Write;
use std::process::ExitCode;

use super::Context;
use crate::lab;

pub fn run(labs: &[std::path::PathBuf], ctx: &Context) -> ExitCode {
    let (opts, json, quiet, color) = (&ctx.load, ctx.json, ctx.quiet, ctx.color);
    let mut all_ok = true;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for path in labs {
        let (diags, summary) = match lab::load(path, opts) {
            Ok((lab, warnings)) => (warnings, Some(crate::report::lab_summary(&lab))),
            Err(errors) => (errors, None),
        };
        all_ok &= summary.is_some();
        if json {
            for d in &diags.0 {
                let _ = writeln!(out, "{}", d.to_json());
            }
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({"event": "validated", "file": path.display().to_string(),
                    "valid": summary.is_some(), "errors": diags.error_count()})
            );
        } else {
            let rendered = diags.render(color);
            if !rendered.is_empty() && (!quiet || diags.has_errors()) {
                eprint!("{rendered}");
            }
            match summary {
                Some(s) if !quiet => {
                    let _ = writeln!(out, "{}: valid: {s}", path.display());
                }
                Some(_) => {}
                None => eprintln!(
                    "{}: {} error{}",
                    path.display(),
                    diags.error_count(),
                    if diags.error_count() == 1 { "" } else { "s" }
                ),
            }
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
