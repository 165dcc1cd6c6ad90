//! Steps that are not a playbook's — `up`'s virthost and VM phases — as
//! the same [`Event`]s a playbook run emits, so that they look, log and
//! count like the playbook stages after them. Whoever does the work calls
//! [`Steps`]; the sinks behind its [`Reporter`] decide how it shows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use super::{Event, Failure, HostTally, Reporter, Status, Summary};

/// One run of steps, from its `run_start` to its `run_end` events.
pub struct Steps {
    reporter: Reporter,
    /// Where every step comes from (the lab file), as `location`.
    location: String,
    log_path: Option<PathBuf>,
    t0: Instant,
    play: Mutex<String>,
    started: Mutex<HashMap<(String, String), Instant>>,
    tallies: Mutex<Vec<HostTally>>,
    failures: Mutex<Vec<Failure>>,
}

impl Steps {
    /// Start the run `name` on `hosts` (its `run_start` event).
    pub fn start(
        reporter: Reporter,
        name: String,
        hosts: Vec<String>,
        location: String,
        log_path: Option<PathBuf>,
    ) -> Self {
        reporter.emit(Event::RunStart {
            playbook: name,
            check: false,
            hosts,
        });
        Steps {
            reporter,
            location,
            log_path,
            t0: Instant::now(),
            play: Mutex::new(String::new()),
            started: Mutex::default(),
            tallies: Mutex::default(),
            failures: Mutex::default(),
        }
    }

    /// Where this run's log is (printed at the end and on failure).
    pub fn log_path(&self) -> Option<&Path> {
        self.log_path.as_deref()
    }

    /// A phase of `steps` steps on `hosts` begins (a play, to the sinks).
    pub fn phase(&self, name: &str, hosts: &[String], steps: usize) {
        if let Ok(mut p) = self.play.lock() {
            *p = name.to_string();
        }
        self.reporter.emit(Event::PlayStart {
            play: name.to_string(),
            hosts: hosts.to_vec(),
            steps,
        });
    }

    pub fn phase_end(&self, name: &str) {
        self.reporter.emit(Event::PlayEnd {
            play: name.to_string(),
        });
    }

    pub fn start_step(&self, host: &str, step: &str) {
        if let Ok(mut s) = self.started.lock() {
            s.insert((host.to_string(), step.to_string()), Instant::now());
        }
        self.reporter.emit(Event::StepStart {
            host: host.to_string(),
            play: self.current_play(),
            step: step.to_string(),
            location: self.location.clone(),
        });
    }

    /// `status` is ok, changed or failed; `message` says what happened.
    pub fn end_step(&self, host: &str, step: &str, status: Status, message: &str) {
        let play = self.current_play();
        let duration_ms = self
            .started
            .lock()
            .ok()
            .and_then(|mut s| s.remove(&(host.to_string(), step.to_string())))
            .map_or(0, |t| millis(t.elapsed()));
        if let Ok(mut all) = self.tallies.lock() {
            let i = match all.iter().position(|t| t.host == host) {
                Some(i) => i,
                None => {
                    all.push(HostTally {
                        host: host.to_string(),
                        ..HostTally::default()
                    });
                    all.len() - 1
                }
            };
            all[i].count(status);
        }
        if matches!(status, Status::Failed | Status::Unreachable)
            && let Ok(mut f) = self.failures.lock()
        {
            f.push(Failure {
                host: host.to_string(),
                play: play.clone(),
                step: step.to_string(),
                location: self.location.clone(),
                message: message.to_string(),
                stderr_tail: String::new(),
            });
        }
        self.reporter.emit(Event::StepEnd {
            host: host.to_string(),
            play,
            step: step.to_string(),
            location: self.location.clone(),
            module: "up".to_string(),
            status,
            changed: status == Status::Changed,
            duration_ms,
            message: message.to_string(),
            stdout: String::new(),
            stderr: String::new(),
            diff: None,
        });
    }

    /// `vm` was restarted because its console showed trouble at boot:
    /// `reason` in a few words (`kernel panic`, `boot loop`), `detail` what
    /// the console showed.
    pub fn vm_restarted(&self, vm: &str, reason: &str, detail: &str) {
        self.reporter.emit(Event::VmRestarted {
            vm: vm.to_string(),
            reason: reason.to_string(),
            detail: detail.to_string(),
        });
    }

    /// The end of the run: its summary to every sink; the log is complete
    /// (and closed) afterwards.
    pub fn finish(self, exit_code: i32) {
        let summary = Summary {
            hosts: self.tallies.lock().map(|t| t.clone()).unwrap_or_default(),
            failures: self.failures.lock().map(|f| f.clone()).unwrap_or_default(),
            check: false,
            log: self.log_path.as_ref().map(|p| p.display().to_string()),
            duration_ms: millis(self.t0.elapsed()),
            exit_code,
        };
        self.reporter.emit(Event::RunEnd { summary });
    }

    fn current_play(&self) -> String {
        self.play.lock().map(|p| p.clone()).unwrap_or_default()
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::output::Sink;
    use crate::redact::Redactor;

    struct Collect(Arc<Mutex<Vec<Event>>>);

    impl Sink for Collect {
        fn handle(&mut self, event: &Event) {
            self.0.lock().unwrap().push(event.clone());
        }
    }

    #[test]
    fn steps_are_the_events_of_a_playbook_run_with_its_summary() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reporter = Reporter::new(Redactor::new()).with_sink(Box::new(Collect(seen.clone())));
        let hosts = vec!["virthost".to_string(), "vm1".to_string()];
        let steps = Steps::start(
            reporter,
            "up lab.yaml".into(),
            hosts.clone(),
            "lab.yaml".into(),
            None,
        );
        steps.phase("vms", &hosts, 2);
        steps.start_step("virthost", "network");
        steps.end_step("virthost", "network", Status::Changed, "created");
        steps.start_step("vm1", "ssh");
        steps.end_step("vm1", "ssh", Status::Failed, "no answer");
        steps.end_step("vm1", "ssh again", Status::Unreachable, "gone");
        steps.phase_end("vms");
        steps.finish(1);
        let events = seen.lock().unwrap();
        let kinds: Vec<String> = events
            .iter()
            .map(|e| {
                serde_json::to_value(e).unwrap()["event"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "run_start",
                "play_start",
                "step_start",
                "step_end",
                "step_start",
                "step_end",
                "step_end",
                "play_end",
                "run_end"
            ]
        );
        let Event::StepEnd { play, location, .. } = &events[3] else {
            panic!("{:?}", events[3]);
        };
        assert_eq!((play.as_str(), location.as_str()), ("vms", "lab.yaml"));
        let Event::RunEnd { summary } = events.last().unwrap() else {
            panic!("no run_end");
        };
        assert_eq!(summary.exit_code, 1);
        let vm1 = summary.hosts.iter().find(|h| h.host == "vm1").unwrap();
        assert_eq!(
            (vm1.failed, vm1.unreachable),
            (2, true),
            "the executor's rule"
        );
        let virthost = summary.hosts.iter().find(|h| h.host == "virthost").unwrap();
        assert_eq!(virthost.changed, 1);
        let failed: Vec<&str> = summary.failures.iter().map(|f| f.step.as_str()).collect();
        assert_eq!(failed, ["ssh", "ssh again"]);
    }
}
