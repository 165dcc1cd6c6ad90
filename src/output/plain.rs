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
                if let Some(d) = diff {
                    for dl in d.lines() {
                        l.push_str(&format!("\n    {dl}"));
                    }
                }
                l
            }
            Event::RunEnd { summary } => summary.render().trim_end().to_string(),
            _ => return,
        };
        let _ = writeln!(self.out, "{line}");
    }
}
