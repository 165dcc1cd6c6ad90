//! Inventory: the hosts a playbook can run on, each with its groups, its
//! variables and the transport that reaches it. Whether a host is a VM or
//! the virthost makes no difference past this point.

use std::sync::Arc;

use crate::playbook::HostPattern;
use crate::template::Vars;
use crate::transport::Transport;

/// One host of a run.
#[derive(Clone)]
pub struct Host {
    pub name: String,
    /// Groups (roles) the host belongs to.
    pub groups: Vec<String>,
    /// The host's own variables (VM vars; `address` when known).
    pub vars: Vars,
    pub transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .finish()
    }
}

/// Hosts and the variables common to all of them (lab vars).
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub hosts: Vec<Host>,
    pub vars: Vars,
    /// Groups that exist even without members (a stage's groups): a play
    /// on an empty one runs nowhere instead of failing as a misspelt name.
    pub declared_groups: Vec<String>,
}

impl Inventory {
    pub fn new(vars: Vars) -> Self {
        Inventory {
            hosts: Vec::new(),
            vars,
            declared_groups: Vec::new(),
        }
    }

    pub fn add(&mut self, host: Host) -> &mut Self {
        self.hosts.push(host);
        self
    }

    /// Indexes of the hosts a pattern selects, in inventory order.
    pub fn select(&self, pattern: &HostPattern) -> Result<Vec<usize>, String> {
        let view: Vec<(&str, &[String])> = self
            .hosts
            .iter()
            .map(|h| (h.name.as_str(), h.groups.as_slice()))
            .collect();
        pattern.select_declared(&view, &self.declared_groups)
    }

    /// Group name → host names, for templates (`groups.worker`).
    pub fn groups(&self) -> std::collections::BTreeMap<String, Vec<String>> {
        let mut map: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for g in &self.declared_groups {
            map.entry(g.clone()).or_default();
        }
        for h in &self.hosts {
            map.entry("all".into()).or_default().push(h.name.clone());
            for g in &h.groups {
                map.entry(g.clone()).or_default().push(h.name.clone());
            }
        }
        map
    }
}

/// The transport of a host that could not be reached when connecting:
/// every operation fails with the original reason as `Unreachable`, so the
/// executor reports the host as unreachable (exit code 3) while the other
/// hosts run.
pub struct UnreachableTransport {
    host: String,
    reason: String,
}

impl UnreachableTransport {
    pub fn new(host: impl Into<String>, reason: impl Into<String>) -> Self {
        UnreachableTransport {
            host: host.into(),
            reason: reason.into(),
        }
    }

    /// From a connection error (its text becomes the reason).
    pub fn from_error(host: impl Into<String>, error: &crate::transport::TransportError) -> Self {
        let reason = match error {
            crate::transport::TransportError::Unreachable { reason, .. } => reason.clone(),
            other => other.to_string(),
        };
        UnreachableTransport::new(host, reason)
    }

    fn error(&self) -> crate::transport::TransportError {
        crate::transport::TransportError::Unreachable {
            host: self.host.clone(),
            reason: self.reason.clone(),
        }
    }
}

#[async_trait::async_trait]
impl Transport for UnreachableTransport {
    fn host(&self) -> &str {
        &self.host
    }
    fn is_root(&self) -> bool {
        false
    }
    async fn exec(
        &self,
        _req: crate::transport::Exec,
    ) -> Result<crate::transport::Output, crate::transport::TransportError> {
        Err(self.error())
    }
    async fn read_file(
        &self,
        _path: &str,
        _become_root: bool,
    ) -> Result<Option<Vec<u8>>, crate::transport::TransportError> {
        Err(self.error())
    }
    async fn write_file(
        &self,
        _upload: crate::transport::Upload,
    ) -> Result<(), crate::transport::TransportError> {
        Err(self.error())
    }
    async fn open_tunnel(
        &self,
        _host: &str,
        _port: u16,
    ) -> Result<Box<dyn crate::transport::Tunnel>, crate::transport::TransportError> {
        Err(self.error())
    }
}
