//! Offline plans (a test tool of the golden Kubernetes plans, kept with the
//! tests: kubelab's own `plan` is the executor's check mode on real hosts):
//! what a playbook does on each host of an inventory,
//! rendered without connecting to any host — every step in order with its
//! parameters after templating, the content of every templated file, and
//! which steps a condition skips.
//!
//! A real run learns things from the hosts: facts, and the results of
//! steps (`register`). An offline plan takes both as [`Assumptions`]: facts
//! per host, and registered results, which by default are those of a first
//! run on fresh hosts where every command succeeds with no output and
//! every file changes (`{changed: true, rc: 0, stdout: ""}`); a condition
//! or parameter that cannot be evaluated is kept as what it is, with the
//! reason. Commands are not run and guards (`creates`, `unless`) are not
//! checked: they are shown as parameters.
//!
//! Variables follow the executor's precedence exactly (lab < host < play
//! < registered < `--var`), plays are barriers, `hostvars` carries what
//! each host registered in earlier plays. Secrets: the plan keeps the
//! rendered text (so tests can parse it); [`OfflinePlan::text`] and
//! [`OfflinePlan::redacted`] replace every secret value.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::Value;
use minijinja::value::Serde;
use serde::Serialize;

use kubelab::executor::render_json;
use kubelab::facts::Facts;
use kubelab::inventory::Inventory;
use kubelab::playbook::{Condition, LoopSpec, Module, Playbook, Step};
use kubelab::redact::Redactor;
use kubelab::template::Templates;
use kubelab::template::Vars;

/// What an offline plan takes for granted about the hosts.
#[derive(Clone, Debug, Default)]
pub struct Assumptions {
    /// Facts of each host; hosts not listed get `default_facts`.
    pub facts: BTreeMap<String, Facts>,
    pub default_facts: Facts,
    /// Registered results by variable name, for every host (merged over
    /// the default result of a successful first run).
    pub registered: BTreeMap<String, serde_json::Value>,
    /// The same per host, over `registered`.
    pub host_registered: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// `--var` values.
    pub extra_vars: Vars,
}

/// Whether a step runs on a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "decision", content = "reason")]
pub enum Decision {
    Runs,
    /// Its `when` is false.
    Skipped,
    /// Its `when` cannot be evaluated without the hosts (the reason says
    /// why); the step is shown as if it ran.
    Undecided(String),
}

/// One loop item (or the step itself) of a planned step.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<serde_json::Value>,
    pub decision: Decision,
    /// Module parameters after templating (`null` when they could not be
    /// rendered, see `error`).
    pub params: serde_json::Value,
    /// The rendered content of a `template` (or `copy` with `content`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One step as planned on one host.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedStep {
    pub play: String,
    pub step: String,
    pub module: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub register: Option<String>,
    pub secret: bool,
    pub items: Vec<PlannedItem>,
}

/// Per host, its steps in order.
#[derive(Clone, Debug, Serialize)]
pub struct HostSteps {
    pub host: String,
    pub steps: Vec<PlannedStep>,
}

/// A whole offline plan.
#[derive(Clone, Debug, Serialize)]
pub struct OfflinePlan {
    pub plays: Vec<String>,
    pub hosts: Vec<HostSteps>,
    /// Knows the secret values of the inventory and of secret steps.
    #[serde(skip)]
    pub redactor: Redactor,
}

/// The result a step registers on a fresh host where it succeeds.
fn default_result() -> serde_json::Value {
    serde_json::json!({
        "changed": true, "failed": false, "skipped": false, "rc": 0,
        "stdout": "", "stderr": "", "stdout_lines": [], "msg": "",
    })
}

fn skipped_result() -> serde_json::Value {
    serde_json::json!({
        "changed": false, "failed": false, "skipped": true, "rc": null,
        "stdout": "", "stderr": "", "stdout_lines": [], "msg": "condition is false",
    })
}

fn merged(base: serde_json::Value, over: Option<&serde_json::Value>) -> serde_json::Value {
    match (base, over) {
        (serde_json::Value::Object(mut b), Some(serde_json::Value::Object(o))) => {
            for (k, v) in o {
                b.insert(k.clone(), v.clone());
            }
            serde_json::Value::Object(b)
        }
        (_, Some(o)) => o.clone(),
        (b, None) => b,
    }
}

