//! The executor: runs a playbook over an inventory.
//!
//! Hosts of a play run in parallel (one task per host, each host's steps in
//! order); every host finishes a play before the next play starts, so what
//! a host registered is visible to all hosts afterwards as
//! `hostvars[host].name`. A failing step stops its host; the other hosts
//! finish the play, and the run fails with a summary.
//!
//! Variable precedence, lowest first: lab vars, host (VM) vars, play vars,
//! registered values, `--var` values. In a `loop`, `item` is the item and
//! `loop_index` its position (from 0).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::Value;
use minijinja::value::Serde;

use crate::apply::{self, Outcome, Target};
use crate::facts::{self, Facts};
use crate::inventory::Inventory;
use crate::output::{Event, Failure, HostTally, Reporter, Status, Summary, tail};
use crate::playbook::modules::FileState;
use crate::playbook::{Condition, LoopSpec, Module, Play, Playbook, Step};
use crate::template::Templates;
use crate::template::Vars;
use crate::transport::TransportError;

/// How to run.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Change nothing; report what would change.
    pub check: bool,
    /// `--var name=value`: wins over every other variable.
    pub extra_vars: Vars,
    /// Run only steps with one of these tags (and steps tagged `always`).
    pub tags: Vec<String>,
    /// The log file, to name in the summary.
    pub log_path: Option<String>,
}

/// What one step did on one host.
#[derive(Clone, Debug)]
pub struct StepRecord {
    pub host: String,
    pub play: String,
    pub step: String,
    pub location: String,
    pub module: &'static str,
    pub status: Status,
    pub changed: bool,
    pub duration: Duration,
    pub message: String,
    pub stdout: String,
    pub stderr: String,
    pub diff: Option<String>,
    /// The module parameters after templating (last loop item).
    pub params: serde_json::Value,
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub summary: Summary,
    pub records: Vec<StepRecord>,
}

impl RunReport {
    /// 0 success, 1 failed steps, 2 invalid input, 3 unreachable hosts.
    pub fn exit_code(&self) -> i32 {
        self.summary.exit_code
    }
    pub fn success(&self) -> bool {
        self.summary.exit_code == 0
    }
    /// Records of one host, in order.
    pub fn host_records<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a StepRecord> + 'a {
        self.records.iter().filter(move |r| r.host == host)
    }
    pub fn changed_count(&self) -> usize {
        self.summary.hosts.iter().map(|h| h.changed).sum()
    }
}

#[derive(Default)]
struct HostState {
    registered: BTreeMap<String, Value>,
    facts: Option<Facts>,
    failed: bool,
    unreachable: bool,
    tally: HostTally,
}

struct Shared {
    inventory: Inventory,
    templates: Arc<Templates>,
    reporter: Arc<Reporter>,
    options: RunOptions,
    groups: Value,
}

/// Runs playbooks over one inventory.
pub struct Executor {
    shared: Arc<Shared>,
}

fn to_value(v: &serde_json::Value) -> Value {
    Value::from(Serde(v))
}

