//! A lab's forensics bundle (`kubelab collect`, and after a failed `up`,
//! `verify` or `chaos`): one `.tar.gz` with what someone triaging a failed
//! nightly run needs, gathered even when the lab is broken.
//!
//! ```text
//! <lab>-<time>/
//!   MISSING.txt            every source not gathered, and why (or "nothing")
//!   lab/<file>, lab/resolved.json   the lab file, and the lab as kubelab loaded it
//!   kubelab/runs/…         the lab's newest run logs
//!   virthost/…             addresses, routes, links, sockets, dmesg, libvirt's view
//!   networks/<net>.xml, <net>.leases.txt
//!   vms/<vm>/domain.xml, console.log, qemu.log        (from the virthost)
//!   vms/<vm>/cloud-init*.log, journal.txt, ip-*.txt, … (over SSH)
//!   vms/<vm>/kubelet.journal.txt, runtime.journal.txt, static-pods.txt
//!   kubernetes/nodes.txt, pods.txt, events.txt, describe-*.txt
//!   scenarios/<name>-verify.log   (given by the command layer)
//! ```
//!
//! Every source has a timeout and a size cap (a log's tail is kept); the
//! bundle as a whole is bounded by `max_size`, the most telling sources
//! first (consoles and definitions before journals). A VM that never
//! booted still gives its console and definition; a VM without SSH its
//! virthost side; a virthost whose libvirtd died its shell side. Every
//! file goes through the run's [`Redactor`] (the logs' redactor, with the
//! lab's login key, secret variables and the nodes' join secrets added).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::lab::Lab;
use crate::lab::model::Runtime;
use crate::provision::access::VirthostAccess;
use crate::redact::Redactor;
use crate::stage::LabHosts;
use crate::transport::{Command, Exec, Transport, TransportError, quote};
use crate::virthost::spec::LabName;

/// `--max-size` unless given: the bundle's contents, uncompressed.
pub const DEFAULT_MAX_SIZE: u64 = 64 << 20;

/// No single source gives more than this (the tail of a log).
const SOURCE_CAP: u64 = 8 << 20;

/// How many of the lab's newest run logs go in.
const RUN_LOGS: usize = 8;

/// What to gather and how long to try.
#[derive(Clone, Debug)]
pub struct Options {
    /// The bundle's contents at most (uncompressed bytes).
    pub max_size: u64,
    /// Each source's time limit.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_size: DEFAULT_MAX_SIZE,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A file of the bundle.
#[derive(Clone, Debug, Serialize)]
pub struct FileInfo {
    /// Path inside the bundle's top directory.
    pub path: String,
    pub bytes: u64,
    /// Cut to its tail by the bundle's size bound.
    pub cut: bool,
}

/// A source the bundle does not have, and why.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Missing {
    pub what: String,
    pub why: String,
}

/// What [`collect`] wrote.
#[derive(Clone, Debug, Serialize)]
pub struct Collected {
    pub lab: String,
    pub path: PathBuf,
    pub files: Vec<FileInfo>,
    pub missing: Vec<Missing>,
    /// The contents' size, uncompressed.
    pub bytes: u64,
    pub secs: f64,
}

/// A piece of evidence gathered by the command layer (a scenario's
/// verify run): it goes in as it is, redacted.
#[derive(Clone, Debug)]
pub struct Evidence {
    pub path: String,
    pub data: Vec<u8>,
}

/// How telling a source is: the bundle's size bound drops the last first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Weight {
    Lab,
    Definition,
    RunLog,
    State,
    Cluster,
    Journal,
}

struct Found {
    weight: Weight,
    path: String,
    data: Vec<u8>,
}

/// What the sources gave: files, and what they could not give.
#[derive(Default)]
struct Gathered {
    found: Vec<Found>,
    missing: Vec<Missing>,
}

impl Gathered {
    fn file(&mut self, weight: Weight, path: impl Into<String>, data: Vec<u8>) {
        self.found.push(Found {
            weight,
            path: path.into(),
            data,
        });
    }
    fn missing(&mut self, what: impl Into<String>, why: impl Into<String>) {
        self.missing.push(Missing {
            what: what.into(),
            why: why.into(),
        });
    }
    fn merge(&mut self, other: Gathered) {
        self.found.extend(other.found);
        self.missing.extend(other.missing);
    }
}

