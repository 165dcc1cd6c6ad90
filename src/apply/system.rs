//! `sysctl`, `modprobe`, `package`, `service`.

use super::{Outcome, Target, assign, run_converge};
use crate::facts::PackageManager;
use crate::playbook::modules::{ModprobeArgs, PackageArgs, ServiceArgs, ServiceState, SysctlArgs};
use crate::transport::TransportError;
use crate::values::Presence;

fn safe_name(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b) || extra.contains(&b))
}

/// Ensure `line` is in file `$pf` (a `key = value` file: other lines with
/// the same key are dropped).
const PERSIST_KEY: &str = "if ! grep -qxF -- \"$line\" \"$pf\" 2>/dev/null; then\n  kl_changed=1\n  if [ \"$kl_check\" = 0 ]; then\n    mkdir -p -- \"$(dirname -- \"$pf\")\" || exit 1\n    { if [ -f \"$pf\" ]; then awk -v k=\"$n\" '{ split($0, a, \"=\"); key = a[1]; gsub(/[ \\t]/, \"\", key); if (key != k) print }' \"$pf\"; fi; printf '%s\\n' \"$line\"; } > \"$pf.kl-new\" && mv -f -- \"$pf.kl-new\" \"$pf\" || exit 1\n  fi\nfi\n";

pub async fn sysctl(a: &SysctlArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    let name = a.name.as_str();
    if !safe_name(name, b"/") || name.contains("..") {
        return Ok(Outcome::failed(format!(
            "sysctl: `{name}` is not a sysctl name"
        )));
    }
    let mut s = assign("n", name);
    s.push_str(&assign("v", a.value.as_str()));
    s.push_str(&assign(
        "f",
        &format!("/proc/sys/{}", name.replace('.', "/")),
    ));
    s.push_str(
        "if [ ! -e \"$f\" ]; then echo \"no sysctl $n on this host\" >&2; exit 1; fi\n\
         cur=$(cat -- \"$f\"); cur=$(echo $cur); want=$(echo $v)\n\
         if [ \"$cur\" != \"$want\" ]; then act sh -c 'printf \"%s\\n\" \"$1\" > \"$2\"' sh \"$v\" \"$f\"; fi\n",
    );
    if let Some(p) = &a.persist {
        s.push_str(&assign("pf", p.as_str()));
        s.push_str(&assign("line", &format!("{name} = {}", a.value)));
        s.push_str(PERSIST_KEY);
    }
    run_converge(target, &s).await
}

pub async fn modprobe(a: &ModprobeArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    let name = a.name.as_str();
    if !safe_name(name, b"") {
        return Ok(Outcome::failed(format!(
            "modprobe: `{name}` is not a module name"
        )));
    }
    let mut s = assign("n", name);
    s.push_str(&assign(
        "sysdir",
        &format!("/sys/module/{}", name.replace('-', "_")),
    ));
    s.push_str("if [ ! -d \"$sysdir\" ]; then act modprobe -- \"$n\"; fi\n");
    if let Some(p) = &a.persist {
        s.push_str(&assign("pf", p.as_str()));
        s.push_str("if ! grep -qxF -- \"$n\" \"$pf\" 2>/dev/null; then act append_line \"$n\" \"$pf\"; fi\n");
    }
    run_converge(target, &s).await
}

pub async fn package(a: &PackageArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    let mut names = Vec::new();
    for n in &a.names {
        if !safe_name(n.as_str(), b"+:=~*") {
            return Ok(Outcome::failed(format!(
                "package: `{n}` is not a package name"
            )));
        }
        names.push(crate::transport::quote(n.as_str()));
    }
    if names.is_empty() {
        return Ok(Outcome::ok());
    }
    let (installed, install, remove) = match target.facts.package_manager {
        PackageManager::Apt => (
            "dpkg-query -W -f='${Status}' -- \"$p\" 2>/dev/null | grep -q 'ok installed'",
            "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q",
            "env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q",
        ),
        PackageManager::Dnf => (
            "rpm -q --quiet -- \"$p\"",
            "dnf install -y -q",
            "dnf remove -y -q",
        ),
        PackageManager::None => {
            return Ok(Outcome::failed(
                "package: this host has neither apt-get nor dnf",
            ));
        }
    };
    let (select, action) = match a.state {
        Presence::Present => ("if ! (", install),
        Presence::Absent => ("if (", remove),
    };
    // A fresh cloud image may have no package lists at all: fetch them
    // before the first install (only then).
    let refresh = match (target.facts.package_manager, a.state) {
        (PackageManager::Apt, Presence::Present) => {
            "if ! ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1; then act env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2; fi; "
        }
        _ => "",
    };
    let s = format!(
        "todo=''\nfor p in {}; do {select}{installed}); then todo=\"$todo $p\"; fi; done\n\
         if [ -n \"$todo\" ]; then echo \"packages:$todo\"; {refresh}act {action} $todo >&2; fi\n",
        names.join(" ")
    );
    let mut o = run_converge(target, &s).await?;
    if let Some(l) = o.stdout.lines().find(|l| l.starts_with("packages:")) {
        o.msg = format!(
            "{} {}",
            match (a.state, target.check) {
                (Presence::Present, true) => "would install",
                (Presence::Present, false) => "installed",
                (Presence::Absent, true) => "would remove",
                (Presence::Absent, false) => "removed",
            },
            l.trim_start_matches("packages:").trim()
        );
    }
    Ok(o)
}

pub async fn service(a: &ServiceArgs, target: &Target<'_>) -> Result<Outcome, TransportError> {
    let optional = match a.optional.map(|o| o.get()).transpose() {
        Ok(o) => o.unwrap_or(false),
        Err(e) => return Ok(Outcome::failed(e)),
    };
    if !target.facts.systemd {
        return Ok(if optional {
            Outcome::skipped(format!("{}: this host does not run systemd", a.name))
        } else {
            Outcome::failed(format!(
                "service {}: this host does not run systemd, so kubelab cannot manage services on it \
                 (set optional: true to skip this step on such hosts)",
                a.name
            ))
        });
    }
    let name = a.name.as_str();
    if !safe_name(name, b"@:") {
        return Ok(Outcome::failed(format!(
            "service: `{name}` is not a unit name"
        )));
    }
    let mut s = assign("u", name);
    match a.state {
        Some(ServiceState::Started) => {
            s.push_str("systemctl is-active --quiet -- \"$u\" || act systemctl start -- \"$u\"\n")
        }
        Some(ServiceState::Stopped) => s.push_str(
            "if systemctl is-active --quiet -- \"$u\"; then act systemctl stop -- \"$u\"; fi\n",
        ),
        Some(ServiceState::Restarted) => s.push_str("act systemctl restart -- \"$u\"\n"),
        None => {}
    }
    match a.enabled.map(|e| e.get()).transpose() {
        Ok(Some(true)) => s.push_str(
            "case \"$(systemctl is-enabled -- \"$u\" 2>/dev/null)\" in enabled|static|alias|indirect|generated) ;; *) act systemctl enable -- \"$u\" ;; esac\n",
        ),
        Ok(Some(false)) => s.push_str(
            "if [ \"$(systemctl is-enabled -- \"$u\" 2>/dev/null)\" = enabled ]; then act systemctl disable -- \"$u\"; fi\n",
        ),
        Ok(None) => {}
        Err(e) => return Ok(Outcome::failed(e)),
    }
    run_converge(target, &s).await
}
