//! `kubelab graph LAB`: the lab's topology as SVG, Mermaid or dot.

use std::path::Path;
use std::process::ExitCode;

use super::{Context, fail, lab_and_runtime};
use crate::cli::GraphFormat;
use crate::graph::{LiveVm, Topology, dot, mermaid, svg};
use crate::provision;

pub fn run(
    path: &Path,
    format: GraphFormat,
    output: Option<&Path>,
    live: bool,
    ctx: &Context,
) -> ExitCode {
    let (lab, rt) = match lab_and_runtime(path, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let seen = if live {
        match rt.block_on(provision::status(&lab)) {
            Ok(status) => Some(
                status
                    .vms
                    .into_iter()
                    .map(|v| LiveVm {
                        name: v.name,
                        state: v.state,
                        addresses: v.addresses.iter().map(|a| a.to_string()).collect(),
                    })
                    .collect::<Vec<_>>(),
            ),
            Err(e) => return fail(ctx, "graph", &e),
        }
    } else {
        None
    };
    let topology = Topology::of(&lab, seen.as_deref());
    let text = match format {
        GraphFormat::Svg => svg::render(&topology),
        GraphFormat::Mermaid => mermaid::render(&topology),
        GraphFormat::Dot => dot::render(&topology),
    };
    match output {
        Some(file) => match std::fs::write(file, text) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", file.display());
                ExitCode::from(1)
            }
        },
        None => {
            print!("{text}");
            ExitCode::SUCCESS
        }
    }
}
