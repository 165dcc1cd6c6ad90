//! `kubelab import-ansible`: kube-ansible inventories and extra vars in,
//! lab files that validate out.

use std::path::{Path, PathBuf};

use kubelab::import::ansible::{ImportOptions, Imported, Note, import};

const DIR: &str = "tests/fixtures/ansible";

fn fixture(rel: &str) -> PathBuf {
    Path::new(DIR).join(rel)
}

fn opts(inventory: &str, extra: &[&str]) -> ImportOptions {
    ImportOptions {
        inventory: fixture(inventory),
        extra_vars: extra
            .iter()
            .map(|e| match e.strip_prefix('@') {
                Some(f) => format!("@{}", fixture(f).display()),
                None => e.to_string(),
            })
            .collect(),
        ..ImportOptions::default()
    }
}

/// Import, check the lab loads cleanly with the real loader, and give the
/// lab and the notes as one text for a snapshot.
fn import_valid(o: &ImportOptions) -> (Imported, String) {
    let imported = match import(o) {
        Ok(i) => i,
        Err(d) => panic!("import failed:\n{}", d.render(false)),
    };
    match kubelab::lab::load_str(
        Path::new("imported.yaml"),
        &imported.lab,
        &kubelab::lab::LoadOptions::default(),
    ) {
        Ok((_, warnings)) => assert!(
            warnings.is_empty(),
            "warnings on the imported lab:\n{}",
            warnings.render(false)
        ),
        Err(d) => panic!("imported lab does not validate:\n{}", d.render(false)),
    }
    let notes: Vec<String> = imported.notes.iter().map(|n| n.to_string()).collect();
    let text = format!("{}\n# --- stderr ---\n{}\n", imported.lab, notes.join("\n"));
    (imported, text)
}

fn not_mapped(i: &Imported, var: &str) -> Option<String> {
    i.notes.iter().find_map(|n| match n {
        Note::NotMapped { var: v, reason } if v == var => Some(reason.clone()),
        _ => None,
    })
}

#[test]
fn ipv6_lab() {
    let (i, text) = import_valid(&opts("ipv6/virthost.inventory", &["@ipv6/extravars.yml"]));
    insta::assert_snapshot!("ipv6_lab", text);
    let (lab, _) = kubelab::lab::load_str(
        Path::new("x.yaml"),
        &i.lab,
        &kubelab::lab::LoadOptions::default(),
    )
    .unwrap();
    let k = lab.kubernetes.as_ref().unwrap();
    assert_eq!(k.network, "k8s-ipv6-private");
    let addr = |vm: &str| {
        lab.vm(vm).unwrap().nics[1]
            .ipv6
            .map(|a| a.to_string())
            .unwrap_or_default()
    };
    assert_eq!(addr("kube-master"), "fd00::100");
    assert_eq!(addr("kube-node-1"), "fd00::101");
    assert_eq!(addr("kube-node-2"), "fd00::102");
    assert_eq!(addr("kube-nat64-dns64"), "fd00::64");
    assert!(lab.vm("kube-nat64-dns64").unwrap().has_role("nat64"));
    assert_eq!(lab.scenarios.len(), 1);
    assert_eq!(lab.scenarios[0].name(), "ipv6-ping6");
}

#[test]
fn bridged_lab() {
    let (i, text) = import_valid(&opts(
        "bridged/virthost.inventory",
        &["@bridged/extravars.yml"],
    ));
    insta::assert_snapshot!("bridged_lab", text);
    assert_eq!(
        not_mapped(&i, "enable_auditlog").as_deref(),
        Some("kubelab has no audit-log option")
    );
    assert!(not_mapped(&i, "virtual_machines[2].add_param").is_some());
    // A Jinja expression is never copied.
    assert!(not_mapped(&i, "vm_ssh_key_path").is_some());
    assert!(!i.lab.contains("lookup("));
}

