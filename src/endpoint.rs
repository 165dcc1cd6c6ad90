//! Where an interface or a route lives on a host — an *endpoint*: the
//! host's own network namespace, a named namespace (`netns`), a container
//! (`container`, with `runtime` podman, docker or crio), a Kubernetes pod
//! (`pod: namespace/name`) or a process's namespace (`pid`) — and the checks
//! of the names involved. The lab's `links:` and the `link`/`route` modules
//! share them: a lab file's endpoint is checked with the same words as a
//! playbook's.

use crate::template::has_template_syntax;
use crate::values::{Count, Text};
use crate::yaml::Seg;

/// A container runtime an endpoint can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerRuntime {
    Podman,
    Docker,
    Crio,
}

impl ContainerRuntime {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerRuntime::Podman => "podman",
            ContainerRuntime::Docker => "docker",
            ContainerRuntime::Crio => "crio",
        }
    }
    pub fn parse(s: &str) -> Option<ContainerRuntime> {
        match s {
            "podman" => Some(ContainerRuntime::Podman),
            "docker" => Some(ContainerRuntime::Docker),
            "crio" | "cri-o" => Some(ContainerRuntime::Crio),
            _ => None,
        }
    }
}

/// Where an interface or route lives on the host, checked.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Endpoint {
    /// The host's own network namespace.
    Host,
    Netns {
        name: String,
    },
    Container {
        runtime: ContainerRuntime,
        name: String,
    },
    Pod {
        namespace: String,
        name: String,
    },
    Pid {
        pid: u32,
    },
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Host => f.write_str("host"),
            Endpoint::Netns { name } => write!(f, "netns {name}"),
            Endpoint::Container { runtime, name } => write!(f, "{} {name}", runtime.as_str()),
            Endpoint::Pod { namespace, name } => write!(f, "pod {namespace}/{name}"),
            Endpoint::Pid { pid } => write!(f, "pid {pid}"),
        }
    }
}

/// A problem with a parameter: where (under the module's parameters) and what.
pub type Problem = (Vec<Seg>, String);

pub(crate) fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

pub(crate) fn at(base: &[Seg], k: &str) -> Vec<Seg> {
    let mut p = base.to_vec();
    p.push(key(k));
    p
}

/// A value to check now: `None` for a template (checked once rendered) or
/// an empty value (not given).
pub(crate) fn literal(t: Option<&Text>) -> Option<&str> {
    t.map(|t| t.as_str().trim())
        .filter(|s| !s.is_empty() && !has_template_syntax(s))
}

pub(crate) fn given(t: Option<&Text>) -> bool {
    t.is_some_and(|t| !t.as_str().trim().is_empty())
}

/// Why `s` is not a Linux interface name.
pub fn ifname_problem(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 15 {
        return Some(format!(
            "`{}` is not an interface name: 1 to 15 characters",
            s.escape_debug()
        ));
    }
    if s == "." || s == ".." || s.starts_with('-') {
        return Some(format!("`{s}` is not an interface name"));
    }
    s.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .map(|c| {
            format!(
                "`{}` is not an interface name: `{}` is not allowed (letters, digits, `-`, `_`, `.`)",
                s.escape_debug(),
                c.escape_debug()
            )
        })
}

/// Why `s` is not a name kubelab passes on as a namespace or container
/// name (letters, digits, `_`, `.`, `-`; not starting with `-` or `.`).
pub fn object_name_problem(what: &str, s: &str, max: usize) -> Option<String> {
    let ok = !s.is_empty()
        && s.len() <= max
        && !s.starts_with(['-', '.'])
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    (!ok).then(|| {
        format!(
            "`{}` is not a {what} name: 1 to {max} letters, digits, `_`, `.` or `-`, not starting with `-` or `.`",
            s.escape_debug()
        )
    })
}

/// Why `s` is not `namespace/name` of a pod.
fn pod_problem(s: &str) -> Option<String> {
    let dns = |p: &str| {
        !p.is_empty()
            && p.len() <= 253
            && p.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
    };
    match s.split_once('/') {
        Some((ns, name)) if dns(ns) && dns(name) => None,
        _ => Some(format!(
            "`{}` is not a pod: write namespace/name (lowercase DNS names)",
            s.escape_debug()
        )),
    }
}

/// The endpoint keys of a link end or a route, as written.
pub struct EndpointKeys<'a> {
    pub netns: Option<&'a Text>,
    pub container: Option<&'a Text>,
    pub runtime: Option<&'a Text>,
    pub pod: Option<&'a Text>,
    pub pid: Option<Count>,
}

impl EndpointKeys<'_> {
    /// Problems of the literal values (templates are skipped).
    pub fn problems(&self, base: &[Seg], out: &mut Vec<Problem>) {
        let set: Vec<&str> = [
            ("netns", given(self.netns)),
            ("container", given(self.container)),
            ("pod", given(self.pod)),
            ("pid", self.pid.is_some()),
        ]
        .into_iter()
        .filter(|(_, g)| *g)
        .map(|(k, _)| k)
        .collect();
        if set.len() > 1 {
            out.push((
                at(base, set[1]),
                format!(
                    "an endpoint is one of netns, container, pod or pid; this one sets {}",
                    set.join(" and ")
                ),
            ));
        }
        if let Some(n) = literal(self.netns)
            && let Some(p) = object_name_problem("network namespace", n, 64)
        {
            out.push((at(base, "netns"), p));
        }
        if let Some(n) = literal(self.container)
            && let Some(p) = object_name_problem("container", n, 128)
        {
            out.push((at(base, "container"), p));
        }
        if let Some(r) = literal(self.runtime) {
            if ContainerRuntime::parse(r).is_none() {
                out.push((
                    at(base, "runtime"),
                    format!("unknown container runtime `{r}`: expected podman, docker or crio"),
                ));
            }
            if !given(self.container) {
                out.push((
                    at(base, "runtime"),
                    "`runtime` goes with `container`".to_string(),
                ));
            }
        }
        if let Some(p) = literal(self.pod).and_then(pod_problem) {
            out.push((at(base, "pod"), p));
        }
        if let Some(Count(Some(0))) = self.pid {
            out.push((at(base, "pid"), "pid 0 is not a process".into()));
        }
    }

    /// The checked endpoint (after templating).
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        let mut problems = Vec::new();
        self.problems(&[], &mut problems);
        if let Some((_, p)) = problems.into_iter().next() {
            return Err(p);
        }
        let text = |t: Option<&Text>| {
            t.map(|t| t.as_str().trim().to_string())
                .filter(|s| !s.is_empty())
        };
        if let Some(n) = text(self.netns) {
            return Ok(Endpoint::Netns { name: n });
        }
        if let Some(name) = text(self.container) {
            let runtime = match text(self.runtime) {
                None => ContainerRuntime::Podman,
                Some(r) => ContainerRuntime::parse(&r)
                    .ok_or_else(|| format!("unknown container runtime `{r}`"))?,
            };
            return Ok(Endpoint::Container { runtime, name });
        }
        if let Some(p) = text(self.pod) {
            let (namespace, name) = p.split_once('/').unwrap_or(("", ""));
            return Ok(Endpoint::Pod {
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
        }
        if let Some(pid) = self.pid {
            let pid = pid.get()?;
            return u32::try_from(pid)
                .map(|pid| Endpoint::Pid { pid })
                .map_err(|_| format!("pid {pid} is out of range"));
        }
        Ok(Endpoint::Host)
    }
}

/// Problems as one message (after templating).
pub fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|(p, m)| {
            if p.is_empty() {
                m.clone()
            } else {
                format!("{}: {m}", crate::yaml::path_to_string(p))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
