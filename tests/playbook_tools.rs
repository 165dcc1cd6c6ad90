//! Every program a shipped playbook runs on a host is installed there
//! before it runs (issue 17): by the base image `build: debian-12` makes
//! (templates/virthost/build-image-debian.sh), or by a `package:` step (or
//! an `apt-get install` command) earlier in the same playbook or in a
//! playbook that always runs before it. The test bed's image pre-installs
//! every package the stages use (tests/labs/e2e/testbed.yaml), so a missing
//! install step shows only on a plain image; this test finds it without one.
//!
//! The programs of a step: `command` argv (and `sh -c SCRIPT`, `sh FILE`
//! of a script a `template:` step wrote), `shell` scripts, `unless` and
//! `wait_for` commands, the `Exec…=` lines of systemd units a `template:`
//! step writes, and what kubelab's own modules run on the host
//! (src/apply). Scripts are read as POSIX sh: every simple command, looking
//! into `$(…)`, backticks, `sh -c`, `eval` and through wrappers (`env`,
//! `timeout`, `sudo`, `nsenter`, `ip netns exec`, `xargs`…). Commands run
//! inside a container or pod (`podman exec`, `kubectl exec`) are the
//! image's business, not the host's.
//!
//! Each program is looked up in [`PROGRAMS`] (program → Debian package): a
//! program missing there fails the test with the playbook, step and
//! program, so that adding a command forces a decision. An install counts
//! for the hosts of its play ([`hosts_covered`]: the same groups, one host
//! of them, a subgroup); a scenario's Kubernetes-mode plays also see what
//! the kubernetes stage installed. The check is for Debian 12 hosts: steps
//! only for RHEL-like hosts are skipped. Other `when:` conditions are not
//! evaluated: an install skipped under a condition its user's step does
//! not share goes unseen, so keep their conditions alike. Every playbook
//! under playbooks/ belongs to one of [`chains`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use kubelab::playbook::modules::{Module, Probe};
use kubelab::playbook::{Condition, LoopSpec, Play, Playbook, Step};
use kubelab::template::Templates;
use kubelab::values::Text;

/// Debian 12 packages of `Priority: required`: with `apt`, what
/// `debootstrap --variant=minbase` installs (minbase leaves out the
/// `important` ones: no cron, no iptables, no nano).
const REQUIRED: &[&str] = &[
    "apt",
    "base-files",
    "base-passwd",
    "bash",
    "bsdutils",
    "coreutils",
    "dash",
    "debconf",
    "debianutils",
    "diffutils",
    "dpkg",
    "e2fsprogs",
    "findutils",
    "grep",
    "gzip",
    "hostname",
    "init-system-helpers",
    "libc-bin",
    "login",
    "mawk",
    "mount",
    "ncurses-bin",
    "passwd",
    "perl-base",
    "sed",
    "sysvinit-utils",
    "tar",
    "tzdata",
    "util-linux",
];

/// Packages the image's BASE_PKGS and CHROOT_PKGS depend on (Depends or
/// Pre-Depends in Debian 12, so installed with them), where a program of
/// [`PROGRAMS`] comes from one of them.
const DEPENDENCIES: &[(&str, &str)] =
    &[("openssl", "ca-certificates"), ("systemd", "systemd-sysv")];

/// Marks a program that runs only where it is already installed: the
/// step (or the one before it) asks `command -v` or `systemctl cat` first.
const IF_PRESENT: &str = "(run only where present)";

/// Marks a program that a step of the same playbook puts in place from a
/// download or an air-gap directory, not from a package.
const PLACED: &str = "(placed by the playbook)";

