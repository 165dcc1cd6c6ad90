//! Templates: minijinja with strict undefined variables, the templates
//! shipped in the binary (everything under `templates/`), an override
//! directory that wins over them, and the filters playbooks need
//! (`quote`, `to_json`, `to_yaml`, `b64encode`, `b64decode`, `ipwrap`,
//! `nthhost`, `prefixlen`).
//!
//! Everything is rendered on the workstation; hosts only ever receive the
//! rendered text.

use std::collections::BTreeMap;
use std::path::PathBuf;

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

/// Free variables for playbooks and templates (a lab's `vars:`, `--var`,
/// what stages hand to their playbooks).
pub type Vars = BTreeMap<String, serde_json::Value>;

/// Templates embedded at build time: `(name under templates/, text)`.
pub const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/embedded_templates.rs"));

/// The template environment shared by every host of a run.
///
/// A template file may start with Ansible's header line
/// `#jinja2: trim_blocks: True, lstrip_blocks: True`: the line is dropped
/// and the file (with what it includes) is rendered with those whitespace
/// settings; without it, block tags keep their newlines.
pub struct Templates {
    /// Indexed by [`Whitespace::index`].
    envs: Vec<Environment<'static>>,
    override_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::new(None)
    }
}

/// The whitespace settings a template file asks for in its header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Whitespace {
    pub trim_blocks: bool,
    pub lstrip_blocks: bool,
}

impl Whitespace {
    fn index(self) -> usize {
        usize::from(self.trim_blocks) + 2 * usize::from(self.lstrip_blocks)
    }
}

/// The header prefix of a template file (Ansible's).
pub const HEADER: &str = "#jinja2:";

/// Split a template's text into its header settings and its body. A
/// header names `trim_blocks` and/or `lstrip_blocks` as `True`/`False`;
/// anything else in it is an error.
pub fn split_header(text: &str) -> Result<(Whitespace, &str), String> {
    let Some(rest) = text.strip_prefix(HEADER) else {
        return Ok((Whitespace::default(), text));
    };
    let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let mut ws = Whitespace::default();
    for item in line.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (key, value) = item
            .split_once(':')
            .ok_or_else(|| format!("template header: `{item}` is not `key: True|False`"))?;
        let value = match value.trim() {
            "True" | "true" => true,
            "False" | "false" => false,
            other => return Err(format!("template header: `{other}` is not True or False")),
        };
        match key.trim() {
            "trim_blocks" => ws.trim_blocks = value,
            "lstrip_blocks" => ws.lstrip_blocks = value,
            other => {
                return Err(format!(
                    "template header: unknown setting `{other}` (trim_blocks, lstrip_blocks)"
                ));
            }
        }
    }
    Ok((ws, body))
}

/// A template's text: the override directory first, then the embedded ones.
fn source(override_dir: Option<&std::path::Path>, name: &str) -> Result<Option<String>, Error> {
    if name.split('/').any(|part| part == ".." || part.is_empty()) {
        return Ok(None);
    }
    if let Some(dir) = override_dir {
        match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => return Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("cannot read template {name} from {}: {e}", dir.display()),
                ));
            }
        }
    }
    Ok(EMBEDDED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| text.to_string()))
}

fn environment(override_dir: Option<PathBuf>, ws: Whitespace) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Files are configuration, not HTML: never escape (minijinja would
    // JSON-escape values in `.yaml`/`.json` templates by default).
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .trim_blocks(ws.trim_blocks)
        .lstrip_blocks(ws.lstrip_blocks)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_loader(move |name: &str| {
        let Some(text) = source(override_dir.as_deref(), name)? else {
            return Ok(None);
        };
        let (_, body) = split_header(&text)
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("{name}: {e}")))?;
        Ok(Some(body.to_string()))
    });
    env.add_filter("quote", quote_filter);
    env.add_filter("to_json", to_json);
    env.add_filter("to_yaml", to_yaml);
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("ipwrap", ipwrap);
    env.add_filter("nthhost", nthhost);
    env.add_filter("prefixlen", prefixlen);
    env.add_filter("version_line", version_line);
    env.add_test("version_at_least", version_at_least);
    env
}

