//! Human-readable summaries of labs and runs.

use crate::lab::Lab;
use crate::lab::model::{Connection, Image};

/// A lab's virthosts with the VMs placed on each (`placed at up` for VMs
/// placed only when `up` knows what the virthosts have).
fn virthosts_summary(lab: &Lab) -> String {
    let on = |name: &str| {
        let vms: Vec<&str> = lab
            .vms
            .iter()
            .filter(|v| v.virthost.as_deref() == Some(name))
            .map(|v| v.name.as_str())
            .collect();
        if vms.is_empty() {
            String::new()
        } else {
            format!(" ({})", vms.join(", "))
        }
    };
    let unplaced = lab.vms.iter().filter(|v| v.virthost.is_none()).count();
    let mut out = format!(
        "virthosts {}",
        lab.virthosts
            .iter()
            .map(|v| format!("{}{}", v.name, on(&v.name)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if unplaced > 0 {
        out.push_str(&format!(" ({unplaced} VM(s) placed at `up`)"));
    }
    out
}

/// One line describing a validated lab.
pub fn lab_summary(lab: &Lab) -> String {
    let vms = lab.vms.len();
    let mut parts = vec![
        format!("lab `{}`", lab.name),
        format!("{vms} VM{}", if vms == 1 { "" } else { "s" }),
        format!(
            "{} network{}",
            lab.networks.len(),
            if lab.networks.len() == 1 { "" } else { "s" }
        ),
        if lab.is_spread() {
            virthosts_summary(lab)
        } else {
            match &lab.virthost.connection {
                Connection::Local => "virthost local".to_string(),
                Connection::Ssh(h) => format!("virthost {}@{}:{}", h.user, h.address, h.port),
            }
        },
        match &lab.image {
            Image::Build { recipe, .. } => format!("image built from {recipe}"),
            Image::Download { url, .. } => format!("image {url}"),
        },
    ];
    if let Some(k) = &lab.kubernetes {
        parts.push(format!(
            "kubernetes {} ({}, {}, {})",
            k.version,
            format!("{:?}", k.runtime).to_lowercase(),
            format!("{:?}", k.cni).to_lowercase(),
            format!("{:?}", k.ip_family).to_lowercase()
        ));
    }
    if !lab.scenarios.is_empty() {
        parts.push(format!(
            "scenarios {}",
            lab.scenarios
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    parts.join(", ")
}
