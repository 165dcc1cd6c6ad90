//! Bridged networks whose bridge kubelab makes from a NIC (`kind: bridged`
//! with `nic:`): the bridge belongs to the lab (its interface alias says
//! `kubelab:<lab>`), `up` makes it — the NIC's addresses and routes moved onto
//! it — and `down` removes it and gives them back (`bridge.sh` on the
//! virthost). Bridges named with `bridge:` alone exist already and are
//! never touched.

use std::time::Duration;

use super::access::VirthostAccess;
use super::plan::Action;
use crate::lab::Lab;
use crate::lab::model::NetworkKind;
use crate::virthost::scripts::{BRIDGE, VIRTHOST_STATE};

/// (network, bridge, NIC) of every bridge the lab makes.
pub fn wanted(lab: &Lab) -> Vec<(String, String, String)> {
    lab.networks
        .iter()
        .filter_map(|n| match &n.kind {
            NetworkKind::Bridged {
                bridge,
                nic: Some(nic),
            } => Some((n.name.clone(), bridge.clone(), nic.clone())),
            _ => None,
        })
        .collect()
}

async fn run(
    access: &VirthostAccess,
    lab: &str,
    action: &str,
    bridge: &str,
    nic: &str,
) -> Result<String, String> {
    access
        .run_script(
            &format!("bridge.sh {action} {bridge}"),
            BRIDGE,
            &[
                ("KUBELAB_ACTION", action),
                ("KUBELAB_LAB", lab),
                ("KUBELAB_BRIDGE", bridge),
                ("KUBELAB_NIC", nic),
                ("KUBELAB_VIRTHOST_STATE", VIRTHOST_STATE),
            ],
            Duration::from_secs(60),
        )
        .await
}

/// The lab's bridges on the virthost: (bridge, NIC).
pub async fn existing(access: &VirthostAccess, lab: &str) -> Result<Vec<(String, String)>, String> {
    let out = run(access, lab, "list", "", "").await?;
    Ok(out
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(b, n)| (b.to_string(), n.to_string()))
        .collect())
}

/// What `up` would do about bridges: make the missing ones, remove the
/// lab's bridges it no longer has. A bridge of the name that is not the
/// lab's shows up as an error when `up` tries to make it.
pub async fn plan(access: &VirthostAccess, lab: &Lab) -> Result<Vec<Action>, String> {
    let wanted = wanted(lab);
    let have = existing(access, &lab.name).await?;
    let mut actions = Vec::new();
    for (bridge, _) in &have {
        if !wanted.iter().any(|(_, b, _)| b == bridge) {
            actions.push(Action::RemoveBridge {
                bridge: bridge.clone(),
            });
        }
    }
    for (network, bridge, nic) in wanted {
        match have.iter().find(|(b, _)| *b == bridge) {
            None => actions.push(Action::CreateBridge {
                network,
                bridge,
                nic,
            }),
            Some((_, had)) if *had != nic => actions.push(Action::NotApplied {
                subject: format!("bridge {bridge} of network {network}"),
                why: format!(
                    "it was made from {had}, the lab now says {nic}: `kubelab down` and `up` to remake it"
                ),
            }),
            Some(_) => {}
        }
    }
    Ok(actions)
}

/// Apply the bridge actions of a plan; returns what changed.
pub async fn apply(
    access: &VirthostAccess,
    lab: &str,
    actions: &[Action],
) -> Result<Vec<String>, String> {
    let mut changed = Vec::new();
    for a in actions {
        let out = match a {
            Action::CreateBridge { bridge, nic, .. } => run(access, lab, "up", bridge, nic).await?,
            Action::RemoveBridge { bridge } => run(access, lab, "down", bridge, "").await?,
            _ => continue,
        };
        changed.extend(crate::virthost::scripts::ScriptReport::read(&out).changes);
    }
    Ok(changed)
}

/// Remove every bridge of the lab (for `down`); returns what changed.
pub async fn remove_all(access: &VirthostAccess, lab: &str) -> Result<Vec<String>, String> {
    let have = existing(access, lab).await?;
    let actions: Vec<Action> = have
        .into_iter()
        .map(|(bridge, _)| Action::RemoveBridge { bridge })
        .collect();
    apply(access, lab, &actions).await
}
