//! Applying one module on one host: check the state first, change only
//! what differs, and say which (`ok`, `changed`, `failed`). In check mode
//! nothing is changed; the outcome says what would change (with a diff for
//! file contents).
//!
//! Round trips are kept minimal: file-like modules check and apply in one
//! shell script; file contents are read once and written only when they
//! differ. The executor asks ahead, in one script, for the read-only part
//! of a whole run of steps (read-only commands, the state of the files and
//! directories the steps after them manage; see [`prefetch`]), so that a
//! host with nothing to change costs one remote shell for such a run.

mod commands;
mod files;
mod links;
mod prefetch;
mod system;

pub use prefetch::{Ahead, Prefetched};

use crate::facts::Facts;
use crate::playbook::Module;
use crate::template::Templates;
use crate::transport::{Command, Exec, Output, Transport, TransportError, quote};

/// Where and how a module runs.
pub struct Target<'a> {
    pub transport: &'a dyn Transport,
    pub facts: &'a Facts,
    pub templates: &'a Templates,
    /// Variables for templates and expressions.
    pub context: &'a minijinja::Value,
    pub become_root: bool,
    /// Check mode: change nothing, report what would change.
    pub check: bool,
    /// In check mode, run `command`/`shell` anyway (the step declared
    /// itself read-only with `changed_when: false`).
    pub run_commands_in_check: bool,
    /// Answers fetched ahead for this host's coming steps.
    pub prefetched: &'a Prefetched,
}

/// What a module did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub changed: bool,
    pub failed: bool,
    pub skipped: bool,
    /// Exit code of the main command, for `command`/`shell`.
    pub rc: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// A one-line explanation (why it failed, what would change, …).
    pub msg: String,
    /// Unified diff of a file's old and new content.
    pub diff: Option<String>,
    /// Extra registered data (`content` for `fetch`, …).
    pub data: serde_json::Map<String, serde_json::Value>,
}

impl Outcome {
    pub fn ok() -> Self {
        Outcome::default()
    }
    pub fn changed(yes: bool) -> Self {
        Outcome {
            changed: yes,
            ..Outcome::default()
        }
    }
    pub fn failed(msg: impl Into<String>) -> Self {
        Outcome {
            failed: true,
            msg: msg.into(),
            ..Outcome::default()
        }
    }
    pub fn skipped(msg: impl Into<String>) -> Self {
        Outcome {
            skipped: true,
            msg: msg.into(),
            ..Outcome::default()
        }
    }
    fn with_output(mut self, out: &Output) -> Self {
        self.stdout = out.stdout_str();
        self.stderr = out.stderr_str();
        self.rc = match out.status {
            crate::transport::ExitStatus::Code(c) => Some(c),
            _ => None,
        };
        self
    }
}

/// A loop of `file` items in one round trip (see [`files::file_batch`]).
pub async fn file_batch(
    items: &[&crate::playbook::modules::FileArgs],
    target: &Target<'_>,
) -> Result<Vec<Outcome>, TransportError> {
    files::file_batch(items, target).await
}

/// Asks the host, in one round trip, what several coming steps would ask
/// it one by one (see [`prefetch`]); the steps then find their answers in
/// `target.prefetched`. A failure leaves no answers.
pub async fn prefetch(ahead: &Ahead, target: &Target<'_>) -> Result<(), TransportError> {
    prefetch::run(ahead, target).await
}

/// Apply a (rendered) module on a host.
pub async fn apply(module: &Module, target: &Target<'_>) -> Result<Outcome, TransportError> {
    match module {
        Module::Command(a) => commands::command(a, target).await,
        Module::Shell(a) => commands::shell(a, target).await,
        Module::WaitFor(a) => commands::wait_for(a, target).await,
        Module::Assert(a) => Ok(commands::assert(a, target)),
        Module::File(a) => files::file(a, target).await,
        Module::Copy(a) => files::copy(a, target).await,
        Module::Template(a) => files::template(a, target).await,
        Module::Line(a) => files::line(a, target).await,
        Module::Fetch(a) => files::fetch(a, target).await,
        Module::Sysctl(a) => system::sysctl(a, target).await,
        Module::Modprobe(a) => system::modprobe(a, target).await,
        Module::Package(a) => system::package(a, target).await,
        Module::Service(a) => system::service(a, target).await,
        Module::Link(a) => links::link(a, target).await,
        Module::Route(a) => links::route(a, target).await,
    }
}

/// Prelude of check-and-apply scripts: `act CMD…` records a change and
/// runs CMD unless in check mode; the script ends with `changed=0|1`.
pub(crate) fn prelude(check: bool) -> String {
    format!(
        "kl_check={}; kl_changed=0\n\
         act() {{ kl_changed=1; if [ \"$kl_check\" = 0 ]; then \"$@\" || exit 1; fi; }}\n\
         append_line() {{ mkdir -p -- \"$(dirname -- \"$2\")\" && printf '%s\\n' \"$1\" >> \"$2\"; }}\n",
        u8::from(check)
    )
}

pub(crate) const EPILOGUE: &str = "\necho \"changed=$kl_changed\"\n";

/// Run a check-and-apply script; its outcome from `changed=` and exit status.
async fn run_converge(target: &Target<'_>, body: &str) -> Result<Outcome, TransportError> {
    let mut script = prelude(target.check);
    script.push_str(body);
    script.push_str(EPILOGUE);
    let out = exec(target, Command::Script(script), None).await?;
    Ok(converge_outcome(&out))
}

pub(crate) fn converge_outcome(out: &Output) -> Outcome {
    let stdout = out.stdout_str();
    if !out.status.success() {
        let err = out.stderr_str();
        let mut o = Outcome::failed(if err.trim().is_empty() {
            format!("failed with {}", out.status)
        } else {
            err.trim().to_string()
        });
        o = o.with_output(out);
        o.failed = true;
        return o;
    }
    let changed = stdout.lines().any(|l| l == "changed=1");
    let mut o = Outcome::changed(changed).with_output(out);
    o.stdout = stdout
        .lines()
        .filter(|l| !l.starts_with("changed="))
        .collect::<Vec<_>>()
        .join("\n");
    o
}

async fn exec(
    target: &Target<'_>,
    command: Command,
    stdin: Option<Vec<u8>>,
) -> Result<Output, TransportError> {
    let mut req = Exec::new(command).become_root(target.become_root);
    req.stdin = stdin;
    target.transport.exec(req).await
}

/// `sh` variable assignment with a quoted value.
fn assign(name: &str, value: &str) -> String {
    format!("{name}={}\n", quote(value))
}
