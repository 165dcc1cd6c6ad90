//! The playbook engine end to end, with real commands through
//! `LocalTransport`: every host is this machine, with its own temporary root.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kubelab::executor::{Executor, RunOptions, RunReport};
use kubelab::inventory::{Host, Inventory};
use kubelab::output::{JsonSink, LogSink, Reporter, Status};
use kubelab::plan::Plan;
use kubelab::playbook::{self, Playbook};
use kubelab::redact::Redactor;
use kubelab::template::Templates;
use kubelab::transport::local::LocalTransport;

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn load(text: &str) -> Playbook {
    let templates = Templates::default();
    match playbook::load_str(Path::new("test.yaml"), text, &templates) {
        Ok(p) => p,
        Err(d) => panic!("invalid playbook:\n{}", d.render(false)),
    }
}

struct Lab {
    dir: tempfile::TempDir,
    hosts: Vec<String>,
}

impl Lab {
    fn new(hosts: &[&str]) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        for h in hosts {
            std::fs::create_dir_all(dir.path().join(h)).unwrap();
        }
        Lab {
            dir,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }
    fn root(&self, host: &str) -> PathBuf {
        self.dir.path().join(host)
    }
    fn inventory(&self, groups: &[(&str, &[&str])]) -> Inventory {
        let mut inv = Inventory::new(Default::default());
        for h in &self.hosts {
            let mut vars = kubelab::lab::model::Vars::new();
            vars.insert("root".into(), self.root(h).display().to_string().into());
            vars.insert("address".into(), "192.0.2.10".into());
            inv.add(Host {
                name: h.clone(),
                groups: groups
                    .iter()
                    .filter(|(_, members)| members.contains(&h.as_str()))
                    .map(|(g, _)| g.to_string())
                    .collect(),
                vars,
                transport: Arc::new(LocalTransport::new(h.clone())),
            });
        }
        inv
    }
}

struct Run {
    report: RunReport,
    events: Vec<serde_json::Value>,
    log: String,
}

async fn run_with(pb: &Playbook, inventory: Inventory, options: RunOptions) -> Run {
    let buf = SharedBuf::default();
    let logdir = tempfile::tempdir().unwrap();
    let log_path = logdir.path().join("run.log");
    let redactor = Redactor::new();
    let reporter = Reporter::new(redactor)
        .with_sink(Box::new(JsonSink::new(buf.clone())))
        .with_sink(Box::new(LogSink::create(&log_path).unwrap()));
    let reporter = Arc::new(reporter);
    let exec = Executor::new(
        inventory,
        Arc::new(Templates::default()),
        reporter.clone(),
        options,
    );
    let report = exec.run(pb).await;
    drop(exec);
    drop(reporter);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let events = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let log = std::fs::read_to_string(&log_path).unwrap();
    Run {
        report,
        events,
        log,
    }
}

async fn run(pb: &Playbook, lab: &Lab) -> Run {
    run_with(pb, lab.inventory(&[]), RunOptions::default()).await
}

async fn check(pb: &Playbook, lab: &Lab) -> Run {
    run_with(
        pb,
        lab.inventory(&[]),
        RunOptions {
            check: true,
            ..Default::default()
        },
    )
    .await
}

fn statuses(r: &RunReport, host: &str) -> Vec<(String, Status)> {
    r.host_records(host)
        .map(|s| (s.step.clone(), s.status))
        .collect()
}

fn status_of(r: &RunReport, host: &str, step: &str) -> Status {
    r.host_records(host)
        .find(|s| s.step == step)
        .unwrap_or_else(|| panic!("no step {step} on {host}: {:?}", statuses(r, host)))
        .status
}

fn read(p: PathBuf) -> String {
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn mode(p: PathBuf) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A module that is loaded or built in (its /sys/module directory exists).
fn present_kernel_module() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/sys/module")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names.into_iter().next().unwrap()
}

const MODULES: &str = r#"
- name: modules
  hosts: all
  vars:
    greeting: "hello {{ inventory_hostname }}"
  steps:
    - name: dir
      file: { path: "{{ root }}/d/e", state: directory, mode: "0750" }
    - name: touch
      file: { path: "{{ root }}/d/t", state: touch, mode: 0600 }
    - name: link
      file: { path: "{{ root }}/d/l", state: link, src: "{{ root }}/d/t" }
    - name: gone
      file: { path: "{{ root }}/old", state: absent }
    - name: copy
      copy: { dest: "{{ root }}/d/c.txt", content: "{{ greeting }}\n", mode: "0640" }
    - name: template
      template: { src: bench/kubeadm.yaml.j2, dest: "{{ root }}/d/kubeadm.yaml", mode: "0600" }
      vars_note: ignored
"#;

#[tokio::test]
async fn unknown_step_keys_are_reported() {
    let err = playbook::load_str(Path::new("m.yaml"), MODULES, &Templates::default()).unwrap_err();
    let d = &err.0[0];
    assert_eq!(d.location(), "m.yaml:19:7");
    assert!(
        d.message.contains("unknown step key `vars_note`"),
        "{}",
        d.message
    );
}

