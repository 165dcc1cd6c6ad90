//! YAML documents with a source position on every node.
//!
//! Lab files, inventories and playbooks are parsed with serde-saphyr's YAML
//! parser into a [`Node`] tree, and typed values are deserialized from that
//! tree with serde. Because every node keeps its span, every error, whether
//! the YAML is malformed, a field is unknown, a value has the wrong type, or
//! a semantic check fails later, can point at the exact line and column. And
//! because the tree outlives one deserialization, the loader can deserialize
//! item by item and report all the errors of a file in one run.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle};

use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Pos, SourceFile, Span};

/// One YAML node and where it stands in its file.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// An empty value, `~` or `null`.
    Null,
    /// A scalar, with whether it was quoted (quoted scalars are always strings).
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    /// Keys in source order; keys are scalars.
    Map(Vec<(Node, Node)>),
}

/// A segment of a path into a document: `vms[2].nics[0].network`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Self {
        Seg::Key(s.to_string())
    }
}
impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// Build a path: `path!["vms", 2, "memory"]`.
#[macro_export]
macro_rules! path {
    ($($seg:expr),* $(,)?) => {
        ::std::vec::Vec::<$crate::yaml::Seg>::from([$($crate::yaml::Seg::from($seg)),*])
    };
}

/// Render a path the way users read it: `vms[2].nics[0].network`.
pub fn path_to_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl Node {
    pub fn null(span: Span) -> Node {
        Node {
            kind: NodeKind::Null,
            span,
        }
    }

    /// The scalar text, if this is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Follow a path; `None` when some segment is missing.
    pub fn at(&self, path: &[Seg]) -> Option<&Node> {
        let mut node = self;
        for seg in path {
            node = match seg {
                Seg::Key(k) => node.get(k)?,
                Seg::Index(i) => node.as_seq()?.get(*i)?,
            };
        }
        Some(node)
    }

    /// The span of the deepest node that exists along `path`: an error about
    /// a value that is missing points at its parent.
    pub fn span_at(&self, path: &[Seg]) -> Span {
        let mut node = self;
        for seg in path {
            let next = match seg {
                Seg::Key(k) => node.get(k),
                Seg::Index(i) => node.as_seq().and_then(|s| s.get(*i)),
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.span
    }

    /// What kind of node this is, for messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "an empty value",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }
}

/// An error tied to a place in a YAML document.
#[derive(Clone, Debug, PartialEq)]
pub struct Error {
    pub message: String,
    pub span: Option<Span>,
}

impl Error {
    pub fn new(message: impl Into<String>, span: Span) -> Self {
        Error {
            message: message.into(),
            span: Some(span),
        }
    }
    /// Attach a span if the error has none yet (the innermost node wins).
    fn at(mut self, span: Span) -> Self {
        if self.span.is_none() {
            self.span = Some(span);
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            message: msg.to_string(),
            span: None,
        }
    }

    /// serde's words for types, in the words of a YAML file's reader:
    /// `a list`, `a mapping`, `a whole number` (not `sequence`, `struct
    /// KubernetesFile`, `u32`).
    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        let found = match unexp {
            de::Unexpected::Seq => "a list".to_string(),
            de::Unexpected::Map => "a mapping".to_string(),
            de::Unexpected::Unit => "an empty value".to_string(),
            other => other.to_string(),
        };
        let expected = exp.to_string();
        let expected = match expected.as_str() {
            e if e.starts_with("struct ") || e == "a map" => "a mapping",
            e if e.contains("tagged enum ") => "a mapping",
            "a sequence" => "a list",
            "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64" => "a whole number",
            "f32" | "f64" => "a number",
            e => e,
        };
        Error {
            message: format!("invalid type: {found}, expected {expected}"),
            span: None,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!("unknown field `{field}`");
        if let Some(best) = closest(field, expected.iter().copied()) {
            message.push_str(&format!(", did you mean `{best}`?"));
        }
        if !expected.is_empty() {
            message.push_str(&format!(" (expected one of: {})", expected.join(", ")));
        }
        Error {
            message,
            span: None,
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let mut message = format!("unknown value `{variant}`");
        if let Some(best) = closest(variant, expected.iter().copied()) {
            message.push_str(&format!(", did you mean `{best}`?"));
        }
        message.push_str(&format!(" (expected one of: {})", expected.join(", ")));
        Error {
            message,
            span: None,
        }
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to
/// be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edits (insert, delete, substitute, or swap two neighbours: `dchp` is
/// one edit from `dhcp`) between two words.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            if i > 0 && j > 0 && *ca == b[j - 1] && a[i - 1] == *cb {
                cur[j + 1] = cur[j + 1].min(before[j - 1] + 1);
            }
        }
        before = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

/// Limits that keep hostile input from exhausting memory through aliases.
const MAX_NODES: usize = 1_000_000;
const MAX_DEPTH: usize = 256;

/// Parse one YAML document. An empty file is a `Null` node.
pub fn parse(text: &str) -> Result<Node, Error> {
    let mut builder = Builder::default();
    let parser = Parser::new_from_str(text);
    let mut documents = 0usize;
    for item in parser {
        let (event, span) = match item {
            Ok(x) => x,
            Err(e) => {
                let m = e.marker();
                let pos = Pos {
                    line: m.line() as u32,
                    col: m.col() as u32 + 1,
                };
                let message = e.info().to_string();
                return Err(Error::new(
                    format!("invalid YAML: {message}"),
                    Span {
                        start: pos,
                        end: pos,
                    },
                ));
            }
        };
        let span = Span {
            start: Pos {
                line: span.start.line() as u32,
                col: span.start.col() as u32 + 1,
            },
            end: Pos {
                line: span.end.line() as u32,
                col: span.end.col() as u32 + 1,
            },
        };
        match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(Error::new(
                        "this file holds more than one YAML document; kubelab reads exactly one",
                        span,
                    ));
                }
            }
            Event::Scalar(value, style, anchor, _tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                let kind = if !quoted && is_null(&value) {
                    NodeKind::Null
                } else {
                    NodeKind::Scalar {
                        text: value.into_owned(),
                        quoted,
                    }
                };
                builder.push_value(Node { kind, span }, anchor)?;
            }
            Event::SequenceStart(_, anchor, _) => {
                builder.open(Open::Seq(Vec::new()), span, anchor)?
            }
            Event::MappingStart(_, anchor, _) => {
                builder.open(Open::Map(Vec::new(), None, Vec::new()), span, anchor)?
            }
            Event::SequenceEnd | Event::MappingEnd => builder.close(span)?,
            Event::Alias(id) => {
                let node = builder.anchors.get(&id).cloned().ok_or_else(|| {
                    Error::new("alias refers to an anchor that is not defined", span)
                })?;
                builder.count += count_nodes(&node);
                if builder.count > MAX_NODES {
                    return Err(Error::new(
                        "document too large after expanding aliases",
                        span,
                    ));
                }
                builder.push_value(
                    Node {
                        kind: node.kind,
                        span,
                    },
                    0,
                )?;
            }
            Event::UnresolvedAlias(name) => {
                return Err(Error::new(
                    format!("alias `*{name}` refers to an anchor that is not defined"),
                    span,
                ));
            }
            _ => {}
        }
    }
    // An empty file (or only comments) is an empty value at its start, so
    // that errors about it still have a line to point at.
    let start = Pos { line: 1, col: 1 };
    Ok(builder
        .root
        .unwrap_or(Node::null(Span { start, end: start })))
}

fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

fn count_nodes(n: &Node) -> usize {
    match &n.kind {
        NodeKind::Seq(s) => 1 + s.iter().map(count_nodes).sum::<usize>(),
        NodeKind::Map(m) => {
            1 + m
                .iter()
                .map(|(k, v)| count_nodes(k) + count_nodes(v))
                .sum::<usize>()
        }
        _ => 1,
    }
}

enum Open {
    Seq(Vec<Node>),
    /// Entries so far, a key waiting for its value, and entries brought in
    /// by merge keys (`<<`), which explicit entries override.
    Map(Vec<(Node, Node)>, Option<Node>, Vec<(Node, Node)>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<(Open, Span, usize)>,
    root: Option<Node>,
    anchors: HashMap<usize, Node>,
    count: usize,
}

impl Builder {
    fn open(&mut self, open: Open, span: Span, anchor: usize) -> Result<(), Error> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(Error::new("YAML nested too deeply", span));
        }
        self.stack.push((open, span, anchor));
        Ok(())
    }

    fn close(&mut self, end: Span) -> Result<(), Error> {
        let Some((open, span, anchor)) = self.stack.pop() else {
            return Err(Error::new("unbalanced YAML structure", end));
        };
        let kind = match open {
            Open::Seq(items) => NodeKind::Seq(items),
            Open::Map(mut entries, _, merged) => {
                for (k, v) in merged {
                    if !entries.iter().any(|(e, _)| e.as_str() == k.as_str()) {
                        entries.push((k, v));
                    }
                }
                NodeKind::Map(entries)
            }
        };
        self.push_value(Node { kind, span }, anchor)
    }

    fn push_value(&mut self, node: Node, anchor: usize) -> Result<(), Error> {
        self.count += 1;
        if self.count > MAX_NODES {
            return Err(Error::new("document too large", node.span));
        }
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some((Open::Seq(items), _, _)) => items.push(node),
            Some((Open::Map(entries, pending, merged), _, _)) => match pending.take() {
                None => {
                    if !matches!(node.kind, NodeKind::Scalar { .. } | NodeKind::Null) {
                        return Err(Error::new("mapping keys must be plain scalars", node.span));
                    }
                    *pending = Some(node);
                }
                Some(key) => {
                    let name = key.as_str().unwrap_or("");
                    if name == "<<" && matches!(key.kind, NodeKind::Scalar { quoted: false, .. }) {
                        merge_into(merged, node)?;
                    } else if let Some((first, _)) = entries
                        .iter()
                        .find(|(k, _)| k.as_str() == key.as_str() && k.kind == key.kind)
                    {
                        return Err(Error::new(
                            format!(
                                "duplicate key `{}` (first defined at line {})",
                                key.as_str().unwrap_or("~"),
                                first.span.start.line
                            ),
                            key.span,
                        ));
                    } else {
                        entries.push((key, node));
                    }
                }
            },
        }
        Ok(())
    }
}

