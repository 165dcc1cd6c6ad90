//! Stages: the built-in playbooks a lab runs on its VMs once they are up —
//! Kubernetes, then each scenario's phases — and the connections they run
//! over.
//!
//! A [`Stage`] names a playbook (built-in, or from `--playbook-dir`) and what
//! it needs beyond the lab: extra variables, extra groups (a scenario's VMs
//! are the group `scenario`), whether the virthost takes part (group
//! `virthost`). [`LabHosts`] holds one SSH connection per VM
//! (through the virthost) for a whole command, so every stage of one `up`
//! reuses them. [`lab_vars`] and [`vm_vars`] are what every playbook sees
//! about the lab; they are pure, so offline renderings (golden plans) use the
//! same variables as real runs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::inventory::{Host, Inventory, UnreachableTransport};
use crate::lab::Lab;
use crate::lab::model::{NetworkKind, Vm};
use crate::provision::access::VirthostAccess;
use crate::provision::{ProvisionError, read_inventory, vm_target};
use crate::scenario::ScenarioFile;
use crate::state::{Inventory as StateInventory, VmRecord};
use crate::template::Vars;
use crate::transport::Transport;

/// A scenario phase; each is the built-in playbook
/// `scenarios/<scenario>/<phase>` (optional ones may be missing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Setup,
    Verify,
    Break,
    Repair,
    Teardown,
}

impl Phase {
    pub const ALL: [Phase; 5] = [
        Phase::Setup,
        Phase::Verify,
        Phase::Break,
        Phase::Repair,
        Phase::Teardown,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Verify => "verify",
            Phase::Break => "break",
            Phase::Repair => "repair",
            Phase::Teardown => "teardown",
        }
    }
}