fn to_value(v: &serde_json::Value) -> Value {
    Value::from(Serde(v))
}

fn condition(templates: &Templates, c: &Condition, ctx: &Value) -> Result<bool, String> {
    match c {
        Condition::Always(b) => Ok(*b),
        Condition::Expr(e) => templates.eval(e, ctx).map(|v| v.is_true()),
    }
}

struct HostState {
    registered: BTreeMap<String, Value>,
    facts: Facts,
}

/// Render `playbook` over `inventory` without hosts.
pub fn render(
    playbook: &Playbook,
    inventory: &Inventory,
    templates: &Templates,
    assumptions: &Assumptions,
) -> Result<OfflinePlan, String> {
    let redactor = Redactor::new();
    redactor.add_secret_vars(&inventory.vars);
    redactor.add_secret_vars(&assumptions.extra_vars);
    for h in &inventory.hosts {
        redactor.add_secret_vars(&h.vars);
    }
    for p in &playbook.plays {
        redactor.add_secret_vars(&p.vars);
    }
    let groups = Value::from(Serde(inventory.groups()));
    let mut states: Vec<HostState> = inventory
        .hosts
        .iter()
        .map(|h| HostState {
            registered: BTreeMap::new(),
            facts: assumptions
                .facts
                .get(&h.name)
                .cloned()
                .unwrap_or_else(|| assumptions.default_facts.clone()),
        })
        .collect();
    let mut hosts: Vec<HostSteps> = inventory
        .hosts
        .iter()
        .map(|h| HostSteps {
            host: h.name.clone(),
            steps: Vec::new(),
        })
        .collect();
    for play in &playbook.plays {
        // A play's own `when`, as the executor evaluates it: the run's
        // variables, `groups`, `--var`; false skips the play whole.
        if let Some(cond) = &play.when {
            let mut ctx: BTreeMap<String, Value> = inventory
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), to_value(v)))
                .collect();
            ctx.insert("groups".into(), groups.clone());
            for (k, v) in &assumptions.extra_vars {
                ctx.insert(k.clone(), to_value(v));
            }
            if !condition(templates, cond, &Value::from(ctx))
                .map_err(|e| format!("play {}: when: {e}", play.name))?
            {
                continue;
            }
        }
        let selected = inventory
            .select(&play.hosts)
            .map_err(|e| format!("play {}: hosts: {e}", play.name))?;
        let hostvars = hostvars(inventory, &states);
        for i in selected {
            let host = &inventory.hosts[i];
            let mut base: BTreeMap<String, Value> = BTreeMap::new();
            for (k, v) in inventory.vars.iter().chain(host.vars.iter()) {
                base.insert(k.clone(), to_value(v));
            }
            base.insert("inventory_hostname".into(), Value::from(host.name.clone()));
            base.insert("kubelab_check_mode".into(), Value::from(false));
            base.insert("groups".into(), groups.clone());
            base.insert("hostvars".into(), hostvars.clone());
            let overlay = |ctx: &mut BTreeMap<String, Value>, state: &HostState| {
                for (k, v) in &state.registered {
                    ctx.insert(k.clone(), v.clone());
                }
                for (k, v) in &assumptions.extra_vars {
                    ctx.insert(k.clone(), to_value(v));
                }
                ctx.insert("facts".into(), Value::from(Serde(&state.facts)));
            };
            for (k, v) in &play.vars {
                let mut ctx = base.clone();
                overlay(&mut ctx, &states[i]);
                let rendered = render_json(templates, v, &Value::from(ctx))
                    .map_err(|e| format!("{}: play {} variable {k}: {e}", host.name, play.name))?;
                base.insert(k.clone(), to_value(&rendered));
            }
            for step in &play.steps {
                let mut ctx = base.clone();
                overlay(&mut ctx, &states[i]);
                let planned = plan_step(templates, play.name.as_str(), step, &ctx);
                if let Some(name) = &step.register {
                    let ran = planned
                        .items
                        .iter()
                        .any(|it| it.decision != Decision::Skipped);
                    let base_result = if ran {
                        default_result()
                    } else {
                        skipped_result()
                    };
                    let assumed = assumptions
                        .host_registered
                        .get(&host.name)
                        .and_then(|m| m.get(name))
                        .or_else(|| assumptions.registered.get(name));
                    let mut result = merged(base_result, assumed);
                    if step.loop_over.is_some() {
                        let results: Vec<serde_json::Value> =
                            planned.items.iter().map(|_| result.clone()).collect();
                        result = serde_json::json!({"changed": ran, "failed": false,
                            "skipped": !ran, "results": results});
                    }
                    states[i].registered.insert(name.clone(), to_value(&result));
                }
                hosts[i].steps.push(planned);
            }
        }
    }
    Ok(OfflinePlan {
        plays: playbook.plays.iter().map(|p| p.name.clone()).collect(),
        hosts,
        redactor,
    })
}

