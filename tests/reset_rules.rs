//! `reset`'s cleanup of kube-proxy's and the CNIs' iptables rules
//! (`kube_reset_rules`), run for real in a network namespace of its own:
//! Kubernetes', flannel's, Calico's and the CNI plugins' chains and every
//! jump to them go; the namespace's other rules stay; a second run changes
//! nothing.

#[path = "support/command.rs"]
mod command;

use command::{run, run_quietly};
use kubelab::kubernetes::node::RESET_RULES_SCRIPT;

/// A network namespace removed on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        run_quietly("ip", &["netns", "del", &self.0]);
    }
}

/// A shell script in the namespace, which must succeed: its output.
fn sh_in(ns: &str, script: &str) -> String {
    run("ip", &["netns", "exec", ns, "sh", "-c", script])
}

#[test]
fn reset_removes_only_kubernetes_and_cni_rules() {
    assert_eq!(
        run("id", &["-u"]).trim(),
        "0",
        "this test makes a network namespace and must run as root"
    );
    let ns = Netns(format!("kl-reset-{}", std::process::id()));
    run("ip", &["netns", "add", &ns.0]);
    sh_in(
        &ns.0,
        "set -e
         for ipt in iptables ip6tables; do
           $ipt -N KUBE-SERVICES; $ipt -N KUBE-FORWARD; $ipt -N FLANNEL-FWD; $ipt -N cali-FORWARD
           $ipt -A FORWARD -m comment --comment 'kubernetes forwarding rules' -j KUBE-FORWARD
           $ipt -A FORWARD -j FLANNEL-FWD
           $ipt -A FORWARD -j cali-FORWARD
           $ipt -A OUTPUT -j KUBE-SERVICES
           $ipt -t nat -N KUBE-POSTROUTING; $ipt -t nat -N CNI-abc123
           $ipt -t nat -A POSTROUTING -j KUBE-POSTROUTING
           $ipt -t nat -A POSTROUTING -j CNI-abc123
           $ipt -N MINE; $ipt -A FORWARD -j MINE; $ipt -A INPUT -p tcp --dport 22 -j ACCEPT
         done
         iptables -t nat -A POSTROUTING -s 10.9.0.0/24 -j MASQUERADE",
    );
    let first = sh_in(&ns.0, RESET_RULES_SCRIPT);
    assert!(
        first.contains("removed Kubernetes chains and rules (iptables)"),
        "{first}"
    );
    assert!(
        first.contains("removed Kubernetes chains and rules (ip6tables)"),
        "{first}"
    );
    for ipt in ["iptables", "ip6tables"] {
        let rules = sh_in(&ns.0, &format!("{ipt}-save | grep -v '^#'"));
        for gone in ["KUBE-", "FLANNEL", "cali-", "CNI-"] {
            assert!(!rules.contains(gone), "{ipt}: {gone} left:\n{rules}");
        }
        for kept in [":MINE", "-A FORWARD -j MINE", "--dport 22 -j ACCEPT"] {
            assert!(rules.contains(kept), "{ipt}: {kept} removed:\n{rules}");
        }
    }
    let nat = sh_in(&ns.0, "iptables -t nat -S POSTROUTING");
    assert!(nat.contains("-s 10.9.0.0/24 -j MASQUERADE"), "{nat}");
    let again = sh_in(&ns.0, RESET_RULES_SCRIPT);
    assert!(
        !again.contains("removed"),
        "a second run changed something: {again}"
    );
}
