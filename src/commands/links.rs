//! `kubelab link add|del LAB ENDPOINT [ENDPOINT]` and `kubelab route
//! add|del LAB AT TO`: the links engine by hand on an up lab's VMs, through
//! the same `link`/`route` steps as the lab's `links:` section.

use std::process::ExitCode;

use super::{Context, lab_and_runtime};
use crate::cli::{LinkAction, RouteAction};
use crate::links::{CliLink, CliRoute, LinkStep, parse_cli_end};
use crate::stage::{LabHosts, Stage};

fn usage(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

pub fn link(action: LinkAction, ctx: &Context) -> ExitCode {
    let (args, present) = match action {
        LinkAction::Add(a) => (a, true),
        LinkAction::Del(a) => (a, false),
    };
    let ends = match args
        .ends
        .iter()
        .map(|e| parse_cli_end(e))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(e) => e,
        Err(e) => return usage(&e),
    };
    let cli = CliLink {
        ends,
        kind: args.kind,
        vni: args.vni,
        port: args.port,
        mtu: args.mtu,
        parent: args.parent,
        vlan_id: args.vlan_id,
        mode: args.mode,
        remote: args.remote,
        present,
    };
    let verb = if present { "link add" } else { "link del" };
    run(&args.lab, verb, args.check, ctx, |lab| {
        crate::links::cli_link_steps(lab, &cli)
    })
}

pub fn route(action: RouteAction, ctx: &Context) -> ExitCode {
    let (args, present) = match action {
        RouteAction::Add(a) => (a, true),
        RouteAction::Del(a) => (a, false),
    };
    let at = match parse_cli_end(&args.at) {
        Ok(e) => e,
        Err(e) => return usage(&e),
    };
    let cli = CliRoute {
        at,
        to: args.to,
        via: args.via,
        dev: args.dev,
        metric: args.metric,
        present,
    };
    let verb = if present { "route add" } else { "route del" };
    run(&args.lab, verb, args.check, ctx, |lab| {
        crate::links::cli_route_steps(lab, &cli)
    })
}

fn run(
    path: &std::path::Path,
    verb: &str,
    check: bool,
    ctx: &Context,
    steps: impl FnOnce(&crate::lab::Lab) -> Result<Vec<LinkStep>, String>,
) -> ExitCode {
    let (lab, rt) = match lab_and_runtime(path, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    let steps = match steps(&lab) {
        Ok(s) => s,
        Err(e) => return usage(&format!("{verb}: {e}")),
    };
    let origin = format!("kubelab {verb}");
    let stage = match crate::links::playbook(verb, &origin, &steps) {
        Ok(p) => Stage {
            title: verb.to_string(),
            playbook: origin,
            generated: Some(p),
            ..Stage::default()
        },
        Err(e) => return usage(&format!("{verb}: {e}")),
    };
    let log = crate::state::run_log(&lab.name, &verb.replace(' ', "-"));
    let code = rt.block_on(async {
        let hosts = match LabHosts::connect(&lab).await {
            Ok(h) => h,
            Err(e) => {
                eprintln!("error: {verb}: {e}");
                return i32::from(e.exit_code());
            }
        };
        let base = ctx.playbook_run(check, Some(&log));
        let r = crate::stage::run(&lab, &hosts, &stage, &base).await;
        hosts.close().await;
        r.map_or_else(|code| code, |report| report.exit_code())
    });
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
