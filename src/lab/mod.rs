//! Lab files: what the YAML says ([`file`]), how it is read ([`load`]) and
//! checked ([`validate`]), and the validated model the rest of kubelab uses
//! ([`model`]).

pub mod file;
pub mod load;
pub mod model;
pub mod size;
pub mod validate;

pub use load::{LoadOptions, load, load_str};
pub use model::Lab;
