//! NAT64/DNS64 for IPv6-only labs: the VMs with role `nat64` translate
//! the NAT64 prefix to IPv4 (tayga, behind the VM's own IPv4 NAT) and
//! answer DNS with synthesized AAAA records (bind9 forwarding to the
//! virthost); every other VM routes the prefix through the first of them.
//! The built-in playbooks `nat64` and `nat64-remove` run in this stage.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;
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

/// The `nat64` stage: the VMs with role `nat64` translate the NAT64 prefix
/// to IPv4 (tayga) and answer DNS with synthesized AAAA records (bind9,
/// forwarding to the virthost); every other VM routes the prefix through
/// the first of them. Var `nat64` holds the lab's settings (checked by the
/// validator), the DNS zone
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
    let server6 = crate::kubernetes::config::dns64_server(lab, &facts).map(|a| a.to_string());
    let settings = &lab.nat64;
    // The validator checked that the pool has room for tayga's address.
    let tayga4 = settings.pool4.hosts().next();
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
            "prefix": settings.prefix.to_string(),
            "tayga_prefix": TAYGA_PREFIX.to_string(),
            "pool4": settings.pool4.to_string(),
            "tayga_ipv4": tayga4.map(|a| a.to_string()),
            "tayga_ipv6": settings.tayga_ipv6.to_string(),
            "resolver": settings.resolver,
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
        assert_eq!(n["resolver"], true);
        // Bad settings are the validator's: each error at its variable.
        let errors = |vars: &str| {
            crate::lab::load_str(
                std::path::Path::new("lab.yaml"),
                &format!("{LAB}vars: {vars}\n"),
                &Default::default(),
            )
            .map(|_| String::new())
            .unwrap_or_else(|d| d.render(false))
        };
        let e = errors("{nat64_pool4: 10.9.0.0/25}");
        assert!(
            e.contains("lab.yaml:11:21") && e.contains("overlaps network `lan`"),
            "{e}"
        );
        let e = errors("{nat64_prefix: \"64:ff9b::/64\"}");
        assert!(e.contains("not a /96"), "{e}");
        let e = errors("{nat64_prefix: \"64:ff9b::1/96\"}");
        assert!(e.contains("has host bits set"), "{e}");
        let e = errors("{nat64_tayga_ipv6: \"64:ff9b::1\"}");
        assert!(e.contains("inside the NAT64 prefix 64:ff9b::/96"), "{e}");
        let e = errors("{nat64_pool4: 10.99.0.0/31, nat64_resolver: maybe}");
        assert!(
            e.contains("has no room") && e.contains("true or false"),
            "{e}"
        );
        assert!(errors("{nat64_pool4: 10.99.0.0/30}").is_empty());
        let off = lab(&format!("{LAB}vars: {{nat64_resolver: false}}\n"));
        assert_eq!(
            stage(&off, "nat64", None).unwrap().vars["nat64"]["resolver"],
            false
        );
    }

    #[test]
    fn the_defaults_are_the_documented_ones() {
        use crate::lab::model::Nat64;
        assert_eq!(Nat64::PREFIX.to_string(), "64:ff9b::/96");
        assert_eq!(Nat64::POOL4.to_string(), "192.168.255.0/24");
        assert_eq!(Nat64::TAYGA_IPV6.to_string(), "fd64:64:64::1");
        assert_eq!(TAYGA_PREFIX.to_string(), "fd64:64:64:6464::/96");
        assert!(!Nat64::PREFIX.contains(&Nat64::TAYGA_IPV6));
        assert!(!TAYGA_PREFIX.contains(&Nat64::TAYGA_IPV6));
        let n = &stage(&lab(LAB), "nat64", None).unwrap().vars["nat64"];
        assert_eq!(n["tayga_prefix"], "fd64:64:64:6464::/96");
        assert_eq!(n["tayga_ipv6"], "fd64:64:64::1");
    }
}
