//! `crio-buildah`: build an image with buildah into CRI-O's storage and run
//! it — with podman on the node, or as a pod that never pulls it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Checks, LabParts, ClusterMode, Scenario, first_worker, one, owned, to_json};
use crate::lab::model::{Runtime, Vm};
use crate::yaml::Seg;

#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CrioBuildahParams {
    /// The node that builds and runs the image (default: the first worker,
    /// else the first VM without role `nat64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `host`: podman runs the image on the node; `kubernetes`: a pod with
    /// `imagePullPolicy: Never` (needs `runtime: crio`).
    #[serde(default)]
    pub mode: ClusterMode,
    /// The image buildah builds (default `localhost/kubelab/crio-demo:latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The node label the pod selects, `key=value` (Kubernetes mode;
    /// default `beefylevel=expert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_label: Option<String>,
}

/// What the playbooks see as `scenario`.
#[derive(Serialize)]
struct Resolved {
    node: Option<String>,
    mode: ClusterMode,
    image: String,
    node_label: String,
}

impl CrioBuildahParams {
    /// The node, defaults resolved.
    pub fn node_vm<'a>(&'a self, vms: &'a [Vm]) -> Option<&'a str> {
        self.node.as_deref().or_else(|| first_worker(vms))
    }
}

impl Scenario for CrioBuildahParams {
    fn vm_refs(&self) -> Vec<(Vec<Seg>, &str)> {
        one("node", &self.node)
    }

    /// `crio_node`: the node.
    fn groups(&self, vms: &[Vm]) -> Vec<(String, Vec<String>)> {
        vec![("crio_node".into(), owned(self.node_vm(vms)))]
    }

    fn needs_kubernetes(&self) -> bool {
        self.mode == ClusterMode::Kubernetes
    }

    fn check(&self, c: &mut Checks<'_, '_>) {
        if self.mode == ClusterMode::Kubernetes
            && let Some(k) = c.kubernetes
            && k.runtime != Runtime::Crio
        {
            c.error_help(
                &c.param("mode"),
                "crio-buildah builds into CRI-O's image store: the cluster needs `runtime: crio`",
                "set `kubernetes.runtime: crio`, or `mode: host` to run the image with podman",
            );
        }
        if let Some(image) = &self.image
            && let Some(why) = image_reference_problem(image)
        {
            c.error(
                &c.param("image"),
                format!("`{image}` is not an image reference: {why}"),
            );
        }
        if let Some(label) = &self.node_label
            && let Some(why) = node_label_problem(label)
        {
            c.error(
                &c.param("node_label"),
                format!("`{label}` is not a node label: {why}"),
            );
        }
    }

    fn resolved(&self, lab: &LabParts<'_>) -> Value {
        to_json(Resolved {
            node: self.node_vm(lab.vms).map(str::to_string),
            mode: self.mode,
            image: self
                .image
                .clone()
                .unwrap_or_else(|| "localhost/kubelab/crio-demo:latest".into()),
            node_label: self
                .node_label
                .clone()
                .unwrap_or_else(|| "beefylevel=expert".into()),
        })
    }
}

/// Why `image` is not a reference crio-buildah can build and run without a
/// registry: `localhost/<path>:<tag>` in lowercase letters, digits and
/// `._-/` (CRI-O would look anything else up on a registry).
pub fn image_reference_problem(image: &str) -> Option<String> {
    let Some(rest) = image.strip_prefix("localhost/") else {
        return Some("it must start with `localhost/` (the image never leaves the node)".into());
    };
    let Some((path, tag)) = rest.rsplit_once(':') else {
        return Some("it needs a tag, e.g. `:latest`".into());
    };
    if let Some(c) = image
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(*c)))
    {
        return Some(format!("`{}` is not allowed", c.escape_debug()));
    }
    if path.is_empty() || path.split('/').any(str::is_empty) {
        return Some("its path has an empty part".into());
    }
    if tag.is_empty() || tag.len() > 128 || tag.contains('/') {
        return Some(format!("`{tag}` is not a tag"));
    }
    if image.len() > 255 {
        return Some("it is longer than 255 characters".into());
    }
    None
}

/// Why `label` is not a Kubernetes node label `key=value` (an optional
/// `prefix/` on the key; names and value up to 63 characters of letters,
/// digits, `-`, `_`, `.`, starting and ending alphanumeric).
pub fn node_label_problem(label: &str) -> Option<String> {
    let Some((key, value)) = label.split_once('=') else {
        return Some("write it as `key=value`".into());
    };
    let name_problem = |what: &str, s: &str, empty_ok: bool| -> Option<String> {
        if s.is_empty() {
            return (!empty_ok).then(|| format!("the {what} is empty"));
        }
        if s.len() > 63 {
            return Some(format!("the {what} is longer than 63 characters"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
        {
            return Some(format!(
                "`{}` is not allowed in the {what}",
                c.escape_debug()
            ));
        }
        let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
        if !edge_ok(s.chars().next()) || !edge_ok(s.chars().last()) {
            return Some(format!(
                "the {what} must start and end with a letter or digit"
            ));
        }
        None
    };
    let name = match key.rsplit_once('/') {
        Some((prefix, name)) => {
            let bad = prefix.len() > 253
                || prefix
                    .split('.')
                    .any(|part| crate::lab::checker::label_problem(part, 63).is_some());
            if bad {
                return Some(format!("the key prefix `{prefix}` is not a DNS name"));
            }
            name
        }
        None => key,
    };
    name_problem("key", name, false).or_else(|| name_problem("value", value, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references() {
        for ok in [
            "localhost/kubelab/crio-demo:latest",
            "localhost/demo:1.0",
            "localhost/a.b_c-d/e:v2",
        ] {
            assert_eq!(image_reference_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("docker.io/library/demo:1", "localhost/"),
            ("localhost/demo", "needs a tag"),
            ("localhost/Demo:1", "`D` is not allowed"),
            ("localhost//demo:1", "empty part"),
            ("localhost/demo:", "is not a tag"),
            ("localhost/demo:1;rm", "`;` is not allowed"),
        ] {
            let got = image_reference_problem(bad).unwrap_or_default();
            assert!(got.contains(why), "{bad}: {got}");
        }
    }

    #[test]
    fn node_labels() {
        for ok in [
            "beefylevel=expert",
            "example.com/tier=a-b",
            "k=",
            "a.b_c=x.Y",
        ] {
            assert_eq!(node_label_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("beefylevel", "key=value"),
            ("=x", "key is empty"),
            ("k=a b", "` ` is not allowed in the value"),
            ("-k=v", "start and end"),
            ("Bad_Prefix/k=v", "not a DNS name"),
            ("k=$(x)", "`$` is not allowed"),
        ] {
            let got = node_label_problem(bad).unwrap_or_default();
            assert!(got.contains(why), "{bad}: {got}");
        }
    }
}