/// A command whose output is one file of the bundle.
struct Probe {
    file: String,
    script: String,
    weight: Weight,
}

fn probe(weight: Weight, file: impl Into<String>, script: impl Into<String>) -> Probe {
    Probe {
        file: file.into(),
        script: script.into(),
        weight,
    }
}

/// The tail of a file, at most [`SOURCE_CAP`]; a file that is not there
/// fails the probe (`tail` says so).
fn tail_of(path: &str) -> String {
    format!("tail -c {SOURCE_CAP} {}", quote(path))
}

/// What every host tells about its network and its kernel.
fn host_probes(dir: &str) -> Vec<Probe> {
    vec![
        probe(Weight::State, format!("{dir}/ip-addr.txt"), "ip -d addr"),
        probe(
            Weight::State,
            format!("{dir}/ip-route.txt"),
            "ip -d route show table all; ip -d -6 route show table all",
        ),
        probe(Weight::State, format!("{dir}/ip-link.txt"), "ip -d link"),
        probe(Weight::State, format!("{dir}/ss-tlnp.txt"), "ss -tlnp"),
        probe(
            Weight::Journal,
            format!("{dir}/dmesg.txt"),
            format!("dmesg | tail -c {SOURCE_CAP}"),
        ),
    ]
}

/// libvirt's client on the virthost, bounded: a hung daemon is a timeout,
/// a dead one an error, not a wait.
const VIRSH: &str = "virsh -q -c qemu:///system";

/// The virthost side: its own state, libvirt's view of the lab, each
/// domain's definition, console and QEMU log, each network's definition
/// and leases.
fn virthost_probes(lab: &Lab, name: &LabName) -> Vec<Probe> {
    let mut p = host_probes("virthost");
    p.push(probe(
        Weight::Definition,
        "virthost/libvirt.txt",
        format!(
            "pgrep -a 'libvirtd|virtqemud|virtlogd' || echo 'no libvirt daemon runs'; {VIRSH} version && {VIRSH} list --all && {VIRSH} net-list --all && {VIRSH} pool-list --all"
        ),
    ));
    let pool = crate::provision::desired::pool_dir(lab);
    for vm in &lab.vms {
        let dom = name.object_name(&vm.name);
        let dir = format!("vms/{}", vm.name);
        p.push(probe(
            Weight::Definition,
            format!("{dir}/domain.xml"),
            format!("{VIRSH} dumpxml {}", quote(&dom)),
        ));
        p.push(probe(
            Weight::Definition,
            format!("{dir}/console.log"),
            tail_of(
                &pool
                    .join(format!("{dom}.console.log"))
                    .display()
                    .to_string(),
            ),
        ));
        p.push(probe(
            Weight::Definition,
            format!("{dir}/qemu.log"),
            tail_of(&format!("/var/log/libvirt/qemu/{dom}.log")),
        ));
    }
    for net in &lab.networks {
        let full = name.object_name(&net.name);
        p.push(probe(
            Weight::Definition,
            format!("networks/{}.xml", net.name),
            format!("{VIRSH} net-dumpxml {}", quote(&full)),
        ));
        if !matches!(net.kind, crate::lab::model::NetworkKind::Bridged { .. }) {
            p.push(probe(
                Weight::Definition,
                format!("networks/{}.leases.txt", net.name),
                format!("{VIRSH} net-dhcp-leases {}", quote(&full)),
            ));
        }
    }
    p
}