impl Templates {
    /// Embedded templates, overridden by files of the same name under
    /// `override_dir` (`--template-dir`).
    pub fn new(override_dir: Option<PathBuf>) -> Self {
        let envs = (0..4)
            .map(|i| {
                environment(
                    override_dir.clone(),
                    Whitespace {
                        trim_blocks: i & 1 == 1,
                        lstrip_blocks: i & 2 == 2,
                    },
                )
            })
            .collect();
        Templates { envs, override_dir }
    }

    /// The environment for strings and expressions (no header).
    fn env(&self) -> &Environment<'static> {
        &self.envs[0]
    }

    /// Whether a template of that name exists (embedded or overridden).
    pub fn exists(&self, name: &str) -> bool {
        self.file_env(name)
            .is_ok_and(|env| env.get_template(name).is_ok())
    }

    /// The environment a template file asks for in its header.
    fn file_env(&self, name: &str) -> Result<&Environment<'static>, String> {
        let text = source(self.override_dir.as_deref(), name)
            .map_err(describe)?
            .ok_or_else(|| format!("template not found: {name}"))?;
        let (ws, _) = split_header(&text).map_err(|e| format!("{name}: {e}"))?;
        Ok(&self.envs[ws.index()])
    }

    /// Render the template file `name` (path under `templates/`).
    pub fn render_file(&self, name: &str, ctx: &Value) -> Result<String, String> {
        let template = self.file_env(name)?.get_template(name).map_err(describe)?;
        template.render(ctx).map_err(describe)
    }

    /// Render a template string (a playbook value with `{{ }}` in it).
    /// Strings without template syntax come back as they are.
    pub fn render_str(&self, text: &str, ctx: &Value) -> Result<String, String> {
        if !has_template_syntax(text) {
            return Ok(text.to_string());
        }
        self.env().render_str(text, ctx).map_err(describe)
    }

    /// Evaluate an expression (`when:`, `until:`, `loop: "<expr>"`).
    pub fn eval(&self, expr: &str, ctx: &Value) -> Result<Value, String> {
        let compiled = self.env().compile_expression(expr).map_err(describe)?;
        compiled.eval(ctx).map_err(describe)
    }

    /// Check an expression's syntax without evaluating it.
    pub fn check_expression(&self, expr: &str) -> Result<(), String> {
        self.env()
            .compile_expression(expr)
            .map(|_| ())
            .map_err(describe)
    }

    /// Check a template string's syntax without rendering it.
    pub fn check_str(&self, text: &str) -> Result<(), String> {
        if !has_template_syntax(text) {
            return Ok(());
        }
        self.env()
            .template_from_str(text)
            .map(|_| ())
            .map_err(describe)
    }
}

/// Whether a string holds template syntax at all.
pub fn has_template_syntax(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// A minijinja error as one line, with its cause chain.
fn describe(e: Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Plain text of a value: strings as they are, everything else as printed.
fn text_of(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }
}

fn quote_filter(v: &Value) -> Result<String, Error> {
    if v.is_undefined() || v.is_none() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "quote: the value is undefined or none",
        ));
    }
    Ok(crate::transport::quote(&text_of(v)))
}

fn to_json(v: &Value) -> Result<String, Error> {
    serde_json::to_string(v)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("to_json: {e}")))
}

fn to_yaml(v: &Value) -> Result<String, Error> {
    serde_saphyr::to_string(v)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("to_yaml: {e}")))
}

fn b64encode(v: &Value) -> String {
    data_encoding::BASE64.encode(text_of(v).as_bytes())
}

fn b64decode(v: &Value) -> Result<String, Error> {
    let bytes = data_encoding::BASE64
        .decode(text_of(v).trim().as_bytes())
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("b64decode: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "b64decode: not UTF-8 text"))
}

/// `[addr]` for IPv6 addresses (for URLs and `host:port`), others as they are.
fn ipwrap(v: &Value) -> String {
    let text = text_of(v);
    match text.parse::<std::net::Ipv6Addr>() {
        Ok(_) => format!("[{text}]"),
        Err(_) => text,
    }
}

fn parse_net(filter: &str, v: &Value) -> Result<ipnet::IpNet, Error> {
    let text = text_of(v);
    text.trim().parse::<ipnet::IpNet>().map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("{filter}: `{text}` is not a network with prefix length (10.0.0.0/24)"),
        )
    })
}

