//! Progress on a terminal: one bar per host with a step counter and the
//! current step.

use std::collections::HashMap;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Event, Sink, Status};

pub struct TerminalSink {
    multi: MultiProgress,
    bars: HashMap<String, ProgressBar>,
    style: ProgressStyle,
    quiet: bool,
}

impl TerminalSink {
    /// `None` when stderr is not a terminal (bars would be hidden and
    /// their printed lines dropped).
    pub fn new(quiet: bool) -> Option<Self> {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        if multi.is_hidden() {
            return None;
        }
        let style =
            ProgressStyle::with_template("{prefix:>16.bold} [{bar:20}] {pos}/{len} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        Some(TerminalSink {
            multi,
            bars: HashMap::new(),
            style,
            quiet,
        })
    }

    fn print(&self, line: &str) {
        // MultiProgress::println prints above the bars.
        let _ = self.multi.println(line);
    }
}

impl Sink for TerminalSink {
    fn handle(&mut self, event: &Event) {
        match event {
            Event::PlayStart { play, hosts, steps } => {
                for b in self.bars.values() {
                    b.finish_and_clear();
                }
                self.bars.clear();
                if !self.quiet {
                    self.print(&format!("play {play}"));
                }
                for h in hosts {
                    let bar = self.multi.add(ProgressBar::new(*steps as u64));
                    bar.set_style(self.style.clone());
                    bar.set_prefix(h.clone());
                    self.bars.insert(h.clone(), bar);
                }
            }
            Event::StepStart { host, step, .. } => {
                if let Some(b) = self.bars.get(host) {
                    b.set_message(step.clone());
                }
            }
            Event::StepEnd {
                host,
                step,
                status,
                message,
                diff,
                stderr,
                ..
            } => {
                if let Some(b) = self.bars.get(host) {
                    b.inc(1);
                }
                let show = match status {
                    Status::Failed | Status::Unreachable => true,
                    Status::Changed => !self.quiet,
                    _ => false,
                };
                if show {
                    let mut l = format!("{host} | {step}: {}", status.as_str());
                    if !message.is_empty() {
                        l.push_str(&format!(" — {message}"));
                    }
                    l.push_str(&super::failed_stderr_lines(*status, stderr));
                    if let Some(d) = diff.as_ref().filter(|_| !self.quiet) {
                        for dl in d.lines() {
                            l.push_str(&format!("\n    {dl}"));
                        }
                    }
                    self.print(&l);
                }
                if matches!(status, Status::Failed | Status::Unreachable)
                    && let Some(b) = self.bars.get(host)
                {
                    b.abandon_with_message(format!("{}: {step}", status.as_str()));
                }
            }
            Event::VmRestarted { vm, reason, detail } => {
                self.print(&format!("{vm} | restarted after a {reason}: {detail}"));
            }
            Event::PlayEnd { .. } => {
                for b in self.bars.values() {
                    if !b.is_finished() {
                        b.finish_with_message("done");
                    }
                }
            }
            Event::RunEnd { summary } => {
                for b in self.bars.values() {
                    b.finish_and_clear();
                }
                let _ = self.multi.clear();
                eprint!("{}", summary.render());
            }
            Event::RunStart { .. } => {}
        }
    }
}
