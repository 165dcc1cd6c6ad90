//! `kubelab status LAB`: VM, state, addresses, disks.

use std::path::Path;
use std::process::ExitCode;

use super::{Context, fail, lab_and_runtime};
use crate::provision;

pub fn run(path: &Path, ctx: &Context) -> ExitCode {
    let (lab, rt) = match lab_and_runtime(path, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    match rt.block_on(provision::status(&lab)) {
        Ok(vms) => {
            if ctx.json {
                println!(
                    "{}",
                    serde_json::json!({"event": "status", "lab": lab.name, "vms": vms,
                        "state_dir": crate::state::state_dir(&lab.name)})
                );
            } else {
                print!("{}", provision::table(&vms));
                println!("state: {}", crate::state::state_dir(&lab.name).display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(ctx, "status", &e),
    }
}
