//! Ansible INI inventories: `[group]` sections of host lines
//! (`name key=value ...`), `[group:vars]` sections of `key=value` lines and
//! `[group:children]` sections of group names. Every item keeps its
//! position so that the importer can point at it.

use crate::diagnostic::{Pos, Span};
use crate::yaml::Error;

/// A word of the inventory and where it stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub text: String,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    Hosts,
    Vars,
    Children,
}

/// `name ansible_host=192.0.2.10 ansible_ssh_user=root`.
#[derive(Clone, Debug, PartialEq)]
pub struct HostLine {
    pub name: Item,
    pub vars: Vec<(Item, Item)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    pub group: String,
    pub kind: SectionKind,
    pub header: Span,
    pub hosts: Vec<HostLine>,
    pub vars: Vec<(Item, Item)>,
    pub children: Vec<Item>,
}

fn span(line: u32, col: usize, len: usize) -> Span {
    Span {
        start: Pos {
            line,
            col: col as u32 + 1,
        },
        end: Pos {
            line,
            col: (col + len.max(1)) as u32 + 1,
        },
    }
}

/// Parse an INI inventory. Host lines before any section belong to the
/// group `ungrouped`, as in Ansible.
pub fn parse(text: &str) -> Result<Vec<Section>, Error> {
    let mut sections: Vec<Section> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n as u32 + 1;
        let line = raw.trim_end_matches('\r');
        let indent = line.chars().take_while(|c| c.is_whitespace()).count();
        let body: String = line.chars().skip(indent).collect();
        if body.is_empty() || body.starts_with('#') || body.starts_with(';') {
            continue;
        }
        if let Some(rest) = body.strip_prefix('[') {
            let Some(close) = rest.find(']') else {
                return Err(Error::new(
                    "section header without a closing `]`",
                    span(line_no, indent, body.chars().count()),
                ));
            };
            let after = rest[close + 1..].trim();
            if !after.is_empty() && !after.starts_with('#') && !after.starts_with(';') {
                return Err(Error::new(
                    format!("unexpected text after the section header: `{after}`"),
                    span(line_no, indent, body.chars().count()),
                ));
            }
            let inner = rest[..close].trim();
            let (group, kind) = match inner.split_once(':') {
                None => (inner, SectionKind::Hosts),
                Some((g, "vars")) => (g, SectionKind::Vars),
                Some((g, "children")) => (g, SectionKind::Children),
                Some((_, other)) => {
                    return Err(Error::new(
                        format!(
                            "unknown section type `:{other}` (expected `:vars` or `:children`)"
                        ),
                        span(line_no, indent, body.chars().count()),
                    ));
                }
            };
            if group.is_empty() || group.chars().any(char::is_whitespace) {
                return Err(Error::new(
                    format!("`[{inner}]` is not a group name"),
                    span(line_no, indent, body.chars().count()),
                ));
            }
            sections.push(Section {
                group: group.to_string(),
                kind,
                header: span(line_no, indent, body.chars().count()),
                hosts: Vec::new(),
                vars: Vec::new(),
                children: Vec::new(),
            });
            continue;
        }
        if sections.is_empty() {
            sections.push(Section {
                group: "ungrouped".into(),
                kind: SectionKind::Hosts,
                header: span(line_no, 0, 1),
                hosts: Vec::new(),
                vars: Vec::new(),
                children: Vec::new(),
            });
        }
        let tokens = tokenize(line, line_no)?;
        let Some(section) = sections.last_mut() else {
            continue;
        };
        match section.kind {
            SectionKind::Hosts => {
                let mut it = tokens.into_iter();
                let Some((col, name)) = it.next() else {
                    continue;
                };
                if name.contains('=') {
                    return Err(Error::new(
                        format!("expected a host name before the variables, found `{name}`"),
                        span(line_no, col, name.chars().count()),
                    ));
                }
                let name = Item {
                    span: span(line_no, col, name.chars().count()),
                    text: name,
                };
                let mut vars = Vec::new();
                for (col, tok) in it {
                    vars.push(key_value(&tok, col, line_no)?);
                }
                section.hosts.push(HostLine { name, vars });
            }
            SectionKind::Vars => {
                // `key=value` where the value is the rest of the line.
                let Some(eq) = body.find('=') else {
                    return Err(Error::new(
                        format!("expected `key=value`, found `{body}`"),
                        span(line_no, indent, body.chars().count()),
                    ));
                };
                let key = body[..eq].trim_end();
                let value_raw = &body[eq + 1..];
                let lead = value_raw.chars().take_while(|c| c.is_whitespace()).count();
                let value_text: String = value_raw.chars().skip(lead).collect();
                let value_col = indent + body[..eq].chars().count() + 1 + lead;
                let (value, shift) = unquote(value_text.trim_end());
                if key.is_empty() || key.chars().any(char::is_whitespace) {
                    return Err(Error::new(
                        format!("`{key}` is not a variable name"),
                        span(line_no, indent, key.chars().count()),
                    ));
                }
                section.vars.push((
                    Item {
                        text: key.to_string(),
                        span: span(line_no, indent, key.chars().count()),
                    },
                    Item {
                        span: span(line_no, value_col + shift, value.chars().count()),
                        text: value,
                    },
                ));
            }
            SectionKind::Children => {
                for (col, tok) in tokens {
                    section.children.push(Item {
                        span: span(line_no, col, tok.chars().count()),
                        text: tok,
                    });
                }
            }
        }
    }
    Ok(sections)
}

