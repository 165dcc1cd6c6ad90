//! Any bytes as an Ansible INI inventory: the parser must not panic, and
//! every error and item has a position inside the text.
#![no_main]

use kubelab::import::ini;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count().max(1) as u32;
    match ini::parse(&text) {
        Ok(sections) => {
            for s in &sections {
                for h in &s.hosts {
                    assert!((1..=lines).contains(&h.name.span.start.line));
                    for (k, v) in &h.vars {
                        assert!(k.span.start.line >= 1 && v.span.start.col >= 1);
                    }
                }
            }
        }
        Err(e) => {
            let s = e.span.expect("INI error without a position");
            assert!((1..=lines).contains(&s.start.line), "{}: {s:?}", e.message);
        }
    }
});
