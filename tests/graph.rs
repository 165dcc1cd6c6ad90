//! `kubelab graph`: the dot and Mermaid text of every shipped lab
//! (snapshots), and the SVG of every shipped lab and of labs of 1 to 20
//! VMs on 1 to 6 networks, checked as a picture: valid XML, every VM and
//! network drawn, no two boxes, bars or texts overlapping, every text of a
//! VM inside its box.

use std::path::Path;

use kubelab::graph::{Topology, dot, mermaid, svg};
use kubelab::lab::{Lab, LoadOptions, load, load_str};

fn shipped() -> Vec<(String, Lab)> {
    let mut labs: Vec<_> = std::fs::read_dir("labs")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    labs.sort();
    labs.into_iter()
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let (lab, _) =
                load(&p, &LoadOptions::default()).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            (name, lab)
        })
        .collect()
}

#[test]
fn dot_and_mermaid_of_every_shipped_lab() {
    for (name, lab) in shipped() {
        let t = Topology::of(&lab, None);
        insta::assert_snapshot!(format!("graph-dot-{name}"), dot::render(&t));
        insta::assert_snapshot!(format!("graph-mermaid-{name}"), mermaid::render(&t));
    }
}

#[derive(Debug, Clone, Copy)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
}

impl Rect {
    fn overlaps(&self, o: &Rect) -> bool {
        self.x < o.x + o.w && o.x < self.x + self.w && self.y < o.y + o.h && o.y < self.y + self.h
    }
    fn contains(&self, o: &Rect) -> bool {
        o.x >= self.x
            && o.y >= self.y
            && o.x + o.w <= self.x + self.w
            && o.y + o.h <= self.y + self.h
    }
}

fn num(n: roxmltree::Node, attr: &str) -> f64 {
    n.attribute(attr)
        .unwrap_or_else(|| panic!("{attr} missing"))
        .parse()
        .unwrap()
}

fn rect_of(n: roxmltree::Node) -> Rect {
    Rect {
        x: num(n, "x"),
        y: num(n, "y"),
        w: num(n, "width"),
        h: num(n, "height"),
    }
}

/// A text's box: monospace, baseline at y.
fn text_box(n: roxmltree::Node) -> Rect {
    let size = n
        .attribute("font-size")
        .map_or(svg::FONT, |s| s.parse().unwrap());
    let chars = n.text().unwrap_or("").chars().count() as f64;
    Rect {
        x: num(n, "x"),
        y: num(n, "y") - size,
        w: chars * size * 0.6,
        h: size + 3.0,
    }
}

