//! `kubelab play PLAYBOOK -i INVENTORY`: run a playbook on existing hosts
//! listed in an Ansible-style INI inventory (also kubelab's own
//! `<state>/inventory.ini`), over SSH, all hosts connected in parallel.
//!
//! Inventory variables: `ansible_host` (address, default the host name),
//! `ansible_port`, `ansible_user` (default `$USER`),
//! `ansible_ssh_private_key_file` (default the usual `~/.ssh/id_*` keys and
//! the ssh-agent). Precedence: `[all:vars]` < `[group:vars]` (in file
//! order) < host line. Every variable is a playbook host variable;
//! `address` is `ansible_host` unless set.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::Context;
use crate::import::ini::{self, SectionKind};
use crate::inventory::{Host, Inventory, UnreachableTransport};
use crate::lab::overrides::Override;
use crate::playbook::HostPattern;
use crate::runner::{PlaybookRun, parse_var, run_playbook};
use crate::template::Vars;
use crate::transport::{HostKeyPolicy, SshTarget, SshTransport, Transport};

/// What `kubelab play` was asked to do.
#[derive(Clone, Debug, Default)]
pub struct PlayOptions {
    pub playbook: PathBuf,
    /// An INI inventory, or
    pub inventory: Option<PathBuf>,
    /// the VMs of an up lab.
    pub lab: Option<PathBuf>,
    pub known_hosts: Option<PathBuf>,
    pub accept_new: bool,
    pub vars: Vec<String>,
    pub check: bool,
    pub limit: Option<String>,
    pub template_dir: Option<PathBuf>,
}

/// One host of an INI inventory with its groups and merged variables.
#[derive(Clone, Debug, PartialEq)]
pub struct InventoryHost {
    pub name: String,
    pub groups: Vec<String>,
    /// Merged variables as text, as the INI file gives them.
    pub vars: BTreeMap<String, String>,
}

/// `key=value` as the INI file gives it.
type TextVar = (String, String);

/// Hosts of an INI inventory, in the order they first appear.
pub fn hosts_from_ini(text: &str) -> Result<Vec<InventoryHost>, String> {
    let sections = ini::parse(text).map_err(|e| match e.span {
        Some(s) => format!("line {}: {}", s.start.line, e.message),
        None => e.message,
    })?;
    // Host name → (direct groups, host-line vars) in first-seen order.
    let mut order: Vec<String> = Vec::new();
    let mut direct: BTreeMap<String, (Vec<String>, Vec<TextVar>)> = BTreeMap::new();
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut group_vars: Vec<(String, Vec<TextVar>)> = Vec::new();
    for section in &sections {
        match section.kind {
            SectionKind::Hosts => {
                for line in &section.hosts {
                    let name = line.name.text.clone();
                    let entry = direct.entry(name.clone()).or_insert_with(|| {
                        order.push(name.clone());
                        (Vec::new(), Vec::new())
                    });
                    if section.group != "all" && section.group != "ungrouped" {
                        entry.0.push(section.group.clone());
                    }
                    entry.1.extend(
                        line.vars
                            .iter()
                            .map(|(k, v)| (k.text.clone(), v.text.clone())),
                    );
                }
            }
            SectionKind::Vars => group_vars.push((
                section.group.clone(),
                section
                    .vars
                    .iter()
                    .map(|(k, v)| (k.text.clone(), v.text.clone()))
                    .collect(),
            )),
            SectionKind::Children => children
                .entry(section.group.clone())
                .or_default()
                .extend(section.children.iter().map(|c| c.text.clone())),
        }
    }
    let mut hosts = Vec::new();
    for name in order {
        let Some((direct_groups, host_vars)) = direct.remove(&name) else {
            continue;
        };
        // Groups: direct ones plus every parent through `:children`.
        let mut groups: BTreeSet<String> = direct_groups.iter().cloned().collect();
        loop {
            let parents: Vec<String> = children
                .iter()
                .filter(|(parent, kids)| {
                    !groups.contains(*parent) && kids.iter().any(|k| groups.contains(k))
                })
                .map(|(parent, _)| parent.clone())
                .collect();
            if parents.is_empty() {
                break;
            }
            groups.extend(parents);
        }
        let mut vars = BTreeMap::new();
        for (group, list) in &group_vars {
            if group == "all" {
                vars.extend(list.iter().cloned());
            }
        }
        for (group, list) in &group_vars {
            if group != "all" && groups.contains(group) {
                vars.extend(list.iter().cloned());
            }
        }
        vars.extend(host_vars);
        // Direct groups first (file order), then inherited ones.
        let mut ordered = direct_groups.clone();
        ordered.extend(groups.into_iter().filter(|g| !direct_groups.contains(g)));
        ordered.dedup();
        hosts.push(InventoryHost {
            name,
            groups: ordered,
            vars,
        });
    }
    Ok(hosts)
}

