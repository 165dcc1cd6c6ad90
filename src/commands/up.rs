//! `kubelab up LAB [--timeout S]`: a bare virthost to running, reachable VMs.

use std::path::Path;
use std::process::ExitCode;

use super::{Context, fail, lab_and_runtime, up_steps};
use crate::provision;

pub fn run(path: &Path, options: &provision::UpOptions, ctx: &Context) -> ExitCode {
    let (lab, rt) = match lab_and_runtime(path, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let progress = up_steps(ctx, "up", &lab);
    let result = rt.block_on(provision::up(&lab, options, &progress));
    let log_path = progress.log_path().map(|p| p.to_path_buf());
    // the VM phase's summary, and its log complete before the stages append
    progress.finish(match &result {
        Ok(_) => 0,
        Err(e) => i32::from(e.exit_code()),
    });
    let log_path = log_path.as_deref();
    let title = format!("up {}", path.display());
    // a failed run: its forensics bundle first, so that the report names it
    let report = |failed: bool| {
        let bundle = failed
            .then(|| super::collect::after_failure(ctx, &lab, &rt, "up", None))
            .flatten();
        super::write_report(ctx, &title, Some(&lab), log_path, bundle.as_deref());
    };
    match result {
        Ok(r) => {
            let staged = match crate::stage::after_up(&lab) {
                Ok(stages) => rt.block_on(super::run_stages(ctx, &lab, &stages, false, log_path)),
                Err(e) => Err((1, e.to_string())),
            };
            if ctx.json {
                println!(
                    "{}",
                    serde_json::json!({"event": "up", "lab": r.lab, "changes": r.changes,
                        "virthost_changes": r.virthost_changes, "actions": r.plan.actions,
                        "domain_type": r.domain_type, "base_image": r.base_image,
                        "vms": r.vms, "restart_needed": r.restart_needed, "not_applied": r.not_applied,
                        "restarted": r.restarted, "lease": r.lease, "phases": r.phases,
                        "state_dir": r.state_dir, "boot_to_ssh_secs": r.boot_to_ssh_secs,
                        "total_secs": r.total_secs})
                );
            } else {
                print!("{}", provision::table(&r.vms));
                for vm in &r.restart_needed {
                    println!(
                        "RESTART NEEDED: {vm} runs with its old settings (the new ones apply at its next boot)"
                    );
                }
                for line in &r.not_applied {
                    println!("{line}");
                }
                for v in &r.restarted {
                    println!(
                        "RESTARTED: {} once after a {} at boot: {}",
                        v.vm, v.reason, v.detail
                    );
                }
                println!(
                    "lab {}: {} change{} (virthost: {} changed), all VMs answer SSH after {:.0}s, {:.0}s in all",
                    r.lab,
                    r.changes,
                    if r.changes == 1 { "" } else { "s" },
                    r.virthost_changes,
                    r.boot_to_ssh_secs,
                    r.total_secs
                );
                if let Some(l) = &r.lease {
                    println!("lease: {}", lease_line(l, crate::state::now_secs()));
                }
                println!("state: {}", r.state_dir.display());
                if let Some(log) = log_path {
                    println!("log:   {}", log.display());
                }
                println!(
                    "ssh:   ssh -F {} <vm>   or   kubelab ssh {} <vm>",
                    r.state_dir.join("ssh_config").display(),
                    path.display()
                );
            }
            report(staged.is_err());
            match staged {
                Ok(()) => {
                    merge_kubeconfig(&lab, ctx);
                    ExitCode::SUCCESS
                }
                Err((code, message)) => {
                    eprintln!("error: {message}");
                    if let Some(log) = log_path {
                        eprintln!("log: {}", log.display());
                    }
                    ExitCode::from(code)
                }
            }
        }
        Err(e) => {
            report(true);
            if let Some(log) = log_path {
                eprintln!("log: {}", log.display());
            }
            fail(ctx, "up", &e)
        }
    }
}

/// After a cluster is up: name the fetched kubeconfig, and merge it into
/// the user's (`$KUBECONFIG`'s first file, else ~/.kube/config) as context
/// `<lab>` when the lab asks for it.
fn merge_kubeconfig(lab: &crate::lab::Lab, ctx: &Context) {
    let Some(k) = &lab.kubernetes else {
        return;
    };
    let fetched = crate::state::state_dir(&lab.name).join("kubeconfig");
    if !fetched.exists() {
        return;
    }
    let target = std::env::var_os("KUBECONFIG")
        .and_then(|v| std::env::split_paths(&v).next())
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube/config")));
    let merged = match (k.merge_kubeconfig, target) {
        (true, Some(t)) => {
            Some(crate::kubernetes::cluster::merge_kubeconfig(&lab.name, &fetched, &t).map(|_| t))
        }
        _ => None,
    };
    if ctx.json {
        return;
    }
    println!("kubeconfig: {}", fetched.display());
    match merged {
        Some(Ok(t)) => println!("            context `{}` in {}", lab.name, t.display()),
        Some(Err(e)) => eprintln!("warning: kubeconfig not merged: {e}"),
        None => {}
    }
}

/// `owner ci@runner, expires 20261203T180000Z (in 7h59m)`, or `no expiry`.
pub fn lease_line(l: &crate::virthost::spec::Lease, now: u64) -> String {
    use crate::lab::duration::format_duration;
    match l.expires {
        Some(e) if e > now => format!(
            "owner {}, expires {} (in {})",
            l.owner,
            crate::state::utc_stamp_secs(e),
            format_duration(e - now)
        ),
        Some(e) => format!(
            "owner {}, EXPIRED {} ({} ago)",
            l.owner,
            crate::state::utc_stamp_secs(e),
            format_duration(now - e)
        ),
        None => format!("owner {}, no expiry", l.owner),
    }
}
