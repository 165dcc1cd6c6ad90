//! Reading a lab file (and the inventory file it names) into a [`Lab`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Lab;
use super::file::{LabFile, VirthostFile, VirthostRef};
use super::validate::{self, Located, Unreadable};
use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile, unreadable};
use crate::yaml::{self, Node, NodeKind, parse_file, typed};

/// Inventories shipped inside the binary, used when no file of that name
/// is found next to the lab.
pub const EMBEDDED_INVENTORIES: &[(&str, &str)] = &[
    ("local", include_str!("../../inventories/local.yaml")),
    (
        "remote-example",
        include_str!("../../inventories/remote-example.yaml"),
    ),
];

/// Where to look for inventory files, besides the lab file's surroundings.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub inventory_dirs: Vec<PathBuf>,
    /// `--set PATH=VALUE`, applied in order before the lab is read.
    pub overrides: Vec<super::overrides::Override>,
}

/// The result of loading: the lab and any warnings, or every error found.
pub type Loaded = Result<(Lab, Diagnostics), Diagnostics>;

/// Load and validate a lab file.
pub fn load(path: &Path, opts: &LoadOptions) -> Loaded {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            let mut d = Diagnostics::default();
            d.push(unreadable(path, &e));
            return Err(d);
        }
    };
    load_str(path, &text, opts)
}

/// Top-level keys of a lab file, each with a check that deserializes that
/// section alone (item by item for lists), so that errors in several
/// sections and items are all reported.
type SectionCheck = fn(&Arc<SourceFile>, &Node, &mut Diagnostics) -> Broken;

/// What of a section could not be read.
enum Broken {
    Nothing,
    Whole,
    /// These items of a list.
    Items(Vec<usize>),
}

fn each_item<T: for<'a> serde::Deserialize<'a>>(
    file: &Arc<SourceFile>,
    node: &Node,
    diags: &mut Diagnostics,
) -> Broken {
    match node.as_seq() {
        Some(items) => {
            let mut bad = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Err(d) = typed::<T>(file, item) {
                    diags.push(d);
                    bad.push(i);
                }
            }
            if bad.is_empty() {
                Broken::Nothing
            } else {
                Broken::Items(bad)
            }
        }
        None => whole::<Vec<T>>(file, node, diags),
    }
}

fn whole<T: for<'a> serde::Deserialize<'a>>(
    file: &Arc<SourceFile>,
    node: &Node,
    diags: &mut Diagnostics,
) -> Broken {
    match typed::<T>(file, node) {
        Ok(_) => Broken::Nothing,
        Err(d) => {
            diags.push(d);
            Broken::Whole
        }
    }
}

/// Scenario entries, with "unknown scenario" instead of serde's "unknown value".
fn scenarios(file: &Arc<SourceFile>, node: &Node, diags: &mut Diagnostics) -> Broken {
    let before = diags.0.len();
    let broken = each_item::<crate::scenario::ScenarioFile>(file, node, diags);
    for d in &mut diags.0[before..] {
        if let Some(rest) = d.message.strip_prefix("unknown value ") {
            d.message = format!("unknown scenario {rest}");
        } else if d.message.ends_with("expected a mapping") {
            d.help = Some(
                "a scenario is `- name: <scenario>`, with its parameters under `params:`".into(),
            );
        }
    }
    broken
}

const SECTIONS: &[(&str, bool, SectionCheck)] = &[
    ("name", true, whole::<String>),
    ("description", false, whole::<Option<String>>),
    ("ttl", false, whole::<Option<String>>),
    ("virthost", false, whole::<Option<VirthostRef>>),
    ("virthosts", false, each_item::<VirthostRef>),
    (
        "placement",
        false,
        whole::<Option<super::choices::PlacementFile>>,
    ),
    ("networks", false, each_item::<super::file::NetworkFile>),
    ("image", true, whole::<super::file::ImageFile>),
    ("defaults", false, whole::<super::file::VmDefaultsFile>),
    ("vms", false, each_item::<super::file::VmFile>),
    (
        "kubernetes",
        false,
        whole::<Option<super::file::KubernetesFile>>,
    ),
    ("links", false, each_item::<super::file::LinkFile>),
    ("scenarios", false, scenarios),
    ("vars", false, whole::<super::file::Vars>),
];

/// Names of the top-level keys of a lab file (kept in step with `LabFile`
/// by a test).
pub fn section_names() -> Vec<&'static str> {
    SECTIONS.iter().map(|(n, _, _)| *n).collect()
}

