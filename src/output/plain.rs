//! Plain timestamped lines, for logs of CI jobs and other non-terminals.

use std::io::Write;

use super::{Event, Sink, Status, timestamp};

pub struct PlainSink<W: Write + Send> {
    out: W,
    quiet: bool,
}

impl<W: Write + Send> PlainSink<W> {
    pub fn new(out: W, quiet: bool) -> Self {
        PlainSink { out, quiet }
    }
}

impl<W: Write + Send> Sink for PlainSink<W> {
    fn handle(&mut self, event: &Event) {
        let t = timestamp();
        let line = match event {
            Event::RunStart {
                playbook,
                check,
                hosts,
            } if !self.quiet => format!(
                "[{t}] {} {playbook} on {} host(s)",
                if *check { "checking" } else { "running" },
                hosts.len()
            ),
            Event::PlayStart { play, hosts, .. } if !self.quiet => {
                format!("[{t}] play {play}: {}", hosts.join(", "))
            }
            Event::StepEnd {
                host,
                step,
                status,
                duration_ms,
                message,
                diff,
                stderr,
                ..
            } => {
                if self.quiet && !matches!(status, Status::Failed | Status::Unreachable) {
                    return;
                }
                let mut l = format!(
                    "[{t}] {host} | {step}: {} ({duration_ms} ms)",
                    status.as_str()
                );
                if !message.is_empty() {
                    l.push_str(&format!(" — {message}"));
                }
                l.push_str(&super::failed_stderr_lines(*status, stderr));
                if let Some(d) = diff {
                    for dl in d.lines() {
                        l.push_str(&format!("\n    {dl}"));
                    }
                }
                l
            }
            // shown even when quiet: the VM did not boot as it should
            Event::VmRestarted { vm, reason, detail } => {
                format!("[{t}] {vm} | restarted after a {reason}: {detail}")
            }
            Event::RunEnd { summary } => summary.render().trim_end().to_string(),
            _ => return,
        };
        let _ = writeln!(self.out, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Failure, HostTally, Summary};

    #[test]
    fn plain_lines_and_summary() {
        let mut buf = Vec::new();
        {
            let mut sink = PlainSink::new(&mut buf, false);
            sink.handle(&Event::StepEnd {
                host: "h1".into(),
                play: "p".into(),
                step: "write".into(),
                location: "p.yaml:3:7".into(),
                module: "copy".into(),
                status: Status::Changed,
                changed: true,
                duration_ms: 12,
                message: "create".into(),
                stdout: String::new(),
                stderr: String::new(),
                diff: Some("+x\n".into()),
            });
            sink.handle(&Event::RunEnd {
                summary: Summary {
                    hosts: vec![HostTally {
                        host: "h1".into(),
                        ok: 1,
                        changed: 1,
                        skipped: 0,
                        failed: 1,
                        unreachable: false,
                    }],
                    failures: vec![Failure {
                        host: "h1".into(),
                        play: "p".into(),
                        step: "boom".into(),
                        location: "p.yaml:9:7".into(),
                        message: "exit code 1".into(),
                        stderr_tail: "no such file".into(),
                    }],
                    check: false,
                    log: Some("/tmp/run.log".into()),
                    duration_ms: 1500,
                    exit_code: 1,
                },
            });
        }
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with('[')
                && lines[0].ends_with("] h1 | write: changed (12 ms) — create"),
            "{text}"
        );
        assert_eq!(lines[1], "    +x");
        assert!(
            text.contains("  h1  ok=1 changed=1 skipped=0 failed=1\n"),
            "{text}"
        );
        assert!(
            text.contains("FAILED h1 | boom (p.yaml:9:7)\n  exit code 1\n  | no such file\n"),
            "{text}"
        );
        assert!(text.contains("took 1.50s; log: /tmp/run.log"), "{text}");
    }

    #[test]
    fn failed_step_line_carries_the_tail_of_stderr() {
        let mut buf = Vec::new();
        let stderr: String = (1..=8).map(|i| format!("noise {i}\n")).collect::<String>()
            + "curl: (6) Could not resolve host: download.docker.com\n";
        {
            let mut sink = PlainSink::new(&mut buf, true);
            sink.handle(&Event::StepEnd {
                host: "cp-1".into(),
                play: "runtime".into(),
                step: "Docker's signing key".into(),
                location: "runtime.yaml:30:7".into(),
                module: "command".into(),
                status: Status::Failed,
                changed: false,
                duration_ms: 3,
                message: "exit code 6".into(),
                stdout: String::new(),
                stderr,
                diff: None,
            });
        }
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].ends_with("cp-1 | Docker's signing key: failed (3 ms) — exit code 6"),
            "{text}"
        );
        // the last STDERR_TAIL_LINES lines, the reason last
        assert_eq!(lines.len(), 1 + crate::output::STDERR_TAIL_LINES, "{text}");
        assert_eq!(
            lines.last().copied(),
            Some("    | curl: (6) Could not resolve host: download.docker.com")
        );
        assert_eq!(lines[1], "    | noise 5");
    }

    #[test]
    fn a_restarted_vm_is_said_even_when_quiet() {
        let mut buf = Vec::new();
        {
            let mut sink = PlainSink::new(&mut buf, true);
            sink.handle(&Event::VmRestarted {
                vm: "node-2".into(),
                reason: "kernel panic".into(),
                detail: "Kernel panic - not syncing: IO-APIC + timer doesn't work!".into(),
            });
        }
        let text = String::from_utf8(buf).unwrap();
        assert!(
            text.starts_with('[')
                && text.ends_with(
                    "] node-2 | restarted after a kernel panic: Kernel panic - not syncing: IO-APIC + timer doesn't work!\n"
                ),
            "{text}"
        );
    }
}
