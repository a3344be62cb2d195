//! Command-line types (clap). One `XxxArgs` per subcommand; no I/O here.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::ownership::ResourceKind;

/// Declarative, desired-state reconciler for Proxmox VE virtual machines
#[derive(Debug, Parser)]
#[command(name = "proxfleet", version, about, long_about = None)]
pub struct Cli {
    /// Connection and output settings shared by every command
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// Settings shared by every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Use the embedded simulated Proxmox VE cluster (state kept in .proxfleet/ here); wins over an endpoint in the environment or a profile
    #[arg(long, global = true)]
    pub sim: bool,
    /// Proxmox VE API endpoint, e.g. https://pve1.example.com:8006
    #[arg(long, global = true, env = "PROXMOX_VE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Named profile of the config file ($XDG_CONFIG_HOME/proxfleet/config.toml): endpoint, token or token_file, ca_file, insecure
    #[arg(long, global = true, env = "PROXFLEET_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,
    /// Skip TLS certificate verification (self-signed clusters without a CA file); the environment takes 1/true/yes or 0/false/no
    #[arg(
        long,
        global = true,
        env = "PROXMOX_VE_INSECURE",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = crate::commands::profile::parse_boolish
    )]
    pub insecure: Option<bool>,
    /// PEM file with the CA that signed the cluster's certificate
    #[arg(long, global = true, env = "PROXMOX_VE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Log more (-v: info and request counts, -vv: debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The environment variables proxfleet reads, listed under every command's help.
pub const ENVIRONMENT_HELP: &str = "\
Environment:
  PROXMOX_VE_ENDPOINT    API endpoint (as --endpoint)
  PROXMOX_VE_API_TOKEN   API token, user@realm!tokenid=secret (never printed)
  PROXMOX_VE_INSECURE    1/true/yes: skip TLS verification (as --insecure)
  PROXMOX_VE_CA_FILE     CA file (as --ca-file)
  PROXFLEET_PROFILE      profile of the config file (as --profile)
  PROXFLEET_CONFIG       another config file than $XDG_CONFIG_HOME/proxfleet/config.toml
  PROXFLEET_SSH_KEY      private key for writing cloud-init snippets over SSH
  NO_COLOR               no colour in plans and logs
  RUST_LOG               log filter (overrides -v)";

/// The command line definition with the environment listed under every command's help.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    fn with_environment(command: clap::Command) -> clap::Command {
        command
            .after_help(ENVIRONMENT_HELP)
            .mut_subcommands(with_environment)
    }
    with_environment(Cli::command())
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a spec without contacting any cluster
    Validate(ValidateArgs),
    /// Check that the cluster can take the spec: API and version, nodes, storages, free space, bridges, PCI mappings, privileges, vmids
    Check(CheckArgs),
    /// Show what apply would change
    Plan(PlanArgs),
    /// Change the cluster to match the spec
    Apply(ApplyArgs),
    /// Delete every VM (and with --include-images, image) this spec's project owns
    Destroy(DestroyArgs),
    /// List what this spec's project owns in the cluster: resources, vmids, nodes, status, addresses
    #[command(visible_alias = "list")]
    Show(ShowArgs),
    /// Print the project's clones as an Ansible inventory (also usable as a dynamic inventory script)
    Inventory(InventoryArgs),
    /// Remove the project's lease, left by an apply or destroy that was killed (asks first)
    Unlock(UnlockArgs),
    /// Print the JSON Schema of the spec format, or with --output of a command's --json output
    Schema(SchemaArgs),
    /// Print a shell completion script, e.g. `source <(proxfleet completions bash)`
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory
    Man(ManArgs),
    /// Run the simulated Proxmox VE cluster
    #[command(subcommand)]
    Sim(SimCommand),
}

/// Which spec file.
#[derive(Debug, Args)]
pub struct SpecArgs {
    /// Spec file
    #[arg(short, long, default_value = "proxfleet.yaml")]
    pub file: PathBuf,
}

/// `validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Spec file
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Show every effective setting of this clone and the layer it comes from
    #[arg(long, value_name = "CLONE")]
    pub explain: Option<String>,
}

/// `check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Spec file
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print the results as JSON
    #[arg(long)]
    pub json: bool,
}

/// A kind of resource, for `--only` and `--skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Cloud image volumes
    #[value(alias = "image")]
    Images,
    /// Template VMs
    #[value(alias = "template")]
    Templates,
    /// Clone VMs
    #[value(alias = "clone")]
    Clones,
}

