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

/// A scalar read as text, whatever its YAML type (`1.30`, `true`, `8080`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl Text {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
        Ok(Text(v.to_string()))
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

/// Deserialize a scalar that may still be a template: `Ok(None)` for a
/// string with `{{`, else `parse` decides.
fn lenient<'de, D, T>(
    d: D,
    what: &'static str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
{
    let text = Text::deserialize(d)?.0;
    if crate::template::has_template_syntax(&text) {
        return Ok(None);
    }
    match parse(text.trim()) {
        Some(v) => Ok(Some(v)),
        None => Err(de::Error::custom(format!(
            "expected {what}, found `{text}`"
        ))),
    }
}

/// A yes/no parameter (`true`, `false`, `yes`, `no`, or a template).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flag(pub Option<bool>);

impl Flag {
    pub fn get(self) -> Result<bool, String> {
        self.0
            .ok_or_else(|| "a flag is still a template after rendering".to_string())
    }
}

pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient(d, "true or false", parse_bool).map(Flag)
    }
}

/// A non-negative whole number (or a template).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count(pub Option<u64>);

impl Count {
    pub fn get(self) -> Result<u64, String> {
        self.0
            .ok_or_else(|| "a number is still a template after rendering".to_string())
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient(d, "a whole number", |s| s.parse().ok()).map(Count)
    }
}

/// A duration in seconds, fractions allowed (`0.5`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Seconds(pub Option<f64>);

impl Seconds {
    pub fn get(self) -> Result<std::time::Duration, String> {
        let s = self
            .0
            .ok_or_else(|| "a duration is still a template after rendering".to_string())?;
        std::time::Duration::try_from_secs_f64(s).map_err(|e| format!("bad duration {s}: {e}"))
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient(d, "a number of seconds", |s| {
            s.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0)
        })
        .map(Seconds)
    }
}

/// A file mode in octal: `0644`, `"0644"`, `644`, `"u=rw"` is not accepted.
/// YAML reads an unquoted `0644` as the number 644; its digits are octal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mode(pub Option<u32>);

impl Mode {
    pub fn get(self) -> Result<u32, String> {
        self.0
            .ok_or_else(|| "a mode is still a template after rendering".to_string())
    }
}

pub fn parse_mode(s: &str) -> Option<u32> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    if digits.is_empty() || digits.len() > 5 {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o7777)
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lenient(d, "an octal mode such as 0644", parse_mode).map(Mode)
    }
}

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

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    #[default]
    Present,
    Absent,
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
