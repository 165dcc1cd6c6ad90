//! What a run reports, and where: the executor emits [`Event`]s to a
//! [`Reporter`], which redacts them and hands them to its sinks (terminal
//! bars, plain lines for CI, JSON lines, a per-run log file).

pub mod html;
mod json;
mod log;
mod plain;
mod steps;
mod terminal;

use std::sync::Mutex;

use serde::Serialize;

pub use json::JsonSink;
pub use log::{LogSink, events_path};
pub use plain::PlainSink;
pub use steps::Steps;
pub use terminal::TerminalSink;

use crate::redact::Redactor;

/// How a step ended on a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Changed,
    Skipped,
    Failed,
    Unreachable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
            Status::Unreachable => "unreachable",
        }
    }
}

/// Per-host tallies for the summary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HostTally {
    pub host: String,
    pub ok: usize,
    pub changed: usize,
    pub skipped: usize,
    pub failed: usize,
    pub unreachable: bool,
}

impl HostTally {
    /// Count one step's end: the one rule for every producer of events (an
    /// unreachable host's step counts as failed too).
    pub fn count(&mut self, status: Status) {
        match status {
            Status::Ok => self.ok += 1,
            Status::Changed => self.changed += 1,
            Status::Skipped => self.skipped += 1,
            Status::Failed => self.failed += 1,
            Status::Unreachable => {
                self.failed += 1;
                self.unreachable = true;
            }
        }
    }
}

/// A failed step, for the summary.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub host: String,
    pub play: String,
    pub step: String,
    /// `file:line:col` of the step.
    pub location: String,
    pub message: String,
    /// The last lines of the step's stderr.
    pub stderr_tail: String,
}

/// The end-of-run summary.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub hosts: Vec<HostTally>,
    pub failures: Vec<Failure>,
    pub check: bool,
    pub log: Option<String>,
    pub duration_ms: u64,
    pub exit_code: i32,
}

impl Summary {
    /// Replace every secret in the failures' texts.
    pub fn redact(&mut self, r: &Redactor) {
        for f in &mut self.failures {
            r.redact_string(&mut f.message);
            r.redact_string(&mut f.stderr_tail);
            r.redact_string(&mut f.step);
        }
    }

    /// Human-readable summary (several lines).
    pub fn render(&self) -> String {
        let mut out = String::new();
        let width = self.hosts.iter().map(|h| h.host.len()).max().unwrap_or(4);
        out.push_str(if self.check {
            "Plan summary (check mode):\n"
        } else {
            "Summary:\n"
        });
        for h in &self.hosts {
            out.push_str(&format!(
                "  {:width$}  ok={} changed={} skipped={} failed={}{}\n",
                h.host,
                h.ok,
                h.changed,
                h.skipped,
                h.failed,
                if h.unreachable { " UNREACHABLE" } else { "" }
            ));
        }
        for f in &self.failures {
            out.push_str(&format!(
                "FAILED {} | {} ({})\n  {}\n",
                f.host, f.step, f.location, f.message
            ));
            for l in f.stderr_tail.lines() {
                out.push_str(&format!("  | {l}\n"));
            }
        }
        out.push_str(&format!("took {:.2}s", self.duration_ms as f64 / 1000.0));
        if let Some(l) = &self.log {
            out.push_str(&format!("; log: {l}"));
        }
        out.push('\n');
        out
    }
}

/// Something that happened during a run.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStart {
        playbook: String,
        check: bool,
        hosts: Vec<String>,
    },
    PlayStart {
        play: String,
        hosts: Vec<String>,
        steps: usize,
    },
    StepStart {
        host: String,
        play: String,
        step: String,
        location: String,
    },
    StepEnd {
        host: String,
        play: String,
        step: String,
        location: String,
        module: String,
        status: Status,
        changed: bool,
        duration_ms: u64,
        #[serde(skip_serializing_if = "String::is_empty")]
        message: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        stdout: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        stderr: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        diff: Option<String>,
    },
    PlayEnd {
        play: String,
    },
    /// `up` restarted a VM whose console showed trouble at boot.
    VmRestarted {
        vm: String,
        /// `kernel panic` or `boot loop`.
        reason: String,
        /// What the console showed (the panic message).
        detail: String,
    },
    RunEnd {
        summary: Summary,
    },
}

impl Event {
    /// The same event with every secret replaced.
    pub fn redacted(mut self, r: &Redactor) -> Event {
        if r.is_empty() {
            return self;
        }
        match &mut self {
            Event::StepEnd {
                step,
                message,
                stdout,
                stderr,
                diff,
                ..
            } => {
                for s in [step, message, stdout, stderr] {
                    r.redact_string(s);
                }
                if let Some(d) = diff {
                    r.redact_string(d);
                }
            }
            Event::StepStart { step, .. } => r.redact_string(step),
            Event::VmRestarted { detail, .. } => r.redact_string(detail),
            Event::RunEnd { summary } => summary.redact(r),
            _ => {}
        }
        self
    }
}

/// A destination for events. Events arrive already redacted.
pub trait Sink: Send {
    fn handle(&mut self, event: &Event);
}

/// Fans events out to sinks, redacting them first.
pub struct Reporter {
    sinks: Mutex<Vec<Box<dyn Sink>>>,
    redactor: Redactor,
}

impl Reporter {
    pub fn new(redactor: Redactor) -> Self {
        Reporter {
            sinks: Mutex::new(Vec::new()),
            redactor,
        }
    }

    pub fn with_sink(self, sink: Box<dyn Sink>) -> Self {
        if let Ok(mut s) = self.sinks.lock() {
            s.push(sink);
        }
        self
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub fn emit(&self, event: Event) {
        let event = event.redacted(&self.redactor);
        if let Ok(mut sinks) = self.sinks.lock() {
            for s in sinks.iter_mut() {
                s.handle(&event);
            }
        }
    }
}

/// The sink for stderr: progress bars on a terminal, plain timestamped
/// lines otherwise (indicatif hides bars and drops their output when
/// stderr is not a terminal).
pub fn stderr_sink(quiet: bool) -> Box<dyn Sink> {
    match TerminalSink::new(quiet) {
        Some(t) => Box::new(t),
        None => Box::new(PlainSink::new(std::io::stderr(), quiet)),
    }
}

/// `HH:MM:SS` (UTC) of now, for plain lines.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let day = secs % 86_400;
    format!("{:02}:{:02}:{:02}", day / 3600, day % 3600 / 60, day % 60)
}

/// How many lines of a failed step's stderr its line on the terminal and
/// in the summary shows (the run log keeps all of it).
pub const STDERR_TAIL_LINES: usize = 5;

/// The lines that follow a failed step's own line: the tail of its stderr,
/// each as `\n    | line`, so that the reason (`curl: (6) Could not
/// resolve host`) is on the terminal and not only in the run log.
pub fn failed_stderr_lines(status: Status, stderr: &str) -> String {
    if !matches!(status, Status::Failed | Status::Unreachable) {
        return String::new();
    }
    tail(stderr, STDERR_TAIL_LINES)
        .lines()
        .map(|l| format!("\n    | {l}"))
        .collect()
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
