//! Command-line types (clap). One `XxxArgs` per subcommand; no I/O here.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    /// Use the embedded simulated Proxmox VE cluster (state kept in .proxfleet/ here)
    #[arg(long, global = true, conflicts_with = "endpoint")]
    pub sim: bool,
    /// Proxmox VE API endpoint, e.g. https://pve1.example.com:8006
    #[arg(long, global = true, env = "PROXMOX_VE_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Skip TLS certificate verification (self-signed clusters without a CA file)
    #[arg(long, global = true, env = "PROXMOX_VE_INSECURE")]
    pub insecure: bool,
    /// PEM file with the CA that signed the cluster's certificate
    #[arg(long, global = true, env = "PROXMOX_VE_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// Log more (-v: info and request counts, -vv: debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a spec without contacting any cluster
    Validate(ValidateArgs),
    /// Show what apply would change
    Plan(PlanArgs),
    /// Change the cluster to match the spec
    Apply(ApplyArgs),
    /// Delete every VM (and with --include-images, image) this spec's project owns
    Destroy(DestroyArgs),
    /// Print the JSON Schema of the spec format
    Schema,
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

/// `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Spec file
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Print the plan as JSON
    #[arg(long)]
    pub json: bool,
}

/// `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Spec file
    #[command(flatten)]
    pub spec: SpecArgs,
    /// Apply without asking for confirmation
    #[arg(long)]
    pub auto_approve: bool,
    /// How many changes run at once
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
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
    /// Also delete the image volumes this project downloaded
    #[arg(long)]
    pub include_images: bool,
    /// How many changes run at once
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub parallelism: u16,
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
    /// User who may log in with a password (tickets + CSRF), USER@REALM:PASSWORD (repeatable)
    #[arg(long = "user")]
    pub users: Vec<String>,
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