const ALL_MODULES: &str = r#"
- name: modules
  hosts: all
  vars:
    greeting: "hello {{ inventory_hostname }}"
    pod_cidr: 10.244.0.0/16
    service_cidr: 10.96.0.0/12
    kube_version: "1.31.2"
  steps:
    - name: dir
      file: { path: "{{ root }}/d/e", state: directory, mode: "0750" }
    - name: touch
      file: { path: "{{ root }}/d/t", state: touch, mode: 0600 }
    - name: link
      file: { path: "{{ root }}/d/l", state: link, src: "{{ root }}/d/t" }
    - name: gone
      file: { path: "{{ root }}/old", state: absent }
    - name: copy
      copy: { dest: "{{ root }}/d/c.txt", content: "{{ greeting }}\n", mode: "0640" }
    - name: template
      template: { src: bench/kubeadm.yaml.j2, dest: "{{ root }}/d/kubeadm.yaml", mode: "0600" }
    - name: line append
      line: { path: "{{ root }}/d/hosts", line: "10.0.0.1 a", create: true }
    - name: line replace
      line: { path: "{{ root }}/d/conf", line: "port=2", regexp: "^port=" }
    - name: sysctl
      sysctl: { name: kernel.ostype, value: Linux, persist: "{{ root }}/d/sysctl.conf" }
    - name: modprobe
      modprobe: { name: "{{ kmod }}", persist: "{{ root }}/d/modules.conf" }
    - name: command with creates
      command: { argv: [touch, "{{ root }}/d/created"], creates: "{{ root }}/d/created" }
    - name: shell with unless
      shell: { script: "echo x >> {{ (root ~ '/d/unless') | quote }}", unless: "grep -q x {{ (root ~ '/d/unless') | quote }}" }
    - name: fetch
      fetch: { path: "{{ root }}/d/c.txt" }
      register: fetched
    - name: assert
      assert: { that: ["fetched.content == greeting ~ '\n'", "facts.kernel | length > 0"] }
    - name: package present
      package: { names: [coreutils] }
    - name: package absent
      package: { names: [kubelab-no-such-package], state: absent }
    - name: service
      service: { name: kubelab-no-such.service, state: started, optional: true }
"#;

