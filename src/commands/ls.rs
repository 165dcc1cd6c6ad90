//! `kubelab ls [--virthost REF]...`: the labs on one or several virthosts,
//! from libvirt's metadata alone. Several virthosts are asked in parallel,
//! one connection each; a lab spread over them shows once per virthost
//! with its part there. A virthost that does not answer is named and makes
//! the exit code non-zero; the others are listed all the same.

use std::process::ExitCode;

use super::{Context, runtime};
use crate::lab::duration::format_duration;
use crate::lab::model::Virthost;
use crate::lab::size::format_size_approx;
use crate::provision::{self, ProvisionError};
use crate::virthost::libvirt::LabListing;

pub fn run(references: &[String], ctx: &Context) -> ExitCode {
    // The same virthost named twice is asked once.
    let mut unique: Vec<&str> = Vec::new();
    for r in references {
        if !unique.contains(&r.as_str()) {
            unique.push(r);
        }
    }
    // Every reference is checked before any virthost is asked.
    let mut virthosts: Vec<(&str, Virthost)> = Vec::new();
    for reference in unique {
        match super::load_virthost(reference, ctx) {
            Ok(v) => virthosts.push((reference, v)),
            Err(c) => return c,
        }
    }
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(c) => return c,
    };
    let answers = rt.block_on(futures::future::join_all(
        virthosts.iter().map(|(_, v)| provision::list_labs(v)),
    ));
    let now = crate::state::now_secs();
    let mut listed: Vec<(&str, Vec<LabListing>)> = Vec::new();
    let mut exit = ExitCode::SUCCESS;
    for ((reference, _), answer) in virthosts.iter().zip(answers) {
        match answer {
            Ok(labs) => {
                if ctx.json {
                    println!(
                        "{}",
                        serde_json::json!({"event": "ls", "virthost": reference, "labs": labs,
                            "now": crate::state::utc_stamp_secs(now)})
                    );
                }
                listed.push((reference, labs));
            }
            Err(e) => exit = unanswered(ctx, reference, &e),
        }
    }
    // A virthost that did not answer is named on stderr, not listed as empty.
    if !ctx.json && !listed.is_empty() {
        print!("{}", table(&listed, virthosts.len() > 1, now));
    }
    exit
}

/// Says that `reference` did not answer: the error event with `--json`,
/// always a line on stderr. Its exit code.
fn unanswered(ctx: &Context, reference: &str, e: &ProvisionError) -> ExitCode {
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"event": "error", "command": "ls", "virthost": reference,
                "message": e.to_string(), "exit_code": e.exit_code()})
        );
    }
    eprintln!("error: ls: virthost {reference}: {e}");
    ExitCode::from(e.exit_code())
}

/// One row per lab and virthost: (the virthost,) name, owner, age,
/// expiry, VMs, memory, disk.
pub fn table(listed: &[(&str, Vec<LabListing>)], with_virthost: bool, now: u64) -> String {
    let mut header = vec!["LAB", "OWNER", "AGE", "EXPIRES", "VMS", "MEMORY", "DISK"];
    if with_virthost {
        header.insert(0, "VIRTHOST");
    }
    let mut rows = vec![header.into_iter().map(str::to_string).collect::<Vec<_>>()];
    for (virthost, labs) in listed {
        for l in labs {
            let mut row = with_virthost
                .then(|| virthost.to_string())
                .into_iter()
                .collect::<Vec<_>>();
            row.extend(lab_row(l, now));
            rows.push(row);
        }
    }
    let mut out = crate::columns::render(&rows);
    if rows.len() == 1 {
        out.push_str(if with_virthost {
            "(no kubelab lab on these virthosts)\n"
        } else {
            "(no kubelab lab on this virthost)\n"
        });
    }
    out
}

fn lab_row(l: &LabListing, now: u64) -> [String; 7] {
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
    [
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
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virthost::spec::Lease;

    fn lab(name: &str, vms: usize) -> LabListing {
        LabListing {
            lab: name.into(),
            lease: Some(Lease {
                owner: "ci@runner".into(),
                created: 1_000,
                expires: Some(1_000 + 7_200),
            }),
            vms,
            vms_running: vms,
            memory_mib: 1024 * vms as u64,
            memory_running_mib: 1024 * vms as u64,
            networks: 1,
            disk_bytes: 3 << 30,
            pool_path: None,
        }
    }

    #[test]
    fn one_virthost_has_no_virthost_column() {
        let text = table(&[("local", vec![lab("ipv6", 3)])], false, 1_000 + 3_600);
        let mut lines = text.lines();
        assert!(lines.next().unwrap().starts_with("LAB "));
        let row = lines.next().unwrap();
        assert!(row.starts_with("ipv6  ci@runner"), "{row}");
        assert!(
            row.contains("in 1h") && row.contains("3/3 running"),
            "{row}"
        );
    }

    #[test]
    fn a_spread_lab_shows_once_per_virthost() {
        let text = table(
            &[
                ("rack-a", vec![lab("big", 2)]),
                ("rack-b", vec![lab("big", 1), lab("other", 1)]),
            ],
            true,
            1_000,
        );
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().take(2).collect())
            .collect();
        assert_eq!(
            rows,
            [
                ["VIRTHOST", "LAB"],
                ["rack-a", "big"],
                ["rack-b", "big"],
                ["rack-b", "other"]
            ]
        );
        assert!(text.contains("2/2 running") && text.contains("1/1 running"));
    }

    #[test]
    fn nothing_listed_says_so() {
        assert!(
            table(&[("local", vec![])], false, 0).ends_with("(no kubelab lab on this virthost)\n")
        );
        assert!(
            table(&[("a", vec![]), ("b", vec![])], true, 0)
                .ends_with("(no kubelab lab on these virthosts)\n")
        );
    }
}
