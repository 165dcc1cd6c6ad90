//! A lab's state directory on the workstation: what `up` learned and what
//! other tools need to reach the lab.
//!
//! ```text
//! <state>/inventory.yaml   VMs with roles, addresses, disks (kubelab's own)
//! <state>/inventory.ini    the same for Ansible, groups from VM roles
//! <state>/ssh_config       `ssh -F <state>/ssh_config node-1` works, through the virthost
//! <state>/known_hosts      VM host keys, learned when kubelab created them
//! <state>/id_ed25519       the lab's VM login key (secret, mode 0600)
//! <state>/runs/*.log       one log per run
//! <state>/forensics/*.tar.gz  what `collect` gathered (after a failed run too)
//! ```
//!
//! The default location is `$XDG_STATE_HOME/kubelab/<lab>` (else
//! `~/.local/state/kubelab/<lab>`); `KUBELAB_STATE_DIR` overrides the parent.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lab::Lab;
use crate::lab::model::Connection;

/// Where a lab's state lives.
pub fn state_dir(lab_name: &str) -> PathBuf {
    let parent = if let Some(d) = std::env::var_os("KUBELAB_STATE_DIR") {
        PathBuf::from(d)
    } else if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        PathBuf::from(d).join("kubelab")
    } else if let Some(h) = std::env::var_os("HOME") {
        PathBuf::from(h).join(".local/state/kubelab")
    } else {
        PathBuf::from(".kubelab")
    };
    parent.join(lab_name)
}

/// A new run's log: `<state>/runs/<UTC time>-<command>.log`, for example
/// `runs/20261202T162035Z-up.log` — readable, and sorted by time when listed.
/// A second run of the same command in the same second gets `…-up-2.log`:
/// a log (and the events and report beside it) is one run's.
pub fn run_log(lab_name: &str, command: &str) -> PathBuf {
    stamped(&state_dir(lab_name).join("runs"), command, "log")
}

/// A new forensics bundle of a run of `command`:
/// `<state>/forensics/<UTC time>-<command>.tar.gz` (unique as [`run_log`]).
pub fn forensics_bundle(lab_name: &str, command: &str) -> PathBuf {
    stamped(&state_dir(lab_name).join("forensics"), command, "tar.gz")
}

/// `<dir>/<UTC time>-<what>.<ext>`, or with `-2`, `-3`, … when taken.
fn stamped(dir: &Path, what: &str, ext: &str) -> PathBuf {
    let stamp = utc_stamp(std::time::SystemTime::now());
    let first = dir.join(format!("{stamp}-{what}.{ext}"));
    if !first.exists() {
        return first;
    }
    (2u32..)
        .map(|n| dir.join(format!("{stamp}-{what}-{n}.{ext}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// A time as `YYYYMMDDTHHMMSSZ` (ISO 8601 basic format, UTC).
pub fn utc_stamp(time: std::time::SystemTime) -> String {
    utc_stamp_secs(unix_secs(time))
}

/// Seconds since the Unix epoch (0 before it).
pub fn unix_secs(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Now, in seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    unix_secs(std::time::SystemTime::now())
}

/// [`utc_stamp`] of a time in seconds since the Unix epoch.
pub fn utc_stamp_secs(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian calendar),
    // counted in 400-year eras that start on March 1st so that the leap day
    // ends each year.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}

/// A [`utc_stamp`] back to seconds since the Unix epoch; `None` for
/// anything else (a hand-edited metadata attribute).
pub fn parse_utc_stamp(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, m, s) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || h > 23
        || m > 59
        || s > 60
    {
        return None;
    }
    // the inverse of utc_stamp's civil date: days since 1970-01-01
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y % 400;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3_600 + m * 60 + s)
}

/// What `up` knows about one VM after creating it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct VmRecord {
    pub name: String,
    pub roles: Vec<String>,
    /// The address kubelab connects to (first NIC's IPv4, else IPv6).
    pub address: String,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    pub macs: Vec<String>,
    /// Guest block devices: vda, vdb, …
    pub disks: Vec<String>,
    /// The VM's SSH host key (`ssh-ed25519 AAAA…`), as generated by kubelab.
    pub host_key: String,
}

/// The lab's inventory as kubelab writes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Inventory {
    pub lab: String,
    pub user: String,
    /// `local`, or `user@address:port` of the virthost.
    pub virthost: String,
    pub vms: Vec<VmRecord>,
}