fn hostvars(inventory: &Inventory, states: &[HostState]) -> Value {
    let mut all = BTreeMap::new();
    for (h, s) in inventory.hosts.iter().zip(states) {
        let mut m: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in inventory.vars.iter().chain(h.vars.iter()) {
            m.insert(k.clone(), to_value(v));
        }
        for (k, v) in &s.registered {
            m.insert(k.clone(), v.clone());
        }
        m.insert("facts".into(), Value::from(Serde(&s.facts)));
        m.insert("inventory_hostname".into(), Value::from(h.name.clone()));
        all.insert(h.name.clone(), Value::from(m));
    }
    Value::from(all)
}

fn plan_step(
    templates: &Templates,
    play: &str,
    step: &Step,
    ctx: &BTreeMap<String, Value>,
) -> PlannedStep {
    let when = match &step.when {
        Some(Condition::Expr(e)) => Some(e.clone()),
        Some(Condition::Always(b)) => Some(b.to_string()),
        None => None,
    };
    let mut planned = PlannedStep {
        play: play.to_string(),
        step: step.name.clone(),
        module: step.module_name().to_string(),
        when,
        register: step.register.clone(),
        secret: step.secret,
        items: Vec::new(),
    };
    let whole = Value::from(ctx.clone());
    let items: Vec<Option<Value>> = match &step.loop_over {
        None => vec![None],
        Some(LoopSpec::Items(list)) => {
            let mut items = Vec::new();
            for v in list {
                match render_json(templates, v, &whole) {
                    Ok(r) => items.push(Some(to_value(&r))),
                    Err(e) => {
                        planned.items.push(unrendered(format!("loop item: {e}")));
                        return planned;
                    }
                }
            }
            items
        }
        Some(LoopSpec::Expr(e)) => match templates.eval(e, &whole).and_then(|v| {
            v.try_iter()
                .map(|it| it.map(Some).collect::<Vec<_>>())
                .map_err(|err| format!("loop `{e}` is not a list: {err}"))
        }) {
            Ok(items) => items,
            Err(err) => {
                planned.items.push(unrendered(format!("loop: {err}")));
                return planned;
            }
        },
    };
    for item in items {
        let mut map = ctx.clone();
        if let Some(i) = &item {
            map.insert("item".into(), i.clone());
        }
        let item_ctx = Value::from(map);
        let decision = match &step.when {
            None => Decision::Runs,
            Some(c) => match condition(templates, c, &item_ctx) {
                Ok(true) => Decision::Runs,
                Ok(false) => Decision::Skipped,
                Err(e) => Decision::Undecided(e),
            },
        };
        let item_json = item
            .as_ref()
            .map(|v| serde_json::to_value(v).unwrap_or(serde_json::Value::Null));
        if decision == Decision::Skipped {
            planned.items.push(PlannedItem {
                item: item_json,
                decision,
                params: serde_json::Value::Null,
                content: None,
                error: None,
            });
            continue;
        }
        let (params, content, error) = match render_json(templates, &step.params, &item_ctx) {
            Err(e) => (serde_json::Value::Null, None, Some(e)),
            Ok(params) => match serde_json::from_value::<Module>(params.clone()) {
                Err(e) => (
                    params,
                    None,
                    Some(format!("parameters after templating: {e}")),
                ),
                Ok(Module::Template(t)) => match templates.render_file(t.src.as_str(), &item_ctx) {
                    Ok(text) => (params, Some(text), None),
                    Err(e) => (params, None, Some(format!("template {}: {e}", t.src))),
                },
                Ok(Module::Copy(c)) => {
                    let content = c.content.map(|t| t.0);
                    (params, content, None)
                }
                Ok(_) => (params, None, None),
            },
        };
        planned.items.push(PlannedItem {
            item: item_json,
            decision,
            params,
            content,
            error,
        });
    }
    planned
}

