//! The per-run log file: every event with the full output of every step.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Event, Sink, timestamp};

pub struct LogSink {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    /// The same events as JSON lines with their time ([`events_path`]),
    /// what the HTML report is made from.
    events: Option<std::io::BufWriter<std::fs::File>>,
}

/// Where the events of the run whose log is `log` are kept:
/// `…-up.log` → `…-up.events.jsonl`.
pub fn events_path(log: &Path) -> PathBuf {
    log.with_extension("events.jsonl")
}

impl LogSink {
    /// Create (truncate) the log file, and its directory.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Appended: one run's log may collect several playbooks (every stage
        // of an `up`).
        let append = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
        };
        let file = append(path)?;
        let events = append(&events_path(path)).ok().map(std::io::BufWriter::new);
        Ok(LogSink {
            path: path.to_path_buf(),
            out: std::io::BufWriter::new(file),
            events,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn section(out: &mut impl Write, name: &str, text: &str) {
    if text.is_empty() {
        return;
    }
    let _ = writeln!(out, "--- {name}");
    let _ = write!(out, "{text}");
    if !text.ends_with('\n') {
        let _ = writeln!(out);
    }
}

impl Sink for LogSink {
    fn handle(&mut self, event: &Event) {
        if let Some(events) = &mut self.events
            && let Ok(serde_json::Value::Object(mut fields)) = serde_json::to_value(event)
        {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            fields.insert("time_ms".into(), ms.into());
            let _ = writeln!(events, "{}", serde_json::Value::Object(fields));
            if matches!(event, Event::RunEnd { .. }) {
                let _ = events.flush();
            }
        }
        let t = timestamp();
        let out = &mut self.out;
        match event {
            Event::RunStart {
                playbook,
                check,
                hosts,
            } => {
                let _ = writeln!(
                    out,
                    "[{t}] run {playbook} check={check} hosts={}",
                    hosts.join(",")
                );
            }
            Event::PlayStart { play, hosts, steps } => {
                let _ = writeln!(
                    out,
                    "[{t}] === play {play} ({steps} steps) on {}",
                    hosts.join(",")
                );
            }
            Event::StepStart { .. } => {}
            Event::StepEnd {
                host,
                step,
                location,
                module,
                status,
                duration_ms,
                message,
                stdout,
                stderr,
                diff,
                ..
            } => {
                let _ = writeln!(
                    out,
                    "[{t}] {host} | {step} [{module}] ({location}): {} in {duration_ms} ms",
                    status.as_str()
                );
                section(out, "message", message);
                section(out, "stdout", stdout);
                section(out, "stderr", stderr);
                section(out, "diff", diff.as_deref().unwrap_or(""));
            }
            Event::PlayEnd { play } => {
                let _ = writeln!(out, "[{t}] === end of play {play}");
            }
            Event::VmRestarted { vm, reason, detail } => {
                let _ = writeln!(out, "[{t}] {vm} | restarted after a {reason}: {detail}");
            }
            Event::RunEnd { summary } => {
                let _ = write!(out, "{}", summary.render());
                let _ = out.flush();
            }
        }
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        let _ = self.out.flush();
        if let Some(events) = &mut self.events {
            let _ = events.flush();
        }
    }
}