/// YAML merge key (`<<: *base`): collect the entries of the merged
/// mapping(s); the first merged mapping wins over later ones.
fn merge_into(merged: &mut Vec<(Node, Node)>, value: Node) -> Result<(), Error> {
    let sources = match value.kind {
        NodeKind::Map(m) => vec![m],
        NodeKind::Seq(items) => {
            let mut maps = Vec::new();
            for item in items {
                match item.kind {
                    NodeKind::Map(m) => maps.push(m),
                    _ => return Err(Error::new("`<<` merges only mappings", item.span)),
                }
            }
            maps
        }
        _ => return Err(Error::new("`<<` merges only mappings", value.span)),
    };
    for source in sources {
        for (k, v) in source {
            if !merged.iter().any(|(e, _)| e.as_str() == k.as_str()) {
                merged.push((k, v));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// serde: typed values from a node tree
// ---------------------------------------------------------------------------

/// Deserialize a typed value from a node; errors carry the innermost span.
pub fn from_node<'de, T: de::Deserialize<'de>>(node: &'de Node) -> Result<T, Error> {
    T::deserialize(node).map_err(|e: Error| e.at(node.span))
}

enum Number {
    U(u64),
    I(i64),
    F(f64),
}

fn parse_number(s: &str) -> Option<Number> {
    let t = s.replace('_', "");
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(&t)),
    };
    let radix = |p: &str, r: u32| -> Option<Number> {
        let v = u64::from_str_radix(digits.strip_prefix(p)?, r).ok()?;
        if neg {
            Some(Number::I(-(i64::try_from(v).ok()?)))
        } else {
            Some(Number::U(v))
        }
    };
    if let Some(n) = radix("0x", 16).or_else(|| radix("0o", 8)) {
        return Some(n);
    }
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return if neg {
            t.parse::<i64>().ok().map(Number::I)
        } else {
            t.parse::<u64>().ok().map(Number::U)
        };
    }
    match digits {
        ".inf" | ".Inf" | ".INF" => {
            return Some(Number::F(if neg {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }));
        }
        ".nan" | ".NaN" | ".NAN" => return Some(Number::F(f64::NAN)),
        _ => {}
    }
    let looks_float = digits.bytes().any(|b| b.is_ascii_digit())
        && digits
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
    if looks_float {
        return t.parse::<f64>().ok().map(Number::F);
    }
    None
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

macro_rules! deserialize_integer {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            match &self.kind {
                NodeKind::Scalar {
                    text,
                    quoted: false,
                } => match parse_number(text) {
                    Some(Number::U(u)) => match <$ty>::try_from(u) {
                        Ok(v) => visitor.$visit(v),
                        Err(_) => Err(Error::new(
                            format!("number {u} is out of range for {}", stringify!($ty)),
                            self.span,
                        )),
                    },
                    Some(Number::I(i)) => match <$ty>::try_from(i) {
                        Ok(v) => visitor.$visit(v),
                        Err(_) => Err(Error::new(
                            format!("number {i} is out of range for {}", stringify!($ty)),
                            self.span,
                        )),
                    },
                    _ => Err(self.invalid_type(&visitor)),
                },
                _ => Err(self.invalid_type(&visitor)),
            }
            .map_err(|e: Error| e.at(self.span))
        }
    };
}

