//! Mermaid (`flowchart`), for Markdown pages that render it.

use std::fmt::Write;

use super::{Topology, ident};

/// Mermaid's quoted labels take no `"`; line breaks are `<br/>`.
fn text(s: &str) -> String {
    s.replace('"', "'")
}

pub fn render(t: &Topology) -> String {
    let mut out = String::from("flowchart TB\n");
    let mut title = format!("virthost {}", t.virthost);
    if let Some(k) = &t.kubernetes {
        title.push_str(&format!("<br/>{k}"));
    }
    let _ = writeln!(out, "  virthost[[\"{}\"]]", text(&title));
    for n in &t.networks {
        let label = n.lines().join("<br/>");
        let id = ident("net", &n.name);
        let _ = writeln!(out, "  {id}([\"{}\"])", text(&label));
        let _ = writeln!(out, "  virthost --- {id}");
    }
    for vm in &t.vms {
        let label = vm.lines().join("<br/>");
        let id = ident("vm", &vm.name);
        let _ = writeln!(out, "  {id}[\"{}\"]", text(&label));
        for nic in &vm.nics {
            let _ = writeln!(
                out,
                "  {id} ---|\"{}\"| {}",
                text(&nic.addresses.join("<br/>")),
                ident("net", &nic.network)
            );
        }
    }
    for l in &t.links {
        let _ = writeln!(
            out,
            "  {} -.-|\"{}:{} {} {}:{}\"| {}",
            ident("vm", &l.a.0),
            text(&l.a.0),
            text(&l.a.1),
            text(&l.label()),
            text(&l.b.0),
            text(&l.b.1),
            ident("vm", &l.b.0)
        );
    }
    for vm in &t.vms {
        let _ = writeln!(
            out,
            "  class {} {}",
            ident("vm", &vm.name),
            ident("role", vm.main_role())
        );
    }
    for (role, colour) in super::svg::ROLE_COLOURS {
        let _ = writeln!(
            out,
            "  classDef {} fill:{colour},color:#fff",
            ident("role", role)
        );
    }
    out
}
