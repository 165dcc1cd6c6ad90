//! `kubelab collect LAB [-o FILE.tar.gz]`: the lab's forensics bundle; and
//! the bundle a failed `up`, `verify` or `chaos` leaves (see
//! [`after_failure`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::{Context, lab_and_runtime};
use crate::forensics::{self, Collected, Evidence, Options, Reach};
use crate::lab::Lab;
use crate::stage::{LabHosts, Phase, Stage};

pub fn run(
    path: &Path,
    output: Option<&Path>,
    options: &Options,
    verify: bool,
    ctx: &Context,
) -> ExitCode {
    let (lab, rt) = match lab_and_runtime(path, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let out = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| crate::state::forensics_bundle(&lab.name, "collect"));
    let hosts = rt.block_on(LabHosts::connect(&lab)).ok();
    let evidence = match (&hosts, verify) {
        (Some(h), true) => rt.block_on(scenario_checks(&lab, h, ctx, options.timeout)),
        _ => Vec::new(),
    };
    let reach = hosts.as_ref().map(Reach::Hosts).unwrap_or(Reach::Open);
    let result = rt.block_on(forensics::collect(&lab, reach, evidence, &out, options));
    if let Some(h) = hosts {
        rt.block_on(h.close());
    }
    match result {
        Ok(c) => {
            if ctx.json {
                println!("{}", event("collect", &c));
            } else {
                print!("{}", summary(&c));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write {}: {e}", out.display());
            ExitCode::from(1)
        }
    }
}

/// After a failed run of `command`: the bundle under
/// `<state>/forensics/`, its path said on stderr (or as a `forensics`
/// event); `None` with `--no-collect` or when it cannot be written. A
/// scenario command passes its connections (`hosts`); the run log already
/// holds the failed checks, so they are not run again.
pub fn after_failure(
    ctx: &Context,
    lab: &Lab,
    rt: &tokio::runtime::Runtime,
    command: &str,
    hosts: Option<&LabHosts>,
) -> Option<PathBuf> {
    if !ctx.collect {
        return None;
    }
    let out = crate::state::forensics_bundle(&lab.name, command);
    if !ctx.quiet && !ctx.json {
        eprintln!("collecting forensics (--no-collect to skip)…");
    }
    let reach = hosts.map(Reach::Hosts).unwrap_or(Reach::Open);
    let options = Options {
        timeout: Duration::from_secs(20),
        ..Options::default()
    };
    match rt.block_on(forensics::collect(lab, reach, Vec::new(), &out, &options)) {
        Ok(c) => {
            if ctx.json {
                println!("{}", event("forensics", &c));
            } else {
                eprintln!(
                    "forensics: {} ({} files, {} missing)",
                    c.path.display(),
                    c.files.len(),
                    c.missing.len()
                );
            }
            Some(c.path)
        }
        Err(e) => {
            eprintln!("warning: no forensics bundle ({}: {e})", out.display());
            None
        }
    }
}

fn event(name: &str, c: &Collected) -> serde_json::Value {
    let mut v = serde_json::to_value(c).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("event".into(), name.into());
    }
    v
}

fn summary(c: &Collected) -> String {
    let mut s = format!(
        "forensics: {} ({} files, {} uncompressed, {:.0}s)\n",
        c.path.display(),
        c.files.len(),
        crate::lab::size::format_size_approx(c.bytes),
        c.secs
    );
    for m in &c.missing {
        s.push_str(&format!("  missing {}: {}\n", m.what, m.why));
    }
    s
}

/// Each scenario's checks, run once more for their output: one log per
/// scenario (whatever its result), bounded in time.
async fn scenario_checks(
    lab: &Lab,
    hosts: &LabHosts,
    ctx: &Context,
    timeout: Duration,
) -> Vec<Evidence> {
    let Ok(dir) = crate::provision::access::private_dir() else {
        return Vec::new();
    };
    let quiet = Context {
        json: false,
        quiet: true,
        ..ctx.clone()
    };
    let mut out = Vec::new();
    for s in &lab.scenarios {
        let stage = Stage::scenario(lab, s, Phase::Verify);
        if !crate::stage::playbook_exists(&stage.playbook, ctx.playbook_dir.as_deref()) {
            continue;
        }
        let log = dir.join(format!("{}-verify.log", s.name()));
        let mut req = quiet.playbook_run(false, Some(&log));
        req.playbook = stage.playbook.clone().into();
        let limit = timeout.max(Duration::from_secs(120));
        let ran = tokio::time::timeout(
            limit,
            crate::runner::execute(hosts.inventory(lab, &stage), &req),
        )
        .await;
        let mut data = std::fs::read(&log).unwrap_or_default();
        let verdict = match ran {
            Ok(Ok(r)) if r.success() => "PASSED".to_string(),
            Ok(Ok(_)) => "FAILED".to_string(),
            Ok(Err(code)) => format!("did not run (exit code {code})"),
            Err(_) => format!("did not finish within {}s", limit.as_secs()),
        };
        data.extend_from_slice(format!("\nverify {}: {verdict}\n", s.name()).as_bytes());
        out.push(Evidence {
            path: format!("scenarios/{}-verify.log", s.name()),
            data,
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    out
}