#[tokio::test]
async fn every_module_changes_then_is_idempotent() {
    let lab = Lab::new(&["h1"]);
    let root = lab.root("h1");
    std::fs::write(root.join("old"), "x").unwrap();
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::write(root.join("d/conf"), "a=1\nport=1\nb=2\n").unwrap();
    let text = ALL_MODULES.replace("{{ kmod }}", &present_kernel_module());
    let pb = load(&text);
    let first = run(&pb, &lab).await;
    assert!(first.report.success(), "{}", first.report.summary.render());
    for step in [
        "dir",
        "touch",
        "link",
        "gone",
        "copy",
        "template",
        "line append",
        "line replace",
        "sysctl",
        "modprobe",
        "command with creates",
        "shell with unless",
    ] {
        assert_eq!(
            status_of(&first.report, "h1", step),
            Status::Changed,
            "{step}"
        );
    }
    for step in ["fetch", "assert", "package present", "package absent"] {
        assert_eq!(status_of(&first.report, "h1", step), Status::Ok, "{step}");
    }
    assert_eq!(status_of(&first.report, "h1", "service"), Status::Skipped);
    assert_eq!(mode(root.join("d/e")), 0o750);
    assert_eq!(mode(root.join("d/t")), 0o600);
    assert_eq!(
        std::fs::read_link(root.join("d/l")).unwrap(),
        root.join("d/t")
    );
    assert!(!root.join("old").exists());
    assert_eq!(read(root.join("d/c.txt")), "hello h1\n");
    assert_eq!(mode(root.join("d/c.txt")), 0o640);
    let kubeadm = read(root.join("d/kubeadm.yaml"));
    assert!(
        kubeadm.contains("advertiseAddress: 192.0.2.10\n"),
        "{kubeadm}"
    );
    assert!(kubeadm.contains("name: h1\n") && kubeadm.contains("podSubnet: 10.244.0.0/16\n"));
    assert_eq!(read(root.join("d/hosts")), "10.0.0.1 a\n");
    assert_eq!(read(root.join("d/conf")), "a=1\nport=2\nb=2\n");
    assert_eq!(read(root.join("d/sysctl.conf")), "kernel.ostype = Linux\n");
    assert_eq!(
        read(root.join("d/modules.conf")),
        format!("{}\n", present_kernel_module())
    );
    assert!(root.join("d/created").exists());
    assert_eq!(read(root.join("d/unless")), "x\n");

    let second = run(&pb, &lab).await;
    assert!(
        second.report.success(),
        "{}",
        second.report.summary.render()
    );
    assert_eq!(
        second.report.changed_count(),
        0,
        "{:?}",
        statuses(&second.report, "h1")
    );
    assert_eq!(read(root.join("d/unless")), "x\n");

    // A mode drift is repaired without rewriting content.
    std::fs::set_permissions(
        root.join("d/c.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let third = run(&pb, &lab).await;
    assert_eq!(status_of(&third.report, "h1", "copy"), Status::Changed);
    assert_eq!(third.report.changed_count(), 1);
    assert_eq!(mode(root.join("d/c.txt")), 0o640);
}

#[tokio::test]
async fn service_without_systemd_fails_clearly_and_package_check_mode() {
    let facts = kubelab::facts::gather(&LocalTransport::new("here"))
        .await
        .unwrap();
    let lab = Lab::new(&["h1"]);
    let pb = load(
        r#"
- name: p
  hosts: all
  steps:
    - name: missing package
      package: { names: [kubelab-no-such-package] }
    - name: svc
      service: { name: kubelab-no-such.service, state: started }
"#,
    );
    let r = check(&pb, &lab).await;
    let pkg = r
        .report
        .host_records("h1")
        .find(|s| s.step == "missing package")
        .unwrap();
    if facts.package_manager == kubelab::facts::PackageManager::None {
        assert_eq!(pkg.status, Status::Failed);
    } else {
        assert_eq!(pkg.status, Status::Changed);
        assert!(
            pkg.message
                .contains("would install kubelab-no-such-package"),
            "{}",
            pkg.message
        );
    }
    if !facts.systemd && pkg.status != Status::Failed {
        let svc = r
            .report
            .host_records("h1")
            .find(|s| s.step == "svc")
            .unwrap();
        assert_eq!(svc.status, Status::Failed);
        assert!(
            svc.message.contains("does not run systemd"),
            "{}",
            svc.message
        );
        assert_eq!(r.report.exit_code(), 1);
    }
}

#[tokio::test]
async fn check_mode_changes_nothing_and_shows_diffs() {
    let lab = Lab::new(&["h1"]);
    let root = lab.root("h1");
    std::fs::write(root.join("c.txt"), "old line\nsame\n").unwrap();
    std::fs::write(root.join("conf"), "port=1\n").unwrap();
    let pb = load(
        r#"
- name: c
  hosts: all
  steps:
    - name: copy
      copy: { dest: "{{ root }}/c.txt", content: "new line\nsame\n" }
    - name: template
      template: { src: bench/modules.conf.j2, dest: "{{ root }}/modules.conf" }
    - name: line
      line: { path: "{{ root }}/conf", line: "port=2", regexp: "^port=" }
    - name: dir
      file: { path: "{{ root }}/newdir", state: directory }
    - name: cmd
      command: [touch, "{{ root }}/touched"]
    - name: readonly cmd
      command: [cat, "{{ root }}/conf"]
      register: conf
      changed_when: false
"#,
    );
    let r = check(&pb, &lab).await;
    assert!(r.report.success(), "{}", r.report.summary.render());
    for step in ["copy", "template", "line", "dir", "cmd"] {
        assert_eq!(status_of(&r.report, "h1", step), Status::Changed, "{step}");
    }
    assert_eq!(status_of(&r.report, "h1", "readonly cmd"), Status::Ok);
    let rec = |name: &str| {
        r.report
            .host_records("h1")
            .find(|s| s.step == name)
            .unwrap()
            .clone()
    };
    let d = rec("copy").diff.unwrap();
    assert!(
        d.contains("-old line\n") && d.contains("+new line\n") && d.contains(" same\n"),
        "{d}"
    );
    assert!(
        rec("template")
            .diff
            .unwrap()
            .contains("+overlay\n+br_netfilter\n")
    );
    assert!(rec("line").diff.unwrap().contains("-port=1\n+port=2\n"));
    assert_eq!(rec("readonly cmd").stdout, "port=1\n");
    // Nothing changed on disk.
    assert_eq!(read(root.join("c.txt")), "old line\nsame\n");
    assert_eq!(read(root.join("conf")), "port=1\n");
    assert!(!root.join("modules.conf").exists());
    assert!(!root.join("newdir").exists());
    assert!(!root.join("touched").exists());
    // The plan shows it per host.
    let plan = Plan::from_report(&r.report, &pb, &Redactor::new());
    assert_eq!(plan.change_count(), 5);
    let text = plan.render(false);
    assert!(text.contains("h1: copy → would change"), "{text}");
    assert!(text.contains("      +new line"), "{text}");
    assert!(!text.contains("readonly cmd"), "{text}");
    assert_eq!(
        plan.hosts[0].steps[0].params["copy"]["dest"],
        format!("{}/c.txt", root.display())
    );
}

#[tokio::test]
async fn when_loop_register_and_until() {
    let lab = Lab::new(&["h1"]);
    let root = lab.root("h1");
    let pb = load(
        r#"
- name: flow
  hosts: all
  vars:
    names: [a, b, c]
  steps:
    - name: skipped
      command: [touch, "{{ root }}/never"]
      when: inventory_hostname == "other"
    - name: loop list
      copy: { dest: "{{ root }}/{{ item }}", content: "{{ item }}" }
      loop: [x, y]
    - name: loop expr with when
      command: [touch, "{{ root }}/{{ item }}"]
      loop: names
      when: item != "b"
      register: touched
    - name: count the loop
      assert:
        that:
          - touched.results | length == 3
          - touched.results[1].skipped
          - touched.changed
    - name: eventually
      shell: 'n=$(cat {{ (root ~ "/n") | quote }} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {{ (root ~ "/n") | quote }}; echo $n'
      register: counter
      until: counter.stdout | int >= 3
      retries: 5
      delay: 0
    - name: never enough
      command: [echo, "1"]
      until: result.stdout == "2"
      retries: 2
      delay: 0
"#,
    );
    let r = run(&pb, &lab).await;
    assert_eq!(status_of(&r.report, "h1", "skipped"), Status::Skipped);
    assert!(!root.join("never").exists());
    assert_eq!(read(root.join("x")), "x");
    assert_eq!(read(root.join("y")), "y");
    assert!(root.join("a").exists() && !root.join("b").exists() && root.join("c").exists());
    assert_eq!(status_of(&r.report, "h1", "count the loop"), Status::Ok);
    assert_eq!(status_of(&r.report, "h1", "eventually"), Status::Changed);
    assert_eq!(read(root.join("n")), "3\n");
    let never = r
        .report
        .host_records("h1")
        .find(|s| s.step == "never enough")
        .unwrap();
    assert_eq!(never.status, Status::Failed);
    assert!(
        never.message.contains("after 3 attempt(s)"),
        "{}",
        never.message
    );
    assert_eq!(r.report.exit_code(), 1);
}

#[tokio::test]
async fn plays_are_barriers_and_registered_values_flow_between_hosts() {
    let lab = Lab::new(&["cp1", "w1", "w2"]);
    let inv = lab.inventory(&[("control-plane", &["cp1"]), ("worker", &["w1", "w2"])]);
    let pb = load(
        r#"
- name: make a join command
  hosts: control-plane[0]
  steps:
    - name: join command
      shell: "echo kubeadm join --token $(echo abc.def)"
      register: join
- name: use it
  hosts: worker:!cp1
  steps:
    - name: write join command
      copy:
        dest: "{{ root }}/join"
        content: "{{ hostvars[groups['control-plane'][0]].join.stdout }}\n"
"#,
    );
    let r = run_with(&pb, inv, RunOptions::default()).await;
    assert!(r.report.success(), "{}", r.report.summary.render());
    for w in ["w1", "w2"] {
        assert_eq!(
            read(lab.root(w).join("join")),
            "kubeadm join --token abc.def\n"
        );
    }
    assert!(!lab.root("cp1").join("join").exists());
    // Barrier: every step of play 1 ended before any step of play 2 started.
    let pos = |pred: &dyn Fn(&serde_json::Value) -> bool| r.events.iter().position(pred).unwrap();
    let end_play1 = pos(&|e| e["event"] == "play_end" && e["play"] == "make a join command");
    let start_w = pos(&|e| e["event"] == "step_start" && e["step"] == "write join command");
    assert!(end_play1 < start_w);
}

#[tokio::test]
async fn play_when_skips_a_whole_play_before_resolving_its_hosts() {
    let lab = Lab::new(&["h1", "h2"]);
    let mut inv = lab.inventory(&[("node", &["h1", "h2"])]);
    inv.vars.insert("mode".into(), "host".into());
    let pb = load(
        r#"
- name: host mode
  hosts: node
  gather_facts: false
  when: mode == 'host' and groups.node | length == 2
  steps:
    - name: marker
      copy: {dest: "{{ root }}/marker", content: "x\n"}
- name: cluster mode
  hosts: control-plane[0]
  gather_facts: false
  when: mode == 'kubernetes'
  steps:
    - name: never
      copy: {dest: "{{ root }}/never", content: "y\n"}
"#,
    );
    let r = run_with(&pb, inv, RunOptions::default()).await;
    assert!(r.report.success(), "{}", r.report.summary.render());
    for h in ["h1", "h2"] {
        assert!(lab.root(h).join("marker").exists());
        assert!(!lab.root(h).join("never").exists());
        assert_eq!(
            statuses(&r.report, h),
            [("marker".to_string(), Status::Changed)]
        );
    }
    // The skipped play is announced with no hosts.
    assert!(r.events.iter().any(|e| e["event"] == "play_start"
        && e["play"] == "cluster mode"
        && e["hosts"].as_array().is_some_and(|h| h.is_empty())));
    // --var decides too (here: the cluster play, whose hosts do not exist:
    // invalid input); a condition that cannot be evaluated fails the run.
    let r = run_with(
        &pb,
        lab.inventory(&[("node", &["h1", "h2"])]),
        RunOptions {
            extra_vars: [("mode".to_string(), "kubernetes".into())].into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(r.report.exit_code(), 2);
    assert!(
        r.report.summary.failures[0]
            .message
            .contains("control-plane"),
        "{}",
        r.report.summary.render()
    );
    let broken = load("- name: p\n  hosts: all\n  when: nope.x == 1\n  steps: []\n");
    let r = run_with(&broken, lab.inventory(&[]), RunOptions::default()).await;
    assert_eq!(r.report.exit_code(), 1);
    assert!(r.report.summary.failures[0].message.contains("when"));
    // A broken play condition is reported with its position at load time.
    let err = playbook::load_str(
        Path::new("bad.yaml"),
        "- name: p\n  hosts: all\n  when: \"a ==\"\n  steps: []\n",
        &Templates::default(),
    )
    .unwrap_err()
    .render(false);
    assert!(err.contains("bad.yaml:3:9"), "{err}");
}

#[tokio::test]
async fn a_failing_host_stops_but_others_finish() {
    let lab = Lab::new(&["h1", "h2"]);
    let pb = load(
        r#"
- name: one
  hosts: all
  steps:
    - name: fail on h1
      shell: "echo boom-on-stderr >&2; exit 7"
      when: inventory_hostname == "h1"
    - name: after
      copy: { dest: "{{ root }}/after", content: "x" }
- name: two
  hosts: all
  steps:
    - name: second play
      copy: { dest: "{{ root }}/second", content: "x" }
"#,
    );
    let r = run(&pb, &lab).await;
    assert_eq!(r.report.exit_code(), 1);
    assert!(lab.root("h2").join("after").exists());
    assert!(lab.root("h2").join("second").exists());
    assert!(!lab.root("h1").join("after").exists());
    assert!(!lab.root("h1").join("second").exists());
    let f = &r.report.summary.failures;
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].host, "h1");
    assert_eq!(f[0].step, "fail on h1");
    assert_eq!(f[0].location, "test.yaml:5:7");
    assert_eq!(f[0].stderr_tail, "boom-on-stderr");
    let text = r.report.summary.render();
    assert!(
        text.contains("FAILED h1 | fail on h1 (test.yaml:5:7)"),
        "{text}"
    );
    let h1 = r
        .report
        .summary
        .hosts
        .iter()
        .find(|h| h.host == "h1")
        .unwrap();
    assert_eq!((h1.failed, h1.changed), (1, 0));
    let h2 = r
        .report
        .summary
        .hosts
        .iter()
        .find(|h| h.host == "h2")
        .unwrap();
    assert_eq!((h2.failed, h2.changed, h2.skipped), (0, 2, 1));
    assert!(r.log.contains("boom-on-stderr"));
}

/// `any_errors_fatal: true`: a gate. A host failing in that play stops
/// the playbook for every host after the play; without failures it is a
/// play like any other.
#[tokio::test]
async fn a_fatal_play_stops_every_host_after_it() {
    let lab = Lab::new(&["h1", "h2"]);
    let text = |fail: bool| {
        format!(
            r#"
- name: gate
  hosts: h1
  any_errors_fatal: true
  steps:
    - name: check
      command: [{}]
- name: work
  hosts: all
  steps:
    - name: after the gate
      copy: {{ dest: "{{{{ root }}}}/after", content: "x" }}
"#,
            if fail { "false" } else { "true" }
        )
    };
    let r = run(&load(&text(true)), &lab).await;
    assert_eq!(r.report.exit_code(), 1);
    assert!(
        !lab.root("h2").join("after").exists(),
        "h2 got past the gate"
    );
    assert_eq!(r.report.summary.failures.len(), 1);
    assert_eq!(r.report.summary.failures[0].step, "check");
    let r = run(&load(&text(false)), &lab).await;
    assert_eq!(r.report.exit_code(), 0);
    assert!(lab.root("h1").join("after").exists());
    assert!(lab.root("h2").join("after").exists());
}

#[test]
fn validation_reports_every_error_with_position() {
    let text = r#"- name: bad
  hosts: "a b"
  steps:
    - name: two modules
      command: [true]
      shell: "true"
    - name: typo
      comand: [true]
    - name: bad mode
      file: { path: /x, mode: "0999" }
    - name: bad expr
      command: [true]
      when: "a =="
    - name: unknown template
      template: { src: nope.j2, dest: /x }
    - name: wrong field
      copy: { dest: /x, contents: y }
    - name: bad register
      command: [true]
      register: "not a name"
- name: no steps key typo
  hostz: all
  steps: []
"#;
    let err = playbook::load_str(Path::new("p.yaml"), text, &Templates::default()).unwrap_err();
    let got: Vec<(String, String)> = err
        .0
        .iter()
        .map(|d| (d.location(), d.message.clone()))
        .collect();
    let expect = [
        ("p.yaml:2:10", "not a group or host name"),
        ("p.yaml:6:7", "exactly one module"),
        (
            "p.yaml:8:7",
            "unknown step key `comand`, did you mean `command`?",
        ),
        ("p.yaml:10:31", "expected an octal mode"),
        ("p.yaml:13:13", "invalid expression `a ==`"),
        ("p.yaml:15:24", "no template `nope.j2`"),
        (
            "p.yaml:17:25",
            "unknown field `contents`, did you mean `content`?",
        ),
        ("p.yaml:20:17", "not a variable name"),
        ("p.yaml:22:3", "unknown field `hostz`"),
    ];
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for ((loc, msg), (eloc, emsg)) in got.iter().zip(expect) {
        assert_eq!(loc, eloc, "{msg}");
        assert!(msg.contains(emsg), "{loc}: {msg}");
    }
}

#[tokio::test]
async fn hostile_values_arrive_byte_exact_without_side_effects() {
    let lab = Lab::new(&["h1"]);
    let root = lab.root("h1");
    let hostile = format!(
        "; rm -rf {r}/victim $(touch {r}/pwned) `touch {r}/pwned2` 'single' \"double\"\nsecond line $HOME",
        r = root.display()
    );
    std::fs::write(root.join("victim"), "keep").unwrap();
    let pb = load(
        r#"
- name: hostile
  hosts: all
  steps:
    - name: argv
      command: [printf, "%s", "{{ evil }}"]
      register: argv
    - name: shell
      shell: "printf %s {{ evil | quote }} > {{ (root ~ '/out') | quote }}"
    - name: copy
      copy: { dest: "{{ root }}/copied", content: "{{ evil }}" }
"#,
    );
    let mut extra = kubelab::lab::model::Vars::new();
    extra.insert("evil".into(), hostile.clone().into());
    let r = run_with(
        &pb,
        lab.inventory(&[]),
        RunOptions {
            extra_vars: extra,
            ..Default::default()
        },
    )
    .await;
    assert!(r.report.success(), "{}", r.report.summary.render());
    let argv = r.report.host_records("h1").next().unwrap();
    assert_eq!(argv.stdout, hostile);
    assert_eq!(read(root.join("out")), hostile);
    assert_eq!(read(root.join("copied")), hostile);
    assert_eq!(read(root.join("victim")), "keep");
    assert!(!root.join("pwned").exists() && !root.join("pwned2").exists());
}

#[tokio::test]
async fn secrets_are_redacted_in_events_and_log() {
    let lab = Lab::new(&["h1"]);
    let pb = load(
        r#"
- name: s
  hosts: all
  vars:
    admin_password: "Sup3rSecretPw"
  steps:
    - name: make token
      shell: "echo tok-9f8e7d6c5b4a"
      register: token_out
      secret: true
    - name: echo it
      shell: "echo using {{ token_out.stdout | quote }} and {{ admin_password | quote }}"
    - name: write it
      copy: { dest: "{{ root }}/t", content: "{{ token_out.stdout }}\n" }
"#,
    );
    let r = run(&pb, &lab).await;
    assert!(r.report.success(), "{}", r.report.summary.render());
    // The real value reached the host…
    assert_eq!(read(lab.root("h1").join("t")), "tok-9f8e7d6c5b4a\n");
    // …and no sink saw it.
    let all_events = serde_json::to_string(&r.events).unwrap();
    for secret in ["tok-9f8e7d6c5b4a", "Sup3rSecretPw"] {
        assert!(!all_events.contains(secret), "{all_events}");
        assert!(!r.log.contains(secret), "{}", r.log);
    }
    assert!(
        all_events.contains("using [REDACTED] and [REDACTED]"),
        "{all_events}"
    );
    assert!(r.log.contains("+[REDACTED]"), "{}", r.log);
}

#[tokio::test]
async fn bench_playbook_runs_and_second_run_changes_nothing() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/playbooks/nodeprep-bench.yaml"
    ))
    .unwrap();
    let pb = load(&text);
    // `bench_root` moves the work tree out of /tmp/kl-bench-work.
    let work = tempfile::tempdir().unwrap();
    let hosts = ["bench-a".to_string(), "bench-b".to_string()];
    let mut inv = Inventory::new(
        [(
            "bench_root".to_string(),
            serde_json::json!(work.path().display().to_string()),
        )]
        .into(),
    );
    for (i, h) in hosts.iter().enumerate() {
        let mut vars = kubelab::lab::model::Vars::new();
        vars.insert("address".into(), format!("10.250.0.{}", 11 + i).into());
        inv.add(Host {
            name: h.clone(),
            groups: vec![],
            vars,
            transport: Arc::new(LocalTransport::new(h.clone())),
        });
    }
    let first = run_with(&pb, inv.clone(), RunOptions::default()).await;
    assert!(first.report.success(), "{}", first.report.summary.render());
    let root = work.path().join(&hosts[0]);
    assert_eq!(first.report.host_records(&hosts[0]).count(), 14);
    assert_eq!(
        read(root.join("etc/hosts")),
        format!("10.250.0.11 {}\n", hosts[0])
    );
    assert_eq!(mode(root.join("etc/kubernetes/kubeadm.yaml")), 0o600);
    assert_eq!(
        read(root.join("var/lib/kubelet/extra-args")),
        "KUBELET_EXTRA_ARGS=--node-ip=10.250.0.11\n"
    );
    assert!(read(root.join("etc/cni/net.d/10-bridge.conflist")).contains("10.244.0.0/16"));
    let kernel = read(PathBuf::from("/proc/sys/kernel/osrelease"));
    assert_eq!(read(root.join("prepared")), kernel);
    let second = run_with(&pb, inv, RunOptions::default()).await;
    assert!(second.report.success());
    assert_eq!(
        second.report.changed_count(),
        0,
        "{:?}",
        statuses(&second.report, &hosts[0])
    );
}

