use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use kubelab::cli::{Cli, ColorChoice, Command, SchemaKind};
use kubelab::lab::{self, LoadOptions};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = match cli.global.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stderr().is_terminal()
        }
    };
    let opts = LoadOptions {
        inventory_dirs: cli.global.inventory_dir.clone(),
    };
    match cli.command {
        Command::Validate { labs } => {
            validate(&labs, &opts, cli.global.json, cli.global.quiet, color)
        }
        Command::Schema { kind } => {
            let schema = match kind {
                SchemaKind::Lab => kubelab::schema::lab(),
                SchemaKind::Inventory => kubelab::schema::inventory(),
            };
            println!("{schema}");
            ExitCode::SUCCESS
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "kubelab",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
    }
}

fn validate(
    labs: &[std::path::PathBuf],
    opts: &LoadOptions,
    json: bool,
    quiet: bool,
    color: bool,
) -> ExitCode {
    let mut all_ok = true;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for path in labs {
        let (diags, summary) = match lab::load(path, opts) {
            Ok((lab, warnings)) => (warnings, Some(kubelab::report::lab_summary(&lab))),
            Err(errors) => (errors, None),
        };
        all_ok &= summary.is_some();
        if json {
            for d in &diags.0 {
                let _ = writeln!(out, "{}", d.to_json());
            }
            let _ = writeln!(
                out,
                "{}",
                serde_json::json!({"event": "validated", "file": path.display().to_string(),
                    "valid": summary.is_some(), "errors": diags.error_count()})
            );
        } else {
            let rendered = diags.render(color);
            if !rendered.is_empty() && (!quiet || diags.has_errors()) {
                eprint!("{rendered}");
            }
            match summary {
                Some(s) if !quiet => {
                    let _ = writeln!(out, "{}: valid: {s}", path.display());
                }
                Some(_) => {}
                None => eprintln!(
                    "{}: {} error{}",
                    path.display(),
                    diags.error_count(),
                    if diags.error_count() == 1 { "" } else { "s" }
                ),
            }
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
