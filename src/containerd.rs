//! Which containerd each Kubernetes minor runs on.
//!
//! From containerd's own support table ("Kubernetes Support" in
//! containerd's RELEASES.md, and containerd.io's releases page for the
//! older rows): for each Kubernetes minor, the containerd release lines
//! that support it and the oldest patch release of each. Kubernetes 1.35 is
//! the last minor that supports containerd 1.x (Kubernetes 1.34 release
//! notes, KEP-4033). The stored table has no rows for 1.34 and 1.35;
//! kubelab carries 1.33's forward for them, so a node with an older 1.x is
//! still refused.
//!
//! kubelab installs one line per minor from Docker's repository
//! (`containerd.io`): 1.7 up to Kubernetes 1.29 (containerd 2.x was never
//! supported before 1.30: it dropped CRI v1alpha2), 2.1 from 1.30. Whatever
//! the source (that repository, the distribution's package, an air-gap
//! bundle), the node's installed containerd is checked against the table
//! before the cluster is made, and its configuration is written in the
//! version that containerd reads natively (2 for 1.x, 3 for 2.x).

use serde_json::{Value, json};

/// A containerd version, `major.minor.patch`.
pub type Release = (u32, u32, u32);

/// The oldest release of each containerd line that supports Kubernetes
/// `1.<minor>`, newest line first; empty for minors the table does not
/// cover (below 1.24).
pub fn supported(minor: u32) -> &'static [(&'static str, Release)] {
    match minor {
        24..=25 => &[("1.7", (1, 7, 0)), ("1.6", (1, 6, 4))],
        26..=28 => &[("1.7", (1, 7, 0)), ("1.6", (1, 6, 15))],
        29 => &[("1.7", (1, 7, 11)), ("1.6", (1, 6, 27))],
        30 => &[
            ("2.1", (2, 1, 0)),
            ("2.0", (2, 0, 0)),
            ("1.7", (1, 7, 13)),
            ("1.6", (1, 6, 28)),
        ],
        31 => &[
            ("2.1", (2, 1, 0)),
            ("2.0", (2, 0, 0)),
            ("1.7", (1, 7, 20)),
            ("1.6", (1, 6, 34)),
        ],
        32 => &[
            ("2.1", (2, 1, 0)),
            ("2.0", (2, 0, 1)),
            ("1.7", (1, 7, 24)),
            ("1.6", (1, 6, 36)),
        ],
        33..=35 => &[
            ("2.1", (2, 1, 0)),
            ("2.0", (2, 0, 4)),
            ("1.7", (1, 7, 24)),
            ("1.6", (1, 6, 36)),
        ],
        _ => &[],
    }
}

/// The line kubelab installs from Docker's repository for Kubernetes
/// `1.<minor>`.
pub fn upstream_line(minor: u32) -> &'static str {
    if minor < 30 { "1.7" } else { "2.1" }
}

/// The release of `line` an air-gap bundle carries, and the runc release
/// kubelab pairs with it (containerd's release tarball carries no runc).
pub fn bundle_release(line: &str) -> (&'static str, &'static str) {
    if line.starts_with("1.") {
        ("1.7.27", "1.2.5")
    } else {
        ("2.1.1", "1.3.0")
    }
}

/// The configuration file version containerd `line` reads natively.
pub fn config_version(line: &str) -> u8 {
    if line.starts_with("1.") { 2 } else { 3 }
}

/// The containerd of Debian 12, what `runtime_packages: distro` installs.
pub const DEBIAN_12_LINE: &str = "1.6";
pub const DEBIAN_12_RELEASE: Release = (1, 6, 20);

/// The `kube_containerd` variable of the Kubernetes stage: the package
/// version patterns of the line to install from Docker's repository
/// (`deb`, `rpm`, `line`) and the support table of the lab's minor
/// (`minimums`, line → oldest release, and `supported` for messages).
pub fn stage_vars(minor: u32) -> Value {
    let line = upstream_line(minor);
    let minimums: serde_json::Map<String, Value> = supported(minor)
        .iter()
        .map(|(l, r)| ((*l).to_string(), Value::from(dotted(*r))))
        .collect();
    let text: Vec<String> = supported(minor)
        .iter()
        .map(|(l, r)| format!("{l} from {}", dotted(*r)))
        .collect();
    json!({
        "line": line,
        "deb": format!("{line}.*"),
        "rpm": format!("{line}.*"),
        "minimums": minimums,
        "supported": text.join(", "),
    })
}

pub fn dotted((a, b, c): Release) -> String {
    format!("{a}.{b}.{c}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_minor_kubelab_renders_has_its_table_and_installs_a_supported_line() {
        let (first, last) = crate::lab::validate::KUBERNETES_MINORS;
        for minor in first..=last {
            let lines = supported(minor);
            assert!(!lines.is_empty(), "1.{minor} has no containerd table");
            let line = upstream_line(minor);
            assert!(
                lines.iter().any(|(l, _)| *l == line),
                "1.{minor}: kubelab installs containerd {line}, which does not support it"
            );
        }
    }

    #[test]
    fn the_table_says_what_upstream_says() {
        // containerd 2.x never supported Kubernetes before 1.30 (the
        // gluster lab's 1.25), and Debian 12's 1.6.20 stops at 1.28.
        assert!(supported(25).iter().all(|(l, _)| l.starts_with("1.")));
        assert_eq!(upstream_line(25), "1.7");
        let v16 = |minor| {
            supported(minor)
                .iter()
                .find(|(l, _)| *l == "1.6")
                .unwrap()
                .1
        };
        assert!(v16(28) <= (1, 6, 20));
        assert!(v16(29) > (1, 6, 20));
        assert!(v16(31) > (1, 6, 20));
        assert_eq!(config_version("1.7"), 2);
        assert_eq!(config_version("2.1"), 3);
        let v = stage_vars(31);
        assert_eq!(v["deb"], "2.1.*");
        assert_eq!(v["minimums"]["1.7"], "1.7.20");
        assert_eq!(
            v["supported"],
            "2.1 from 2.1.0, 2.0 from 2.0.0, 1.7 from 1.7.20, 1.6 from 1.6.34"
        );
    }
}