#[test]
fn crio_lab_with_overrides() {
    let mut o = opts(
        "crio/virthost.inventory",
        &["@crio/extravars.yml", "@crio/overrides.yml"],
    );
    o.name = Some("crio-lab".into());
    let (i, text) = import_valid(&o);
    insta::assert_snapshot!("crio_lab", text);
    // The later file wins.
    assert!(i.lab.contains("  memory: 8GiB\n"), "{}", i.lab);
    assert!(i.lab.contains("  cni: calico\n"));
    // 1.17.3-0 is older than kubelab supports, and the note says so.
    assert!(i.lab.contains("version: \"1.24\""));
    assert!(i.notes.iter().any(|n| matches!(n,
        Note::Adjusted { var, message } if var == "kube_version" && message.contains("oldest supported"))));
}

#[test]
fn key_value_extra_vars_win_over_files() {
    let o = opts(
        "crio/virthost.inventory",
        &[
            "@crio/extravars.yml",
            "kube_version=1.30.2-0 container_runtime=docker",
        ],
    );
    let (i, _) = import_valid(&o);
    assert!(i.lab.contains("version: 1.30.2\n"), "{}", i.lab);
    assert!(i.lab.contains("runtime: docker\n"));
}

#[test]
fn image_url_with_checksum() {
    let mut o = opts("crio/virthost.inventory", &["@crio/extravars.yml"]);
    o.image_sha256 = Some("AB".repeat(32));
    let (i, _) = import_valid(&o);
    assert!(
        i.lab.contains("url: https://cloud.centos.org/"),
        "{}",
        i.lab
    );
    assert!(i.lab.contains(&format!("sha256: {}", "ab".repeat(32))));
    assert!(not_mapped(&i, "centos_genericcloud_url").is_none());
}

#[test]
fn image_url_without_checksum_builds_instead() {
    let (i, _) = import_valid(&opts("crio/virthost.inventory", &["@crio/extravars.yml"]));
    assert!(i.lab.contains("build: debian-12"));
    assert!(!i.lab.contains("url:"));
    assert!(
        not_mapped(&i, "centos_genericcloud_url")
            .unwrap()
            .contains("--image-sha256")
    );
}

#[test]
fn old_yaml_inventory_and_plain_vm_names() {
    let (i, text) = import_valid(&opts(
        "old-yaml/inventory.yml",
        &["@old-yaml/extravars.yml"],
    ));
    insta::assert_snapshot!("old_yaml_lab", text);
    assert!(i.lab.contains("address: 203.0.113.5"));
}

#[test]
fn kubehost_group_and_default_vms() {
    let (i, text) = import_valid(&opts("kubehost/inventory", &["pod_network_type=weave"]));
    insta::assert_snapshot!("kubehost_lab", text);
    assert!(i.lab.contains("address: 192.0.2.30"));
    assert!(
        not_mapped(&i, "pod_network_type")
            .unwrap()
            .contains("weave")
    );
}

fn errors(o: &ImportOptions) -> Vec<String> {
    match import(o) {
        Ok(i) => panic!("expected errors, got:\n{}", i.lab),
        Err(d) => {
            d.0.iter()
                .map(|d| format!("{}: {}", d.location(), d.message))
                .collect()
        }
    }
}

#[test]
fn malformed_ini_is_located() {
    assert_eq!(
        errors(&opts("broken/bad-section.inventory", &[])),
        [
            "tests/fixtures/ansible/broken/bad-section.inventory:1:1: section header without a closing `]`"
        ]
    );
    assert_eq!(
        errors(&opts("broken/bad-host-var.inventory", &[])),
        [
            "tests/fixtures/ansible/broken/bad-host-var.inventory:2:32: expected `key=value`, found `ansible_ssh_user`"
        ]
    );
}

/// The virthost's address comes from `ansible_host` or, without it, from
/// the host's name: either must be an address, and saying so is about the
/// inventory (found by the property test: a host named `é`).
#[test]
fn a_virthost_address_that_is_no_address_is_located_in_the_inventory() {
    assert_eq!(
        errors(&opts("broken/bad-address.inventory", &[])),
        [
            "tests/fixtures/ansible/broken/bad-address.inventory:2:24: `10.0.0.1;reboot` is neither an IP address nor a host name"
        ]
    );
    assert_eq!(
        errors(&opts("broken/bad-host-name.inventory", &[])),
        [
            "tests/fixtures/ansible/broken/bad-host-name.inventory:2:1: `host_with_é` is neither an IP address nor a host name (the virthost's name is its address without ansible_host)"
        ]
    );
}

