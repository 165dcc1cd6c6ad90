//! Scalars as playbooks and lab files write them, read leniently: a `mode`
//! may be `0644` or `"0644"`, a flag `true` or `"{{ enable }}"`; a value
//! that is still a template when it is read is accepted then and checked
//! once rendered. The playbook modules, the links engine and the lab
//! validator all read their parameters with these.

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

/// Whether a thing (a line, a link, a route, a package) should be there.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    #[default]
    Present,
    Absent,
}
