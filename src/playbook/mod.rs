//! Playbooks: what to do on which hosts, as YAML.
//!
//! A playbook is a list of plays `{name, hosts, vars?, gather_facts?,
//! when?, serial?, steps}` and imports `- import_playbook: NAME` (another
//! playbook's plays, in place); a step is
//! `{name, <one module>: {...}, when?, loop?, register?, become?,
//! changed_when?, failed_when?, retries?, delay?, until?, secret?, tags?}`.
//! Loading checks everything that can be checked without hosts (field
//! names and types, module parameters, expression and template syntax,
//! template files, host expressions) and reports every error of the file
//! at once, each with file:line:col.

pub mod hosts;
pub mod links;
pub mod modules;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile, Span, unreadable};
use crate::template::Templates;
use crate::yaml::{self, Node, NodeKind};
pub use hosts::HostPattern;
pub use modules::Module;

/// Playbooks shipped inside the binary: `(path under playbooks/, text)`.
pub const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/embedded_playbooks.rs"));

/// Find a playbook: an existing file path as given, else `NAME` or
/// `NAME.yaml` in `override_dir` (`--playbook-dir`), else the embedded one.
/// Returns the name it is reported under and its text.
pub fn find(
    name: &str,
    override_dir: Option<&Path>,
) -> Result<(std::path::PathBuf, String), String> {
    let as_path = Path::new(name);
    if as_path.is_file() {
        return std::fs::read_to_string(as_path)
            .map(|t| (as_path.to_path_buf(), t))
            .map_err(|e| format!("cannot read {name}: {e}"));
    }
    let bare = name.strip_prefix("playbooks/").unwrap_or(name);
    let candidates = [bare.to_string(), format!("{bare}.yaml")];
    if let Some(dir) = override_dir {
        for c in &candidates {
            let p = dir.join(c);
            if p.is_file() {
                return std::fs::read_to_string(&p)
                    .map(|t| (p.clone(), t))
                    .map_err(|e| format!("cannot read {}: {e}", p.display()));
            }
        }
    }
    for c in &candidates {
        if let Some((n, text)) = EMBEDDED.iter().find(|(n, _)| n == c) {
            return Ok((
                Path::new("<built-in>/playbooks").join(n),
                (*text).to_string(),
            ));
        }
    }
    Err(format!(
        "no playbook `{name}` (built-in playbooks: {})",
        EMBEDDED
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// A loaded, checked playbook.
#[derive(Clone, Debug)]
pub struct Playbook {
    pub file: Arc<SourceFile>,
    pub plays: Vec<Play>,
}

/// Steps run on a set of hosts; every host finishes a play before the next
/// play starts.
#[derive(Clone, Debug)]
pub struct Play {
    pub name: String,
    pub hosts: HostPattern,
    /// In the order written: each is rendered seeing the ones before it.
    pub vars: PlayVars,
    /// Gather facts before the first step (default true); modules that
    /// need facts (`package`, `service`) gather them anyway.
    pub gather_facts: bool,
    /// Run on this many hosts at a time (default: all at once).
    pub serial: Option<usize>,
    /// A host failing in this play stops the playbook for every host after
    /// the play (a gate, e.g. a check that the others must not get past).
    pub any_errors_fatal: bool,
    /// Evaluated once before the play, with the run's variables (lab and
    /// stage variables, `groups`, `--var`; no host's): when false the play
    /// is skipped whole and its `hosts` are not resolved. One playbook can
    /// then hold alternatives, e.g. a scenario's host and Kubernetes modes.
    pub when: Option<Condition>,
    pub steps: Vec<Step>,
    pub span: Span,
}

/// A `true`/`false` or an expression (`changed_when`, `failed_when`, `when`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    Always(bool),
    Expr(String),
}

/// What a step loops over: a list (items may be templates) or an
/// expression evaluating to a list.
#[derive(Clone, Debug, PartialEq)]
pub enum LoopSpec {
    Items(Vec<serde_json::Value>),
    Expr(String),
}

/// One step of a play.
#[derive(Clone, Debug)]
pub struct Step {
    pub name: String,
    /// The module, as validated at load time (before templating).
    pub module: Module,
    /// `{module: params}` with every scalar as text, rendered on each host
    /// and deserialized into a [`Module`] again.
    pub params: serde_json::Value,
    pub when: Option<Condition>,
    pub loop_over: Option<LoopSpec>,
    pub register: Option<String>,
    pub become_root: bool,
    pub changed_when: Option<Condition>,
    pub failed_when: Option<Condition>,
    pub until: Option<String>,
    pub retries: u32,
    pub delay: Duration,
    pub secret: bool,
    pub tags: Vec<String>,
    /// `file:line:col` of the step, for reports.
    pub location: String,
    pub span: Span,
}

impl Step {
    /// The module's name (`template`, `command`, …).
    pub fn module_name(&self) -> &'static str {
        self.module.name()
    }

    /// A step kubelab makes itself (the lab's `links:`, `kubelab link`)
    /// from `{module: params}` (every scalar as text, as a loaded step's),
    /// with the module checks a loaded step gets; `location` says where it
    /// comes from, as a loaded step's `file:line:col` does.
    pub fn generated(
        name: String,
        params: serde_json::Value,
        location: String,
        when: Option<Condition>,
    ) -> Result<Step, String> {
        let module = check_module(&params)?;
        Ok(Step {
            name,
            module,
            params,
            when,
            loop_over: None,
            register: None,
            become_root: true,
            changed_when: None,
            failed_when: None,
            until: None,
            retries: 0,
            delay: Duration::from_secs(1),
            secret: false,
            tags: Vec::new(),
            location,
            span: Span::default(),
        })
    }
}

/// `{module: params}` as a typed module, with the checks of its literal
/// values that loading a playbook runs (the `link`/`route` endpoints).
pub fn check_module(params: &serde_json::Value) -> Result<Module, String> {
    let module: Module =
        serde_json::from_value(params.clone()).map_err(|e| format!("invalid parameters: {e}"))?;
    let problems = match &module {
        Module::Link(l) => l.problems(),
        Module::Route(r) => r.problems(),
        _ => Vec::new(),
    };
    if problems.is_empty() {
        Ok(module)
    } else {
        Err(crate::endpoint::describe(&problems))
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Condition;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("true, false or an expression")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Condition, E> {
                Ok(Condition::Always(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Condition, E> {
                Ok(Condition::Expr(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for LoopSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LoopSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list or an expression")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LoopSpec, E> {
                Ok(LoopSpec::Expr(v.to_string()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<LoopSpec, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element::<serde_json::Value>()? {
                    items.push(v);
                }
                Ok(LoopSpec::Items(items))
            }
        }
        d.deserialize_any(V)
    }
}

/// The keys of a step besides its module.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    name: String,
    when: Option<Condition>,
    #[serde(rename = "loop")]
    loop_over: Option<LoopSpec>,
    register: Option<String>,
    #[serde(rename = "become")]
    become_root: Option<bool>,
    changed_when: Option<Condition>,
    failed_when: Option<Condition>,
    until: Option<String>,
    retries: Option<u32>,
    delay: Option<f64>,
    #[serde(default)]
    secret: bool,
    #[serde(default)]
    tags: Vec<String>,
}

const STEP_KEYS: &[&str] = &[
    "name",
    "when",
    "loop",
    "register",
    "become",
    "changed_when",
    "failed_when",
    "until",
    "retries",
    "delay",
    "secret",
    "tags",
];

/// A play's variables in the order written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlayVars(pub Vec<(String, serde_json::Value)>);

impl PlayVars {
    pub fn iter(&self) -> impl Iterator<Item = (&String, &serde_json::Value)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<'a> IntoIterator for &'a PlayVars {
    type Item = (&'a String, &'a serde_json::Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, serde_json::Value)>,
        fn(&'a (String, serde_json::Value)) -> (&'a String, &'a serde_json::Value),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<'de> Deserialize<'de> for PlayVars {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PlayVars;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping of variable names to values")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<PlayVars, A::Error> {
                let mut vars: Vec<(String, serde_json::Value)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    if vars.iter().any(|(seen, _)| *seen == k) {
                        return Err(de::Error::custom(format!("variable `{k}` is set twice")));
                    }
                    vars.push((k, v));
                }
                Ok(PlayVars(vars))
            }
        }
        d.deserialize_map(V)
    }
}

/// The keys of a play.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlayFile {
    name: String,
    hosts: String,
    #[serde(default)]
    vars: PlayVars,
    gather_facts: Option<bool>,
    serial: Option<usize>,
    any_errors_fatal: Option<bool>,
    when: Option<Condition>,
    #[allow(dead_code)]
    steps: de::IgnoredAny,
}

/// Read and check a playbook file.
pub fn load(path: &Path, templates: &Templates) -> Result<Playbook, Diagnostics> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(path, &text, templates),
        Err(e) => Err(Diagnostics(vec![unreadable(path, &e)])),
    }
}

/// Check a playbook from its text; `path` names it in messages. Imports
/// resolve among the built-in playbooks (see [`load_str_in`]).
pub fn load_str(path: &Path, text: &str, templates: &Templates) -> Result<Playbook, Diagnostics> {
    load_str_in(path, text, templates, None)
}

/// How deep `import_playbook` may nest (an import cycle stops here too).
pub const MAX_IMPORT_DEPTH: usize = 8;

/// Check a playbook from its text. An item `- import_playbook: NAME` puts
/// the plays of playbook NAME there: a file next to the importing one,
/// else as [`find`] resolves it (`playbook_dir` first, then the built-in
/// ones). Errors in an imported playbook point into that playbook.
pub fn load_str_in(
    path: &Path,
    text: &str,
    templates: &Templates,
    playbook_dir: Option<&Path>,
) -> Result<Playbook, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut stack = vec![path.to_path_buf()];
    let (file, plays) = load_plays(path, text, templates, playbook_dir, &mut stack, &mut diags);
    if diags.has_errors() {
        Err(diags.sorted())
    } else {
        Ok(Playbook { file, plays })
    }
}