#[tokio::test]
async fn an_unreachable_host_gives_exit_code_3_and_others_run() {
    let lab = Lab::new(&["h1"]);
    let mut inv = lab.inventory(&[]);
    let mut vars = kubelab::lab::model::Vars::new();
    vars.insert("root".into(), "/nonexistent".into());
    inv.add(Host {
        name: "gone".into(),
        groups: vec![],
        vars,
        transport: Arc::new(kubelab::inventory::UnreachableTransport::new(
            "gone",
            "connection refused",
        )),
    });
    let pb = load(
        r#"
- name: p
  hosts: all
  steps:
    - name: write
      copy: { dest: "{{ root }}/f", content: "x" }
"#,
    );
    let r = run_with(&pb, inv, RunOptions::default()).await;
    assert_eq!(r.report.exit_code(), 3);
    assert!(lab.root("h1").join("f").exists());
    let gone = r
        .report
        .summary
        .hosts
        .iter()
        .find(|h| h.host == "gone")
        .unwrap();
    assert!(gone.unreachable);
    let f = r
        .report
        .summary
        .failures
        .iter()
        .find(|f| f.host == "gone")
        .unwrap();
    assert!(f.message.contains("connection refused"), "{}", f.message);
    assert!(r.report.summary.render().contains("UNREACHABLE"));
}