/// Draw `lab` and check the picture.
fn check_picture(name: &str, lab: &Lab) {
    let t = Topology::of(lab, None);
    let text = svg::render(&t);
    let doc = roxmltree::Document::parse(&text).unwrap_or_else(|e| panic!("{name}: not XML: {e}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    let (width, height) = (num(root, "width"), num(root, "height"));
    let page = Rect {
        x: 0.0,
        y: 0.0,
        w: width,
        h: height,
    };
    assert!(
        !text.contains("<script") && !text.contains("href"),
        "{name}: not self-contained"
    );

    let class = |n: &roxmltree::Node, c: &str| n.attribute("class") == Some(c);
    let vms: Vec<roxmltree::Node> = root.descendants().filter(|n| class(n, "vm")).collect();
    let names: Vec<&str> = vms
        .iter()
        .map(|g| g.attribute("data-name").unwrap())
        .collect();
    let wanted: Vec<&str> = lab.vms.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, wanted, "{name}: VMs drawn");
    let bars: Vec<roxmltree::Node> = root.descendants().filter(|n| class(n, "network")).collect();
    let bar_names: Vec<&str> = bars
        .iter()
        .map(|b| b.attribute("data-name").unwrap())
        .collect();
    let nets: Vec<&str> = lab.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(bar_names, nets, "{name}: networks drawn");

    let boxes: Vec<Rect> = vms
        .iter()
        .map(|g| rect_of(g.children().find(|c| c.has_tag_name("rect")).unwrap()))
        .collect();
    let virthost = rect_of(root.descendants().find(|n| class(n, "virthost")).unwrap());
    let mut solids: Vec<(String, Rect)> = vec![("virthost".into(), virthost)];
    solids.extend(
        names
            .iter()
            .zip(&boxes)
            .map(|(n, r)| (format!("vm {n}"), *r)),
    );
    solids.extend(
        bar_names
            .iter()
            .map(|n| n.to_string())
            .zip(bars.iter().map(|b| rect_of(*b)))
            .map(|(n, r)| (format!("network {n}"), r)),
    );
    for (i, (a, ra)) in solids.iter().enumerate() {
        assert!(page.contains(ra), "{name}: {a} leaves the picture");
        for (b, rb) in &solids[i + 1..] {
            assert!(!ra.overlaps(rb), "{name}: {a} and {b} overlap");
        }
    }
    // Texts: a VM's inside its box, every other one clear of every box
    // and bar; no two texts on each other.
    let mut texts: Vec<(String, Rect)> = Vec::new();
    for n in root.descendants().filter(|n| n.has_tag_name("text")) {
        let r = text_box(n);
        let label = n.text().unwrap_or("").to_string();
        assert!(
            page.contains(&r),
            "{name}: text {label:?} leaves the picture"
        );
        match n.ancestors().find(|a| class(a, "vm")) {
            Some(g) => {
                let i = vms.iter().position(|v| *v == g).unwrap();
                assert!(
                    boxes[i].contains(&r),
                    "{name}: {label:?} leaves {}'s box",
                    names[i]
                );
            }
            None => {
                for (what, s) in &solids {
                    assert!(
                        !r.overlaps(s) || (what == "virthost" && virthost.contains(&r)),
                        "{name}: {label:?} overlaps {what}"
                    );
                }
            }
        }
        texts.push((label, r));
    }
    for (i, (a, ra)) in texts.iter().enumerate() {
        for (b, rb) in &texts[i + 1..] {
            assert!(!ra.overlaps(rb), "{name}: texts {a:?} and {b:?} overlap");
        }
    }
}

#[test]
fn every_shipped_lab_is_drawn_without_overlaps() {
    for (name, lab) in shipped() {
        check_picture(&name, &lab);
    }
}

/// A lab of `vms` VMs on `networks` networks (every VM on every network,
/// static addresses on the first, a spare disk, a link between
/// neighbours).
fn sized_lab(vms: usize, networks: usize) -> Lab {
    let mut text = String::from(
        "name: sized\nvirthost: {local: true}\nimage: {build: debian-12}\nnetworks:\n",
    );
    for n in 0..networks {
        text.push_str(&format!(
            "  - {{name: net-{n}, kind: {}, ipv4: 10.{n}.0.0/24, ipv6: \"fd00:{n}::/64\"}}\n",
            if n == 0 { "nat" } else { "isolated" }
        ));
    }
    text.push_str("vms:\n");
    for v in 0..vms {
        let nics: Vec<String> = (0..networks)
            .map(|n| {
                if n == 0 {
                    format!(
                        "{{network: net-0, ipv4: 10.0.0.{}, ipv6: \"fd00:0::{}\"}}",
                        v + 10,
                        v + 10
                    )
                } else {
                    format!("{{network: net-{n}}}")
                }
            })
            .collect();
        text.push_str(&format!(
            "  - {{name: vm-{v}, roles: [{}], spare_disks: [{{size: 10GiB}}], nics: [{}]}}\n",
            if v == 0 { "control-plane" } else { "worker" },
            nics.join(", ")
        ));
    }
    if vms > 1 {
        text.push_str(
            "links:\n  - endpoints: [{vm: vm-0, ifname: lk0}, {vm: vm-1, ifname: lk0}]\n  - endpoints: [{vm: vm-0, netns: a, ifname: x}, {vm: vm-0, netns: b, ifname: x}]\n",
        );
    }
    match load_str(Path::new("sized.yaml"), &text, &LoadOptions::default()) {
        Ok((lab, _)) => lab,
        Err(e) => panic!("{e:?}\n{text}"),
    }
}

#[test]
fn one_to_twenty_vms_on_one_to_six_networks() {
    for vms in [1, 2, 5, 6, 11, 20] {
        for networks in [1, 3, 6] {
            check_picture(
                &format!("{vms} VMs, {networks} networks"),
                &sized_lab(vms, networks),
            );
        }
    }
}

/// The README's picture is what `kubelab graph` draws today
/// (`kubelab graph labs/ipv6.yaml -o docs/graph-ipv6.svg` renews it).
#[test]
fn the_readme_picture_is_current() {
    let (_, lab) = shipped().into_iter().find(|(n, _)| n == "ipv6").unwrap();
    let drawn = svg::render(&Topology::of(&lab, None));
    let committed = std::fs::read_to_string("docs/graph-ipv6.svg").unwrap();
    assert!(
        drawn == committed,
        "docs/graph-ipv6.svg is stale: kubelab graph labs/ipv6.yaml -o docs/graph-ipv6.svg"
    );
}