fn unrendered(error: String) -> PlannedItem {
    PlannedItem {
        item: None,
        decision: Decision::Runs,
        params: serde_json::Value::Null,
        content: None,
        error: Some(error),
    }
}

fn redact_json(v: &serde_json::Value, r: &Redactor) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(r.redact(s).into_owned()),
        serde_json::Value::Array(a) => a.iter().map(|x| redact_json(x, r)).collect(),
        serde_json::Value::Object(o) => serde_json::Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), redact_json(x, r)))
                .collect(),
        ),
        other => other.clone(),
    }
}

impl OfflinePlan {
    /// The steps of one host.
    pub fn host(&self, name: &str) -> Option<&HostSteps> {
        self.hosts.iter().find(|h| h.host == name)
    }

    /// Every error (unrenderable parameter or file), as `host: step: error`.
    pub fn errors(&self) -> Vec<String> {
        let mut out = Vec::new();
        for h in &self.hosts {
            for s in &h.steps {
                for i in &s.items {
                    if let Some(e) = &i.error {
                        out.push(format!("{}: {}: {e}", h.host, s.step));
                    }
                }
            }
        }
        out
    }

    /// The same plan with every secret value replaced.
    pub fn redacted(&self) -> OfflinePlan {
        let r = &self.redactor;
        let mut plan = self.clone();
        for h in &mut plan.hosts {
            for s in &mut h.steps {
                let secret_copy = s.secret && s.module == "copy";
                for i in &mut s.items {
                    if secret_copy && let Some(c) = i.params.pointer_mut("/copy/content") {
                        // A secret step's literal content may be secret
                        // without any variable saying so.
                        *c = serde_json::Value::String(kubelab::redact::REDACTED.into());
                        i.content = None;
                    }
                    i.params = redact_json(&i.params, r);
                    i.item = i.item.as_ref().map(|v| redact_json(v, r));
                    i.content = i.content.as_ref().map(|c| r.redact(c).into_owned());
                    i.error = i.error.as_ref().map(|e| r.redact(e).into_owned());
                    if let Decision::Undecided(why) = &i.decision {
                        i.decision = Decision::Undecided(r.redact(why).into_owned());
                    }
                }
            }
        }
        plan
    }

    /// The plan as text, secrets redacted: per host, each step with its
    /// module and parameters (one JSON line), whether it runs (a step its
    /// condition skips is one line), and the content of templated files
    /// indented under it.
    pub fn text(&self) -> String {
        let plan = self.redacted();
        let mut out = String::new();
        for h in &plan.hosts {
            let _ = writeln!(out, "=== {}", h.host);
            let mut play = "";
            for s in &h.steps {
                if s.play != play {
                    play = &s.play;
                    let _ = writeln!(out, "--- play: {play}");
                }
                let _ = write!(out, "* {} [{}]", s.step, s.module);
                if s.items.iter().all(|i| i.decision == Decision::Skipped) {
                    let _ = writeln!(out, " skipped");
                    continue;
                }
                if let Some(w) = &s.when {
                    let _ = write!(out, " when: {w}");
                }
                if s.secret {
                    out.push_str(" (secret)");
                }
                out.push('\n');
                for i in &s.items {
                    let prefix = match &i.item {
                        Some(v) => format!("  - item {}: ", compact(v)),
                        None => "  ".to_string(),
                    };
                    match &i.decision {
                        Decision::Skipped => {
                            let _ = writeln!(out, "{prefix}skipped");
                            continue;
                        }
                        Decision::Undecided(why) => {
                            let _ =
                                writeln!(out, "{prefix}runs unless its condition is false ({why})");
                        }
                        Decision::Runs => {}
                    }
                    let _ = writeln!(out, "{prefix}{}", compact(&i.params));
                    if let Some(e) = &i.error {
                        let _ = writeln!(out, "  ERROR: {e}");
                    }
                    if let Some(c) = i.content.as_ref().filter(|_| s.module == "template") {
                        for l in c.lines() {
                            let _ = writeln!(out, "  | {l}");
                        }
                    }
                }
            }
        }
        out
    }
}