/// Where to connect and as whom, from a host's inventory variables.
pub fn ssh_target(
    host: &InventoryHost,
    known_hosts: &Path,
    accept_new: bool,
) -> Result<SshTarget, String> {
    let address = host
        .vars
        .get("ansible_host")
        .or_else(|| host.vars.get("ansible_ssh_host"))
        .cloned()
        .unwrap_or_else(|| host.name.clone());
    let user = host
        .vars
        .get("ansible_user")
        .or_else(|| host.vars.get("ansible_ssh_user"))
        .cloned()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "root".to_string());
    let mut target = SshTarget::new(host.name.clone(), address, user, known_hosts);
    if let Some(port) = host
        .vars
        .get("ansible_port")
        .or_else(|| host.vars.get("ansible_ssh_port"))
    {
        target.port = port
            .parse()
            .map_err(|_| format!("host `{}`: ansible_port `{port}` is not a port", host.name))?;
    }
    match host.vars.get("ansible_ssh_private_key_file") {
        Some(key) => target.identity_files = vec![expand_home(key)],
        None => {
            target.identity_files = ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|k| expand_home(&format!("~/.ssh/{k}")))
                .filter(|p| p.exists())
                .collect();
            target.use_agent = std::env::var_os("SSH_AUTH_SOCK").is_some();
        }
    }
    if accept_new {
        target.host_key_policy = HostKeyPolicy::AcceptNew;
    }
    Ok(target)
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// `--known-hosts`, else `known_hosts` next to the inventory (kubelab's
/// state directory), else `~/.ssh/known_hosts`.
fn known_hosts_file(opts: &PlayOptions, inventory: &Path) -> PathBuf {
    if let Some(k) = &opts.known_hosts {
        return k.clone();
    }
    let beside = inventory
        .parent()
        .unwrap_or(Path::new("."))
        .join("known_hosts");
    if beside.exists() {
        beside
    } else {
        expand_home("~/.ssh/known_hosts")
    }
}

/// A host's inventory variables as playbook variables: values that parse
/// as JSON (`3`, `true`) become that, else text; `address` defaults to the
/// connection address.
fn playbook_vars(host: &InventoryHost, address: &str) -> Vars {
    let mut vars: Vars = host
        .vars
        .iter()
        .map(|(k, v)| {
            let value = serde_json::from_str(v).unwrap_or_else(|_| v.clone().into());
            (k.clone(), value)
        })
        .collect();
    vars.entry("address".to_string())
        .or_insert_with(|| address.to_string().into());
    vars
}

