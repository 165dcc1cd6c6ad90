//! Plans: what a playbook would do on each host, step by step, with diffs.
//!
//! A plan is a check-mode run against the reachable hosts (facts and
//! current file contents are needed to know what would change). Plays are
//! barriers: every host finishes play N before play N+1 starts, so the
//! plan lists, per host, its steps in order with the play they belong to.

use serde::Serialize;

use crate::executor::{Executor, RunReport, StepRecord};
use crate::output::Status;
use crate::playbook::Playbook;
use crate::redact::Redactor;

/// One step as planned on one host.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedStep {
    pub play: String,
    pub step: String,
    pub location: String,
    pub module: String,
    /// `changed` = would change; `ok` = already as wanted; `skipped`;
    /// `failed` = the check itself failed (the plan is then incomplete).
    pub status: Status,
    pub message: String,
    pub diff: Option<String>,
    /// Parameters after templating.
    pub params: serde_json::Value,
}

/// Per host, the ordered steps it would run.
#[derive(Clone, Debug, Serialize)]
pub struct HostPlan {
    pub host: String,
    pub steps: Vec<PlannedStep>,
}

impl HostPlan {
    pub fn would_change(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| s.status == Status::Changed)
            .count()
    }
}

/// A whole plan.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    pub hosts: Vec<HostPlan>,
    /// Play names in order: the barriers between steps.
    pub plays: Vec<String>,
    /// 0 when every check ran; else the run's exit code (1 failed
    /// checks, 2 invalid input, 3 unreachable hosts).
    pub exit_code: i32,
}

impl Plan {
    /// Make a plan: run the playbook in check mode. `executor` must have
    /// been built with `RunOptions { check: true, .. }`.
    pub async fn make(
        executor: &Executor,
        playbook: &Playbook,
        redactor: &Redactor,
    ) -> (Plan, RunReport) {
        let report = executor.run(playbook).await;
        let plan = Plan::from_report(&report, playbook, redactor);
        (plan, report)
    }

    /// Build a plan from a check-mode run's records, redacting secrets.
    pub fn from_report(report: &RunReport, playbook: &Playbook, redactor: &Redactor) -> Plan {
        let mut hosts: Vec<HostPlan> = report
            .summary
            .hosts
            .iter()
            .map(|h| HostPlan {
                host: h.host.clone(),
                steps: Vec::new(),
            })
            .collect();
        for r in &report.records {
            if let Some(h) = hosts.iter_mut().find(|h| h.host == r.host) {
                h.steps.push(planned(r, redactor));
            }
        }
        Plan {
            hosts,
            plays: playbook.plays.iter().map(|p| p.name.clone()).collect(),
            exit_code: report.exit_code(),
        }
    }

    /// Steps that would change something, over all hosts.
    pub fn change_count(&self) -> usize {
        self.hosts.iter().map(HostPlan::would_change).sum()
    }

    /// `host: step → would change` lines, diffs indented under them.
    pub fn render(&self, with_unchanged: bool) -> String {
        let mut out = String::new();
        for h in &self.hosts {
            out.push_str(&format!(
                "{}: {} step(s) would change\n",
                h.host,
                h.would_change()
            ));
            let mut play = "";
            for s in &h.steps {
                let verb = match s.status {
                    Status::Changed => "would change",
                    Status::Ok => "ok",
                    Status::Skipped => "skipped",
                    Status::Failed => "CHECK FAILED",
                    Status::Unreachable => "UNREACHABLE",
                };
                if !with_unchanged && matches!(s.status, Status::Ok | Status::Skipped) {
                    continue;
                }
                if s.play != play {
                    play = &s.play;
                    out.push_str(&format!("  [{play}]\n"));
                }
                out.push_str(&format!("  {}: {} → {verb}", h.host, s.step));
                if !s.message.is_empty() {
                    out.push_str(&format!(" ({})", s.message.replace('\n', "; ")));
                }
                out.push('\n');
                if let Some(d) = &s.diff {
                    for l in d.lines() {
                        out.push_str(&format!("      {l}\n"));
                    }
                }
            }
        }
        out
    }
}

fn planned(r: &StepRecord, redactor: &Redactor) -> PlannedStep {
    PlannedStep {
        play: r.play.clone(),
        step: redactor.redact(&r.step).into_owned(),
        location: r.location.clone(),
        module: r.module.to_string(),
        status: r.status,
        message: redactor.redact(&r.message).into_owned(),
        diff: r.diff.as_ref().map(|d| redactor.redact(d).into_owned()),
        params: redact_json(&r.params, redactor),
    }
}

/// Every string inside a JSON value, redacted.
fn redact_json(v: &serde_json::Value, redactor: &Redactor) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(redactor.redact(s).into_owned()),
        serde_json::Value::Array(a) => a.iter().map(|x| redact_json(x, redactor)).collect(),
        serde_json::Value::Object(o) => serde_json::Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), redact_json(x, redactor)))
                .collect(),
        ),
        other => other.clone(),
    }
}
