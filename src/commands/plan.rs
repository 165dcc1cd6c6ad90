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
            plan_stages(&lab, &rt, ctx)
        }
        Err(e) => fail(ctx, "plan", &e),
    }
}

/// The playbooks `up` would run, in check mode, when the VMs exist: per
/// host what would change, with diffs of templated files.
fn plan_stages(lab: &crate::lab::Lab, rt: &tokio::runtime::Runtime, ctx: &Context) -> ExitCode {
    let stages = match crate::stage::after_up_with(lab, crate::stage::Secrets::Ephemeral) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: plan: {e}");
            return ExitCode::from(1);
        }
    };
    if stages.is_empty() {
        return ExitCode::SUCCESS;
    }
    match provision::read_inventory(lab) {
        Ok(Some(_)) => {}
        Ok(None) => {
            if !ctx.json {
                println!(
                    "playbooks ({}): shown once the VMs exist (after the first `kubelab up`)",
                    stages
                        .iter()
                        .map(|s| s.title.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail(ctx, "plan", &e),
    }
    match rt.block_on(super::run_stages(ctx, lab, &stages, true, None)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("error: {message}");
            ExitCode::from(code)
        }
    }
}
