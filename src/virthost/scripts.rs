//! Shell scripts kubelab runs on a virthost, embedded from
//! `templates/virthost/`. They take their parameters from `KUBELAB_*`
//! environment variables (documented at the top of each script); [`script`]
//! prepends the assignments so the result can be sent as one
//! [`crate::transport::Command::Script`] (or run locally with `sh -c`).

use sha2::{Digest, Sha256};

use crate::transport::quote;

/// `prepare.sh`: packages, users/groups, qemu.conf and a running libvirtd.
/// Its last output line is `changed=N`.
pub const PREPARE: &str = include_str!("../../templates/virthost/prepare.sh");

/// `release.sh`: once no lab uses the virthost any more, stop the libvirt
/// daemons kubelab started, remove libvirt's empty firewall chains, restore
/// the forwarding sysctls. Its last output line is `changed=N`.
pub const RELEASE: &str = include_str!("../../templates/virthost/release.sh");

/// `bridge.sh`: the Linux bridges kubelab makes from a NIC (list, up, down),
/// after the device helpers it shares with `tunnel.sh` (`devices.sh`).
pub const BRIDGE: &str = concat!(
    include_str!("../../templates/virthost/devices.sh"),
    include_str!("../../templates/virthost/bridge.sh")
);

/// `tunnel.sh`: the VXLAN devices joining a lab network across virthosts.
pub const TUNNEL: &str = concat!(
    include_str!("../../templates/virthost/devices.sh"),
    include_str!("../../templates/virthost/tunnel.sh")
);

/// Where `prepare.sh` notes what it changes on a virthost, for `release.sh`
/// (per boot: the notes are about a running daemon and sysctls).
pub const VIRTHOST_STATE: &str = "/run/kubelab";

/// `build-image-debian.sh`: a cached, cloud-init enabled Debian base image.
/// Its last output line is the image path.
pub const BUILD_IMAGE_DEBIAN: &str = include_str!("../../templates/virthost/build-image-debian.sh");

/// What a virthost script reported, in the protocol `prepare.sh`,
/// `release.sh` and `bridge.sh` share: a line `changed: WHAT` per change,
/// `kept: WHY` when it left things as they are, and as the last line the
/// count, `changed=N`. Read in one place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScriptReport {
    pub changes: Vec<String>,
    pub kept: Vec<String>,
    /// The last line's `changed=N` (none when the script stopped early).
    pub count: Option<usize>,
}

impl ScriptReport {
    pub fn read(stdout: &str) -> Self {
        let mut report = ScriptReport::default();
        for line in stdout.lines() {
            if let Some(what) = line.strip_prefix("changed: ") {
                report.changes.push(what.to_string());
            } else if let Some(why) = line.strip_prefix("kept: ") {
                report.kept.push(why.to_string());
            }
        }
        report.count = stdout
            .lines()
            .last()
            .and_then(|l| l.strip_prefix("changed="))
            .and_then(|n| n.trim().parse().ok());
        report
    }
}

/// Lower-case hex SHA-256 of a text.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The script text with `export NAME=VALUE` lines for `vars` in front of it
/// (values shell-quoted). Names must be `KUBELAB_[A-Z0-9_]+`; others are
/// skipped. For [`BUILD_IMAGE_DEBIAN`], `KUBELAB_SCRIPT_SHA256` (the
/// recipe's cache identity) is added when not given.
pub fn script(text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let valid = |n: &str| {
        n.strip_prefix("KUBELAB_").is_some_and(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
        })
    };
    // keep the shebang first
    let (shebang, body) = match text.strip_prefix("#!") {
        Some(_) => text.split_once('\n').map_or((text, ""), |(a, b)| (a, b)),
        None => ("", text),
    };
    if !shebang.is_empty() {
        out.push_str(shebang);
        out.push('\n');
    }
    for (name, value) in vars {
        if valid(name) {
            out.push_str(&format!("export {name}={}\n", quote(value)));
        }
    }
    if text == BUILD_IMAGE_DEBIAN && !vars.iter().any(|(n, _)| *n == "KUBELAB_SCRIPT_SHA256") {
        out.push_str(&format!(
            "export KUBELAB_SCRIPT_SHA256={}\n",
            sha256_hex(text)
        ));
    }
    out.push_str(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_of_the_virthost_scripts() {
        let r = ScriptReport::read(
            "checking\nchanged: libvirtd started\nchanged: virtlogd started\nkept: lab b uses it\nchanged=2\n",
        );
        assert_eq!(r.changes, ["libvirtd started", "virtlogd started"]);
        assert_eq!(r.kept, ["lab b uses it"]);
        assert_eq!(r.count, Some(2));
        // A script that stopped before its summary has no count.
        assert_eq!(ScriptReport::read("changed: x\n").count, None);
        assert_eq!(ScriptReport::read("").count, None);
    }

    /// The scripts will be rendered by minijinja: they must come out unchanged.
    #[test]
    fn scripts_survive_minijinja_unchanged() {
        for text in [PREPARE, RELEASE, BRIDGE, TUNNEL, BUILD_IMAGE_DEBIAN] {
            let mut env = minijinja::Environment::new();
            env.set_syntax(
                minijinja::syntax::SyntaxConfig::builder()
                    .keep_trailing_newline(true)
                    .build()
                    .unwrap(),
            );
            let rendered = env.render_str(text, ()).unwrap();
            assert_eq!(rendered, text);
        }
    }

    #[test]
    fn script_exports_quoted_parameters() {
        let s = script(
            PREPARE,
            &[
                ("KUBELAB_INSTALL", "0"),
                ("KUBELAB_X", "a b'c"),
                ("PATH", "/evil"),
            ],
        );
        assert!(
            s.starts_with("#!/bin/sh\nexport KUBELAB_INSTALL=0\nexport KUBELAB_X='a b'\\''c'\n")
        );
        assert!(!s.contains("/evil"));
        let b = script(BUILD_IMAGE_DEBIAN, &[]);
        assert!(b.contains(&format!(
            "export KUBELAB_SCRIPT_SHA256={}\n",
            sha256_hex(BUILD_IMAGE_DEBIAN)
        )));
    }
}
