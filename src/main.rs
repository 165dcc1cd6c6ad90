use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use kubelab::cli::{Cli, ColorChoice, Command, SchemaKind};
use kubelab::commands;
use kubelab::lab::LoadOptions;

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
    let ctx = commands::Context {
        load: LoadOptions {
            inventory_dirs: cli.global.inventory_dir.clone(),
            overrides: cli.global.set.clone(),
        },
        json: cli.global.json,
        quiet: cli.global.quiet,
        verbose: cli.global.verbose,
        playbook_dir: cli.global.playbook_dir.clone(),
        template_dir: cli.global.template_dir.clone(),
        report: cli.global.report.clone(),
        collect: !cli.global.no_collect,
        color,
    };
    match cli.command {
        Command::Validate { labs } => commands::validate::run(&labs, &ctx),
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
        } => commands::import_ansible::run(
            &kubelab::import::ansible::ImportOptions {
                inventory,
                extra_vars,
                name,
                image_sha256,
                output,
            },
            &ctx,
        ),
        Command::Play {
            playbook,
            inventory,
            lab,
            known_hosts,
            accept_new,
            vars,
            check,
            limit,
        } => commands::play::run(
            &commands::play::PlayOptions {
                playbook,
                inventory,
                lab,
                known_hosts,
                accept_new,
                vars,
                check,
                limit,
                template_dir: ctx.template_dir.clone(),
            },
            &ctx,
        ),
        Command::Up { lab, timeout, ttl } => commands::up::run(
            &lab,
            &kubelab::provision::UpOptions {
                timeout: std::time::Duration::from_secs(timeout),
                ttl_renew: ttl,
            },
            &ctx,
        ),
        Command::Plan { lab } => commands::plan::run(&lab, &ctx),
        Command::Scenario { lab, name, phase } => {
            commands::scenario::phase(&lab, &name, phase.into(), &ctx)
        }
        Command::Verify {
            lab,
            scenario,
            junit,
        } => commands::scenario::verify(&lab, scenario.as_deref(), junit.as_deref(), &ctx),
        Command::Chaos { lab, name } => commands::scenario::chaos(&lab, &name, &ctx),
        Command::Link { action } => commands::links::link(action, &ctx),
        Command::Route { action } => commands::links::route(action, &ctx),
        Command::Down { lab } => commands::down::run(&lab, &ctx),
        Command::Reset { lab } => commands::reset::run(&lab, &ctx),
        Command::Status { lab } => commands::status::run(&lab, &ctx),
        Command::Ssh { lab, vm, command } => commands::ssh::run(&lab, &vm, &command, &ctx),
        Command::Doctor { lab } => commands::doctor::run(&lab, &ctx),
        Command::Snapshot { lab, action } => commands::snapshot::run(&lab, action, &ctx),
        Command::Ls { virthost } => commands::ls::run(&virthost, &ctx),
        Command::Reap {
            virthost,
            dry_run,
            older_than,
        } => commands::reap::run(
            &virthost,
            &kubelab::provision::ReapOptions {
                dry_run,
                older_than,
            },
            &ctx,
        ),
        Command::Collect {
            lab,
            output,
            max_size,
            timeout,
            no_verify,
        } => commands::collect::run(
            &lab,
            output.as_deref(),
            &kubelab::forensics::Options {
                max_size,
                timeout: std::time::Duration::from_secs(timeout),
            },
            !no_verify,
            &ctx,
        ),
        Command::Graph {
            lab,
            format,
            output,
            live,
        } => commands::graph::run(&lab, format, output.as_deref(), live, &ctx),
        Command::Bundle {
            lab,
            output,
            arch,
            download_mirror,
            registry_mirror,
        } => commands::bundle::run(
            &lab,
            &output,
            arch.as_deref(),
            download_mirror,
            &registry_mirror,
            &ctx,
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
        Command::Man { dir } => {
            let written = std::fs::create_dir_all(&dir)
                .and_then(|()| clap_mangen::generate_to(Cli::command(), &dir));
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "error: cannot write the manual pages into {}: {e}",
                        dir.display()
                    );
                    ExitCode::from(1)
                }
            }
        }
    }
}
