//! Stages: the built-in playbooks a lab runs on its VMs once they are up,
//! as a list of typed kinds — NAT64, Kubernetes, the lab's links, each
//! scenario's phases — and the manager that runs them in order (`plan`
//! runs the same list in check mode).
//!
//! - [`model`]: what a stage is ([`Stage`], [`Phase`], [`StageError`],
//!   [`StageFailure`]); the modules that make stages build on it.
//! - [`vars`]: what every playbook sees about the lab and its VMs.
//! - [`hosts`]: one SSH connection per VM for a whole command.
//! - here: [`StageKind`], the list `up` runs ([`after_up`]), the stage a
//!   playbook runs in ([`for_playbook`]), and running them.

pub mod hosts;
pub mod model;
pub mod vars;

use std::collections::BTreeMap;

use serde_json::Value;

pub use hosts::LabHosts;
pub use model::{Phase, Secrets, Stage, StageError, StageFailure};
pub use vars::{lab_vars, stage_inventory, vm_vars};

use crate::lab::Lab;
use crate::scenario::ScenarioFile;
use crate::template::Vars;

impl Stage {
    /// The stage of a scenario's phase: var `scenario` holds its resolved
    /// parameters ([`crate::scenario::Scenario::resolved`]: every default applied, so the
    /// playbooks never default them again), group `scenario` its VMs
    /// ([`ScenarioFile::members`]), each of those VMs its 1-based position
    /// in the group as `scenario_index`, plus the scenario's own groups
    /// ([`crate::scenario::Scenario::groups`]).
    pub fn scenario(lab: &Lab, scenario: &ScenarioFile, phase: Phase) -> Stage {
        let kind = scenario.kind();
        let members = scenario.members(&lab.vms);
        let host_vars = members
            .iter()
            .enumerate()
            .map(|(i, vm)| {
                let vars = Vars::from([("scenario_index".to_string(), Value::from(i + 1))]);
                (vm.clone(), vars)
            })
            .collect();
        let mut vars = Vars::new();
        vars.insert("scenario".into(), kind.resolved(&lab.parts()));
        vars.insert("scenario_name".into(), Value::from(scenario.name()));
        vars.insert("phase".into(), Value::from(phase.as_str()));
        let mut groups = BTreeMap::from([("scenario".to_string(), members)]);
        groups.extend(kind.groups(&lab.vms));
        Stage {
            title: format!("{} {}", scenario.name(), phase.as_str()),
            playbook: scenario_playbook(scenario.name(), phase),
            generated: None,
            vars,
            host_vars,
            groups,
            virthost: false,
        }
    }
}

/// `scenarios/<name>/<phase>`.
pub fn scenario_playbook(name: &str, phase: Phase) -> String {
    format!("scenarios/{name}/{}", phase.as_str())
}

/// Whether a playbook exists (embedded, or in the override directory).
pub fn playbook_exists(name: &str, override_dir: Option<&std::path::Path>) -> bool {
    crate::playbook::find(name, override_dir).is_ok()
}

/// The kinds of stage, in the order `up` runs them. Each kind's module
/// makes its stage from the lab; this list is the only place that knows
/// them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StageKind {
    /// NAT64/DNS64 on the VMs with role `nat64` ([`crate::nat64`]).
    Nat64,
    /// The cluster ([`crate::kubernetes::stage`]).
    Kubernetes,
    /// The lab's `links:` ([`crate::links`]).
    Links,
    /// A phase of the lab's scenario at this index ([`crate::scenario`]).
    Scenario { index: usize, phase: Phase },
}

impl StageKind {
    /// What `up` runs after the VMs answer: NAT64 when a VM has the role
    /// `nat64`, Kubernetes when the lab has a cluster, the links when it
    /// has any, then each scenario's setup, in lab order.
    pub fn after_up(lab: &Lab) -> Vec<StageKind> {
        let mut kinds = Vec::new();
        if !lab.group(crate::nat64::SERVER_GROUP).is_empty() {
            kinds.push(StageKind::Nat64);
        }
        if lab.kubernetes.is_some() {
            kinds.push(StageKind::Kubernetes);
        }
        if !lab.links.is_empty() {
            kinds.push(StageKind::Links);
        }
        kinds.extend((0..lab.scenarios.len()).map(|index| StageKind::Scenario {
            index,
            phase: Phase::Setup,
        }));
        kinds
    }

    /// The kind of stage a built-in playbook runs in on this lab (the
    /// Kubernetes stage for `kubernetes` and its parts `kubernetes/*` when
    /// the lab has a cluster; NAT64's for `nat64` and `nat64-remove`);
    /// `None` for any other playbook, which sees the lab's variables only.
    pub fn of_playbook(lab: &Lab, playbook: &str) -> Option<StageKind> {
        let bare = playbook.strip_suffix(".yaml").unwrap_or(playbook);
        let bare = bare.strip_prefix("playbooks/").unwrap_or(bare);
        if crate::kubernetes::stage::runs(bare) && lab.kubernetes.is_some() {
            Some(StageKind::Kubernetes)
        } else if crate::nat64::runs(bare) {
            Some(StageKind::Nat64)
        } else {
            None
        }
    }