#[tokio::test]
async fn wait_for_port_path_and_command_with_bounded_polls() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let lab = Lab::new(&["h1"]);
    std::fs::write(lab.root("h1").join("ready"), "").unwrap();
    let pb = load(&format!(
        r#"
- name: w
  hosts: all
  steps:
    - name: port
      wait_for: {{ port: {port}, timeout: 5 }}
    - name: path
      wait_for: {{ path: "{{{{ root }}}}/ready", timeout: 5 }}
    - name: command
      wait_for: {{ command: [test, -e, "{{{{ root }}}}/ready"], timeout: 5 }}
    - name: never
      wait_for: {{ path: "{{{{ root }}}}/never", timeout: 0.3, interval: 0.1 }}
"#
    ));
    let r = run(&pb, &lab).await;
    for step in ["port", "path", "command"] {
        assert_eq!(status_of(&r.report, "h1", step), Status::Ok, "{step}");
    }
    let never = r
        .report
        .host_records("h1")
        .find(|s| s.step == "never")
        .unwrap();
    assert_eq!(never.status, Status::Failed);
    assert!(never.message.contains("timed out"), "{}", never.message);
    assert!(never.duration < std::time::Duration::from_secs(5));
    drop(listener);
}

#[tokio::test]
async fn fetched_secret_content_is_redacted_but_usable() {
    let lab = Lab::new(&["h1"]);
    std::fs::write(lab.root("h1").join("key"), "PRIVATE-KEY-MATERIAL-123\n").unwrap();
    let pb = load(
        r#"
- name: f
  hosts: all
  steps:
    - name: fetch key
      fetch: { path: "{{ root }}/key" }
      register: key
      secret: true
    - name: copy key
      copy: { dest: "{{ root }}/key2", content: "{{ key.content }}" }
      secret: true
    - name: show key
      command: [echo, "{{ key.content | trim }}"]
"#,
    );
    let r = run(&pb, &lab).await;
    assert!(r.report.success(), "{}", r.report.summary.render());
    assert_eq!(
        read(lab.root("h1").join("key2")),
        "PRIVATE-KEY-MATERIAL-123\n"
    );
    let all = serde_json::to_string(&r.events).unwrap();
    assert!(!all.contains("PRIVATE-KEY-MATERIAL-123"), "{all}");
    assert!(!r.log.contains("PRIVATE-KEY-MATERIAL-123"), "{}", r.log);
    assert!(all.contains("diff of a secret step"), "{all}");
}

