//! The kubelab binary end to end: exit codes, locations on stderr, JSON
//! lines, colour, and the schemas.

use std::process::{Command, Output};

fn kubelab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubelab"))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run kubelab")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const INVALID: &str = "tests/labs/invalid/memory-unknown-unit.yaml";
const MANY: &str = "tests/labs/invalid/many-errors.yaml";
const VALID: &str = "tests/labs/valid/minimal-local.yaml";

#[test]
fn invalid_lab_exits_1_with_location_on_stderr() {
    let o = kubelab(&["--color", "never", "validate", INVALID]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert!(err.contains(&format!(" --> {INVALID}:13:13\n")), "{err}");
    assert!(
        err.contains("error: memory: `10X`: unknown unit `X`"),
        "{err}"
    );
    assert!(err.contains(&format!("{INVALID}: 1 error")), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn many_errors_are_all_reported() {
    let o = kubelab(&["--color", "never", "validate", MANY]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert_eq!(err.matches("error: ").count(), 13, "{err}");
    assert!(err.contains(&format!("{MANY}: 13 errors")), "{err}");
}

#[test]
fn valid_lab_exits_0() {
    let o = kubelab(&["--color", "never", "validate", VALID]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).starts_with(&format!("{VALID}: valid: lab `tiny`")));
    assert!(o.stderr.is_empty());
}

#[test]
fn one_invalid_among_several_fails_the_run() {
    let o = kubelab(&["--color", "never", "validate", VALID, INVALID]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stdout).contains("valid: lab `tiny`"));
}

#[test]
fn json_is_one_object_per_line() {
    let o = kubelab(&["--json", "validate", MANY, VALID]);
    assert_eq!(o.status.code(), Some(1));
    let out = text(&o.stdout);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.iter().all(serde_json::Value::is_object));
    let diags: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["event"] == "diagnostic")
        .collect();
    assert_eq!(diags.len(), 13);
    assert!(
        diags
            .iter()
            .all(|d| d["file"] == MANY && d["line"].as_u64() > Some(0))
    );
    let done: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["event"] == "validated").collect();
    assert_eq!(done.len(), 2);
    assert_eq!(done[0]["valid"], false);
    assert_eq!(done[0]["errors"], 13);
    assert_eq!(done[1]["valid"], true);
}

#[test]
fn colour_only_when_asked() {
    let always = kubelab(&["--color", "always", "validate", INVALID]);
    assert!(text(&always.stderr).contains("\x1b["));
    let never = kubelab(&["--color", "never", "validate", INVALID]);
    assert!(!text(&never.stderr).contains('\x1b'));
    let no_color = Command::new(env!("CARGO_BIN_EXE_kubelab"))
        .args(["validate", INVALID])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!text(&no_color.stderr).contains('\x1b'));
    assert_eq!(no_color.status.code(), Some(1));
}

#[test]
fn missing_lab_file() {
    let o = kubelab(&[
        "--color",
        "never",
        "validate",
        "tests/labs/does-not-exist.yaml",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("cannot read tests/labs/does-not-exist.yaml"));
}

/// The schemas are committed where the shipped files' yaml-language-server
/// lines point; they must be what the binary prints.
fn same_as_committed(schema: &str, path: &str) {
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == schema,
        "{path} is not what `kubelab schema` prints; regenerate it with \
         `cargo run -q -- schema {} > {path}`",
        if path.contains("inventory") {
            "inventory"
        } else {
            "lab"
        }
    );
}

/// Every shipped file of `dir` tells editors where its schema is, and the
/// schema is there.
fn point_at_schema(dir: &str, schema: &str) {
    let wanted = format!("# yaml-language-server: $schema={schema}");
    assert!(std::path::Path::new(dir).join(schema).is_file(), "{schema}");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().next(),
            Some(wanted.as_str()),
            "{}",
            path.display()
        );
    }
}

