//! The checker every part of a lab file is checked with: where the part
//! was written, the diagnostics found so far (each at the position of the
//! value it is about), and the parsers of values shared by many checks.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::size::parse_size;
use crate::diagnostic::{Diagnostic, Diagnostics, SourceFile};
use crate::yaml::{Node, Seg};

/// Where a part of the lab was written: a file and its parsed tree.
#[derive(Clone, Copy)]
pub struct Located<'a> {
    pub file: &'a Arc<SourceFile>,
    pub root: &'a Node,
}

/// Parts of a lab file that could not be read at all (their errors are
/// reported already): checks that would only repeat those errors in other
/// words stay quiet about them.
#[derive(Clone, Debug, Default)]
pub struct Unreadable {
    /// Some VM entries could not be read.
    pub vms: bool,
    /// Some network entries (or the whole section) could not be read.
    pub networks: bool,
    /// Names of the unreadable networks, where their `name` was readable.
    pub network_names: Vec<String>,
    /// The `kubernetes` section could not be read.
    pub kubernetes: bool,
}

impl Unreadable {
    pub(crate) const NOTHING: Unreadable = Unreadable {
        vms: false,
        networks: false,
        network_names: Vec::new(),
        kubernetes: false,
    };

    pub(crate) fn network(&self, name: &str) -> bool {
        self.network_names.iter().any(|n| n == name)
    }
}

/// The lab under check and what it found so far.
pub(crate) struct Checker<'a> {
    pub(crate) lab: Located<'a>,
    pub(crate) diags: Diagnostics,
    pub(crate) unreadable: &'a Unreadable,
}

impl Checker<'_> {
    pub(crate) fn error(&mut self, path: &[Seg], message: impl Into<String>) -> &mut Diagnostic {
        let span = self.lab.root.span_at(path);
        self.diags
            .push(Diagnostic::error(self.lab.file, Some(span), message));
        self.diags.0.last_mut().expect("just pushed")
    }

    pub(crate) fn error_help(
        &mut self,
        path: &[Seg],
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.error(path, message).help = Some(help.into());
    }

    pub(crate) fn warning(&mut self, path: &[Seg], message: impl Into<String>) {
        let span = self.lab.root.span_at(path);
        self.diags
            .push(Diagnostic::warning(self.lab.file, Some(span), message));
    }

    /// A DNS-1123 label: lowercase letters, digits and `-`, starting and
    /// ending alphanumeric, at most `max` characters. This also keeps shell
    /// metacharacters out of every name.
    pub(crate) fn label(&mut self, path: &[Seg], what: &str, value: &str, max: usize) -> bool {
        match label_problem(value, max) {
            None => true,
            Some(why) => {
                self.error_help(
                    path,
                    format!("{what} `{}` is not a valid name: {why}", value.escape_debug()),
                    "names are DNS-1123 labels: lowercase letters, digits and `-`, starting and ending with a letter or digit",
                );
                false
            }
        }
    }

    pub(crate) fn size(
        &mut self,
        path: &[Seg],
        text: &str,
        min: u64,
        max: u64,
        what: &str,
    ) -> Option<u64> {
        match parse_size(text) {
            Err(e) => {
                self.error(path, format!("{what}: {e}"));
                None
            }
            Ok(b) if b < min => {
                self.error(
                    path,
                    format!(
                        "{what} `{text}` is too small (at least {})",
                        super::size::format_size(min)
                    ),
                );
                None
            }
            Ok(b) if b > max => {
                self.error(
                    path,
                    format!(
                        "{what} `{text}` is absurdly large (at most {})",
                        super::size::format_size(max)
                    ),
                );
                None
            }
            Ok(b) => Some(b),
        }
    }
}

/// Why `value` is not a DNS-1123 label, if it is not.
pub fn label_problem(value: &str, max: usize) -> Option<String> {
    if value.is_empty() {
        return Some("it is empty".into());
    }
    if value.len() > max {
        return Some(format!("it is longer than {max} characters"));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!("`{}` is not allowed", c.escape_debug()));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Some("it must start and end with a letter or digit".into());
    }
    None
}

/// A subnet in CIDR notation without host bits, or an error at `path`.
fn parse_net(c: &mut Checker<'_>, path: &[Seg], t: &str, v6: bool) -> Option<IpNet> {
    let (what, example) = if v6 {
        ("an IPv6 prefix", "write an IPv6 prefix like fd00:150::/64")
    } else {
        ("an IPv4 CIDR", "write an IPv4 subnet like 192.168.150.0/24")
    };
    match t.parse::<IpNet>() {
        Ok(n) if matches!(n, IpNet::V6(_)) == v6 => {
            if n.network() != n.addr() {
                c.error_help(
                    path,
                    format!("`{t}` has host bits set"),
                    format!("did you mean {}?", n.trunc()),
                );
                None
            } else {
                Some(n)
            }
        }
        Ok(_) => {
            let hint = if v6 {
                "this is an IPv4 subnet; put it under `ipv4`"
            } else {
                "this is an IPv6 prefix; put it under `ipv6`"
            };
            c.error_help(path, format!("`{t}` is not {what}"), hint);
            None
        }
        Err(_) => {
            c.error_help(path, format!("`{t}` is not {what}"), example);
            None
        }
    }
}

pub(crate) fn parse_net4(c: &mut Checker<'_>, path: &[Seg], t: &str) -> Option<Ipv4Net> {
    match parse_net(c, path, t, false)? {
        IpNet::V4(n) => Some(n),
        IpNet::V6(_) => None,
    }
}

pub(crate) fn parse_net6(c: &mut Checker<'_>, path: &[Seg], t: &str) -> Option<Ipv6Net> {
    match parse_net(c, path, t, true)? {
        IpNet::V6(n) => Some(n),
        IpNet::V4(_) => None,
    }
}

pub(crate) fn parse_ip4(c: &mut Checker<'_>, path: &[Seg], t: &str) -> Option<Ipv4Addr> {
    match t.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            c.error(path, format!("`{t}` is not an IPv4 address"));
            None
        }
    }
}

pub(crate) fn parse_ip6(c: &mut Checker<'_>, path: &[Seg], t: &str) -> Option<Ipv6Addr> {
    match t.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            c.error(path, format!("`{t}` is not an IPv6 address"));
            None
        }
    }
}