#[tokio::test]
async fn play_vars_render_in_the_order_written() {
    let lab = Lab::new(&["h1"]);
    // `z_net` sorts after `a_first`: each variable sees only those above it.
    let pb = load(
        r#"
- name: v
  hosts: all
  gather_facts: false
  vars:
    z_net: 10.1.2.0/24
    a_first: "{{ z_net | nthhost(7) }}"
    m_last: "{{ a_first }}/{{ z_net | prefixlen }}"
  steps:
    - name: show
      command: [echo, "{{ m_last }}"]
      register: out
"#,
    );
    let r = run(&pb, &lab).await;
    assert!(r.report.success(), "{:?}", r.report.summary);
    let rec = r.report.host_records("h1").next().unwrap();
    assert_eq!(rec.stdout.trim(), "10.1.2.7/24");
    let err = playbook::load_str(
        Path::new("x.yaml"),
        "- name: p\n  hosts: all\n  vars: {a: 1, a: 2}\n  steps: []\n",
        &Templates::default(),
    )
    .unwrap_err();
    assert!(
        err.render(false).contains("x.yaml:3"),
        "{}",
        err.render(false)
    );
}

#[tokio::test]
async fn changed_when_inside_command_parameters() {
    let lab = Lab::new(&["h1"]);
    let pb = load(
        r#"
- name: c
  hosts: all
  steps:
    - name: read-only
      command: { argv: [echo, hi], changed_when: false }
    - name: by output
      shell: { script: "echo nothing to do", changed_when: "'changed' in result.stdout" }
"#,
    );
    let r = run(&pb, &lab).await;
    assert_eq!(status_of(&r.report, "h1", "read-only"), Status::Ok);
    assert_eq!(status_of(&r.report, "h1", "by output"), Status::Ok);
    let err = playbook::load_str(
        Path::new("x.yaml"),
        "- name: p\n  hosts: all\n  steps:\n    - name: s\n      command: { argv: [true], changed_when: \"a ==\" }\n      changed_when: false\n",
        &Templates::default(),
    )
    .unwrap_err();
    assert_eq!(err.0.len(), 1, "{}", err.render(false));
    assert_eq!(err.0[0].location(), "x.yaml:5:32");
    assert!(err.0[0].message.contains("both here and on the step"));
}

