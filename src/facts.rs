//! Facts: what a host is (distribution, package manager, architecture,
//! kernel, memory, init system, addresses, whether we are root), gathered
//! once per host in one command that prints `key=value` lines.

use serde::Serialize;

use crate::transport::{Command, Exec, Transport, TransportError};

/// The fact-gathering script: POSIX sh, read-only, one round trip.
pub const GATHER_SCRIPT: &str = r#"
if [ -r /etc/os-release ]; then . /etc/os-release; fi
echo "distro_id=${ID:-unknown}"
echo "distro_version=${VERSION_ID:-}"
echo "distro_like=${ID_LIKE:-}"
echo "distro_codename=${VERSION_CODENAME:-}"
echo "arch=$(uname -m)"
echo "kernel=$(cat /proc/sys/kernel/osrelease 2>/dev/null || uname -r)"
echo "hostname=$(cat /proc/sys/kernel/hostname 2>/dev/null || hostname)"
while read -r k v _; do
  if [ "$k" = "MemTotal:" ]; then echo "memory_kib=$v"; fi
done < /proc/meminfo
if [ -d /run/systemd/system ]; then echo "init=systemd"; else echo "init=other"; fi
if command -v apt-get >/dev/null 2>&1; then echo "package_manager=apt"
elif command -v dnf >/dev/null 2>&1; then echo "package_manager=dnf"
else echo "package_manager=none"; fi
echo "uid=$(id -u)"
if command -v ip >/dev/null 2>&1; then
  ip -o addr show 2>/dev/null | while read -r _ dev fam addr _; do echo "addr=$dev $fam $addr"; done
fi
"#;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    Apt,
    Dnf,
    #[default]
    None,
}

/// One address of one interface (`ip -o addr`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Address {
    pub interface: String,
    /// `inet` or `inet6`.
    pub family: String,
    /// With prefix length: `10.0.0.5/24`.
    pub cidr: String,
    /// Without it: `10.0.0.5`.
    pub address: String,
}

/// Facts of one host, exposed to templates as `facts`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Facts {
    pub distro_id: String,
    pub distro_version: String,
    pub distro_like: String,
    /// `VERSION_CODENAME` (`bookworm`), empty where there is none.
    pub distro_codename: String,
    /// `debian` or `redhat`, from ID and ID_LIKE.
    pub family: String,
    pub package_manager: PackageManager,
    pub arch: String,
    pub kernel: String,
    pub hostname: String,
    pub memory_mib: u64,
    pub systemd: bool,
    pub is_root: bool,
    pub addresses: Vec<Address>,
}

impl Facts {
    /// Parse the script's output; unknown lines are ignored.
    pub fn parse(text: &str) -> Facts {
        let mut f = Facts::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key {
                "distro_id" => f.distro_id = value.to_string(),
                "distro_version" => f.distro_version = value.to_string(),
                "distro_like" => f.distro_like = value.to_string(),
                "distro_codename" => f.distro_codename = value.to_string(),
                "arch" => f.arch = value.to_string(),
                "kernel" => f.kernel = value.to_string(),
                "hostname" => f.hostname = value.to_string(),
                "memory_kib" => f.memory_mib = value.parse::<u64>().unwrap_or(0) / 1024,
                "init" => f.systemd = value == "systemd",
                "uid" => f.is_root = value == "0",
                "package_manager" => {
                    f.package_manager = match value {
                        "apt" => PackageManager::Apt,
                        "dnf" => PackageManager::Dnf,
                        _ => PackageManager::None,
                    }
                }
                "addr" => {
                    let mut parts = value.split_whitespace();
                    if let (Some(dev), Some(fam), Some(cidr)) =
                        (parts.next(), parts.next(), parts.next())
                    {
                        f.addresses.push(Address {
                            interface: dev.to_string(),
                            family: fam.to_string(),
                            cidr: cidr.to_string(),
                            address: cidr.split('/').next().unwrap_or(cidr).to_string(),
                        });
                    }
                }
                _ => {}
            }
        }
        let words = format!("{} {}", f.distro_id, f.distro_like);
        f.family = if words.split_whitespace().any(|w| DEBIAN_LIKE.contains(&w)) {
            "debian".into()
        } else if words.split_whitespace().any(|w| REDHAT_LIKE.contains(&w)) {
            "redhat".into()
        } else {
            f.distro_id.clone()
        };
        f
    }
}

/// `ID`/`ID_LIKE` words of os-release that make the family `debian`
/// (looked for first) and `redhat`.
pub const DEBIAN_LIKE: &[&str] = &["debian", "ubuntu"];
pub const REDHAT_LIKE: &[&str] = &["rhel", "fedora", "centos", "rocky", "almalinux"];

/// Gather facts in one command.
pub async fn gather(transport: &dyn Transport) -> Result<Facts, TransportError> {
    let out = transport
        .exec(Exec::new(Command::script(GATHER_SCRIPT)))
        .await?;
    if !out.status.success() {
        return Err(TransportError::Io {
            host: transport.host().to_string(),
            what: "gathering facts".into(),
            reason: format!("{}: {}", out.status, out.stderr_str().trim()),
        });
    }
    Ok(Facts::parse(&out.stdout_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let f = Facts::parse(
            "distro_id=rocky\ndistro_like=rhel centos fedora\narch=x86_64\nmemory_kib=2048000\n\
             init=systemd\nuid=0\npackage_manager=dnf\naddr=eth0 inet 10.0.0.5/24\n\
             addr=eth0 inet6 fd00::5/64\nnonsense\n",
        );
        assert_eq!(f.family, "redhat");
        assert_eq!(f.package_manager, PackageManager::Dnf);
        assert_eq!(f.memory_mib, 2000);
        assert!(f.systemd && f.is_root);
        assert_eq!(f.addresses.len(), 2);
        assert_eq!(f.addresses[1].address, "fd00::5");
    }

    #[tokio::test]
    async fn gathers_here_in_one_command() {
        let t = crate::transport::local::LocalTransport::new("here");
        let f = gather(&t).await.unwrap();
        assert!(!f.kernel.is_empty());
        assert!(!f.arch.is_empty());
        assert!(f.memory_mib > 0);
    }
}
