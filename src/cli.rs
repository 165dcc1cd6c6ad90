//! The command line: what a user can ask kubelab to do.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "kubelab",
    version,
    about = "Kubernetes labs on libvirt virthosts, from one YAML lab file",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// More detail (repeat for even more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// One JSON object per line on stdout, for machines.
    #[arg(long, global = true)]
    pub json: bool,
    /// Colour: auto (a terminal and no NO_COLOR), always, never.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Also look for inventory files in this directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub inventory_dir: Vec<PathBuf>,
    /// Change a value of the lab file for this run, e.g.
    /// `defaults.memory=1GiB`, `vms.node-1.cpus=1` (dotted path: keys,
    /// list indexes or item names; YAML value). Repeatable.
    #[arg(long = "set", global = true, value_name = "PATH=VALUE")]
    pub set: Vec<crate::lab::overrides::Override>,
    /// Playbooks here win over the built-in ones.
    #[arg(long, global = true, value_name = "DIR")]
    pub playbook_dir: Option<PathBuf>,
    /// Templates here win over the built-in ones.
    #[arg(long, global = true, value_name = "DIR")]
    pub template_dir: Option<PathBuf>,
    /// `up`, `verify`, `chaos`, `play`: also write the run's HTML report
    /// here (it is always written beside the run log, `<log>.html`).
    #[arg(long, global = true, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    /// `up`, `verify`, `chaos`: no forensics bundle when the run fails (one
    /// is written to `<state>/forensics/` otherwise).
    #[arg(long, global = true)]
    pub no_collect: bool,
}

/// A `--ttl` value in seconds (not zero).
fn parse_ttl(text: &str) -> Result<u64, String> {
    match crate::lab::duration::parse_duration(text)? {
        0 => Err("0 would expire the lab at once".into()),
        secs => Ok(secs),
    }
}

/// What `kubelab snapshot LAB` does.
#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Snapshot every VM of the lab at one moment (with memory while they
    /// run).
    Save {
        #[arg(value_name = "NAME")]
        name: String,
        /// Disks only, of shut-off VMs.
        #[arg(long)]
        disk_only: bool,
    },
    /// Bring every VM back to the snapshot and wait until each answers SSH.
    Revert {
        #[arg(value_name = "NAME")]
        name: String,
        /// Seconds to wait for SSH after the revert.
        #[arg(long, value_name = "S", default_value_t = 120)]
        timeout: u64,
    },
    /// The lab's snapshots.
    List,
    /// Remove a snapshot from every VM.
    Delete {
        #[arg(value_name = "NAME")]
        name: String,
    },
}

/// A scenario phase on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PhaseArg {
    Setup,
    Verify,
    Break,
    Repair,
    Teardown,
}