#[test]
fn unquoted_values_in_shell_scripts_are_rejected() {
    let text = "- name: p\n  hosts: all\n  steps:\n    - name: bad\n      shell: \"rm -rf {{ dir }}\"\n    - name: fine\n      shell: \"rm -rf {{ dir | quote }}; sleep {{ n | int }}\"\n    - name: bad unless\n      command: { argv: [\"true\"], unless: \"test -e {{ f }}\" }\n";
    let err = playbook::load_str(Path::new("s.yaml"), text, &Templates::default()).unwrap_err();
    let got: Vec<String> = err
        .0
        .iter()
        .map(|d| format!("{} {}", d.location(), d.message))
        .collect();
    assert_eq!(
        got,
        [
            "s.yaml:5:14 `{{ dir }}` is pasted into a shell script unquoted",
            "s.yaml:9:42 `{{ f }}` is pasted into a shell script unquoted",
        ]
    );
}

#[tokio::test]
async fn a_file_loop_gives_per_item_results_and_stops_at_the_first_failing_item() {
    let lab = Lab::new(&["h1"]);
    let root = lab.root("h1");
    std::fs::write(root.join("blocker"), "a file, not a directory").unwrap();
    let pb = load(
        r#"
- name: dirs
  hosts: all
  steps:
    - name: good directories
      file: { path: "{{ root }}/{{ item }}", state: directory, mode: "0750" }
      loop: [a, b/c, a]
      register: good
    - name: per item
      assert:
        that:
          - good.results | length == 3
          - good.results[0].changed
          - good.results[1].changed
          - not good.results[2].changed
          - good.results[1].item == "b/c"
    - name: blocked directories
      file: { path: "{{ root }}/{{ item }}", state: directory }
      loop: [d, blocker, e]
"#,
    );
    let r = run(&pb, &lab).await;
    assert_eq!(
        status_of(&r.report, "h1", "good directories"),
        Status::Changed
    );
    assert_eq!(status_of(&r.report, "h1", "per item"), Status::Ok);
    assert_eq!(mode(root.join("b/c")), 0o750);
    let blocked = r
        .report
        .host_records("h1")
        .find(|s| s.step == "blocked directories")
        .unwrap();
    assert_eq!(blocked.status, Status::Failed);
    assert!(
        blocked.message.contains("is not a directory"),
        "{}",
        blocked.message
    );
    // Items before the failing one ran; the one after it did not.
    assert!(root.join("d").is_dir());
    assert!(!root.join("e").exists());
    assert_eq!(r.report.exit_code(), 1);
    // A second run of the good loop changes nothing.
    let again = run(&pb, &lab).await;
    assert_eq!(
        status_of(&again.report, "h1", "good directories"),
        Status::Ok
    );
}

#[tokio::test]
async fn fetch_keeps_a_local_copy_with_a_private_mode_and_only_rewrites_changes() {
    let lab = Lab::new(&["h1"]);
    std::fs::write(lab.root("h1").join("conf"), "server: a\n").unwrap();
    let local = lab.dir.path().join("here/state/h1.conf");
    let pb = load(&format!(
        r#"
- name: f
  hosts: all
  steps:
    - name: keep conf
      fetch: {{ path: "{{{{ root }}}}/conf", dest: "{}" }}
"#,
        local.display()
    ));
    let planned = check(&pb, &lab).await;
    assert_eq!(
        status_of(&planned.report, "h1", "keep conf"),
        Status::Changed
    );
    assert!(!local.exists(), "check mode wrote {}", local.display());
    let first = run(&pb, &lab).await;
    assert_eq!(status_of(&first.report, "h1", "keep conf"), Status::Changed);
    assert_eq!(read(local.clone()), "server: a\n");
    assert_eq!(mode(local.clone()), 0o600);
    let again = run(&pb, &lab).await;
    assert_eq!(status_of(&again.report, "h1", "keep conf"), Status::Ok);
    std::fs::write(lab.root("h1").join("conf"), "server: b\n").unwrap();
    let changed = run(&pb, &lab).await;
    assert_eq!(
        status_of(&changed.report, "h1", "keep conf"),
        Status::Changed
    );
    assert_eq!(read(local.clone()), "server: b\n");
    assert_eq!(mode(local), 0o600);
}

#[tokio::test]
async fn serial_plays_run_one_host_at_a_time_and_see_check_mode() {
    let lab = Lab::new(&["h1", "h2", "h3"]);
    let lock = lab.dir.path().join("one-at-a-time");
    let pb = load(&format!(
        r#"
- name: one by one
  hosts: all
  serial: 1
  steps:
    - name: take the lock
      command: [mkdir, "{lock}"]
    - name: hold it long enough for an overlap to show
      command: [sleep, "0.3"]
    - name: give it back
      command: [rmdir, "{lock}"]
    - name: check mode is visible
      assert: {{that: ["not kubelab_check_mode"]}}
"#,
        lock = lock.display()
    ));
    let r = run(&pb, &lab).await;
    assert!(r.report.success(), "{}", r.report.summary.render());
    let parallel = load(&format!(
        r#"
- name: all at once
  hosts: all
  steps:
    - name: take the lock
      command: [mkdir, "{lock}"]
    - name: hold it
      command: [sleep, "0.3"]
    - name: give it back
      command: [rmdir, "{lock}"]
"#,
        lock = lock.display()
    ));
    let r = run(&parallel, &lab).await;
    assert!(!r.report.success(), "without serial the hosts overlap");
    let _ = std::fs::remove_dir(&lock);
}

#[tokio::test]
async fn copy_sends_local_files_byte_for_byte() {
    let lab = Lab::new(&["h1"]);
    let local = lab.dir.path().join("blob");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    std::fs::write(&local, &bytes).unwrap();
    let pb = load(&format!(
        r#"
- name: c
  hosts: all
  steps:
    - name: binary
      copy: {{ src: "{}", dest: "{{{{ root }}}}/blob", mode: "0755" }}
"#,
        local.display()
    ));
    let r = run(&pb, &lab).await;
    assert!(r.report.success(), "{}", r.report.summary.render());
    assert_eq!(status_of(&r.report, "h1", "binary"), Status::Changed);
    assert_eq!(std::fs::read(lab.root("h1").join("blob")).unwrap(), bytes);
    assert_eq!(mode(lab.root("h1").join("blob")), 0o755);
    let again = run(&pb, &lab).await;
    assert_eq!(status_of(&again.report, "h1", "binary"), Status::Ok);
    let err = playbook::load_str(
        Path::new("c.yaml"),
        "- name: c\n  hosts: all\n  steps:\n    - name: both\n      copy: {src: a, content: b, dest: c}\n",
        &Templates::default(),
    )
    .unwrap_err()
    .render(false);
    assert!(err.contains("exactly one of `content` and `src`"), "{err}");
    assert!(err.contains("c.yaml:5:"), "{err}");
}

