//! Area `cluster` (issue 5): Kubernetes on the test bed, as far as this
//! machine allows — Kubernetes' packages cannot be downloaded here.
//!
//! With `tests/labs/e2e/testbed-cluster.yaml` (node-1 control plane,
//! node-2 worker, node-3 NAT64/DNS64): `plan` renders every stage in check
//! mode (the kubeadm files included, secrets redacted); `up` sets up
//! NAT64/DNS64 for real, then stops within seconds at the Kubernetes
//! stage's downloads check with a clear error (which `doctor` gives too);
//! node preparation and Debian's containerd run for real, and the packages
//! stage stops at its repository with a clear error;
//! from node-1's IPv6 address the virthost's IPv4 address answers through
//! 64:ff9b::/96 (ICMP and TCP) and an A-only name resolves to AAAA through
//! DNS64; the ipv6-ping6 scenario pings between node-1 and node-2 and
//! through NAT64, and its NAT64 check fails while NAT64 is stopped; a
//! second run of node preparation and runtime changes nothing;
//! containerd and (with `--var container_runtime=docker`) Debian's Docker
//! each run a container imported from a local rootfs; an air-gap bundle
//! made here (`kubelab bundle` from a local download mirror and registry,
//! tests/support/bundle_sources.rs) is checked and its images imported by
//! `kubernetes/images` into containerd on node-1 and Docker on node-2 with
//! the nodes cut off from everything beyond their subnet, by digest, and run; a damaged bundle
//! is refused before any node is touched; `reset` works on nodes without a
//! cluster. Everything is undone at the end (also when a
//! check fails): NAT64 removed, the runtimes stopped and their state
//! removed, node preparation files removed, containerd's configuration put
//! back.

use super::Testbed;
use super::verify::{verify_fails, verify_passes};

const LAB: &str = "tests/labs/e2e/testbed-cluster.yaml";
const NODES: [&str; 2] = ["node-1", "node-2"];
/// Where the test keeps containerd's packaged configuration.
const CONTAINERD_BACKUP: &str = "/var/tmp/kl-k8s-containerd-config.toml";

/// A local image from busybox's binary, imported into containerd (an OCI
/// archive made by hand: no registry, no image tools), then run.
const CONTAINERD_RUN: &str = r#"set -e
d=/var/tmp/kl-k8s-oci; rm -rf "$d"; mkdir -p "$d/rootfs/bin" "$d/image/blobs/sha256"
cp /bin/busybox "$d/rootfs/bin/busybox"
tar -C "$d/rootfs" -cf "$d/layer.tar" .
blob() { h=$(sha256sum "$1" | cut -d' ' -f1); s=$(stat -c %s "$1"); mv "$1" "$d/image/blobs/sha256/$h"; echo "$h $s"; }
set -- $(blob "$d/layer.tar"); L=$1; LS=$2
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/busybox"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$L" > "$d/config.json"
set -- $(blob "$d/config.json"); C=$1; CS=$2
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' "$C" "$CS" "$L" "$LS" > "$d/manifest.json"
set -- $(blob "$d/manifest.json"); M=$1; MS=$2
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"kubelab.test/busybox:1","org.opencontainers.image.ref.name":"1"}}]}' "$M" "$MS" > "$d/image/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' > "$d/image/oci-layout"
tar -C "$d/image" -cf "$d/image.tar" oci-layout index.json blobs
ctr -n kl-k8s-test images import "$d/image.tar" >/dev/null
ctr -n kl-k8s-test run --rm kubelab.test/busybox:1 kl-k8s-c1 /bin/busybox echo hello-from-containerd
"#;

/// The same rootfs imported into Docker and run.
const DOCKER_RUN: &str = r#"set -e
d=/var/tmp/kl-k8s-docker; rm -rf "$d"; mkdir -p "$d/rootfs/bin"
cp /bin/busybox "$d/rootfs/bin/busybox"
tar -C "$d/rootfs" -c . | docker import - kl-k8s-test/busybox:1 >/dev/null
echo "cgroup-driver=$(docker info --format '{{.CgroupDriver}}')"
docker run --rm --name kl-k8s-test kl-k8s-test/busybox:1 /bin/busybox echo hello-from-docker
"#;

