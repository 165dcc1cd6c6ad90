//! The HTML run report, opened in a real browser: `kubelab play` runs a
//! passing and a failing playbook on two OpenSSH servers in network
//! namespaces with `--report`; Debian's Chromium (headless, started by the
//! test, no network needed: the page is self-contained) renders each page;
//! the test asserts on the rendered DOM and keeps a 1280×800 screenshot of
//! each under target/test-artifacts/. Runs as root.

#[path = "support/browser.rs"]
mod browser;
#[path = "support/sshd.rs"]
mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{Lab, TEST_USER};

const SECRET: &str = "s3cr3t-join-value-71";

const PLAYBOOK: &str = r#"
- name: prepare
  hosts: all
  steps:
    - name: a file
      copy: {content: "hello\n", dest: "{{ work }}/{{ inventory_hostname }}.txt"}
    - name: the secret is used
      shell: "echo using {{ api_token | quote }} >/dev/null"
      changed_when: false
- name: check
  hosts: all
  steps:
    - name: each host answers with its code
      shell: "echo checking {{ inventory_hostname | quote }}; echo 'why it failed' >&2; exit {{ code | int }}"
      changed_when: false
"#;

fn kubelab(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubelab"))
        .env("KUBELAB_STATE_DIR", state)
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("cannot run kubelab")
}

#[test]
fn passing_and_failing_runs_as_pages_a_browser_renders() {
    let lab = Lab::new();
    let (a, b) = lab.pinned_pair();
    let work = Lab::open_workdir("kubelab-report-");
    let playbook = work.path().join("report.yaml");
    std::fs::write(&playbook, PLAYBOOK).unwrap();
    let state = work.path().join("state");
    let inventory = |beta_code: u8| {
        let path = work.path().join(format!("inventory-{beta_code}.ini"));
        std::fs::write(
            &path,
            format!(
                "alpha ansible_host={} code=0\nbeta ansible_host={} code={beta_code}\n\
                 [all:vars]\nansible_user={TEST_USER}\nansible_ssh_private_key_file={}\n",
                a.address,
                b.address,
                lab.ed25519.private.display()
            ),
        )
        .unwrap();
        path
    };
    let run = |beta_code: u8, report: &Path| {
        let inv = inventory(beta_code);
        kubelab(
            &state,
            &[
                "--report",
                report.to_str().unwrap(),
                "play",
                playbook.to_str().unwrap(),
                "-i",
                inv.to_str().unwrap(),
                "--known-hosts",
                lab.known_hosts.to_str().unwrap(),
                "--var",
                &format!("work={}", work.path().display()),
                "--var",
                &format!("api_token={SECRET}"),
            ],
        )
    };

    let passed_page = work.path().join("passed.html");
    let passed = run(0, &passed_page);
    assert_eq!(passed.status.code(), Some(0), "{passed:?}");
    let failed_page = work.path().join("failed.html");
    let failed = run(3, &failed_page);
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    // The report is also written beside each run log.
    let beside = std::fs::read_dir(state.join("play/runs"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "html"))
        .count();
    assert_eq!(beside, 2);

    for page in [&passed_page, &failed_page] {
        let html = std::fs::read_to_string(page).unwrap();
        assert!(
            !html.contains(SECRET),
            "the secret is in {}",
            page.display()
        );
        assert!(
            !html.contains("<script") && !html.contains("<link"),
            "not self-contained"
        );
    }

    let (dom, log) = browser::render(
        &passed_page,
        &browser::artifacts().join("report-passed.png"),
    );
    assert!(dom.contains("id=\"result\">passed<"), "{dom}");
    assert!(!dom.contains(" open"), "a passing run opens nothing");
    let (dom, log2) = browser::render(
        &failed_page,
        &browser::artifacts().join("report-failed.png"),
    );
    assert!(dom.contains("id=\"result\">failed<"));
    // A bar per host and play on the timeline.
    for host in ["alpha", "beta"] {
        for play in ["prepare", "check"] {
            assert!(
                dom.contains(&format!("data-host=\"{host}\" data-play=\"{play}\"")),
                "no bar for {host}/{play}"
            );
        }
    }
    assert!(dom.contains("class=\"bar s-failed\" data-host=\"beta\" data-play=\"check\""));
    assert!(dom.contains("class=\"bar s-ok\" data-host=\"alpha\" data-play=\"check\""));
    // The failed play and the failed step's output are open, with its evidence.
    let open_play = dom
        .find("<details class=\"play failed\" open=\"\">")
        .expect("the failed play is not open");
    let failed_output = &dom[open_play..];
    assert!(failed_output.contains("<details class=\"output failed\" open=\"\">"));
    assert!(failed_output.contains("why it failed") && failed_output.contains("checking beta"));
    // No console errors while rendering either page.
    for l in [&log, &log2] {
        assert!(!l.contains("CONSOLE("), "console messages: {l}");
    }
}