#[test]
fn inventory_without_virthost_group() {
    assert_eq!(
        errors(&opts("broken/no-virthost.inventory", &[])),
        [
            "tests/fixtures/ansible/broken/no-virthost.inventory: no [virthost] group (or the older [kubehost]) with a host in this inventory; groups found: masters"
        ]
    );
}

#[test]
fn wrong_types_are_all_reported_with_positions() {
    assert_eq!(
        errors(&opts("ipv6/virthost.inventory", &["@broken/bad-types.yml"])),
        [
            "tests/fixtures/ansible/broken/bad-types.yml:4:20: virtual_machines[0].system_ram_mb: expected a whole number, found `lots`",
            "tests/fixtures/ansible/broken/bad-types.yml:6:16: virtual_machines[1].static_ip: expected an IPv4 address, found `10.0.0.300`",
            "tests/fixtures/ansible/broken/bad-types.yml:7:15: ipv6_enabled: expected true or false, found `maybe`",
        ]
    );
}

#[test]
fn malformed_yaml_extra_vars() {
    let e = errors(&opts("ipv6/virthost.inventory", &["@broken/not-yaml.yml"]));
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("tests/fixtures/ansible/broken/not-yaml.yml:2:"),
        "{e:?}"
    );
    assert!(e[0].contains("invalid YAML"), "{e:?}");
    assert_eq!(
        errors(&opts("ipv6/virthost.inventory", &["@broken/list.yml"])),
        [
            "tests/fixtures/ansible/broken/list.yml:1:1: extra vars must be a mapping of variable names to values, found a list"
        ]
    );
}

#[test]
fn unreadable_files() {
    let e = errors(&opts("nope/inventory", &[]));
    assert!(
        e[0].starts_with("tests/fixtures/ansible/nope/inventory: cannot read"),
        "{e:?}"
    );
    let e = errors(&opts("ipv6/virthost.inventory", &["@nope.yml"]));
    assert!(e[0].contains("cannot read"), "{e:?}");
}

#[test]
fn bad_command_line_values() {
    let mut o = opts("ipv6/virthost.inventory", &["@ipv6/extravars.yml"]);
    o.name = Some("a;rm -rf /".into());
    o.image_sha256 = Some("xyz".into());
    let e = errors(&o);
    assert_eq!(
        e,
        [
            "<command line>: --name `a;rm -rf /` is not a valid lab name: `;` is not allowed",
            "<command line>: --image-sha256 must be 64 hex digits, found 3 characters",
        ]
    );
    let e = errors(&opts("ipv6/virthost.inventory", &["novalue"]));
    assert_eq!(
        e,
        [
            "<-e argument>:1:1: -e expects `@file.yml`, `key=value` or a YAML mapping, found `novalue`"
        ]
    );
}

#[test]
fn cli_writes_the_lab_and_lists_unmapped_variables() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("lab.yaml");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kubelab"))
        .args(["import-ansible", "-i"])
        .arg(fixture("bridged/virthost.inventory"))
        .arg("-e")
        .arg(format!("@{}", fixture("bridged/extravars.yml").display()))
        .arg("-o")
        .arg(&out)
        .arg("--name")
        .arg("bridged")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l == "not mapped: enable_auditlog — kubelab has no audit-log option"),
        "{stderr}"
    );
    let v = std::process::Command::new(env!("CARGO_BIN_EXE_kubelab"))
        .arg("validate")
        .arg(&out)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[test]
