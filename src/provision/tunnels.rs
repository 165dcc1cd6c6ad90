//! The VXLAN devices that make each network of a lab over several
//! virthosts one layer-2 segment (`tunnel.sh` on each virthost; the design
//! is in the README's "Several virthosts"). `plan` compares the lab's
//! [`Fabric`](crate::lab::model::Fabric) with the devices there; `up` makes
//! every device as it should be (idempotent, after the networks exist, since
//! a device joins its network's bridge); `down` removes the lab's devices
//! and nothing else.

use std::time::Duration;

use super::access::VirthostAccess;
use super::plan::Action;
use crate::lab::Lab;
use crate::virthost::scripts::{ScriptReport, TUNNEL};

/// A device of the lab as a virthost has it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Existing {
    device: String,
    network: String,
    vni: String,
    local: String,
    master: String,
    peers: Vec<String>,
}

async fn run(access: &VirthostAccess, lab: &str, env: &[(&str, &str)]) -> Result<String, String> {
    let mut vars = vec![("KUBELAB_LAB", lab)];
    vars.extend_from_slice(env);
    access
        .run_script("tunnel.sh", TUNNEL, &vars, Duration::from_secs(60))
        .await
}

async fn existing(access: &VirthostAccess, lab: &str) -> Result<Vec<Existing>, String> {
    let out = run(access, lab, &[("KUBELAB_ACTION", "list")]).await?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 5).then(|| Existing {
                device: f[0].into(),
                network: f[1].into(),
                vni: f[2].into(),
                local: f[3].into(),
                master: f[4].into(),
                peers: f
                    .get(5)
                    .map(|p| p.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
            })
        })
        .collect())
}

/// What `up` would do about tunnels here: join the networks whose device is
/// missing or not as the lab wants it; remove the lab's devices it no longer
/// has. (Whether a device is in its bridge is `up`'s to check: the bridge
/// of a network `up` makes does not exist yet.)
pub async fn plan(access: &VirthostAccess, lab: &Lab) -> Result<Vec<Action>, String> {
    let have = existing(access, &lab.name).await?;
    let Some(f) = &lab.fabric else {
        return Ok(have
            .into_iter()
            .map(|e| Action::RemoveTunnel { device: e.device })
            .collect());
    };
    let mut peers: Vec<String> = f.peers.iter().map(|p| p.to_string()).collect();
    peers.sort();
    let mut actions = Vec::new();
    for e in &have {
        if !f.tunnels.iter().any(|t| t.device == e.device) {
            actions.push(Action::RemoveTunnel {
                device: e.device.clone(),
            });
        }
    }
    for t in &f.tunnels {
        let same = have.iter().any(|e| {
            e.device == t.device
                && e.vni == t.vni.to_string()
                && e.local == f.local.to_string()
                && e.master != "none"
                && e.peers == peers
        });
        if !same {
            actions.push(Action::JoinNetwork {
                network: t.network.clone(),
                device: t.device.clone(),
                vni: t.vni,
                peers: peers.clone(),
            });
        }
    }
    Ok(actions)
}

/// Make every device of the lab here as it should be, in the bridge
/// `bridge_of(network)`; remove those the lab no longer has. Returns what
/// changed.
pub async fn apply(
    access: &VirthostAccess,
    lab: &Lab,
    actions: &[Action],
    bridge_of: impl Fn(&str) -> Result<String, String>,
) -> Result<Vec<String>, String> {
    let mut changed = Vec::new();
    for a in actions {
        if let Action::RemoveTunnel { device } = a {
            let out = run(
                access,
                &lab.name,
                &[("KUBELAB_ACTION", "remove"), ("KUBELAB_DEVICE", device)],
            )
            .await?;
            changed.extend(ScriptReport::read(&out).changes);
        }
    }
    let Some(f) = &lab.fabric else {
        return Ok(changed);
    };
    let peers = f
        .peers
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let local = f.local.to_string();
    for t in &f.tunnels {
        let mtu = lab
            .network(&t.network)
            .and_then(|n| n.mtu)
            .unwrap_or(crate::lab::model::SPREAD_MTU)
            .to_string();
        let bridge = bridge_of(&t.network)?;
        let vni = t.vni.to_string();
        let out = run(
            access,
            &lab.name,
            &[
                ("KUBELAB_ACTION", "ensure"),
                ("KUBELAB_DEVICE", &t.device),
                ("KUBELAB_NETWORK", &t.network),
                ("KUBELAB_VNI", &vni),
                ("KUBELAB_LOCAL", &local),
                ("KUBELAB_PEERS", &peers),
                ("KUBELAB_BRIDGE", &bridge),
                ("KUBELAB_MTU", &mtu),
            ],
        )
        .await?;
        changed.extend(ScriptReport::read(&out).changes);
    }
    Ok(changed)
}

/// The lab's devices here.
pub async fn devices(access: &VirthostAccess, lab: &str) -> Result<Vec<String>, String> {
    Ok(existing(access, lab)
        .await?
        .into_iter()
        .map(|e| e.device)
        .collect())
}

/// Remove every device of the lab here (for `down`); returns what changed.
pub async fn remove_all(access: &VirthostAccess, lab: &str) -> Result<Vec<String>, String> {
    let mut changed = Vec::new();
    for e in existing(access, lab).await? {
        let out = run(
            access,
            lab,
            &[("KUBELAB_ACTION", "remove"), ("KUBELAB_DEVICE", &e.device)],
        )
        .await?;
        changed.extend(ScriptReport::read(&out).changes);
    }
    Ok(changed)
}
