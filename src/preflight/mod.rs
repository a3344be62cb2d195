//! Preflight checks: before anything is observed or changed, prove that the cluster can take
//! the spec, and list every problem at once with what to do about it. The API answers and its
//! release has the features the spec uses; the nodes exist and are online; the storages exist,
//! are enabled and active and hold the content types they are used for, with room for the disks
//! of the VMs still to be made; the bridges exist (VLAN-capable where a tag is set); the PCI
//! mappings exist with a device on each node; the API token holds every privilege on every
//! path; no VM proxfleet does not own sits on a desired vmid.
//!
//! Three layers, as everywhere in proxfleet: `needs` derives what the spec needs (pure),
//! `gather` asks the cluster (read-only, concurrent under a bound), `evaluate` compares the two
//! into a `Report` (pure), which `text` and `json` render.

mod evaluate;
mod gather;
mod needs;
mod render;

use schemars::JsonSchema;
use serde::Serialize;

use crate::graph::DesiredGraph;
use crate::pve::PveClient;
use crate::spec::Spec;

pub use evaluate::evaluate;
pub use gather::{Facts, gather};
pub use needs::{Needs, option_privileges};
pub use render::{failures_text, summary, text};

/// The name of the role the privilege hints grant (created once with `pveum role add`).
pub const ROLE: &str = "Proxfleet";

/// What a check is about; the report lists the groups in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// The API and its version.
    Api,
    /// Nodes.
    Nodes,
    /// Storages and content types.
    Storages,
    /// Free space for new disks.
    Space,
    /// Bridges and VLANs.
    Bridges,
    /// PCI resource mappings.
    PciMappings,
    /// The API token's privileges.
    Privileges,
    /// Desired vmids.
    Vmids,
    /// SSH to the nodes that get cloud-init snippets.
    Ssh,
}

impl Group {
    /// Every group, in report order.
    pub const ALL: [Group; 9] = [
        Group::Api,
        Group::Nodes,
        Group::Storages,
        Group::Space,
        Group::Bridges,
        Group::PciMappings,
        Group::Privileges,
        Group::Vmids,
        Group::Ssh,
    ];

    /// The heading.
    pub fn title(self) -> &'static str {
        match self {
            Group::Api => "API",
            Group::Nodes => "Nodes",
            Group::Storages => "Storages",
            Group::Space => "Free space",
            Group::Bridges => "Bridges",
            Group::PciMappings => "PCI mappings",
            Group::Privileges => "Privileges",
            Group::Vmids => "VM ids",
            Group::Ssh => "SSH",
        }
    }
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// It holds.
    Pass,
    /// It holds, with something worth knowing.
    Warn,
    /// It does not hold: plan and apply stop.
    Fail,
    /// Not checked (nothing to check, or what it depends on failed).
    Skip,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Check {
    /// Group.
    pub group: Group,
    /// Outcome.
    pub status: Status,
    /// What was checked, e.g. `local-lvm on pve1`.
    pub subject: String,
    /// What was found.
    pub message: String,
    /// Context: who needs it, what each missing privilege is for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// What to do, most direct first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

/// Every check's result, grouped in `Group::ALL` order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The checks.
    pub checks: Vec<Check>,
}

impl Report {
    /// Checks with this status.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// Whether no check failed.
    pub fn ok(&self) -> bool {
        self.count(Status::Fail) == 0
    }
}

/// Derive what the spec needs, ask the cluster, and compare.
/// The nodes that get cloud-init snippets (`delivery: snippets`), each with its storage.
pub fn snippet_nodes(spec: &Spec) -> std::collections::BTreeSet<String> {
    let desired = DesiredGraph::build(spec);
    desired
        .in_order()
        .filter_map(|resource| match resource {
            crate::graph::Resource::Vm(vm) => vm
                .seed
                .as_deref()
                .filter(|plan| plan.is_snippets())
                .map(|_| vm.node.clone()),
            crate::graph::Resource::Image(_) => None,
        })
        .collect()
}

/// Add the SSH checks: for each node, whether it could be reached (its host key checked).
pub fn add_ssh_checks(report: &mut Report, reached: Vec<(String, Result<(), String>)>) {
    for (node, result) in reached {
        report.checks.push(match result {
            Ok(()) => Check {
                group: Group::Ssh,
                status: Status::Pass,
                subject: node,
                message: "reachable over SSH, host key as recorded".into(),
                details: Vec::new(),
                hints: Vec::new(),
            },
            Err(message) => Check {
                group: Group::Ssh,
                status: Status::Fail,
                subject: node.clone(),
                message,
                details: vec!["cloud-init snippets are written there over SFTP".into()],
                hints: vec![format!(
                    "check `defaults.ssh` (user, key, known_hosts, host for {node}), or use `delivery: iso`, which needs no SSH"
                )],
            },
        });
    }
}

pub async fn run(client: &PveClient, spec: &Spec) -> Report {
    let desired = DesiredGraph::build(spec);
    let needs = Needs::of(spec, &desired);
    let facts = gather(client, &needs).await;
    evaluate(&needs, &facts)
}
