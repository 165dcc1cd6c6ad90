//! Any bytes as a lab file: loading must not panic, every diagnostic has a
//! file and (unless a file could not be read) a position, and loading is
//! deterministic.
#![no_main]

use std::path::Path;

use kubelab::lab::{LoadOptions, load_str};
use libfuzzer_sys::fuzz_target;

fn render(text: &str) -> String {
    let opts = LoadOptions::default();
    let (ok, diags) = match load_str(Path::new("fuzz/lab.yaml"), text, &opts) {
        Ok((_, warnings)) => (true, warnings),
        Err(errors) => (false, errors),
    };
    assert!(ok || diags.has_errors(), "rejected without an error");
    let mut out = format!("{ok}\n");
    for d in &diags.0 {
        assert!(!d.file.path.as_os_str().is_empty());
        if !d.message.starts_with("cannot read") {
            let s = d.span.expect("diagnostic without a position");
            assert!(s.start.line >= 1 && s.start.col >= 1, "{}: {s:?}", d.message);
        }
        out.push_str(&d.render(false));
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    assert_eq!(render(&text), render(&text), "load is not deterministic");
});
