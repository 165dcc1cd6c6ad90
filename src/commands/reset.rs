//! `kubelab reset LAB`: the Kubernetes cluster taken apart on every node
//! (`kubeadm reset -f`, runtime and CNI state), the VMs kept.

use std::path::Path;
use std::process::ExitCode;

use super::{Context, lab_and_runtime};

pub fn run(path: &Path, ctx: &Context) -> ExitCode {
    let (lab, rt) = match lab_and_runtime(path, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    if lab.kubernetes.is_none() {
        eprintln!(
            "error: reset: lab {} has no `kubernetes` section: there is no cluster to reset",
            lab.name
        );
        return ExitCode::from(2);
    }
    let stage = match crate::stage::for_playbook(&lab, "kubernetes/reset") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: reset: {e}");
            return ExitCode::from(1);
        }
    };
    let log = crate::state::run_log(&lab.name, "reset");
    let done = rt.block_on(super::run_stages(ctx, &lab, &[stage], false, Some(&log)));
    match done {
        Ok(()) => {
            let kubeconfig = crate::state::state_dir(&lab.name).join("kubeconfig");
            let removed = std::fs::remove_file(&kubeconfig).is_ok();
            if ctx.json {
                println!(
                    "{}",
                    serde_json::json!({"event": "reset", "lab": lab.name, "kubeconfig_removed": removed})
                );
            } else {
                println!(
                    "lab {}: cluster reset, VMs kept (`kubelab up` builds it again)",
                    lab.name
                );
            }
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("error: reset: {message}");
            eprintln!("log: {}", log.display());
            ExitCode::from(code)
        }
    }
}