/// Program → the Debian 12 package that has it. Base-image packages are
/// in [`REQUIRED`], BASE_PKGS/CHROOT_PKGS or [`DEPENDENCIES`].
const PROGRAMS: &[(&str, &str)] = &[
    // coreutils
    ("perl", "perl-base"),
    ("networkctl", "systemd"),
    ("cat", "coreutils"),
    ("chmod", "coreutils"),
    ("chown", "coreutils"),
    ("cp", "coreutils"),
    ("cut", "coreutils"),
    ("date", "coreutils"),
    ("dirname", "coreutils"),
    ("env", "coreutils"),
    ("head", "coreutils"),
    ("install", "coreutils"),
    ("ln", "coreutils"),
    ("ls", "coreutils"),
    ("mkdir", "coreutils"),
    ("mktemp", "coreutils"),
    ("mv", "coreutils"),
    ("od", "coreutils"),
    ("readlink", "coreutils"),
    ("rm", "coreutils"),
    ("rmdir", "coreutils"),
    ("sha256sum", "coreutils"),
    ("sleep", "coreutils"),
    ("sync", "coreutils"),
    ("sort", "coreutils"),
    ("stat", "coreutils"),
    ("tail", "coreutils"),
    ("timeout", "coreutils"),
    ("test", "coreutils"),
    ("touch", "coreutils"),
    ("tr", "coreutils"),
    ("uname", "coreutils"),
    ("wc", "coreutils"),
    // other required packages
    ("sh", "dash"),
    ("bash", "bash"),
    ("getent", "libc-bin"),
    ("grep", "grep"),
    ("sed", "sed"),
    ("awk", "mawk"),
    ("find", "findutils"),
    ("cmp", "diffutils"),
    ("tar", "tar"),
    ("hostname", "hostname"),
    ("mount", "mount"),
    ("swapoff", "mount"),
    ("umount", "mount"),
    ("blkid", "util-linux"),
    ("findmnt", "util-linux"),
    ("wipefs", "util-linux"),
    ("mountpoint", "util-linux"),
    ("nsenter", "util-linux"),
    ("apt-get", "apt"),
    ("apt-cache", "apt"),
    ("apt-mark", "apt"),
    ("dpkg-query", "dpkg"),
    // BASE_PKGS, CHROOT_PKGS and their dependencies
    ("ip", "iproute2"),
    ("bridge", "iproute2"),
    ("kill", "procps"),
    ("sysctl", "procps"),
    ("modprobe", "kmod"),
    ("ping", "iputils-ping"),
    ("systemctl", "systemd"),
    ("openssl", "openssl"),
    // installed by the playbooks
    ("dig", "bind9-dnsutils"),
    // bind9-utils, a dependency of bind9
    ("named-checkconf", "bind9"),
    ("curl", "curl"),
    ("iptables", "iptables"),
    ("ip6tables", "iptables"),
    ("iptables-save", "iptables"),
    ("iptables-restore", "iptables"),
    ("ip6tables-save", "iptables"),
    ("ip6tables-restore", "iptables"),
    ("conntrack", "conntrack"),
    ("jq", "jq"),
    // nc.openbsd, `nc` through the alternatives system
    ("nc", "netcat-openbsd"),
    ("busybox", "busybox-static"),
    ("podman", "podman"),
    ("buildah", "buildah"),
    ("haproxy", "haproxy"),
    ("ovs-vsctl", "openvswitch-switch"),
    // openvswitch-common, a dependency of openvswitch-switch
    ("ovsdb-tool", "openvswitch-switch"),
    ("vtysh", "frr"),
    // FRR's daemons by path (cloud-router runs `/usr/lib/frr/"$d"` for
    // zebra and ospfd in a loop).
    ("/usr/lib/frr/ospfd", "frr"),
    ("/usr/lib/frr/$d", "frr"),
    // glusterfs-cli, a dependency of glusterfs-server
    ("gluster", "glusterfs-server"),
    ("mkfs.xfs", "xfsprogs"),
    ("pvs", "lvm2"),
    ("pvremove", "lvm2"),
    ("vgremove", "lvm2"),
    ("tayga", "tayga"),
    // A scenario's container engine `{{ engine }}`: podman unless the lab
    // says docker; the same step installs docker.io then.
    ("{{ engine }}", "podman"),
    ("kubeadm", "kubeadm"),
    ("kubectl", "kubectl"),
    // cri-tools from pkgs.k8s.io, installed by name with kubeadm
    ("crictl", "cri-tools"),
    // Debian's containerd; the same playbook's other sources (containerd.io
    // from Docker's repository, the air-gap bundle) put the same program.
    ("containerd", "containerd"),
    // kubernetes/images: containerd's client (in every containerd package
    // and release tarball) and Docker's (docker.io, or docker-ce-cli).
    ("ctr", "containerd"),
    ("docker", "docker.io"),
    // Air-gapped installs and cri-dockerd: binaries kubernetes/packages and
    // kubernetes/runtime copy or unpack before the units using them start.
    ("/usr/local/bin/kubelet", PLACED),
    ("/usr/local/bin/containerd", PLACED),
    ("/usr/local/bin/cri-dockerd", PLACED),
    // kubernetes/nodeprep: only after `systemctl cat firewalld.service` or
    // `command -v ufw` found them.
    ("firewall-cmd", IF_PRESENT),
    ("ufw", IF_PRESENT),
    // kubernetes/reset: only after `command -v ipvsadm` found it.
    ("ipvsadm", IF_PRESENT),
];

