//! OpenSSH `known_hosts` files: looking a server key up, learning a new one
//! (`accept-new`) and pinning a key kubelab learned itself (VM creation).
//!
//! Written here rather than taken from russh because the verdict must name
//! the exact line of a conflicting entry (comments and blank lines count, as
//! in OpenSSH's own messages), and entries of unknown key types or markers
//! must not make the whole file unreadable.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use data_encoding::BASE64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

/// What a known_hosts file says about a server's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyVerdict {
    /// An entry for this host holds exactly this key.
    Known,
    /// No entry for this host with this key type.
    Unknown,
    /// An entry for this host holds a different key of the same type, or the
    /// key is marked `@revoked`; `line` is 1-based.
    Changed { line: usize },
}

/// The name a host is recorded under: `host` on port 22, `[host]:port` otherwise.
pub fn host_entry_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// The OpenSSH-style SHA256 fingerprint of a key, e.g. `SHA256:abc…`.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Looks `host:port` up in the file at `path`. A missing file knows nothing.
pub fn check_host_key(
    path: &Path,
    host: &str,
    port: u16,
    key: &PublicKey,
) -> std::io::Result<HostKeyVerdict> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HostKeyVerdict::Unknown),
        Err(e) => return Err(e),
    };
    Ok(check_in_text(&text, &host_entry_name(host, port), key))
}

fn check_in_text(text: &str, name: &str, key: &PublicKey) -> HostKeyVerdict {
    let mut changed = None;
    let mut known = false;
    for (index, line) in text.lines().enumerate() {
        let Some(entry) = Entry::parse(line) else {
            continue;
        };
        if !entry.matches_host(name) {
            continue;
        }
        let Ok(recorded) = russh::keys::parse_public_key_base64(entry.key_base64) else {
            continue;
        };
        let same_key = recorded.key_data() == key.key_data();
        match entry.marker {
            Some("@revoked") if same_key => return HostKeyVerdict::Changed { line: index + 1 },
            Some(_) => continue,
            None => {}
        }
        if same_key {
            known = true;
        } else if recorded.algorithm() == key.algorithm() && changed.is_none() {
            changed = Some(index + 1);
        }
    }
    match (known, changed) {
        (true, _) => HostKeyVerdict::Known,
        (false, Some(line)) => HostKeyVerdict::Changed { line },
        (false, None) => HostKeyVerdict::Unknown,
    }
}

/// Serialises appends and rewrites of known_hosts files within this process.
static KNOWN_HOSTS_WRITES: Mutex<()> = Mutex::new(());

