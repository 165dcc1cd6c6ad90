//! kubelab: Kubernetes labs on libvirt virthosts, from one YAML lab file.
//!
//! The data flows one way:
//! lab file ([`lab`]) → validated model ([`lab::Lab`]) → plan → executor
//! over a [`transport`] → results → report.

pub mod apply;
pub mod bundle;
pub mod cli;
pub mod columns;
pub mod commands;
pub mod components;
pub mod containerd;
pub mod diagnostic;
pub mod endpoint;
pub mod executor;
pub mod facts;
pub mod forensics;
pub mod graph;
pub mod import;
pub mod inventory;
pub mod junit;
pub mod kubernetes;
pub mod lab;
pub mod links;
pub mod markup;
pub mod nat64;
pub mod output;
pub mod plan;
pub mod playbook;
pub mod provision;
pub mod redact;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod schema;
pub mod stage;
pub mod state;
pub mod template;
pub mod transport;
pub mod values;
pub mod virthost;
pub mod yaml;