/// What kubelab's own modules run on the host (src/apply/*.rs).
fn module_programs(module: &Module) -> Vec<String> {
    let files = [
        "stat", "cat", "chmod", "chown", "mkdir", "rm", "ln", "readlink", "touch", "mv",
    ];
    let names: &[&str] = match module {
        Module::Command(_) | Module::Shell(_) | Module::WaitFor(_) | Module::Assert(_) => &[],
        Module::File(_) | Module::Copy(_) | Module::Template(_) | Module::Line(_) => &files,
        Module::Fetch(_) => &["stat", "cat"],
        Module::Sysctl(_) => &["sh", "cat", "grep", "mkdir", "dirname", "awk", "mv"],
        Module::Modprobe(_) => &["modprobe", "grep", "mkdir", "dirname"],
        Module::Package(_) => &["dpkg-query", "grep", "apt-get", "ls"],
        Module::Service(_) => &["systemctl"],
        // `bridge` for a vxlan's flooding entries, `sh` and `cat` for an
        // interface's IPv6 switch.
        Module::Link(_) => &["ip", "nsenter", "bridge", "sh", "cat"],
        Module::Route(_) => &["ip", "nsenter"],
    };
    names.iter().map(|s| s.to_string()).collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The packages of the base image: [`REQUIRED`], the build script's
/// BASE_PKGS and CHROOT_PKGS (read from it, so that the two cannot drift
/// apart) and [`DEPENDENCIES`] of those.
fn base_packages() -> BTreeSet<String> {
    let script = std::fs::read_to_string(repo().join("templates/virthost/build-image-debian.sh"))
        .expect("build-image-debian.sh");
    let list = |var: &str| -> Vec<String> {
        let line = script
            .lines()
            .find(|l| l.starts_with(&format!("{var}=\"")))
            .unwrap_or_else(|| panic!("build-image-debian.sh has no {var}=\"…\" line"));
        line[var.len() + 2..]
            .trim_end_matches('"')
            .split([',', ' '])
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut base: BTreeSet<String> = REQUIRED.iter().map(|s| s.to_string()).collect();
    base.extend(list("BASE_PKGS"));
    base.extend(list("CHROOT_PKGS"));
    for (dep, of) in DEPENDENCIES {
        assert!(
            base.contains(*of),
            "DEPENDENCIES: {dep} comes with {of}, which the base image no longer has"
        );
        base.insert(dep.to_string());
    }
    base
}

fn load(path: &Path) -> Playbook {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    kubelab::playbook::load_str(path, &text, &Templates::default())
        .unwrap_or_else(|d| panic!("{}:\n{}", path.display(), d.render(false)))
}

/// The playbook file of a step, relative to the repository.
fn step_file(step: &Step) -> String {
    let mut parts = step.location.rsplitn(3, ':');
    let (_col, _line) = (parts.next(), parts.next());
    let file = parts.next().unwrap_or(&step.location);
    // Imports resolve to the playbooks built into kubelab (from this tree).
    if let Some(embedded) = file.strip_prefix("<built-in>/") {
        return embedded.to_string();
    }
    file.strip_prefix(&format!("{}/", repo().display()))
        .unwrap_or(file)
        .to_string()
}

/// Playbooks in the order they run: a playbook sees what the ones before it
/// in its chain installed.
struct Chain {
    name: String,
    /// The first playbook's installs are seen by every later one; the later
    /// ones do not see each other's (a scenario's verify, break, repair and
    /// teardown each run alone after setup).
    first_is_shared: bool,
    playbooks: Vec<Playbook>,
}

fn chains() -> Vec<Chain> {
    let pb = repo().join("playbooks");
    let mut chains = Vec::new();
    for alone in ["nat64.yaml", "nat64-remove.yaml", "nodeprep-bench.yaml"] {
        chains.push(Chain {
            name: alone.to_string(),
            first_is_shared: false,
            playbooks: vec![load(&pb.join(alone))],
        });
    }
    // The kubernetes stage: its imports in order (one playbook, so each
    // part sees the ones before), then `kubelab reset` on the built cluster.
    chains.push(Chain {
        name: "kubernetes".into(),
        first_is_shared: false,
        playbooks: vec![
            load(&pb.join("kubernetes.yaml")),
            load(&pb.join("kubernetes/reset.yaml")),
        ],
    });
    let mut scenarios: Vec<_> = std::fs::read_dir(pb.join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    scenarios.sort();
    for dir in scenarios {
        let mut playbooks = vec![load(&dir.join("setup.yaml"))];
        for phase in ["verify", "break", "repair", "teardown"] {
            let p = dir.join(format!("{phase}.yaml"));
            if p.exists() {
                playbooks.push(load(&p));
            }
        }
        chains.push(Chain {
            name: format!("scenario {}", dir.file_name().unwrap().to_string_lossy()),
            first_is_shared: true,
            playbooks,
        });
    }
    chains
}

// ---- what a step runs ----------------------------------------------------

/// The programs a step runs and the packages it installs with `apt-get`.
#[derive(Default)]
struct Runs {
    programs: Vec<String>,
    apt_installs: Vec<String>,
}

/// Script files a `template:` step wrote (dest as written → template text).
type Scripts = BTreeMap<String, String>;

/// Scripts the stages hand to playbooks in variables (`bash -c "{{ var }}"`),
/// as kubelab makes them: the playbook alone does not show what they run.
fn stage_scripts() -> Scripts {
    use kubelab::kubernetes::DistroFamily;
    use kubelab::kubernetes::sources::{Source, probe_script};
    let sample = Source {
        host: "pkgs.k8s.io",
        port: 443,
        needed_for: "packages".into(),
        only_on: Some(DistroFamily::RedHat),
    };
    Scripts::from([
        (
            "{{ kube_sources_probe }}".to_string(),
            probe_script("node", &[sample]),
        ),
        (
            "{{ kube_fetch_key }}".to_string(),
            kubelab::kubernetes::node::FETCH_KEY_SCRIPT.to_string(),
        ),
        (
            "{{ kube_fetch_file }}".to_string(),
            kubelab::kubernetes::node::FETCH_FILE_SCRIPT.to_string(),
        ),
        (
            "{{ kube_reset_rules }}".to_string(),
            kubelab::kubernetes::node::RESET_RULES_SCRIPT.to_string(),
        ),
    ])
}

const TEMPLATE_OPEN: char = '\u{1}';
const TEMPLATE_CLOSE: char = '\u{2}';
/// Stands for the output of a command substitution in a word.
const SUBSTITUTION: char = '\u{3}';

/// Shell builtins of dash (no program runs for them).
const BUILTINS: &[&str] = &[
    ":", ".", "[", "alias", "break", "cd", "continue", "echo", "exit", "export", "false",
    "getopts", "kill", "local", "printf", "pwd", "read", "readonly", "return", "set", "shift",
    "source", "test", "trap", "true", "type", "ulimit", "umask", "unset", "wait",
];
const KEYWORDS: &[&str] = &[
    "!", "{", "}", "if", "then", "else", "elif", "fi", "do", "done", "while", "until",
];

impl Runs {
    fn program(&mut self, p: &str) {
        self.programs.push(p.to_string());
    }

    fn probe(&mut self, probe: &Probe, scripts: &Scripts) {
        match probe {
            Probe::Argv(a) => self.argv(&texts(a), &BTreeMap::new(), scripts),
            Probe::Script(s) => self.script(s, scripts),
        }
    }

    /// An argument list: the program, or what a wrapper runs.
    fn argv(&mut self, words: &[String], vars: &BTreeMap<String, String>, scripts: &Scripts) {
        let Some(first) = words.first() else { return };
        let Some(prog) = program_name(first, vars) else {
            return;
        };
        let rest = &words[1..];
        let after = |skip_with_arg: &[&str], stop_at_assignment: bool| -> usize {
            let mut i = 0;
            while i < rest.len() {
                let w = rest[i].as_str();
                if skip_with_arg.contains(&w) {
                    i += 2;
                } else if w.starts_with('-') || (stop_at_assignment && is_assignment(w)) {
                    i += 1;
                } else {
                    break;
                }
            }
            i.min(rest.len())
        };
        match prog.as_str() {
            "sh" | "bash" => {
                self.program(&prog);
                match rest.first().map(String::as_str) {
                    Some("-c") => {
                        if let Some(s) = rest.get(1) {
                            let text = restore_templates(s);
                            // A script the stage passes in a variable.
                            match scripts.get(text.trim()) {
                                Some(known) => self.script(known, scripts),
                                None => self.script(&text, scripts),
                            }
                        }
                    }
                    Some(file) if !file.starts_with('-') => {
                        let file = restore_templates(file);
                        match scripts.get(&file) {
                            Some(text) => self.script(text, scripts),
                            None => self.program(&format!("(script {file})")),
                        }
                    }
                    _ => {}
                }
            }
            "env" => {
                self.program("env");
                self.argv(&rest[after(&["-u", "-C", "-S"], true)..], vars, scripts);
            }
            "timeout" => {
                self.program("timeout");
                let i = after(&["-s", "-k", "--signal", "--kill-after"], false);
                self.argv(rest.get(i + 1..).unwrap_or_default(), vars, scripts);
            }
            "sudo" => {
                self.program("sudo");
                let i = after(
                    &["-u", "-g", "-C", "-h", "-p", "-D", "-R", "-T", "-U"],
                    false,
                );
                self.argv(&rest[i..], vars, scripts);
            }
            "nice" | "nohup" | "setsid" | "stdbuf" => {
                self.program(&prog);
                self.argv(&rest[after(&["-n"], false)..], vars, scripts);
            }
            "exec" => self.argv(rest, vars, scripts),
            "command" => {
                // `command -v X` asks whether X exists; it runs nothing.
                if !matches!(rest.first().map(String::as_str), Some("-v" | "-V")) {
                    self.argv(rest, vars, scripts);
                }
            }
            "eval" => self.script(&rest.join(" "), scripts),
            "nsenter" => {
                self.program("nsenter");
                let i = after(&["-t", "--target", "-S", "-G", "-w", "-r"], false);
                self.argv(&rest[i..], vars, scripts);
            }
            "xargs" => {
                self.program("xargs");
                let i = after(&["-I", "-n", "-P", "-d", "-L", "-s", "-E", "-a"], false);
                self.argv(&rest[i..], vars, scripts);
            }
            "ip" => {
                self.program("ip");
                if rest.len() > 3 && rest[0] == "netns" && rest[1] == "exec" {
                    self.argv(&rest[3..], vars, scripts);
                }
            }
            "apt-get" => {
                self.program("apt-get");
                if let Some(i) = rest.iter().position(|w| w == "install") {
                    for w in &rest[i + 1..] {
                        if !w.starts_with('-') {
                            let name = w.split('=').next().unwrap_or(w);
                            self.apt_installs.push(name.to_string());
                        }
                    }
                }
            }
            _ => self.program(&prog),
        }
    }

    /// A POSIX sh script (templates it includes put in place, other
    /// minijinja blocks dropped, values kept as words).
    fn script(&mut self, text: &str, scripts: &Scripts) {
        let text = with_includes(text);
        self.script_in(&text, &BTreeSet::new(), &BTreeMap::new(), scripts);
    }

    /// A script, or a command substitution's body: it sees the functions
    /// and variables of the script around it.
    fn script_in(
        &mut self,
        text: &str,
        outer_functions: &BTreeSet<String>,
        outer_vars: &BTreeMap<String, String>,
        scripts: &Scripts,
    ) {
        let text = hide_templates(text);
        let mut nested = Vec::new();
        let tokens = tokenize(&text, &mut nested);
        let mut functions = outer_functions.clone();
        functions.extend(tokens.windows(3).filter_map(|w| match w {
            [Tok::Word(name), Tok::Op("("), Tok::Op(")")] => Some(name.clone()),
            _ => None,
        }));
        let mut vars = outer_vars.clone();
        for mut words in simple_commands(&tokens) {
            while words
                .first()
                .is_some_and(|w| KEYWORDS.contains(&w.as_str()))
            {
                words.remove(0);
            }
            let Some(first) = words.first() else { continue };
            if first == "for" || functions.contains(first) {
                continue;
            }
            let mut start = 0;
            while let Some(w) = words.get(start).filter(|w| is_assignment(w)) {
                let (name, value) = w.split_once('=').unwrap();
                vars.insert(name.to_string(), value.to_string());
                start += 1;
            }
            let words = &words[start..];
            let Some(first) = words.first() else { continue };
            if !BUILTINS.contains(&first.as_str()) {
                self.argv(words, &vars, scripts);
            }
        }
        for inner in nested {
            self.script_in(&inner, &functions, &vars, scripts);
        }
    }
}

fn texts(a: &[Text]) -> Vec<String> {
    a.iter().map(|t| hide_templates(t.as_str())).collect()
}

fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        None => false,
    }
}

/// The program a command word names: a variable resolved through the
/// script's assignments, a template value normalized (`{{ x | quote }}` is
/// `{{ x }}`), standard directories dropped. None when it cannot be known
/// here (a function's `"$@"`, a command substitution).
fn program_name(word: &str, vars: &BTreeMap<String, String>) -> Option<String> {
    let mut w = word.to_string();
    for _ in 0..4 {
        let name = w
            .strip_prefix("${")
            .and_then(|s| s.strip_suffix('}'))
            .or_else(|| w.strip_prefix('$'));
        match name {
            Some(n) if n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                match vars.get(n) {
                    Some(v) => {
                        let v = v.trim_matches('"').trim();
                        w = v.split_whitespace().next().unwrap_or("").to_string();
                    }
                    None if n.chars().all(|c| c.is_ascii_digit()) => return None,
                    None => break,
                }
            }
            Some("@" | "*") => return None,
            _ => break,
        }
    }
    if w.is_empty() || (w.contains(SUBSTITUTION) && !w.contains('/')) {
        return None;
    }
    let w = restore_templates(&w);
    let w = normalize_template(&w);
    if let Some((dir, base)) = w.rsplit_once('/') {
        let standard = ["/bin", "/sbin", "/usr/bin", "/usr/sbin"].contains(&dir);
        if standard
            || (!base.contains('$') && !base.is_empty() && dir.contains(['$', SUBSTITUTION]))
        {
            return Some(base.to_string());
        }
    }
    Some(w)
}

