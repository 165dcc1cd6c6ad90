//! Checks of a virthost for a lab, each finding with a fix. `up` runs the
//! blocking ones before it changes anything.

use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use super::access::VirthostAccess;
use super::prepare::{KvmProbe, kvm_probe};
use crate::lab::Lab;
use crate::lab::model::{
    Connection as VirthostConnection, DomainType as LabDomainType, NetworkKind,
};
use crate::transport::{Command, quote};
use crate::virthost::libvirt::Connection;
use crate::virthost::spec::LabName;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Ok,
    Warning,
    /// `up` cannot succeed.
    Blocking,
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub check: &'static str,
    pub severity: Severity,
    pub message: String,
    /// What to do about it (empty when all is well).
    pub fix: String,
}

impl Finding {
    pub fn ok(check: &'static str, message: impl Into<String>) -> Self {
        Finding {
            check,
            severity: Severity::Ok,
            message: message.into(),
            fix: String::new(),
        }
    }
    pub fn bad(
        check: &'static str,
        severity: Severity,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            check,
            severity,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Routes of the virthost (`ip -o route` for both families) as
/// (destination, device).
async fn routes(access: &VirthostAccess) -> Result<Vec<(IpNet, String)>, String> {
    let out = access
        .run(
            Command::script("ip -o -4 route show table all; ip -o -6 route show table all"),
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(parse_routes(&out.stdout_str()))
}

fn parse_routes(text: &str) -> Vec<(IpNet, String)> {
    text.lines()
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            // "local 10.0.0.1 dev …", "broadcast …", "unreachable …" have a type first
            const TYPES: [&str; 9] = [
                "unicast",
                "local",
                "broadcast",
                "multicast",
                "anycast",
                "unreachable",
                "prohibit",
                "blackhole",
                "throw",
            ];
            let first = usize::from(words.first().is_some_and(|w| TYPES.contains(w)));
            let dest = *words.get(first)?;
            let net: IpNet = dest
                .parse()
                .ok()
                .or_else(|| dest.parse::<std::net::IpAddr>().ok().map(IpNet::from))?;
            let dev = words
                .iter()
                .position(|w| *w == "dev")
                .and_then(|i| words.get(i + 1))
                .map(|s| s.to_string())
                .unwrap_or_default();
            Some((net, dev))
        })
        .filter(|(net, _)| net.prefix_len() > 0)
        .collect()
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Every check. `libvirt` is `None` when it could not be reached.
pub async fn check(
    access: &VirthostAccess,
    lab: &Lab,
    libvirt: Option<&Connection>,
    libvirt_error: Option<String>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let name = LabName::new(&lab.name).ok();
    match (libvirt, &libvirt_error) {
        (Some(c), _) => out.push(Finding::ok(
            "libvirt",
            format!(
                "{} answers (libvirt {})",
                c.uri(),
                super::access::blocking(|| c.libvirt_version())
                    .map(|(a, b, m)| format!("{a}.{b}.{m}"))
                    .unwrap_or_else(|_| "?".into())
            ),
        )),
        (None, e) => out.push(Finding::bad(
            "libvirt",
            Severity::Blocking,
            format!(
                "libvirt is not reachable: {}",
                e.clone().unwrap_or_default()
            ),
            "run `kubelab up` (it installs and starts libvirtd), or start libvirtd on the virthost",
        )),
    }

    // KVM
    match kvm_probe(access).await {
        Ok(KvmProbe::Usable) => out.push(Finding::ok("kvm", "/dev/kvm with vmx/svm CPU flags")),
        Ok(p) => {
            let what = if p == KvmProbe::NoDevice {
                "no /dev/kvm"
            } else {
                "/dev/kvm exists but the CPU has no vmx/svm flags: KVM guests would hang"
            };
            let sev = if lab.virthost.domain_type == LabDomainType::Kvm {
                Severity::Blocking
            } else {
                Severity::Warning
            };
            out.push(Finding::bad(
                "kvm",
                sev,
                format!("{what}; VMs run under QEMU emulation (TCG), much slower"),
                "use domain type qemu (domain_type: qemu or auto in the virthost inventory)",
            ));
        }
        Err(e) => out.push(Finding::bad("kvm", Severity::Warning, e, "")),
    }

    // disk space
    let need_mib: u64 = lab
        .vms
        .iter()
        .map(|v| (v.disk_gib << 10) / 4 + v.spare_disks.iter().map(|d| d.size_mib / 8).sum::<u64>())
        .sum::<u64>()
        + 3072;
    let dir = &lab.virthost.storage_dir;
    let df = format!(
        "d={}; while [ ! -d \"$d\" ]; do d=$(dirname \"$d\"); done; df -Pk \"$d\" | tail -n 1",
        quote(dir)
    );
    match access
        .run(Command::script(df), Duration::from_secs(30))
        .await
    {
        Ok(o) if o.status.success() => {
            let free_mib = o
                .stdout_str()
                .split_whitespace()
                .nth(3)
                .and_then(|k| k.parse::<u64>().ok())
                .map(|k| k / 1024);
            match free_mib {
                Some(free) if free >= need_mib => out.push(Finding::ok(
                    "disk",
                    format!("{free} MiB free for {dir}, the lab needs about {need_mib} MiB"),
                )),
                Some(free) => out.push(Finding::bad(
                    "disk",
                    Severity::Blocking,
                    format!("{free} MiB free for {dir}, the lab needs about {need_mib} MiB (image, overlays, spare disks as they fill)"),
                    "free disk space there, or set storage_dir to a bigger filesystem",
                )),
                None => out.push(Finding::bad("disk", Severity::Warning, "cannot read df output", "")),
            }
        }
        Ok(o) => out.push(Finding::bad(
            "disk",
            Severity::Warning,
            format!("df failed: {}", o.stderr_str().trim()),
            "",
        )),
        Err(e) => out.push(Finding::bad("disk", Severity::Warning, e.to_string(), "")),
    }

    // route collisions (routes on the lab's own bridges are the lab's)
    match routes(access).await {
        Ok(routes) => {
            let own: Vec<String> = match (libvirt, &name) {
                (Some(c), Some(n)) => lab
                    .networks
                    .iter()
                    .filter_map(|net| {
                        super::access::blocking(|| c.network_bridge(n, &net.name)).ok()
                    })
                    .collect(),
                _ => Vec::new(),
            };
            let mut clean = true;
            for net in &lab.networks {
                if matches!(net.kind, NetworkKind::Bridged { .. }) {
                    continue;
                }
                let subnets: Vec<IpNet> = net
                    .ipv4
                    .map(IpNet::V4)
                    .into_iter()
                    .chain(net.ipv6.map(IpNet::V6))
                    .collect();
                for s in subnets {
                    for (r, dev) in &routes {
                        if own.contains(dev) || !overlaps(&s, r) {
                            continue;
                        }
                        // host routes of the host's own addresses are fine only
                        // when they are not inside the subnet; anything else collides
                        clean = false;
                        out.push(Finding::bad(
                            "routes",
                            Severity::Blocking,
                            format!(
                                "network {} ({s}) collides with the virthost route {r} dev {dev}",
                                net.name
                            ),
                            format!(
                                "give network {} a subnet no route of the virthost covers",
                                net.name
                            ),
                        ));
                    }
                }
            }
            if clean {
                out.push(Finding::ok(
                    "routes",
                    "no lab subnet collides with a virthost route",
                ));
            }
        }
        Err(e) => out.push(Finding::bad("routes", Severity::Warning, e, "")),
    }

    // sshd forwarding on a remote virthost: VMs are reached through TCP
    // forwarding, libvirt through stream-local (Unix socket) forwarding
    if let VirthostConnection::Ssh(h) = &lab.virthost.connection {
        match access
            .run(
                Command::script(
                    "sshd -T 2>/dev/null | grep -i -e '^allowtcpforwarding' -e '^allowstreamlocalforwarding'",
                ),
                Duration::from_secs(30),
            )
            .await
        {
            Ok(o) => {
                let text = o.stdout_str().to_ascii_lowercase();
                let refused: Vec<&str> = text
                    .lines()
                    .filter(|l| l.ends_with(" no") || l.ends_with(" remote"))
                    .collect();
                if refused.is_empty() {
                    out.push(Finding::ok(
                        "ssh-forwarding",
                        "sshd allows TCP and Unix-socket forwarding",
                    ));
                } else {
                    out.push(Finding::bad(
                        "ssh-forwarding",
                        Severity::Blocking,
                        format!(
                            "sshd on {} does not allow the forwarding kubelab needs ({})",
                            h.address,
                            refused.join(", ")
                        ),
                        "set `AllowTcpForwarding yes` and `AllowStreamLocalForwarding yes` (or `local`) in /etc/ssh/sshd_config on the virthost and reload sshd",
                    ));
                }
            }
            Err(e) => out.push(Finding::bad(
                "ssh-forwarding",
                Severity::Warning,
                e.to_string(),
                "",
            )),
        }
    }

    // IPv6 forwarding when the lab routes IPv6 (NAT networks)
    if lab
        .networks
        .iter()
        .any(|n| n.kind == NetworkKind::Nat && n.ipv6.is_some())
    {
        match access
            .run(Command::script("cat /proc/sys/net/ipv6/conf/all/forwarding; cat /proc/sys/net/ipv6/conf/all/accept_ra"), Duration::from_secs(30))
            .await
        {
            Ok(o) => {
                let s = o.stdout_str();
                let mut l = s.lines();
                let fwd = l.next().unwrap_or("").trim().to_string();
                let ra = l.next().unwrap_or("").trim().to_string();
                if ra == "2" {
                    out.push(Finding::bad(
                        "ipv6-forwarding",
                        Severity::Warning,
                        "accept_ra=2 on the virthost: libvirt refuses to enable IPv6 forwarding for NAT networks when interfaces take router advertisements",
                        "ensure the virthost's IPv6 default route is static, or set net.ipv6.conf.<uplink>.accept_ra=2 knowingly",
                    ));
                } else {
                    out.push(Finding::ok(
                        "ipv6-forwarding",
                        format!("net.ipv6.conf.all.forwarding={fwd} (libvirt enables it when the network starts)"),
                    ));
                }
            }
            Err(e) => out.push(Finding::bad("ipv6-forwarding", Severity::Warning, e.to_string(), "")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_parsed_with_device() {
        let r = parse_routes(
            "default via 10.0.0.1 dev eth0\n10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.5\nlocal 10.0.0.5 dev eth0 table local proto kernel scope host src 10.0.0.5\nfd00:1::/64 dev virbr1 proto kernel metric 256\n",
        );
        assert!(r.contains(&("10.0.0.0/24".parse().unwrap(), "eth0".into())));
        assert!(r.contains(&("10.0.0.5/32".parse().unwrap(), "eth0".into())));
        assert!(r.contains(&("fd00:1::/64".parse().unwrap(), "virbr1".into())));
        assert!(!r.iter().any(|(n, _)| n.prefix_len() == 0));
        assert!(overlaps(
            &"10.0.0.0/16".parse().unwrap(),
            &"10.0.3.0/24".parse().unwrap()
        ));
        assert!(!overlaps(
            &"10.1.0.0/16".parse().unwrap(),
            &"10.0.3.0/24".parse().unwrap()
        ));
    }
}
