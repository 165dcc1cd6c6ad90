//! The modules a step can use, each a typed struct of its parameters.
//!
//! Parameters are checked twice: when the playbook is loaded (from the YAML
//! tree, so errors have positions) and after templating on each host (from
//! the rendered JSON). Scalars are therefore lenient: a `mode` may be
//! `0644` or `"0644"`, a flag `true` or `"{{ enable }}"`; a value that is
//! still a template at load time is accepted then and checked once rendered.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::values::{Count, Flag, Mode, Presence, Seconds, Text};

/// A command to check something: an argument list, or a shell script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    Argv(Vec<Text>),
    Script(String),
}

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ProbeVisitor;
        impl<'de> Visitor<'de> for ProbeVisitor {
            type Value = Probe;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an argument list or a shell script")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Probe, E> {
                Ok(Probe::Script(v.to_string()))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Probe, A::Error> {
                let mut argv = Vec::new();
                while let Some(t) = seq.next_element::<Text>()? {
                    argv.push(t);
                }
                if argv.is_empty() {
                    return Err(de::Error::custom("an argument list needs a program"));
                }
                Ok(Probe::Argv(argv))
            }
        }
        d.deserialize_any(ProbeVisitor)
    }
}

impl Probe {
    pub fn to_command(&self) -> crate::transport::Command {
        match self {
            Probe::Argv(a) => {
                crate::transport::Command::Argv(a.iter().map(|t| t.0.clone()).collect())
            }
            Probe::Script(s) => crate::transport::Command::Script(s.clone()),
        }
    }
}

/// What a step does: exactly one module with its parameters.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    Command(CommandArgs),
    Shell(ShellArgs),
    File(FileArgs),
    Copy(CopyArgs),
    Template(TemplateArgs),
    Line(LineArgs),
    Sysctl(SysctlArgs),
    Modprobe(ModprobeArgs),
    Package(PackageArgs),
    Service(ServiceArgs),
    WaitFor(WaitForArgs),
    Fetch(FetchArgs),
    Assert(AssertArgs),
    Link(Box<super::links::LinkArgs>),
    Route(Box<super::links::RouteArgs>),
}

/// Module names as written in playbooks.
pub const MODULE_NAMES: &[&str] = &[
    "command", "shell", "file", "copy", "template", "line", "sysctl", "modprobe", "package",
    "service", "wait_for", "fetch", "assert", "link", "route",
];

impl Module {
    pub fn name(&self) -> &'static str {
        match self {
            Module::Command(_) => "command",
            Module::Shell(_) => "shell",
            Module::File(_) => "file",
            Module::Copy(_) => "copy",
            Module::Template(_) => "template",
            Module::Line(_) => "line",
            Module::Sysctl(_) => "sysctl",
            Module::Modprobe(_) => "modprobe",
            Module::Package(_) => "package",
            Module::Service(_) => "service",
            Module::WaitFor(_) => "wait_for",
            Module::Fetch(_) => "fetch",
            Module::Assert(_) => "assert",
            Module::Link(_) => "link",
            Module::Route(_) => "route",
        }
    }
}

/// `command: [prog, arg, …]` or `command: {argv: […], creates: …}`.
/// Every argument is quoted; no shell sees the values.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandArgs {
    pub argv: Vec<Text>,
    /// Skip when this path exists.
    pub creates: Option<Text>,
    /// Skip unless this path exists.
    pub removes: Option<Text>,
    /// Skip when this command succeeds ("already done").
    pub unless: Option<Probe>,
    /// Bytes for the command's standard input.
    pub stdin: Option<Text>,
    /// Give up after this many seconds.
    pub timeout: Option<Seconds>,
}

/// `shell: "script"` or `shell: {script: …, creates: …}`. Template values
/// in the script must go through `| quote`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShellArgs {
    pub script: String,
    pub creates: Option<Text>,
    pub removes: Option<Text>,
    pub unless: Option<Probe>,
    pub stdin: Option<Text>,
    pub timeout: Option<Seconds>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FileState {
    /// The path exists (mode/owner are enforced); fails when it does not.
    #[default]
    File,
    Directory,
    Absent,
    Link,
    Touch,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileArgs {
    pub path: Text,
    #[serde(default)]
    pub state: FileState,
    pub mode: Option<Mode>,
    /// `user` or `user:group`.
    pub owner: Option<Text>,
    /// Link target, for `state: link`.
    pub src: Option<Text>,
}

/// What `copy` needs besides `dest` (said when the playbook is loaded and,
/// for templated values, when the step runs).
pub const COPY_SOURCE: &str = "copy needs exactly one of `content` and `src`";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyArgs {
    /// The file's content; or
    pub content: Option<Text>,
    /// a file on the machine running kubelab whose bytes are copied
    /// (binaries too).
    pub src: Option<Text>,
    pub dest: Text,
    pub mode: Option<Mode>,
    pub owner: Option<Text>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateArgs {
    /// Path under `templates/` (or the override directory).
    pub src: Text,
    pub dest: Text,
    pub mode: Option<Mode>,
    pub owner: Option<Text>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineArgs {
    pub path: Text,
    pub line: Text,
    /// A regular expression: the last matching line is replaced by `line`.
    pub regexp: Option<Text>,
    /// `present` (default) or `absent` (remove lines equal to `line` or matching `regexp`).
    #[serde(default)]
    pub state: Presence,
    /// Create the file when it is missing.
    pub create: Option<Flag>,
    pub mode: Option<Mode>,
    pub owner: Option<Text>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlArgs {
    pub name: Text,
    pub value: Text,
    /// File that keeps the setting across reboots (`/etc/sysctl.d/…`).
    pub persist: Option<Text>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModprobeArgs {
    pub name: Text,
    /// File that loads the module at boot (`/etc/modules-load.d/…`).
    pub persist: Option<Text>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageArgs {
    pub names: Vec<Text>,
    #[serde(default)]
    pub state: Presence,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    Started,
    Stopped,
    Restarted,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceArgs {
    pub name: Text,
    pub state: Option<ServiceState>,
    pub enabled: Option<Flag>,
    /// On a host without systemd, report `skipped` instead of failing.
    pub optional: Option<Flag>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitForArgs {
    /// A TCP port to accept connections (seen from the host).
    pub port: Option<Count>,
    /// With `port`: the address to connect to (default 127.0.0.1).
    pub host: Option<Text>,
    /// A path that must exist.
    pub path: Option<Text>,
    /// A command that must succeed.
    pub command: Option<Probe>,
    /// Seconds before giving up (default 60).
    pub timeout: Option<Seconds>,
    /// Seconds between polls (default 0.2).
    pub interval: Option<Seconds>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchArgs {
    pub path: Text,
    /// Keep the content in this file on the machine running kubelab
    /// (parent directories are made; changed when its content differs)
    /// instead of registering it as `content`.
    pub dest: Option<Text>,
    /// Mode of `dest` (default 0600: fetched files are often credentials).
    pub mode: Option<Mode>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssertArgs {
    /// Expressions that must all be true.
    pub that: Vec<String>,
    pub message: Option<Text>,
}