/// The name the virthost goes by in `ssh_config`.
pub fn virthost_alias(lab: &Lab) -> String {
    format!("kl-{}-virthost", lab.name)
}

/// `ssh_config` for reaching every VM by name, through the virthost when it
/// is remote. Quoting: every value here was validated (names are DNS-1123
/// labels, addresses parsed), and paths are quoted.
pub fn ssh_config(lab: &Lab, inv: &Inventory, state: &Path) -> String {
    let mut out = String::new();
    let key = state.join("id_ed25519");
    let known = state.join("known_hosts");
    let _ = writeln!(
        out,
        "# Written by kubelab for lab `{}`; use: ssh -F {} <vm>",
        lab.name,
        quote_path(&state.join("ssh_config"))
    );
    let jump = match &lab.virthost.connection {
        Connection::Local => None,
        Connection::Ssh(h) => {
            let alias = virthost_alias(lab);
            let _ = writeln!(out, "\nHost {alias}");
            let _ = writeln!(out, "  HostName {}", h.address);
            let _ = writeln!(out, "  Port {}", h.port);
            let _ = writeln!(out, "  User {}", h.user);
            for f in &h.identity_files {
                let _ = writeln!(out, "  IdentityFile {}", quote_path(f));
            }
            let _ = writeln!(out, "  UserKnownHostsFile {}", quote_path(&h.known_hosts));
            if let Some(j) = &h.jump {
                let _ = writeln!(out, "  ProxyJump {}@{}:{}", j.user, j.address, j.port);
            }
            Some(alias)
        }
    };
    for vm in &inv.vms {
        let _ = writeln!(out, "\nHost {} {}", vm.name, vm.address);
        let _ = writeln!(out, "  HostName {}", vm.address);
        let _ = writeln!(out, "  User {}", inv.user);
        let _ = writeln!(out, "  IdentityFile {}", quote_path(&key));
        let _ = writeln!(out, "  IdentitiesOnly yes");
        let _ = writeln!(out, "  UserKnownHostsFile {}", quote_path(&known));
        let _ = writeln!(out, "  StrictHostKeyChecking yes");
        let _ = writeln!(out, "  HostKeyAlias {}", vm.name);
        if let Some(alias) = &jump {
            let _ = writeln!(out, "  ProxyJump {alias}");
        }
    }
    out
}

/// `known_hosts` lines for the VMs' keys (by name, used through HostKeyAlias,
/// and by address).
pub fn known_hosts(inv: &Inventory) -> String {
    let mut out = String::new();
    for vm in &inv.vms {
        let _ = writeln!(out, "{} {}", vm.name, vm.host_key);
        let _ = writeln!(out, "{} {}", vm.address, vm.host_key);
    }
    out
}

/// Ansible INI inventory: one group per role, `all` with every VM.
pub fn ansible_ini(lab: &Lab, inv: &Inventory, state: &Path) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Written by kubelab for lab `{}`", lab.name);
    let _ = writeln!(out, "[all]");
    for vm in &inv.vms {
        let _ = writeln!(out, "{} ansible_host={}", vm.name, vm.address);
    }
    for group in lab.groups() {
        // Ansible group names may not contain `-`.
        let _ = writeln!(out, "\n[{}]", group.replace('-', "_"));
        for vm in inv.vms.iter().filter(|v| v.roles.contains(&group)) {
            let _ = writeln!(out, "{}", vm.name);
        }
    }
    let _ = writeln!(out, "\n[all:vars]");
    let _ = writeln!(out, "ansible_user={}", inv.user);
    let _ = writeln!(out, "ansible_become=true");
    let _ = writeln!(
        out,
        "ansible_ssh_private_key_file={}",
        state.join("id_ed25519").display()
    );
    let _ = writeln!(
        out,
        "ansible_ssh_common_args='-F {}'",
        state.join("ssh_config").display()
    );
    out
}

