//! Diagnostics: what is wrong with an input file, where, and what to do.
//!
//! Every error about a lab file, an inventory or a playbook is a
//! [`Diagnostic`] naming the file, line and column, rendered with the source
//! line and a caret under the offending value (or as one JSON object per
//! diagnostic with `--json`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A 1-based line and column (in characters). Line 0 means "unknown".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// A range in a file; `end` is exclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

/// The text of an input file and the name it is reported under.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(SourceFile {
            path: path.into(),
            text: text.into(),
        })
    }

    fn line(&self, n: u32) -> Option<&str> {
        if n == 0 {
            return None;
        }
        self.text.lines().nth(n as usize - 1)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about one place in one file.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: Arc<SourceFile>,
    pub span: Option<Span>,
    pub message: String,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(file: &Arc<SourceFile>, span: Option<Span>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.clone(),
            span,
            message: message.into(),
            help: None,
        }
    }

    pub fn warning(file: &Arc<SourceFile>, span: Option<Span>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, span, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col` (or just the file when the position is unknown).
    pub fn location(&self) -> String {
        match self.span {
            Some(s) if s.start.line > 0 => format!(
                "{}:{}:{}",
                self.file.path.display(),
                s.start.line,
                s.start.col
            ),
            _ => self.file.path.display().to_string(),
        }
    }

    /// Render for a terminal, with the source line and a caret.
    pub fn render(&self, color: bool) -> String {
        let paint = |code: &str, text: &str| {
            if color {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_string()
            }
        };
        let (label, code) = match self.severity {
            Severity::Error => ("error", "1;31"),
            Severity::Warning => ("warning", "1;33"),
        };
        let mut out = String::new();
        let _ = writeln!(out, "{}: {}", paint(code, label), paint("1", &self.message));
        let span = self.span.filter(|s| s.start.line > 0);
        let gutter = span.map_or(1, |s| s.start.line.to_string().len());
        let pad = " ".repeat(gutter);
        let _ = writeln!(out, "{pad}{} {}", paint("1;34", "-->"), self.location());
        if let Some(s) = span
            && let Some(line) = self.file.line(s.start.line)
        {
            let line = line.trim_end_matches('\r');
            let bar = paint("1;34", "|");
            let _ = writeln!(out, "{pad} {bar}");
            let _ = writeln!(
                out,
                "{} {bar} {line}",
                paint("1;34", &s.start.line.to_string())
            );
            let width = line.chars().count() as u32;
            let start = s.start.col.max(1);
            let end = if s.end.line == s.start.line && s.end.col > start {
                s.end.col.min(width + 1)
            } else {
                width + 1
            };
            let carets = (end.saturating_sub(start)).max(1) as usize;
            let _ = writeln!(
                out,
                "{pad} {bar} {}{}",
                " ".repeat(start as usize - 1),
                paint(code, &"^".repeat(carets))
            );
        }
        if let Some(help) = &self.help {
            let _ = writeln!(out, "{pad} = {}: {help}", paint("1", "help"));
        }
        out
    }

    /// One JSON object, for `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        let (line, col) = self.span.map_or((0, 0), |s| (s.start.line, s.start.col));
        serde_json::json!({
            "event": "diagnostic",
            "severity": self.severity,
            "file": self.file.path.display().to_string(),
            "line": line,
            "column": col,
            "message": self.message,
            "help": self.help,
        })
    }
}

/// Diagnostics collected over a whole input (all files of a lab).
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }
    pub fn extend(&mut self, other: Diagnostics) {
        self.0.extend(other.0);
    }
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }
    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Sorted by file, then position, so output is stable.
    pub fn sorted(mut self) -> Self {
        self.0.sort_by(|a, b| {
            (a.file.path.as_path(), a.span.map(|s| s.start))
                .cmp(&(b.file.path.as_path(), b.span.map(|s| s.start)))
        });
        self
    }
    pub fn render(&self, color: bool) -> String {
        let mut out = String::new();
        for d in &self.0 {
            out.push_str(&d.render(color));
            out.push('\n');
        }
        out
    }
}

/// A diagnostic for a file that could not be read at all.
pub fn unreadable(path: &Path, err: &std::io::Error) -> Diagnostic {
    let file = SourceFile::new(path, String::new());
    Diagnostic::error(
        &file,
        None,
        format!("cannot read {}: {err}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_snippet_with_caret() {
        let f = SourceFile::new("labs/x.yaml", "name: x\nvms:\n  - memory: 10X\n");
        let d = Diagnostic::error(
            &f,
            Some(Span {
                start: Pos { line: 3, col: 13 },
                end: Pos { line: 3, col: 16 },
            }),
            "bad size",
        )
        .with_help("use MiB or GiB");
        let r = d.render(false);
        assert_eq!(
            r,
            "error: bad size\n --> labs/x.yaml:3:13\n  |\n3 |   - memory: 10X\n  |             ^^^\n  = help: use MiB or GiB\n"
        );
    }

    #[test]
    fn renders_without_position() {
        let f = SourceFile::new("a.yaml", "");
        let r = Diagnostic::error(&f, None, "empty").render(false);
        assert_eq!(r, "error: empty\n --> a.yaml\n");
    }
}
