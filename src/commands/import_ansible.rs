//! `kubelab import-ansible`: a lab file from a kube-ansible inventory and extra vars.

use std::io::Write;
use std::process::ExitCode;

use super::Context;
use crate::import::ansible::{ImportOptions, Note};

pub fn run(opts: &ImportOptions, ctx: &Context) -> ExitCode {
    let (json, color) = (ctx.json, ctx.color);
    let imported = match crate::import::ansible::import(opts) {
        Ok(i) => i,
        Err(errors) => {
            if json {
                for d in &errors.0 {
                    eprintln!("{}", d.to_json());
                }
            } else {
                eprint!("{}", errors.render(color));
                eprintln!("import-ansible: no lab written");
            }
            return ExitCode::from(1);
        }
    };
    for note in &imported.notes {
        if json {
            let (kind, var, text) = match note {
                Note::NotMapped { var, reason } => ("not-mapped", var, reason),
                Note::Adjusted { var, message } => ("adjusted", var, message),
            };
            eprintln!(
                "{}",
                serde_json::json!({"event": "import-note", "kind": kind, "variable": var, "message": text})
            );
        } else {
            eprintln!("{note}");
        }
    }
    match &opts.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &imported.lab) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::from(1);
            }
            if !json {
                eprintln!("wrote {}", path.display());
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            if out.write_all(imported.lab.as_bytes()).is_err() {
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