/// The VM side, over SSH: cloud-init, the boot's journal, the network,
/// and on a Kubernetes lab the kubelet's and the runtime's journals and
/// the static pod manifests.
fn vm_probes(lab: &Lab, vm: &str) -> Vec<Probe> {
    let dir = format!("vms/{vm}");
    let mut p = vec![
        probe(
            Weight::State,
            format!("{dir}/cloud-init-status.txt"),
            "cloud-init status --long; true",
        ),
        probe(
            Weight::State,
            format!("{dir}/cloud-init.log"),
            tail_of("/var/log/cloud-init.log"),
        ),
        probe(
            Weight::State,
            format!("{dir}/cloud-init-output.log"),
            tail_of("/var/log/cloud-init-output.log"),
        ),
        probe(
            Weight::Journal,
            format!("{dir}/journal.txt"),
            format!("journalctl -b --no-pager -o short-precise | tail -c {SOURCE_CAP}"),
        ),
        probe(
            Weight::State,
            format!("{dir}/systemctl-failed.txt"),
            "systemctl --failed --no-pager",
        ),
    ];
    p.extend(host_probes(&dir));
    if let Some(k) = &lab.kubernetes {
        let runtime = match k.runtime {
            Runtime::Crio => "crio",
            Runtime::Containerd => "containerd",
            Runtime::Docker => "docker cri-docker",
        };
        let units: String = runtime.split(' ').map(|u| format!(" -u {u}")).collect();
        p.push(probe(
            Weight::Cluster,
            format!("{dir}/kubelet.journal.txt"),
            format!("journalctl -b --no-pager -u kubelet | tail -c {SOURCE_CAP}"),
        ));
        p.push(probe(
            Weight::Cluster,
            format!("{dir}/runtime.journal.txt"),
            format!("journalctl -b --no-pager{units} | tail -c {SOURCE_CAP}"),
        ));
        p.push(probe(
            Weight::Cluster,
            format!("{dir}/static-pods.txt"),
            "for f in /etc/kubernetes/manifests/*; do [ -f \"$f\" ] || continue; echo \"# $f\"; cat \"$f\"; done",
        ));
    }
    p
}

/// The cluster as the first control plane's kubectl sees it.
fn cluster_probes() -> Vec<Probe> {
    const KUBECTL: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf --request-timeout 20s";
    [
        ("nodes.txt", "get nodes -o wide"),
        ("pods.txt", "get pods -A -o wide"),
        ("events.txt", "get events -A --sort-by=.lastTimestamp"),
        ("describe-nodes.txt", "describe nodes"),
        ("describe-pods.txt", "describe pods -A"),
    ]
    .into_iter()
    .map(|(file, args)| {
        probe(
            Weight::Cluster,
            format!("kubernetes/{file}"),
            format!("{KUBECTL} {args} | tail -c {SOURCE_CAP}"),
        )
    })
    .collect()
}

/// The join secrets kubelab wrote on a node (kubeadm's configuration, the
/// kubelet's bootstrap kubeconfig): read only to be redacted, one per line.
const JOIN_SECRETS: &str = "cat /etc/kubernetes/kubelab/*.yaml /etc/kubernetes/bootstrap-kubelet.conf 2>/dev/null | sed -n 's/^[[:space:]-]*\\(token\\|tlsBootstrapToken\\|certificateKey\\):[[:space:]]*\"\\{0,1\\}\\([^\"[:space:]]*\\)\"\\{0,1\\}[[:space:]]*$/\\2/p'; true";

/// Run one probe; its output, or why there is none. A probe that printed
/// something is kept even when it failed (`cloud-init status` of a
/// degraded boot); one that printed nothing gives its error.
async fn run_probe(t: &dyn Transport, p: &Probe, timeout: Duration) -> Result<Vec<u8>, ProbeError> {
    let out = t
        .exec(
            Exec::new(Command::script(p.script.clone()))
                .become_root(!t.is_root())
                .timeout(timeout),
        )
        .await
        .map_err(ProbeError::Transport)?;
    if !out.stdout.is_empty() {
        return Ok(out.stdout);
    }
    let err = out.stderr_str();
    let why = err.trim().lines().last().unwrap_or("").trim().to_string();
    Err(ProbeError::Failed(if why.is_empty() {
        format!("no output ({})", out.status)
    } else {
        format!("{why} ({})", out.status)
    }))
}

enum ProbeError {
    Transport(TransportError),
    Failed(String),
}

/// Run probes on one host in order (a host's sshd allows few sessions at
/// once); the first error that says the host cannot be reached ends the
/// host's list with one line for the rest.
async fn run_probes(
    t: &dyn Transport,
    host: &str,
    probes: Vec<Probe>,
    timeout: Duration,
) -> Gathered {
    let mut g = Gathered::default();
    let mut rest = probes.into_iter();
    for p in rest.by_ref() {
        match run_probe(t, &p, timeout).await {
            Ok(data) => g.file(p.weight, p.file, data),
            Err(ProbeError::Failed(why)) => g.missing(p.file, why),
            Err(ProbeError::Transport(e)) if e.is_unreachable() => {
                g.missing(p.file, e.to_string());
                break;
            }
            Err(ProbeError::Transport(e)) => g.missing(p.file, e.to_string()),
        }
    }
    for p in rest {
        g.missing(
            p.file,
            format!("not tried: {host} cannot be reached (see above)"),
        );
    }
    g
}

