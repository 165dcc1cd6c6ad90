//! The node-prep benchmark with kubelab's engine: runs
//! `playbooks/nodeprep-bench.yaml` over SSH on the hosts started by
//! `bench/hosts.sh up N` (user `klbench`, keys and
//! `hosts.txt` under `$KL_BENCH_DIR`, default `/tmp/kl-bench`).
//!
//! `cargo run --release --example nodeprep_bench -- N [--check] [--json]`

use std::path::PathBuf;
use std::sync::Arc;

use kubelab::inventory::{Host, Inventory, UnreachableTransport};
use kubelab::runner::{PlaybookRun, run_playbook};
use kubelab::transport::{SshTarget, SshTransport, Transport};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(4);
    let dir =
        PathBuf::from(std::env::var("KL_BENCH_DIR").unwrap_or_else(|_| "/tmp/kl-bench".into()));
    let hosts_txt = match std::fs::read_to_string(dir.join("hosts.txt")) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "cannot read {}/hosts.txt ({e}): run hosts.sh up N first",
                dir.display()
            );
            std::process::exit(2);
        }
    };
    let hosts: Vec<(String, String)> = hosts_txt
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.to_string()))
        })
        .take(n)
        .collect();
    let mut connecting = tokio::task::JoinSet::new();
    for (i, (name, ip)) in hosts.iter().cloned().enumerate() {
        let mut target = SshTarget::new(name.clone(), ip, "klbench", dir.join("known_hosts"));
        target.identity_files = vec![dir.join("id_ed25519")];
        connecting.spawn(async move {
            let t: Arc<dyn Transport> = match SshTransport::connect(target).await {
                Ok(t) => Arc::new(t),
                Err(e) => Arc::new(UnreachableTransport::from_error(name, &e)),
            };
            (i, t)
        });
    }
    let mut transports: Vec<Option<Arc<dyn Transport>>> = vec![None; hosts.len()];
    while let Some(Ok((i, t))) = connecting.join_next().await {
        transports[i] = Some(t);
    }
    let mut inventory = Inventory::new(Default::default());
    for ((name, ip), t) in hosts.iter().zip(transports) {
        let Some(transport) = t else { continue };
        let mut vars = kubelab::lab::model::Vars::new();
        vars.insert("address".into(), ip.clone().into());
        inventory.add(Host {
            name: name.clone(),
            groups: vec![],
            vars,
            transport,
        });
    }
    let req = PlaybookRun {
        playbook: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/playbooks/nodeprep-bench.yaml"
        )),
        check: args.iter().any(|a| a == "--check"),
        json: args.iter().any(|a| a == "--json"),
        quiet: true,
        ..Default::default()
    };
    std::process::exit(run_playbook(inventory, &req).await);
}