pub fn run(opts: &PlayOptions, ctx: &Context) -> ExitCode {
    let code = play(opts, ctx);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn play(opts: &PlayOptions, ctx: &Context) -> i32 {
    let mut extra_vars = Vars::new();
    for v in &opts.vars {
        match parse_var(v) {
            Ok((k, value)) => {
                extra_vars.insert(k, value);
            }
            Err(e) => {
                eprintln!("error: --var {e}");
                return 2;
            }
        }
    }
    let limit = match opts.limit.as_deref().map(HostPattern::parse).transpose() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: --limit {e}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    let log_name = opts
        .playbook
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "play".into());
    let mut req = PlaybookRun {
        playbook: opts.playbook.clone(),
        template_dir: opts.template_dir.clone(),
        playbook_dir: ctx.playbook_dir.clone(),
        check: opts.check,
        extra_vars,
        json: ctx.json,
        quiet: ctx.quiet,
        color: ctx.color,
        verbose: ctx.verbose > 0,
        // One log per run, with every step's full output (secrets redacted).
        log_path: Some(crate::state::run_log("play", &log_name)),
        ..Default::default()
    };
    match (&opts.lab, &opts.inventory) {
        (Some(lab), _) => {
            let mut lab = match super::load_lab(lab, ctx) {
                Ok(l) => l,
                Err(_) => return 2,
            };
            if let Some(runtime) = runtime_override(&lab, &mut req) {
                let mut with_runtime = ctx.clone();
                with_runtime.load.overrides.push(runtime);
                lab = match super::load_lab(&lab.file, &with_runtime) {
                    Ok(l) => l,
                    Err(_) => return 2,
                };
            }
            req.log_path = Some(crate::state::run_log(&lab.name, &log_name));
            let code = runtime.block_on(play_on_lab(&lab, limit.as_ref(), &req));
            report(ctx, opts, Some(&lab), &req);
            code
        }
        (None, Some(inventory)) => {
            let inventory = inventory.clone();
            let code = play_on_ini(opts, &inventory, limit.as_ref(), &runtime, &req);
            report(ctx, opts, None, &req);
            code
        }
        (None, None) => {
            eprintln!("error: give an inventory (-i) or a lab (--lab)");
            2
        }
    }
}

/// The run's HTML report.
fn report(ctx: &Context, opts: &PlayOptions, lab: Option<&crate::lab::Lab>, req: &PlaybookRun) {
    let title = format!("play {}", opts.playbook.display());
    super::write_report(ctx, &title, lab, req.log_path.as_deref(), None);
}

/// `--lab`: the lab's VMs, with the variables of its own stages.
/// `--var container_runtime=R` on a lab with a cluster: the lab is read
/// again with `kubernetes.runtime: R` (as `--set kubernetes.runtime=R`
/// would), so that what is installed, the CRI socket, crictl and the
/// kubelet all follow it and the validator checks the combination; the
/// variable itself is then the typed layer's.
fn runtime_override(lab: &crate::lab::Lab, req: &mut PlaybookRun) -> Option<Override> {
    lab.kubernetes.as_ref()?;
    let value = req.extra_vars.remove("container_runtime")?;
    let text = match &value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    format!("kubernetes.runtime={text}").parse().ok()
}

async fn play_on_lab(lab: &crate::lab::Lab, limit: Option<&HostPattern>, req: &PlaybookRun) -> i32 {
    let hosts = match crate::stage::LabHosts::connect(lab).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {e}");
            return i32::from(e.exit_code());
        }
    };
    let stage = match crate::stage::for_playbook(lab, &req.playbook.display().to_string()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            hosts.close().await;
            return 1;
        }
    };
    let mut inventory = hosts.inventory(lab, &stage);
    let code = match limit.map(|p| inventory.select(p)).transpose() {
        Err(e) => {
            eprintln!("error: --limit {e}");
            2
        }
        Ok(keep) => {
            if let Some(keep) = keep {
                let keep: BTreeSet<usize> = keep.into_iter().collect();
                let mut i = 0;
                inventory.hosts.retain(|_| {
                    i += 1;
                    keep.contains(&(i - 1))
                });
            }
            run_playbook(inventory, req).await
        }
    };
    hosts.close().await;
    code
}

