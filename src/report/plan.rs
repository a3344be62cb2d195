//! `plan --json`: the plan as data, with the counts a script would otherwise tally and, beside
//! an operation's values as Proxmox writes them, the same values as machine values where
//! Proxmox's form needs decoding (SSH keys URL-encoded, sizes with units). The saved plan file
//! keeps the plain `Plan` form: these additions are for reading, never read back.

use schemars::JsonSchema;
use serde::Serialize;

use crate::ownership::ResourceKey;
use crate::plan::{
    Action, Change, Conflict, KeptBuild, Operation, PendingReboot, Plan, Reason, RolloutStep,
    Targeting,
};
use crate::qemu_config::propstr::{decode_sshkeys, disk_size_bytes};

/// `plan --json`: the plan's data (as a saved plan holds it), its counts, and machine values
/// beside Proxmox's in its operations.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PlanDocument {
    /// Version of the plan's format.
    pub format_version: u32,
    /// The spec's project.
    pub project: String,
    /// Changes, in an order that respects `depends_on`.
    pub changes: Vec<ChangeDocument>,
    /// Resources already as desired.
    pub unchanged: usize,
    /// Blocking conflicts; a plan with any cannot be applied.
    pub conflicts: Vec<Conflict>,
    /// What the plan was limited to, when it is partial (`--target`, `--only`, `--skip`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub targeting: Option<Targeting>,
    /// Running VMs with managed options that take effect only at their next boot.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingReboot>,
    /// Older template builds kept because clones made from them remain.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_builds: Vec<KeptBuild>,
    /// The summary line's counts (a replacement counts once in `add` and once in `destroy`).
    pub counts: Counts,
}

/// How many resources a plan adds, changes in place and destroys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Counts {
    /// To add (creations and replacements).
    pub add: usize,
    /// To change in place.
    pub change: usize,
    /// To destroy (deletions and replacements).
    pub destroy: usize,
}

/// One change of a plan.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ChangeDocument {
    /// The resource.
    pub key: ResourceKey,
    /// What happens to it.
    pub action: Action,
    /// VM id (VMs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    /// Node the change runs on.
    pub node: String,
    /// What is done, in order.
    pub operations: Vec<OperationDocument>,
    /// Why (replacements, adoptions, reboots of what waited from before).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// Changes in this plan that must finish first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<ResourceKey>,
    /// The clone's place in a rollout to a new template build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStep>,
}

/// One operation: its typed form (`op` and its fields, as in a saved plan) and its machine
/// values.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct OperationDocument {
    /// The operation.
    #[serde(flatten)]
    pub operation: Operation,
    /// The same values, decoded.
    #[serde(flatten)]
    pub values: MachineValues,
}

/// An operation's values in the form a program wants, present only where Proxmox's form needs
/// decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct MachineValues {
    /// `sshkeys`: the observed keys, one per entry (Proxmox keeps them URL-encoded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_keys: Option<Vec<String>>,
    /// `sshkeys`: the desired keys, one per entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_keys: Option<Vec<String>>,
    /// A size's observed value in bytes (a disk's `20G`, `memory` and `balloon` in MiB).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_bytes: Option<u64>,
    /// A size's desired value in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_bytes: Option<u64>,
}

impl PlanDocument {
    /// The document of a plan.
    pub fn of(plan: &Plan) -> PlanDocument {
        // Every field named, so that a field added to `Plan` is a compile error here rather
        // than a key silently missing from the JSON.
        let Plan {
            format_version,
            project,
            changes,
            unchanged,
            conflicts,
            targeting,
            pending,
            kept_builds,
        } = plan;
        let (add, change, destroy) = plan.counts();
        PlanDocument {
            format_version: *format_version,
            project: project.clone(),
            changes: changes.iter().map(ChangeDocument::of).collect(),
            unchanged: *unchanged,
            conflicts: conflicts.clone(),
            targeting: targeting.clone(),
            pending: pending.clone(),
            kept_builds: kept_builds.clone(),
            counts: Counts {
                add,
                change,
                destroy,
            },
        }
    }
}

impl ChangeDocument {
    /// The document of a change.
    pub fn of(change: &Change) -> ChangeDocument {
        let Change {
            key,
            action,
            vmid,
            node,
            operations,
            reasons,
            depends_on,
            rollout,
        } = change;
        ChangeDocument {
            key: key.clone(),
            action: *action,
            vmid: *vmid,
            node: node.clone(),
            operations: operations.iter().map(OperationDocument::of).collect(),
            reasons: reasons.clone(),
            depends_on: depends_on.clone(),
            rollout: rollout.clone(),
        }
    }
}

impl OperationDocument {
    /// The document of an operation.
    pub fn of(operation: &Operation) -> OperationDocument {
        OperationDocument {
            operation: operation.clone(),
            values: MachineValues::of(operation),
        }
    }
}

