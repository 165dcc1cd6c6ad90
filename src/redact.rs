//! Redaction: secret values (output of `secret: true` steps, variables
//! whose names say they are secret, join tokens, keys) replaced with
//! `[REDACTED]` in everything kubelab prints or logs.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

pub const REDACTED: &str = "[REDACTED]";

/// Values shorter than this are not redacted (they would blank out
/// ordinary words and digits everywhere).
pub const MIN_SECRET_LEN: usize = 4;

/// The set of secret values of a run; cheap to clone, shared by all sinks.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

/// Whether a variable's name says its value is secret.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "private_key",
        "privkey",
        "certificate_key",
    ]
    .iter()
    .any(|w| n.contains(w))
}

impl Redactor {
    pub fn new() -> Self {
        Redactor::default()
    }

    /// Add a secret value: the whole (trimmed) value and each of its lines.
    pub fn add(&self, secret: &str) {
        let mut parts: Vec<&str> = vec![secret.trim()];
        if secret.contains('\n') {
            parts.extend(secret.lines().map(str::trim));
        }
        let Ok(mut secrets) = self.secrets.write() else {
            return;
        };
        for p in parts {
            if p.chars().count() >= MIN_SECRET_LEN && !secrets.iter().any(|s| s == p) {
                secrets.push(p.to_string());
            }
        }
        // Longest first, so a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// Add every string inside a JSON value.
    pub fn add_json(&self, value: &serde_json::Value) {
        match value {
            serde_json::Value::String(s) => self.add(s),
            serde_json::Value::Array(a) => a.iter().for_each(|v| self.add_json(v)),
            serde_json::Value::Object(o) => o.values().for_each(|v| self.add_json(v)),
            _ => {}
        }
    }

    /// Add the values of variables whose names say they are secret.
    pub fn add_secret_vars<'a>(
        &self,
        vars: impl IntoIterator<Item = (&'a String, &'a serde_json::Value)>,
    ) {
        for (k, v) in vars {
            if is_secret_name(k) {
                self.add_json(v);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.read().map(|s| s.is_empty()).unwrap_or(true)
    }

    /// The text with every secret replaced: the values this run knows, and
    /// whatever has the shape of a secret no run told it about (a private
    /// key block, a kubeadm bootstrap token), such as a journal line of a
    /// node from an earlier run.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = scrub_shapes(text);
        let Ok(secrets) = self.secrets.read() else {
            return out;
        };
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = Cow::Owned(out.replace(s.as_str(), REDACTED));
            }
        }
        out
    }

    /// Redact in place.
    pub fn redact_string(&self, text: &mut String) {
        if let Cow::Owned(o) = self.redact(text) {
            *text = o;
        }
    }
}

/// Private key blocks (PEM and OpenSSH) and kubeadm bootstrap tokens
/// (`[a-z0-9]{6}.[a-z0-9]{16}`), whoever's they are. A block cut off by
/// the end of a log's tail (or its beginning) is redacted up to that end.
fn scrub_shapes(text: &str) -> Cow<'_, str> {
    use std::sync::LazyLock;
    static TOKEN: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b").expect("a valid pattern")
    });
    static MARK: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"-----(BEGIN|END) [A-Z0-9 ]*PRIVATE KEY-----").expect("a valid pattern")
    });
    let out = match TOKEN.replace_all(text, REDACTED) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(o) => Cow::Owned(o),
    };
    if !out.contains("PRIVATE KEY-----") {
        return out;
    }
    // keep the markers, drop what is between a BEGIN and its END (or the
    // text's end), and what comes before an END that has no BEGIN
    let mut kept = String::with_capacity(out.len());
    let mut inside = false;
    let mut at = 0;
    for m in MARK.find_iter(&out) {
        let begin = m.as_str().starts_with("-----BEGIN");
        if !inside && begin {
            kept.push_str(&out[at..m.end()]);
            inside = true;
        } else if inside && !begin {
            kept.push_str(REDACTED);
            kept.push_str(m.as_str());
            inside = false;
        } else if !inside {
            // an END without its BEGIN: the text starts inside a key
            kept.clear();
            kept.push_str(REDACTED);
            kept.push_str(m.as_str());
        } else {
            continue;
        }
        at = m.end();
    }
    if inside {
        kept.push_str(REDACTED);
    } else {
        kept.push_str(&out[at..]);
    }
    Cow::Owned(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_no_run_told_about_are_redacted_by_their_shape() {
        let r = Redactor::new();
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----";
        let text = format!("before\n{key}\nafter kubeadm join --token abcdef.0123456789abcdef x");
        let out = r.redact(&text);
        assert_eq!(
            out,
            "before\n-----BEGIN OPENSSH PRIVATE KEY-----[REDACTED]-----END OPENSSH PRIVATE KEY-----\nafter kubeadm join --token [REDACTED] x"
        );
        // cut off at either end
        let head = r.redact("x -----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc");
        assert_eq!(head, "x -----BEGIN RSA PRIVATE KEY-----[REDACTED]");
        let tail = r.redact("MIIE\nabc\n-----END RSA PRIVATE KEY-----\nnext");
        assert_eq!(tail, "[REDACTED]-----END RSA PRIVATE KEY-----\nnext");
        // ordinary text is left as it is
        for plain in [
            "node-1.testbed.test",
            "sha256:0123abcd",
            "version 1.31.2",
            "a.b",
        ] {
            assert!(matches!(r.redact(plain), Cow::Borrowed(_)), "{plain}");
        }
    }

    #[test]
    fn redacts_values_and_lines() {
        let r = Redactor::new();
        assert_eq!(r.redact("nothing secret"), "nothing secret");
        r.add("abcd1234.token");
        r.add("  line-one-secret\nline-two-secret\n");
        r.add("ab"); // too short to redact
        assert_eq!(
            r.redact("kubeadm join --token abcd1234.token x"),
            "kubeadm join --token [REDACTED] x"
        );
        assert_eq!(r.redact("got line-two-secret"), "got [REDACTED]");
        assert_eq!(r.redact("ab cd"), "ab cd");
        let mut s = String::from("abcd1234.token abcd1234.token");
        r.redact_string(&mut s);
        assert_eq!(s, "[REDACTED] [REDACTED]");
    }

    #[test]
    fn longest_secret_wins() {
        let r = Redactor::new();
        r.add("pass");
        r.add("password123");
        assert_eq!(r.redact("password123"), "[REDACTED]");
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("join_token"));
        assert!(is_secret_name("ADMIN_PASSWORD"));
        assert!(!is_secret_name("pod_cidr"));
        let r = Redactor::new();
        let vars: std::collections::BTreeMap<String, serde_json::Value> = [
            ("db_password".to_string(), serde_json::json!("hunter22")),
            ("name".to_string(), serde_json::json!("visible")),
        ]
        .into();
        r.add_secret_vars(&vars);
        assert_eq!(r.redact("hunter22 visible"), "[REDACTED] visible");
    }
}
