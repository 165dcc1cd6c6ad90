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
        Command::ImportAnsible {
            inventory,
            extra_vars,
            output,
            name,
            image_sha256,
        } => import_ansible(
            &kubelab::import::ansible::ImportOptions {
                inventory,
                extra_vars,
                name,
                image_sha256,
                output,
            },
            cli.global.json,
            color,
        ),
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

fn import_ansible(
    opts: &kubelab::import::ansible::ImportOptions,
    json: bool,
    color: bool,
) -> ExitCode {
    use kubelab::import::ansible::Note;
    let imported = match kubelab::import::ansible::import(opts) {
        Ok(i) => i,
        Err(errors) => {
            if json {
                for d in &errors.0 {
                    eprintln!("{}", d.to_json());
                }
            } else {
                eprint!("{}", errors.render(color));
                eprintln!("import-ansible: no lab written");
            }
            return ExitCode::from(1);
        }
    };
    for note in &imported.notes {
        if json {
            let (kind, var, text) = match note {
                Note::NotMapped { var, reason } => ("not-mapped", var, reason),
                Note::Adjusted { var, message } => ("adjusted", var, message),
            };
            eprintln!(
                "{}",
                serde_json::json!({"event": "import-note", "kind": kind, "variable": var, "message": text})
            );
        } else {
            eprintln!("{note}");
        }
    }
    match &opts.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &imported.lab) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return ExitCode::from(1);
            }
            if !json {
                eprintln!("wrote {}", path.display());
            }
        }
        None => {
            let mut out = std::io::stdout().lock();
            if out.write_all(imported.lab.as_bytes()).is_err() {
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