#[test]
fn schema_of_labs() {
    let o = kubelab(&["schema"]);
    assert!(o.status.success());
    let schema = text(&o.stdout);
    same_as_committed(&schema, "schema/lab.schema.json");
    point_at_schema("labs", "../schema/lab.schema.json");
    let v: serde_json::Value = serde_json::from_str(&schema).unwrap();
    let mut props: Vec<&str> = v["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    props.sort();
    let mut sections = kubelab::lab::load::section_names();
    sections.sort();
    assert_eq!(props, sections);
}

#[test]
fn schema_of_inventories() {
    let o = kubelab(&["schema", "inventory"]);
    assert!(o.status.success());
    let schema = text(&o.stdout);
    same_as_committed(&schema, "schema/inventory.schema.json");
    point_at_schema("inventories", "../schema/inventory.schema.json");
    // Every shipped inventory only uses properties the schema has.
    let v: serde_json::Value = serde_json::from_str(&schema).unwrap();
    let props = v["properties"].as_object().unwrap();
    for entry in std::fs::read_dir("inventories").unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let node = kubelab::yaml::parse(&text).unwrap();
        for (k, _) in node.as_map().unwrap() {
            let k = k.as_str().unwrap();
            assert!(props.contains_key(k), "{}: {k}", path.display());
        }
    }
}

#[test]
fn lab_commands_exit_2_on_an_invalid_lab() {
    for cmd in ["up", "plan", "down", "status", "doctor"] {
        let o = kubelab(&["--color", "never", cmd, INVALID]);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("invalid lab"), "{cmd}");
    }
}

#[test]
fn lab_commands_exit_3_when_the_virthost_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    // a port nothing listens on: bind, read the port, close
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let key = dir.path().join("id");
    std::fs::write(&key, "not a key").unwrap();
    let lab = dir.path().join("far.yaml");
    std::fs::write(
        &lab,
        format!(
            "name: far\nvirthost: {{address: 127.0.0.1, port: {port}, user: root, identity_file: {}, known_hosts: {}}}\n\
             image: {{build: debian-12}}\nnetworks:\n  - {{name: lan, ipv4: 10.77.0.0/24}}\nvms:\n  - {{name: a}}\n",
            key.display(),
            dir.path().join("kh").display()
        ),
    )
    .unwrap();
    for cmd in ["up", "down", "doctor"] {
        let o = Command::new(env!("CARGO_BIN_EXE_kubelab"))
            .env("KUBELAB_STATE_DIR", dir.path().join("state"))
            .args(["--color", "never", cmd])
            .arg(&lab)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{cmd}: {}", text(&o.stderr));
        assert!(
            text(&o.stderr).contains("unreachable"),
            "{cmd}: {}",
            text(&o.stderr)
        );
    }
}

/// A lab over two virthosts, neither answering: `up` fails naming the
/// virthost it could not reach; `down` cleans what it can (nothing here)
/// and names every virthost it could not reach; both exit 3.
#[test]
fn lab_over_virthosts_names_those_it_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let key = dir.path().join("id");
    std::fs::write(&key, "not a key").unwrap();
    let entry = |name: &str, port: u16| {
        format!(
            "  - {{name: {name}, address: 127.0.0.1, tunnel_address: 127.0.0.1, port: {port}, user: root, identity_file: {}, known_hosts: {}}}\n",
            key.display(),
            dir.path().join("kh").display()
        )
    };
    let lab = dir.path().join("far.yaml");
    std::fs::write(
        &lab,
        format!(
            "name: far\nvirthosts:\n{}{}image: {{build: debian-12}}\nnetworks:\n  - {{name: lan, ipv4: 10.77.0.0/24}}\nvms:\n  - {{name: a, virthost: rack-a}}\n  - {{name: b, virthost: rack-b}}\n",
            entry("rack-a", ports[0]),
            entry("rack-b", ports[1])
        ),
    )
    .unwrap();
    let run = |cmd: &str| {
        Command::new(env!("CARGO_BIN_EXE_kubelab"))
            .env("KUBELAB_STATE_DIR", dir.path().join("state"))
            .args(["--color", "never", cmd])
            .arg(&lab)
            .output()
            .unwrap()
    };
    let up = run("up");
    assert_eq!(up.status.code(), Some(3), "{}", text(&up.stderr));
    assert!(
        text(&up.stderr).contains("virthost rack-a: "),
        "{}",
        text(&up.stderr)
    );
    let down = run("down");
    assert_eq!(down.status.code(), Some(3), "{}", text(&down.stderr));
    let err = text(&down.stderr);
    assert!(err.contains("down of lab far incomplete"), "{err}");
    assert!(
        err.contains("virthost rack-a: ") && err.contains("virthost rack-b: "),
        "{err}"
    );

    // ls over both: each named, one error event each, no table.
    let refs: Vec<String> = ports
        .iter()
        .map(|p| format!("root@127.0.0.1:{p}"))
        .collect();
    let ls = Command::new(env!("CARGO_BIN_EXE_kubelab"))
        .args([
            "--json",
            "ls",
            "--virthost",
            &refs[0],
            "--virthost",
            &refs[1],
        ])
        .output()
        .unwrap();
    assert_eq!(ls.status.code(), Some(3), "{}", text(&ls.stderr));
    let err = text(&ls.stderr);
    for r in &refs {
        assert!(err.contains(&format!("error: ls: virthost {r}: ")), "{err}");
    }
    let events: Vec<serde_json::Value> = text(&ls.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{events:?}");
    for (e, r) in events.iter().zip(&refs) {
        assert_eq!(
            (&e["event"], &e["virthost"]),
            (&"error".into(), &r.as_str().into())
        );
    }
}

