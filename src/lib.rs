//! kubelab: Kubernetes labs on libvirt virthosts, from one YAML lab file.
//!
//! The data flows one way:
//! lab file ([`lab`]) → validated model → plan ([`plan`]) → executor over a
//! [`transport`] → results → report.

pub mod transport;
pub mod virthost;
