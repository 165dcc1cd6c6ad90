//! JSON Schemas of kubelab's input files, for editors and
//! yaml-language-server (`# yaml-language-server: $schema=...`).

use crate::lab::file::{LabFile, VirthostFile};

/// The schema of lab files, pretty-printed.
pub fn lab() -> String {
    render(schemars::schema_for!(LabFile))
}

/// The schema of inventory files (a virthost definition).
pub fn inventory() -> String {
    render(schemars::schema_for!(VirthostFile))
}

fn render(schema: schemars::Schema) -> String {
    serde_json::to_string_pretty(&schema).unwrap_or_default()
}
