//! `kubelab down LAB`: remove exactly the lab's objects and its inventory files.

use std::path::Path;
use std::process::ExitCode;

use super::{Context, fail, lab_and_runtime};
use crate::provision;

pub fn run(path: &Path, ctx: &Context) -> ExitCode {
    let (lab, rt) = match lab_and_runtime(path, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    match rt.block_on(provision::down(&lab)) {
        Ok(r) => {
            if ctx.json {
                println!(
                    "{}",
                    serde_json::json!({"event": "down", "lab": r.lab, "was_absent": r.was_absent,
                        "domains": r.domains, "networks": r.networks, "volumes": r.volumes,
                        "pool": r.pool, "state_files_removed": r.state_files_removed,
                        "virthost_released": r.virthost_released})
                );
            } else if r.was_absent {
                println!("lab {}: nothing of it is on the virthost", r.lab);
                print_released(&lab, &r.virthost_released);
            } else {
                print_released(&lab, &r.virthost_released);
                println!(
                    "lab {}: removed {} domain(s), {} network(s), {} volume(s){}",
                    r.lab,
                    r.domains.len(),
                    r.networks.len(),
                    r.volumes.len(),
                    r.pool
                        .as_deref()
                        .map(|p| format!(", pool {p}"))
                        .unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(ctx, "down", &e),
    }
}

/// What `down` gave back on the virthosts (each line naming its virthost
/// already in a lab over several).
fn print_released(lab: &crate::lab::Lab, lines: &[String]) {
    for line in lines {
        if lab.is_spread() {
            println!("virthost {line}");
        } else {
            println!("virthost: {line}");
        }
    }
}
