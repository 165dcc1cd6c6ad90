//! Human-readable summaries of labs and runs.

use crate::lab::Lab;
use crate::lab::model::{Connection, Image};

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
        match &lab.virthost.connection {
            Connection::Local => "virthost local".to_string(),
            Connection::Ssh(h) => format!("virthost {}@{}:{}", h.user, h.address, h.port),
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