/// `{{ engine | quote }}` → `{{ engine }}`.
fn normalize_template(w: &str) -> String {
    match w.strip_prefix("{{").and_then(|s| s.strip_suffix("}}")) {
        Some(inner) => {
            let inner = inner.trim();
            let inner = inner.strip_suffix("| quote").unwrap_or(inner).trim();
            format!("{{{{ {inner} }}}}")
        }
        None => w.to_string(),
    }
}

/// Minijinja blocks and comments dropped; each `{{ … }}` kept as one word
/// between markers, its characters that sh would read (spaces, quotes,
/// `|`…) moved out of ASCII.
fn hide_templates(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let r = &rest[i..];
        let close = if r.starts_with("{{") {
            Some("}}")
        } else if r.starts_with("{%") {
            Some("%}")
        } else if r.starts_with("{#") {
            Some("#}")
        } else {
            None
        };
        match close.and_then(|c| r.find(c).map(|j| (c, j))) {
            Some((c, j)) => {
                if c == "}}" {
                    out.push(TEMPLATE_OPEN);
                    out.extend(r[2..j].chars().map(|ch| match ch {
                        ' ' | '\t' | '\n' | ';' | '&' | '|' | '(' | ')' | '<' | '>' | '\''
                        | '"' | '`' | '$' | '\\' | '#' | '{' | '}' => {
                            char::from_u32(HIDDEN + ch as u32).unwrap()
                        }
                        ch => ch,
                    }));
                    out.push(TEMPLATE_CLOSE);
                }
                rest = &r[j + 2..];
            }
            None => {
                out.push('{');
                rest = &r[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Where [`hide_templates`] moves the characters sh would read (a Unicode
/// private use area).
const HIDDEN: u32 = 0xE000;

fn restore_templates(w: &str) -> String {
    w.chars()
        .map(|ch| match ch {
            TEMPLATE_OPEN => "{{".to_string(),
            TEMPLATE_CLOSE => "}}".to_string(),
            ch if (HIDDEN..HIDDEN + 0x80).contains(&(ch as u32)) => {
                char::from_u32(ch as u32 - HIDDEN).unwrap().to_string()
            }
            ch => ch.to_string(),
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Op(&'static str),
}

/// Index after the `)` closing a `$(` whose body starts at `i`.
fn close_paren(b: &[char], mut i: usize) -> usize {
    let mut depth = 1;
    while i < b.len() {
        match b[i] {
            '\\' => i += 2,
            '\'' => i = skip_single(b, i + 1),
            '"' => i = skip_double(b, i + 1),
            '`' => i = skip_backtick(b, i + 1),
            '(' => {
                depth += 1;
                i += 1
            }
            ')' => {
                depth -= 1;
                i += 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    b.len()
}

fn skip_single(b: &[char], mut i: usize) -> usize {
    while i < b.len() && b[i] != '\'' {
        i += 1;
    }
    i + 1
}

fn skip_double(b: &[char], mut i: usize) -> usize {
    while i < b.len() {
        match b[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            '$' if b.get(i + 1) == Some(&'(') => i = close_paren(b, i + 2),
            '`' => i = skip_backtick(b, i + 1),
            _ => i += 1,
        }
    }
    b.len()
}

fn skip_backtick(b: &[char], mut i: usize) -> usize {
    while i < b.len() {
        match b[i] {
            '\\' => i += 2,
            '`' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// The command substitutions in arithmetic `$(( … ))` text.
fn substitutions_in(b: &[char], nested: &mut Vec<String>) {
    let mut i = 0;
    while i < b.len() {
        // Backticks are not read inside arithmetic, only `$(`.
        if b[i] == '$' && b.get(i + 1) == Some(&'(') {
            i = substitution(b, i, nested);
        } else {
            i += 1;
        }
    }
}

/// `$(…)`, `$((…))` or backticks at `b[i]`.
fn starts_substitution(b: &[char], i: usize) -> bool {
    b[i] == '`' || (b[i] == '$' && b.get(i + 1) == Some(&'('))
}

/// The substitution at `b[i]` ([`starts_substitution`]): its commands go
/// to `nested` (arithmetic's own substitutions only); the index after it.
fn substitution(b: &[char], i: usize, nested: &mut Vec<String>) -> usize {
    if b[i] == '`' {
        let end = skip_backtick(b, i + 1);
        nested.push(b[i + 1..end.saturating_sub(1).max(i + 1)].iter().collect());
        return end;
    }
    let end = close_paren(b, i + 2);
    let inner = &b[i + 2..end.saturating_sub(1).max(i + 2)];
    if b.get(i + 2) == Some(&'(') {
        substitutions_in(inner, nested);
    } else {
        nested.push(inner.iter().collect());
    }
    end
}

/// Words (quotes removed, substitutions marked and their bodies put in
/// `nested`) and control operators. Redirections and their targets are
/// dropped.
fn tokenize(text: &str, nested: &mut Vec<String>) -> Vec<Tok> {
    let b: Vec<char> = text.chars().collect();
    let mut toks = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut drop_next_word = false;
    let flush = |word: &mut String, in_word: &mut bool, drop: &mut bool, toks: &mut Vec<Tok>| {
        if *in_word {
            if *drop {
                *drop = false;
            } else {
                toks.push(Tok::Word(std::mem::take(word)));
            }
        }
        word.clear();
        *in_word = false;
    };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            ' ' | '\t' => {
                flush(&mut word, &mut in_word, &mut drop_next_word, &mut toks);
                i += 1;
            }
            '\\' => {
                // A backslash before a newline continues the line.
                if let Some(&n) = b.get(i + 1).filter(|n| **n != '\n') {
                    word.push(n);
                    in_word = true;
                }
                i += 2;
            }
            '#' if !in_word => {
                while i < b.len() && b[i] != '\n' {
                    i += 1;
                }
            }
            '\n' | ';' | '&' | '|' | '(' | ')' => {
                flush(&mut word, &mut in_word, &mut drop_next_word, &mut toks);
                let two: String = b[i..(i + 2).min(b.len())].iter().collect();
                let op = match two.as_str() {
                    ";;" => ";;",
                    "&&" => "&&",
                    "||" => "||",
                    _ => match c {
                        '\n' => "\n",
                        ';' => ";",
                        '&' => "&",
                        '|' => "|",
                        '(' => "(",
                        _ => ")",
                    },
                };
                toks.push(Tok::Op(op));
                i += op.len();
            }
            '<' | '>' => {
                if in_word && word.chars().all(|c| c.is_ascii_digit()) {
                    word.clear();
                    in_word = false;
                } else {
                    flush(&mut word, &mut in_word, &mut drop_next_word, &mut toks);
                }
                let start = i;
                while i < b.len() && matches!(b[i], '<' | '>' | '&' | '|') {
                    i += 1;
                }
                let op: String = b[start..i].iter().collect();
                assert!(!op.starts_with("<<"), "here-documents are not read: {text}");
                if op.ends_with('&') && b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == '-') {
                    i += 1;
                } else {
                    drop_next_word = true;
                }
            }
            '\'' => {
                let end = skip_single(&b, i + 1);
                word.extend(&b[i + 1..end.saturating_sub(1).max(i + 1)]);
                in_word = true;
                i = end;
            }
            '"' => {
                in_word = true;
                i += 1;
                while i < b.len() && b[i] != '"' {
                    match b[i] {
                        '\\' => {
                            if let Some(&n) = b.get(i + 1) {
                                word.push(n);
                            }
                            i += 2;
                        }
                        _ if starts_substitution(&b, i) => {
                            i = substitution(&b, i, nested);
                            word.push(SUBSTITUTION);
                        }
                        ch => {
                            word.push(ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            _ if starts_substitution(&b, i) => {
                i = substitution(&b, i, nested);
                word.push(SUBSTITUTION);
                in_word = true;
            }
            '$' if b.get(i + 1) == Some(&'{') => {
                while i < b.len() && b[i] != '}' {
                    word.push(b[i]);
                    i += 1;
                }
                word.push('}');
                in_word = true;
                i += 1;
            }
            ch => {
                word.push(ch);
                in_word = true;
                i += 1;
            }
        }
    }
    flush(&mut word, &mut in_word, &mut drop_next_word, &mut toks);
    toks
}

/// The simple commands of a token list; `case` patterns are dropped.
fn simple_commands(tokens: &[Tok]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    // After `case WORD`: waiting for `in`; then in a pattern until `)`.
    let mut case_word = false;
    let mut case_pattern = false;
    let mut end = |cur: &mut Vec<String>| {
        if !cur.is_empty() {
            out.push(std::mem::take(cur));
        }
    };
    for t in tokens {
        match t {
            Tok::Word(w) if case_word => {
                if w == "in" {
                    case_word = false;
                    case_pattern = true;
                }
            }
            Tok::Word(w) if case_pattern => {
                if w == "esac" {
                    case_pattern = false;
                }
            }
            Tok::Word(w) if cur.is_empty() && w == "case" => case_word = true,
            Tok::Word(w) if cur.is_empty() && w == "esac" => {}
            Tok::Word(w) => cur.push(w.clone()),
            Tok::Op(")") if case_pattern => case_pattern = false,
            Tok::Op(_) if case_pattern => {}
            Tok::Op(";;") => {
                end(&mut cur);
                case_pattern = true;
            }
            Tok::Op(_) => end(&mut cur),
        }
    }
    end(&mut cur);
    out
}

/// The programs of a systemd unit's `Exec…=` lines.
fn unit_programs(unit: &str, runs: &mut Runs, scripts: &Scripts) {
    for line in unit.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if !key.trim().starts_with("Exec") {
            continue;
        }
        let value = value.trim_start_matches(['-', '@', ':', '+', '!']);
        let words: Vec<String> = hide_templates(value)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        runs.argv(&words, &BTreeMap::new(), scripts);
    }
}

/// `text` with each `{% include "NAME" %}` replaced by that template's
/// text (itself with its includes).
fn with_includes(text: &str) -> String {
    let include = regex::Regex::new(r#"\{%-?\s*include\s+"([^"]+)"\s*-?%\}"#).unwrap();
    include
        .replace_all(text, |c: &regex::Captures| {
            with_includes(&template_text(&c[1]))
        })
        .into_owned()
}

fn template_text(src: &str) -> String {
    let path = repo().join("templates").join(src);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `(src, dest)` of a `template:` step, one per item of a literal
/// `loop` when they name `{{ item }}`.
fn template_files(step: &Step) -> Vec<(String, String)> {
    let Module::Template(t) = &step.module else {
        return Vec::new();
    };
    let (src, dest) = (t.src.as_str(), t.dest.as_str());
    let item = regex::Regex::new(r"\{\{\s*item\s*\}\}").unwrap();
    if !item.is_match(src) && !item.is_match(dest) {
        return vec![(src.to_string(), dest.to_string())];
    }
    let Some(LoopSpec::Items(items)) = &step.loop_over else {
        panic!(
            "{}: a template named by `item` without a literal loop",
            step.location
        );
    };
    items
        .iter()
        .map(|i| {
            let i = i.as_str().expect("loop items of a template step are names");
            (
                item.replace_all(src, i).into_owned(),
                item.replace_all(dest, i).into_owned(),
            )
        })
        .collect()
}

/// Everything one step runs.
fn step_runs(step: &Step, scripts: &Scripts) -> Runs {
    let mut runs = Runs {
        programs: module_programs(&step.module),
        apt_installs: Vec::new(),
    };
    match &step.module {
        Module::Command(a) => {
            runs.argv(&texts(&a.argv), &BTreeMap::new(), scripts);
            if let Some(u) = &a.unless {
                runs.probe(u, scripts);
            }
        }
        Module::Shell(a) => {
            runs.script(&a.script, scripts);
            if let Some(u) = &a.unless {
                runs.probe(u, scripts);
            }
        }
        Module::WaitFor(a) => {
            if let Some(c) = &a.command {
                runs.probe(c, scripts);
            }
        }
        Module::Template(_) => {
            for (src, dest) in template_files(step) {
                if dest.ends_with(".service") {
                    unit_programs(&template_text(&src), &mut runs, scripts);
                }
            }
        }
        Module::Link(a) => {
            for end in std::iter::once(&a.a).chain(a.b.as_ref()) {
                link_end_programs(&end.container, &end.runtime, &end.pod, &mut runs);
            }
        }
        Module::Route(a) => link_end_programs(&a.container, &a.runtime, &a.pod, &mut runs),
        _ => {}
    }
    runs
}

/// A container end runs its runtime's CLI (podman by default; crictl for
/// CRI-O), a pod end crictl.
fn link_end_programs(
    container: &Option<Text>,
    runtime: &Option<Text>,
    pod: &Option<Text>,
    runs: &mut Runs,
) {
    if container.is_some() {
        let rt = runtime.as_ref().map_or("podman", |r| r.as_str());
        match rt {
            "crio" | "cri-o" => runs.program("crictl"),
            other => runs.program(&normalize_template(other)),
        }
    }
    if pod.is_some() {
        runs.program("crictl");
    }
}

/// The Debian packages a `package:` step installs: its names, a templated
/// name's Debian choice (`'a' if facts.family == 'debian' else 'b'` is a)
/// or both choices of any other condition.
fn package_names(step: &Step) -> Vec<String> {
    let Module::Package(p) = &step.module else {
        return Vec::new();
    };
    if p.state != kubelab::values::Presence::Present {
        return Vec::new();
    }
    let choice =
        regex::Regex::new(r"^\{\{\s*'([^']+)'\s+if\s+(.+?)\s+else\s+'([^']+)'\s*\}\}$").unwrap();
    let mut out = Vec::new();
    for n in &p.names {
        let n = n.as_str().trim();
        if let Some(c) = choice.captures(n) {
            let cond = &c[2];
            if cond.contains("facts.family") {
                let debian_first = cond.contains("== 'debian'");
                out.push(c[if debian_first { 1 } else { 3 }].to_string());
            } else {
                out.push(c[1].to_string());
                out.push(c[3].to_string());
            }
        } else {
            assert!(
                !n.contains("{{"),
                "{}: package name `{n}` is a template this test cannot read",
                step.location
            );
            out.push(n.to_string());
        }
    }
    out
}

/// Steps that run only on RHEL-like hosts.
fn rhel_only(step: &Step) -> bool {
    match &step.when {
        Some(Condition::Expr(e)) => e.contains("facts.family == 'redhat'") && !e.contains(" or "),
        _ => false,
    }
}

/// Plays of a scenario's Kubernetes mode, which run on a cluster the
/// kubernetes stage built.
fn cluster_play(play: &Play) -> bool {
    let hosts = play.hosts.text.as_str();
    let when_k8s = matches!(&play.when, Some(Condition::Expr(e)) if e.contains("'kubernetes'") || e.contains("'ratchet-cni'"));
    when_k8s || hosts.contains("control-plane") || hosts.contains("worker")
}

struct Problem {
    file: String,
    step: String,
    location: String,
    message: String,
}

/// Check one playbook with `installed` (what ran before it) and return
/// what it installs.
/// Packages installed so far: `(hosts pattern of the play, package)`.
type Installed = BTreeSet<(String, String)>;

/// Groups whose hosts all belong to another group (kubelab's inventory).
const SUBGROUPS: &[(&str, &str)] = &[
    ("kube-init", "kube-nodes"),
    ("kube-control-plane-join", "kube-nodes"),
    ("kube-workers", "kube-nodes"),
];

/// Whether every host of pattern `used` is one of pattern `installed`:
/// the same groups, one host of a group (`g[0]`, `g[1:]`), a subgroup, an
/// intersection with a covered group.
fn hosts_covered(installed: &str, used: &str) -> bool {
    if installed == used || installed == "all" {
        return true;
    }
    if installed.contains(['&', '!']) {
        return false;
    }
    let have: Vec<&str> = installed.split(':').collect();
    let term = |t: &str| {
        let group = t.split('[').next().unwrap_or(t);
        have.contains(&t)
            || have.contains(&group)
            || SUBGROUPS
                .iter()
                .any(|(sub, of)| *sub == group && have.contains(of))
    };
    let terms: Vec<&str> = used.split(':').collect();
    let unions: Vec<&str> = terms
        .iter()
        .copied()
        .filter(|t| !t.starts_with(['&', '!']))
        .collect();
    let intersections: Vec<&str> = terms.iter().filter_map(|t| t.strip_prefix('&')).collect();
    unions.iter().all(|t| term(t)) || intersections.iter().any(|t| term(t))
}

fn check_playbook(
    playbook: &Playbook,
    installed: &Installed,
    cluster_installed: &BTreeSet<String>,
    base: &BTreeSet<String>,
    table: &BTreeMap<&str, &str>,
    problems: &mut Vec<Problem>,
    programs_seen: &mut BTreeSet<String>,
) -> Installed {
    let mut now = installed.clone();
    let mut scripts = stage_scripts();
    for play in &playbook.plays {
        let cluster = cluster_play(play);
        let hosts = play.hosts.text.as_str();
        for step in &play.steps {
            for (src, dest) in template_files(step) {
                scripts.insert(dest, template_text(&src));
            }
            if rhel_only(step) {
                continue;
            }
            let runs = step_runs(step, &scripts);
            for program in &runs.programs {
                programs_seen.insert(program.clone());
                let problem = |message: String| Problem {
                    file: step_file(step),
                    step: step.name.clone(),
                    location: step.location.clone(),
                    message,
                };
                let Some(&package) = table.get(program.as_str()) else {
                    problems.push(problem(format!(
                        "runs `{program}`, which tests/playbook_tools.rs does not know: add it to PROGRAMS with its Debian package"
                    )));
                    continue;
                };
                let ok = package == IF_PRESENT
                    || package == PLACED
                    || base.contains(package)
                    || now
                        .iter()
                        .any(|(on, p)| p == package && hosts_covered(on, hosts))
                    || (cluster && cluster_installed.contains(package));
                if !ok {
                    problems.push(problem(format!(
                        "runs `{program}` (Debian package {package}) on `{hosts}`, where neither the base image nor an earlier `package:` step installs it"
                    )));
                }
            }
            let installs = runs.apt_installs.into_iter().chain(package_names(step));
            now.extend(installs.map(|p| (hosts.to_string(), p)));
        }
    }
    now
}

/// A playbook made only of `- import_playbook:` items (its steps are the
/// imported playbooks', which the chains cover).
fn only_imports(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .all(|l| l.starts_with("- import_playbook:"))
}

#[test]
fn every_program_a_playbook_runs_is_installed_before_it_runs() {
    let base = base_packages();
    let mut table = BTreeMap::new();
    for (program, package) in PROGRAMS {
        assert!(
            table.insert(*program, *package).is_none(),
            "PROGRAMS lists {program} twice"
        );
    }
    let chains = chains();

    // Every playbook file is in a chain (a new one needs a place in it).
    let mut covered = BTreeSet::new();
    for chain in &chains {
        for pb in &chain.playbooks {
            for play in &pb.plays {
                for step in &play.steps {
                    covered.insert(step_file(step));
                }
            }
        }
    }
    let mut files = Vec::new();
    collect_yaml(&repo().join("playbooks"), &mut files);
    let uncovered: Vec<_> = files
        .iter()
        .map(|f| f.strip_prefix(repo()).unwrap().display().to_string())
        .filter(|f| !covered.contains(f) && !only_imports(&repo().join(f)))
        .collect();
    assert!(
        uncovered.is_empty(),
        "playbooks in no chain of tests/playbook_tools.rs (say what runs before them): {uncovered:?}"
    );

    let kube = chains.iter().find(|c| c.name == "kubernetes").unwrap();
    let cluster_installed = kube.playbooks[0]
        .plays
        .iter()
        .flat_map(|p| &p.steps)
        .flat_map(|s| {
            let mut v = package_names(s);
            v.extend(step_runs(s, &Scripts::new()).apt_installs);
            v
        })
        .collect::<BTreeSet<_>>();

    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for chain in &chains {
        let mut installed = BTreeSet::new();
        for (i, pb) in chain.playbooks.iter().enumerate() {
            let after = check_playbook(
                pb,
                &installed,
                &cluster_installed,
                &base,
                &table,
                &mut problems,
                &mut seen,
            );
            if !chain.first_is_shared || i == 0 {
                installed = after;
            }
        }
    }
    let unused: Vec<_> = table.keys().filter(|p| !seen.contains(**p)).collect();
    let report: BTreeSet<String> = problems
        .iter()
        .map(|p| {
            format!(
                "{}: step `{}` ({}): {}",
                p.file, p.step, p.location, p.message
            )
        })
        .collect();
    let report: Vec<String> = report.into_iter().collect();
    assert!(
        report.is_empty(),
        "{} problem(s):\n{}",
        report.len(),
        report.join("\n")
    );
    assert!(
        unused.is_empty(),
        "PROGRAMS lists programs no playbook runs any more (remove them): {unused:?}"
    );
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect_yaml(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

// ---- the reader itself -----------------------------------------------------

fn programs_of(script: &str) -> Vec<String> {
    let mut runs = Runs::default();
    runs.script(script, &Scripts::new());
    runs.programs
}

fn set(v: &[&str]) -> BTreeSet<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn scripts_are_read_command_by_command() {
    let found = |s: &str| programs_of(s).into_iter().collect::<BTreeSet<_>>();
    assert_eq!(
        found("a=$(jq -r .x f | head -n 1) && [ -n \"$a\" ] || curl -s x >/dev/null 2>&1; echo"),
        set(&["jq", "head", "curl"])
    );
    // Keywords, functions, `case` patterns and `for` lists are not programs.
    assert_eq!(
        found(
            "f() { ip link; }\nfor x in a b; do f \"$x\"; done\ncase \"$p\" in ''|0) echo -1 ;; *) nsenter -t \"$p\" -n iptables -L ;; esac\nif ! grep -q x y; then sleep 1; fi"
        ),
        set(&["ip", "nsenter", "iptables", "grep", "sleep"])
    );
    // Through wrappers and variables; not into containers.
    assert_eq!(
        found(
            "k=\"kubectl --kubeconfig /x\"\n$k get nodes\ne={{ engine | quote }}\n\"$e\" inspect c\ntimeout 5 env A=1 sudo -n ip netns exec ns dig x\npodman exec c ping y"
        ),
        set(&[
            "kubectl",
            "{{ engine }}",
            "timeout",
            "env",
            "sudo",
            "ip",
            "dig",
            "podman"
        ])
    );
    // Arithmetic, quoted substitutions, eval, redirection targets.
    assert_eq!(
        found(
            "d=$(( $(date +%s) + 5 ))\necho \"$(cat \"$(readlink x)\")\" > out\neval \"ip6tables -D x\"\n{% if a %}ovs-vsctl show{% endif %}"
        ),
        set(&["date", "cat", "readlink", "ip6tables", "ovs-vsctl"])
    );
}