/// `-i INVENTORY`: hosts of an INI inventory over SSH.
fn play_on_ini(
    opts: &PlayOptions,
    inventory_path: &Path,
    limit: Option<&HostPattern>,
    runtime: &tokio::runtime::Runtime,
    req: &PlaybookRun,
) -> i32 {
    let text = match std::fs::read_to_string(inventory_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", inventory_path.display());
            return 2;
        }
    };
    let mut hosts = match hosts_from_ini(&text) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {}: {e}", inventory_path.display());
            return 2;
        }
    };
    if let Some(p) = limit {
        let view: Vec<(&str, &[String])> = hosts
            .iter()
            .map(|h| (h.name.as_str(), h.groups.as_slice()))
            .collect();
        match p.select(&view) {
            Ok(indexes) => {
                let keep: BTreeSet<usize> = indexes.into_iter().collect();
                hosts = hosts
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| keep.contains(i))
                    .map(|(_, h)| h)
                    .collect();
            }
            Err(e) => {
                eprintln!("error: --limit {e}");
                return 2;
            }
        }
    }
    let known_hosts = known_hosts_file(opts, inventory_path);
    let mut targets = Vec::new();
    for h in &hosts {
        match ssh_target(h, &known_hosts, opts.accept_new) {
            Ok(t) => targets.push(t),
            Err(e) => {
                eprintln!("error: {}: {e}", inventory_path.display());
                return 2;
            }
        }
    }
    runtime.block_on(async move {
        let transports = connect_all(targets.clone()).await;
        let mut inventory = Inventory::new(Vars::new());
        for ((host, target), transport) in hosts.iter().zip(&targets).zip(transports) {
            inventory.add(Host {
                name: host.name.clone(),
                groups: host.groups.clone(),
                vars: playbook_vars(host, &target.address),
                transport,
            });
        }
        run_playbook(inventory, req).await
    })
}