    /// This kind's stage on the lab, running `playbook` (one of its parts,
    /// or `None` for the whole).
    pub fn stage(
        self,
        lab: &Lab,
        playbook: Option<&str>,
        secrets: Secrets,
    ) -> Result<Stage, StageError> {
        let state_dir = crate::state::state_dir(&lab.name);
        let state = || {
            crate::provision::read_inventory(lab).map_err(|e| StageError::File {
                path: state_dir.join("inventory.yaml"),
                message: e.to_string(),
            })
        };
        match self {
            StageKind::Nat64 => {
                let state = state()?;
                crate::nat64::stage(lab, playbook.unwrap_or("nat64"), state.as_ref())
            }
            StageKind::Kubernetes => {
                let keys = match secrets {
                    Secrets::Keep => crate::kubernetes::ClusterSecrets::load_or_create(&state_dir)?,
                    Secrets::Ephemeral => {
                        crate::kubernetes::ClusterSecrets::load_or_make(&state_dir)?
                    }
                };
                let state = state()?;
                crate::kubernetes::stage::kubernetes_stage(
                    lab,
                    playbook.unwrap_or("kubernetes"),
                    state.as_ref(),
                    &keys,
                    &state_dir,
                )
            }
            StageKind::Links => crate::links::stage(lab).map_err(|message| StageError::Invalid {
                what: "links".into(),
                message,
            }),
            StageKind::Scenario { index, phase } => match lab.scenarios.get(index) {
                Some(s) => Ok(Stage::scenario(lab, s, phase)),
                None => Err(StageError::Invalid {
                    what: format!("scenarios.{index}"),
                    message: "the lab has no such scenario".into(),
                }),
            },
        }
    }
}

/// The stages `up` runs after the VMs answer ([`StageKind::after_up`]).
pub fn after_up(lab: &Lab) -> Result<Vec<Stage>, StageError> {
    after_up_with(lab, Secrets::Keep)
}

/// [`after_up`], saying what may happen to the secrets.
pub fn after_up_with(lab: &Lab, secrets: Secrets) -> Result<Vec<Stage>, StageError> {
    StageKind::after_up(lab)
        .into_iter()
        .map(|kind| kind.stage(lab, None, secrets))
        .collect()
}

/// The stage a playbook runs in on this lab ([`StageKind::of_playbook`]),
/// else one with the lab's variables only.
pub fn for_playbook(lab: &Lab, playbook: &str) -> Result<Stage, StageError> {
    match StageKind::of_playbook(lab, playbook) {
        Some(kind) => kind.stage(lab, Some(playbook), Secrets::Keep),
        None => Ok(Stage {
            title: playbook.to_string(),
            playbook: playbook.to_string(),
            ..Stage::default()
        }),
    }
}

/// Run one stage on the lab's hosts through the engine (`base` says how:
/// check mode, sinks, override directories, `--var`); returns the run's
/// report, or exit code 2 when the playbook is invalid (already reported).
pub async fn run(
    lab: &Lab,
    hosts: &LabHosts,
    stage: &Stage,
    base: &crate::runner::PlaybookRun,
) -> Result<crate::executor::RunReport, i32> {
    let mut req = base.clone();
    req.playbook = stage.playbook.clone().into();
    req.generated = stage.generated.clone();
    crate::runner::execute(hosts.inventory(lab, stage), &req).await
}

