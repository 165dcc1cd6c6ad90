//! `kubelab bundle LAB -o DIR`: the air-gap bundle of a lab.

use std::path::Path;
use std::process::ExitCode;

use super::{Context, lab_and_runtime};
use crate::bundle::contents::Arch;
use crate::bundle::image::Mirror;
use crate::bundle::{self, Progress, Request};

pub fn run(
    path: &Path,
    dir: &Path,
    arch: Option<&str>,
    download_mirror: Option<String>,
    registry_mirrors: &[String],
    ctx: &Context,
) -> ExitCode {
    let usage = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(2)
    };
    let arch = match arch {
        Some(a) => match Arch::parse(a) {
            Some(a) => a,
            None => return usage(format!("--arch {a}: kubelab bundles for amd64 or arm64")),
        },
        None => match Arch::host() {
            Some(a) => a,
            None => {
                return usage(format!(
                    "this machine is {}: say the nodes' architecture with --arch amd64|arm64",
                    std::env::consts::ARCH
                ));
            }
        },
    };
    let mut mirrors = Vec::new();
    for m in registry_mirrors {
        match Mirror::parse(m) {
            Ok(m) => mirrors.push(m),
            Err(e) => return usage(format!("--registry-mirror {e}")),
        }
    }
    let (lab, rt) = match lab_and_runtime(path, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let request = Request {
        arch,
        download_mirror,
        registry_mirrors: mirrors,
    };
    let json = ctx.json;
    let quiet = ctx.quiet;
    let made = rt.block_on(bundle::make(&lab, dir, &request, |p| {
        if json {
            let event = match p {
                Progress::File { name, size, kept } => serde_json::json!(
                    {"event": "bundle_file", "path": name, "size": size, "kept": kept}),
                Progress::Image(i) => serde_json::json!({"event": "bundle_image", "image": i}),
            };
            println!("{event}");
        } else if !quiet {
            match p {
                Progress::File { name, size, kept } => eprintln!(
                    "{} {name} ({}, sha256 checked)",
                    if kept { "kept   " } else { "fetched" },
                    human(size)
                ),
                Progress::Image(i) => {
                    eprintln!("pulled  {} ({}, {})", i.reference, human(i.size), i.digest)
                }
            }
        }
    }));
    match made {
        Ok(m) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"event": "bundle", "dir": dir, "manifest": m})
                );
            } else if !quiet {
                eprintln!(
                    "{}: Kubernetes {} for {}, {} files and {} images, listed in {}",
                    dir.display(),
                    m.kubernetes,
                    m.arch,
                    m.files.len(),
                    m.images.len(),
                    dir.join(bundle::MANIFEST).display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"event": "error", "command": "bundle", "message": e.to_string()})
                );
            }
            eprintln!("error: bundle {}: {e}", path.display());
            ExitCode::from(1)
        }
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}