/// Runs of steps whose remote reads are asked ahead in one script (read-only
/// commands, directories, file states) behave exactly as step by step:
/// later steps see what earlier ones registered and wrote, each step has its
/// own result and diff, a second run changes nothing, drift is found, check
/// mode writes nothing.
#[tokio::test]
async fn steps_asked_ahead_behave_as_step_by_step() {
    let lab = Lab::new(&["h1"]);
    let root = lab.root("h1");
    let pb = load(
        r#"
- name: ahead
  hosts: all
  steps:
    - name: one
      command: [echo, one]
      register: one
      changed_when: false
    - name: uses one
      command: [echo, "{{ one.stdout }}-two"]
      register: two
      changed_when: false
    - name: no newline
      command: [printf, "x"]
      register: three
      changed_when: false
    - name: dirs
      file: { path: "{{ root }}/{{ item }}", state: directory, mode: "0750" }
      loop: [d1, d2]
    - name: conf
      copy: { dest: "{{ root }}/d1/conf", content: "a={{ two.stdout }}\n" }
    - name: conf line
      line: { path: "{{ root }}/d1/conf", line: "b=1" }
    - name: other
      copy: { dest: "{{ root }}/d2/other", content: "{{ three.stdout }}\n", mode: "0600" }
    - name: read back
      command: [cat, "{{ root }}/d1/conf"]
      register: back
      changed_when: false
    - name: all seen
      assert:
        that:
          - back.stdout == "a=one-two\nb=1"
          - three.stdout == "x"
          - one.rc == 0
"#,
    );
    let planned = check(&pb, &lab).await;
    assert_eq!(status_of(&planned.report, "h1", "dirs"), Status::Changed);
    assert_eq!(status_of(&planned.report, "h1", "conf"), Status::Changed);
    assert!(!root.join("d1").exists(), "check mode wrote");

    let first = run(&pb, &lab).await;
    let expected = [
        ("one", Status::Ok),
        ("uses one", Status::Ok),
        ("no newline", Status::Ok),
        ("dirs", Status::Changed),
        ("conf", Status::Changed),
        ("conf line", Status::Changed),
        ("other", Status::Changed),
        ("read back", Status::Ok),
        ("all seen", Status::Ok),
    ];
    let expected: Vec<(String, Status)> = expected
        .iter()
        .map(|(s, st)| (s.to_string(), *st))
        .collect();
    assert_eq!(statuses(&first.report, "h1"), expected);
    assert_eq!(read(root.join("d1/conf")), "a=one-two\nb=1\n");
    assert_eq!(mode(root.join("d2/other")), 0o600);
    assert_eq!(mode(root.join("d2")), 0o750);
    let conf = first
        .report
        .host_records("h1")
        .find(|s| s.step == "conf line")
        .unwrap();
    assert!(
        conf.diff.as_deref().unwrap_or("").contains("+b=1"),
        "{:?}",
        conf.diff
    );

    // Again: only the pair of steps that fight over one file changes (the
    // copy drops the line, the line comes back), which shows that the line
    // step read the file after the copy's write, not the state from before.
    let again = run(&pb, &lab).await;
    assert!(again.report.success());
    let changed: Vec<String> = again
        .report
        .host_records("h1")
        .filter(|s| s.status == Status::Changed)
        .map(|s| s.step.clone())
        .collect();
    assert_eq!(changed, ["conf", "conf line"]);
    assert_eq!(read(root.join("d1/conf")), "a=one-two\nb=1\n");

    // Drift: another mode on a directory, other content in a file.
    std::fs::set_permissions(
        root.join("d2"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    std::fs::write(root.join("d2/other"), "y\n").unwrap();
    let drift = run(&pb, &lab).await;
    assert_eq!(status_of(&drift.report, "h1", "dirs"), Status::Changed);
    assert_eq!(status_of(&drift.report, "h1", "other"), Status::Changed);
    assert_eq!(status_of(&drift.report, "h1", "read back"), Status::Ok);
    assert_eq!(mode(root.join("d2")), 0o750);
    assert_eq!(read(root.join("d2/other")), "x\n");
}

/// A failing command among read-only commands run together fails in its
/// own name, with its own output; the ones after it do not run.
#[tokio::test]
async fn a_failing_command_asked_ahead_is_named_and_stops_its_host() {
    let lab = Lab::new(&["h1"]);
    let root = lab.root("h1");
    let pb = load(
        r#"
- name: ahead
  hosts: all
  steps:
    - name: fine
      command: [echo, fine]
      changed_when: false
    - name: fails
      command: [sh, -c, "echo out; echo oops >&2; exit 3"]
      changed_when: false
    - name: never
      command: [touch, "{{ root }}/never"]
      changed_when: false
"#,
    );
    let r = run(&pb, &lab).await;
    assert_eq!(
        statuses(&r.report, "h1"),
        vec![
            ("fine".to_string(), Status::Ok),
            ("fails".to_string(), Status::Failed)
        ]
    );
    let fails = r
        .report
        .host_records("h1")
        .find(|s| s.step == "fails")
        .unwrap();
    assert_eq!(fails.stdout.trim(), "out");
    assert_eq!(fails.stderr.trim(), "oops");
    assert!(fails.message.contains('3'), "{}", fails.message);
    assert!(!root.join("never").exists());
    assert_eq!(r.report.summary.failures.len(), 1);
    assert_eq!(r.report.summary.failures[0].step, "fails");
}
