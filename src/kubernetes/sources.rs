//! What the `kubernetes` stage downloads from the internet, and the check
//! that those places answer before the stage spends minutes preparing nodes.
//!
//! A lab on a virthost without internet used to fail deep in the stage
//! (curl's "exit code 6" at Docker's signing key, after minutes of node
//! preparation). The playbook `kubernetes/sources` and `kubelab doctor` run
//! [`probe_script`] on the first control plane instead: every source is
//! resolved and dialled in parallel, each bounded by a few seconds, and the
//! unreachable ones are named with what they are needed for.
//!
//! Only hosts the stage itself dials are listed (not the CDNs they redirect
//! to, which change without notice): a check that fails on a machine that
//! does have internet would be worse than none.

use serde::Serialize;

use super::node::{CRIO_REPOSITORY_SINCE_MINOR, DistroFamily};
use crate::facts::{DEBIAN_LIKE, REDHAT_LIKE};
use crate::lab::model::{Cni, HaMode, Kubernetes, Runtime, RuntimePackages};

/// HTTPS, the only port any source is reached on.
const HTTPS: u16 = 443;

/// Seconds a name may take to resolve, and a connection to open. Both run
/// for every source at once, so the whole check takes at most their sum.
pub const RESOLVE_TIMEOUT_SECS: u32 = 6;
pub const CONNECT_TIMEOUT_SECS: u32 = 5;

/// One place the stage downloads from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Source {
    pub host: &'static str,
    pub port: u16,
    /// What the lab needs from it, for the error message.
    pub needed_for: String,
    /// Needed only on this distribution family (the node's facts decide).
    pub only_on: Option<DistroFamily>,
}

impl Source {
    fn new(host: &'static str, needed_for: impl Into<String>) -> Self {
        Source {
            host,
            port: HTTPS,
            needed_for: needed_for.into(),
            only_on: None,
        }
    }

    fn only_on(mut self, family: DistroFamily) -> Self {
        self.only_on = Some(family);
        self
    }
}

/// Every source the `kubernetes` stage of this cluster downloads from;
/// empty when the lab is air-gapped (`airgap_dir`).
pub fn sources(k: &Kubernetes) -> Vec<Source> {
    if k.airgap_dir.is_some() {
        return Vec::new();
    }
    let minor = k.minor();
    let mut out = vec![
        Source::new(
            "pkgs.k8s.io",
            format!("Kubernetes 1.{minor} packages (kubeadm, kubelet, kubectl)"),
        ),
        Source::new(
            "registry.k8s.io",
            "the control plane's images (kube-apiserver, etcd, pause, ...)",
        ),
    ];
    match k.runtime {
        Runtime::Crio if minor >= CRIO_REPOSITORY_SINCE_MINOR => out.push(Source::new(
            "download.opensuse.org",
            format!("CRI-O 1.{minor} packages"),
        )),
        Runtime::Crio => {}
        Runtime::Docker | Runtime::Containerd => {
            let docker_repo = Source::new(
                "download.docker.com",
                match k.runtime {
                    Runtime::Docker => "Docker packages (docker-ce)",
                    _ => "containerd packages (containerd.io)",
                },
            );
            // Debian-like nodes use Debian's packages unless the lab asks
            // for upstream ones; RHEL-like nodes always need Docker's.
            match k.runtime_packages {
                RuntimePackages::Upstream => out.push(docker_repo),
                RuntimePackages::Distro => out.push(docker_repo.only_on(DistroFamily::RedHat)),
            }
        }
    }
    if k.runtime == Runtime::Docker {
        out.push(Source::new("github.com", "the cri-dockerd release"));
    }
    match k.cni {
        Cni::Flannel => out.push(Source::new("ghcr.io", "flannel's images")),
        Cni::Calico => {
            out.push(Source::new(
                "raw.githubusercontent.com",
                "the Tigera operator's manifest",
            ));
            out.push(Source::new("quay.io", "the Tigera operator's image"));
            // The operator pulls Calico's own images from docker.io, whose
            // registry endpoint is this host.
            out.push(Source::new("registry-1.docker.io", "Calico's images"));
        }
        Cni::None => {}
    }
    if k.ha.as_ref().is_some_and(|h| h.mode == HaMode::KubeVip) {
        match out.iter_mut().find(|s| s.host == "ghcr.io") {
            Some(ghcr) => ghcr.needed_for.push_str(" and kube-vip's image"),
            None => out.push(Source::new("ghcr.io", "kube-vip's image")),
        }
    }
    out
}