fn to_json(v: &Value) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Render every string inside a JSON value.
pub fn render_json(
    templates: &Templates,
    value: &serde_json::Value,
    ctx: &Value,
) -> Result<serde_json::Value, String> {
    Ok(match value {
        serde_json::Value::String(s) => serde_json::Value::String(templates.render_str(s, ctx)?),
        serde_json::Value::Array(a) => serde_json::Value::Array(
            a.iter()
                .map(|v| render_json(templates, v, ctx))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(o) => serde_json::Value::Object(
            o.iter()
                .map(|(k, v)| Ok((k.clone(), render_json(templates, v, ctx)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

impl Executor {
    pub fn new(
        inventory: Inventory,
        templates: Arc<Templates>,
        reporter: Arc<Reporter>,
        options: RunOptions,
    ) -> Self {
        let groups = Value::from(Serde(inventory.groups()));
        Executor {
            shared: Arc::new(Shared {
                inventory,
                templates,
                reporter,
                options,
                groups,
            }),
        }
    }

    pub fn inventory(&self) -> &Inventory {
        &self.shared.inventory
    }

    /// Run a playbook; events go to the reporter, the report comes back.
    pub async fn run(&self, playbook: &Playbook) -> RunReport {
        let shared = &self.shared;
        let started = Instant::now();
        let redactor = shared.reporter.redactor();
        redactor.add_secret_vars(&shared.inventory.vars);
        redactor.add_secret_vars(&shared.options.extra_vars);
        for h in &shared.inventory.hosts {
            redactor.add_secret_vars(&h.vars);
        }
        for p in &playbook.plays {
            redactor.add_secret_vars(p.vars.iter());
        }
        let host_names: Vec<String> = shared
            .inventory
            .hosts
            .iter()
            .map(|h| h.name.clone())
            .collect();
        shared.reporter.emit(Event::RunStart {
            playbook: playbook.file.path.display().to_string(),
            check: shared.options.check,
            hosts: host_names.clone(),
        });
        let mut states: Vec<HostState> = host_names
            .iter()
            .map(|n| HostState {
                tally: HostTally {
                    host: n.clone(),
                    ..HostTally::default()
                },
                ..HostState::default()
            })
            .collect();
        let mut records = Vec::new();
        let mut failures = Vec::new();
        let mut invalid = false;
        for play in &playbook.plays {
            match self.play_condition(play) {
                Ok(true) => {}
                Ok(false) => {
                    shared.reporter.emit(Event::PlayStart {
                        play: play.name.clone(),
                        hosts: Vec::new(),
                        steps: 0,
                    });
                    shared.reporter.emit(Event::PlayEnd {
                        play: play.name.clone(),
                    });
                    continue;
                }
                Err(e) => {
                    failures.push(Failure {
                        host: "-".into(),
                        play: play.name.clone(),
                        step: "(when)".into(),
                        location: format!(
                            "{}:{}:{}",
                            playbook.file.path.display(),
                            play.span.start.line,
                            play.span.start.col
                        ),
                        message: format!("play {}: when: {e}", play.name),
                        stderr_tail: String::new(),
                    });
                    break;
                }
            }
            let selected = match shared.inventory.select(&play.hosts) {
                Ok(s) => s,
                Err(e) => {
                    invalid = true;
                    failures.push(Failure {
                        host: "-".into(),
                        play: play.name.clone(),
                        step: "(hosts)".into(),
                        location: format!(
                            "{}:{}:{}",
                            playbook.file.path.display(),
                            play.span.start.line,
                            play.span.start.col
                        ),
                        message: format!("play {}: hosts: {e}", play.name),
                        stderr_tail: String::new(),
                    });
                    break;
                }
            };
            let active: Vec<usize> = selected
                .into_iter()
                .filter(|i| !states[*i].failed && !states[*i].unreachable)
                .collect();
            let steps: Vec<usize> = play
                .steps
                .iter()
                .enumerate()
                .filter(|(_, s)| self.selected_by_tags(s))
                .map(|(i, _)| i)
                .collect();
            shared.reporter.emit(Event::PlayStart {
                play: play.name.clone(),
                hosts: active.iter().map(|i| host_names[*i].clone()).collect(),
                steps: steps.len(),
            });
            let hostvars = self.hostvars(&states);
            let play = Arc::new(play.clone());
            let steps = Arc::new(steps);
            let mut play_records = Vec::new();
            // `serial: N`: N hosts at a time, each batch finishing the play
            // before the next starts; by default all hosts at once.
            let batch = play.serial.map_or(active.len().max(1), |n| n.max(1));
            for hosts in active.chunks(batch) {
                let mut tasks = tokio::task::JoinSet::new();
                for &i in hosts {
                    let state = std::mem::take(&mut states[i]);
                    let shared = shared.clone();
                    let play = play.clone();
                    let steps = steps.clone();
                    let hostvars = hostvars.clone();
                    tasks.spawn(async move {
                        let mut state = state;
                        let recs = run_host(&shared, &play, &steps, i, &mut state, hostvars).await;
                        (i, state, recs)
                    });
                }
                while let Some(joined) = tasks.join_next().await {
                    match joined {
                        Ok((i, state, recs)) => {
                            states[i] = state;
                            play_records.extend(recs);
                        }
                        Err(e) => failures.push(Failure {
                            host: "-".into(),
                            play: play.name.clone(),
                            step: "-".into(),
                            location: String::new(),
                            message: format!("internal error: a host task ended abnormally: {e}"),
                            stderr_tail: String::new(),
                        }),
                    }
                }
            }
            // Keep records in inventory order, then step order.
            play_records.sort_by_key(|r: &(usize, usize, StepRecord)| (r.0, r.1));
            records.extend(play_records.into_iter().map(|(_, _, r)| r));
            shared.reporter.emit(Event::PlayEnd {
                play: play.name.clone(),
            });
            if play.any_errors_fatal
                && active
                    .iter()
                    .any(|i| states[*i].failed || states[*i].unreachable)
            {
                break;
            }
        }
        for r in &records {
            if matches!(r.status, Status::Failed | Status::Unreachable) {
                failures.push(Failure {
                    host: r.host.clone(),
                    play: r.play.clone(),
                    step: r.step.clone(),
                    location: r.location.clone(),
                    message: r.message.clone(),
                    stderr_tail: tail(&r.stderr, crate::output::STDERR_TAIL_LINES),
                });
            }
        }
        let exit_code = if invalid {
            2
        } else if states.iter().any(|s| s.unreachable) {
            3
        } else if !failures.is_empty() || states.iter().any(|s| s.failed) {
            1
        } else {
            0
        };
        let mut summary = Summary {
            hosts: states.into_iter().map(|s| s.tally).collect(),
            failures,
            check: shared.options.check,
            log: shared.options.log_path.clone(),
            duration_ms: started.elapsed().as_millis() as u64,
            exit_code,
        };
        // The report goes on to the command's own last words (a stage's
        // failure): secrets out of it as out of the events.
        summary.redact(shared.reporter.redactor());
        shared.reporter.emit(Event::RunEnd {
            summary: summary.clone(),
        });
        RunReport { summary, records }
    }

    /// A play's `when`, evaluated once with the run's variables (lab and
    /// stage variables, `groups`, `--var`), before its hosts are resolved.
    fn play_condition(&self, play: &Play) -> Result<bool, String> {
        let Some(cond) = &play.when else {
            return Ok(true);
        };
        let shared = &self.shared;
        let mut ctx: BTreeMap<String, Value> = shared
            .inventory
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), to_value(v)))
            .collect();
        ctx.insert("groups".into(), shared.groups.clone());
        for (k, v) in &shared.options.extra_vars {
            ctx.insert(k.clone(), to_value(v));
        }
        eval_condition(&shared.templates, cond, &Value::from(ctx))
    }

    fn selected_by_tags(&self, step: &Step) -> bool {
        let tags = &self.shared.options.tags;
        tags.is_empty() || step.tags.iter().any(|t| t == "always" || tags.contains(t))
    }

    /// `hostvars`: every host's variables, registered values and facts,
    /// as of the start of a play.
    fn hostvars(&self, states: &[HostState]) -> Value {
        let inv = &self.shared.inventory;
        let mut all = BTreeMap::new();
        for (h, s) in inv.hosts.iter().zip(states) {
            let mut m: BTreeMap<String, Value> = BTreeMap::new();
            for (k, v) in inv.vars.iter().chain(h.vars.iter()) {
                m.insert(k.clone(), to_value(v));
            }
            for (k, v) in &s.registered {
                m.insert(k.clone(), v.clone());
            }
            if let Some(f) = &s.facts {
                m.insert("facts".into(), Value::from(Serde(f)));
            }
            m.insert("inventory_hostname".into(), Value::from(h.name.clone()));
            all.insert(h.name.clone(), Value::from(m));
        }
        Value::from(all)
    }
}

/// Run a play's steps on one host. Returns `(host index, step index, record)`.
async fn run_host(
    shared: &Shared,
    play: &Play,
    steps: &[usize],
    index: usize,
    state: &mut HostState,
    hostvars: Value,
) -> Vec<(usize, usize, StepRecord)> {
    let host = &shared.inventory.hosts[index];
    let mut records = Vec::new();
    let fail_host = |state: &mut HostState,
                     step: &str,
                     location: String,
                     message: String,
                     unreachable: bool| {
        let status = if unreachable {
            Status::Unreachable
        } else {
            Status::Failed
        };
        state.failed = true;
        state.unreachable |= unreachable;
        state.tally.count(status);
        let record = StepRecord {
            host: host.name.clone(),
            play: play.name.clone(),
            step: step.to_string(),
            location,
            module: "-",
            status,
            changed: false,
            duration: Duration::ZERO,
            message,
            stdout: String::new(),
            stderr: String::new(),
            diff: None,
            params: serde_json::Value::Null,
        };
        shared.reporter.emit(end_event(&record));
        record
    };
    let play_location = |file_hint: &str| format!("{file_hint} (play {})", play.name);
    if play.gather_facts && state.facts.is_none() {
        match facts::gather(host.transport.as_ref()).await {
            Ok(f) => state.facts = Some(f),
            Err(e) => {
                let r = fail_host(
                    state,
                    "gathering facts",
                    play_location("facts"),
                    e.to_string(),
                    e.is_unreachable(),
                );
                records.push((index, 0, r));
                return records;
            }
        }
    }
    // Base context: lab vars < host vars < play vars (rendered in the
    // order written, each seeing the ones before).
    let mut base: BTreeMap<String, Value> = BTreeMap::new();
    for (k, v) in shared.inventory.vars.iter().chain(host.vars.iter()) {
        base.insert(k.clone(), to_value(v));
    }
    base.insert("inventory_hostname".into(), Value::from(host.name.clone()));
    base.insert(
        "kubelab_check_mode".into(),
        Value::from(shared.options.check),
    );
    base.insert("groups".into(), shared.groups.clone());
    base.insert("hostvars".into(), hostvars);
    for (k, v) in play.vars.iter() {
        let mut ctx_map = base.clone();
        overlay(&mut ctx_map, state, &shared.options.extra_vars);
        let ctx = Value::from(ctx_map);
        match render_json(&shared.templates, v, &ctx) {
            Ok(r) => {
                base.insert(k.clone(), to_value(&r));
            }
            Err(e) => {
                let r = fail_host(
                    state,
                    &format!("play variable {k}"),
                    play_location("vars"),
                    e,
                    false,
                );
                records.push((index, 0, r));
                return records;
            }
        }
    }
    // Answers fetched ahead for a run of coming steps, valid until
    // `prefetched_until` (a position in `steps`).
    let prefetched = apply::Prefetched::default();
    let mut prefetched_until = 0;
    for (position, &si) in steps.iter().enumerate() {
        let step = &play.steps[si];
        shared.reporter.emit(Event::StepStart {
            host: host.name.clone(),
            play: play.name.clone(),
            step: step.name.clone(),
            location: step.location.clone(),
        });
        // The step that starts a run asks for the whole run: its duration
        // includes that round trip, the steps after it only their own work.
        let asking = Instant::now();
        if position >= prefetched_until {
            prefetched.clear();
            let covered = prefetch_ahead(
                shared,
                play,
                &steps[position..],
                index,
                state,
                &base,
                &prefetched,
            )
            .await;
            prefetched_until = position + covered;
        }
        let asked_for = asking.elapsed();
        let mut record = run_step(shared, play, step, index, state, &base, &prefetched).await;
        record.duration += asked_for;
        state.tally.count(record.status);
        match record.status {
            Status::Failed => state.failed = true,
            Status::Unreachable => {
                state.unreachable = true;
                state.failed = true;
            }
            Status::Ok | Status::Changed | Status::Skipped => {}
        }
        shared.reporter.emit(end_event(&record));
        let stop = state.failed;
        records.push((index, si, record));
        if stop {
            break;
        }
    }
    records
}

/// What a step can have asked of its host ahead, with other steps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AskAhead {
    /// A `command` declared read-only (`changed_when: false`): its output
    /// and exit code.
    ReadOnlyCommand,
    /// `file` with `state: directory` (a loop too): type, mode and owner of
    /// each path; when all hold, the step runs nothing on the host.
    Directory,
    /// `copy`, `template`, `line`: the state (type, mode, owner, content)
    /// of the file it manages.
    FileContent,
}

/// Whether a step, as written, can have its remote read done ahead: it runs
/// unconditionally, and fails or succeeds by its module's verdict, so that
/// nothing decided by the steps before it in the same run can change
/// whether it runs.
fn ask_ahead(step: &Step) -> Option<AskAhead> {
    let plain = step.when.is_none()
        && step.until.is_none()
        && step.retries == 0
        && step.failed_when.is_none();
    if !plain {
        return None;
    }
    match &step.module {
        Module::Command(a)
            if step.loop_over.is_none()
                && step.changed_when == Some(Condition::Always(false))
                && a.creates.is_none()
                && a.removes.is_none()
                && a.unless.is_none()
                && a.stdin.is_none()
                && a.timeout.is_none() =>
        {
            Some(AskAhead::ReadOnlyCommand)
        }
        Module::File(a) if a.state == FileState::Directory && step.changed_when.is_none() => {
            Some(AskAhead::Directory)
        }
        Module::Copy(_) | Module::Template(_) | Module::Line(_)
            if step.loop_over.is_none() && step.changed_when.is_none() =>
        {
            Some(AskAhead::FileContent)
        }
        _ => None,
    }
}

/// The (unrendered) path parameter of a `copy`, `template` or `line` step.
fn content_path_param(step: &Step) -> Option<&serde_json::Value> {
    let module = step.params.as_object()?.values().next()?;
    match step.module {
        Module::Copy(_) | Module::Template(_) => module.get("dest"),
        Module::Line(_) => module.get("path"),
        _ => None,
    }
}

/// The text a step's remote question is made from: the whole step for a
/// command or a directory (its loop too), the path alone for a file whose
/// content is converged (its content is rendered when the step runs).
fn question_text(step: &Step, kind: AskAhead) -> String {
    match kind {
        AskAhead::FileContent => content_path_param(step)
            .map(|p| p.to_string())
            .unwrap_or_default(),
        AskAhead::ReadOnlyCommand | AskAhead::Directory => {
            let looped = match &step.loop_over {
                Some(LoopSpec::Items(items)) => serde_json::Value::from(items.clone()).to_string(),
                Some(LoopSpec::Expr(e)) => e.clone(),
                None => String::new(),
            };
            format!("{}{looped}", step.params)
        }
    }
}

/// Asks the host, in ONE round trip, what the run of steps starting at
/// `steps[0]` would ask it one by one: the outputs of its read-only
/// commands, then the state of the directories and files its file steps
/// manage (see `apply::prefetch`). The steps then run one by one as usual
/// and take their answers from `prefetched`. Returns how many steps the
/// answers are for; 0 when nothing was asked (fewer than two steps).
///
/// The run keeps the order of the steps' effects: commands only before
/// any file step (a command after one could read what it wrote); it ends
/// before a step whose question mentions a name registered by an earlier
/// step of the run (the question could depend on that step's result), and
/// before a second step on the same path (it must see the first one's
/// change). A step that renders differently when it runs simply finds no
/// answer and asks for itself.
async fn prefetch_ahead(
    shared: &Shared,
    play: &Play,
    steps: &[usize],
    index: usize,
    state: &HostState,
    base: &BTreeMap<String, Value>,
    prefetched: &apply::Prefetched,
) -> usize {
    let Some(first) = steps.first().map(|&si| &play.steps[si]) else {
        return 0;
    };
    if ask_ahead(first).is_none() {
        return 0;
    }
    let mut ctx_map = base.clone();
    overlay(&mut ctx_map, state, &shared.options.extra_vars);
    let ctx = Value::from(ctx_map.clone());
    let templates = &shared.templates;
    let mut registered: Vec<&str> = Vec::new();
    let mut ahead = apply::Ahead::default();
    let mut covered = 0;
    let mut files_seen = false;
    'steps: for &si in steps {
        let step = &play.steps[si];
        let Some(kind) = ask_ahead(step).filter(|_| step.become_root == first.become_root) else {
            break;
        };
        if kind == AskAhead::ReadOnlyCommand && files_seen {
            break;
        }
        let question = question_text(step, kind);
        if registered.iter().any(|name| question.contains(name)) {
            break;
        }
        let Ok(items) = loop_items(templates, step, &ctx_map) else {
            break;
        };
        let mut asks = apply::Ahead::default();
        for (i, item) in items.iter().enumerate() {
            let mut map = ctx_map.clone();
            if let Some(it) = item {
                map.insert("item".into(), it.clone());
                map.insert("loop_index".into(), Value::from(i));
            }
            let item_ctx = if item.is_some() {
                Value::from(map)
            } else {
                ctx.clone()
            };
            // A step that does not render reports that itself when it runs.
            let path = if kind == AskAhead::FileContent {
                // Only the path: the content may use what the steps before
                // register.
                let Some(Ok(serde_json::Value::String(path))) =
                    content_path_param(step).map(|p| render_json(templates, p, &item_ctx))
                else {
                    break 'steps;
                };
                path
            } else {
                let Ok(module) = render_json(templates, &step.params, &item_ctx)
                    .and_then(|p| serde_json::from_value::<Module>(p).map_err(|e| e.to_string()))
                else {
                    break 'steps;
                };
                match module {
                    Module::Command(a) => {
                        asks.commands.push(crate::transport::Command::Argv(
                            a.argv.into_iter().map(|t| t.0).collect(),
                        ));
                        continue;
                    }
                    Module::File(a) if a.state == FileState::Directory => a.path.0,
                    _ => break 'steps,
                }
            };
            if ahead.has_path(&path) || asks.has_path(&path) {
                break 'steps;
            }
            match kind {
                AskAhead::Directory => asks.stat_paths.push(path),
                _ => asks.content_paths.push(path),
            }
        }
        files_seen |= kind != AskAhead::ReadOnlyCommand;
        ahead.commands.append(&mut asks.commands);
        ahead.stat_paths.append(&mut asks.stat_paths);
        ahead.content_paths.append(&mut asks.content_paths);
        covered += 1;
        if let Some(name) = &step.register {
            registered.push(name);
        }
    }
    if covered < 2 {
        return 0;
    }
    let facts = state.facts.clone().unwrap_or_default();
    let target = Target {
        transport: shared.inventory.hosts[index].transport.as_ref(),
        facts: &facts,
        templates,
        context: &ctx,
        become_root: first.become_root,
        check: shared.options.check,
        run_commands_in_check: true,
        prefetched,
    };
    // A failed prefetch leaves no answers: each step then asks the host
    // itself and reports what went wrong in its own name.
    let _ = apply::prefetch(&ahead, &target).await;
    covered
}

/// A step's loop items rendered (`[None]` without a loop).
fn loop_items(
    templates: &Templates,
    step: &Step,
    ctx_map: &BTreeMap<String, Value>,
) -> Result<Vec<Option<Value>>, String> {
    Ok(match &step.loop_over {
        None => vec![None],
        Some(LoopSpec::Items(list)) => {
            let ctx = Value::from(ctx_map.clone());
            let mut items = Vec::with_capacity(list.len());
            for v in list {
                let r = render_json(templates, v, &ctx).map_err(|e| format!("loop item: {e}"))?;
                items.push(Some(to_value(&r)));
            }
            items
        }
        Some(LoopSpec::Expr(e)) => {
            let ctx = Value::from(ctx_map.clone());
            templates
                .eval(e, &ctx)
                .and_then(|v| {
                    v.try_iter()
                        .map(|it| it.map(Some).collect::<Vec<_>>())
                        .map_err(|err| format!("loop `{e}` is not a list: {err}"))
                })
                .map_err(|err| format!("loop: {err}"))?
        }
    })
}

fn end_event(r: &StepRecord) -> Event {
    Event::StepEnd {
        host: r.host.clone(),
        play: r.play.clone(),
        step: r.step.clone(),
        location: r.location.clone(),
        module: r.module.to_string(),
        status: r.status,
        changed: r.changed,
        duration_ms: r.duration.as_millis() as u64,
        message: r.message.clone(),
        stdout: r.stdout.clone(),
        stderr: r.stderr.clone(),
        diff: r.diff.clone(),
    }
}

/// Registered values, then `--var` values, over a context.
fn overlay(ctx: &mut BTreeMap<String, Value>, state: &HostState, extra: &Vars) {
    for (k, v) in &state.registered {
        ctx.insert(k.clone(), v.clone());
    }
    for (k, v) in extra {
        ctx.insert(k.clone(), to_value(v));
    }
    if let Some(f) = &state.facts {
        ctx.insert("facts".into(), Value::from(Serde(f)));
    }
}

fn eval_condition(templates: &Templates, cond: &Condition, ctx: &Value) -> Result<bool, String> {
    match cond {
        Condition::Always(b) => Ok(*b),
        Condition::Expr(e) => templates
            .eval(e, ctx)
            .map(|v| v.is_true())
            .map_err(|err| format!("`{e}`: {err}")),
    }
}

/// One item's result, as registered.
fn result_json(
    o: &Outcome,
    failed: bool,
    changed: bool,
    item: Option<&Value>,
) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    m.insert("changed".into(), changed.into());
    m.insert("failed".into(), failed.into());
    m.insert("skipped".into(), o.skipped.into());
    m.insert(
        "rc".into(),
        o.rc.map_or(serde_json::Value::Null, Into::into),
    );
    m.insert("stdout".into(), o.stdout.trim_end_matches('\n').into());
    m.insert("stderr".into(), o.stderr.trim_end_matches('\n').into());
    m.insert(
        "stdout_lines".into(),
        o.stdout
            .lines()
            .map(|l| serde_json::Value::String(l.into()))
            .collect(),
    );
    m.insert("msg".into(), o.msg.clone().into());
    if let Some(d) = &o.diff {
        m.insert("diff".into(), d.clone().into());
    }
    for (k, v) in &o.data {
        m.insert(k.clone(), v.clone());
    }
    if let Some(i) = item {
        m.insert("item".into(), to_json(i));
    }
    serde_json::Value::Object(m)
}

struct ItemResult {
    outcome: Outcome,
    failed: bool,
    changed: bool,
    unreachable: bool,
    json: serde_json::Value,
    params: serde_json::Value,
}

async fn run_step(
    shared: &Shared,
    play: &Play,
    step: &Step,
    index: usize,
    state: &mut HostState,
    base: &BTreeMap<String, Value>,
    prefetched: &apply::Prefetched,
) -> StepRecord {
    let started = Instant::now();
    let host = &shared.inventory.hosts[index];
    let mut record = StepRecord {
        host: host.name.clone(),
        play: play.name.clone(),
        step: step.name.clone(),
        location: step.location.clone(),
        module: step.module_name(),
        status: Status::Ok,
        changed: false,
        duration: Duration::ZERO,
        message: String::new(),
        stdout: String::new(),
        stderr: String::new(),
        diff: None,
        params: serde_json::Value::Null,
    };
    let finish = |mut record: StepRecord, status: Status, message: String| {
        record.status = status;
        record.message = message;
        record.duration = started.elapsed();
        record
    };
    if matches!(step.module, Module::Package(_) | Module::Service(_)) && state.facts.is_none() {
        match facts::gather(host.transport.as_ref()).await {
            Ok(f) => state.facts = Some(f),
            Err(e) => {
                let status = if e.is_unreachable() {
                    Status::Unreachable
                } else {
                    Status::Failed
                };
                return finish(record, status, format!("gathering facts: {e}"));
            }
        }
    }
    let mut ctx_map = base.clone();
    overlay(&mut ctx_map, state, &shared.options.extra_vars);
    let templates = &shared.templates;
    // Loop items.
    let items = match loop_items(templates, step, &ctx_map) {
        Ok(items) => items,
        Err(e) => return finish(record, Status::Failed, e),
    };
    let facts = state.facts.clone().unwrap_or_default();
    let batched = file_items_in_one_round_trip(
        shared,
        step,
        host.transport.as_ref(),
        &facts,
        &ctx_map,
        &items,
        prefetched,
    )
    .await;
    let mut results: Vec<ItemResult> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate().filter(|_| batched.is_none()) {
        let mut map = ctx_map.clone();
        if let Some(i) = item {
            map.insert("item".into(), i.clone());
            map.insert("loop_index".into(), Value::from(index));
        }
        let ctx = Value::from(map.clone());
        let r = run_item(
            shared,
            step,
            host.transport.as_ref(),
            &facts,
            &map,
            &ctx,
            item.as_ref(),
            prefetched,
        )
        .await;
        let stop = r.failed;
        results.push(r);
        if stop {
            break;
        }
    }
    if let Some(b) = batched {
        results = b;
    }
    // Secrets first: nothing below may print them.
    if step.secret {
        let r = shared.reporter.redactor();
        for res in &results {
            r.add(&res.outcome.stdout);
            r.add(&res.outcome.stderr);
            for v in res.outcome.data.values() {
                r.add_json(v);
            }
        }
    }
    let all_skipped = results.iter().all(|r| r.outcome.skipped);
    let failed = results.iter().any(|r| r.failed);
    let unreachable = results.iter().any(|r| r.unreachable);
    let changed = results.iter().any(|r| r.changed);
    if let Some(name) = &step.register {
        let registered = if step.loop_over.is_some() {
            serde_json::json!({
                "changed": changed,
                "failed": failed,
                "skipped": all_skipped,
                "results": results.iter().map(|r| r.json.clone()).collect::<Vec<_>>(),
            })
        } else {
            results.first().map(|r| r.json.clone()).unwrap_or_default()
        };
        if crate::redact::is_secret_name(name) {
            shared.reporter.redactor().add_json(&registered);
        }
        state.registered.insert(name.clone(), to_value(&registered));
    }
    let join = |f: &dyn Fn(&ItemResult) -> &str| {
        results
            .iter()
            .map(f)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    };
    record.stdout = join(&|r| r.outcome.stdout.as_str());
    record.stderr = join(&|r| r.outcome.stderr.as_str());
    let diffs = join(&|r| r.outcome.diff.as_deref().unwrap_or(""));
    record.diff = (!diffs.is_empty()).then_some(diffs);
    record.changed = changed;
    record.params = results.last().map(|r| r.params.clone()).unwrap_or_default();
    if step.secret {
        // Contents and parameters of a secret step may hold secrets that
        // were never registered as values: keep them out of every report.
        if record.diff.is_some() {
            record.diff = Some("[REDACTED] (diff of a secret step)\n".to_string());
        }
        record.params = serde_json::Value::Null;
    }
    let message = join(&|r| r.outcome.msg.as_str());
    let status = if unreachable {
        Status::Unreachable
    } else if failed {
        Status::Failed
    } else if all_skipped {
        Status::Skipped
    } else if changed {
        Status::Changed
    } else {
        Status::Ok
    };
    finish(record, status, message)
}

/// A loop of plain `file` items (no conditions, retries or result
/// overrides) as ONE remote script instead of one round trip per item; the
/// per-item results are the same. `None` when the step does not qualify or
/// an item's parameters do not template: then items run one by one (and
/// report their own errors).
async fn file_items_in_one_round_trip(
    shared: &Shared,
    step: &Step,
    transport: &dyn crate::transport::Transport,
    facts: &Facts,
    ctx_map: &BTreeMap<String, Value>,
    items: &[Option<Value>],
    prefetched: &apply::Prefetched,
) -> Option<Vec<ItemResult>> {
    let plain = matches!(step.module, Module::File(_))
        && items.len() > 1
        && step.when.is_none()
        && step.changed_when.is_none()
        && step.failed_when.is_none()
        && step.until.is_none()
        && step.retries == 0;
    if !plain {
        return None;
    }
    let templates = &shared.templates;
    let mut rendered = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let mut map = ctx_map.clone();
        if let Some(i) = item {
            map.insert("item".into(), i.clone());
            map.insert("loop_index".into(), Value::from(index));
        }
        let ctx = Value::from(map);
        let params = render_json(templates, &step.params, &ctx).ok()?;
        let Ok(Module::File(args)) = serde_json::from_value::<Module>(params.clone()) else {
            return None;
        };
        rendered.push((args, params));
    }
    let ctx = Value::from(ctx_map.clone());
    let target = Target {
        transport,
        facts,
        templates,
        context: &ctx,
        become_root: step.become_root,
        check: shared.options.check,
        run_commands_in_check: false,
        prefetched,
    };
    let args: Vec<&crate::playbook::modules::FileArgs> = rendered.iter().map(|(a, _)| a).collect();
    let results = match apply::file_batch(&args, &target).await {
        Ok(outcomes) => outcomes
            .into_iter()
            .zip(rendered.iter().zip(items))
            .map(|(outcome, ((_, params), item))| {
                let failed = outcome.failed;
                let changed = outcome.changed && !failed;
                ItemResult {
                    json: result_json(&outcome, failed, changed, item.as_ref()),
                    outcome,
                    failed,
                    changed,
                    unreachable: false,
                    params: params.clone(),
                }
            })
            .collect(),
        Err(e) => {
            let o = Outcome::failed(transport_message(&e));
            let item = items.first().and_then(Option::as_ref);
            vec![ItemResult {
                json: result_json(&o, true, false, item),
                outcome: o,
                failed: true,
                changed: false,
                unreachable: e.is_unreachable(),
                params: rendered.first().map(|(_, p)| p.clone()).unwrap_or_default(),
            }]
        }
    };
    Some(results)
}

#[allow(clippy::too_many_arguments)]
async fn run_item(
    shared: &Shared,
    step: &Step,
    transport: &dyn crate::transport::Transport,
    facts: &Facts,
    map: &BTreeMap<String, Value>,
    ctx: &Value,
    item: Option<&Value>,
    prefetched: &apply::Prefetched,
) -> ItemResult {
    let templates = &shared.templates;
    let check = shared.options.check;
    let failed_result = |msg: String, params: serde_json::Value| {
        let o = Outcome::failed(msg);
        ItemResult {
            json: result_json(&o, true, false, item),
            outcome: o,
            failed: true,
            changed: false,
            unreachable: false,
            params,
        }
    };
    if let Some(w) = &step.when {
        match eval_condition(templates, w, ctx) {
            Ok(true) => {}
            Ok(false) => {
                let o = Outcome::skipped("condition is false");
                return ItemResult {
                    json: result_json(&o, false, false, item),
                    outcome: o,
                    failed: false,
                    changed: false,
                    unreachable: false,
                    params: serde_json::Value::Null,
                };
            }
            Err(e) => return failed_result(format!("when: {e}"), serde_json::Value::Null),
        }
    }
    let params = match render_json(templates, &step.params, ctx) {
        Ok(p) => p,
        Err(e) => {
            return failed_result(
                format!("templating parameters: {e}"),
                serde_json::Value::Null,
            );
        }
    };
    let module: Module = match serde_json::from_value(params.clone()) {
        Ok(m) => m,
        Err(e) => return failed_result(format!("parameters after templating: {e}"), params),
    };
    let target = Target {
        transport,
        facts,
        templates,
        context: ctx,
        become_root: step.become_root,
        check,
        run_commands_in_check: step.changed_when == Some(Condition::Always(false)),
        prefetched,
    };
    let attempts = step.retries + 1;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = match apply::apply(&module, &target).await {
            Ok(o) => o,
            Err(e) => {
                let unreachable = e.is_unreachable();
                let mut r = failed_result(transport_message(&e), params);
                r.unreachable = unreachable;
                return r;
            }
        };
        let is_command = matches!(module, Module::Command(_) | Module::Shell(_));
        // The result as the conditions see it, under `result` and the
        // register name.
        let provisional = result_json(&outcome, outcome.failed, outcome.changed, item);
        let mut cmap = map.clone();
        let pv = to_value(&provisional);
        cmap.insert("result".into(), pv.clone());
        if let Some(name) = &step.register {
            cmap.insert(name.clone(), pv);
        }
        let cctx = Value::from(cmap);
        let mut message = outcome.msg.clone();
        let failed = if outcome.failed && outcome.rc.is_none() {
            true
        } else if let Some(fw) = step.failed_when.as_ref().filter(|_| !outcome.skipped) {
            match eval_condition(templates, fw, &cctx) {
                Ok(b) => b,
                Err(e) => {
                    message = format!("failed_when: {e}");
                    true
                }
            }
        } else {
            outcome.failed || (is_command && outcome.rc.is_some_and(|rc| rc != 0))
        };
        let changed = match step.changed_when.as_ref().filter(|_| !outcome.skipped) {
            Some(cw) => match eval_condition(templates, cw, &cctx) {
                Ok(b) => b,
                Err(e) => {
                    message = format!("changed_when: {e}");
                    outcome.changed
                }
            },
            None => outcome.changed,
        };
        let done = if check {
            true
        } else if let Some(u) = &step.until {
            match templates.eval(u, &cctx) {
                Ok(v) => v.is_true(),
                Err(e) => {
                    message = format!("until `{u}`: {e}");
                    true
                }
            }
        } else {
            !failed
        };
        if done || attempt >= attempts {
            let failed = failed || (!done && !check);
            if !done && step.until.is_some() {
                message = format!(
                    "`until: {}` still false after {attempts} attempt(s){}",
                    step.until.as_deref().unwrap_or(""),
                    if message.is_empty() {
                        String::new()
                    } else {
                        format!("; {message}")
                    }
                );
            }
            let mut o = outcome;
            o.msg = message;
            return ItemResult {
                json: result_json(&o, failed, changed, item),
                outcome: o,
                failed,
                changed: changed && !failed,
                unreachable: false,
                params,
            };
        }
        if !step.delay.is_zero() {
            tokio::time::sleep(step.delay).await;
        }
    }
}

fn transport_message(e: &TransportError) -> String {
    e.to_string()
}
