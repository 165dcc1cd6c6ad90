//! Property tests over the lab parser and validator: whatever the input —
//! arbitrary bytes, YAML-looking noise, or valid labs with random edits —
//! loading never panics, every diagnostic names a file and a line, and
//! loading the same text twice gives the same result.
//!
//! Bounded so that it runs in CI in a few seconds; `scripts/fuzz.sh` runs
//! the cargo-fuzz target for as long as you like.

use std::path::Path;

use kubelab::lab::{LoadOptions, load_str};
use proptest::prelude::*;

const LAB_PATH: &str = "tests/labs/valid/fuzzed.yaml";

/// Load, check the invariants, and return a canonical rendering.
fn check(text: &str) -> Result<String, TestCaseError> {
    let result = load_str(Path::new(LAB_PATH), text, &LoadOptions::default());
    let (ok, diags) = match &result {
        Ok((_, w)) => (true, w),
        Err(e) => (false, e),
    };
    prop_assert!(ok || diags.has_errors(), "rejected without an error");
    let mut out = format!("{ok}\n");
    for d in &diags.0 {
        prop_assert!(
            !d.file.path.as_os_str().is_empty(),
            "diagnostic without a file: {}",
            d.message
        );
        // Everything but an unreadable inventory comes from YAML text and
        // has a position.
        if !d.message.starts_with("cannot read") {
            let span = d.span;
            prop_assert!(
                span.is_some_and(|s| s.start.line >= 1 && s.start.col >= 1),
                "diagnostic without a position: {} ({:?}) in\n{text}",
                d.message,
                span
            );
        }
        prop_assert!(!d.message.is_empty());
        out.push_str(&d.render(false));
    }
    Ok(out)
}

fn deterministic(text: &str) -> Result<(), TestCaseError> {
    let a = check(text)?;
    let b = check(text)?;
    prop_assert_eq!(a, b);
    Ok(())
}

/// Valid labs to mutate.
fn seeds() -> Vec<String> {
    let mut out = Vec::new();
    for dir in ["labs", "tests/labs/valid"] {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        paths.sort();
        for p in paths {
            out.push(std::fs::read_to_string(p).unwrap());
        }
    }
    out
}

/// Pieces of YAML and of lab files that edits splice in.
const TOKENS: &[&str] = &[
    ": ",
    "- ",
    "  ",
    "\n",
    "\t",
    "{",
    "}",
    "[",
    "]",
    ",",
    "&a ",
    "*a",
    "<<: *a",
    "!!str ",
    "'",
    "\"",
    "#",
    "|",
    ">",
    "~",
    "null",
    "true",
    "0",
    "-1",
    "1.5",
    "99999999999999999999",
    "1GiB",
    "10X",
    "name: x",
    "vms:",
    "networks:",
    "- name: n",
    "ipv4: 10.0.0.0/8",
    "ipv6: fd00::/64",
    "roles: [control-plane]",
    "kubernetes: {}",
    "count: 3",
    "{1..3}",
    "nics:",
    "network: lan",
    "ipv4: 192.168.150.10",
    "scenarios:",
    "- name: overlay",
    "virthost: local",
    "é",
    "\u{0}",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "? ",
    "@",
    "`",
    "0.0.0.0/32",
    "255.255.255.255",
    "255.255.255.255/32",
    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
    "\"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff\"",
    "::/0",
    "0.0.0.0/0",
    "4294967295",
    "18446744073709551615",
    "{0..99}",
    "{4294967294..4294967295}",
    "16EiB",
    "18446744073709551615T",
];

#[derive(Clone, Debug)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    Insert(usize, usize),
    ReplaceChar(usize, char),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, t)| Edit::Insert(at, t)),
        (any::<usize>(), any::<char>()).prop_map(|(at, c)| Edit::ReplaceChar(at, c)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, e: &Edit) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    let chars: Vec<char> = text.chars().collect();
    match *e {
        Edit::DeleteLine(i) if !lines.is_empty() => {
            lines.remove(i % lines.len());
            lines.join("\n")
        }
        Edit::DuplicateLine(i) if !lines.is_empty() => {
            let i = i % lines.len();
            lines.insert(i, lines[i]);
            lines.join("\n")
        }
        Edit::SwapLines(a, b) if !lines.is_empty() => {
            let n = lines.len();
            lines.swap(a % n, b % n);
            lines.join("\n")
        }
        Edit::Insert(at, t) => {
            let at = at % (chars.len() + 1);
            let mut s: String = chars[..at].iter().collect();
            s.push_str(TOKENS[t]);
            s.extend(&chars[at..]);
            s
        }
        Edit::ReplaceChar(at, c) if !chars.is_empty() => {
            let mut c2 = chars.clone();
            c2[at % chars.len()] = c;
            c2.into_iter().collect()
        }
        Edit::Truncate(at) => chars[..at % (chars.len() + 1)].iter().collect(),
        _ => text.to_string(),
    }
}

/// `cases` per property, or `PROPTEST_CASES` from the environment for a
/// longer run.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        // Shrunk failures are printed; nothing is written next to the tests.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        deterministic(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn yaml_looking_text(text in "([a-z_]{1,8}|[:\\-\\[\\]{}, \n#&*!|>'\"~.0-9]|  |\n  - ){0,80}") {
        deterministic(&text)?;
    }

    #[test]
    fn edited_valid_labs(
        seed in 0usize..64,
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let seeds = seeds();
        let mut text = seeds[seed % seeds.len()].clone();
        for e in &edits {
            text = apply(&text, e);
        }
        deterministic(&text)?;
    }
}

#[test]
fn the_seeds_are_valid() {
    for s in seeds() {
        let r = load_str(Path::new(LAB_PATH), &s, &LoadOptions::default());
        assert!(r.is_ok(), "{s}");
    }
}