/// A bash script (bash for `/dev/tcp`: a plain image has neither curl nor
/// nc) run on `node` that resolves and dials every source in parallel. It
/// prints nothing and exits 0 when all answer; otherwise it prints one
/// message naming the node, each unreachable source with what it is needed
/// for and why, and the ways out, and exits 1. Sources for another
/// distribution family are skipped (it reads `/etc/os-release`).
pub fn probe_script(node: &str, sources: &[Source]) -> String {
    use crate::transport::quote;
    // The family as facts name it (crate::facts), from the same words.
    let mut s = format!(
        "family=debian\n\
         if [ -r /etc/os-release ]; then . /etc/os-release; fi\n\
         for w in ${{ID:-}} ${{ID_LIKE:-}}; do\n\
         case $w in {}) family=debian; break ;; {}) family=redhat ;; esac\n\
         done\n\
         out=$(mktemp -d) || exit 2\n\
         probe() {{\n",
        DEBIAN_LIKE.join("|"),
        REDHAT_LIKE.join("|")
    );
    s.push_str(&format!(
        "  if ! timeout {RESOLVE_TIMEOUT_SECS} getent ahosts \"$1\" >/dev/null 2>&1; then \
         echo \"$1:$2 ($3): the name does not resolve\"; return; fi\n  \
         if ! timeout {CONNECT_TIMEOUT_SECS} bash -c 'exec 3<>\"/dev/tcp/$0/$1\"' \"$1\" \"$2\" 2>/dev/null; then \
         echo \"$1:$2 ($3): no answer on port $2\"; fi\n}}\n"
    ));
    for (i, src) in sources.iter().enumerate() {
        let guard = match src.only_on {
            Some(f) => format!("[ \"$family\" = {} ] && ", f.name()),
            None => String::new(),
        };
        s.push_str(&format!(
            "{guard}probe {} {} {} > \"$out/{i:03}\" &\n",
            quote(src.host),
            src.port,
            quote(&src.needed_for)
        ));
    }
    s.push_str(&format!(
        "wait\n\
         failed=''\n\
         for f in \"$out\"/*; do [ -s \"$f\" ] && failed=\"$failed${{failed:+; }}$(cat \"$f\")\"; done\n\
         rm -rf \"$out\"\n\
         [ -z \"$failed\" ] && exit 0\n\
         printf '%s\\n' {}\"$failed\"{}\n\
         exit 1\n",
        quote(&format!("{node} cannot reach what the Kubernetes stage downloads: ")),
        quote(WAYS_OUT),
    ));
    s
}

/// The two ways out of a lab without internet.
pub const WAYS_OUT: &str = ". Give the VMs internet access (a `nat` network on a \
     virthost that has it, or a bridged network with a route out), or install \
     from local files with `kubernetes.airgap_dir`";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::{LoadOptions, load_str};

    fn kubernetes(extra: &str) -> Kubernetes {
        let text = format!(
            "name: t\nvirthost: {{local: true}}\nimage: {{build: debian-12}}\n\
             networks: [{{name: lan, kind: nat, ipv4: 192.168.50.0/24}}]\n\
             vms:\n  - {{name: cp, roles: [control-plane]}}\n  - {{name: w, roles: [worker]}}\n\
             kubernetes: {{version: '1.28'{extra}}}\n"
        );
        match load_str(
            std::path::Path::new("t.yaml"),
            &text,
            &LoadOptions::default(),
        ) {
            Ok((lab, _)) => lab.kubernetes.expect("kubernetes"),
            Err(d) => panic!("{d:?}\n{text}"),
        }
    }

    fn hosts(k: &Kubernetes) -> Vec<&'static str> {
        sources(k).iter().map(|s| s.host).collect()
    }

    #[test]
    fn sources_follow_runtime_cni_and_ha() {
        let k = kubernetes(", runtime: containerd, runtime_packages: distro, cni: flannel");
        assert_eq!(
            hosts(&k),
            [
                "pkgs.k8s.io",
                "registry.k8s.io",
                "download.docker.com",
                "ghcr.io"
            ]
        );
        // Debian's containerd: Docker's repository only on RHEL-like nodes.
        assert_eq!(sources(&k)[2].only_on, Some(DistroFamily::RedHat));
        let k = kubernetes(", runtime: docker, runtime_packages: upstream, cni: calico");
        assert_eq!(
            hosts(&k),
            [
                "pkgs.k8s.io",
                "registry.k8s.io",
                "download.docker.com",
                "github.com",
                "raw.githubusercontent.com",
                "quay.io",
                "registry-1.docker.io"
            ]
        );
        assert_eq!(sources(&k)[2].only_on, None);
        let k = kubernetes(", runtime: crio, cni: none");
        assert_eq!(
            hosts(&k),
            ["pkgs.k8s.io", "registry.k8s.io", "download.opensuse.org"]
        );
        let k = kubernetes(", airgap_dir: /srv/bundle");
        assert!(sources(&k).is_empty());
    }

    /// The probe for real, with bash on this machine: a port that answers,
    /// one that does not and a name that cannot resolve.
    #[test]
    fn probe_names_exactly_the_sources_that_do_not_answer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let src = |host: &'static str, port, what: &str| Source {
            host,
            port,
            needed_for: what.into(),
            only_on: None,
        };
        let run = |list: &[Source]| {
            let out = std::process::Command::new("bash")
                .args(["-c", &probe_script("cp-1", list)])
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        let t0 = std::time::Instant::now();
        assert_eq!(
            run(&[src("127.0.0.1", open, "a listener")]),
            (Some(0), String::new())
        );
        let (code, text) = run(&[
            src("127.0.0.1", open, "a listener"),
            src("127.0.0.1", closed, "a closed port"),
            src("kubelab-no-such-host.invalid", 443, "nothing"),
            Source {
                only_on: Some(DistroFamily::RedHat),
                ..src("127.0.0.1", closed, "RHEL only")
            },
        ]);
        assert_eq!(code, Some(1));
        assert_eq!(
            text.trim_end(),
            format!(
                "cp-1 cannot reach what the Kubernetes stage downloads: \
                 127.0.0.1:{closed} (a closed port): no answer on port {closed}; \
                 kubelab-no-such-host.invalid:443 (nothing): the name does not resolve{WAYS_OUT}"
            )
        );
        let bound = RESOLVE_TIMEOUT_SECS + CONNECT_TIMEOUT_SECS;
        assert!(t0.elapsed() < std::time::Duration::from_secs(u64::from(bound) + 5));
        drop(listener);
    }
}