impl Node {
    fn unexpected(&self) -> de::Unexpected<'_> {
        match &self.kind {
            NodeKind::Null => de::Unexpected::Unit,
            NodeKind::Scalar { text, quoted: true } => de::Unexpected::Str(text),
            NodeKind::Scalar { text, .. } => match parse_number(text) {
                Some(Number::U(u)) => de::Unexpected::Unsigned(u),
                Some(Number::I(i)) => de::Unexpected::Signed(i),
                Some(Number::F(f)) => de::Unexpected::Float(f),
                None => match parse_bool(text) {
                    Some(b) => de::Unexpected::Bool(b),
                    None => de::Unexpected::Str(text),
                },
            },
            NodeKind::Seq(_) => de::Unexpected::Seq,
            NodeKind::Map(_) => de::Unexpected::Map,
        }
    }

    fn invalid_type<'de, V: Visitor<'de>>(&self, visitor: &V) -> Error {
        let mut e: Error = de::Error::invalid_type(self.unexpected(), visitor);
        if let NodeKind::Scalar { text, quoted: true } = &self.kind
            && parse_number(text).is_some()
        {
            e.message
                .push_str(" (quotes make a number a string: remove them)");
        }
        e.at(self.span)
    }
}

impl<'de> de::Deserializer<'de> for &'de Node {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let r = match &self.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Scalar { text, quoted: true } => visitor.visit_borrowed_str(text),
            NodeKind::Scalar {
                text,
                quoted: false,
            } => {
                if let Some(b) = parse_bool(text) {
                    visitor.visit_bool(b)
                } else {
                    match parse_number(text) {
                        Some(Number::U(u)) => visitor.visit_u64(u),
                        Some(Number::I(i)) => visitor.visit_i64(i),
                        Some(Number::F(f)) => visitor.visit_f64(f),
                        None => visitor.visit_borrowed_str(text),
                    }
                }
            }
            NodeKind::Seq(items) => visitor.visit_seq(SeqAccess {
                iter: items.iter(),
                len: items.len(),
            }),
            NodeKind::Map(entries) => visitor.visit_map(MapAccess {
                iter: entries.iter(),
                value: None,
            }),
        };
        r.map_err(|e: Error| e.at(self.span))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.kind {
            NodeKind::Scalar {
                text,
                quoted: false,
            } => match parse_bool(text) {
                Some(b) => visitor.visit_bool(b).map_err(|e: Error| e.at(self.span)),
                None => Err(Error::new(
                    format!("expected true or false, found `{text}`"),
                    self.span,
                )),
            },
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    deserialize_integer!(deserialize_i8, visit_i8, i8);
    deserialize_integer!(deserialize_i16, visit_i16, i16);
    deserialize_integer!(deserialize_i32, visit_i32, i32);
    deserialize_integer!(deserialize_i64, visit_i64, i64);
    deserialize_integer!(deserialize_u8, visit_u8, u8);
    deserialize_integer!(deserialize_u16, visit_u16, u16);
    deserialize_integer!(deserialize_u32, visit_u32, u32);
    deserialize_integer!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.kind {
            NodeKind::Scalar {
                text,
                quoted: false,
            } => match parse_number(text) {
                Some(Number::U(u)) => visitor.visit_f64(u as f64),
                Some(Number::I(i)) => visitor.visit_f64(i as f64),
                Some(Number::F(f)) => visitor.visit_f64(f),
                None => Err(self.invalid_type(&visitor)),
            }
            .map_err(|e: Error| e.at(self.span)),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.kind {
            // Any scalar reads as text: `version: 1.30` stays "1.30".
            NodeKind::Scalar { text, .. } => visitor
                .visit_borrowed_str(text)
                .map_err(|e: Error| e.at(self.span)),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.kind {
            NodeKind::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e: Error| e.at(self.span))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.kind {
            NodeKind::Null => visitor.visit_unit(),
            _ => Err(self.invalid_type(&visitor)),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor
            .visit_newtype_struct(self)
            .map_err(|e: Error| e.at(self.span))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.kind {
            NodeKind::Seq(items) => visitor.visit_seq(SeqAccess {
                iter: items.iter(),
                len: items.len(),
            }),
            // An empty `key:` reads as an empty list.
            NodeKind::Null => visitor.visit_seq(SeqAccess {
                iter: [].iter(),
                len: 0,
            }),
            _ => return Err(self.invalid_type(&visitor)),
        }
        .map_err(|e: Error| e.at(self.span))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match &self.kind {
            NodeKind::Map(entries) => visitor.visit_map(MapAccess {
                iter: entries.iter(),
                value: None,
            }),
            // An empty `key:` reads as an empty mapping.
            NodeKind::Null => visitor.visit_map(MapAccess {
                iter: [].iter(),
                value: None,
            }),
            _ => return Err(self.invalid_type(&visitor)),
        }
        .map_err(|e: Error| e.at(self.span))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match &self.kind {
            NodeKind::Scalar { .. } => visitor.visit_enum(EnumAccess {
                tag: self,
                content: None,
            }),
            NodeKind::Map(entries) if entries.len() == 1 => visitor.visit_enum(EnumAccess {
                tag: &entries[0].0,
                content: Some(&entries[0].1),
            }),
            _ => Err(Error::new(
                format!(
                    "expected a name or a mapping with a single key, found {}",
                    self.describe()
                ),
                self.span,
            )),
        }
        .map_err(|e: Error| e.at(self.span))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'de> {
    iter: std::slice::Iter<'de, Node>,
    len: usize,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'de> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.iter.next() {
            Some(node) => seed
                .deserialize(node)
                .map(Some)
                .map_err(|e: Error| e.at(node.span)),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.len)
    }
}

struct MapAccess<'de> {
    iter: std::slice::Iter<'de, (Node, Node)>,
    value: Option<&'de Node>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.iter.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(k)
                    .map(Some)
                    .map_err(|e: Error| e.at(k.span))
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(v) => seed.deserialize(v).map_err(|e: Error| e.at(v.span)),
            None => Err(de::Error::custom("value requested before key")),
        }
    }
}

