//! Saved plans (`plan --out FILE`, `apply FILE`): the plan as `plan --json` prints it, plus a
//! `saved` object recording what it was computed from: the spec file and a sha256 of its bytes
//! (and of the SSH key files it reads), the targeting request, and fingerprints of the cluster
//! (the config digest, lock and power state of each VM the plan depends on; the image volumes
//! seen). At apply time the same things are taken again; anything that differs makes the plan
//! stale.
//!
//! Pure: reading and writing the file, hashing files and observing the cluster are the
//! commands' job. Secrets never reach the file: plans show `(sensitive)` for passwords, the API
//! token is not part of any plan, and password files are deliberately not hashed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::graph::{DesiredGraph, Resource};
use crate::ownership::ResourceKey;
use crate::plan::{Action, Change, Conflict, Operation, PLAN_FORMAT_VERSION, Plan};
use crate::state::ActualState;
use crate::target::Request;

/// A plan file: the plan (flattened, so the file reads as `plan --json` output) and what it
/// was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// The plan.
    #[serde(flatten)]
    pub plan: Plan,
    /// What the plan was computed from.
    pub saved: Provenance,
}

/// What a saved plan was computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The proxfleet version that made the plan (informational).
    pub proxfleet_version: String,
    /// The spec file and the files it references.
    pub spec: SpecFingerprint,
    /// `--target`, `--only`, `--skip`, `--replace`, to make the same plan again.
    #[serde(default)]
    pub request: Request,
    /// The cluster as the plan saw it.
    pub cluster: ClusterFingerprint,
}

/// A file and the sha256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFingerprint {
    /// The path as given (relative paths are relative to the directory `plan` ran in).
    pub path: String,
    /// Lower-case hex sha256 of the file's bytes.
    pub sha256: String,
}

/// The spec file and the files it read (SSH key files; never password files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecFingerprint {
    /// The spec file.
    #[serde(flatten)]
    pub file: FileFingerprint,
    /// Files it references.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<FileFingerprint>,
}

/// One VM the plan depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmFingerprint {
    /// VM id.
    pub vmid: u32,
    /// Node.
    pub node: String,
    /// Name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The resource it is, when this project owns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<crate::ownership::ResourceKey>,
    /// Proxmox's config digest (sha1 of the config file).
    pub digest: String,
    /// Config lock (`backup`, `clone`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// Power state.
    pub running: bool,
}

/// An image-storage volume the plan saw.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VolumeFingerprint {
    /// Node it was listed on.
    pub node: String,
    /// Volume id.
    pub volid: String,
}

/// What the plan was computed from in the cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFingerprint {
    /// The project's VMs and any VM holding a vmid or name the spec wants, by vmid.
    pub vms: Vec<VmFingerprint>,
    /// The spec's image volumes and earlier copies of them.
    pub volumes: Vec<VolumeFingerprint>,
}

impl ClusterFingerprint {
    /// The fingerprint of what a plan for `desired` depends on in an observation: the
    /// project's own VMs, any VM holding a vmid or name the spec wants (a VM that moves into
    /// the way later shows up as new), and the volumes that are the spec's images or earlier
    /// copies of them. Other projects and other files do not make a plan stale.
    pub fn of(actual: &ActualState, desired: &DesiredGraph) -> ClusterFingerprint {
        let project = desired.project.as_str();
        let mut vmids = BTreeSet::new();
        let mut names = BTreeSet::new();
        let mut images = Vec::new();
        for resource in desired.in_order() {
            match resource {
                Resource::Vm(vm) => {
                    vmids.insert(vm.vmid);
                    names.insert(vm.name.as_str());
                }
                Resource::Image(image) => images.push(image),
            }
        }
        let vms = actual
            .vms
            .values()
            .filter(|vm| {
                vm.marker.as_ref().is_some_and(|m| m.project == project)
                    || vmids.contains(&vm.vmid)
                    || vm.name.as_deref().is_some_and(|name| names.contains(name))
            })
            .map(|vm| VmFingerprint {
                vmid: vm.vmid,
                node: vm.node.clone(),
                name: vm.name.clone(),
                key: vm
                    .marker
                    .as_ref()
                    .filter(|m| m.project == project)
                    .map(|m| m.key.clone()),
                digest: vm.fingerprint.clone(),
                lock: vm.lock.clone(),
                running: vm.running,
            })
            .collect();
        let volumes = actual
            .volumes
            .values()
            .filter(|vol| {
                images.iter().any(|image| {
                    image.node == vol.node
                        && (image.volid == vol.volid || image.image.is_stale_copy(&vol.volid))
                })
            })
            .map(|vol| VolumeFingerprint {
                node: vol.node.clone(),
                volid: vol.volid.clone(),
            })
            .collect();
        ClusterFingerprint { vms, volumes }
    }
}