/// Split `key=value` (the value possibly quoted).
fn key_value(tok: &str, col: usize, line_no: u32) -> Result<(Item, Item), Error> {
    let Some(eq) = tok.find('=') else {
        return Err(Error::new(
            format!("expected `key=value`, found `{tok}`"),
            span(line_no, col, tok.chars().count()),
        ));
    };
    let key = &tok[..eq];
    if key.is_empty() {
        return Err(Error::new(
            format!("`{tok}` has no variable name before `=`"),
            span(line_no, col, tok.chars().count()),
        ));
    }
    let (value, shift) = unquote(&tok[eq + 1..]);
    let value_col = col + key.chars().count() + 1 + shift;
    Ok((
        Item {
            text: key.to_string(),
            span: span(line_no, col, key.chars().count()),
        },
        Item {
            span: span(line_no, value_col, value.chars().count()),
            text: value,
        },
    ))
}

/// Strip one pair of matching outer quotes; also returns how many
/// characters were removed in front.
fn unquote(v: &str) -> (String, usize) {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return (v[1..v.len() - 1].to_string(), 1);
        }
    }
    (v.to_string(), 0)
}

/// Split a host line into words at whitespace outside quotes; a word
/// starting with `#` begins a comment. Columns are 0-based characters.
fn tokenize(line: &str, line_no: u32) -> Result<Vec<(usize, String)>, Error> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 0usize;
    let mut quote: Option<(char, usize)> = None;
    for (i, ch) in line.chars().enumerate() {
        match quote {
            Some((q, _)) => {
                current.push(ch);
                if ch == q {
                    quote = None;
                }
            }
            None if ch.is_whitespace() => {
                if !current.is_empty() {
                    out.push((start, std::mem::take(&mut current)));
                }
            }
            None => {
                if current.is_empty() {
                    if ch == '#' {
                        return Ok(out);
                    }
                    start = i;
                }
                if ch == '"' || ch == '\'' {
                    quote = Some((ch, i));
                }
                current.push(ch);
            }
        }
    }
    if let Some((q, at)) = quote {
        return Err(Error::new(
            format!("unterminated {q}quote{q}"),
            span(line_no, at, 1),
        ));
    }
    if !current.is_empty() {
        out.push((start, current));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_vars_and_positions() {
        let s = parse(
            "# comment\n[virthost]\nvmhost ansible_host=192.0.2.10 ansible_ssh_user=root\n\n[virthost:vars]\nansible_port = 2222\n",
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].group, "virthost");
        let h = &s[0].hosts[0];
        assert_eq!(h.name.text, "vmhost");
        assert_eq!(h.vars[0].0.text, "ansible_host");
        assert_eq!(h.vars[0].1.text, "192.0.2.10");
        assert_eq!(
            (h.vars[0].1.span.start.line, h.vars[0].1.span.start.col),
            (3, 21)
        );
        assert_eq!(s[1].kind, SectionKind::Vars);
        assert_eq!(s[1].vars[0].1.text, "2222");
        assert_eq!(s[1].vars[0].1.span.start.col, 16);
    }

    #[test]
    fn quoted_values_keep_spaces() {
        let s =
            parse("[g]\nh ansible_ssh_common_args='-o ProxyCommand=\"ssh -W %h:%p x\"'\n").unwrap();
        assert_eq!(
            s[0].hosts[0].vars[0].1.text,
            "-o ProxyCommand=\"ssh -W %h:%p x\""
        );
    }

    #[test]
    fn malformed_lines_have_positions() {
        let e = parse("[virthost\nh a=1\n").unwrap_err();
        assert_eq!(e.span.unwrap().start.line, 1);
        let e = parse("[g]\nh novalue\n").unwrap_err();
        assert_eq!(
            (e.span.unwrap().start.line, e.span.unwrap().start.col),
            (2, 3)
        );
        let e = parse("[g]\nh a='x\n").unwrap_err();
        assert!(e.message.contains("unterminated"));
        let e = parse("[g:weird]\n").unwrap_err();
        assert!(e.message.contains(":weird"));
    }
}
