//! Lab files: what the YAML says ([`file`]), how it is read ([`load`]) and
//! checked ([`validate`]), and the validated model the rest of kubelab uses
//! ([`model`]).

pub mod file;
pub mod load;
pub mod model;
pub mod overrides;
pub mod size;
pub mod validate;

pub use load::{LoadOptions, load, load_str};
pub use model::Lab;

/// An IPv6-only cluster lab with static addresses and a NAT64 VM, for the
/// unit tests of the stages.
#[cfg(test)]
pub const IPV6_TEST_LAB: &str = r#"
name: k
virthost: local
image: {build: debian-12}
networks: [{name: lan, kind: nat, ipv4: 10.9.0.0/24, ipv6: "fd00:9::/64"}]
vms:
  - {name: cp, roles: [control-plane], cpus: 2, memory: 2GiB, nics: [{network: lan, ipv4: 10.9.0.10, ipv6: "fd00:9::10"}]}
  - {name: w, roles: [worker], nics: [{network: lan, ipv4: 10.9.0.20, ipv6: "fd00:9::20"}]}
  - {name: gw, roles: [nat64], nics: [{network: lan, ipv4: 10.9.0.64, ipv6: "fd00:9::64"}]}
kubernetes: {version: "1.31", ip_family: ipv6}
"#;

/// A lab from YAML text (as if read from `lab.yaml`), for unit tests:
/// panics with the rendered diagnostics when it is invalid.
#[cfg(test)]
pub fn from_test_yaml(text: &str) -> Lab {
    load_str(std::path::Path::new("lab.yaml"), text, &Default::default())
        .map_err(|e| e.render(false))
        .unwrap()
        .0
}