/// Lower-case hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Why a saved plan cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    /// Not JSON at all (perhaps a spec).
    #[error(
        "it is not a saved plan (not JSON: {0}); to apply a spec, run `proxfleet apply -f FILE`"
    )]
    NotJson(serde_json::Error),
    /// JSON from another format version.
    #[error(
        "it has plan format version {found}, and this proxfleet reads version {PLAN_FORMAT_VERSION}: make the plan again with `proxfleet plan --out`"
    )]
    Version {
        /// The file's version.
        found: String,
    },
    /// Plan JSON without the `saved` record (`plan --json` output).
    #[error(
        "it is a plan without the record of what it was computed from (`plan --json` output?); make it with `proxfleet plan --out FILE`"
    )]
    NotSaved,
    /// The right version but the wrong shape.
    #[error("it is not a valid saved plan: {0}")]
    Shape(serde_json::Error),
}

impl SavedPlan {
    /// The file's text: pretty JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .unwrap_or_else(|err| format!("{{\"error\": {:?}}}", err.to_string()));
        text.push('\n');
        text
    }

    /// Read a file's text, checking the format version before the shape.
    ///
    /// # Errors
    /// Not JSON, another format version, no `saved` record, or a malformed plan.
    pub fn from_json(text: &str) -> Result<SavedPlan, SavedPlanError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(SavedPlanError::NotJson)?;
        match value.get("format_version") {
            Some(serde_json::Value::Number(n))
                if n.as_u64() == Some(u64::from(PLAN_FORMAT_VERSION)) => {}
            other => {
                return Err(SavedPlanError::Version {
                    found: other.map_or_else(|| "(none)".to_string(), ToString::to_string),
                });
            }
        }
        if value.get("saved").is_none() {
            return Err(SavedPlanError::NotSaved);
        }
        serde_json::from_value(value).map_err(SavedPlanError::Shape)
    }
}

/// One way in which the world moved since a plan was saved (`render` says it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// A file the plan was computed from has other bytes now.
    FileChanged {
        /// The file as the plan recorded it.
        saved: FileFingerprint,
        /// Lower-case hex sha256 of its bytes now.
        now: String,
    },
    /// A file the plan was computed from cannot be read.
    FileUnreadable {
        /// The path as recorded.
        path: String,
        /// Why.
        error: String,
    },
    /// The saved `--target` or `--replace` addresses name nothing now.
    UnknownAddresses(crate::target::UnknownAddresses),
    /// A VM the plan depends on no longer exists.
    VmGone(VmFingerprint),
    /// A VM the plan would depend on appeared.
    VmAppeared(VmFingerprint),
    /// A VM the plan depends on moved (as it was saved, and how).
    VmMoved(VmFingerprint, Vec<VmMove>),
    /// A volume the plan saw no longer exists.
    VolumeGone(VolumeFingerprint),
    /// A volume appeared.
    VolumeAppeared(VolumeFingerprint),
    /// The plan made now has no change for a resource the saved one changes.
    ChangeDropped {
        /// The resource.
        key: ResourceKey,
        /// What the saved plan does to it.
        action: Action,
    },
    /// The plan made now changes a resource the saved one leaves alone.
    ChangeAdded {
        /// The resource.
        key: ResourceKey,
        /// What the plan made now does to it.
        action: Action,
    },
    /// The plan made now does something else to a resource.
    ActionChanged {
        /// The resource.
        key: ResourceKey,
        /// Saved.
        old: Action,
        /// Now.
        new: Action,
    },
    /// The plan made now changes a resource otherwise.
    OperationsDiffer {
        /// The resource.
        key: ResourceKey,
        /// The operations in one of the two plans and not the other.
        operations: Vec<Operation>,
    },
    /// The plan made now has a conflict the saved one did not.
    NowConflicts(Conflict),
    /// The plans differ in nothing named above.
    PlanDiffers,
}