/// One playbook run on a lab's hosts.
#[derive(Clone, Debug, Default)]
pub struct Stage {
    /// What progress and reports call it (`kubernetes`, `service-chain setup`).
    pub title: String,
    /// Built-in playbook name (`kubernetes`, `scenarios/overlay/setup`),
    /// or the name a generated playbook is reported under.
    pub playbook: String,
    /// The playbook's text when kubelab generated it (the lab's `links:`).
    pub inline: Option<String>,
    /// Variables for every host, over the lab's (and under `--var`).
    pub vars: Vars,
    /// Per-VM variables over the VM's own.
    pub host_vars: BTreeMap<String, Vars>,
    /// Extra groups: name → VM names.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Add the virthost as host `virthost` in group `virthost`. It is then
    /// part of `all`: such a stage's plays name their groups.
    pub virthost: bool,
}

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
        vars.insert("scenario".into(), kind.resolved(lab));
        vars.insert("scenario_name".into(), Value::from(scenario.name()));
        vars.insert("phase".into(), Value::from(phase.as_str()));
        let mut groups = BTreeMap::from([("scenario".to_string(), members)]);
        groups.extend(kind.groups(&lab.vms));
        Stage {
            title: format!("{} {}", scenario.name(), phase.as_str()),
            playbook: scenario_playbook(scenario.name(), phase),
            inline: None,
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

/// What every playbook of the lab sees, over the lab's own `vars`:
/// `lab` (name, networks with gateways, VM names and roles) and, when the
/// lab has a cluster, `kubernetes` (its settings plus `minor`).
pub fn lab_vars(lab: &Lab) -> Vars {
    let mut vars = lab.vars.clone();
    let networks: Vec<Value> = lab
        .networks
        .iter()
        .map(|n| {
            let (kind, bridge) = match &n.kind {
                NetworkKind::Nat => ("nat", None),
                NetworkKind::Isolated => ("isolated", None),
                NetworkKind::Bridged { bridge, .. } => ("bridged", Some(bridge.clone())),
            };
            json!({
                "name": n.name,
                "kind": kind,
                "bridge": bridge,
                "ipv4": n.ipv4.map(|x| x.to_string()),
                "ipv6": n.ipv6.map(|x| x.to_string()),
                "gateway4": n.gateway4().map(|x| x.to_string()),
                "gateway6": n.gateway6().map(|x| x.to_string()),
                "mtu": n.mtu,
            })
        })
        .collect();
    let vms: Vec<Value> = lab
        .vms
        .iter()
        .map(|v| json!({"name": v.name, "roles": v.roles}))
        .collect();
    vars.insert(
        "lab".into(),
        json!({"name": lab.name, "networks": networks, "vms": vms}),
    );
    if let Some(k) = &lab.kubernetes {
        let mut value = serde_json::to_value(k).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut value {
            m.insert("minor".into(), Value::from(k.minor()));
        }
        vars.insert("kubernetes".into(), value);
    }
    vars
}

/// A VM's variables: its own `vars` over what kubelab knows of it —
/// `roles`, `address` (the one kubelab connects to), `ipv4`/`ipv6` (every
/// address found; `address4`/`address6` the first of each), `nics` (network,
/// MAC, static addresses), `spare_disks` (dev, size_mib, format) and `disks`.
pub fn vm_vars(vm: &Vm, record: Option<&VmRecord>) -> Vars {
    let mut vars = Vars::new();
    vars.insert("roles".into(), json!(vm.roles));
    let nics: Vec<Value> = vm
        .nics
        .iter()
        .map(|n| json!({"network": n.network, "mac": n.mac, "ipv4": n.ipv4, "ipv6": n.ipv6}))
        .collect();
    vars.insert("nics".into(), Value::Array(nics));
    vars.insert(
        "spare_disks".into(),
        serde_json::to_value(&vm.spare_disks).unwrap_or(Value::Null),
    );
    let static4: Vec<String> = vm
        .nics
        .iter()
        .filter_map(|n| n.ipv4.map(|a| a.to_string()))
        .collect();
    let static6: Vec<String> = vm
        .nics
        .iter()
        .filter_map(|n| n.ipv6.map(|a| a.to_string()))
        .collect();
    let (ipv4, ipv6, address, disks) = match record {
        Some(r) => (
            r.ipv4.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            r.ipv6.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            Some(r.address.clone()),
            r.disks.clone(),
        ),
        None => (static4, static6, None, Vec::new()),
    };
    let address = address
        .or_else(|| ipv4.first().cloned())
        .or_else(|| ipv6.first().cloned());
    vars.insert("address4".into(), json!(ipv4.first()));
    vars.insert("address6".into(), json!(ipv6.first()));
    vars.insert("ipv4".into(), json!(ipv4));
    vars.insert("ipv6".into(), json!(ipv6));
    if let Some(a) = address {
        vars.insert("address".into(), Value::from(a));
    }
    vars.insert("disks".into(), json!(disks));
    for (k, v) in &vm.vars {
        vars.insert(k.clone(), v.clone());
    }
    vars
}

/// One connection per VM of an `up` lab (through the virthost), kept for a
/// whole command, and the virthost's own access.
pub struct LabHosts {
    access: VirthostAccess,
    state: StateInventory,
    vms: Vec<(String, Arc<dyn Transport>)>,
}

impl LabHosts {
    /// Connect to every VM of the lab at once. A VM that does not answer is
    /// kept as unreachable (its steps fail with exit code 3; the others run).
    pub async fn connect(lab: &Lab) -> Result<LabHosts, ProvisionError> {
        let state = read_inventory(lab)?.ok_or_else(|| {
            ProvisionError::Failed(format!(
                "lab {} is not up (no inventory in its state directory; run `kubelab up` first)",
                lab.name
            ))
        })?;
        let access = VirthostAccess::connect(lab).await.map_err(|e| {
            if e.is_unreachable() {
                ProvisionError::Unreachable(e.to_string())
            } else {
                ProvisionError::Failed(e.to_string())
            }
        })?;
        let dir = crate::state::state_dir(&lab.name);
        let connects = state.vms.iter().map(|rec| {
            let mut target = vm_target(&state, rec, &dir);
            target.connect_attempts = 3;
            let access = &access;
            async move {
                let t: Arc<dyn Transport> = match access.vm(target).await {
                    Ok(t) => Arc::new(t),
                    Err(e) => Arc::new(UnreachableTransport::from_error(&rec.name, &e)),
                };
                (rec.name.clone(), t)
            }
        });
        let vms = futures::future::join_all(connects).await;
        Ok(LabHosts { access, state, vms })
    }

    pub fn access(&self) -> &VirthostAccess {
        &self.access
    }

    /// The engine's inventory for a stage: the lab's VMs (in lab order, with
    /// [`vm_vars`] and the stage's host vars), the stage's groups, and the
    /// virthost when the stage asks for it.
    pub fn inventory(&self, lab: &Lab, stage: &Stage) -> Inventory {
        let transports: BTreeMap<&str, Arc<dyn Transport>> = self
            .vms
            .iter()
            .map(|(n, t)| (n.as_str(), t.clone()))
            .collect();
        let virthost: Arc<dyn Transport> = match &self.access {
            VirthostAccess::Local(_) => Arc::new(crate::transport::LocalTransport::new("virthost")),
            VirthostAccess::Remote(t) => t.clone(),
        };
        stage_inventory(
            lab,
            stage,
            Some(&self.state),
            |vm| {
                transports.get(vm).cloned().unwrap_or_else(|| {
                    Arc::new(UnreachableTransport::new(
                        vm,
                        "not in the lab's inventory: run `kubelab up` again",
                    ))
                })
            },
            virthost,
        )
    }

    /// Close every connection.
    pub async fn close(self) {
        drop(self.vms);
        if let VirthostAccess::Remote(t) = &self.access {
            t.disconnect().await;
        }
    }
}

/// The inventory of a stage, given how to reach each VM and the virthost
/// (offline renderings pass transports that are never used).
pub fn stage_inventory(
    lab: &Lab,
    stage: &Stage,
    state: Option<&StateInventory>,
    mut transport_for: impl FnMut(&str) -> Arc<dyn Transport>,
    virthost: Arc<dyn Transport>,
) -> Inventory {
    let mut vars = lab_vars(lab);
    for (k, v) in &stage.vars {
        vars.insert(k.clone(), v.clone());
    }
    let mut inv = Inventory::new(vars);
    inv.declared_groups = stage.groups.keys().cloned().collect();
    for vm in &lab.vms {
        let record = state.and_then(|s| s.vms.iter().find(|r| r.name == vm.name));
        let mut vars = vm_vars(vm, record);
        if let Some(extra) = stage.host_vars.get(&vm.name) {
            for (k, v) in extra {
                vars.insert(k.clone(), v.clone());
            }
        }
        let mut groups = vm.roles.clone();
        for (g, members) in &stage.groups {
            if members.iter().any(|m| m == &vm.name) && !groups.contains(g) {
                groups.push(g.clone());
            }
        }
        inv.add(Host {
            name: vm.name.clone(),
            groups,
            vars,
            transport: transport_for(&vm.name),
        });
    }
    if stage.virthost {
        inv.add(Host {
            name: "virthost".into(),
            groups: vec!["virthost".into()],
            vars: Vars::new(),
            transport: virthost,
        });
    }
    inv
}

/// Whether making a stage may create the lab's Kubernetes secrets in its
/// state directory (`up`, `play`) or must leave the directory as it is
/// (`plan`: missing secrets are made for this one rendering only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrets {
    Keep,
    Ephemeral,
}

