//! Property tests over `import-ansible`: whatever the inventory and extra
//! vars hold, the importer never panics, errors name a file, a lab it
//! hands out always validates, and it never makes an invalid lab (its
//! errors are about the input, not about the generated text).

use std::path::Path;

use kubelab::import::ansible::{ImportOptions, import};
use proptest::prelude::*;

fn cases(default: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn run(inventory: &str, vars: &str) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inventory");
    let ev = dir.path().join("vars.yml");
    std::fs::write(&inv, inventory).unwrap();
    std::fs::write(&ev, vars).unwrap();
    let opts = ImportOptions {
        inventory: inv,
        extra_vars: vec![format!("@{}", ev.display())],
        ..ImportOptions::default()
    };
    match import(&opts) {
        Ok(i) => {
            let r = kubelab::lab::load_str(
                Path::new("imported.yaml"),
                &i.lab,
                &kubelab::lab::LoadOptions::default(),
            );
            prop_assert!(r.is_ok(), "imported lab does not validate:\n{}", i.lab);
        }
        Err(d) => {
            // The importer checks its own output with the real loader; an
            // error about the generated text is a bug of the importer (the
            // input's problems are reported against the input).
            for e in &d.0 {
                prop_assert!(
                    e.file.path != Path::new("<imported lab>"),
                    "the importer made an invalid lab: {}\nfrom:\n{inventory}\n---\n{vars}",
                    e.message
                );
            }
            prop_assert!(d.has_errors());
            for e in &d.0 {
                prop_assert!(!e.file.path.as_os_str().is_empty());
            }
        }
    }
    Ok(())
}

const INVENTORY_WORDS: &[&str] = &[
    "[virthost]",
    "[kubehost]",
    "[virthost:vars]",
    "[all:vars]",
    "[x:children]",
    "[bad",
    "vmhost",
    "ansible_host=192.0.2.10",
    "ansible_host=",
    "ansible_port=22",
    "ansible_port=x",
    "ansible_ssh_user=root",
    "ansible_connection=local",
    "a=\"b c\"",
    "'",
    "\"",
    "#",
    ";",
    "=",
    " ",
    "\n",
    "\t",
    "é",
];

const VAR_LINES: &[&str] = &[
    "bridge_networking: true",
    "bridge_networking: false",
    "bridge_networking: maybe",
    "ipv6_enabled: true",
    "bridge_name: br0",
    "bridge_physical_nic: eno1",
    "bridge_network_cidr: 10.0.0.0/8",
    "bridge_network_cidr: 1.2.3.4/40",
    "system_network: 192.168.5.0",
    "system_netmask: 255.255.255.252",
    "system_netmask: 255.0.255.0",
    "kube_version: 1.17.3-0",
    "kube_version: latest",
    "kube_version: v1.99.0",
    "kube_version: \"{{ x }}\"",
    "container_runtime: crio",
    "container_runtime: rkt",
    "pod_network_type: weave",
    "pod_network_cidr: 10.244.0.0",
    "pod_network_cidr: 192.168.122.0/24",
    "pod_network_cidr: [a]",
    "system_default_ram_mb: 0",
    "system_default_cpus: 300",
    "spare_disk_attach: true",
    "spare_disk_size_megs: 99999999999",
    "images_directory: relative",
    "default_ansible_user: root",
    "optional_packages: [vim, \"x;y\"]",
    "centos_genericcloud_url: https://x/y.qcow2",
    "virtual_machines: []",
    "virtual_machines: nope",
    "virtual_machines:\n  - kube-master\n  - kube-node",
    "virtual_machines:\n  - name: m\n    node_type: master\n  - name: m2\n    node_type: master_slave",
    "virtual_machines:\n  - name: m\n    node_type: master\n    static_ip: 192.168.124.1",
    "virtual_machines:\n  - name: \"a;b\"\n    node_type: \"Weird Type!\"\n    static_ip: 10.1.1.255",
    "virtual_machines:\n  - name: ___\n  - {name: x, system_cpus: -1}\n  - [1]",
    "virtual_machines:\n  - name: m\n    node_type: master\n  - name: lb\n    node_type: lb\n  - name: m2\n    node_type: master",
    "virtual_machines:\n  - name: kube-nat64\n  - name: x\n    node_type: nodes",
    "enable_auditlog: true",
    "ansible_host: 198.51.100.1",
    "- a list item",
    ": broken",
];

proptest! {
    #![proptest_config(cases(300))]

    #[test]
    fn any_inventory(words in proptest::collection::vec(0..INVENTORY_WORDS.len(), 0..30)) {
        let inv: String = words.iter().map(|&i| INVENTORY_WORDS[i]).collect::<Vec<_>>().join(" ");
        run(&inv, "")?;
    }

    #[test]
    fn any_extra_vars(lines in proptest::collection::vec(0..VAR_LINES.len(), 0..10)) {
        // Later lines of the same key would be duplicate keys: keep the first.
        let mut seen = std::collections::BTreeSet::new();
        let vars: Vec<&str> = lines
            .iter()
            .map(|&i| VAR_LINES[i])
            .filter(|l| seen.insert(l.split(':').next().unwrap_or("")))
            .collect();
        run("[virthost]\nvmhost ansible_host=192.0.2.10\n", &vars.join("\n"))?;
    }

    #[test]
    fn any_bytes(inv in proptest::collection::vec(any::<u8>(), 0..200),
                 vars in proptest::collection::vec(any::<u8>(), 0..200)) {
        run(&String::from_utf8_lossy(&inv), &String::from_utf8_lossy(&vars))?;
    }
}