/// Quote a path for ssh_config (double quotes when it has spaces).
fn quote_path(p: &Path) -> String {
    let s = p.display().to_string();
    if s.contains(char::is_whitespace) {
        format!("\"{}\"", s.replace('"', "\\\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_read_back() {
        for secs in [
            0,
            951_782_400,
            1_764_755_100,
            4_102_444_799,
            253_402_300_799,
        ] {
            let stamp = utc_stamp_secs(secs);
            assert_eq!(parse_utc_stamp(&stamp), Some(secs), "{stamp}");
        }
        assert_eq!(utc_stamp_secs(951_782_400), "20000229T000000Z");
        for bad in [
            "",
            "20261203T094500",
            "2026-12-03T09:45:00Z",
            "20261303T094500Z",
            "2026120xT094500Z",
            "19691231T235959Z",
        ] {
            assert_eq!(parse_utc_stamp(bad), None, "{bad}");
        }
    }
    use crate::lab::{LoadOptions, load_str};

    #[test]
    fn utc_stamps_are_civil_dates() {
        let at = |secs| utc_stamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        assert_eq!(at(0), "19700101T000000Z");
        // A leap day, the day after, and the last second of a century year
        // that is no leap year (1900 is before the epoch; 2100 is not).
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(951_868_800), "20000301T000000Z");
        assert_eq!(at(4_107_542_399), "21000228T235959Z");
        assert_eq!(at(4_107_542_400), "21000301T000000Z");
        assert_eq!(at(1_796_229_635), "20261202T164035Z");
    }

    fn lab(virthost: &str) -> Lab {
        let text = format!(
            "name: t\nvirthost: {virthost}\nimage: {{build: debian-12}}\nnetworks:\n  - {{name: lan, ipv4: 192.168.151.0/24}}\nvms:\n  - {{name: cp, roles: [control-plane]}}\n  - {{name: \"w-{{1..2}}\", roles: [worker, storage]}}\n"
        );
        load_str(Path::new("t.yaml"), &text, &LoadOptions::default())
            .map(|(l, _)| l)
            .unwrap_or_else(|d| panic!("{}", d.render(false)))
    }

    fn inventory(l: &Lab) -> Inventory {
        Inventory {
            lab: l.name.clone(),
            user: "kubelab".into(),
            virthost: "local".into(),
            vms: l
                .vms
                .iter()
                .enumerate()
                .map(|(i, v)| VmRecord {
                    name: v.name.clone(),
                    roles: v.roles.clone(),
                    address: format!("192.168.151.{}", 200 + i),
                    ipv4: vec![Ipv4Addr::new(192, 168, 151, 200 + i as u8)],
                    ipv6: vec![],
                    macs: v.nics.iter().map(|n| n.mac.clone()).collect(),
                    disks: vec!["vda".into()],
                    host_key: format!("ssh-ed25519 AAAAkey{i}"),
                })
                .collect(),
        }
    }

    #[test]
    fn ini_groups_follow_roles() {
        let l = lab("local");
        let ini = ansible_ini(&l, &inventory(&l), Path::new("/s"));
        assert!(ini.contains(
            "[all]\ncp ansible_host=192.168.151.200\nw-1 ansible_host=192.168.151.201\n"
        ));
        assert!(ini.contains("[control_plane]\ncp\n"));
        assert!(ini.contains("[worker]\nw-1\nw-2\n"));
        assert!(ini.contains("[storage]\nw-1\nw-2\n"));
        assert!(ini.contains("ansible_ssh_common_args='-F /s/ssh_config'"));
    }

    #[test]
    fn ssh_config_jumps_only_through_remote_virthosts() {
        let l = lab("local");
        let cfg = ssh_config(&l, &inventory(&l), Path::new("/s"));
        assert!(
            cfg.contains("Host cp 192.168.151.200\n  HostName 192.168.151.200\n  User kubelab\n")
        );
        assert!(!cfg.contains("ProxyJump"));

        let l = lab("{address: 192.0.2.7, port: 2222, user: ops, identity_file: /k/id}");
        let cfg = ssh_config(&l, &inventory(&l), Path::new("/s"));
        assert!(cfg.contains("Host kl-t-virthost\n  HostName 192.0.2.7\n  Port 2222\n  User ops\n  IdentityFile /k/id\n"));
        assert!(cfg.contains("  ProxyJump kl-t-virthost\n"));
        assert_eq!(cfg.matches("ProxyJump kl-t-virthost").count(), 3);
    }

    #[test]
    fn known_hosts_by_name_and_address() {
        let l = lab("local");
        let kh = known_hosts(&inventory(&l));
        assert!(kh.contains("cp ssh-ed25519 AAAAkey0\n192.168.151.200 ssh-ed25519 AAAAkey0\n"));
    }
}
