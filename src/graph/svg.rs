//! The SVG kubelab lays out itself: self-contained (no script, no external
//! font or style), readable from 1 to 20 VMs and 1 to 6 networks.
//!
//! A bus diagram. Top left the virthost, its trunk running down the left
//! edge into every lab network; each network a horizontal bar across the
//! picture with its name, kind and prefixes at the left, beside the trunk;
//! below them the VMs in rows of at most five, coloured by role, each box
//! listing roles, size, disks, addresses per network, links and scenarios.
//! A VM of the first row reaches its networks with vertical lines from its
//! top; a VM further down runs a short line out of its left side into the
//! channel left of its column and up that channel, each line with its own
//! lane, so no line passes through a box. Links are listed under the VMs.
//! Every text is cut to the width it has, so nothing overlaps.

use std::fmt::Write;

use super::Topology;
use crate::markup::escape_xml;

/// Role → fill colour (also Mermaid's classes).
pub const ROLE_COLOURS: [(&str, &str); 5] = [
    ("control-plane", "#2f6db5"),
    ("worker", "#2e8b57"),
    ("lb", "#c7711a"),
    ("nat64", "#7b4fa8"),
    ("vm", "#5f6b76"),
];

/// Monospace text: a character is 0.6 of the font size wide.
pub const FONT: f64 = 12.0;
pub const CHAR_W: f64 = FONT * 0.6;
const LINE_H: f64 = 16.0;
const M: f64 = 24.0;
const BOX_W: f64 = 240.0;
const BAR_H: f64 = 8.0;
const NET_GAP: f64 = 46.0;
const ROW_GAP: f64 = 36.0;
const LANE: f64 = 7.0;
const COLUMNS: usize = 5;

fn colour(role: &str) -> &'static str {
    ROLE_COLOURS
        .iter()
        .find(|(r, _)| *r == role)
        .map_or("#5f6b76", |(_, c)| c)
}

