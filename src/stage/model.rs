//! What a stage is: one playbook run on a lab's hosts with what it needs
//! beyond the lab, and how it can fail. Everything that makes stages
//! (the Kubernetes, NAT64 and links stages, each scenario's phases) builds
//! on this file and nothing here knows them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::kubernetes::config::KubeadmError;
use crate::playbook::Playbook;
use crate::template::Vars;

/// A scenario phase; each is the built-in playbook
/// `scenarios/<scenario>/<phase>` (optional ones may be missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Setup,
    Verify,
    Break,
    Repair,
    Teardown,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Setup,
        Phase::Verify,
        Phase::Break,
        Phase::Repair,
        Phase::Teardown,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Verify => "verify",
            Phase::Break => "break",
            Phase::Repair => "repair",
            Phase::Teardown => "teardown",
        }
    }
}

/// One playbook run on a lab's hosts.
#[derive(Clone, Debug, Default)]
pub struct Stage {
    /// What progress and reports call it (`kubernetes`, `service-chain setup`).
    pub title: String,
    /// Built-in playbook name (`kubernetes`, `scenarios/overlay/setup`),
    /// or the name a generated playbook is reported under.
    pub playbook: String,
    /// The playbook, typed, when kubelab made it (the lab's `links:`).
    pub generated: Option<Playbook>,
    /// Variables for every host, over the lab's (and under `--var`).
    pub vars: Vars,
    /// Per-VM variables over the VM's own.
    pub host_vars: BTreeMap<String, Vars>,
    /// Extra groups: name → VM names.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Add the virthost as host `virthost` in group `virthost`. It is then
    /// part of `all`: such a stage's plays name their groups.
    pub virthost: bool,
}

/// Whether making a stage may create the lab's Kubernetes secrets in its
/// state directory (`up`, `play`) or must leave the directory as it is
/// (`plan`: missing secrets are made for this one rendering only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrets {
    Keep,
    Ephemeral,
}

/// Why a stage cannot be made (a lab that is valid but cannot have a
/// cluster yet, unreadable state).
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Kubeadm(#[from] KubeadmError),
    /// A file of the lab's state directory (secrets, inventory).
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
}

/// A stage that did not finish: its exit code (1 failed steps, 2 invalid
/// playbook, 3 unreachable hosts), its title and the steps that failed,
/// each with the tail of its stderr, so that the command's last words say
/// why and not only which stage.
#[derive(Clone, Debug)]
pub struct StageFailure {
    pub code: i32,
    pub title: String,
    pub failures: Vec<crate::output::Failure>,
}

impl std::fmt::Display for StageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stage `{}` failed", self.title)?;
        if self.failures.is_empty() {
            return write!(f, " (exit code {})", self.code);
        }
        f.write_str(":")?;
        for x in &self.failures {
            write!(
                f,
                "\n  {} | {} ({}): {}",
                x.host, x.step, x.location, x.message
            )?;
            for l in x.stderr_tail.lines() {
                write!(f, "\n    | {l}")?;
            }
        }
        Ok(())
    }
}
