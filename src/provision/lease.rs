//! A lab's lease: who brought it up, when, until when it may stay. `up`
//! records it in the metadata of the lab's domains (see
//! [`crate::virthost::spec::Lease`]); `ls` shows it, `reap` acts on it.
//!
//! The rules: a new lab gets `created` = now and `expires` = now + TTL
//! (`up --ttl`, else the lab file's `ttl:`, else no expiry). A lab that
//! has a lease keeps its owner and creation time; `up --ttl D` renews it
//! (expires now + D); the lab file's `ttl:` puts expiry at created + TTL;
//! with neither, the lease stays as it is.

use crate::virthost::spec::Lease;

/// What an `up` (or `plan`) asks of the lab's lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRequest {
    /// `user@host` of this run.
    pub owner: String,
    /// Unix seconds.
    pub now: u64,
    /// The lab file's `ttl:` (seconds).
    pub ttl_file: Option<u64>,
    /// `up --ttl` (seconds): renews from now.
    pub ttl_renew: Option<u64>,
}

impl LeaseRequest {
    /// A request of this run at this moment.
    pub fn now(ttl_file: Option<u64>, ttl_renew: Option<u64>) -> Self {
        LeaseRequest {
            owner: owner(),
            now: crate::state::now_secs(),
            ttl_file,
            ttl_renew,
        }
    }

    /// The lease the lab gets, given the one its domains carry.
    pub fn decide(&self, existing: Option<&Lease>) -> Lease {
        let after = |start: u64, ttl: u64| start.saturating_add(ttl);
        match existing {
            None => Lease {
                owner: self.owner.clone(),
                created: self.now,
                expires: self.ttl_renew.or(self.ttl_file).map(|t| after(self.now, t)),
            },
            Some(e) => Lease {
                expires: match (self.ttl_renew, self.ttl_file) {
                    (Some(t), _) => Some(after(self.now, t)),
                    (None, Some(t)) => Some(after(e.created, t)),
                    (None, None) => e.expires,
                },
                ..e.clone()
            },
        }
    }
}

/// `user@host` of this process: the login name and the machine's name,
/// each reduced to characters that are safe anywhere (`[A-Za-z0-9._-]`).
pub fn owner() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(login_name)
        .unwrap_or_else(|| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let safe = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .take(64)
            .collect()
    };
    format!("{}@{}", safe(&user), safe(&host))
}

/// The name of this process's user from the password database.
fn login_name() -> Option<String> {
    // SAFETY: getpwuid returns a pointer into static storage (or null); it
    // is read at once, before any other call could overwrite it.
    unsafe {
        let pw = libc::getpwuid(libc::geteuid());
        if pw.is_null() || (*pw).pw_name.is_null() {
            return None;
        }
        std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_str()
            .ok()
            .map(str::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(file: Option<u64>, renew: Option<u64>) -> LeaseRequest {
        LeaseRequest {
            owner: "ci@runner".into(),
            now: 10_000,
            ttl_file: file,
            ttl_renew: renew,
        }
    }

    #[test]
    fn a_new_lab_gets_now_plus_its_ttl_and_keeps_it_on_a_second_up() {
        let first = request(Some(3_600), None).decide(None);
        assert_eq!(
            first,
            Lease {
                owner: "ci@runner".into(),
                created: 10_000,
                expires: Some(13_600)
            }
        );
        // later, by someone else: unchanged
        let later = LeaseRequest {
            owner: "dev@laptop".into(),
            now: 12_000,
            ..request(Some(3_600), None)
        };
        assert_eq!(later.decide(Some(&first)), first);
        // no ttl anywhere: no expiry for a new lab, the old one kept
        assert_eq!(request(None, None).decide(None).expires, None);
        assert_eq!(request(None, None).decide(Some(&first)), first);
    }

    #[test]
    fn up_ttl_renews_from_now_and_a_changed_file_ttl_counts_from_creation() {
        let first = request(Some(3_600), None).decide(None);
        let renewed = LeaseRequest {
            now: 12_000,
            ..request(Some(3_600), Some(600))
        }
        .decide(Some(&first));
        assert_eq!(renewed.expires, Some(12_600));
        assert_eq!(
            (renewed.created, renewed.owner.as_str()),
            (10_000, "ci@runner")
        );
        let longer = request(Some(7_200), None).decide(Some(&first));
        assert_eq!(longer.expires, Some(17_200));
    }

    #[test]
    fn the_owner_is_user_at_host_in_safe_characters() {
        let o = owner();
        let (user, host) = o.split_once('@').expect("user@host");
        assert!(!user.is_empty() && !host.is_empty(), "{o}");
        assert!(
            o.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c)),
            "{o}"
        );
    }
}