/// Run stages in order, stopping at the first that fails.
pub async fn run_all(
    lab: &Lab,
    hosts: &LabHosts,
    stages: &[Stage],
    base: &crate::runner::PlaybookRun,
    mut on_start: impl FnMut(&Stage),
) -> Result<(), StageFailure> {
    for stage in stages {
        on_start(stage);
        let failure = |code, failures| StageFailure {
            code,
            title: stage.title.clone(),
            failures,
        };
        match run(lab, hosts, stage, base).await {
            Ok(report) if report.success() => {}
            Ok(report) => {
                return Err(failure(report.exit_code(), report.summary.failures));
            }
            Err(code) => return Err(failure(code, Vec::new())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use serde_json::json;

    use crate::inventory::UnreachableTransport;
    use crate::transport::Transport;

    use crate::lab::from_test_yaml as lab;

    const LAB: &str = r#"
name: t
virthost: {local: true}
image: {build: debian-12}
networks: [{name: lan, kind: nat, ipv4: 10.9.0.0/24, ipv6: "fd00:9::/64"}]
vms:
  - {name: a, roles: [node], nics: [{network: lan, ipv4: 10.9.0.10}], vars: {x: 1}}
  - {name: b, roles: [node], spare_disks: [{size: 1GiB}]}
  - {name: c}
scenarios:
  - {name: overlay, params: {hosts: [a, b], vni: 77}}
"#;

    #[test]
    fn scenario_stage_has_params_group_and_playbook() {
        let lab = lab(LAB);
        let stages = after_up(&lab).unwrap();
        assert_eq!(stages.len(), 1);
        let s = &stages[0];
        assert_eq!(s.playbook, "scenarios/overlay/setup");
        assert_eq!(s.vars["scenario"]["vni"], 77);
        assert_eq!(s.vars["scenario"]["hosts"], json!(["a", "b"]));
        assert_eq!(s.vars["phase"], "setup");
        let inv = stage_inventory(
            &lab,
            s,
            None,
            |n| Arc::new(UnreachableTransport::new(n, "offline")),
            Arc::new(UnreachableTransport::new("virthost", "offline")),
        );
        let groups = inv.groups();
        assert_eq!(groups["scenario"], vec!["a", "b"]);
        assert_eq!(inv.hosts[1].vars["scenario_index"], 2);
        assert!(!inv.hosts[2].vars.contains_key("scenario_index"));
        assert_eq!(groups["node"], vec!["a", "b"]);
        assert_eq!(groups["all"], vec!["a", "b", "c"]);
        assert_eq!(inv.vars["lab"]["networks"][0]["gateway4"], "10.9.0.1");
        assert_eq!(inv.vars["lab"]["networks"][0]["gateway6"], "fd00:9::1");
        let a = &inv.hosts[0].vars;
        assert_eq!(a["address"], "10.9.0.10");
        assert_eq!(a["x"], 1);
        assert_eq!(inv.hosts[1].vars["spare_disks"][0]["dev"], "vdb");
    }

    #[test]
    fn the_kinds_of_stage_are_chosen_by_the_lab_and_by_typed_names() {
        let plain = lab(LAB);
        assert_eq!(
            StageKind::after_up(&plain),
            [StageKind::Scenario {
                index: 0,
                phase: Phase::Setup
            }]
        );
        let cluster = lab(&LAB.replace(
            "  - {name: c}",
            "  - {name: c, roles: [nat64, control-plane]}\nkubernetes: {version: \"1.31\"}",
        ));
        assert_eq!(
            StageKind::after_up(&cluster)[..2],
            [StageKind::Nat64, StageKind::Kubernetes]
        );
        for (playbook, kind) in [
            ("kubernetes", Some(StageKind::Kubernetes)),
            (
                "playbooks/kubernetes/init.yaml",
                Some(StageKind::Kubernetes),
            ),
            ("nat64-remove", Some(StageKind::Nat64)),
            ("kubernetes-extra", None),
            ("scenarios/overlay/setup", None),
        ] {
            assert_eq!(
                StageKind::of_playbook(&cluster, playbook),
                kind,
                "{playbook}"
            );
        }
        // Without a cluster, `kubernetes/*` are plain playbooks.
        assert_eq!(StageKind::of_playbook(&plain, "kubernetes/init"), None);
        let gone = StageKind::Scenario {
            index: 5,
            phase: Phase::Verify,
        };
        assert!(gone.stage(&plain, None, Secrets::Ephemeral).is_err());
    }

    #[test]
    fn virthost_joins_only_when_asked() {
        let lab = lab(LAB);
        let mut stage = Stage {
            title: "t".into(),
            playbook: "t".into(),
            ..Stage::default()
        };
        let off = |n: &str| -> Arc<dyn Transport> { Arc::new(UnreachableTransport::new(n, "x")) };
        let v = || -> Arc<dyn Transport> { Arc::new(UnreachableTransport::new("virthost", "x")) };
        assert_eq!(stage_inventory(&lab, &stage, None, off, v()).hosts.len(), 3);
        stage.virthost = true;
        let inv = stage_inventory(&lab, &stage, None, off, v());
        assert_eq!(inv.hosts.len(), 4);
        assert_eq!(inv.groups()["virthost"], vec!["virthost"]);
    }

    #[test]
    fn a_stage_failure_says_which_step_failed_and_why() {
        let f = StageFailure {
            code: 1,
            title: "kubernetes".into(),
            failures: vec![crate::output::Failure {
                host: "kube-master".into(),
                play: "runtime".into(),
                step: "Docker's signing key".into(),
                location: "playbooks/kubernetes/runtime.yaml:30:7".into(),
                message: "exit code 6".into(),
                stderr_tail: "curl: (6) Could not resolve host: download.docker.com".into(),
            }],
        };
        assert_eq!(
            f.to_string(),
            "stage `kubernetes` failed:\n  kube-master | Docker's signing key \
             (playbooks/kubernetes/runtime.yaml:30:7): exit code 6\n    \
             | curl: (6) Could not resolve host: download.docker.com"
        );
        let bare = StageFailure {
            failures: Vec::new(),
            code: 2,
            ..f
        };
        assert_eq!(bare.to_string(), "stage `kubernetes` failed (exit code 2)");
    }
}
