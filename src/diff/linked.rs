//! A template whose base disks linked clones still use cannot be deleted: Proxmox refuses
//! (`base volume … is still in use by linked cloned`). The plan says so before anything runs,
//! unless it deletes those clones too (deletions run first, clones before templates).

use std::collections::BTreeSet;

use crate::ownership::{ResourceKey, ResourceKind};
use crate::plan::{Action, Change, Conflict, NamedVm, Problem};
use crate::state::ActualState;

/// A conflict for each template `changes` delete or rebuild while VMs the plan keeps read
/// from its base disks.
pub(super) fn linked_clone_conflicts(changes: &[Change], actual: &ActualState) -> Vec<Conflict> {
    // Deletions run before everything else; a replaced clone is rebuilt only after its
    // template, too late.
    let going: BTreeSet<&ResourceKey> = changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| &c.key)
        .collect();
    let mut conflicts = Vec::new();
    for change in changes {
        if change.key.kind != ResourceKind::Template || !change.action.is_destructive() {
            continue;
        }
        let Some(template) = actual
            .vms
            .values()
            .find(|vm| vm.marker.as_ref().is_some_and(|m| m.key == change.key))
        else {
            continue;
        };
        // A template build deleted after its clones are made again waits for them.
        let going_first: BTreeSet<&ResourceKey> = change
            .depends_on
            .iter()
            .filter(|key| {
                changes
                    .iter()
                    .any(|c| &c.key == *key && c.action == Action::Replace)
            })
            .collect();
        let clones: Vec<NamedVm> = actual
            .vms
            .values()
            .filter(|vm| vm.vmid != template.vmid)
            .filter(|vm| vm.reads_base_of(template.vmid))
            .filter(|vm| {
                vm.marker
                    .as_ref()
                    .is_none_or(|m| !going.contains(&m.key) && !going_first.contains(&m.key))
            })
            .map(|vm| NamedVm {
                vmid: vm.vmid,
                name: vm.name.clone(),
            })
            .collect();
        if clones.is_empty() {
            continue;
        }
        conflicts.push(Conflict {
            key: change.key.clone(),
            problem: Problem::LinkedClonesRead {
                deleted: change.action == Action::Delete,
                clones,
            },
        });
    }
    conflicts
}
