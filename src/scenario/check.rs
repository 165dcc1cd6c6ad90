//! What a scenario's checks see: the lab being validated and where its
//! entry `scenarios[i]` was written, so that each diagnostic points at the
//! offending value.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::lab::checker::{Checker, parse_ip4, parse_net4};
use crate::lab::model::{Kubernetes, Network, Vm};
use crate::path;
use crate::yaml::Seg;

/// One scenario entry under check.
pub struct Checks<'c, 'a> {
    checker: &'c mut Checker<'a>,
    index: usize,
    pub networks: &'c [Network],
    pub vms: &'c [Vm],
    /// The lab's cluster as validated (none when the lab has none, or when
    /// its section has errors of its own).
    pub kubernetes: Option<&'c Kubernetes>,
}

impl<'c, 'a> Checks<'c, 'a> {
    pub(crate) fn new(
        checker: &'c mut Checker<'a>,
        index: usize,
        networks: &'c [Network],
        vms: &'c [Vm],
        kubernetes: Option<&'c Kubernetes>,
    ) -> Self {
        Checks {
            checker,
            index,
            networks,
            vms,
            kubernetes,
        }
    }

    /// `scenarios[i].name`: where a problem of the scenario as a whole (or
    /// of a default it chose) is reported.
    pub fn name(&self) -> Vec<Seg> {
        path!["scenarios", self.index, "name"]
    }

    /// `scenarios[i].params.<key>`.
    pub fn param(&self, key: &str) -> Vec<Seg> {
        path!["scenarios", self.index, "params", key]
    }

    /// `scenarios[i].params` followed by `sub`.
    pub fn under(&self, sub: impl IntoIterator<Item = Seg>) -> Vec<Seg> {
        let mut p = path!["scenarios", self.index, "params"];
        p.extend(sub);
        p
    }

    /// The lab's VM entries could not all be read: checks that count VMs
    /// stay quiet.
    pub fn vms_unreadable(&self) -> bool {
        self.checker.unreadable.vms
    }

    pub fn error(&mut self, path: &[Seg], message: impl Into<String>) {
        self.checker.error(path, message);
    }

    pub fn error_help(
        &mut self,
        path: &[Seg],
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.checker.error_help(path, message, help);
    }

    pub fn warning(&mut self, path: &[Seg], message: impl Into<String>) {
        self.checker.warning(path, message);
    }

    /// A DNS-1123 label of at most `max` characters.
    pub fn label(&mut self, path: &[Seg], what: &str, value: &str, max: usize) -> bool {
        self.checker.label(path, what, value, max)
    }

    /// An IPv4 subnet without host bits.
    pub fn net4(&mut self, path: &[Seg], text: &str) -> Option<Ipv4Net> {
        parse_net4(self.checker, path, text)
    }

    /// An IPv4 address.
    pub fn ip4(&mut self, path: &[Seg], text: &str) -> Option<Ipv4Addr> {
        parse_ip4(self.checker, path, text)
    }

    /// A VXLAN network identifier at `params.vni`.
    pub fn vni(&mut self, vni: Option<u32>) {
        if let Some(v) = vni
            && (v == 0 || v > 0xFF_FFFF)
        {
            self.error(
                &self.param("vni"),
                format!("VNI {v} is outside 1..16777215"),
            );
        }
    }

    /// `vni` and `port` of the scenario's VXLAN links.
    pub fn vxlan(&mut self, vni: Option<u32>, port: Option<u16>) {
        self.vni(vni);
        if port == Some(0) {
            self.error(&self.param("port"), "UDP port 0 is not a port");
        }
    }

    /// The scenario's VXLAN UDP port and published port: 0 is no port.
    pub fn ports(&mut self, vxlan: Option<u16>, ingress: Option<u16>) {
        for (key, port) in [("port", vxlan), ("ingress_port", ingress)] {
            if port == Some(0) {
                self.error(&self.param(key), "port 0 is not a port (1-65535)");
            }
        }
    }
}