fn load_plays(
    path: &Path,
    text: &str,
    templates: &Templates,
    playbook_dir: Option<&Path>,
    stack: &mut Vec<std::path::PathBuf>,
    diags: &mut Diagnostics,
) -> (Arc<SourceFile>, Vec<Play>) {
    let file = SourceFile::new(path, text);
    let root = match yaml::parse_file(&file) {
        Ok(r) => r,
        Err(d) => {
            diags.push(d);
            return (file, Vec::new());
        }
    };
    let Some(items) = root.as_seq() else {
        diags.push(Diagnostic::error(
            &file,
            Some(root.span),
            format!(
                "a playbook is a list of plays (- name: …, hosts: …, steps: […]), found {}",
                root.describe()
            ),
        ));
        return (file, Vec::new());
    };
    let mut plays = Vec::new();
    for item in items {
        if let Some(import) = item.get("import_playbook") {
            plays.extend(import_plays(
                &file,
                item,
                import,
                templates,
                playbook_dir,
                stack,
                diags,
            ));
        } else if let Some(play) = load_play(&file, item, templates, diags) {
            plays.push(play);
        }
    }
    (file, plays)
}

fn import_plays(
    file: &Arc<SourceFile>,
    item: &Node,
    import: &Node,
    templates: &Templates,
    playbook_dir: Option<&Path>,
    stack: &mut Vec<std::path::PathBuf>,
    diags: &mut Diagnostics,
) -> Vec<Play> {
    if let Some(entries) = item.as_map()
        && let Some((k, _)) = entries
            .iter()
            .find(|(k, _)| k.as_str() != Some("import_playbook"))
    {
        diags.push(Diagnostic::error(
            file,
            Some(k.span),
            format!(
                "an import is `- import_playbook: NAME` alone; `{}` does not belong here",
                k.as_str().unwrap_or("")
            ),
        ));
        return Vec::new();
    }
    let Some(name) = import.as_str() else {
        diags.push(Diagnostic::error(
            file,
            Some(import.span),
            format!(
                "import_playbook takes a playbook name, found {}",
                import.describe()
            ),
        ));
        return Vec::new();
    };
    if stack.len() > MAX_IMPORT_DEPTH {
        diags.push(Diagnostic::error(
            file,
            Some(import.span),
            format!("imports nest deeper than {MAX_IMPORT_DEPTH} (an import cycle?)"),
        ));
        return Vec::new();
    }
    let sibling = file
        .path
        .parent()
        .map(|d| d.join(name))
        .filter(|p| p.is_file() && !file.path.starts_with("<built-in>"));
    let found = match sibling {
        Some(p) => std::fs::read_to_string(&p)
            .map(|t| (p.clone(), t))
            .map_err(|e| format!("cannot read {}: {e}", p.display())),
        None => find(name, playbook_dir),
    };
    let (path, text) = match found {
        Ok(x) => x,
        Err(e) => {
            diags.push(Diagnostic::error(file, Some(import.span), e));
            return Vec::new();
        }
    };
    if stack.contains(&path) {
        diags.push(Diagnostic::error(
            file,
            Some(import.span),
            format!("`{name}` imports itself (through {})", stack_names(stack)),
        ));
        return Vec::new();
    }
    stack.push(path.clone());
    let (_, plays) = load_plays(&path, &text, templates, playbook_dir, stack, diags);
    stack.pop();
    plays
}