/// How a VM a saved plan depends on moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmMove {
    /// To another node.
    Node {
        /// Saved.
        from: String,
        /// Now.
        to: String,
    },
    /// Its configuration changed.
    Config {
        /// Saved digest.
        old: String,
        /// Digest now.
        new: String,
    },
    /// Its lock changed (`None`: unlocked).
    Lock {
        /// Saved.
        old: Option<String>,
        /// Now.
        new: Option<String>,
    },
    /// It was started (else stopped).
    Power {
        /// Running now.
        running: bool,
    },
    /// Its ownership marker changed while its configuration did not.
    Ownership,
}

/// How a VM moved between two fingerprints of it.
fn vm_moves(old: &VmFingerprint, new: &VmFingerprint) -> Vec<VmMove> {
    let mut moves = Vec::new();
    if old.node != new.node {
        moves.push(VmMove::Node {
            from: old.node.clone(),
            to: new.node.clone(),
        });
    }
    if old.digest != new.digest {
        moves.push(VmMove::Config {
            old: old.digest.clone(),
            new: new.digest.clone(),
        });
    }
    if old.lock != new.lock {
        moves.push(VmMove::Lock {
            old: old.lock.clone(),
            new: new.lock.clone(),
        });
    }
    if old.running != new.running {
        moves.push(VmMove::Power {
            running: new.running,
        });
    }
    if old.key != new.key && old.digest == new.digest {
        moves.push(VmMove::Ownership);
    }
    moves
}

/// How the cluster moved between two fingerprints, VM by VM, then volume by volume.
pub fn cluster_drift(saved: &ClusterFingerprint, now: &ClusterFingerprint) -> Vec<Drift> {
    let before: BTreeMap<u32, &VmFingerprint> = saved.vms.iter().map(|vm| (vm.vmid, vm)).collect();
    let after: BTreeMap<u32, &VmFingerprint> = now.vms.iter().map(|vm| (vm.vmid, vm)).collect();
    let mut drift = Vec::new();
    let vmids: BTreeSet<u32> = before.keys().chain(after.keys()).copied().collect();
    for vmid in vmids {
        match (before.get(&vmid), after.get(&vmid)) {
            (Some(old), None) => drift.push(Drift::VmGone((*old).clone())),
            (None, Some(new)) => drift.push(Drift::VmAppeared((*new).clone())),
            (Some(old), Some(new)) => {
                let moves = vm_moves(old, new);
                if !moves.is_empty() {
                    drift.push(Drift::VmMoved((*old).clone(), moves));
                }
            }
            (None, None) => {}
        }
    }
    let old_volumes: BTreeSet<&VolumeFingerprint> = saved.volumes.iter().collect();
    let new_volumes: BTreeSet<&VolumeFingerprint> = now.volumes.iter().collect();
    for gone in old_volumes.difference(&new_volumes) {
        drift.push(Drift::VolumeGone((*gone).clone()));
    }
    for new in new_volumes.difference(&old_volumes) {
        drift.push(Drift::VolumeAppeared((*new).clone()));
    }
    drift
}

/// How the plan made now differs from the saved one, resource by resource.
pub fn plan_drift(saved: &Plan, now: &Plan) -> Vec<Drift> {
    let before: BTreeMap<String, &Change> = saved
        .changes
        .iter()
        .map(|c| (c.key.to_string(), c))
        .collect();
    let after: BTreeMap<String, &Change> =
        now.changes.iter().map(|c| (c.key.to_string(), c)).collect();
    let mut drift = Vec::new();
    let mut keys: Vec<&String> = before.keys().chain(after.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let item = match (before.get(key), after.get(key)) {
            (Some(old), None) => Drift::ChangeDropped {
                key: old.key.clone(),
                action: old.action,
            },
            (None, Some(new)) => Drift::ChangeAdded {
                key: new.key.clone(),
                action: new.action,
            },
            (Some(old), Some(new)) if old.action != new.action => Drift::ActionChanged {
                key: old.key.clone(),
                old: old.action,
                new: new.action,
            },
            (Some(old), Some(new)) if old != new => Drift::OperationsDiffer {
                key: old.key.clone(),
                operations: old
                    .operations
                    .iter()
                    .chain(&new.operations)
                    .filter(|op| !(old.operations.contains(op) && new.operations.contains(op)))
                    .cloned()
                    .collect(),
            },
            _ => continue,
        };
        drift.push(item);
    }
    for conflict in &now.conflicts {
        if !saved.conflicts.contains(conflict) {
            drift.push(Drift::NowConflicts(conflict.clone()));
        }
    }
    if drift.is_empty() && saved != now {
        drift.push(Drift::PlanDiffers);
    }
    drift
}