/// Appends `host:port key` to the file (creating it and its directory).
pub fn learn_host_key(path: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    let line = entry_line(host, port, key)?;
    let _guard = KNOWN_HOSTS_WRITES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let needs_newline = match std::fs::read(path) {
        Ok(bytes) => bytes.last().is_some_and(|b| *b != b'\n'),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut text = String::new();
    if needs_newline {
        text.push('\n');
    }
    text.push_str(&line);
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Records `key` as THE key of `host:port`: every plain entry naming exactly
/// this host is removed, then the new entry is added. The file is replaced
/// atomically. Used when kubelab learned the key itself (from a VM it just
/// created), so later connections can be strict.
pub fn pin_host_key(path: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    let name = host_entry_name(host, port);
    let line = entry_line(host, port, key)?;
    let _guard = KNOWN_HOSTS_WRITES.lock().unwrap_or_else(|p| p.into_inner());
    let old = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let mut new = String::with_capacity(old.len() + line.len());
    for existing in old.lines() {
        let names_this_host = Entry::parse(existing).is_some_and(|e| {
            e.marker.is_none() && e.hosts.split(',').any(|pattern| pattern == name)
        });
        if !names_this_host {
            new.push_str(existing);
            new.push('\n');
        }
    }
    new.push_str(&line);
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "known_hosts".to_string());
    let temp = dir.join(format!(".{file_name}.kubelab-{}", std::process::id()));
    {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(new.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, path)
}

/// Parses one key in OpenSSH public key format (`ssh-ed25519 AAAA… [comment]`).
pub fn parse_public_key(openssh: &str) -> Result<PublicKey, String> {
    PublicKey::from_openssh(openssh.trim()).map_err(|e| format!("not an OpenSSH public key: {e}"))
}

fn entry_line(host: &str, port: u16, key: &PublicKey) -> std::io::Result<String> {
    let mut key = key.clone();
    key.set_comment("");
    let text = key
        .to_openssh()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    Ok(format!("{} {}\n", host_entry_name(host, port), text.trim()))
}

/// One non-comment line of a known_hosts file.
struct Entry<'a> {
    marker: Option<&'a str>,
    hosts: &'a str,
    key_base64: &'a str,
}

impl<'a> Entry<'a> {
    fn parse(line: &'a str) -> Option<Entry<'a>> {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return None;
        }
        let mut fields = line.split_whitespace();
        let first = fields.next()?;
        let (marker, hosts) = if first.starts_with('@') {
            (Some(first), fields.next()?)
        } else {
            (None, first)
        };
        let _key_type = fields.next()?;
        let key_base64 = fields.next()?;
        Some(Entry {
            marker,
            hosts,
            key_base64,
        })
    }

    /// OpenSSH semantics: any negated pattern that matches excludes the
    /// host; otherwise one positive match is enough.
    fn matches_host(&self, name: &str) -> bool {
        if let Some(hashed) = self.hosts.strip_prefix("|1|") {
            return hashed_matches(hashed, name);
        }
        let mut matched = false;
        for pattern in self.hosts.split(',') {
            if let Some(negated) = pattern.strip_prefix('!') {
                if wildcard_matches(negated, name) {
                    return false;
                }
            } else if wildcard_matches(pattern, name) {
                matched = true;
            }
        }
        matched
    }
}

fn hashed_matches(salt_and_hash: &str, name: &str) -> bool {
    let Some((salt, hash)) = salt_and_hash.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(name.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

/// `*` and `?` globbing, case-insensitive like OpenSSH host patterns.
fn wildcard_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let n: Vec<char> = name.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA6rWI3G1sz07DnfFlrouTcysQlj2P+jpNSOEWD9OJ3X";

    fn key(text: &str) -> PublicKey {
        parse_public_key(text).unwrap()
    }

    #[test]
    fn finds_known_and_changed_with_real_line_numbers() {
        let text = format!("# comment\n\nother {KEY_B}\n[vm1]:2222 {KEY_A}\nvm1 {KEY_B}\n");
        assert_eq!(
            check_in_text(&text, "[vm1]:2222", &key(KEY_A)),
            HostKeyVerdict::Known
        );
        assert_eq!(
            check_in_text(&text, "vm1", &key(KEY_A)),
            HostKeyVerdict::Changed { line: 5 }
        );
        assert_eq!(
            check_in_text(&text, "vm2", &key(KEY_A)),
            HostKeyVerdict::Unknown
        );
    }

    #[test]
    fn patterns_negation_and_hashes() {
        assert!(wildcard_matches("10.0.*", "10.0.3.4"));
        assert!(wildcard_matches("vm?", "VM1"));
        assert!(!wildcard_matches("vm?", "vm12"));
        let text = format!("*.lab,!bad.lab {KEY_A}\n");
        assert_eq!(
            check_in_text(&text, "a.lab", &key(KEY_A)),
            HostKeyVerdict::Known
        );
        assert_eq!(
            check_in_text(&text, "bad.lab", &key(KEY_A)),
            HostKeyVerdict::Unknown
        );
        // Hash of "localhost" with this salt, as written by `ssh-keygen -H`.
        let salt = BASE64.encode(b"0123456789abcdefghij");
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(b"0123456789abcdefghij").unwrap();
        mac.update(b"localhost");
        let hash = BASE64.encode(&mac.finalize().into_bytes());
        let text = format!("|1|{salt}|{hash} {KEY_A}\n");
        assert_eq!(
            check_in_text(&text, "localhost", &key(KEY_A)),
            HostKeyVerdict::Known
        );
    }

    #[test]
    fn learn_then_pin_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/known_hosts");
        learn_host_key(&path, "vm1", 22, &key(KEY_A)).unwrap();
        learn_host_key(&path, "vm2", 2200, &key(KEY_A)).unwrap();
        assert_eq!(
            check_host_key(&path, "vm2", 2200, &key(KEY_A)).unwrap(),
            HostKeyVerdict::Known
        );
        pin_host_key(&path, "vm1", 22, &key(KEY_B)).unwrap();
        assert_eq!(
            check_host_key(&path, "vm1", 22, &key(KEY_B)).unwrap(),
            HostKeyVerdict::Known
        );
        assert_eq!(
            check_host_key(&path, "vm1", 22, &key(KEY_A)).unwrap(),
            HostKeyVerdict::Changed { line: 2 }
        );
        assert_eq!(
            check_host_key(&path, "vm2", 2200, &key(KEY_A)).unwrap(),
            HostKeyVerdict::Known
        );
    }
}