/// Connect to every target at once; an unreachable one gets an
/// [`UnreachableTransport`] so its steps report it (exit 3).
pub async fn connect_all(targets: Vec<SshTarget>) -> Vec<Arc<dyn Transport>> {
    let mut connecting = tokio::task::JoinSet::new();
    let names: Vec<String> = targets.iter().map(|t| t.host_name.clone()).collect();
    for (index, target) in targets.into_iter().enumerate() {
        connecting.spawn(async move {
            let name = target.host_name.clone();
            let transport: Arc<dyn Transport> = match SshTransport::connect(target).await {
                Ok(t) => Arc::new(t),
                Err(e) => Arc::new(UnreachableTransport::from_error(name, &e)),
            };
            (index, transport)
        });
    }
    let mut transports: Vec<Option<Arc<dyn Transport>>> = vec![None; names.len()];
    while let Some(joined) = connecting.join_next().await {
        if let Ok((index, transport)) = joined
            && let Some(slot) = transports.get_mut(index)
        {
            *slot = Some(transport);
        }
    }
    transports
        .into_iter()
        .zip(names)
        .map(|(t, name)| {
            t.unwrap_or_else(|| {
                Arc::new(UnreachableTransport::new(
                    name,
                    "the connection task failed",
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--var container_runtime=docker` on a containerd lab: the lab is read
    /// with Docker, and the stage's CRI socket, crictl and kubelet follow
    /// (not only what is installed).
    #[test]
    fn a_runtime_given_as_a_variable_reaches_the_typed_layer() {
        let text = "name: rt\nvirthost: {local: true}\nimage: {build: debian-12}\n\
                    networks: [{name: lan, kind: nat, ipv4: 10.9.0.0/24}]\n\
                    vms: [{name: cp, roles: [control-plane], cpus: 2, memory: 2GiB, nics: [{network: lan, ipv4: 10.9.0.10}]}]\n\
                    kubernetes: {version: \"1.31\", runtime: containerd}\n";
        let path = Path::new("rt.yaml");
        let load = |overrides: Vec<Override>| {
            let opts = crate::lab::LoadOptions {
                overrides,
                ..Default::default()
            };
            crate::lab::load_str(path, text, &opts).unwrap().0
        };
        let lab = load(Vec::new());
        let mut req = PlaybookRun::default();
        req.extra_vars
            .insert("container_runtime".into(), serde_json::json!("docker"));
        let set = runtime_override(&lab, &mut req).expect("an override");
        assert!(
            req.extra_vars.is_empty(),
            "the variable is the typed layer's now"
        );
        let docker = load(vec![set]);
        let stage = crate::stage::StageKind::Kubernetes
            .stage(
                &docker,
                Some("kubernetes/runtime"),
                crate::stage::Secrets::Ephemeral,
            )
            .unwrap();
        assert_eq!(stage.vars["container_runtime"], "docker");
        let kubeadm = &stage.host_vars["cp"]["kubeadm"];
        assert_eq!(
            kubeadm["node"]["cri_socket"], "unix:///run/cri-dockerd.sock",
            "{kubeadm}"
        );
        // Without a cluster the variable stays a variable.
        let plain = crate::lab::load_str(
            path,
            &text.replace("kubernetes: {version: \"1.31\", runtime: containerd}\n", ""),
            &Default::default(),
        )
        .unwrap()
        .0;
        assert!(runtime_override(&plain, &mut req).is_none());
    }

    #[test]
    fn merges_groups_and_vars() {
        let text = "a ansible_host=10.0.0.1\n[web]\nb ansible_host=10.0.0.2 ansible_port=2222\n\
                    [prod:children]\nweb\n[all:vars]\nansible_user=u\nx=1\n[web:vars]\nx=2\n\
                    [prod:vars]\ny=yes\n[all]\nc\n";
        let hosts = hosts_from_ini(text).unwrap();
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(hosts[0].groups.is_empty());
        assert_eq!(hosts[1].groups, ["web", "prod"]);
        assert_eq!(hosts[0].vars["x"], "1");
        assert_eq!(hosts[1].vars["x"], "2");
        assert_eq!(hosts[1].vars["y"], "yes");
        assert_eq!(hosts[2].vars["ansible_user"], "u");
        let target = ssh_target(&hosts[1], Path::new("/k"), false).unwrap();
        assert_eq!(
            (target.address.as_str(), target.port, target.user.as_str()),
            ("10.0.0.2", 2222, "u")
        );
        let target = ssh_target(&hosts[2], Path::new("/k"), true).unwrap();
        assert_eq!(target.address, "c");
        assert_eq!(target.host_key_policy, HostKeyPolicy::AcceptNew);
        let vars = playbook_vars(&hosts[1], "10.0.0.2");
        assert_eq!(vars["address"], serde_json::json!("10.0.0.2"));
        assert_eq!(vars["x"], serde_json::json!(2));
    }

    #[test]
    fn bad_port_and_bad_ini_are_errors() {
        let hosts = hosts_from_ini("a ansible_port=x\n").unwrap();
        assert!(ssh_target(&hosts[0], Path::new("/k"), false).is_err());
        assert!(hosts_from_ini("[broken\n").is_err());
    }

    #[test]
    fn reads_kubelabs_own_inventory() {
        let text = "# Written by kubelab for lab `t`\n[all]\ncp ansible_host=192.168.151.200\n\
                    w-1 ansible_host=192.168.151.201\n\n[control_plane]\ncp\n\n[worker]\nw-1\n\n\
                    [all:vars]\nansible_user=kubelab\nansible_become=true\n\
                    ansible_ssh_private_key_file=/s/id_ed25519\nansible_ssh_common_args='-F /s/ssh_config'\n";
        let hosts = hosts_from_ini(text).unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[1].groups, ["worker"]);
        let target = ssh_target(&hosts[1], Path::new("/s/known_hosts"), false).unwrap();
        assert_eq!(target.user, "kubelab");
        assert_eq!(target.identity_files, [PathBuf::from("/s/id_ed25519")]);
        assert_eq!(target.address, "192.168.151.201");
    }
}
