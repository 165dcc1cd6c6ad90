//! kubelab: Kubernetes labs on libvirt virthosts, from one YAML lab file.
//!
//! The data flows one way:
//! lab file ([`lab`]) → validated model ([`lab::Lab`]) → plan → executor
//! over a [`transport`] → results → report.

pub mod cli;
pub mod diagnostic;
pub mod import;
pub mod kubernetes;
pub mod lab;
pub mod report;
pub mod scenario;
pub mod schema;
pub mod state;
pub mod transport;
pub mod virthost;
pub mod yaml;