/// The connections a collection uses: the command's own when it has them
/// (one connection per host for the whole run), else its own.
pub enum Reach<'a> {
    Hosts(&'a LabHosts),
    Open,
}

enum Opened {
    Hosts(LabHosts),
    Virthost(VirthostAccess, String),
    Nothing(String),
}

/// Gather the lab's forensics into `out` (a `.tar.gz`, written whole or
/// not at all). Fails only when the bundle cannot be written: every
/// source that fails is a line of `MISSING.txt`.
pub async fn collect(
    lab: &Lab,
    reach: Reach<'_>,
    evidence: Vec<Evidence>,
    out: &Path,
    options: &Options,
) -> std::io::Result<Collected> {
    let t0 = Instant::now();
    let redactor = redactor(lab);
    let mut g = workstation(lab);
    let opened = match reach {
        Reach::Hosts(_) => None,
        Reach::Open => Some(open(lab).await),
    };
    let (hosts, access, no_vms) = match (&reach, &opened) {
        (Reach::Hosts(h), _) => (Some(*h), Some(h.access()), None),
        (_, Some(Opened::Hosts(h))) => (Some(h), Some(h.access()), None),
        (_, Some(Opened::Virthost(a, why))) => (None, Some(a), Some(why.clone())),
        (_, Some(Opened::Nothing(why))) => (None, None, Some(why.clone())),
        (Reach::Open, None) => (None, None, None),
    };
    let name = LabName::new(&lab.name).map_err(std::io::Error::other)?;
    let virthost = async {
        match access {
            Some(a) => {
                run_probes(
                    a.transport(),
                    "virthost",
                    virthost_probes(lab, &name),
                    options.timeout,
                )
                .await
            }
            None => {
                let mut g = Gathered::default();
                g.missing(
                    "virthost/ (and every VM's console, definition and QEMU log)",
                    no_vms.clone().unwrap_or_default(),
                );
                g
            }
        }
    };
    let vms = futures::future::join_all(lab.vms.iter().map(|vm| {
        let no_vms = &no_vms;
        let redactor = &redactor;
        async move {
            let Some(t) = hosts.and_then(|h| h.vm(&vm.name)) else {
                let mut g = Gathered::default();
                g.missing(
                    format!("vms/{}/ over SSH", vm.name),
                    no_vms
                        .clone()
                        .unwrap_or_else(|| "not in the lab's inventory".into()),
                );
                return g;
            };
            if lab.kubernetes.is_some()
                && let Ok(Ok(secrets)) = run_probe(
                    t.as_ref(),
                    &probe(Weight::Cluster, "", JOIN_SECRETS),
                    options.timeout,
                )
                .await
                .map(String::from_utf8)
            {
                secrets.lines().for_each(|s| redactor.add(s));
            }
            run_probes(
                t.as_ref(),
                &vm.name,
                vm_probes(lab, &vm.name),
                options.timeout,
            )
            .await
        }
    }));
    let cluster = async {
        let first = lab.group("control-plane").first().map(|v| v.name.clone());
        match (lab.kubernetes.as_ref(), first, hosts) {
            (Some(_), Some(cp), Some(h)) => match h.vm(&cp) {
                Some(t) => run_probes(t.as_ref(), &cp, cluster_probes(), options.timeout).await,
                None => Gathered::default(),
            },
            (Some(_), _, _) => {
                let mut g = Gathered::default();
                g.missing("kubernetes/", "no control-plane VM to ask");
                g
            }
            _ => Gathered::default(),
        }
    };
    let (v, per_vm, c) = futures::join!(virthost, vms, cluster);
    g.merge(v);
    per_vm.into_iter().for_each(|x| g.merge(x));
    g.merge(c);
    for e in evidence {
        g.file(Weight::RunLog, e.path, e.data);
    }
    if let Some(Opened::Hosts(h)) = opened {
        h.close().await;
    } else if let Some(Opened::Virthost(VirthostAccess::Remote(t), _)) = &opened {
        t.disconnect().await;
    }
    let written = write(&lab.name, g, &redactor, out, options)?;
    Ok(Collected {
        secs: t0.elapsed().as_secs_f64(),
        ..written
    })
}

