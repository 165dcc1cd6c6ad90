//! `kubelab plan LAB`: what `up` would change, without changing anything.

use std::path::Path;
use std::process::ExitCode;

use super::{Context, fail, lab_and_runtime};
use crate::provision;

pub fn run(path: &Path, ctx: &Context) -> ExitCode {
    let (lab, rt) = match lab_and_runtime(path, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    match rt.block_on(provision::plan(&lab)) {
        Ok((p, why)) => {
            if ctx.json {
                println!(
                    "{}",
                    serde_json::json!({"event": "plan", "lab": lab.name, "changes": p.changes(),
                        "actions": p.actions, "domain_type": why})
                );
            } else {
                for a in &p.actions {
                    println!("  {a}");
                }
                println!(
                    "lab {}: {} change{} (domain type {why}; the virthost preparation and base image are not part of the plan)",
                    lab.name,
                    p.changes(),
                    if p.changes() == 1 { "" } else { "s" }
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(ctx, "plan", &e),
    }
}
