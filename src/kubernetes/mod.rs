//! Kubernetes with kubeadm: the typed kubeadm configuration API ([`api`]),
//! the per-node render context and the rendered init/join files
//! ([`config`]), join secrets ([`secrets`]), node preparation files and
//! package repositories ([`node`]), all rendered from the templates under
//! `templates/kubernetes/` ([`templates`]); the variables of the
//! `kubernetes` stage ([`stage`]) that the playbooks under
//! `playbooks/kubernetes/` run with; and a running cluster's nodes and
//! kubeconfig ([`cluster`]).
//!
//! Template selection: one `kubeadm-init.yaml.j2` and one
//! `kubeadm-join.yaml.j2` serve both kubeadm API versions; the context's
//! `api_version`/`v1beta4` (from [`api::KubeadmApi::for_minor`]: `v1beta4`
//! from Kubernetes 1.31, `v1beta3` before) switch the few places where the
//! versions differ (extra argument shape, timeouts).

pub mod api;
pub mod cluster;
pub mod config;
pub mod node;
pub mod secrets;
pub mod sources;
pub mod stage;
pub mod templates;

#[cfg(test)]
mod tests;

pub use api::KubeadmApi;
pub use config::{
    ClusterFacts, KubeadmContext, KubeadmError, NodeAddresses, NodeRole, RenderedConfig, cri_socket,
};
pub use node::{DistroFamily, NodePrepContext, RepositoryContext, repo_url};
pub use secrets::{BootstrapToken, CaCertHash, CertificateKey, JoinSecrets};
pub use stage::ClusterSecrets;