#[test]
fn ssh_on_a_lab_that_is_not_up_says_to_bring_it_up() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["ssh", VALID, "node-1"][..],
        &["ssh", VALID, "node-1", "--", "true"],
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_kubelab"))
            .env("KUBELAB_STATE_DIR", dir.path())
            .args(args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        let err = text(&o.stderr);
        assert!(err.contains("lab tiny is not up"), "{err}");
        assert!(err.contains("run `kubelab up "), "{err}");
    }
}

/// `play` resolves a playbook by name among the built-ins, and a
/// `--playbook-dir` entry of that name wins over the built-in one.
#[test]
fn play_finds_playbooks_by_name_and_playbook_dir_wins() {
    let dir = tempfile::tempdir().unwrap();
    // A host that refuses at once: the run gets as far as loading the playbook.
    let inventory = dir.path().join("hosts.ini");
    std::fs::write(&inventory, "h1 ansible_host=127.0.0.1 ansible_port=1\n").unwrap();
    let inv = inventory.to_str().unwrap();
    let state = dir.path().join("state");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kubelab"))
            .env("KUBELAB_STATE_DIR", &state)
            .args(args)
            .output()
            .unwrap()
    };

    let unknown = run(&["play", "no-such-book", "-i", inv]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown.stderr));
    assert!(
        text(&unknown.stderr).contains("nodeprep-bench.yaml"),
        "{}",
        text(&unknown.stderr)
    );

    // The built-in loads (the host is unreachable: exit 3, not 2).
    let builtin = run(&["play", "nodeprep-bench", "-i", inv]);
    assert_eq!(builtin.status.code(), Some(3), "{}", text(&builtin.stderr));

    // An override of the same name is used instead: its error names its file.
    let books = dir.path().join("books");
    std::fs::create_dir(&books).unwrap();
    std::fs::write(
        books.join("nodeprep-bench.yaml"),
        "- name: x\n  hosts: all\n  stepz: []\n",
    )
    .unwrap();
    let overridden = run(&[
        "--playbook-dir",
        books.to_str().unwrap(),
        "play",
        "nodeprep-bench",
        "-i",
        inv,
    ]);
    assert_eq!(
        overridden.status.code(),
        Some(2),
        "{}",
        text(&overridden.stderr)
    );
    let err = text(&overridden.stderr);
    assert!(err.contains("books/nodeprep-bench.yaml:3:3"), "{err}");
}

#[test]
fn man_pages_for_the_program_and_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("man1");
    let o = kubelab(&["man", man1.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let page =
        |name: &str| std::fs::read_to_string(man1.join(format!("{name}.1"))).unwrap_or_default();
    assert!(
        page("kubelab").contains(".TH kubelab 1"),
        "{}",
        page("kubelab")
    );
    for command in [
        "up",
        "down",
        "plan",
        "status",
        "ssh",
        "verify",
        "import-ansible",
        "man",
    ] {
        let p = page(&format!("kubelab-{command}"));
        assert!(
            p.contains(&format!(".TH kubelab-{command} 1")),
            "kubelab-{command}.1: {p}"
        );
    }
    assert!(page("kubelab-up").contains("LAB"), "{}", page("kubelab-up"));

    // A directory that cannot be made: exit 1 and why.
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let o = kubelab(&["man", file.join("man1").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("cannot write the manual pages"),
        "{}",
        text(&o.stderr)
    );
}
