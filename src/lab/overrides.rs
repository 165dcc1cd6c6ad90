//! `--set PATH=VALUE`: change a value of the lab file for one run without
//! editing it, e.g. a CI machine smaller than the lab's author's
//! (`--set defaults.memory=1GiB --set vms.kube-master.cpus=1`).
//!
//! The change is made to the parsed YAML tree before the lab is read, so
//! every check of the lab file applies to the new value as if it had been
//! written there. PATH is dotted: map keys, sequence indexes (`vms.0`) or,
//! in a sequence of named items, an item's `name` (`vms.node-1`). Missing
//! map keys are added; VALUE is YAML (`1`, `1GiB`, `[a, b]`, `{x: 1}`).

use crate::diagnostic::Span;
use crate::yaml::{Node, NodeKind};

/// One `--set PATH=VALUE`.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// As the user wrote it, for messages.
    pub text: String,
    pub path: Vec<String>,
    pub value: Node,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (path, value) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}`: expected PATH=VALUE, e.g. defaults.memory=1GiB"))?;
        let path: Vec<String> = path
            .trim()
            .split('.')
            .map(|s| s.trim().to_string())
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(format!(
                "`{text}`: the path has an empty part (write keys separated by single dots)"
            ));
        }
        let value = crate::yaml::parse(value)
            .map_err(|e| format!("`{text}`: the value is not YAML: {}", e.message))?;
        Ok(Override {
            text: text.to_string(),
            path,
            value,
        })
    }
}

impl Override {
    /// Make the change in `root`; an error names the part of the path that
    /// does not fit the file.
    pub fn apply(&self, root: &mut Node) -> Result<(), String> {
        let mut node = root;
        for (i, key) in self.path.iter().enumerate() {
            let here = || self.path[..i].join(".");
            let span = node.span;
            // An empty section (`defaults:`) or a key just added is a map
            // to be.
            if node.kind == NodeKind::Null {
                node.kind = NodeKind::Map(Vec::new());
            }
            node = match &mut node.kind {
                NodeKind::Map(entries) => child_of_map(entries, key, span),
                NodeKind::Seq(items) => {
                    let found = match key.parse::<usize>() {
                        Ok(n) => n,
                        Err(_) => items
                            .iter()
                            .position(|item| item_name(item) == Some(key.as_str()))
                            .ok_or_else(|| {
                                format!(
                                    "--set {}: `{}` has no item named `{key}`",
                                    self.text,
                                    here()
                                )
                            })?,
                    };
                    let len = items.len();
                    items.get_mut(found).ok_or_else(|| {
                        format!(
                            "--set {}: `{}` has {len} items, there is no item {found}",
                            self.text,
                            here()
                        )
                    })?
                }
                NodeKind::Scalar { .. } | NodeKind::Null => {
                    return Err(format!(
                        "--set {}: `{}` is a single value, it has no `{key}`",
                        self.text,
                        here()
                    ));
                }
            };
        }
        let span = node.span;
        let mut value = self.value.clone();
        respan(&mut value, span);
        *node = value;
        Ok(())
    }
}

/// The value of `key` in a map node, added (empty) when missing.
fn child_of_map<'a>(entries: &'a mut Vec<(Node, Node)>, key: &str, span: Span) -> &'a mut Node {
    let at = match entries.iter().position(|(k, _)| k.as_str() == Some(key)) {
        Some(at) => at,
        None => {
            let key_node = Node {
                kind: NodeKind::Scalar {
                    text: key.to_string(),
                    quoted: false,
                },
                span,
            };
            entries.push((key_node, Node::null(span)));
            entries.len() - 1
        }
    };
    &mut entries[at].1
}

fn item_name(item: &Node) -> Option<&str> {
    match &item.kind {
        NodeKind::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some("name"))
            .and_then(|(_, v)| v.as_str()),
        _ => None,
    }
}

/// The new value's positions are those of what it replaced: diagnostics
/// about it point at the place in the lab file that `--set` changed.
fn respan(node: &mut Node, span: Span) {
    node.span = span;
    match &mut node.kind {
        NodeKind::Seq(items) => items.iter_mut().for_each(|n| respan(n, span)),
        NodeKind::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            respan(k, span);
            respan(v, span);
        }),
        NodeKind::Null | NodeKind::Scalar { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::lab::{LoadOptions, load_str};

    const LAB: &str = "name: t\nvirthost: {local: true}\nimage: {build: debian-12}\n\
                       networks: [{name: lan, kind: nat, ipv4: 192.168.60.0/24}]\n\
                       defaults:\nvms:\n  - {name: a, memory: 4GiB}\n  - {name: b}\n";

    fn load(sets: &[&str]) -> crate::lab::load::Loaded {
        let overrides = sets.iter().map(|s| s.parse().unwrap()).collect();
        load_str(
            Path::new("t.yaml"),
            LAB,
            &LoadOptions {
                overrides,
                ..LoadOptions::default()
            },
        )
    }

    #[test]
    fn values_change_by_key_index_and_name() {
        let (lab, _) = load(&["defaults.cpus=1", "vms.a.memory=1GiB", "vms.1.cpus=3"]).unwrap();
        let a = lab.vm("a").unwrap();
        let b = lab.vm("b").unwrap();
        assert_eq!((a.cpus, a.memory_mib), (1, 1024));
        assert_eq!(b.cpus, 3);
    }

    #[test]
    fn a_bad_value_is_checked_like_the_file_and_the_override_named() {
        let diags = load(&["vms.a.memory=lots"]).unwrap_err();
        let text = format!("{diags:?}");
        assert!(text.contains("t.yaml"), "{text}");
        assert!(
            text.contains("the lab was read with --set vms.a.memory=lots"),
            "{text}"
        );
    }

    #[test]
    fn paths_that_do_not_fit_say_where() {
        let err = |s: &str| format!("{:?}", load(&[s]).unwrap_err());
        assert!(err("vms.c.cpus=1").contains("`vms` has no item named `c`"));
        assert!(err("vms.7.cpus=1").contains("`vms` has 2 items, there is no item 7"));
        assert!(err("name.x=1").contains("`name` is a single value, it has no `x`"));
        assert!(
            "nopath"
                .parse::<Override>()
                .unwrap_err()
                .contains("PATH=VALUE")
        );
        assert!(
            "a..b=1"
                .parse::<Override>()
                .unwrap_err()
                .contains("empty part")
        );
        assert!("a=[1".parse::<Override>().unwrap_err().contains("not YAML"));
    }
}
