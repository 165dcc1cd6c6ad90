//! The validator corpus: every broken lab under `tests/labs/invalid/` says
//! in its header exactly which diagnostics it must produce, and every lab
//! under `tests/labs/valid/` must load.
//!
//! Header lines (before the YAML):
//!
//! ```text
//! # expect: 13:13 memory: `10X`: unknown unit `X` (use MiB, GiB, TiB, or M, G, T)
//! #   help: text of the help line of the diagnostic above, if it has one
//! # expect: inventories/broken.yaml:3:1 message in another file (path relative to the lab)
//! # warning: 13:11 a warning the lab must also produce
//! ```
//!
//! The loader's diagnostics must equal the expectations exactly: same
//! files, lines, columns, messages and helps, in the same order, no more.

use std::path::{Path, PathBuf};

use kubelab::diagnostic::{Diagnostic, Severity};
use kubelab::lab::{LoadOptions, load};

fn labs_in(dir: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    out.sort();
    out
}

/// One diagnostic in the canonical text form used on both sides.
fn canonical(lab: &Path, d: &Diagnostic) -> String {
    let kind = match d.severity {
        Severity::Error => "expect",
        Severity::Warning => "warning",
    };
    let dir = lab.parent().unwrap_or(Path::new(""));
    let file = if d.file.path == lab {
        None
    } else {
        Some(
            d.file
                .path
                .strip_prefix(dir)
                .unwrap_or(&d.file.path)
                .display()
                .to_string(),
        )
    };
    let pos = d
        .span
        .filter(|s| s.start.line > 0)
        .map(|s| format!("{}:{}", s.start.line, s.start.col));
    let loc = match (file, pos) {
        (None, Some(p)) => p,
        (Some(f), Some(p)) => format!("{f}:{p}"),
        (Some(f), None) => f,
        (None, None) => "-".into(),
    };
    let mut s = format!("{kind}: {loc} {}", d.message);
    if let Some(h) = &d.help {
        s.push_str(&format!("\n  help: {h}"));
    }
    s
}

/// The expectations in a lab's header comment.
fn expectations(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# expect: ") {
            out.push(format!("expect: {rest}"));
        } else if let Some(rest) = line.strip_prefix("# warning: ") {
            out.push(format!("warning: {rest}"));
        } else if let Some(rest) = line.strip_prefix("#   help: ") {
            let last = out
                .last_mut()
                .unwrap_or_else(|| panic!("`help:` before any `expect:` in:\n{text}"));
            last.push_str(&format!("\n  help: {rest}"));
        }
    }
    out
}

fn load_canonical(lab: &Path) -> (bool, Vec<String>) {
    match load(lab, &LoadOptions::default()) {
        Ok((_, warnings)) => (true, warnings.0.iter().map(|d| canonical(lab, d)).collect()),
        Err(diags) => (false, diags.0.iter().map(|d| canonical(lab, d)).collect()),
    }
}

#[test]
fn invalid_labs_produce_exactly_the_expected_diagnostics() {
    let labs = labs_in("tests/labs/invalid");
    assert!(labs.len() >= 40, "only {} invalid labs", labs.len());
    let mut failures = Vec::new();
    for lab in &labs {
        let text = std::fs::read_to_string(lab).unwrap();
        let expected = expectations(&text);
        assert!(
            expected.iter().any(|e| e.starts_with("expect: ")),
            "{} expects no error",
            lab.display()
        );
        let (ok, actual) = load_canonical(lab);
        if ok || actual != expected {
            failures.push(format!(
                "{}:\n  expected:\n    {}\n  actual ({}):\n    {}",
                lab.display(),
                expected.join("\n    "),
                if ok { "loaded" } else { "rejected" },
                actual.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn valid_labs_load_with_only_the_expected_warnings() {
    let labs = labs_in("tests/labs/valid");
    assert!(labs.len() >= 8, "only {} valid labs", labs.len());
    for lab in &labs {
        let text = std::fs::read_to_string(lab).unwrap();
        let expected = expectations(&text);
        let (ok, actual) = load_canonical(lab);
        assert!(
            ok,
            "{} does not load:\n{}",
            lab.display(),
            actual.join("\n")
        );
        assert_eq!(actual, expected, "{}", lab.display());
    }
}

#[test]
fn the_shipped_labs_validate() {
    let labs = labs_in("labs");
    assert!(!labs.is_empty());
    for lab in &labs {
        let (ok, diags) = load_canonical(lab);
        assert!(ok, "{}:\n{}", lab.display(), diags.join("\n"));
    }
}

#[test]
fn the_corpus_parser_reads_helps_and_other_files() {
    let e = expectations(
        "# what\n# expect: 1:2 a\n#   help: b\n# expect: inventories/x.yaml:3:4 c\n# warning: 5:6 d\nname: x\n",
    );
    assert_eq!(
        e,
        [
            "expect: 1:2 a\n  help: b",
            "expect: inventories/x.yaml:3:4 c",
            "warning: 5:6 d"
        ]
    );
}