fn stack_names(stack: &[std::path::PathBuf]) -> String {
    stack
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" → ")
}

fn load_play(
    file: &Arc<SourceFile>,
    node: &Node,
    templates: &Templates,
    diags: &mut Diagnostics,
) -> Option<Play> {
    let header = match yaml::typed::<PlayFile>(file, node) {
        Ok(h) => Some(h),
        Err(d) => {
            diags.push(d);
            None
        }
    };
    let hosts = header
        .as_ref()
        .and_then(|h| match HostPattern::parse(&h.hosts) {
            Ok(p) => Some(p),
            Err(e) => {
                let span = node.get("hosts").map_or(node.span, |n| n.span);
                diags.push(Diagnostic::error(file, Some(span), e));
                None
            }
        });
    let mut steps = Vec::new();
    let mut broken = false;
    if let Some(step_nodes) = node.get("steps").and_then(Node::as_seq) {
        for step_node in step_nodes {
            match load_step(file, step_node, templates, diags) {
                Some(s) => steps.push(s),
                None => broken = true,
            }
        }
    }
    let header = header?;
    if let Some(Condition::Expr(e)) = &header.when {
        let before = diags.error_count();
        check_expr(file, node.get("when"), e, templates, diags);
        broken |= diags.error_count() > before;
    }
    if broken {
        return None;
    }
    Some(Play {
        name: header.name,
        hosts: hosts?,
        vars: header.vars,
        gather_facts: header.gather_facts.unwrap_or(true),
        serial: header.serial,
        any_errors_fatal: header.any_errors_fatal.unwrap_or(false),
        when: header.when,
        steps,
        span: node.span,
    })
}

