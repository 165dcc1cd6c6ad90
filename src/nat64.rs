//! NAT64/DNS64 for IPv6-only labs: the VMs with role `nat64` translate
//! the NAT64 prefix to IPv4 (tayga, behind the VM's own IPv4 NAT) and
//! answer DNS with synthesized AAAA records (bind9 forwarding to the
//! virthost); every other VM routes the prefix through the first of them.
//! The built-in playbooks `nat64` and `nat64-remove` run in this stage.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::{Value, json};

use crate::kubernetes::stage::cluster_facts;
use crate::lab::Lab;
use crate::stage::model::{Stage, StageError};
use crate::state::Inventory as StateInventory;
use crate::template::Vars;

/// The NAT64/DNS64 VMs (role `nat64`).
pub const SERVER_GROUP: &str = "nat64";
/// The VMs that route the NAT64 prefix through them.
pub const CLIENT_GROUP: &str = "nat64-clients";

/// The NAT64 prefix (RFC 6052's well-known prefix 64:ff9b::/96) unless the
/// lab sets `vars: {nat64_prefix: ...}` (a /96).
pub const PREFIX: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
/// The IPv4 pool tayga maps IPv6 clients into (masqueraded behind the
/// NAT64 VM) unless the lab sets `vars: {nat64_pool4: ...}`.
pub const POOL4: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 255, 0), 24);
/// tayga's own IPv6 address (the source of its ICMPv6 errors), outside
/// the NAT64 prefix, unless the lab sets `vars: {nat64_tayga_ipv6: ...}`.
pub const TAYGA_IPV6: Ipv6Addr = Ipv6Addr::new(0xfd64, 0x64, 0x64, 0, 0, 0, 0, 1);
/// The prefix tayga itself translates: the NAT64 VM maps the NAT64 prefix
/// onto it (ip6tables NETMAP) on the way in, and back on the way out.
/// tayga 0.9 (Debian 12, Ubuntu 24.04) refuses to translate private IPv4
/// addresses through the well-known prefix 64:ff9b::/96 (RFC 6052), and a
/// lab's IPv4 side is private (the virthost, its NAT): through a
/// unique-local prefix it translates them all.
pub const TAYGA_PREFIX: Ipv6Net =
    Ipv6Net::new_assert(Ipv6Addr::new(0xfd64, 0x64, 0x64, 0x6464, 0, 0, 0, 0), 96);

/// Whether a built-in playbook (its name without `playbooks/` and `.yaml`)
/// runs in this stage.
pub fn runs(playbook: &str) -> bool {
    playbook == "nat64" || playbook == "nat64-remove"
}

