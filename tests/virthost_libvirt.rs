//! A lab on a real local virthost: libvirtd (started by prepare.sh), the
//! cached cloud-init base image, a NAT network with IPv4 + IPv6, the lab's
//! pool, two TCG VMs with seeds and spare disks; SSH with the injected host
//! key; then teardown by ownership while foreign objects survive.
//!
//! Needs root and `scripts/deps.sh test`; skipped (with a message) otherwise.
//! About 2-4 minutes on 2 cores with a cached image.

#[path = "support/libvirt.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kubelab::virthost::libvirt::{Connection, ConsoleRead, LibvirtError, NicAddresses, VmState};
use kubelab::virthost::seed::{HostKey, SeedNic, SeedSpec, SeedUser, seed_files};
use kubelab::virthost::spec::*;
use support::{Foreign, define_foreign, remove_foreign, virsh};

const URI: &str = "qemu:///system";
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);

struct Vm {
    name: &'static str,
    mac: String,
    spare: VolumeFormat,
    /// A second NIC with static addresses (network-config v2 without DHCP).
    static_nic: Option<StaticNic>,
}

struct StaticNic {
    mac: String,
    source: NicSource,
    addresses: Vec<ipnet::IpNet>,
    mtu: u32,
    /// The virthost's addresses on that segment (pinged from the VM).
    peer4: String,
    peer6: String,
}

/// Tears the lab (and the foreign objects) down even when the test panics.
struct Cleanup {
    lab: LabName,
    foreign: Option<Foreign>,
    /// A host bridge the test created (not the lab's: removed here).
    bridge: Option<String>,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed
            && let Ok(c) = Connection::open(URI)
        {
            match c.teardown(&self.lab) {
                Ok(r) if !r.failures.is_empty() => eprintln!("cleanup failures: {:?}", r.failures),
                Err(e) => eprintln!("cleanup failed: {e}"),
                _ => {}
            }
        }
        if let Some(f) = &self.foreign {
            remove_foreign(f);
        }
        if let Some(br) = &self.bridge {
            let _ = Command::new("ip").args(["link", "del", br]).status();
        }
    }
}

fn wait_tcp(addr: SocketAddr, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    false
}

fn ssh(key: &Path, known_hosts: &Path, user: &str, ip: IpAddr, cmd: &str) -> (bool, String) {
    let out = Command::new("ssh")
        .args(["-i", key.to_str().unwrap()])
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
        ])
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "HostKeyAlgorithms=ssh-ed25519",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(format!("{user}@{ip}"))
        .arg(cmd)
        .output()
        .expect("ssh");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn first_ip(nics: &[NicAddresses], mac: &str, v6: bool) -> Option<IpAddr> {
    nics.iter()
        .find(|n| n.mac == mac)?
        .addresses
        .iter()
        .map(|(ip, _)| *ip)
        .find(|ip| ip.is_ipv6() == v6)
}