/// `"10.1.2.0/24" | nthhost(5)` → `10.1.2.5`: the address `n` places after
/// the network address; an error when the network is too small.
fn nthhost(v: &Value, n: u64) -> Result<String, Error> {
    let net = parse_net("nthhost", v)?;
    let too_small = || {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("nthhost: {net} has no address number {n}"),
        )
    };
    let addr = match net.network() {
        std::net::IpAddr::V4(a) => {
            let size = 1u64 << (32 - u32::from(net.prefix_len()));
            if n >= size {
                return Err(too_small());
            }
            std::net::IpAddr::V4((u32::from(a) + n as u32).into())
        }
        std::net::IpAddr::V6(a) => {
            let host_bits = 128 - u32::from(net.prefix_len());
            if host_bits < 64 && n >= (1u64 << host_bits) {
                return Err(too_small());
            }
            std::net::IpAddr::V6((u128::from(a) + u128::from(n)).into())
        }
    };
    Ok(addr.to_string())
}

/// `"10.1.2.0/24" | prefixlen` → `24`.
fn prefixlen(v: &Value) -> Result<u8, Error> {
    Ok(parse_net("prefixlen", v)?.prefix_len())
}

/// The numbers of a release written `1.7.27`, `v2.1.5` or `1.6.20~ds1`
/// (what follows the numbers is dropped).
fn release_numbers(what: &str, v: &str) -> Result<Vec<u64>, Error> {
    let numbers: Vec<u64> = v
        .trim()
        .trim_start_matches('v')
        .split('.')
        .map_while(|part| {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    if numbers.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("{what}: `{v}` is not a version"),
        ));
    }
    Ok(numbers)
}