fn scalar(text: &str, span: Span) -> Node {
    Node {
        kind: NodeKind::Scalar {
            text: text.to_string(),
            quoted: false,
        },
        span,
    }
}

/// Module parameters as JSON with every scalar as a string (the lenient
/// parameter types read them back).
fn params_json(node: &Node) -> serde_json::Value {
    match &node.kind {
        NodeKind::Null => serde_json::Value::Null,
        NodeKind::Scalar { text, .. } => serde_json::Value::String(text.clone()),
        NodeKind::Seq(items) => serde_json::Value::Array(items.iter().map(params_json).collect()),
        NodeKind::Map(entries) => serde_json::Value::Object(
            entries
                .iter()
                .map(|(k, v)| (k.as_str().unwrap_or("").to_string(), params_json(v)))
                .collect(),
        ),
    }
}

fn is_identifier(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn load_step(
    file: &Arc<SourceFile>,
    node: &Node,
    templates: &Templates,
    diags: &mut Diagnostics,
) -> Option<Step> {
    let before = diags.error_count();
    let Some(entries) = node.as_map() else {
        diags.push(Diagnostic::error(
            file,
            Some(node.span),
            format!(
                "a step is a mapping (name: …, <module>: …), found {}",
                node.describe()
            ),
        ));
        return None;
    };
    let mut common = Vec::new();
    let mut module_entry: Option<(&Node, &Node)> = None;
    let mut unknown_keys = false;
    for (k, v) in entries {
        let key = k.as_str().unwrap_or("");
        if STEP_KEYS.contains(&key) {
            common.push((k.clone(), v.clone()));
        } else if modules::MODULE_NAMES.contains(&key) {
            if let Some((first, _)) = module_entry {
                diags.push(Diagnostic::error(
                    file,
                    Some(k.span),
                    format!(
                        "a step uses exactly one module; this one already uses `{}` (line {})",
                        first.as_str().unwrap_or(""),
                        first.span.start.line
                    ),
                ));
            } else {
                module_entry = Some((k, v));
            }
        } else {
            unknown_keys = true;
            let all = STEP_KEYS
                .iter()
                .chain(modules::MODULE_NAMES.iter())
                .copied();
            let mut message = format!("unknown step key `{key}`");
            if let Some(best) = yaml::closest(key, all) {
                message.push_str(&format!(", did you mean `{best}`?"));
            }
            diags.push(
                Diagnostic::error(file, Some(k.span), message).with_help(format!(
                    "modules: {}; step keys: {}",
                    modules::MODULE_NAMES.join(", "),
                    STEP_KEYS.join(", ")
                )),
            );
        }
    }
    let common_node = Node {
        kind: NodeKind::Map(common),
        span: node.span,
    };
    let step_file = match yaml::typed::<StepFile>(file, &common_node) {
        Ok(s) => Some(s),
        Err(d) => {
            diags.push(d);
            None
        }
    };
    let Some((key, value)) = module_entry else {
        if unknown_keys {
            // The unknown key is most likely the misspelt module.
            return None;
        }
        diags.push(
            Diagnostic::error(file, Some(node.span), "this step has no module")
                .with_help(format!("use one of: {}", modules::MODULE_NAMES.join(", "))),
        );
        return None;
    };
    let key_text = key.as_str().unwrap_or("");
    // Shorthands: `command: [prog, args]`, `shell: "script"`.
    let value = match (key_text, &value.kind) {
        ("command", NodeKind::Seq(_)) => Node {
            kind: NodeKind::Map(vec![(scalar("argv", value.span), value.clone())]),
            span: value.span,
        },
        ("shell", NodeKind::Scalar { .. }) => Node {
            kind: NodeKind::Map(vec![(scalar("script", value.span), value.clone())]),
            span: value.span,
        },
        _ => value.clone(),
    };
    // `changed_when` may sit in `command:`/`shell:` parameters too; it is
    // the step's.
    let mut value = value;
    let mut module_changed_when = None;
    if matches!(key_text, "command" | "shell")
        && let NodeKind::Map(entries) = &mut value.kind
        && let Some(i) = entries
            .iter()
            .position(|(k, _)| k.as_str() == Some("changed_when"))
    {
        let (k, v) = entries.remove(i);
        match yaml::typed::<Condition>(file, &v) {
            Ok(c) => module_changed_when = Some((c, k.span, v)),
            Err(d) => diags.push(d),
        }
    }
    let wrapped = Node {
        kind: NodeKind::Map(vec![(key.clone(), value.clone())]),
        span: key.span,
    };
    let module = match yaml::typed::<Module>(file, &wrapped) {
        Ok(m) => Some(m),
        Err(d) => {
            diags.push(d);
            None
        }
    };
    // Template syntax in every parameter string.
    check_strings(file, &value, templates, diags);
    if let Some(Module::Template(t)) = &module
        && !crate::template::has_template_syntax(t.src.as_str())
        && !templates.exists(t.src.as_str())
    {
        let span = value.get("src").map_or(value.span, |n| n.span);
        diags.push(Diagnostic::error(
            file,
            Some(span),
            format!(
                "no template `{}` (embedded or in the template directory)",
                t.src
            ),
        ));
    }
    if let Some(Module::Copy(c)) = &module
        && c.content.is_some() == c.src.is_some()
    {
        diags.push(Diagnostic::error(
            file,
            Some(value.span),
            modules::COPY_SOURCE,
        ));
    }
    if let Some(Module::Shell(a)) = &module {
        let span = value.get("script").map_or(value.span, |n| n.span);
        check_shell_quoting(file, span, &a.script, diags);
        if let Some(modules::Probe::Script(u)) = &a.unless {
            let span = value.get("unless").map_or(value.span, |n| n.span);
            check_shell_quoting(file, span, u, diags);
        }
    }
    if let Some(Module::Command(modules::CommandArgs {
        unless: Some(modules::Probe::Script(u)),
        ..
    })) = &module
    {
        let span = value.get("unless").map_or(value.span, |n| n.span);
        check_shell_quoting(file, span, u, diags);
    }
    let link_problems = match &module {
        Some(Module::Link(l)) => l.problems(),
        Some(Module::Route(r)) => r.problems(),
        _ => Vec::new(),
    };
    for (path, message) in link_problems {
        diags.push(Diagnostic::error(file, Some(value.span_at(&path)), message));
    }
    if let Some(Module::Assert(a)) = &module {
        for (i, expr) in a.that.iter().enumerate() {
            let node = value
                .get("that")
                .and_then(Node::as_seq)
                .and_then(|s| s.get(i));
            check_expr(file, node, expr, templates, diags);
        }
    }
    let mut step_file = step_file?;
    let changed_when_in_module = module_changed_when.is_some();
    if let Some((cond, span, node)) = module_changed_when {
        if step_file.changed_when.is_some() {
            diags.push(Diagnostic::error(
                file,
                Some(span),
                "changed_when is set both here and on the step; keep one",
            ));
        } else {
            if let Condition::Expr(e) = &cond {
                check_expr(file, Some(&node), e, templates, diags);
            }
            step_file.changed_when = Some(cond);
        }
    }
    for (field, cond) in [
        ("when", &step_file.when),
        ("changed_when", &step_file.changed_when),
        ("failed_when", &step_file.failed_when),
    ] {
        if field == "changed_when" && changed_when_in_module {
            continue;
        }
        if let Some(Condition::Expr(e)) = cond {
            check_expr(file, node.get(field), e, templates, diags);
        }
    }
    if let Some(e) = &step_file.until {
        check_expr(file, node.get("until"), e, templates, diags);
    }
    if let Some(LoopSpec::Expr(e)) = &step_file.loop_over {
        check_expr(file, node.get("loop"), e, templates, diags);
    }
    if let Some(r) = &step_file.register
        && !is_identifier(r)
    {
        diags.push(Diagnostic::error(
            file,
            node.get("register").map(|n| n.span),
            format!("`{r}` is not a variable name (letters, digits, `_`)"),
        ));
    }
    if let Some(d) = step_file.delay
        && !(d.is_finite() && (0.0..=3600.0).contains(&d))
    {
        diags.push(Diagnostic::error(
            file,
            node.get("delay").map(|n| n.span),
            "delay is a number of seconds between 0 and 3600",
        ));
    }
    if diags.error_count() > before {
        return None;
    }
    let location = format!(
        "{}:{}:{}",
        file.path.display(),
        node.span.start.line,
        node.span.start.col
    );
    Some(Step {
        name: step_file.name,
        module: module?,
        params: serde_json::json!({ key_text: params_json(&value) }),
        when: step_file.when,
        loop_over: step_file.loop_over,
        register: step_file.register,
        become_root: step_file.become_root.unwrap_or(true),
        changed_when: step_file.changed_when,
        failed_when: step_file.failed_when,
        retries: step_file
            .retries
            .unwrap_or(if step_file.until.is_some() { 3 } else { 0 }),
        until: step_file.until,
        delay: Duration::from_secs_f64(step_file.delay.unwrap_or(1.0)),
        secret: step_file.secret,
        tags: step_file.tags,
        location,
        span: node.span,
    })
}

/// A strings-with-expressions check: the expression must compile.
fn check_expr(
    file: &Arc<SourceFile>,
    node: Option<&Node>,
    expr: &str,
    templates: &Templates,
    diags: &mut Diagnostics,
) {
    if let Err(e) = templates.check_expression(expr) {
        diags.push(Diagnostic::error(
            file,
            node.map(|n| n.span),
            format!("invalid expression `{expr}`: {e}"),
        ));
    }
}

fn check_strings(
    file: &Arc<SourceFile>,
    node: &Node,
    templates: &Templates,
    diags: &mut Diagnostics,
) {
    match &node.kind {
        NodeKind::Scalar { text, .. } => {
            if let Err(e) = templates.check_str(text) {
                diags.push(Diagnostic::error(
                    file,
                    Some(node.span),
                    format!("invalid template: {e}"),
                ));
            }
        }
        NodeKind::Seq(items) => items
            .iter()
            .for_each(|n| check_strings(file, n, templates, diags)),
        NodeKind::Map(entries) => {
            // `that:` holds expressions, checked separately.
            entries
                .iter()
                .filter(|(k, _)| k.as_str() != Some("that"))
                .for_each(|(_, v)| check_strings(file, v, templates, diags))
        }
        NodeKind::Null => {}
    }
}

/// Every `{{ … }}` in a shell script must be quoted (`| quote`) or be a
/// number (`| int`): values are pasted into a script, and a value with a
/// space, `;` or `$(…)` would otherwise be run as shell code.
fn check_shell_quoting(file: &Arc<SourceFile>, span: Span, script: &str, diags: &mut Diagnostics) {
    let mut rest = script;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        let expr = after[..end]
            .trim()
            .trim_start_matches('-')
            .trim_end_matches('-')
            .trim();
        let last_filter = expr.rsplit('|').next().unwrap_or("").trim();
        let safe =
            expr.contains("quote") || last_filter == "int" || last_filter.starts_with("int(");
        if !safe {
            diags.push(
                Diagnostic::error(
                    file,
                    Some(span),
                    format!("`{{{{ {expr} }}}}` is pasted into a shell script unquoted"),
                )
                .with_help(format!(
                    "write `{{{{ {expr} | quote }}}}` (or `| int` for a number), or use `command:` with an argument list"
                )),
            );
        }
        rest = &after[end + 2..];
    }
}

