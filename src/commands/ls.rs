//! `kubelab ls [--virthost REF]`: the labs on a virthost, from libvirt's
//! metadata alone.

use std::process::ExitCode;

use super::{Context, fail, virthost_and_runtime};
use crate::lab::duration::format_duration;
use crate::lab::size::format_size_approx;
use crate::provision;
use crate::virthost::libvirt::LabListing;

pub fn run(reference: &str, ctx: &Context) -> ExitCode {
    let (virthost, rt) = match virthost_and_runtime(reference, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    match rt.block_on(provision::list_labs(&virthost)) {
        Ok(labs) => {
            if ctx.json {
                println!(
                    "{}",
                    serde_json::json!({"event": "ls", "virthost": reference, "labs": labs,
                        "now": crate::state::utc_stamp_secs(crate::state::now_secs())})
                );
            } else {
                print!("{}", table(&labs, crate::state::now_secs()));
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(ctx, "ls", &e),
    }
}

/// One row per lab: name, owner, age, expiry, VMs, memory, disk.
pub fn table(labs: &[LabListing], now: u64) -> String {
    let mut rows =
        vec![["LAB", "OWNER", "AGE", "EXPIRES", "VMS", "MEMORY", "DISK"].map(str::to_string)];
    for l in labs {
        let (owner, age, expires) = match &l.lease {
            Some(lease) => (
                lease.owner.clone(),
                format_duration(now.saturating_sub(lease.created)),
                match lease.expires {
                    Some(e) if e > now => format!("in {}", format_duration(e - now)),
                    Some(e) => format!("EXPIRED {} ago", format_duration(now - e)),
                    None => "never".into(),
                },
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        rows.push([
            l.lab.clone(),
            owner,
            age,
            expires,
            format!("{}/{} running", l.vms_running, l.vms),
            format!(
                "{} ({} running)",
                format_size_approx(l.memory_mib << 20),
                format_size_approx(l.memory_running_mib << 20)
            ),
            format_size_approx(l.disk_bytes),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = (0..7)
            .map(|i| format!("{:w$}", r[i], w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    if labs.is_empty() {
        out.push_str("(no kubelab lab on this virthost)\n");
    }
    out
}