/// Volumes, seed and domain of one VM; returns the VM's host key.
fn create_vm(
    c: &Connection,
    lab: &LabName,
    pool: &PoolSpec,
    base: &Path,
    vm: &Vm,
    user_key: &str,
) -> HostKey {
    let host_key = HostKey::generate(&lab.object_name(vm.name)).unwrap();
    let seed = seed_files(
        &SeedSpec {
            instance_id: format!("{}-1", lab.object_name(vm.name)),
            hostname: vm.name.into(),
            fqdn: Some(format!("{}.{lab}.test", vm.name)),
            user: SeedUser {
                name: "kubelab".into(),
                authorized_keys: vec![user_key.to_string()],
                sudo: true,
                shell: None,
            },
            nics: std::iter::once(SeedNic {
                name: "eth0".into(),
                mac: vm.mac.clone(),
                dhcp4: true,
                dhcp6: true,
                ..Default::default()
            })
            .chain(vm.static_nic.iter().map(|s| SeedNic {
                name: "eth1".into(),
                mac: s.mac.clone(),
                addresses: s.addresses.clone(),
                mtu: Some(s.mtu),
                ..Default::default()
            }))
            .collect(),
            extra_user_data: BTreeMap::new(),
        },
        &host_key,
    )
    .unwrap();
    let image = seed.to_vfat().unwrap();
    let root = format!("{}-root.qcow2", vm.name);
    let spare = format!("{}-spare1", vm.name);
    let seed_vol = format!("{}-seed.img", vm.name);
    c.ensure_volume(&VolumeSpec {
        lab: lab.clone(),
        name: root.clone(),
        capacity_bytes: 4 << 30,
        format: VolumeFormat::Qcow2,
        backing: Some(BackingStore {
            path: base.to_path_buf(),
            format: VolumeFormat::Qcow2,
        }),
    })
    .unwrap();
    c.ensure_volume(&VolumeSpec {
        lab: lab.clone(),
        name: spare.clone(),
        capacity_bytes: 1 << 30,
        format: vm.spare,
        backing: None,
    })
    .unwrap();
    c.put_volume_bytes(lab, &seed_vol, image.as_bytes())
        .unwrap();
    c.define_domain(&DomainSpec {
        lab: lab.clone(),
        name: vm.name.into(),
        domain_type: DomainType::Qemu,
        cpus: 1,
        memory_mib: 640,
        disks: vec![
            DiskSpec {
                volume: root,
                format: VolumeFormat::Qcow2,
            },
            DiskSpec {
                volume: spare,
                format: vm.spare,
            },
        ],
        seed_volume: Some(seed_vol),
        seed_format: VolumeFormat::Raw,
        nics: std::iter::once(NicSpec {
            mac: vm.mac.clone(),
            source: NicSource::Network("nat".into()),
            mtu: None,
        })
        .chain(vm.static_nic.iter().map(|s| NicSpec {
            mac: s.mac.clone(),
            source: s.source.clone(),
            mtu: None,
        }))
        .collect(),
        console_log: pool.console_log_path(vm.name),
        tb_cache_mib: Some(256),
        guest_agent: true,
        seed_digest: None,
        lease: None,
    })
    .unwrap();
    host_key
}

/// Start a VM and wait (bounded) for its IPv4 lease and for TCP/22.
fn boot(c: &Connection, lab: &LabName, name: &str, mac: &str) -> (IpAddr, Duration, Duration) {
    let t0 = Instant::now();
    c.start_domain(lab, name).unwrap();
    let nics = c
        .wait_for_addresses(lab, name, BOOT_TIMEOUT, |nics| {
            first_ip(nics, mac, false).is_some()
        })
        .unwrap_or_else(|e| {
            let log = c.console_log_tail(lab, name, 4000).unwrap_or_default();
            panic!("{name}: {e}\nconsole:\n{log}")
        });
    let t_lease = t0.elapsed();
    let ip = first_ip(&nics, mac, false).unwrap();
    let ok = wait_tcp(SocketAddr::new(ip, 22), t0 + BOOT_TIMEOUT);
    let t_tcp = t0.elapsed();
    if !ok {
        let log = c.console_log_tail(lab, name, 4000).unwrap_or_default();
        panic!("{name}: no TCP/22 on {ip}\nconsole:\n{log}");
    }
    (ip, t_lease, t_tcp)
}