/// One-line JSON of a module's parameters (`{"command":{"argv":[...]}}`
/// shown as `{"argv":[...]}`).
fn compact(v: &serde_json::Value) -> String {
    let inner = match v {
        serde_json::Value::Object(o) if o.len() == 1 => o.values().next().unwrap_or(v),
        _ => v,
    };
    serde_json::to_string(inner).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kubelab::inventory::{Host, UnreachableTransport};
    use std::path::Path;
    use std::sync::Arc;

    fn inventory() -> Inventory {
        let mut inv = Inventory::new(Vars::from([(
            "api_token".to_string(),
            serde_json::json!("s3cr3t-token-value"),
        )]));
        for (name, group) in [("a", "cp"), ("b", "worker"), ("c", "worker")] {
            inv.add(Host {
                name: name.into(),
                groups: vec![group.into()],
                vars: Vars::from([("n".to_string(), serde_json::json!(name))]),
                transport: Arc::new(UnreachableTransport::new(name, "offline")),
            });
        }
        inv.declared_groups = vec!["lb".into()];
        inv
    }

    const BOOK: &str = r#"
- name: first
  hosts: cp
  steps:
    - name: version
      command: [tool, version]
      register: version
    - name: config
      template: {src: t.j2, dest: /etc/t.conf}
    - name: token file
      copy: {content: "{{ api_token }}", dest: /etc/token}
      secret: true
- name: never
  hosts: no-such-group
  when: "'lb' not in groups"
  steps:
    - name: not planned
      command: ["false"]
- name: second
  hosts: worker:lb
  vars:
    from_cp: "{{ hostvars['a'].version.stdout }}"
  steps:
    - name: uses the first play
      command: [echo, "{{ from_cp }}", "{{ n }}"]
    - name: only on c
      command: [echo, c]
      when: n == 'c'
    - name: depends on the run
      command: [echo, x]
      when: nothing_registered_this.rc == 0
    - name: loop
      file: {path: "/x/{{ item }}", state: directory}
      loop: [one, "{{ n }}"]
"#;

    #[test]
    fn renders_steps_files_conditions_and_hostvars_without_hosts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.j2"),
            "host={{ inventory_hostname }} family={{ facts.family }} token={{ api_token }}\n",
        )
        .unwrap();
        let templates = Templates::new(Some(dir.path().to_path_buf()));
        let pb = kubelab::playbook::load_str(Path::new("p.yaml"), BOOK, &templates)
            .map_err(|d| d.render(false))
            .unwrap();
        let assumptions = Assumptions {
            default_facts: Facts {
                family: "debian".into(),
                ..Facts::default()
            },
            registered: BTreeMap::from([(
                "version".to_string(),
                serde_json::json!({"stdout": "v9"}),
            )]),
            ..Assumptions::default()
        };
        let plan = render(&pb, &inventory(), &templates, &assumptions).unwrap();
        assert!(plan.errors().is_empty(), "{:?}", plan.errors());
        let a = plan.host("a").unwrap();
        assert_eq!(a.steps.len(), 3);
        assert_eq!(
            a.steps[1].items[0].content.as_deref(),
            Some("host=a family=debian token=s3cr3t-token-value\n")
        );
        let c = plan.host("c").unwrap();
        assert_eq!(c.steps[0].items[0].params["command"]["argv"][1], "v9");
        assert_eq!(c.steps[1].items[0].decision, Decision::Runs);
        assert_eq!(
            plan.host("b").unwrap().steps[1].items[0].decision,
            Decision::Skipped
        );
        assert!(matches!(
            c.steps[2].items[0].decision,
            Decision::Undecided(ref why) if why.contains("undefined")
        ));
        assert_eq!(c.steps[3].items.len(), 2);
        assert_eq!(c.steps[3].items[1].params["file"]["path"], "/x/c");
        let text = plan.text();
        assert!(!text.contains("s3cr3t-token-value"), "{text}");
        assert!(text.contains("token=[REDACTED]"), "{text}");
        assert!(text.contains("  | host=a family=debian"), "{text}");
        let json = serde_json::to_string(&plan.redacted()).unwrap();
        assert!(!json.contains("s3cr3t-token-value"), "{json}");
    }
}
