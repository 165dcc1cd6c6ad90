//! `kubelab status LAB`: VM, state, addresses, disks; and the Kubernetes
//! nodes when the lab has a cluster.

use std::path::Path;
use std::process::ExitCode;

use super::{Context, fail, lab_and_runtime};
use crate::kubernetes::cluster::{self, NodeStatus};
use crate::lab::Lab;
use crate::provision;

pub fn run(path: &Path, ctx: &Context) -> ExitCode {
    let (lab, rt) = match lab_and_runtime(path, ctx) {
        Ok(x) => x,
        Err(c) => return c,
    };
    match rt.block_on(provision::status(&lab)) {
        Ok(status) => {
            let vms = &status.vms;
            let nodes = cluster_nodes(&lab, &rt);
            let snapshots = rt
                .block_on(crate::provision::snapshot::list(&lab))
                .unwrap_or_default();
            if ctx.json {
                let (nodes, why) = match &nodes {
                    Some(Ok(n)) => (Some(n.clone()), None),
                    Some(Err(e)) => (None, Some(e.clone())),
                    None => (None, None),
                };
                println!(
                    "{}",
                    serde_json::json!({"event": "status", "lab": lab.name, "vms": vms,
                        "objects": status.objects,
                        "state_dir": crate::state::state_dir(&lab.name),
                        "kubernetes_nodes": nodes, "kubernetes_error": why,
                        "snapshots": snapshots})
                );
            } else {
                print!("{}", provision::table(vms));
                // `virthost: 3 domain, …`; `virthost rack-a: …` over several
                for line in provision::objects_summary(&status.objects) {
                    if lab.is_spread() {
                        println!("virthost {line}");
                    } else {
                        println!("{line}");
                    }
                }
                if !snapshots.is_empty() {
                    print!("\nsnapshots:\n{}", super::snapshot::table(&snapshots));
                }
                match &nodes {
                    Some(Ok(n)) => print!("\n{}", cluster::table(n)),
                    Some(Err(e)) => println!("\nkubernetes: {e}"),
                    None => {}
                }
                println!("state: {}", crate::state::state_dir(&lab.name).display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(ctx, "status", &e),
    }
}

/// The nodes as the first control plane's kubectl sees them; `None` when
/// the lab has no cluster or is not up.
fn cluster_nodes(
    lab: &Lab,
    rt: &tokio::runtime::Runtime,
) -> Option<Result<Vec<NodeStatus>, String>> {
    lab.kubernetes.as_ref()?;
    provision::read_inventory(lab).ok().flatten()?;
    let cp = lab.group("control-plane").first()?.name.clone();
    let out = rt.block_on(provision::run_on_vm(
        lab,
        &cp,
        &[cluster::GET_NODES.to_string()],
    ));
    Some(match out {
        Err(e) => Err(format!("{cp} does not answer: {e}")),
        Ok(o) if !o.status.success() => Err(format!(
            "no cluster yet (kubectl on {cp}: {})",
            o.stderr_str().trim().lines().last().unwrap_or("failed")
        )),
        Ok(o) => cluster::parse_nodes(&o.stdout_str()),
    })
}