/// Undo what the area did on the VMs (best effort: every command runs).
const RUNTIME_CLEANUP: &str = r#"
ctr -n kl-k8s-test images rm kubelab.test/busybox:1 >/dev/null 2>&1
ctr namespaces rm kl-k8s-test >/dev/null 2>&1
docker rm -f kl-k8s-test >/dev/null 2>&1
docker rmi -f kl-k8s-test/busybox:1 >/dev/null 2>&1
for u in docker.socket docker containerd; do systemctl disable --now "$u" >/dev/null 2>&1; done
rm -rf /var/lib/docker /var/lib/containerd /var/tmp/kl-k8s-oci /var/tmp/kl-k8s-docker /etc/docker/daemon.json
if [ -e /var/tmp/kl-k8s-containerd-config.toml ]; then mv -f /var/tmp/kl-k8s-containerd-config.toml /etc/containerd/config.toml; fi
# Docker's own firewall rules and bridge.
iptables -P FORWARD ACCEPT
for c in DOCKER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER-USER; do
  iptables -t filter -F "$c" 2>/dev/null; done
iptables -t filter -D FORWARD -j DOCKER-USER 2>/dev/null
iptables -t filter -D FORWARD -j DOCKER-ISOLATION-STAGE-1 2>/dev/null
iptables -t filter -D FORWARD -o docker0 -j DOCKER 2>/dev/null
iptables -t filter -D FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT 2>/dev/null
iptables -t filter -D FORWARD -i docker0 ! -o docker0 -j ACCEPT 2>/dev/null
iptables -t filter -D FORWARD -i docker0 -o docker0 -j ACCEPT 2>/dev/null
for c in DOCKER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER-USER; do
  iptables -t filter -X "$c" 2>/dev/null; done
