//! The templates under `templates/kubernetes/`, built into the binary, and
//! the one way they are rendered: minijinja with strict undefined (a missing
//! variable is an error, never an empty string), `trim_blocks` and
//! `lstrip_blocks` (block tags on their own line leave no trace), the
//! final newline kept, and no automatic escaping: string values that go
//! into YAML or JSON are quoted explicitly with `tojson` (a JSON string is a
//! valid YAML double-quoted scalar, so IPv6 addresses like `::` and values
//! like `true` or `1.30` stay strings).

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

macro_rules! templates {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/kubernetes/", $name)))),*]
    };
}

/// Every template: file name and text.
pub const TEMPLATES: &[(&str, &str)] = templates![
    "kubeadm-init.yaml.j2",
    "kubeadm-join.yaml.j2",
    "kubeadm-node-registration.j2",
    "kubeadm-extra-args.j2",
    "99-kubernetes.conf.j2",
    "modules-load.conf.j2",
    "containerd-config.toml.j2",
    "crio.conf.j2",
    "docker-daemon.json.j2",
    "cri-dockerd.conf.j2",
    "kubelet-default.j2",
    "kubernetes.list.j2",
    "kubernetes.repo.j2",
];

/// A template failed to render. The message is minijinja's short one
/// (kind, detail, template and line); its debug report, which lists the
/// values of variables and so could show a secret, is never kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template {template}: {message}")]
pub struct RenderError {
    pub template: String,
    pub message: String,
}

fn environment() -> Result<Environment<'static>, RenderError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // minijinja would JSON-escape every value in `*.yaml.j2` and
    // `*.json.j2`; the templates quote explicitly with `tojson` instead.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
        .map_err(|e| RenderError {
            template: String::new(),
            message: e.to_string(),
        })?;
    env.set_syntax(syntax);
    for (name, text) in TEMPLATES {
        env.add_template(name, text).map_err(|e| RenderError {
            template: (*name).to_string(),
            message: e.to_string(),
        })?;
    }
    Ok(env)
}

/// Render template `name` with `context`.
pub fn render(name: &str, context: &impl Serialize) -> Result<String, RenderError> {
    let failed = |e: minijinja::Error| RenderError {
        template: name.to_string(),
        // Display without `{:#}`: no variable dump.
        message: e.to_string(),
    };
    let env = environment()?;
    let template = env.get_template(name).map_err(failed)?;
    template
        .render(minijinja::value::Serde(context))
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        environment().unwrap();
    }

    #[test]
    fn undefined_variables_are_errors_without_values_in_the_message() {
        #[derive(Serialize)]
        struct Partial {
            bootstrap_token: &'static str,
        }
        let err = render(
            "kubeadm-join.yaml.j2",
            &Partial {
                bootstrap_token: "abcdef.0123456789abcdef",
            },
        )
        .unwrap_err();
        assert_eq!(err.template, "kubeadm-join.yaml.j2");
        assert!(err.message.contains("undefined"), "{err}");
        assert!(!err.to_string().contains("0123456789abcdef"), "{err}");
        assert!(!format!("{err:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn unknown_templates_are_errors() {
        assert!(render("nope.j2", &()).is_err());
    }
}
