//! The templates under `templates/kubernetes/` and how the typed layer
//! renders them: through the playbook engine's own template environment
//! ([`crate::template::Templates`], embedded templates), so that a file the
//! typed layer renders (and checks) is byte for byte the one a playbook's
//! `template` step writes from the same variables. Every Kubernetes template
//! starts with `#jinja2: trim_blocks: True, lstrip_blocks: True` (block tags
//! on their own line leave no trace); undefined variables are errors, never
//! empty strings; nothing is escaped: string values that go into YAML or
//! JSON are quoted explicitly with `tojson` (a JSON string is a valid YAML
//! double-quoted scalar, so IPv6 addresses like `::` and values like `true`
//! or `1.30` stay strings).

use serde::Serialize;

use crate::template::Templates;

/// Every template under `templates/kubernetes/`, by file name.
pub const TEMPLATES: &[&str] = &[
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

/// The path of a Kubernetes template under `templates/`.
pub fn path(name: &str) -> String {
    format!("kubernetes/{name}")
}

/// Render template `name` (a file name under `templates/kubernetes/`)
/// with `context`, exactly as a playbook's `template` step renders it
/// when the host's variables hold the same values: the same environment,
/// the embedded templates, the header's whitespace settings.
pub fn render(name: &str, context: &impl Serialize) -> Result<String, RenderError> {
    Templates::default()
        .render_file(
            &path(name),
            &minijinja::Value::from(minijinja::value::Serde(context)),
        )
        .map_err(|message| RenderError {
            template: name.to_string(),
            message,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_exists_and_trims_blocks() {
        let t = Templates::default();
        for name in TEMPLATES {
            assert!(t.exists(&path(name)), "{name}");
            let text = crate::template::EMBEDDED
                .iter()
                .find(|(n, _)| *n == path(name))
                .map(|(_, text)| *text)
                .unwrap();
            let (ws, _) = crate::template::split_header(text).unwrap();
            assert!(ws.trim_blocks && ws.lstrip_blocks, "{name}");
        }
    }

    #[test]
    fn undefined_variables_are_errors_without_values_in_the_message() {
        #[derive(Serialize)]
        struct Partial {
            kubeadm_bootstrap_token: &'static str,
        }
        let err = render(
            "kubeadm-join.yaml.j2",
            &Partial {
                kubeadm_bootstrap_token: "abcdef.0123456789abcdef",
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