/// `text` cut to `width` pixels, with an ellipsis when cut.
fn fit(text: &str, width: f64) -> String {
    let max = (width / CHAR_W).floor() as usize;
    let n = text.chars().count();
    if n <= max {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The lines a VM's box shows (the first is its name).
fn vm_lines(t: &Topology, i: usize) -> Vec<String> {
    let vm = &t.vms[i];
    let mut lines = vec![vm.name.clone()];
    if !vm.roles.is_empty() {
        lines.push(vm.roles.join(", "));
    }
    lines.push(vm.size());
    for d in &vm.disks {
        lines.push(format!("disk {d}"));
    }
    // One address a line, under the network's name.
    for nic in &vm.nics {
        let indent = " ".repeat(nic.network.chars().count() + 2);
        for (k, a) in nic.addresses.iter().enumerate() {
            if k == 0 {
                lines.push(format!("{}: {a}", nic.network));
            } else {
                lines.push(format!("{indent}{a}"));
            }
        }
        if nic.addresses.is_empty() {
            lines.push(format!("{}: no address", nic.network));
        }
    }
    for l in &t.links {
        if l.a.0 == vm.name {
            lines.push(format!("{} {} → {}:{}", l.a.1, l.label(), l.b.0, l.b.1));
        } else if l.b.0 == vm.name {
            lines.push(format!("{} {} → {}:{}", l.b.1, l.label(), l.a.0, l.a.1));
        }
    }
    for s in &vm.scenarios {
        lines.push(format!("scenario {s}"));
    }
    if let Some(state) = &vm.state {
        lines.push(format!("[{state}] {}", vm.live_addresses.join(" ")));
    }
    lines
}

pub fn render(t: &Topology) -> String {
    let n = t.vms.len();
    let cols = n.clamp(1, COLUMNS);
    let rows = n.div_ceil(cols).max(1);
    let max_nics = t.vms.iter().map(|v| v.nics.len()).max().unwrap_or(0);
    // The channel left of each column carries the lines of the VMs below
    // the first row of that column.
    let gap = 24.0 + LANE * ((rows - 1) * max_nics) as f64;

    let title = format!("lab {}", t.lab);
    let virthost = format!("virthost {}", t.virthost);
    let net_labels: Vec<Vec<String>> = t
        .networks
        .iter()
        .map(|net| {
            let mut first = format!("{} ({})", net.name, net.kind);
            if net.ipv4.is_none() && net.ipv6.is_none() {
                first.push_str(" no addresses");
            }
            let mut lines = vec![first];
            lines.extend(net.ipv4.iter().chain(&net.ipv6).cloned());
            lines
        })
        .collect();
    // The left panel: trunk, then the network labels.
    let trunk_x = M + 14.0;
    let label_x = trunk_x + 14.0;
    let label_w = net_labels
        .iter()
        .flatten()
        .map(|l| l.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(16, 34) as f64
        * CHAR_W;
    let grid_x = label_x + label_w + 16.0;

    let lines: Vec<Vec<String>> = (0..n).map(|i| vm_lines(t, i)).collect();
    let box_h = 12.0 + LINE_H * lines.iter().map(Vec::len).max().unwrap_or(1) as f64;

    let vh_w = (virthost.chars().count() as f64 * CHAR_W + 20.0).max(160.0);
    let vh_y = M + 34.0;
    let vh_h = 30.0;
    // Each network's label lines stand above its bar.
    let mut bars = Vec::new();
    let mut y = vh_y + vh_h + 20.0;
    for labels in &net_labels {
        y += LINE_H * labels.len() as f64 + 4.0;
        bars.push(y);
        y += BAR_H + NET_GAP - LINE_H;
    }
    let grid_y = y + 30.0;
    let col_x = |c: usize| grid_x + gap + c as f64 * (BOX_W + gap);
    let row_y = |r: usize| grid_y + r as f64 * (box_h + ROW_GAP);
    let width = (col_x(cols - 1) + BOX_W + M)
        .max(M * 2.0 + (title.chars().count() as f64) * CHAR_W * 1.3)
        .max(M + vh_w + M)
        .max(M * 2.0 + t.kubernetes.as_deref().map_or(0, |k| k.chars().count()) as f64 * CHAR_W);
    let links_y = row_y(rows) - ROW_GAP + 10.0;
    let height = links_y
        + if t.links.is_empty() {
            0.0
        } else {
            LINE_H * (t.links.len() + 1) as f64
        }
        + M;

    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" xml:space=\"preserve\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"DejaVu Sans Mono, Menlo, Consolas, monospace\" font-size=\"{FONT}\">"
    );
    let _ = writeln!(s, "<title>{}</title>", escape_xml(&title));
    let _ = writeln!(
        s,
        "<rect class=\"background\" x=\"0\" y=\"0\" width=\"{width:.0}\" height=\"{height:.0}\" fill=\"#ffffff\"/>"
    );
    let _ = writeln!(
        s,
        "<text class=\"title\" x=\"{M}\" y=\"{}\" font-size=\"{}\" font-weight=\"bold\">{}</text>",
        M + 6.0,
        FONT * 1.3,
        escape_xml(&title)
    );
    if let Some(k) = &t.kubernetes {
        let _ = writeln!(
            s,
            "<text class=\"subtitle\" x=\"{M}\" y=\"{}\" fill=\"#444\">{}</text>",
            M + 24.0,
            escape_xml(&fit(k, width - 2.0 * M))
        );
    }

    // Lines first, boxes and labels over them.
    if let Some(last) = bars.last() {
        let _ = writeln!(
            s,
            "<path class=\"trunk\" d=\"M{trunk_x} {} V{}\" stroke=\"#333\" stroke-width=\"3\" fill=\"none\"/>",
            vh_y + vh_h,
            last + BAR_H / 2.0
        );
    }
    for (i, bar) in bars.iter().enumerate() {
        let _ = writeln!(
            s,
            "<rect class=\"network\" data-name=\"{}\" x=\"{trunk_x}\" y=\"{bar}\" width=\"{:.1}\" height=\"{BAR_H}\" rx=\"3\" fill=\"#9aa7b4\"/>",
            escape_xml(&t.networks[i].name),
            width - M - trunk_x
        );
        for (k, line) in net_labels[i].iter().enumerate() {
            let ly = bar - 6.0 - LINE_H * (net_labels[i].len() - 1 - k) as f64;
            let weight = if k == 0 { " font-weight=\"bold\"" } else { "" };
            let _ = writeln!(
                s,
                "<text class=\"label\" x=\"{label_x}\" y=\"{ly}\"{weight}>{}</text>",
                escape_xml(&fit(line, label_w))
            );
        }
    }
    for (i, vm) in t.vms.iter().enumerate() {
        let (r, c) = (i / cols, i % cols);
        let (bx, by) = (col_x(c), row_y(r));
        for (k, nic) in vm.nics.iter().enumerate() {
            let Some(net) = t.networks.iter().position(|n| n.name == nic.network) else {
                continue;
            };
            let bar_mid = bars[net] + BAR_H / 2.0;
            // Where the line meets the bar: straight up from a first-row
            // box, else up the VM's own lane in the channel.
            let (end_x, d) = if r == 0 {
                let x = bx + 20.0 + 16.0 * k as f64;
                (x, format!("M{x} {by} V{bar_mid}"))
            } else {
                let lane = bx - gap + 10.0 + LANE * ((r - 1) * max_nics + k) as f64;
                let y = by + 10.0 + 6.0 * k as f64;
                (lane, format!("M{bx} {y} H{lane} V{bar_mid}"))
            };
            let _ = writeln!(
                s,
                "<path class=\"nic\" d=\"{d}\" stroke=\"#555\" stroke-width=\"1.5\" fill=\"none\"/><circle cx=\"{end_x}\" cy=\"{bar_mid}\" r=\"4\" fill=\"#333\"/>"
            );
        }
    }
    let _ = writeln!(
        s,
        "<rect class=\"virthost\" x=\"{M}\" y=\"{vh_y}\" width=\"{vh_w:.1}\" height=\"{vh_h}\" rx=\"4\" fill=\"#eef1f4\" stroke=\"#333\"/>"
    );
    let _ = writeln!(
        s,
        "<text class=\"label\" x=\"{}\" y=\"{}\" font-weight=\"bold\">{}</text>",
        M + 10.0,
        vh_y + 20.0,
        escape_xml(&virthost)
    );
    for (i, vm) in t.vms.iter().enumerate() {
        let (r, c) = (i / cols, i % cols);
        let (bx, by) = (col_x(c), row_y(r));
        let fill = colour(vm.main_role());
        let _ = writeln!(
            s,
            "<g class=\"vm\" data-name=\"{}\"><rect x=\"{bx}\" y=\"{by}\" width=\"{BOX_W}\" height=\"{box_h}\" rx=\"6\" fill=\"#ffffff\" stroke=\"{fill}\" stroke-width=\"2\"/><rect x=\"{bx}\" y=\"{by}\" width=\"{BOX_W}\" height=\"{}\" rx=\"6\" fill=\"{fill}\"/>",
            escape_xml(&vm.name),
            LINE_H + 6.0
        );
        for (k, line) in lines[i].iter().enumerate() {
            let (fill, weight) = if k == 0 {
                ("#ffffff", " font-weight=\"bold\"")
            } else {
                ("#222222", "")
            };
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" fill=\"{fill}\"{weight}>{}</text>",
                bx + 8.0,
                by + 16.0 + LINE_H * k as f64 + if k == 0 { 0.0 } else { 6.0 },
                escape_xml(&fit(line, BOX_W - 16.0))
            );
        }
        s.push_str("</g>\n");
    }
    if !t.links.is_empty() {
        let _ = writeln!(
            s,
            "<text class=\"label\" x=\"{M}\" y=\"{}\" font-weight=\"bold\">links</text>",
            links_y + LINE_H - 4.0
        );
        for (k, l) in t.links.iter().enumerate() {
            let text = format!("{}:{} ↔ {}:{}  {}", l.a.0, l.a.1, l.b.0, l.b.1, l.label());
            let _ = writeln!(
                s,
                "<text class=\"label\" x=\"{M}\" y=\"{}\">{}</text>",
                links_y + LINE_H * (k + 2) as f64 - 4.0,
                escape_xml(&fit(&text, width - 2.0 * M))
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
