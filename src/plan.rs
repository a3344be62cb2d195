//! A plan: the ordered list of changes that takes the cluster from what was observed to what the
//! spec asks for, as plain data (serialisable, rendered elsewhere, executed by `apply`).

use serde::{Deserialize, Serialize};

use crate::ownership::{ResourceKey, ResourceKind};

/// Version of the plan's JSON form (`plan --json` and saved plan files); bumped on any
/// incompatible change. Added optional fields do not bump it.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// What happens to a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Make it.
    Create,
    /// Change it in place.
    Update,
    /// Delete it and make it again.
    Replace,
    /// Delete it.
    Delete,
}

impl Action {
    /// Whether the action deletes something that exists.
    pub fn is_destructive(self) -> bool {
        matches!(self, Action::Replace | Action::Delete)
    }
}

/// One option's change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Proxmox option name (`memory`, `ipconfig0`) or `status` for the power state.
    pub name: String,
    /// Observed value; `None` when unset or the resource is new.
    pub old: Option<String>,
    /// Desired value; `None` when it is removed.
    pub new: Option<String>,
}

/// A change to one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The resource.
    pub key: ResourceKey,
    /// What happens.
    pub action: Action,
    /// VM id (VMs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    /// Node the change runs on.
    pub node: String,
    /// Option-level detail.
    pub fields: Vec<FieldChange>,
    /// Why (replacements and notable updates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// Changes in this plan that must finish first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ResourceKey>,
}

/// Something in the cluster that stops the plan from being applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conflict {
    /// The resource that cannot be reconciled.
    pub key: ResourceKey,
    /// What is in the way.
    pub message: String,
    /// What the user can do.
    pub hint: String,
}

/// An ordered plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// JSON format version.
    pub format_version: u32,
    /// Project.
    pub project: String,
    /// Changes, in an order that respects `depends_on`.
    pub changes: Vec<Change>,
    /// Resources already as desired.
    pub unchanged: usize,
    /// Blocking conflicts; a plan with any cannot be applied.
    pub conflicts: Vec<Conflict>,
    /// What the plan was limited to, when it is partial (`--target`, `--only`, `--skip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targeting: Option<Targeting>,
    /// Running VMs with managed options that take effect only at their next boot: changed by
    /// this plan, or pending from before. With `reboot`, apply reboots them (`--allow-reboot`);
    /// otherwise they stay pending and the plan says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingReboot>,
}

/// A running VM whose managed options wait for its next boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReboot {
    /// The VM.
    pub key: ResourceKey,
    /// VM id.
    pub vmid: u32,
    /// The options.
    pub options: Vec<String>,
    /// Whether apply reboots it (`--allow-reboot`).
    pub reboot: bool,
}

/// Which way a target reaches through the dependency graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// A target brings in what it depends on (plan, apply): a clone needs its template.
    Dependencies,
    /// A target brings in what depends on it (destroy): a template takes its clones with it.
    Dependants,
}

/// What a partial plan was limited to, so it can say so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targeting {
    /// `--target` addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<ResourceKey>,
    /// `--only` kinds (empty: every kind).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<ResourceKind>,
    /// `--skip` kinds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip: Vec<ResourceKind>,
    /// What a target brings in with it.
    pub reach: Reach,
}

impl Plan {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// (to add, to change, to destroy), counting a replacement as one add and one destroy.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut add = 0;
        let mut change = 0;
        let mut destroy = 0;
        for c in &self.changes {
            match c.action {
                Action::Create => add += 1,
                Action::Update => change += 1,
                Action::Replace => {
                    add += 1;
                    destroy += 1;
                }
                Action::Delete => destroy += 1,
            }
        }
        (add, change, destroy)
    }
}