struct EnumAccess<'de> {
    tag: &'de Node,
    content: Option<&'de Node>,
}

impl<'de> de::EnumAccess<'de> for EnumAccess<'de> {
    type Error = Error;
    type Variant = VariantAccess<'de>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), Error> {
        let tag_text = self
            .tag
            .as_str()
            .ok_or_else(|| Error::new("expected a name", self.tag.span))?;
        let value = seed
            .deserialize(tag_text.into_deserializer())
            .map_err(|e: Error| e.at(self.tag.span))?;
        Ok((
            value,
            VariantAccess {
                tag: self.tag,
                content: self.content,
            },
        ))
    }
}

struct VariantAccess<'de> {
    tag: &'de Node,
    content: Option<&'de Node>,
}

impl<'de> de::VariantAccess<'de> for VariantAccess<'de> {
    type Error = Error;
    fn unit_variant(self) -> Result<(), Error> {
        match self.content {
            None => Ok(()),
            Some(n) if matches!(n.kind, NodeKind::Null) => Ok(()),
            Some(n) => Err(Error::new("this value takes no parameters", n.span)),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        match self.content {
            Some(n) => seed.deserialize(n).map_err(|e: Error| e.at(n.span)),
            None => Err(Error::new("this value needs parameters", self.tag.span)),
        }
    }
    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        match self.content {
            Some(n) => de::Deserializer::deserialize_seq(n, visitor),
            None => Err(Error::new("this value needs parameters", self.tag.span)),
        }
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.content {
            Some(n) => de::Deserializer::deserialize_map(n, visitor),
            None => Err(Error::new("this value needs parameters", self.tag.span)),
        }
    }
}

/// Parse one YAML file into its tree, or a diagnostic.
pub fn parse_file(file: &Arc<SourceFile>) -> Result<Node, Diagnostic> {
    parse(&file.text).map_err(|e| Diagnostic::error(file, e.span, e.message))
}

