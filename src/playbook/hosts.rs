//! Host expressions: which hosts a play runs on.
//!
//! `all`, a group (role) name, a host name, `a:b` (union), `a:&b`
//! (intersection), `a:!b` (exclusion), `group[0]` (the first host of a
//! group). Terms apply left to right.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    Union,
    Intersect,
    Exclude,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub combine: Combine,
    pub name: String,
    pub index: Option<usize>,
}

/// A parsed host expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    pub text: String,
    pub terms: Vec<Term>,
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<HostPattern, String> {
        let mut terms = Vec::new();
        for (i, raw) in text.split(':').enumerate() {
            let raw = raw.trim();
            let (combine, rest) = match raw.as_bytes().first() {
                Some(b'&') => (Combine::Intersect, &raw[1..]),
                Some(b'!') => (Combine::Exclude, &raw[1..]),
                _ => (Combine::Union, raw),
            };
            if i == 0 && combine == Combine::Intersect {
                return Err(format!("`{text}`: an expression cannot start with `&`"));
            }
            let (name, index) = match rest.find('[') {
                Some(open) => {
                    let Some(inner) = rest[open + 1..].strip_suffix(']') else {
                        return Err(format!("`{rest}`: expected `name[N]`"));
                    };
                    let index = inner
                        .parse::<usize>()
                        .map_err(|_| format!("`{rest}`: `{inner}` is not a host index"))?;
                    (&rest[..open], Some(index))
                }
                None => (rest, None),
            };
            if !valid_name(name) {
                return Err(if name.is_empty() {
                    format!("`{text}`: empty term")
                } else {
                    format!("`{text}`: `{name}` is not a group or host name")
                });
            }
            terms.push(Term {
                combine,
                name: name.to_string(),
                index,
            });
        }
        Ok(HostPattern {
            text: text.to_string(),
            terms,
        })
    }

    /// Select hosts, in inventory order. `hosts` are `(name, groups)`.
    /// Returns indexes into `hosts`, or an error naming an unknown term.
    pub fn select(&self, hosts: &[(&str, &[String])]) -> Result<Vec<usize>, String> {
        self.select_declared(hosts, &[])
    }

    /// Like [`HostPattern::select`], where the `declared` groups are known
    /// names even when no host is in them (they select nothing).
    pub fn select_declared(
        &self,
        hosts: &[(&str, &[String])],
        declared: &[String],
    ) -> Result<Vec<usize>, String> {
        let mut chosen = vec![false; hosts.len()];
        for (i, term) in self.terms.iter().enumerate() {
            let mut matched: Vec<usize> = hosts
                .iter()
                .enumerate()
                .filter(|(_, (name, groups))| {
                    term.name == "all" || *name == term.name || groups.contains(&term.name)
                })
                .map(|(i, _)| i)
                .collect();
            if matched.is_empty() && term.name != "all" && !declared.contains(&term.name) {
                return Err(format!(
                    "`{}`: no group or host is called `{}`",
                    self.text, term.name
                ));
            }
            if let Some(index) = term.index {
                matched = match matched.get(index) {
                    None if matched.is_empty() => Vec::new(),
                    Some(h) => vec![*h],
                    None => {
                        return Err(format!(
                            "`{}`: `{}` has {} host(s), no index {index}",
                            self.text,
                            term.name,
                            matched.len()
                        ));
                    }
                };
            }
            let mut this = vec![false; hosts.len()];
            for m in matched {
                this[m] = true;
            }
            let first_exclude = i == 0 && term.combine == Combine::Exclude;
            if first_exclude {
                chosen.iter_mut().for_each(|c| *c = true);
            }
            for (c, t) in chosen.iter_mut().zip(this) {
                *c = match term.combine {
                    Combine::Union => *c || t,
                    Combine::Intersect => *c && t,
                    Combine::Exclude => *c && !t,
                };
            }
        }
        Ok(chosen
            .iter()
            .enumerate()
            .filter(|(_, c)| **c)
            .map(|(i, _)| i)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &str) -> Result<Vec<&'static str>, String> {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cp = g(&["control-plane", "kube"]);
        let w = g(&["worker", "kube"]);
        let lb = g(&["lb"]);
        let hosts: Vec<(&str, &[String])> =
            vec![("cp1", &cp), ("cp2", &cp), ("w1", &w), ("lb1", &lb)];
        let all = ["cp1", "cp2", "w1", "lb1"];
        Ok(HostPattern::parse(p)?
            .select(&hosts)?
            .into_iter()
            .map(|i| all[i])
            .collect())
    }

    #[test]
    fn selects() {
        assert_eq!(names("all").unwrap(), ["cp1", "cp2", "w1", "lb1"]);
        assert_eq!(names("worker").unwrap(), ["w1"]);
        assert_eq!(names("lb1").unwrap(), ["lb1"]);
        assert_eq!(names("worker:lb").unwrap(), ["w1", "lb1"]);
        assert_eq!(names("kube:&worker").unwrap(), ["w1"]);
        assert_eq!(names("kube:!control-plane").unwrap(), ["w1"]);
        assert_eq!(names("!lb").unwrap(), ["cp1", "cp2", "w1"]);
        assert_eq!(names("control-plane[0]").unwrap(), ["cp1"]);
        assert_eq!(names("control-plane[1]:worker").unwrap(), ["cp2", "w1"]);
    }

    #[test]
    fn rejects() {
        assert!(names("nosuch").unwrap_err().contains("no group or host"));
        assert!(
            names("control-plane[5]")
                .unwrap_err()
                .contains("no index 5")
        );
        assert!(HostPattern::parse("a::b").is_err());
        assert!(HostPattern::parse("&a").is_err());
        assert!(HostPattern::parse("a[x]").is_err());
        assert!(HostPattern::parse("a b").is_err());
    }

    #[test]
    fn declared_groups_may_be_empty() {
        let w = vec!["worker".to_string()];
        let hosts: Vec<(&str, &[String])> = vec![("w1", &w)];
        let declared = vec!["lb".to_string()];
        let p = HostPattern::parse("lb").unwrap();
        assert_eq!(
            p.select_declared(&hosts, &declared).unwrap(),
            Vec::<usize>::new()
        );
        assert!(p.select(&hosts).is_err());
        let p = HostPattern::parse("lb[0]:worker").unwrap();
        assert_eq!(p.select_declared(&hosts, &declared).unwrap(), vec![0]);
    }
}
