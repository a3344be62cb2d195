//! Deleting what the project owns: what the spec no longer asks for (in every plan) and
//! everything (`destroy`). Clones go first, then templates, then images, each later kind
//! waiting for every deletion of the kinds before it.

use crate::graph::{DesiredGraph, Resource};
use crate::ownership::{ResourceKey, ResourceKind};
use crate::plan::{Action, Change, Operation, PLAN_FORMAT_VERSION, Plan, PowerState};
use crate::state::ActualState;

use super::PlanOptions;
use super::claims::Claims;
use super::images::image_copies;

/// The plan that deletes everything this project owns (images only with `include_images`).
pub fn destroy(desired: &DesiredGraph, actual: &ActualState, include_images: bool) -> Plan {
    destroy_with(desired, actual, include_images, &PlanOptions::default())
}

/// The destroy plan, limited as `options` say (`replace` does not apply).
pub fn destroy_with(
    desired: &DesiredGraph,
    actual: &ActualState,
    include_images: bool,
    options: &PlanOptions,
) -> Plan {
    let claims = super::claims::Claims::of(actual, &desired.project);
    let mut changes = deletions(desired, actual, &claims, |_| true, |_| include_images);
    super::data_disks::parking_deletions(actual, &desired.project, &mut changes, |_| true);
    let mut conflicts = claims.conflicts();
    conflicts.extend(super::linked::linked_clone_conflicts(&changes, actual));
    let plan = Plan {
        format_version: PLAN_FORMAT_VERSION,
        project: desired.project.clone(),
        changes,
        unchanged: 0,
        conflicts,
        targeting: None,
        pending: Vec::new(),
        kept_builds: Vec::new(),
    };
    super::scope::restrict(plan, desired, options)
}

/// Delete changes for owned VMs selected by `wanted` and owned images selected by
/// `image_wanted`: clones, then templates, then images, each later kind depending on every
/// deletion of the kinds before it.
/// A key several VMs claim is deleted on none of them (see `claims`).
pub(super) fn deletions(
    desired: &DesiredGraph,
    actual: &ActualState,
    claims: &Claims<'_>,
    wanted: impl Fn(&ResourceKey) -> bool,
    image_wanted: impl Fn(&ResourceKey) -> bool,
) -> Vec<Change> {
    let project = desired.project.as_str();
    let mut out: Vec<Change> = Vec::new();
    for kind in [ResourceKind::Clone, ResourceKind::Template] {
        let before: Vec<ResourceKey> = out.iter().map(|c| c.key.clone()).collect();
        for vm in actual.owned_vms(project) {
            let Some(marker) = &vm.marker else { continue };
            let key = &marker.key;
            if key.kind != kind || !wanted(key) || claims.is_contested(key) {
                continue;
            }
            let mut operations = Vec::new();
            if vm.running {
                operations.push(Operation::Power {
                    old: Some(PowerState::Running),
                    new: PowerState::Stopped,
                });
            }
            out.push(Change {
                key: key.clone(),
                action: Action::Delete,
                vmid: Some(vm.vmid),
                node: vm.node.clone(),
                operations,
                reasons: Vec::new(),
                depends_on: before.clone(),
                rollout: None,
            });
        }
    }
    let before: Vec<ResourceKey> = out.iter().map(|c| c.key.clone()).collect();
    for resource in desired.in_order() {
        let Resource::Image(image) = resource else {
            continue;
        };
        if !image_wanted(&image.key) {
            continue;
        }
        let operations: Vec<Operation> = image_copies(image, actual)
            .into_iter()
            .map(|volid| Operation::DeleteVolume { volid })
            .collect();
        if operations.is_empty() {
            continue;
        }
        out.push(Change {
            key: image.key.clone(),
            action: Action::Delete,
            vmid: None,
            node: image.node.clone(),
            operations,
            reasons: Vec::new(),
            depends_on: before.clone(),
            rollout: None,
        });
    }
    out
}