async fn open(lab: &Lab) -> Opened {
    match LabHosts::connect(lab).await {
        Ok(h) => Opened::Hosts(h),
        Err(e) => {
            let why = e.to_string();
            match VirthostAccess::connect(lab).await {
                Ok(a) => Opened::Virthost(a, why),
                Err(e) => Opened::Nothing(format!("the virthost cannot be reached: {e}")),
            }
        }
    }
}

/// The lab's redactor: its secret variables, its VM login key; the nodes'
/// join secrets are added as they are read.
fn redactor(lab: &Lab) -> Redactor {
    let r = Redactor::new();
    r.add_secret_vars(&lab.vars);
    let state = crate::state::state_dir(&lab.name);
    if let Ok(key) = std::fs::read_to_string(crate::provision::access::login_key_path(&state)) {
        // the body, line by line: the BEGIN/END lines are no secret, and
        // a key block in a journal is redacted by its shape anyway
        key.lines()
            .filter(|l| !l.starts_with("-----"))
            .for_each(|l| r.add(l));
    }
    r
}

/// What the workstation has: the lab file, the lab as loaded, the newest
/// run logs (the failed run's first).
fn workstation(lab: &Lab) -> Gathered {
    let mut g = Gathered::default();
    let file_name = lab
        .file
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "lab.yaml".into());
    match std::fs::read(&lab.file) {
        Ok(data) => g.file(Weight::Lab, format!("lab/{file_name}"), data),
        Err(e) => g.missing(
            format!("lab/{file_name}"),
            format!("{}: {e}", lab.file.display()),
        ),
    }
    match serde_json::to_vec_pretty(lab) {
        Ok(data) => g.file(Weight::Lab, "lab/resolved.json", data),
        Err(e) => g.missing("lab/resolved.json", e.to_string()),
    }
    let runs = crate::state::state_dir(&lab.name).join("runs");
    let mut logs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&runs)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .collect();
    logs.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.cmp(&a.1)));
    for (_, p) in logs.into_iter().take(RUN_LOGS) {
        let name = p
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        match std::fs::read(&p) {
            Ok(data) => g.file(Weight::RunLog, format!("kubelab/runs/{name}"), tail(data)),
            Err(e) => g.missing(format!("kubelab/runs/{name}"), e.to_string()),
        }
    }
    g
}

/// The last [`SOURCE_CAP`] bytes.
fn tail(mut data: Vec<u8>) -> Vec<u8> {
    let cap = usize::try_from(SOURCE_CAP).unwrap_or(usize::MAX);
    if data.len() > cap {
        data.drain(..data.len() - cap);
    }
    data
}

/// Redact, bound and write the bundle: `out` appears whole or not at all.
fn write(
    lab: &str,
    g: Gathered,
    redactor: &Redactor,
    out: &Path,
    options: &Options,
) -> std::io::Result<Collected> {
    let Gathered {
        mut found,
        mut missing,
    } = g;
    found.sort_by_key(|f| f.weight);
    let mut left = options.max_size;
    let mut files: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for f in found {
        let text = String::from_utf8_lossy(&f.data);
        let mut data = redactor.redact(&text).into_owned().into_bytes();
        if left == 0 {
            missing.push(Missing {
                what: f.path,
                why: format!(
                    "left out: the bundle reached --max-size {}",
                    crate::lab::size::format_size(options.max_size)
                ),
            });
            continue;
        }
        let cut = data.len() as u64 > left;
        if cut {
            let keep = usize::try_from(left).unwrap_or(usize::MAX);
            data.drain(..data.len() - keep);
            missing.push(Missing {
                what: f.path.clone(),
                why: format!(
                    "cut to its last {} bytes: the bundle reached --max-size {}",
                    keep,
                    crate::lab::size::format_size(options.max_size)
                ),
            });
        }
        left -= data.len() as u64;
        files.push((f.path, data, cut));
    }
    let mut missing_txt = if missing.is_empty() {
        "Nothing is missing: every source answered.\n".to_string()
    } else {
        missing
            .iter()
            .map(|m| format!("{}: {}\n", m.what, m.why))
            .collect()
    };
    redactor.redact_string(&mut missing_txt);
    for m in &mut missing {
        redactor.redact_string(&mut m.why);
    }
    files.insert(0, ("MISSING.txt".into(), missing_txt.into_bytes(), false));
    let stamp = crate::state::utc_stamp(std::time::SystemTime::now());
    let top = format!("{lab}-{stamp}");
    write_tar_gz(out, &top, &files)?;
    Ok(Collected {
        lab: lab.to_string(),
        path: out.to_path_buf(),
        bytes: files.iter().map(|f| f.1.len() as u64).sum(),
        files: files
            .into_iter()
            .map(|(path, data, cut)| FileInfo {
                path,
                bytes: data.len() as u64,
                cut,
            })
            .collect(),
        missing,
        secs: 0.0,
    })
}