/// Deserialize a typed value from a node, or a diagnostic at the culprit.
pub fn typed<'a, T: serde::Deserialize<'a>>(
    file: &Arc<SourceFile>,
    node: &'a Node,
) -> Result<T, Diagnostic> {
    from_node::<T>(node).map_err(|e| Diagnostic::error(file, e.span.or(Some(node.span)), e.message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Vm {
        name: String,
        cpus: u32,
        #[serde(default)]
        tags: Vec<String>,
    }

    fn line_col(e: &Error) -> (u32, u32) {
        let s = e.span.expect("span");
        (s.start.line, s.start.col)
    }

    #[test]
    fn scalars_keep_their_text_for_strings() {
        let n = parse("version: 1.30\n").unwrap();
        #[derive(Deserialize)]
        struct K {
            version: String,
        }
        let k: K = from_node(&n).unwrap();
        assert_eq!(k.version, "1.30");
    }

    #[test]
    fn unknown_field_points_at_key_and_suggests() {
        let n = parse("name: a\ncpu: 2\n").unwrap();
        let e = from_node::<Vm>(&n).unwrap_err();
        assert_eq!(line_col(&e), (2, 1));
        assert!(e.message.contains("did you mean `cpus`"), "{}", e.message);
    }

    #[test]
    fn wrong_type_points_at_value() {
        let n = parse("name: a\ncpus: many\n").unwrap();
        let e = from_node::<Vm>(&n).unwrap_err();
        assert_eq!(line_col(&e), (2, 7));
        assert!(e.message.contains("invalid type"), "{}", e.message);
    }

    #[test]
    fn quoted_number_is_not_a_number() {
        let n = parse("name: a\ncpus: \"2\"\n").unwrap();
        assert!(from_node::<Vm>(&n).is_err());
    }

    #[test]
    fn missing_field_points_at_mapping() {
        let n = parse("x: 1\nvm:\n  name: a\n").unwrap();
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            x: u32,
            vm: Vm,
        }
        let e = from_node::<Outer>(&n).unwrap_err();
        assert_eq!(line_col(&e), (3, 3));
        assert!(e.message.contains("missing field `cpus`"));
    }

    #[test]
    fn swapped_letters_are_one_edit() {
        assert_eq!(edit_distance("dchp", "dhcp"), 1);
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(closest("dchp", ["dhcp", "mtu"].into_iter()), Some("dhcp"));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(line_col(&e), (3, 1));
        assert!(e.message.contains("first defined at line 1"));
    }

    #[test]
    fn anchors_and_merge_keys() {
        let n = parse("base: &b {cpus: 2, name: x}\nvm:\n  <<: *b\n  name: y\n").unwrap();
        let vm: Vm = from_node(n.get("vm").unwrap()).unwrap();
        assert_eq!(vm.name, "y");
        assert_eq!(vm.cpus, 2);
    }

    #[test]
    fn syntax_error_has_position() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.span.is_some());
        assert!(e.message.starts_with("invalid YAML"));
    }

    #[test]
    fn empty_file_is_null_at_line_one() {
        for text in ["", "# only a comment\n"] {
            let n = parse(text).unwrap();
            assert_eq!(n.kind, NodeKind::Null);
            assert_eq!((n.span.start.line, n.span.start.col), (1, 1));
        }
    }

    #[test]
    fn two_documents_rejected() {
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }

    #[test]
    fn paths_and_spans() {
        let n = parse("vms:\n  - name: a\n    cpus: 1\n  - name: b\n    cpus: 2\n").unwrap();
        let p = path!["vms", 1, "cpus"];
        assert_eq!(n.at(&p).and_then(|x| x.as_str()), Some("2"));
        assert_eq!(n.span_at(&p).start.line, 5);
        assert_eq!(path_to_string(&p), "vms[1].cpus");
        // missing leaf: parent span
        assert_eq!(n.span_at(&path!["vms", 1, "memory"]).start.line, 4);
    }

    #[test]
    fn integers_out_of_range() {
        let n = parse("name: a\ncpus: 99999999999\n").unwrap();
        let e = from_node::<Vm>(&n).unwrap_err();
        assert!(e.message.contains("out of range"));
    }

    #[test]
    fn alias_bomb_is_bounded() {
        let mut y = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            y.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n",
                p = i - 1
            ));
        }
        assert!(parse(&y).is_err());
    }
}
