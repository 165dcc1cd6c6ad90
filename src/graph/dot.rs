//! Graphviz `dot`: `kubelab graph LAB --format dot | dot -Tpng`.

use std::fmt::Write;

use super::{Topology, ident};

fn quote(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

pub fn render(t: &Topology) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "graph {} {{", quote(&t.lab));
    let _ = writeln!(
        out,
        "  rankdir=TB; node [fontname=\"monospace\", fontsize=10];"
    );
    let mut title = format!("lab {}", t.lab);
    if let Some(k) = &t.kubernetes {
        title.push_str(&format!("\n{k}"));
    }
    let _ = writeln!(out, "  label={}; labelloc=t;", quote(&title));
    let _ = writeln!(
        out,
        "  virthost [shape=box3d, label={}];",
        quote(&format!("virthost\n{}", t.virthost))
    );
    for n in &t.networks {
        let label = n.lines().join("\n");
        let id = ident("net", &n.name);
        let _ = writeln!(
            out,
            "  {id} [shape=box, style=rounded, label={}];",
            quote(&label)
        );
        let _ = writeln!(out, "  virthost -- {id};");
    }
    for vm in &t.vms {
        let label = vm.lines().join("\n");
        let id = ident("vm", &vm.name);
        let _ = writeln!(out, "  {id} [shape=box, label={}];", quote(&label));
        for nic in &vm.nics {
            let _ = writeln!(
                out,
                "  {id} -- {} [label={}];",
                ident("net", &nic.network),
                quote(&nic.addresses.join("\n"))
            );
        }
    }
    for l in &t.links {
        let _ = writeln!(
            out,
            "  {} -- {} [style=dashed, label={}, taillabel={}, headlabel={}];",
            ident("vm", &l.a.0),
            ident("vm", &l.b.0),
            quote(&l.label()),
            quote(&l.a.1),
            quote(&l.b.1)
        );
    }
    out.push_str("}\n");
    out
}