/// The stages `up` runs after the VMs answer: `nat64` when a VM has the
/// role `nat64`, `kubernetes` when the lab has a cluster, then the lab's
/// `links:`, then each scenario's setup, in lab order.
pub fn after_up(lab: &Lab) -> Result<Vec<Stage>, StageError> {
    after_up_with(lab, Secrets::Keep)
}

/// [`after_up`], saying what may happen to the secrets.
pub fn after_up_with(lab: &Lab, secrets: Secrets) -> Result<Vec<Stage>, StageError> {
    let mut stages = Vec::new();
    if !lab.group("nat64").is_empty() {
        stages.push(for_playbook_with(lab, "nat64", secrets)?);
    }
    if lab.kubernetes.is_some() {
        stages.push(for_playbook_with(lab, "kubernetes", secrets)?);
    }
    stages.extend(crate::links::stage(lab));
    for s in &lab.scenarios {
        stages.push(Stage::scenario(lab, s, Phase::Setup));
    }
    Ok(stages)
}

/// Why a stage cannot be made (a lab that is valid but cannot have a
/// cluster yet, unreadable state).
pub type StageError = crate::kubernetes::stage::StageError;

/// The stage a playbook runs in on this lab: the `kubernetes` stage for
/// `kubernetes` and `kubernetes/*` (when the lab has a cluster), the
/// `nat64` stage for `nat64` and `nat64-remove`, else the lab's variables only.
pub fn for_playbook(lab: &Lab, playbook: &str) -> Result<Stage, StageError> {
    for_playbook_with(lab, playbook, Secrets::Keep)
}

fn for_playbook_with(lab: &Lab, playbook: &str, secrets: Secrets) -> Result<Stage, StageError> {
    let bare = playbook.strip_suffix(".yaml").unwrap_or(playbook);
    let bare = bare.strip_prefix("playbooks/").unwrap_or(bare);
    let state_dir = crate::state::state_dir(&lab.name);
    let state = || {
        crate::provision::read_inventory(lab).map_err(|e| StageError::File {
            path: state_dir.join("inventory.yaml"),
            message: e.to_string(),
        })
    };
    if (bare == "kubernetes" || bare.starts_with("kubernetes/")) && lab.kubernetes.is_some() {
        let keys = match secrets {
            Secrets::Keep => crate::kubernetes::ClusterSecrets::load_or_create(&state_dir)?,
            Secrets::Ephemeral => crate::kubernetes::ClusterSecrets::load_or_make(&state_dir)?,
        };
        let state = state()?;
        return crate::kubernetes::stage::kubernetes_stage(
            lab,
            playbook,
            state.as_ref(),
            &keys,
            &state_dir,
        );
    }
    if bare == "nat64" || bare == "nat64-remove" {
        let state = state()?;
        return crate::kubernetes::stage::nat64_stage(lab, playbook, state.as_ref());
    }
    Ok(Stage {
        title: playbook.to_string(),
        playbook: playbook.to_string(),
        ..Stage::default()
    })
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
    req.inline = stage.inline.clone();
    crate::runner::execute(hosts.inventory(lab, stage), &req).await
}

/// A stage that did not finish: its exit code (1 failed steps, 2 invalid
/// playbook, 3 unreachable hosts), its title and the steps that failed,
/// each with the tail of its stderr, so that the command's last words say
/// why and not only which stage.
#[derive(Clone, Debug)]
pub struct StageFailure {
    pub code: i32,
    pub title: String,
    pub failures: Vec<crate::output::Failure>,
}

impl std::fmt::Display for StageFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stage `{}` failed", self.title)?;
        if self.failures.is_empty() {
            return write!(f, " (exit code {})", self.code);
        }
        f.write_str(":")?;
        for x in &self.failures {
            write!(
                f,
                "\n  {} | {} ({}): {}",
                x.host, x.step, x.location, x.message
            )?;
            for l in x.stderr_tail.lines() {
                write!(f, "\n    | {l}")?;
            }
        }
        Ok(())
    }
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