iptables -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j DOCKER 2>/dev/null
iptables -t nat -D OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER 2>/dev/null
iptables -t nat -D POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE 2>/dev/null
iptables -t nat -F DOCKER 2>/dev/null; iptables -t nat -X DOCKER 2>/dev/null
ip link delete docker0 2>/dev/null
# The air-gap bundle's images, and the routes that cut the node off for them.
rm -rf /var/cache/kubelab-images
for f in 4 6; do ip -$f route del unreachable default metric 1 2>/dev/null; done
# Node preparation.
rm -f /etc/sysctl.d/99-kubernetes.conf /etc/modules-load.d/kubernetes.conf /etc/crictl.yaml /etc/default/kubelet
if ls /etc/systemd/network/*.network.d/kubelab-ra.conf >/dev/null 2>&1; then
  rm -f /etc/systemd/network/*.network.d/kubelab-ra.conf; rmdir /etc/systemd/network/*.network.d 2>/dev/null; networkctl reload
fi
rm -rf /etc/kubernetes/kubelab
modprobe -r br_netfilter 2>/dev/null
true
"#;

/// A script as root on a VM that must succeed; a VM that another area
/// reboots meanwhile (exit code 3: unreachable) is waited for (bounded) and
/// the script run once more.
fn sh_ok(tb: &Testbed, vm: &str, script: &str) -> String {
    let first = tb.sh(vm, script);
    if first.status.success() {
        return String::from_utf8_lossy(&first.stdout).into_owned();
    }
    assert_eq!(first.status.code(), Some(3), "on {vm}: `{script}` failed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !tb.sh(vm, "true").status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "{vm} unreachable for 5 minutes"
        );
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
    tb.sh_ok(vm, script)
}

fn all_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The ipv6-ping6 scenario in host mode with `through_nat64` (issue 7):
/// node-1 and node-2 ping each other and the virthost's IPv4 address
/// through node-3; with NAT64 stopped on node-3 the check through NAT64
/// fails on both (and on no other host), the `nat64` stage starts it
/// again, and teardown leaves the NAT64 stage's own route alone.
fn ping6_through_nat64(tb: &Testbed) {
    const CHECK: &str = "an IPv4 address answers through NAT64";
    tb.kubelab_ok(&["scenario", LAB, "ipv6-ping6", "setup"]);
    verify_passes(tb, LAB, "ipv6-ping6");
    sh_ok(tb, "node-3", "systemctl stop kubelab-nat64");
    verify_fails(
        tb,
        LAB,
        "ipv6-ping6",
        &[
            ("node-1", CHECK, "100% packet loss"),
            ("node-2", CHECK, "100% packet loss"),
        ],
    );
    let again = tb.kubelab(&["--json", "play", "nat64", "--lab", LAB]);
    assert!(again.status.success(), "nat64 stage again");
    let changed = super::changed_per_host(&again);
    assert!(
        changed.iter().any(|(h, n)| h == "node-3" && *n > 0),
        "the nat64 stage did not start NAT64 again: {changed:?}"
    );
    verify_passes(tb, LAB, "ipv6-ping6");
    tb.kubelab_ok(&["scenario", LAB, "ipv6-ping6", "teardown"]);
    for vm in NODES {
        let route = sh_ok(tb, vm, "ip -6 route show 64:ff9b::/96");
        assert!(route.contains("via "), "{vm} lost the NAT64 route: {route}");
    }
}

/// The images kubeadm lists in the bundle (the mirror's stand-in kubeadm;
/// the pause image is a two-architecture index).
const BUNDLE_IMAGES: [&str; 3] = [
    "registry.k8s.io/kube-apiserver:v1.28.15",
    "registry.k8s.io/pause:3.9",
    "registry.k8s.io/coredns/coredns:v1.10.1",
];

/// The lab as an air-gapped one: its release exact, no CNI (flannel's
/// images are pinned by digests no local image can have), `airgap_dir`.
fn airgapped(dir: &std::path::Path) -> Vec<String> {
    [
        "kubernetes.version=1.28.15".to_string(),
        "kubernetes.cni=none".to_string(),
        format!("kubernetes.airgap_dir={}", dir.display()),
    ]
    .into_iter()
    .flat_map(|s| ["--set".to_string(), s])
    .collect()
}

/// `kubelab bundle` here, then `kubernetes/images` on the nodes with
/// cut off from everything beyond their subnet: every image lands by
/// digest and runs.
fn bundled_images(tb: &Testbed) {
    let work = tempfile::tempdir().unwrap();
    let sources = crate::bundle_sources::BundleSources::start(work.path(), &BUNDLE_IMAGES, &[]);
    let bundle = work.path().join("bundle");
    let mut args = airgapped(&bundle);
    args.extend(["bundle".to_string(), LAB.to_string()]);
    args.extend(sources.args(&bundle, &sources.mirror));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let made = tb.kubelab(&args);
    assert!(made.status.success(), "bundle: {}", all_text(&made));
    let manifest = kubelab::bundle::Manifest::read(&bundle).unwrap();
    assert_eq!(manifest.images.len(), 3);

    for vm in NODES {
        sh_ok(
            tb,
            vm,
            // An unreachable default ahead of every other: deleting the
            // default routes is not enough, systemd-networkd puts the IPv6
            // one back at the next router advertisement.
            "for f in 4 6; do ip -$f route replace unreachable default metric 1; done",
        );
    }
    let play = |limit: &str, extra: &[&str]| {
        let mut args = airgapped(&bundle);
        args.extend(
            [
                "--json",
                "play",
                "kubernetes/images",
                "--lab",
                LAB,
                "--limit",
                limit,
            ]
            .iter()
            .map(|s| s.to_string()),
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tb.kubelab(&args)
    };
    let docker = ["--var", "container_runtime=docker"];
    for (vm, extra) in [("node-1", &[][..]), ("node-2", &docker[..])] {
        let first = play(vm, extra);
        assert!(first.status.success(), "{vm}: {}", all_text(&first));
        let counts = super::changed_per_host(&first);
        assert!(
            counts.iter().all(|(_, n)| *n > 0),
            "{vm} imported nothing: {counts:?}"
        );
        let again = play(vm, extra);
        assert!(again.status.success(), "{vm} again");
        assert_eq!(
            super::changed_per_host(&again),
            [(vm.to_string(), 0)],
            "{vm} again"
        );
    }
    let routes = sh_ok(
        tb,
        "node-1",
        "ip -4 route get 192.0.2.1 >/dev/null 2>&1 || echo no-route-4; \
         ip -6 route get 2001:db8::1 >/dev/null 2>&1 || echo no-route-6; \
         ip -4 route show default; ip -6 route show default",
    );
    assert!(
        routes.contains("no-route-4") && routes.contains("no-route-6"),
        "node-1 has a route out: {routes}"
    );
    let listed = sh_ok(tb, "node-1", "ctr -n k8s.io images ls");
    for image in &manifest.images {
        let line = listed
            .lines()
            .find(|l| l.split_whitespace().next() == Some(image.reference.as_str()))
            .unwrap_or_else(|| panic!("{} not in containerd:\n{listed}", image.reference));
        assert!(line.contains(&image.digest), "{line}");
    }
    let run = sh_ok(
        tb,
        "node-1",
        "ctr -n k8s.io run --rm registry.k8s.io/pause:3.9 kl-k8s-bundle /bin/busybox echo hello-from-the-bundle",
    );
    assert!(run.contains("hello-from-the-bundle"), "{run}");
    for image in &manifest.images {
        let id = sh_ok(
            tb,
            "node-2",
            &format!("docker image inspect -f '{{{{.Id}}}}' {}", image.reference),
        );
        assert_eq!(id.trim(), image.config, "{}", image.reference);
    }
    let run = sh_ok(
        tb,
        "node-2",
        "docker run --rm --network none registry.k8s.io/coredns/coredns:v1.10.1 /bin/busybox echo hello-from-the-bundle",
    );
    assert!(run.contains("hello-from-the-bundle"), "{run}");

    // A bundle that is not what its bundle.json says: refused before any
    // node is touched.
    let archive = bundle.join(&manifest.images[0].path);
    std::fs::write(&archive, b"not the image").unwrap();
    let refused = play("node-1", &[]);
    let text = all_text(&refused);
    assert!(!refused.status.success());
    assert!(
        text.contains("does not match its bundle.json") && text.contains(&manifest.images[0].path),
        "{text}"
    );
    assert!(!text.contains("image imported into containerd"), "{text}");
}

/// Undo everything, even when a check failed.
struct Cleanup<'a>(&'a Testbed);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let tb = self.0;
        let _ = tb.kubelab(&["scenario", LAB, "ipv6-ping6", "teardown"]);
        let removed = tb.kubelab(&["play", "nat64-remove", "--lab", LAB]);
        for vm in NODES {
            let _ = tb.sh(vm, RUNTIME_CLEANUP);
        }
        if !removed.status.success() && !std::thread::panicking() {
            panic!("removing NAT64 failed");
        }
    }
}

pub fn run(tb: &Testbed) {
    let lab = LAB.to_string();
    for vm in NODES {
        sh_ok(
            tb,
            vm,
            &format!(
                "test -e {CONTAINERD_BACKUP} || cp -p /etc/containerd/config.toml {CONTAINERD_BACKUP}"
            ),
        );
    }
    let _cleanup = Cleanup(tb);

    // Check mode renders every stage, the kubeadm files included.
    let plan = tb.kubelab(&["plan", &lab]);
    let plan_text = all_text(&plan);
    assert!(plan.status.success(), "plan failed");
    assert!(
        plan_text.contains("lab testbed: 0 changes"),
        "plan changes VMs"
    );
    for wanted in [
        "kind: InitConfiguration",
        "kind: ClusterConfiguration",
        "kind: JoinConfiguration",
        "advertiseAddress: \"192.168.221.",
        "podSubnet: \"10.244.0.0/16,fd00:10:244::/56\"",
        "criSocket: \"unix:///run/containerd/containerd.sock\"",
        "token: \"[REDACTED]\"",
        "== nat64 (nat64)",
    ] {
        assert!(plan_text.contains(wanted), "plan lacks {wanted}");
    }
    let token = std::fs::read_to_string(tb.state.join("testbed/kubernetes/bootstrap-token"))
        .map(|t| t.trim().to_string())
        .unwrap_or_default();
    if !token.is_empty() {
        assert!(!plan_text.contains(&token), "the join token is in the plan");
    }

    // `up`: NAT64 for real, then the Kubernetes stage stops at once at its
    // first check: the downloads do not answer here.
    let up = tb.kubelab(&["up", &lab]);
    let up_text = all_text(&up);
    assert_eq!(
        up.status.code(),
        Some(1),
        "up should stop at the downloads check"
    );
    for wanted in [
        "stage `kubernetes` failed",
        "node-1 cannot reach what the Kubernetes stage downloads: pkgs.k8s.io:443 (Kubernetes 1.28 packages",
        "registry.k8s.io:443 (the control plane's images",
        "ghcr.io:443 (flannel's images)",
        "internet access",
        "kubernetes.airgap_dir",
    ] {
        assert!(
            up_text.contains(wanted),
            "up's failure lacks {wanted:?}:\n{up_text}"
        );
    }
    assert!(
        !up_text.contains("swap off now"),
        "up prepared nodes before the downloads check stopped it"
    );
    // The check alone, timed: seconds, not minutes.
    let t0 = std::time::Instant::now();
    let sources = tb.kubelab(&["play", "kubernetes/sources", "--lab", &lab]);
    let took = t0.elapsed();
    assert_eq!(sources.status.code(), Some(1));
    assert!(
        took < std::time::Duration::from_secs(30),
        "the downloads check took {took:?}"
    );
    // doctor runs the same check.
    let doctor = tb.kubelab(&["doctor", &lab]);
    let doctor_text = all_text(&doctor);
    assert_eq!(doctor.status.code(), Some(1), "{doctor_text}");
    assert!(
        doctor_text.contains("k8s downloads")
            && doctor_text.contains(
                "node-1 cannot reach what the Kubernetes stage downloads: pkgs.k8s.io:443"
            ),
        "doctor does not run the downloads check:\n{doctor_text}"
    );
    let token = std::fs::read_to_string(tb.state.join("testbed/kubernetes/bootstrap-token"))
        .unwrap()
        .trim()
        .to_string();
    assert!(
        !up_text.contains(&token),
        "the join token is in up's output"
    );
    let log = std::fs::read_dir(tb.state.join("testbed/runs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .unwrap();
    assert!(
        !std::fs::read_to_string(log.path())
            .unwrap()
            .contains(&token),
        "the join token is in the run log"
    );

    // NAT64: the virthost's IPv4 address through 64:ff9b::/96 from node-1.
    let ping = sh_ok(tb, "node-1", "ping -6 -c 3 -W 3 64:ff9b::192.168.221.1");
    assert!(ping.contains("3 received"), "{ping}");
    let dns_tcp = sh_ok(
        tb,
        "node-1",
        "dig +tcp +short +time=3 +tries=2 @64:ff9b::192.168.221.1 node-3",
    );
    assert!(dns_tcp.trim().starts_with("192.168.221."), "{dns_tcp}");
    // DNS64: an A-only name answers with an address in 64:ff9b::/96.
    let server = sh_ok(
        tb,
        "node-3",
        "ip -6 -o addr show scope global | awk '{print $4}' | cut -d/ -f1 | head -n1",
    )
    .trim()
    .to_string();
    let aaaa = sh_ok(
        tb,
        "node-1",
        &format!("dig +short AAAA virthost.testbed.test @{server}"),
    );
    assert_eq!(aaaa.trim(), "64:ff9b::c0a8:dd01");
    let a_only = sh_ok(
        tb,
        "node-1",
        &format!("dig +short A virthost.testbed.test @{server}"),
    );
    assert_eq!(a_only.trim(), "192.168.221.1");
    ping6_through_nat64(tb);

    // Node preparation and containerd, for real; a second run changes nothing.
    for playbook in ["kubernetes/nodeprep", "kubernetes/runtime"] {
        let first = tb.kubelab(&["play", playbook, "--lab", &lab]);
        assert!(first.status.success(), "{playbook}: {}", all_text(&first));
    }
    for vm in NODES {
        let state = sh_ok(
            tb,
            vm,
            "lsmod | grep -c ^br_netfilter; cat /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding; systemctl is-active containerd; grep -c 'SystemdCgroup = true' /etc/containerd/config.toml; swapon --show=NAME --noheadings | wc -l",
        );
        assert_eq!(
            state.split_whitespace().collect::<Vec<_>>(),
            ["1", "1", "1", "1", "active", "1", "0"],
            "{vm}"
        );
    }
    for playbook in ["kubernetes/nodeprep", "kubernetes/runtime"] {
        let again = tb.kubelab(&["--json", "play", playbook, "--lab", &lab]);
        assert!(again.status.success(), "{playbook} again");
        let counts = super::changed_per_host(&again);
        assert!(!counts.is_empty(), "no summary from {playbook}");
        assert!(
            counts.iter().all(|(_, n)| *n == 0),
            "{playbook} changed something the second time: {counts:?}"
        );
    }
    let run = sh_ok(tb, "node-1", CONTAINERD_RUN);
    assert!(run.contains("hello-from-containerd"), "{run}");

    // Docker from Debian's packages, on node-2.
    let docker = |tb: &Testbed| {
        tb.kubelab(&[
            "--json",
            "play",
            "kubernetes/runtime",
            "--lab",
            &lab,
            "--limit",
            "node-2",
            "--var",
            "container_runtime=docker",
        ])
    };
    assert!(docker(tb).status.success(), "docker runtime");
    let again = docker(tb);
    assert!(again.status.success());
    assert_eq!(
        super::changed_per_host(&again),
        [("node-2".to_string(), 0)],
        "docker again"
    );
    let run = sh_ok(tb, "node-2", DOCKER_RUN);
    assert!(run.contains("cgroup-driver=systemd"), "{run}");
    assert!(run.contains("hello-from-docker"), "{run}");

    bundled_images(tb);

    // The packages stage alone says the same, for its repository.
    let packages = tb.kubelab(&["play", "kubernetes/packages", "--lab", &lab]);
    let packages_text = all_text(&packages);
    assert_eq!(packages.status.code(), Some(1));
    assert!(
        packages_text.contains("cannot reach the Kubernetes 1.28 packages at https://pkgs.k8s.io/core:/stable:/v1.28/deb/")
            && packages_text.contains("kubernetes.airgap_dir"),
        "the packages failure is not clear:\n{packages_text}"
    );

    // The kubeadm steps on the real hosts stop where the packages are
    // missing, clearly.
    let init = tb.kubelab(&["play", "kubernetes/init", "--lab", &lab]);
    assert_eq!(init.status.code(), Some(1));
    let init_text = all_text(&init);
    assert!(
        init_text.contains("node-1 has no working kubeadm")
            && init_text.contains("run kubernetes/packages first"),
        "kubernetes/init does not say kubeadm is missing"
    );

    // reset on nodes that have no cluster: nothing to do, no failure.
    let reset = tb.kubelab(&["reset", &lab]);
    assert!(reset.status.success(), "reset failed");
    assert!(all_text(&reset).contains("cluster reset, VMs kept"));
}
