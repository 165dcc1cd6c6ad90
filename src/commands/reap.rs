//! `kubelab reap [--virthost REF] [--dry-run] [--older-than D]`: remove the
//! labs whose time is up, for a cron job on a shared virthost.

use std::process::ExitCode;

use super::{Context, fail, virthost_and_runtime};
use crate::provision::{self, ReapOptions};

pub fn run(reference: &str, options: &ReapOptions, ctx: &Context) -> ExitCode {
    let (virthost, rt) = match virthost_and_runtime(reference, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let reaped = match rt.block_on(provision::reap(&virthost, options)) {
        Ok(r) => r,
        Err(e) => return fail(ctx, "reap", &e),
    };
    let failed = reaped.iter().filter(|r| r.outcome == "failed").count();
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"event": "reap", "virthost": reference,
                "dry_run": options.dry_run, "labs": reaped, "failed": failed})
        );
    } else {
        for r in reaped.iter().filter(|r| r.outcome != "kept") {
            let what = match r.outcome {
                "removed" => {
                    let d = r.removed.as_ref();
                    format!(
                        "removed ({} VM(s), {} network(s), {} volume(s))",
                        d.map(|d| d.domains.len()).unwrap_or(0),
                        d.map(|d| d.networks.len()).unwrap_or(0),
                        d.map(|d| d.volumes.len()).unwrap_or(0)
                    )
                }
                "would-remove" => "would be removed".into(),
                "locked" => "in use, kept".into(),
                other => other.to_uppercase(),
            };
            println!("lab {}: {what}: {}", r.lab, r.why);
        }
        let kept = reaped.iter().filter(|r| r.outcome == "kept").count();
        println!(
            "{} lab(s) {}, {kept} not due{}",
            reaped
                .iter()
                .filter(|r| matches!(r.outcome, "removed" | "would-remove"))
                .count(),
            if options.dry_run { "due" } else { "removed" },
            if failed > 0 {
                format!(", {failed} FAILED")
            } else {
                String::new()
            }
        );
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