/// A gzip'd tar of `files` under `top/`, mode 0600 (a bundle is the user's
/// own, like the state directory), written beside `out` and renamed.
fn write_tar_gz(out: &Path, top: &str, files: &[(String, Vec<u8>, bool)]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = out.with_file_name(format!(
        ".{}.tmp",
        out.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default()
    ));
    let result = (|| {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        let mut tar = tar::Builder::new(gz);
        let mtime = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for (path, data, _) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(mtime);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, format!("{top}/{path}"), data.as_slice())?;
        }
        let mut f = tar.into_inner()?.finish()?;
        f.flush()?;
        f.sync_all()?;
        std::fs::rename(&tmp, out)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(path: &Path) -> Vec<(String, String)> {
        use std::io::Read;
        let f = std::fs::File::open(path).unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let name = e.path().unwrap().to_string_lossy().into_owned();
                let mut text = String::new();
                e.read_to_string(&mut text).unwrap();
                (name, text)
            })
            .collect()
    }

    #[test]
    fn the_bound_keeps_the_telling_sources_and_tails_and_says_what_it_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("b.tar.gz");
        let mut g = Gathered::default();
        // added in the wrong order on purpose: the weight decides
        g.file(Weight::Journal, "vms/a/journal.txt", b"j".repeat(500));
        g.file(Weight::Definition, "vms/a/console.log", {
            let mut c = b"x".repeat(300);
            c.extend_from_slice(b"token abcdef.0123456789abcdef\nsecret-value-1 end");
            c
        });
        g.file(Weight::Lab, "lab/l.yaml", b"name: l\n".to_vec());
        g.missing("vms/b/ over SSH", "connection refused by secret-value-1");
        let redactor = Redactor::new();
        redactor.add("secret-value-1");
        let options = Options {
            max_size: 200,
            timeout: Duration::from_secs(1),
        };
        let c = write("l", g, &redactor, &out, &options).unwrap();
        let files = read_back(&out);
        let names: Vec<&str> = files
            .iter()
            .map(|(n, _)| n.split_once('/').unwrap().1)
            .collect();
        assert_eq!(names, ["MISSING.txt", "lab/l.yaml", "vms/a/console.log"]);
        assert!(
            files.iter().all(|(n, _)| n.starts_with("l-")),
            "one top directory"
        );
        // the console keeps its end, redacted, within what was left
        let console = &files[2].1;
        assert_eq!(console.len(), 200 - "name: l\n".len());
        assert!(
            console.ends_with("token [REDACTED]\n[REDACTED] end"),
            "{console}"
        );
        let missing = &files[0].1;
        assert!(
            missing.contains("vms/b/ over SSH: connection refused by [REDACTED]"),
            "{missing}"
        );
        assert!(
            missing.contains("vms/a/console.log: cut to its last 192 bytes"),
            "{missing}"
        );
        assert!(
            missing.contains("vms/a/journal.txt: left out: the bundle reached --max-size 200B"),
            "{missing}"
        );
        assert_eq!(c.files.iter().filter(|f| f.cut).count(), 1);
        assert_eq!(
            c.bytes,
            files.iter().map(|(_, t)| t.len() as u64).sum::<u64>()
        );
        // a bundle that cannot be written leaves nothing behind
        let bad = dir.path().join("no-such-dir-file").join("x.tar.gz");
        std::fs::write(
            dir.path().join("no-such-dir-file"),
            "a file, not a directory",
        )
        .unwrap();
        assert!(write("l", Gathered::default(), &redactor, &bad, &options).is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }
}
