//! `kubelab doctor LAB`: is the virthost ready for the lab? Each finding with a fix.

use std::path::Path;
use std::process::ExitCode;

use super::{Context, fail, lab_and_runtime};
use crate::provision;
use crate::provision::doctor::Severity;

pub fn run(path: &Path, ctx: &Context) -> ExitCode {
    let (lab, rt) = match lab_and_runtime(path, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    match rt.block_on(provision::doctor(&lab)) {
        Ok(findings) => {
            let blocking = findings.iter().any(|f| f.severity == Severity::Blocking);
            if ctx.json {
                for f in &findings {
                    println!("{}", serde_json::json!({"event": "finding", "finding": f}));
                }
            } else {
                for f in &findings {
                    let tag = match f.severity {
                        Severity::Ok => "ok     ",
                        Severity::Warning => "warning",
                        Severity::Blocking => "BLOCKER",
                    };
                    println!("{tag} {:16} {}", f.check, f.message);
                    if !f.fix.is_empty() {
                        println!("        {:16} fix: {}", "", f.fix);
                    }
                }
            }
            if blocking {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => fail(ctx, "doctor", &e),
    }
}
