//! One module per `kubelab` subcommand; `main.rs` only parses and dispatches.

pub mod import_ansible;
pub mod play;
pub mod validate;

use crate::lab::LoadOptions;

/// What every command gets from the global flags.
#[derive(Clone, Debug)]
pub struct Context {
    pub load: LoadOptions,
    pub json: bool,
    pub quiet: bool,
    pub verbose: u8,
    /// `--playbook-dir`: playbooks here win over the built-in ones.
    pub playbook_dir: Option<std::path::PathBuf>,
    /// `--template-dir`: templates here win over the built-in ones.
    pub template_dir: Option<std::path::PathBuf>,
    /// Colour on stderr (already decided from `--color`, `NO_COLOR` and the terminal).
    pub color: bool,
}