/// Scenario entries may leave out `params`: give them an empty one, so the
/// parameters' own defaults apply.
fn add_missing_params(root: &mut Node) {
    let Some(NodeKind::Seq(items)) = root_get_mut(root, "scenarios").map(|n| &mut n.kind) else {
        return;
    };
    for item in items {
        let span = item.span;
        if let NodeKind::Map(entries) = &mut item.kind
            && !entries.iter().any(|(k, _)| k.as_str() == Some("params"))
        {
            entries.push((
                Node {
                    kind: NodeKind::Scalar {
                        text: "params".into(),
                        quoted: false,
                    },
                    span,
                },
                Node::null(span),
            ));
        }
    }
}

fn root_get_mut<'a>(root: &'a mut Node, key: &str) -> Option<&'a mut Node> {
    match &mut root.kind {
        NodeKind::Map(entries) => entries
            .iter_mut()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Load and validate a lab from its text (`path` is used for messages and
/// to find inventories).
pub fn load_str(path: &Path, text: &str, opts: &LoadOptions) -> Loaded {
    let loaded = read_lab(path, text, opts);
    match loaded {
        // Positions of values `--set` changed are those of what they
        // replaced: say so, or a diagnostic would quote a line that looks
        // right.
        Err(mut diags) if !opts.overrides.is_empty() => {
            let sets: Vec<String> = opts
                .overrides
                .iter()
                .map(|o| format!("--set {}", o.text))
                .collect();
            diags.push(Diagnostic {
                severity: crate::diagnostic::Severity::Warning,
                ..Diagnostic::error(
                    &SourceFile::new(path, text),
                    None,
                    format!("the lab was read with {}", sets.join(" ")),
                )
            });
            Err(diags)
        }
        other => other,
    }
}

fn read_lab(path: &Path, text: &str, opts: &LoadOptions) -> Loaded {
    let file = SourceFile::new(path, text);
    let mut diags = Diagnostics::default();
    let mut root = match parse_file(&file) {
        Ok(r) => r,
        Err(d) => {
            diags.push(d);
            return Err(diags);
        }
    };
    for o in &opts.overrides {
        if let Err(message) = o.apply(&mut root) {
            diags.push(Diagnostic::error(&file, None, message));
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    // Before the sections are read, so that `- name: overlay` alone reads.
    add_missing_params(&mut root);
    let Some(entries) = root.as_map() else {
        diags.push(Diagnostic::error(
            &file,
            Some(root.span),
            format!(
                "a lab file is a mapping (name:, virthost:, vms:, ...), found {}",
                root.describe()
            ),
        ));
        return Err(diags);
    };
    let names = section_names();
    // Sections and items that could not be read are left out, so that the
    // semantic checks still run on the rest and all errors come out at once.
    let mut readable: Vec<(Node, Node)> = Vec::new();
    let mut required_broken = false;
    let mut unreadable = Unreadable::default();
    for (key, value) in entries {
        let k = key.as_str().unwrap_or("");
        match SECTIONS.iter().find(|(n, _, _)| *n == k) {
            Some((_, required, check)) => match check(&file, value, &mut diags) {
                Broken::Nothing => readable.push((key.clone(), value.clone())),
                Broken::Whole => {
                    required_broken |= *required;
                    match k {
                        "vms" => unreadable.vms = true,
                        "networks" => unreadable.networks = true,
                        "kubernetes" => unreadable.kubernetes = true,
                        _ => {}
                    }
                }
                Broken::Items(bad) => {
                    match k {
                        "vms" => unreadable.vms = true,
                        "networks" => {
                            unreadable.networks = true;
                            for i in &bad {
                                if let Some(name) = value
                                    .as_seq()
                                    .and_then(|items| items.get(*i))
                                    .and_then(|item| item.get("name"))
                                    .and_then(Node::as_str)
                                {
                                    unreadable.network_names.push(name.to_string());
                                }
                            }
                        }
                        _ => {}
                    }
                    let mut v = value.clone();
                    if let NodeKind::Seq(items) = &mut v.kind {
                        let mut i = 0;
                        items.retain(|_| {
                            i += 1;
                            !bad.contains(&(i - 1))
                        });
                    }
                    readable.push((key.clone(), v));
                }
            },
            None => {
                let mut d = Diagnostic::error(
                    &file,
                    Some(key.span),
                    format!("unknown top-level key `{k}`"),
                );
                d.help = Some(match yaml::closest(k, names.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!("a lab file has: {}", names.join(", ")),
                });
                diags.push(d);
            }
        }
    }
    for (name, required, _) in SECTIONS {
        if *required && root.get(name).is_none() {
            diags.push(Diagnostic::error(
                &file,
                Some(root.span),
                format!("missing required key `{name}`"),
            ));
        }
    }
    if root.get("virthost").is_none() && root.get("virthosts").is_none() {
        let mut d = Diagnostic::error(
            &file,
            Some(root.span),
            "missing required key `virthost` (or `virthosts`)",
        );
        d.help = Some(
            "`virthost: local` runs the lab on this machine; `virthosts:` lists several".into(),
        );
        diags.push(d);
    }
    if required_broken
        || diags
            .0
            .iter()
            .any(|d| d.message.starts_with("missing required key"))
    {
        return Err(diags.sorted());
    }
    let structural = diags;
    root.kind = NodeKind::Map(readable);
    let lab_file: LabFile = match typed(&file, &root) {
        Ok(l) => l,
        Err(d) => {
            let mut diags = structural;
            diags.push(d);
            return Err(diags.sorted());
        }
    };
    // The virthosts: inline, or from inventory files; each with its name.
    let lab_at = Located {
        file: &file,
        root: &root,
    };
    let result = match resolve_virthosts(&lab_file, &file, &root, path, opts) {
        Ok(resolved) => {
            let sources: Vec<validate::VirthostSource<'_>> = resolved
                .iter()
                .map(|(name, vh, f, node)| validate::VirthostSource {
                    name: name.clone(),
                    file: vh,
                    at: Located {
                        file: f,
                        root: node,
                    },
                })
                .collect();
            validate::check(&lab_file, lab_at, &sources, path, &unreadable)
        }
        Err(d) => Err(d),
    };
    match result {
        Ok((lab, warnings)) if !structural.has_errors() => Ok((lab, warnings)),
        Ok((_, warnings)) => {
            let mut all = structural;
            all.extend(warnings);
            Err(all.sorted())
        }
        Err(errors) => {
            let mut all = structural;
            all.extend(errors);
            Err(all.sorted())
        }
    }
}

/// Find an inventory by name or path.
/// A virthost named on the command line (`kubelab ls --virthost REF`):
/// `[user@]host[:port]` when it has an `@` (root by default, strict host
/// keys against ~/.ssh/known_hosts, the SSH agent), else an inventory name
/// or file as a lab file's `virthost:` takes it (looked up from the current
/// directory).
pub fn load_virthost(
    reference: &str,
    opts: &LoadOptions,
) -> Result<(super::model::Virthost, Diagnostics), Diagnostics> {
    let file = if let Some((user, rest)) = reference.split_once('@') {
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.parse::<u16>().is_ok() => (h, Some(p)),
            _ => (rest, None),
        };
        let quote = |v: &str| serde_json::to_string(v).unwrap_or_default();
        let mut text = format!("address: {}\nuser: {}\n", quote(host), quote(user));
        if let Some(p) = port {
            text.push_str(&format!("port: {p}\n"));
        }
        SourceFile::new("<--virthost>", text)
    } else {
        find_inventory(Path::new("./-"), reference, opts).map_err(|message| {
            let mut d = Diagnostics::default();
            d.push(Diagnostic::error(
                &SourceFile::new("<--virthost>", reference.to_string()),
                None,
                format!("{message} (or give the virthost as user@host[:port])"),
            ));
            d
        })?
    };
    let root = parse_file(&file).map_err(|d| {
        let mut all = Diagnostics::default();
        all.push(d);
        all
    })?;
    let vh: VirthostFile = typed(&file, &root).map_err(|d| {
        let mut all = Diagnostics::default();
        all.push(d);
        all
    })?;
    validate::virthost(
        &vh,
        Located {
            file: &file,
            root: &root,
        },
    )
}

/// Each virthost of a lab file with its name, its definition, and the file
/// and node it is written in.
#[allow(clippy::type_complexity)]
fn resolve_virthosts(
    lab_file: &LabFile,
    file: &Arc<SourceFile>,
    root: &Node,
    path: &Path,
    opts: &LoadOptions,
) -> Result<Vec<(String, VirthostFile, Arc<SourceFile>, Node)>, Diagnostics> {
    let mut diags = Diagnostics::default();
    let entries: Vec<(String, &VirthostRef, Node)> =
        match (&lab_file.virthost, lab_file.virthosts.as_slice()) {
            (Some(_), [_, ..]) => {
                let span = root.get("virthosts").map(|n| n.span);
                diags.push(Diagnostic::error(
                    file,
                    span,
                    "a lab has `virthost:` (one machine) or `virthosts:` (several), not both",
                ));
                return Err(diags);
            }
            // the section is there but could not be read: its error says why
            (None, []) => return Err(diags),
            (Some(one), []) => vec![(
                VIRTHOST_NAME.to_string(),
                one,
                root.get("virthost")
                    .cloned()
                    .unwrap_or(Node::null(root.span)),
            )],
            (None, many) => {
                let nodes = root.get("virthosts").and_then(|n| n.as_seq());
                many.iter()
                    .enumerate()
                    .map(|(i, r)| {
                        let node = nodes
                            .and_then(|items| items.get(i))
                            .cloned()
                            .unwrap_or(Node::null(root.span));
                        let name = match r {
                            VirthostRef::Inventory(reference) => inventory_stem(reference),
                            VirthostRef::Inline(v) => v.name.clone().unwrap_or_default(),
                        };
                        (name, r, node)
                    })
                    .collect()
            }
        };
    let mut resolved = Vec::new();
    for (name, r, node) in entries {
        match r {
            VirthostRef::Inline(v) => resolved.push((name, (**v).clone(), file.clone(), node)),
            VirthostRef::Inventory(reference) => {
                let inv_file = match find_inventory(path, reference, opts) {
                    Ok(f) => f,
                    Err(message) => {
                        diags.push(Diagnostic::error(file, Some(node.span), message));
                        continue;
                    }
                };
                let inv_root = match parse_file(&inv_file) {
                    Ok(r) => r,
                    Err(d) => {
                        diags.push(d);
                        continue;
                    }
                };
                match typed::<VirthostFile>(&inv_file, &inv_root) {
                    Ok(vh) => {
                        let name = vh.name.clone().unwrap_or(name);
                        resolved.push((name, vh, inv_file, inv_root));
                    }
                    Err(d) => diags.push(d),
                }
            }
        }
    }
    if diags.has_errors() {
        Err(diags)
    } else {
        Ok(resolved)
    }
}

/// The name of a lab's virthost written as `virthost:`.
pub const VIRTHOST_NAME: &str = "virthost";

/// A `virthosts:` entry's name when it is an inventory reference: the
/// file's stem (`rack-a`, `inventories/rack-a.yaml` → `rack-a`).
fn inventory_stem(reference: &str) -> String {
    Path::new(reference)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| reference.to_string())
}

fn find_inventory(lab: &Path, name: &str, opts: &LoadOptions) -> Result<Arc<SourceFile>, String> {
    let lab_dir = lab.parent().unwrap_or(Path::new("."));
    let read = |p: &Path| -> Result<Arc<SourceFile>, String> {
        std::fs::read_to_string(p)
            .map(|t| SourceFile::new(p, t))
            .map_err(|e| format!("cannot read inventory {}: {e}", p.display()))
    };
    if name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml") {
        let p = lab_dir.join(name);
        return read(&p);
    }
    if validate::label_problem(name, 63).is_some() {
        return Err(format!(
            "virthost `{}` is neither an inventory name nor a path to a .yaml file",
            name.escape_debug()
        ));
    }
    let file_name = format!("{name}.yaml");
    let mut candidates: Vec<PathBuf> = opts
        .inventory_dirs
        .iter()
        .map(|d| d.join(&file_name))
        .collect();
    candidates.push(lab_dir.join("inventories").join(&file_name));
    candidates.push(lab_dir.join("..").join("inventories").join(&file_name));
    candidates.push(PathBuf::from("inventories").join(&file_name));
    for c in &candidates {
        if c.is_file() {
            return read(c);
        }
    }
    if let Some((_, text)) = EMBEDDED_INVENTORIES.iter().find(|(n, _)| *n == name) {
        return Ok(SourceFile::new(
            format!("<built-in>/inventories/{file_name}"),
            *text,
        ));
    }
    Err(format!(
        "no inventory `{name}`: looked for {} (built-in inventories: {})",
        candidates
            .iter()
            .map(|c| c.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        EMBEDDED_INVENTORIES
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}