impl From<KindArg> for ResourceKind {
    fn from(kind: KindArg) -> ResourceKind {
        match kind {
            KindArg::Images => ResourceKind::Image,
            KindArg::Templates => ResourceKind::Template,
            KindArg::Clones => ResourceKind::Clone,
        }
    }
}

/// Which resources `plan` and `apply` cover.
#[derive(Debug, Clone, Default, Args)]
pub struct SelectArgs {
    /// Cover only this resource and what it depends on, e.g. clone.web-1 (repeatable)
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Cover only these kinds of resource
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KINDS")]
    pub only: Vec<KindArg>,
    /// Leave these kinds of resource out
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KINDS")]
    pub skip: Vec<KindArg>,
    /// Reboot running VMs whose changes take effect only at the next boot (memory, CPU, …);
    /// without it they stay pending and the plan says so
    #[arg(long)]
    pub allow_reboot: bool,
}

/// `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Spec file
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print the plan as JSON
    #[arg(long)]
    pub json: bool,
    /// Save the plan to this file, for `proxfleet apply FILE` to apply exactly it
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Exit 0 when there is nothing to do, 2 when there are changes (1 is an error)
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Which resources to cover
    #[command(flatten)]
    pub select: SelectArgs,
    /// Replace this resource even if it matches the spec, e.g. clone.web-1 (repeatable)
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Print the plan without colour (also: the NO_COLOR environment variable)
    #[arg(long)]
    pub no_color: bool,
    /// Do not run the preflight checks first (for emergencies)
    #[arg(long)]
    pub skip_checks: bool,
}

/// `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved by `plan --out`: apply exactly it, without asking, unless it is stale
    #[arg(
        value_name = "PLAN_FILE",
        conflicts_with_all = ["file", "targets", "only", "skip", "replace"]
    )]
    pub plan_file: Option<PathBuf>,
    /// Spec file
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Apply without asking for confirmation
    #[arg(long)]
    pub auto_approve: bool,
    /// Print one final report as JSON on standard output (the plan and progress go to standard error)
    #[arg(long)]
    pub json: bool,
    /// How many changes run at once
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
    /// How many volumes clones, creates and downloads allocate at once on one storage (a
    /// shared one counts once for the cluster): Proxmox allocates under a storage lock it waits 10 s for
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub storage_parallelism: u16,
    /// Seconds a running VM that is to be deleted may take to shut down before it is stopped
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub shutdown_timeout: u32,
    /// Which resources to cover
    #[command(flatten)]
    pub select: SelectArgs,
    /// Replace this resource even if it matches the spec, e.g. clone.web-1 (repeatable)
    #[arg(long = "replace", value_name = "ADDR")]
    pub replace: Vec<String>,
    /// Print the plan without colour (also: the NO_COLOR environment variable)
    #[arg(long)]
    pub no_color: bool,
    /// Do not run the preflight checks first (for emergencies)
    #[arg(long)]
    pub skip_checks: bool,
    /// Seconds the run's lease on the project lasts unless renewed (every third of it): how
    /// soon another host may take over after this run is killed
    #[arg(long, default_value_t = 120, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub lease_seconds: u32,
}

/// `destroy`.
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Spec file
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Destroy without asking for confirmation
    #[arg(long)]
    pub auto_approve: bool,
    /// Print one final report as JSON on standard output (the plan and progress go to standard error)
    #[arg(long)]
    pub json: bool,
    /// Also delete the image volumes this project downloaded (implied by --target image.NAME and --only images)
    #[arg(long)]
    pub include_images: bool,
    /// How many changes run at once
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
    /// Seconds a running VM that is to be deleted may take to shut down before it is stopped
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub shutdown_timeout: u32,
    /// Destroy only this resource and what depends on it, e.g. template.base (repeatable)
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
    /// Destroy only these kinds of resource
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KINDS")]
    pub only: Vec<KindArg>,
    /// Leave these kinds of resource standing
    #[arg(long, value_enum, value_delimiter = ',', value_name = "KINDS")]
    pub skip: Vec<KindArg>,
    /// Print the plan without colour (also: the NO_COLOR environment variable)
    #[arg(long)]
    pub no_color: bool,
    /// Seconds the run's lease on the project lasts unless renewed (every third of it): how
    /// soon another host may take over after this run is killed
    #[arg(long, default_value_t = 120, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub lease_seconds: u32,
}

/// `unlock`.
#[derive(Debug, Args)]
pub struct UnlockArgs {
    /// Spec file
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Remove the lease without asking for confirmation
    #[arg(long, visible_alias = "auto-approve")]
    pub yes: bool,
}