/// Options whose value is a size in MiB (`memory` may be `current=2048` since Proxmox VE 8.1).
const MIB_OPTIONS: [&str; 2] = ["memory", "balloon"];

impl MachineValues {
    /// The machine values of an operation (none for most).
    pub fn of(operation: &Operation) -> MachineValues {
        match operation {
            Operation::SetOption { name, old, new } => {
                option_values(name, old.as_deref(), Some(new))
            }
            Operation::DeleteOption { name, old } => option_values(name, Some(old), None),
            Operation::GrowDisk { old, new, .. } => MachineValues {
                old_bytes: old.as_deref().and_then(size_bytes),
                new_bytes: size_bytes(new),
                ..MachineValues::default()
            },
            _ => MachineValues::default(),
        }
    }
}

fn option_values(name: &str, old: Option<&str>, new: Option<&str>) -> MachineValues {
    if name == "sshkeys" {
        return MachineValues {
            old_keys: old.map(decode_sshkeys),
            new_keys: new.map(decode_sshkeys),
            ..MachineValues::default()
        };
    }
    if MIB_OPTIONS.contains(&name) {
        return MachineValues {
            old_bytes: old.and_then(mib_bytes),
            new_bytes: new.and_then(mib_bytes),
            ..MachineValues::default()
        };
    }
    MachineValues::default()
}

/// A disk size as Proxmox writes it (`20G`, `512M`, bytes without a unit) in bytes.
fn size_bytes(size: &str) -> Option<u64> {
    disk_size_bytes(&format!("size={size}"))
}

/// `2048` or `current=2048` (MiB) in bytes.
fn mib_bytes(value: &str) -> Option<u64> {
    let mib = value
        .split(',')
        .find_map(|part| match part.split_once('=') {
            Some(("current", number)) => Some(number),
            Some(_) => None,
            None => Some(part),
        })?;
    mib.trim().parse::<u64>().ok()?.checked_mul(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, old: Option<&str>, new: &str) -> MachineValues {
        MachineValues::of(&Operation::SetOption {
            name: name.into(),
            old: old.map(str::to_string),
            new: new.into(),
        })
    }

    #[test]
    fn ssh_keys_are_decoded_one_per_entry() {
        let values = set(
            "sshkeys",
            None,
            "ssh-ed25519%20AAAA%20a%40b%0Assh-rsa%20BBBB%20c%40d",
        );
        assert_eq!(
            values.new_keys,
            Some(vec![
                "ssh-ed25519 AAAA a@b".to_string(),
                "ssh-rsa BBBB c@d".to_string()
            ])
        );
        assert_eq!(values.old_keys, None);
    }

    #[test]
    fn sizes_are_given_in_bytes() {
        let grow = MachineValues::of(&Operation::GrowDisk {
            slot: "scsi0".into(),
            old: Some("2G".into()),
            new: "20G".into(),
        });
        assert_eq!(grow.old_bytes, Some(2 << 30));
        assert_eq!(grow.new_bytes, Some(20 << 30));
        let memory = set("memory", Some("current=1024"), "2048");
        assert_eq!(memory.old_bytes, Some(1 << 30));
        assert_eq!(memory.new_bytes, Some(2 << 30));
        assert_eq!(set("cores", None, "2"), MachineValues::default());
    }

    #[test]
    fn the_document_adds_counts_and_keeps_every_key_of_the_plan() {
        let plan = Plan {
            format_version: crate::plan::PLAN_FORMAT_VERSION,
            project: "demo".into(),
            changes: vec![Change {
                key: "clone.web-1".parse().expect("key"),
                action: Action::Create,
                vmid: Some(201),
                node: "pve1".into(),
                operations: vec![Operation::GrowDisk {
                    slot: "scsi0".into(),
                    old: None,
                    new: "10G".into(),
                }],
                reasons: Vec::new(),
                depends_on: Vec::new(),
                rollout: None,
            }],
            unchanged: 1,
            conflicts: Vec::new(),
            targeting: None,
            pending: Vec::new(),
            kept_builds: Vec::new(),
        };
        let plain = serde_json::to_value(&plan).expect("plan");
        let document = serde_json::to_value(PlanDocument::of(&plan)).expect("document");
        for (key, value) in plain.as_object().expect("object") {
            if key != "changes" {
                assert_eq!(&document[key], value, "{key}");
            }
        }
        assert_eq!(
            document["counts"],
            serde_json::json!({"add": 1, "change": 0, "destroy": 0})
        );
        let operation = &document["changes"][0]["operations"][0];
        assert_eq!(operation["op"], "grow_disk");
        assert_eq!(operation["new"], "10G");
        assert_eq!(operation["new_bytes"], 10u64 << 30);
        assert_eq!(document["changes"][0]["vmid"], 201);
    }
}