impl From<PhaseArg> for crate::stage::Phase {
    fn from(p: PhaseArg) -> Self {
        match p {
            PhaseArg::Setup => crate::stage::Phase::Setup,
            PhaseArg::Verify => crate::stage::Phase::Verify,
            PhaseArg::Break => crate::stage::Phase::Break,
            PhaseArg::Repair => crate::stage::Phase::Repair,
            PhaseArg::Teardown => crate::stage::Phase::Teardown,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check lab files and explain every mistake (exit 1 if any is invalid).
    Validate {
        /// Lab files.
        #[arg(required = true, value_name = "LAB")]
        labs: Vec<PathBuf>,
    },
    /// Print the JSON Schema of lab files (for editors and yaml-language-server).
    Schema {
        /// Which file format.
        #[arg(value_enum, default_value_t = SchemaKind::Lab)]
        kind: SchemaKind,
    },
    /// Turn a kube-ansible virthost inventory and extra-vars files into a lab
    /// file; every variable that has no kubelab equivalent is listed on stderr.
    ImportAnsible {
        /// The virthost inventory (INI with `[virthost]`, or YAML).
        #[arg(short, long, value_name = "INVENTORY")]
        inventory: PathBuf,
        /// Extra vars as given to ansible-playbook: `@vars.yml` or
        /// `key=value`; repeatable, later ones win.
        #[arg(short = 'e', long = "extra-vars", value_name = "@FILE|KEY=VALUE")]
        extra_vars: Vec<String>,
        /// Write the lab here instead of to stdout.
        #[arg(short, long, value_name = "LAB")]
        output: Option<PathBuf>,
        /// Lab name (a DNS-1123 label, default `kube-ansible`).
        #[arg(long)]
        name: Option<String>,
        /// SHA-256 of the image at `centos_genericcloud_url`, so the lab can
        /// download it (kubelab verifies every download; kube-ansible gave
        /// no checksum). Without it the lab builds a debian-12 image.
        #[arg(long, value_name = "HEX")]
        image_sha256: Option<String>,
    },
    /// Run a playbook on existing hosts of an Ansible-style INI inventory
    /// over SSH (all hosts in parallel). Exit 0 ok, 1 failed steps, 2
    /// invalid input, 3 unreachable hosts.
    Play {
        /// The playbook: a file, or the name of a built-in playbook
        /// (`--playbook-dir` entries win over built-ins).
        #[arg(value_name = "PLAYBOOK")]
        playbook: PathBuf,
        /// INI inventory: `name ansible_host=... [ansible_port=...]
        /// [ansible_user=...]`, `[group]`, `[group:vars]`, `[group:children]`;
        /// kubelab's `<state>/inventory.ini` works too.
        #[arg(
            short = 'i',
            long,
            value_name = "INVENTORY",
            required_unless_present = "lab",
            conflicts_with = "lab"
        )]
        inventory: Option<PathBuf>,
        /// Run on the VMs of this (up) lab instead, with the variables its
        /// own playbooks get (lab, networks, addresses, disks, kubernetes).
        #[arg(long, value_name = "LAB")]
        lab: Option<PathBuf>,
        /// Known hosts file (default: `known_hosts` beside the inventory if
        /// there is one, else `~/.ssh/known_hosts`).
        #[arg(long, value_name = "FILE")]
        known_hosts: Option<PathBuf>,
        /// Trust and record host keys not yet known (a changed key is still
        /// refused).
        #[arg(long)]
        accept_new: bool,
        /// Extra variable `name=value` (JSON values parse as JSON); repeatable.
        #[arg(long = "var", value_name = "NAME=VALUE")]
        vars: Vec<String>,
        /// Change nothing: print the plan of what would change.
        #[arg(long)]
        check: bool,
        /// Only hosts matching this pattern (`web`, `a:b`, `all:!db`).
        #[arg(short = 'l', long, value_name = "PATTERN")]
        limit: Option<String>,
    },
    /// Take a virthost from bare to the lab's VMs running and reachable
    /// (idempotent: a second run changes nothing).
    Up {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
        /// Seconds to wait for every VM's addresses and SSH (from their start).
        #[arg(long, value_name = "S", default_value_t = 300)]
        timeout: u64,
        /// The lab may stay this long from now (`8h`, `2d`; renews an
        /// earlier lease); recorded on the virthost with the owner, for
        /// `kubelab ls` and `reap`. The lab file's `ttl:` counts from the
        /// lab's creation instead.
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: Option<u64>,
    },
    /// Show what `up` would change, without changing anything.
    Plan {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
    },
    /// Run one phase of one of the lab's scenarios.
    Scenario {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
        /// The scenario's name as the lab lists it.
        #[arg(value_name = "NAME")]
        name: String,
        #[arg(value_enum, value_name = "PHASE")]
        phase: PhaseArg,
    },
    /// Run the scenarios' checks (exit 1 when any fails).
    Verify {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
        /// Only this scenario.
        #[arg(long, value_name = "NAME")]
        scenario: Option<String>,
        /// Also write the results as JUnit XML (one test case per check and host).
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Break a scenario, check that verify notices, repair it, check again.
    Chaos {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Add or delete a link on an up lab's VMs: two endpoints on one VM are
    /// a veth pair, on two VMs a VXLAN tunnel; one endpoint with --kind
    /// vxlan, vlan or macvlan. An endpoint is `VM[,netns=NAME|container=NAME
    /// [,runtime=podman|docker|crio]|pod=NS/NAME|pid=N],ifname=IF[,ip=ADDR/LEN…][,mtu=N]`.
    Link {
        #[command(subcommand)]
        action: LinkAction,
    },
    /// Add or delete a route in a VM's namespace, a named one, a container's
    /// or a pod's: `kubelab route add LAB node-1,netns=blue default --via 10.0.0.1`.
    Route {
        #[command(subcommand)]
        action: RouteAction,
    },
    /// Remove exactly the lab's libvirt objects and its inventory files.
    Down {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
    },
    /// Take the lab's Kubernetes cluster apart (`kubeadm reset -f`, runtime
    /// and CNI state), keeping the VMs; `up` builds it again.
    Reset {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
    },
    /// The lab's VMs: state, addresses, disks; and its Kubernetes nodes
    /// (Ready, roles, versions, runtime) when a cluster exists.
    Status {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
    },
    /// Run a command on a VM through the virthost (exit code relayed);
    /// without a command, an interactive login shell.
    Ssh {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
        #[arg(value_name = "VM")]
        vm: String,
        /// The command (after `--`).
        #[arg(last = true, value_name = "CMD")]
        command: Vec<String>,
    },
    /// Snapshots of the whole lab: every VM at one consistent point (all
    /// paused, each snapshotted with its memory, all resumed), back to it
    /// in seconds: `save NAME`, `revert NAME`, `list`, `delete NAME`.
    Snapshot {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
        #[command(subcommand)]
        action: SnapshotAction,
    },
    /// Every kubelab lab on one or several virthosts, from libvirt alone
    /// (no lab file or state directory needed): owner, age, expiry, VMs
    /// running/total, memory and disk. Several virthosts are asked in
    /// parallel and listed with a VIRTHOST column; a lab spread over them
    /// shows once per virthost.
    Ls {
        /// A virthost: an inventory name or file, or `user@host[:port]`;
        /// repeat it to list several.
        #[arg(long, value_name = "INVENTORY|USER@HOST", default_value = "local")]
        virthost: Vec<String>,
    },
    /// Remove the labs whose time is up (`ttl:` in the lab file, `up
    /// --ttl`) from a virthost exactly as `down` would, from libvirt alone
    /// (labs whose state directory is gone too); never a lab whose lock a
    /// running `up` or `down` holds. For a cron job: exit 1 when a removal
    /// failed.
    Reap {
        /// The virthost: an inventory name or file, or `user@host[:port]`.
        #[arg(long, value_name = "INVENTORY|USER@HOST", default_value = "local")]
        virthost: String,
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Also labs created longer ago than this (`3d`), expired or not.
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        older_than: Option<u64>,
    },
    /// Gather the lab's forensics bundle (.tar.gz): per VM its console,
    /// definition, QEMU log, cloud-init, journal, network and sockets; the
    /// virthost's and libvirt's view; kubelab's run logs and the lab file;
    /// the cluster's nodes, pods and events; the scenarios' checks. Works
    /// on a broken lab (what it cannot get is listed in MISSING.txt);
    /// secrets are redacted.
    Collect {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
        /// Write here (default `<state>/forensics/<time>-collect.tar.gz`).
        #[arg(short, long, value_name = "FILE.tar.gz")]
        output: Option<PathBuf>,
        /// The bundle's contents at most, uncompressed (the most telling
        /// sources first; logs keep their tail).
        #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = crate::lab::size::parse_size)]
        max_size: u64,
        /// Seconds each source may take.
        #[arg(long, value_name = "S", default_value_t = 30)]
        timeout: u64,
        /// Do not run the scenarios' checks for their output.
        #[arg(long)]
        no_verify: bool,
    },
    /// Draw the lab's topology: virthost, networks with their prefixes, VMs
    /// with roles, sizes, disks and addresses, links with their VNIs, and
    /// the scenarios placed on VMs. From the lab file alone (no virthost
    /// needed); `--live` adds each VM's state and addresses.
    Graph {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Svg)]
        format: GraphFormat,
        /// Write here instead of to stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Read the VMs' state and addresses from the virthost.
        #[arg(long)]
        live: bool,
    },
    /// Gather everything the lab's Kubernetes stage installs into DIR, for
    /// `kubernetes.airgap_dir`: kubeadm, kubelet, kubectl, crictl, the CNI
    /// plugins, containerd and runc (each checked against its published
    /// or pinned SHA-256) and every image it runs as OCI archives, listed
    /// with their digests in DIR/bundle.json. Runs on a connected machine.
    Bundle {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
        /// The bundle directory (created; files already there with the
        /// right SHA-256 are kept).
        #[arg(short, long, value_name = "DIR")]
        output: PathBuf,
        /// The nodes' architecture (default: this machine's).
        #[arg(long, value_name = "amd64|arm64")]
        arch: Option<String>,
        /// Fetch files from this mirror of the upstream hosts, which serves
        /// `https://HOST/PATH` as `URL/HOST/PATH`.
        #[arg(long, value_name = "URL")]
        download_mirror: Option<String>,
        /// Read images from this registry mirror (same repository paths):
        /// `URL` for every registry or `REGISTRY=URL` for one; repeatable.
        /// `http://` for a plain-HTTP mirror.
        #[arg(long, value_name = "[REGISTRY=]URL")]
        registry_mirror: Vec<String>,
    },
    /// Check the virthost for the lab; each finding with a fix.
    Doctor {
        #[arg(value_name = "LAB")]
        lab: PathBuf,
    },
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (kubelab(1) and one per command) into DIR,
    /// for example /usr/local/share/man/man1.
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `kubelab graph --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Self-contained SVG laid out by kubelab.
    Svg,
    /// A Mermaid flowchart.
    Mermaid,
    /// Graphviz dot.
    Dot,
}

#[derive(Debug, Subcommand)]
pub enum LinkAction {
    /// Make the link (idempotent).
    Add(LinkArgs),
    /// Remove the link (a veth takes its peer with it).
    Del(LinkArgs),
}

#[derive(Debug, Args)]
pub struct LinkArgs {
    #[arg(value_name = "LAB")]
    pub lab: PathBuf,
    /// One or two endpoints.
    #[arg(value_name = "ENDPOINT", required = true, num_args = 1..=2)]
    pub ends: Vec<String>,
    /// veth, vxlan, vlan or macvlan (default: from the endpoints).
    #[arg(long, value_parser = ["veth", "vxlan", "vlan", "macvlan"])]
    pub kind: Option<String>,
    /// VXLAN network identifier (default for two VMs: derived from the lab and endpoints).
    #[arg(long)]
    pub vni: Option<u32>,
    /// VXLAN UDP port (default 4789).
    #[arg(long)]
    pub port: Option<u16>,
    /// The other host's address (one-ended vxlan).
    #[arg(long)]
    pub remote: Option<String>,
    /// Parent interface (vlan, macvlan; vxlan's underlay device).
    #[arg(long)]
    pub parent: Option<String>,
    /// VLAN id (vlan).
    #[arg(long)]
    pub vlan_id: Option<u16>,
    /// macvlan mode (default bridge).
    #[arg(long)]
    pub mode: Option<String>,
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Change nothing: show what would change.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Subcommand)]
pub enum RouteAction {
    /// Add (or replace) the route.
    Add(RouteArgs),
    /// Delete the route.
    Del(RouteArgs),
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    #[arg(value_name = "LAB")]
    pub lab: PathBuf,
    /// Where: `VM[,netns=NAME|container=NAME[,runtime=…]|pod=NS/NAME|pid=N]`.
    #[arg(value_name = "AT")]
    pub at: String,
    /// `default`, a prefix or an address.
    #[arg(value_name = "TO")]
    pub to: String,
    /// Gateway address.
    #[arg(long)]
    pub via: Option<String>,
    /// Output interface.
    #[arg(long)]
    pub dev: Option<String>,
    #[arg(long)]
    pub metric: Option<u32>,
    /// Change nothing: show what would change.
    #[arg(long)]
    pub check: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// Lab files (`labs/*.yaml`).
    Lab,
    /// Virthost inventory files (`inventories/*.yaml`).
    Inventory,
}