#[cfg(test)]
mod find_tests {
    use super::*;

    #[test]
    fn embedded_playbooks_are_found_by_name() {
        let (path, text) = find("nodeprep-bench", None).unwrap();
        assert_eq!(path, Path::new("<built-in>/playbooks/nodeprep-bench.yaml"));
        assert!(text.contains("node prep"));
        assert!(find("playbooks/nodeprep-bench.yaml", None).is_ok());
    }

    #[test]
    fn override_dir_wins_and_unknown_names_list_the_builtins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("nodeprep-bench.yaml"), "[]\n").unwrap();
        let (path, text) = find("nodeprep-bench", Some(dir.path())).unwrap();
        assert_eq!(path, dir.path().join("nodeprep-bench.yaml"));
        assert_eq!(text, "[]\n");
        let e = find("no-such-book", None).unwrap_err();
        assert!(e.contains("nodeprep-bench.yaml"), "{e}");
    }

    #[test]
    fn imports_put_plays_in_place_and_report_cycles_and_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        let play = |name: &str| {
            format!(
                "- name: {name}\n  hosts: all\n  steps:\n    - name: s\n      command: [\"true\"]\n"
            )
        };
        std::fs::write(dir.path().join("b.yaml"), play("from b")).unwrap();
        let top = format!(
            "{}- import_playbook: b.yaml\n- import_playbook: nodeprep-bench\n",
            play("first")
        );
        let t = Templates::default();
        let pb = load_str_in(&dir.path().join("top.yaml"), &top, &t, None).unwrap();
        let names: Vec<&str> = pb.plays.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["first", "from b", "node prep"]);
        assert!(pb.plays[1].steps[0].location.contains("b.yaml:4:7"));

        std::fs::write(dir.path().join("c.yaml"), "- import_playbook: d.yaml\n").unwrap();
        std::fs::write(dir.path().join("d.yaml"), "- import_playbook: c.yaml\n").unwrap();
        let e = load(&dir.path().join("c.yaml"), &t)
            .unwrap_err()
            .render(false);
        assert!(e.contains("imports itself"), "{e}");

        let e = load_str_in(
            &dir.path().join("x.yaml"),
            "- import_playbook: no-such\n  hosts: all\n",
            &t,
            None,
        )
        .unwrap_err()
        .render(false);
        assert!(e.contains("`hosts` does not belong here"), "{e}");
        let e = load_str_in(
            &dir.path().join("x.yaml"),
            "- import_playbook: no-such\n",
            &t,
            None,
        )
        .unwrap_err()
        .render(false);
        assert!(e.contains("no playbook `no-such`"), "{e}");
        assert!(e.contains("x.yaml:1:"), "{e}");
    }

    #[test]
    fn every_built_in_playbook_loads() {
        let t = Templates::default();
        for (name, text) in EMBEDDED {
            let path = Path::new("<built-in>/playbooks").join(name);
            if let Err(d) = load_str_in(&path, text, &t, None) {
                panic!("{name}:\n{}", d.render(false));
            }
        }
    }
}