/// `schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Print the schema of this command's --json output instead of the spec's
    #[arg(long, value_enum, value_name = "COMMAND")]
    pub output: Option<SchemaOutput>,
}

/// A command whose `--json` output has a schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaOutput {
    /// `plan --json`
    Plan,
    /// `check --json`
    Check,
    /// `show --json`
    Show,
    /// `apply --json`
    Apply,
    /// `destroy --json`
    Destroy,
}

/// `show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Spec file
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print the resources as JSON
    #[arg(long)]
    pub json: bool,
    /// Show only this resource, e.g. clone.web-1 (repeatable)
    #[arg(long = "target", value_name = "ADDR")]
    pub targets: Vec<String>,
}

/// The format of `inventory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum InventoryFormat {
    /// A static inventory in YAML (`all: children: …`)
    #[default]
    Yaml,
    /// The dynamic-inventory JSON (`_meta.hostvars` and groups), as `--list` prints it
    Json,
}

/// `inventory`.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Spec file
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Output format
    #[arg(long, value_enum, default_value_t)]
    pub format: InventoryFormat,
    /// Dynamic inventory: print every group and host as JSON (what Ansible's script plugin runs)
    #[arg(long, conflicts_with = "host")]
    pub list: bool,
    /// Dynamic inventory: print one host's variables as JSON
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
}

/// `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write proxfleet.1 and one page per command (proxfleet-plan.1, …) into this directory
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `sim` subcommands.
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Serve the simulated cluster over HTTP for other tools
    Serve(SimServeArgs),
}

/// `sim serve`.
#[derive(Debug, Args)]
pub struct SimServeArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8006")]
    pub listen: SocketAddr,
    /// File the cluster's state is loaded from and saved to
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Number of nodes (pve1, pve2, …)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub nodes: u16,
    /// Added latency per request, in milliseconds
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Factor applied to each task's nominal duration (a full clone 12 s, a linked one 1.5 s,
    /// a start 1.5 s, a download 30 s, …): 1 is real time, 0.05 twenty times faster
    #[arg(long, default_value_t = 0.05, value_parser = parse_scale)]
    pub task_scale: f64,
    /// Make every task take exactly this many milliseconds instead (then scaled by --task-scale 1)
    #[arg(long, conflicts_with = "task_scale")]
    pub task_ms: Option<u64>,
    /// API token accepted, USER@REALM!ID=SECRET[,privsep=1] (repeatable); without it one is made and printed
    #[arg(long = "token")]
    pub tokens: Vec<String>,
    /// ACL entry PATH:ROLE:USER_OR_TOKEN[:PROPAGATE] (repeatable), e.g. /:PVEVMAdmin:ci@pve!deploy; root@pam needs none
    #[arg(long = "acl")]
    pub acls: Vec<String>,
    /// Custom role NAME=PRIV[,PRIV…] (repeatable), e.g. Deploy=VM.Allocate,VM.Clone,VM.Audit
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// Fault to inject (repeatable), e.g. error,path=/nodes/*/qemu/*/clone,rate=0.2,status=500
    /// or drop,when=after or task-error,message=… or lock,vmid=100 or offline,node=pve2
    #[arg(long = "fault")]
    pub faults: Vec<String>,
    /// Seed for the random choices of faults with a rate
    #[arg(long, default_value_t = 0)]
    pub fault_seed: u64,
    /// Resource pool that exists from the start (repeatable)
    #[arg(long = "pool")]
    pub pools: Vec<String>,
    /// User who may log in with a password (tickets + CSRF), USER@REALM:PASSWORD (repeatable)
    #[arg(long = "user")]
    pub users: Vec<String>,
    /// LXC container that exists from the start, NODE:VMID:HOSTNAME (repeatable)
    #[arg(long = "container")]
    pub containers: Vec<String>,
    /// Proxmox VE release to answer as, MAJOR.MINOR (before 8.1 a config's memory is a number)
    #[arg(long = "pve-release", default_value = "9.1")]
    pub release: String,
    /// Serve HTTPS with a self-signed certificate, written to --ca-file for clients to trust
    #[arg(long)]
    pub tls: bool,
    /// Where --tls writes the certificate clients should trust
    #[arg(long, default_value = "proxfleet-sim-ca.pem", requires = "tls")]
    pub ca_file: std::path::PathBuf,
}

fn parse_scale(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(scale) if scale.is_finite() && scale >= 0.0 => Ok(scale),
        _ => Err(format!("'{text}' is not a non-negative number")),
    }
}