/// A setting from the lab's `vars`, else its default.
fn lab_var<T: std::str::FromStr>(
    lab: &Lab,
    name: &str,
    default: T,
    expected: &str,
) -> Result<T, StageError> {
    let text = match lab.vars.get(name) {
        None => return Ok(default),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    text.parse().map_err(|_| StageError::Invalid {
        what: format!("vars.{name}"),
        message: format!("`{text}` is not {expected}"),
    })
}

/// The `nat64` stage: the VMs with role `nat64` translate the NAT64 prefix
/// to IPv4 (tayga) and answer DNS with synthesized AAAA records (bind9,
/// forwarding to the virthost); every other VM routes the prefix through
/// the first of them. Var `nat64` holds the checked settings, the DNS zone
/// `<lab>.test` (the VMs, and `virthost` with an A record only) and the
/// server's IPv6 address.
pub fn stage(
    lab: &Lab,
    playbook: &str,
    state: Option<&StateInventory>,
) -> Result<Stage, StageError> {
    let facts = cluster_facts(lab, state);
    let servers: Vec<String> = lab
        .group(SERVER_GROUP)
        .iter()
        .map(|v| v.name.clone())
        .collect();
    let clients: Vec<String> = lab
        .vms
        .iter()
        .filter(|v| !v.has_role(SERVER_GROUP))
        .map(|v| v.name.clone())
        .collect();
    let server6 = servers
        .first()
        .and_then(|s| facts.addresses(s).ipv6)
        .map(|a| a.to_string());
    let prefix: Ipv6Net = lab_var(lab, "nat64_prefix", PREFIX, "an IPv6 prefix")?;
    if prefix.prefix_len() != 96 || prefix.trunc() != prefix {
        return Err(StageError::Invalid {
            what: "vars.nat64_prefix".into(),
            message: format!("{prefix} is not a /96 network prefix"),
        });
    }
    let pool4: Ipv4Net = lab_var(lab, "nat64_pool4", POOL4, "an IPv4 subnet")?;
    let tayga4 = pool4.hosts().next().ok_or_else(|| StageError::Invalid {
        what: "vars.nat64_pool4".into(),
        message: format!("{pool4} has no room for addresses"),
    })?;
    let tayga6: Ipv6Addr = lab_var(lab, "nat64_tayga_ipv6", TAYGA_IPV6, "an IPv6 address")?;
    if prefix.contains(&tayga6) {
        return Err(StageError::Invalid {
            what: "vars.nat64_tayga_ipv6".into(),
            message: format!("{tayga6} is inside the NAT64 prefix {prefix}"),
        });
    }
    for net in &lab.networks {
        if net
            .ipv4
            .is_some_and(|n| n.contains(&pool4.network()) || pool4.contains(&n.network()))
        {
            return Err(StageError::Invalid {
                what: "vars.nat64_pool4".into(),
                message: format!("{pool4} overlaps network `{}`", net.name),
            });
        }
    }
    let network = lab
        .kubernetes
        .as_ref()
        .and_then(|k| lab.network(&k.network))
        .or_else(|| lab.networks.first());
    let forwarders: Vec<String> = network
        .and_then(|n| n.gateway4())
        .map(|g| g.to_string())
        .into_iter()
        .collect();
    let hosts: Vec<Value> = lab
        .vms
        .iter()
        .map(|v| {
            let a = facts.addresses(&v.name);
            json!({"name": v.name, "ipv4": a.ipv4.map(|x| x.to_string()),
                   "ipv6": a.ipv6.map(|x| x.to_string())})
        })
        .collect();
    let mut vars = Vars::new();
    vars.insert(
        "nat64".into(),
        json!({
            "prefix": prefix.to_string(),
            "tayga_prefix": TAYGA_PREFIX.to_string(),
            "pool4": pool4.to_string(),
            "tayga_ipv4": tayga4.to_string(),
            "tayga_ipv6": tayga6.to_string(),
            "tun": "kl-nat64",
            "server": servers.first(),
            "server_ipv6": server6,
            "forwarders": forwarders,
            "zone": format!("{}.test", lab.name),
            // A unique-local lab prefix (fc00::/7) reaches no global IPv6.
            "synthesize_global": network
                .and_then(|n| n.ipv6)
                .is_some_and(|p| (p.network().segments()[0] & 0xfe00) == 0xfc00),
            "virthost_ipv4": network.and_then(|n| n.gateway4()).map(|g| g.to_string()),
            "hosts": hosts,
        }),
    );
    Ok(Stage {
        title: playbook.to_string(),
        playbook: playbook.to_string(),
        vars,
        host_vars: BTreeMap::new(),
        groups: BTreeMap::from([
            (SERVER_GROUP.to_string(), servers),
            (CLIENT_GROUP.to_string(), clients),
        ]),
        virthost: false,
        generated: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::lab::from_test_yaml as lab;

    use crate::lab::IPV6_TEST_LAB as LAB;

    #[test]
    fn the_nat64_stage_checks_its_settings() {
        let l = lab(LAB);
        let made = stage(&l, "nat64", None).unwrap();
        assert_eq!(made.groups[SERVER_GROUP], ["gw"]);
        assert_eq!(made.groups[CLIENT_GROUP], ["cp", "w"]);
        let n = &made.vars["nat64"];
        assert_eq!(n["server_ipv6"], "fd00:9::64");
        assert_eq!(n["prefix"], "64:ff9b::/96");
        assert_eq!(n["tayga_ipv4"], "192.168.255.1");
        assert_eq!(n["forwarders"], serde_json::json!(["10.9.0.1"]));
        assert_eq!(n["synthesize_global"], true, "fd00::/8 is unique-local");
        let bad = lab(&format!("{LAB}vars: {{nat64_pool4: 10.9.0.0/25}}\n"));
        let e = stage(&bad, "nat64", None).unwrap_err().to_string();
        assert!(e.contains("overlaps network `lan`"), "{e}");
        let bad = lab(&format!("{LAB}vars: {{nat64_prefix: \"64:ff9b::/64\"}}\n"));
        let e = stage(&bad, "nat64", None).unwrap_err().to_string();
        assert!(e.contains("not a /96"), "{e}");
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        assert_eq!(PREFIX.to_string(), "64:ff9b::/96");
        assert_eq!(POOL4.to_string(), "192.168.255.0/24");
        assert_eq!(TAYGA_IPV6.to_string(), "fd64:64:64::1");
        assert_eq!(TAYGA_PREFIX.to_string(), "fd64:64:64:6464::/96");
        assert!(!PREFIX.contains(&TAYGA_IPV6) && !TAYGA_PREFIX.contains(&TAYGA_IPV6));
        let n = &stage(&lab(LAB), "nat64", None).unwrap().vars["nat64"];
        assert_eq!(n["tayga_prefix"], "fd64:64:64:6464::/96");
        assert_eq!(n["tayga_ipv6"], "fd64:64:64::1");
    }
}
