//! Running VMs whose managed options wait for their next boot: those the plan changes and
//! those pending from before. With `--allow-reboot` each gets a reboot in its change (a change
//! is made for a VM that has none), which apply carries out after configuring it.

use std::collections::BTreeMap;

use crate::graph::{DesiredGraph, Resource};
use crate::ownership::ResourceKey;
use crate::plan::{Action, Change, Operation, PendingReboot, Reason};
use crate::state::ActualVm;

use super::PlanOptions;

/// The plan's pending reboots; adds the reboots to `changes` when `options.allow_reboot`.
pub(super) fn pending_reboots(
    desired: &DesiredGraph,
    owned_by_key: &BTreeMap<&ResourceKey, &ActualVm>,
    changes: &mut Vec<Change>,
    options: &PlanOptions,
) -> Vec<PendingReboot> {
    let mut out = Vec::new();
    // Each resource has at most one change: index them once (fleets are large).
    let by_key: BTreeMap<ResourceKey, usize> = changes
        .iter()
        .enumerate()
        .map(|(idx, c)| (c.key.clone(), idx))
        .collect();
    for resource in desired.in_order() {
        let Resource::Vm(vm) = resource else {
            continue;
        };
        let Some(current) = owned_by_key.get(&vm.key).copied() else {
            continue;
        };
        if !current.running || current.template {
            continue;
        }
        let change = match by_key.get(&vm.key) {
            Some(&idx) if changes[idx].action == Action::Update => Some(idx),
            Some(_) => continue, // replaced or deleted: a reboot is moot
            None => None,
        };
        let mut waiting: Vec<String> = change
            .map(|idx| {
                changes[idx]
                    .operations
                    .iter()
                    .filter_map(Operation::waits_for_boot)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        for option in &current.pending {
            if vm.settings.contains_key(option) && !waiting.contains(option) {
                waiting.push(option.clone());
            }
        }
        if waiting.is_empty() {
            continue;
        }
        if options.allow_reboot {
            let reboot = Operation::Reboot {
                options: waiting.clone(),
            };
            match change {
                Some(idx) => changes[idx].operations.push(reboot),
                None => changes.push(Change {
                    key: vm.key.clone(),
                    action: Action::Update,
                    vmid: Some(vm.vmid),
                    node: current.node.clone(),
                    operations: vec![reboot],
                    reasons: vec![Reason::PendingFromBefore],
                    depends_on: Vec::new(),
                    rollout: None,
                }),
            }
        }
        out.push(PendingReboot {
            key: vm.key.clone(),
            vmid: vm.vmid,
            options: waiting,
            reboot: options.allow_reboot,
        });
    }
    out
}