/// `"1.7.27" | version_line` is `"1.7"`: a release's line.
fn version_line(v: &str) -> Result<String, Error> {
    let n = release_numbers("version_line", v)?;
    Ok(n.iter()
        .take(2)
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

/// `v is version_at_least("1.7.24")`: `v`'s numbers compared one by one
/// (missing ones count as 0).
fn version_at_least(v: &str, min: &str) -> Result<bool, Error> {
    let (mut a, mut b) = (
        release_numbers("version_at_least", v)?,
        release_numbers("version_at_least", min)?,
    );
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    Ok(a >= b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_number_by_number() {
        let t = Templates::default();
        let c = ctx(serde_json::json!({}));
        let r = |s: &str| t.render_str(s, &c).unwrap();
        assert_eq!(r("{{ '1.7.27' | version_line }}"), "1.7");
        assert_eq!(r("{{ 'v2.1.5' | version_line }}"), "2.1");
        assert_eq!(
            r("{{ '1.6.20~ds1' is version_at_least('1.6.20') }}"),
            "True"
        );
        assert_eq!(r("{{ '1.6.20' is version_at_least('1.6.27') }}"), "False");
        assert_eq!(r("{{ '1.10.0' is version_at_least('1.9.9') }}"), "True");
        assert_eq!(r("{{ '2.1' is version_at_least('2.1.0') }}"), "True");
        let err = t
            .render_str("{{ 'containerd' is version_at_least('1.0') }}", &c)
            .unwrap_err();
        assert!(err.contains("`containerd` is not a version"), "{err}");
    }

    fn ctx(json: serde_json::Value) -> Value {
        Value::from(minijinja::value::Serde(&json))
    }

    #[test]
    fn strict_undefined_fails() {
        let t = Templates::default();
        let err = t
            .render_str("{{ nope }}", &ctx(serde_json::json!({})))
            .unwrap_err();
        assert!(err.contains("undefined"), "{err}");
    }

    #[test]
    fn filters() {
        let t = Templates::default();
        let c = ctx(
            serde_json::json!({"v": "it's; $(x)", "a": "fd00::1", "b": "10.0.0.1", "o": {"k": [1, 2]}}),
        );
        assert_eq!(
            t.render_str("{{ v | quote }}", &c).unwrap(),
            r"'it'\''s; $(x)'"
        );
        assert_eq!(
            t.render_str("{{ a | ipwrap }}:{{ b | ipwrap }}", &c)
                .unwrap(),
            "[fd00::1]:10.0.0.1"
        );
        assert_eq!(
            t.render_str("{{ b | b64encode }}", &c).unwrap(),
            "MTAuMC4wLjE="
        );
        assert_eq!(
            t.render_str("{{ b | b64encode | b64decode }}", &c).unwrap(),
            "10.0.0.1"
        );
        assert_eq!(
            t.render_str("{{ o | to_json }}", &c).unwrap(),
            r#"{"k":[1,2]}"#
        );
        assert!(
            t.render_str("{{ o | to_yaml }}", &c)
                .unwrap()
                .contains("k:")
        );
    }

    #[test]
    fn network_filters() {
        let t = Templates::default();
        let c =
            ctx(serde_json::json!({"n": "10.1.2.0/24", "s": "10.9.0.0/30", "v6": "fd00:1::/64"}));
        let r = |s: &str| t.render_str(s, &c);
        assert_eq!(r("{{ n | nthhost(1) }}").unwrap(), "10.1.2.1");
        assert_eq!(r("{{ n | nthhost(255) }}").unwrap(), "10.1.2.255");
        assert_eq!(r("{{ n | prefixlen }}").unwrap(), "24");
        assert_eq!(r("{{ v6 | nthhost(16) }}").unwrap(), "fd00:1::10");
        let e = r("{{ s | nthhost(4) }}").unwrap_err();
        assert!(e.contains("10.9.0.0/30 has no address number 4"), "{e}");
        let e = r("{{ 'x' | nthhost(1) }}").unwrap_err();
        assert!(e.contains("`x` is not a network"), "{e}");
    }

    #[test]
    fn trailing_newline_is_kept_and_embedded_templates_load() {
        let t = Templates::default();
        assert_eq!(
            t.render_str("a\n", &ctx(serde_json::json!({}))).unwrap(),
            "a\n"
        );
        assert!(t.exists("bench/sysctl.conf.j2"));
        assert!(!t.exists("../Cargo.toml"));
    }

    #[test]
    fn override_directory_wins() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bench")).unwrap();
        std::fs::write(dir.path().join("bench/sysctl.conf.j2"), "mine {{ x }}\n").unwrap();
        let t = Templates::new(Some(dir.path().to_path_buf()));
        let out = t
            .render_file("bench/sysctl.conf.j2", &ctx(serde_json::json!({"x": 1})))
            .unwrap();
        assert_eq!(out, "mine 1\n");
        assert!(t.exists("bench/modules.conf.j2"));
        std::fs::write(dir.path().join("x.yaml"), "a: {{ v }}\n").unwrap();
        let out = t
            .render_file("x.yaml", &ctx(serde_json::json!({"v": "1.2.3.4"})))
            .unwrap();
        assert_eq!(out, "a: 1.2.3.4\n", "no auto-escaping");
    }

    #[test]
    fn header_trims_blocks_for_that_file_and_its_includes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("t.j2"),
            "#jinja2: trim_blocks: True, lstrip_blocks: True\na:\n  {% for x in xs %}\n  - {{ x }}\n  {% endfor %}\n{% include \"i.j2\" %}",
        )
        .unwrap();
        std::fs::write(dir.path().join("i.j2"), "{% if true %}\nin\n{% endif %}\n").unwrap();
        std::fs::write(
            dir.path().join("plain.j2"),
            "{% if true %}\nin\n{% endif %}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("bad.j2"),
            "#jinja2: newline_sequence: True\n",
        )
        .unwrap();
        let t = Templates::new(Some(dir.path().to_path_buf()));
        let c = ctx(serde_json::json!({"xs": [1, 2]}));
        assert_eq!(t.render_file("t.j2", &c).unwrap(), "a:\n  - 1\n  - 2\nin\n");
        assert_eq!(t.render_file("plain.j2", &c).unwrap(), "\nin\n\n");
        let e = t.render_file("bad.j2", &c).unwrap_err();
        assert!(e.contains("unknown setting `newline_sequence`"), "{e}");
        assert!(!t.exists("bad.j2"));
    }
}