#[test]
fn lab_on_local_virthost_boots_and_tears_down_by_ownership() {
    support::require_root();
    let t_all = Instant::now();
    support::libvirt_ready();
    let t_img = Instant::now();
    let base = support::base_image();
    eprintln!(
        "[test] base image {} ({:.1}s)",
        base.display(),
        t_img.elapsed().as_secs_f64()
    );

    let pid = std::process::id();
    let tag = format!("{:x}", pid % 0xfffff);
    let lab = LabName::new(&format!("it{tag}")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let pool_dir = PathBuf::from(format!("/var/lib/kubelab/test-pools/{lab}"));

    let c = Connection::open(URI).unwrap();
    eprintln!(
        "[test] libvirt {:?}, kvm offered: {}",
        c.libvirt_version().unwrap(),
        c.kvm_offered()
    );
    let mut cleanup = Cleanup {
        lab: lab.clone(),
        foreign: None,
        bridge: None,
        armed: true,
    };
    cleanup.foreign = Some(define_foreign(&lab, &tag, work.path()));

    // ---- network, pool ------------------------------------------------------------
    let (n, v4, v6) = support::free_subnets(150);
    let (sn, s4, s6) = support::free_subnets(n + 1);
    let (_, b4, b6) = support::free_subnets(sn + 1);
    // a plain Linux bridge on the virthost, as a lab's "bridged" network would use
    let host_bridge = format!("klb{tag}");
    for args in [
        vec!["link", "add", &host_bridge, "type", "bridge"],
        vec!["addr", "add", &format!("{b4}.1/24"), "dev", &host_bridge],
        vec![
            "-6",
            "addr",
            "add",
            &format!("{b6}::1/64"),
            "dev",
            &host_bridge,
            "nodad",
        ],
        vec!["link", "set", &host_bridge, "up"],
    ] {
        let st = Command::new("ip").args(&args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
        cleanup.bridge = Some(host_bridge.clone());
    }
    let vms = [
        Vm {
            name: "vm1",
            mac: format!("52:54:00:6b:{n:02x}:01"),
            spare: VolumeFormat::Qcow2,
            static_nic: Some(StaticNic {
                mac: format!("52:54:00:6b:{n:02x}:11"),
                source: NicSource::Bridge(host_bridge.clone()),
                addresses: vec![
                    format!("{b4}.11/24").parse().unwrap(),
                    format!("{b6}::11/64").parse().unwrap(),
                ],
                mtu: 1500,
                peer4: format!("{b4}.1"),
                peer6: format!("{b6}::1"),
            }),
        },
        Vm {
            name: "vm2",
            mac: format!("52:54:00:6b:{n:02x}:02"),
            spare: VolumeFormat::Raw,
            static_nic: Some(StaticNic {
                mac: format!("52:54:00:6b:{n:02x}:12"),
                source: NicSource::Network("iso".into()),
                addresses: vec![
                    format!("{s4}.12/24").parse().unwrap(),
                    format!("{s6}::12/64").parse().unwrap(),
                ],
                mtu: 1400,
                peer4: format!("{s4}.1"),
                peer6: format!("{s6}::1"),
            }),
        },
    ];
    let net = NetworkSpec {
        lab: lab.clone(),
        name: "nat".into(),
        mode: NetworkMode::Nat,
        bridge: Some(format!("kl{tag}")),
        mtu: None,
        dns_domain: Some(format!("{lab}.test")),
        ipv4: Some(Ipv4Subnet {
            address: format!("{v4}.1/24").parse().unwrap(),
            dhcp_range: Some((
                format!("{v4}.100").parse().unwrap(),
                format!("{v4}.199").parse().unwrap(),
            )),
        }),
        ipv6: Some(Ipv6Subnet {
            address: format!("{v6}::1/64").parse().unwrap(),
            dhcp_range: Some((
                format!("{v6}::100").parse().unwrap(),
                format!("{v6}::1ff").parse().unwrap(),
            )),
        }),
        reservations: vec![DhcpReservation {
            mac: vms[0].mac.clone(),
            ip: format!("{v4}.11").parse().unwrap(),
            hostname: Some("vm1".into()),
        }],
    };
    // isolated, no DHCP, smaller MTU: vm2's second NIC, configured statically
    let iso = NetworkSpec {
        lab: lab.clone(),
        name: "iso".into(),
        mode: NetworkMode::Isolated,
        bridge: None,
        mtu: Some(1400),
        dns_domain: None,
        ipv4: Some(Ipv4Subnet {
            address: format!("{s4}.1/24").parse().unwrap(),
            dhcp_range: None,
        }),
        ipv6: Some(Ipv6Subnet {
            address: format!("{s6}::1/64").parse().unwrap(),
            dhcp_range: None,
        }),
        reservations: vec![],
    };
    let t = Instant::now();
    c.ensure_network(&net).unwrap();
    c.ensure_network(&net).unwrap(); // idempotent
    c.ensure_network(&iso).unwrap();
    let pool = PoolSpec {
        lab: lab.clone(),
        path: pool_dir.clone(),
    };
    c.ensure_pool(&pool).unwrap();
    c.ensure_pool(&pool).unwrap();
    eprintln!("[test] network + pool in {:.1}s", t.elapsed().as_secs_f64());

    // ---- user key, seeds, volumes, domains ------------------------------------------
    let user_key = HostKey::generate("kubelab-test").unwrap();
    let key_path = work.path().join("id_ed25519");
    std::fs::write(&key_path, user_key.private_key_openssh()).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut host_keys = BTreeMap::new();
    for vm in &vms {
        let public = create_vm(&c, &lab, &pool, &base, vm, &user_key.public_key_openssh());
        host_keys.insert(vm.name, public);
    }

    // ---- boot both in parallel: start -> lease -> TCP/22 -> SSH ---------------------
    let mut threads = Vec::new();
    for vm in &vms {
        let (lab, name, mac) = (lab.clone(), vm.name, vm.mac.clone());
        let c = c.clone();
        threads.push(std::thread::spawn(move || {
            let (ip, t_lease, t_tcp) = boot(&c, &lab, name, &mac);
            (name, ip, t_lease, t_tcp)
        }));
    }
    let mut booted = Vec::new();
    for t in threads {
        booted.push(t.join().expect("boot thread"));
    }
    for (name, ip, lease, tcp) in &booted {
        eprintln!(
            "[test] {name}: {ip} lease after {:.1}s, TCP/22 after {:.1}s",
            lease.as_secs_f64(),
            tcp.as_secs_f64()
        );
    }
    assert_eq!(c.domain_state(&lab, "vm1").unwrap(), VmState::Running);

    // ---- SSH with the injected host key ---------------------------------------------------
    for (name, ip, _, _) in &booted {
        let vm = vms.iter().find(|v| v.name == *name).unwrap();
        // wait (bounded) for the IPv6 lease too
        let nics = c
            .wait_for_addresses(&lab, name, Duration::from_secs(60), |nics| {
                first_ip(nics, &vm.mac, true).is_some()
            })
            .unwrap();
        let ip6 = first_ip(&nics, &vm.mac, true).unwrap();
        assert!(
            ip6.to_string().starts_with(&v6),
            "{name}: IPv6 {ip6} not in {v6}::/64"
        );
        if *name == "vm1" {
            assert_eq!(
                ip.to_string(),
                format!("{v4}.11"),
                "vm1 has a DHCP reservation"
            );
        }
        let kh = work.path().join(format!("known_hosts-{name}"));
        let mut f = std::fs::File::create(&kh).unwrap();
        writeln!(
            f,
            "{}",
            host_keys[name].known_hosts_line(&[ip.to_string(), ip6.to_string()])
        )
        .unwrap();
        drop(f);

        let t = Instant::now();
        let probe = "hostname; hostname -f; test -b /dev/vdb && echo vdb-ok; \
                     ip -6 -o addr show scope global | awk '{print $4}'; sudo -n true && echo sudo-ok; \
                     timeout 120 cloud-init status --wait >/dev/null 2>&1; cloud-init status; df -B1 --output=size / | tail -n 1; \
                     systemd-analyze 2>/dev/null | head -n 1";
        let (ok, out) = ssh(&key_path, &kh, "kubelab", *ip, probe);
        assert!(ok, "{name}: ssh with the injected host key failed: {out}");
        eprintln!(
            "[test] {name} over IPv4 ({:.1}s):\n{out}",
            t.elapsed().as_secs_f64()
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], *name);
        assert_eq!(lines[1], format!("{name}.{lab}.test"));
        assert!(out.contains("vdb-ok"), "{name}: no /dev/vdb");
        assert!(out.contains("sudo-ok"), "{name}: no passwordless sudo");
        assert!(
            out.contains(&ip6.to_string()),
            "{name}: {ip6} not configured in the guest"
        );
        assert!(
            out.contains("status: done"),
            "{name}: cloud-init did not finish: {out}"
        );
        let root_size: u64 = lines
            .iter()
            .find_map(|l| l.trim().parse().ok())
            .unwrap_or(0);
        assert!(
            root_size > 3_500_000_000,
            "{name}: root filesystem not grown to the 4 GiB overlay: {root_size}"
        );

        let (ok, out) = ssh(&key_path, &kh, "kubelab", ip6, "hostname");
        assert!(
            ok && out.trim() == *name,
            "{name}: ssh over IPv6 {ip6} failed: {out}"
        );

        if let Some(sn) = &vm.static_nic {
            let cmd = format!(
                "ip -o addr show dev eth1 scope global | awk '{{print $4}}'; cat /sys/class/net/eth1/mtu; \
                 ping -c1 -W5 {} >/dev/null && echo ping4-ok; ping -c1 -W5 {} >/dev/null && echo ping6-ok",
                sn.peer4, sn.peer6
            );
            let (ok, out) = ssh(&key_path, &kh, "kubelab", *ip, &cmd);
            eprintln!("[test] {name} eth1 (static, on {:?}):\n{out}", sn.source);
            assert!(ok, "{name}: {out}");
            for a in &sn.addresses {
                assert!(
                    out.contains(&a.to_string()),
                    "{name}: eth1 lacks {a}: {out}"
                );
            }
            assert!(
                out.lines().any(|l| l.trim() == sn.mtu.to_string()),
                "{name}: eth1 MTU: {out}"
            );
            assert!(
                out.contains("ping4-ok") && out.contains("ping6-ok"),
                "{name}: {:?}: {out}",
                sn.source
            );
            let addr = SocketAddr::new(sn.addresses[0].addr(), 22);
            assert!(
                wait_tcp(addr, Instant::now() + Duration::from_secs(10)),
                "virthost cannot reach {addr} on {:?}",
                sn.source
            );
        }

        // a wrong host key must be refused
        let other = HostKey::generate("impostor").unwrap();
        let bad = work.path().join(format!("known_hosts-bad-{name}"));
        std::fs::write(&bad, format!("{ip} {}\n", other.public_key_openssh())).unwrap();
        let (ok, _) = ssh(&key_path, &bad, "kubelab", *ip, "true");
        assert!(
            !ok,
            "{name}: ssh accepted a host key that is not the injected one"
        );
    }
    let console = c.console_log_tail(&lab, "vm1", 2000).unwrap();
    assert!(!console.is_empty(), "vm1 console log is empty");
    // the console log read piece by piece (how up follows it while a VM boots)
    let head = c.console_log_read(&lab, "vm1", 0, 100).unwrap();
    assert_eq!(head.bytes.len(), 100, "{head:?}");
    let rest = c.console_log_read(&lab, "vm1", 100, u64::MAX).unwrap();
    assert!(rest.size >= head.size, "{} < {}", rest.size, head.size);
    assert_eq!(rest.bytes.len() as u64, rest.size - 100);
    assert_eq!(
        c.console_log_read(&lab, "no-such-vm", 0, 100).unwrap(),
        ConsoleRead::default(),
        "no log is an empty one"
    );
    // a restart (power off, start) starts the log anew: what up reads after
    // restarting a panicked VM is the new boot only
    c.restart_domain(&lab, "vm1").unwrap();
    let restarted = c.console_log_read(&lab, "vm1", 0, u64::MAX).unwrap();
    assert!(
        restarted.size < rest.size,
        "the console log did not start anew: {} bytes before the restart, {} after",
        rest.size,
        restarted.size
    );

    // ---- ownership and teardown ---------------------------------------------------------
    // same-named objects of someone else are refused, not adopted
    let mut foreign_net = net.clone();
    foreign_net.name = "fnet".into();
    foreign_net.bridge = None;
    assert!(
        matches!(
            c.ensure_network(&foreign_net),
            Err(LibvirtError::NotOwned { .. })
        ),
        "a foreign network was adopted"
    );
    assert!(
        matches!(
            c.start_domain(&lab, "foreign"),
            Err(LibvirtError::NotOwned { .. })
        ),
        "a foreign domain was started"
    );
    let objects = c.lab_objects(&lab).unwrap();
    assert_eq!(
        objects.domains,
        [lab.object_name("vm1"), lab.object_name("vm2")]
    );
    assert_eq!(
        objects.networks,
        [lab.object_name("iso"), lab.object_name("nat")]
    );
    assert_eq!(objects.pool, Some(lab.pool_name()));
    assert!(objects.volumes.contains(&lab.object_name("vm1-seed.img")));
    assert!(
        objects
            .volumes
            .contains(&format!("{}.console.log", lab.object_name("vm2")))
    );
    // the seed holds the VM's private host key: root-only on the virthost
    let seed_mode = std::fs::metadata(pool_dir.join(lab.object_name("vm1-seed.img")))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(seed_mode & 0o077, 0, "seed volume mode {seed_mode:o}");
    let bridge = c.network_bridge(&lab, "nat").unwrap();
    let iso_bridge = c.network_bridge(&lab, "iso").unwrap();

    let t = Instant::now();
    let report = c.teardown(&lab).unwrap();
    eprintln!(
        "[test] teardown in {:.1}s: {:?}",
        t.elapsed().as_secs_f64(),
        report.removed
    );
    assert!(
        report.failures.is_empty(),
        "teardown failures: {:?}",
        report.failures
    );
    let left = c.lab_objects(&lab).unwrap();
    assert!(left.is_empty(), "left over: {left:?}");
    assert!(
        !pool_dir.exists(),
        "pool directory {} still there",
        pool_dir.display()
    );
    let dns = Path::new("/var/lib/libvirt/dnsmasq");
    for f in [
        dns.join(format!("{bridge}.status")),
        dns.join(format!("{}.conf", lab.object_name("nat"))),
        dns.join(format!("{}.hostsfile", lab.object_name("nat"))),
        dns.join(format!("{}.leases", lab.object_name("nat"))),
    ] {
        assert!(!f.exists(), "{} still there", f.display());
    }
    let (_, list) = virsh(&["list", "--all", "--name"]);
    assert!(
        !list.contains(&lab.object_name("vm")),
        "domains left: {list}"
    );
    for br in [&bridge, &iso_bridge] {
        assert!(
            !Path::new(&format!("/sys/class/net/{br}")).exists(),
            "bridge {br} left"
        );
    }

    // the host bridge is not the lab's
    assert!(
        Path::new(&format!("/sys/class/net/{host_bridge}")).exists(),
        "host bridge removed"
    );

    // the foreign objects survived
    let f = cleanup.foreign.as_ref().unwrap();
    assert!(
        list.lines().any(|l| l.trim() == f.domain),
        "foreign domain {} was removed",
        f.domain
    );
    let active_nets = virsh(&["net-list", "--name"]).1;
    assert!(
        active_nets.lines().any(|l| l.trim() == f.network),
        "foreign network {} stopped or removed",
        f.network
    );
    assert!(
        virsh(&["vol-info", "--pool", &f.pool, &f.volume]).0,
        "foreign volume was removed"
    );

    cleanup.armed = false;
    drop(cleanup);
    eprintln!("[test] total {:.1}s", t_all.elapsed().as_secs_f64());
}

/// A lab that does not exist owns nothing, and its teardown removes nothing.
#[test]
fn an_unknown_lab_owns_nothing() {
    support::require_root();
    support::libvirt_ready();
    let c = Connection::open(URI).unwrap();
    let lab = LabName::new("no-such-lab-here").unwrap();
    let objects = c.lab_objects(&lab).unwrap();
    assert!(objects.is_empty(), "{objects:?}");
    let report = c.teardown(&lab).unwrap();
    assert!(report.removed.is_empty() && report.failures.is_empty());
    let version = c.libvirt_version().unwrap();
    assert!(version.0 >= 8, "libvirt {version:?}");
}
