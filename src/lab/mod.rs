//! Lab files: what the YAML says ([`file`]), how it is read ([`load`]) and
//! checked ([`validate`]), and the validated model the rest of kubelab uses
//! ([`model`]).

pub mod file;
pub mod load;
pub mod model;
pub mod overrides;
pub mod size;
pub mod validate;

pub use load::{LoadOptions, load, load_str};
pub use model::Lab;

/// A lab from YAML text (as if read from `lab.yaml`), for unit tests:
/// panics with the rendered diagnostics when it is invalid.
#[cfg(test)]
pub fn from_test_yaml(text: &str) -> Lab {
    load_str(std::path::Path::new("lab.yaml"), text, &Default::default())
        .map_err(|e| e.render(false))
        .unwrap()
        .0
}
