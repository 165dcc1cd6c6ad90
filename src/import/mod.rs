//! Importing labs written for other tools into kubelab lab files.

pub mod ansible;
pub mod ini;