fn cli_fails_on_malformed_inventory() {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_kubelab"))
        .args(["--color", "never", "import-ansible", "-i"])
        .arg(fixture("broken/bad-host-var.inventory"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("tests/fixtures/ansible/broken/bad-host-var.inventory:2:32"),
        "{stderr}"
    );
    assert!(o.stdout.is_empty());
}

const TWO_MASTERS: &str = "{virtual_machines: [{name: m1, node_type: master}, {name: m2, node_type: master_slave}, {name: w, node_type: nodes}]}";

#[test]
fn several_masters_with_lb_use_haproxy() {
    let o = opts(
        "kubehost/inventory",
        &[
            TWO_MASTERS,
            "{virtual_machines: [{name: m1, node_type: master}, {name: m2, node_type: master_slave}, {name: haproxy, node_type: lb}]}",
        ],
    );
    let (i, _) = import_valid(&o);
    assert!(i.lab.contains("ha: {mode: haproxy}"), "{}", i.lab);
    assert!(i.lab.contains("roles: [lb]"));
}

#[test]
fn several_masters_without_lb_get_a_virtual_ip() {
    let (i, _) = import_valid(&opts("kubehost/inventory", &[TWO_MASTERS]));
    assert!(
        i.lab.contains("ha: {mode: kube-vip, vip: 192.168.124.10}"),
        "{}",
        i.lab
    );
    let (i, _) = import_valid(&opts(
        "kubehost/inventory",
        &[TWO_MASTERS, "ipv6_enabled=yes"],
    ));
    assert!(
        i.lab.contains("ha: {mode: kube-vip, vip: fd00::10}"),
        "{}",
        i.lab
    );
    // On a LAN kubelab cannot pick a free address.
    let e = errors(&opts(
        "kubehost/inventory",
        &[TWO_MASTERS, "bridge_networking=true"],
    ));
    assert!(e[0].contains("no `lb` VM"), "{e:?}");
}

#[test]
fn bridged_without_subnet_assumes_kube_ansibles_default() {
    let (i, _) = import_valid(&opts(
        "kubehost/inventory",
        &["bridge_networking=true bridge_physical_nic=eno2"],
    ));
    assert!(i.lab.contains("ipv4: 192.168.1.0/24"), "{}", i.lab);
    assert!(i.lab.contains("nic: eno2"));
    assert!(
        i.notes
            .iter()
            .any(|n| n.to_string().contains("assumed kube-ansible's default"))
    );
}

#[test]
fn kubernetes_subnets_move_out_of_the_lab_network() {
    let (i, _) = import_valid(&opts(
        "kubehost/inventory",
        &["bridge_networking=true bridge_network_cidr=10.0.0.0/8"],
    ));
    assert!(
        i.lab.contains("service_cidrs: [172.30.0.0/16]"),
        "{}",
        i.lab
    );
    assert!(i.lab.contains("pod_cidrs: [172.31.0.0/16]"), "{}", i.lab);
    // A pod subnet the user chose inside the lab network is an error at it.
    let e = errors(&opts(
        "kubehost/inventory",
        &["bridge_networking=true bridge_network_cidr=10.0.0.0/8 pod_network_cidr=10.244.0.0"],
    ));
    assert_eq!(
        e,
        ["<-e argument>:1:72: pod_network_cidr: 10.244.0.0/16 overlaps the lab network 10.0.0.0/8"]
    );
}

#[test]
fn small_subnets_are_not_mapped() {
    let (i, _) = import_valid(&opts(
        "kubehost/inventory",
        &["system_network=192.168.5.0 system_netmask=255.255.255.252"],
    ));
    assert!(
        not_mapped(&i, "system_netmask")
            .unwrap()
            .contains("too small")
    );
    assert!(i.lab.contains("ipv4: 192.168.124.0/24"));
}

/// kube-ansible's IPv6 walkthrough prints the virthost as one host line
/// with its connection variables and no group header: that host is the
/// virthost, and the lab is the one the grouped inventory gives.
#[test]
fn the_walkthrough_inventory_as_printed() {
    let (grouped, _) = import_valid(&opts("ipv6/virthost.inventory", &["@ipv6/extravars.yml"]));
    let (printed, _) = import_valid(&opts(
        "ipv6/walkthrough.inventory",
        &["@ipv6/extravars.yml"],
    ));
    let body = |lab: &str| lab.lines().skip(4).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&printed.lab), body(&grouped.lab));
    assert!(
        printed.lab.contains("address: 192.0.2.20"),
        "{}",
        printed.lab
    );
    // The walkthrough's `ansible_host=`, before the reader fills it in.
    assert_eq!(
        errors(&opts("broken/walkthrough-empty-address.inventory", &[])),
        [
            "tests/fixtures/ansible/broken/walkthrough-empty-address.inventory:2:23: the virthost's address is empty: write its IP address or host name after the `=`"
        ]
    );
    // Two ungrouped hosts: no guess.
    let two = errors(&opts("broken/two-ungrouped.inventory", &[]));
    assert!(two[0].contains("no [virthost] group"), "{two:?}");
}
