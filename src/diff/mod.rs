//! The differ: pure functions from (desired graph, observed state) to a plan. No I/O, no
//! printing, no failure: whatever the cluster looks like, the result is a plan, possibly with
//! conflicts that forbid applying it. The plan holds typed operations and reasons, never
//! prose: `render` words them.
//!
//! Only what the spec declares is compared. Values are compared semantically (`qemu_config`:
//! property strings parsed, tags as sets, SSH keys decoded), so Proxmox's re-printing is never
//! a difference. Images (`images`), VMs (`vm`, `adopt`, `creation`), which VM a key belongs to
//! (`claims`), deletions and `destroy` (`deletions`), templates linked clones still read from (`linked`), pending reboots
//! (`pending`) and partial plans (`scope`) each have their file.

mod adopt;
mod builds;
mod claims;
mod creation;
mod data_disks;
mod deletions;
mod images;
mod linked;
mod pending;
mod scope;
#[cfg(test)]
mod tests;
mod vm;

use std::collections::{BTreeMap, BTreeSet};

use crate::graph::{DesiredGraph, Recipe, Resource};
use crate::ownership::ResourceKey;
use crate::plan::{Action, PLAN_FORMAT_VERSION, Plan, Targeting};
use crate::state::{ActualState, ActualVm};

pub use builds::resource_for_change;
pub use deletions::{destroy, destroy_with};

/// What a plan covers and what it must replace regardless of drift: the command line's
/// `--target`, `--only`, `--skip` and `--replace`, resolved by `target::resolve`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// The resources the plan covers; `None` for all of them.
    pub scope: Option<BTreeSet<ResourceKey>>,
    /// Recorded in the plan when it is partial, so it says so.
    pub targeting: Option<Targeting>,
    /// Resources to replace even when they match the spec (`--replace`).
    pub replace: BTreeSet<ResourceKey>,
    /// Reboot running VMs whose managed changes wait for the next boot (`--allow-reboot`).
    pub allow_reboot: bool,
}

/// Compare the desired graph with the observed state.
pub fn diff(desired: &DesiredGraph, actual: &ActualState) -> Plan {
    diff_with(desired, actual, &PlanOptions::default())
}

/// Compare the desired graph with the observed state, limited and forced as `options` say.
pub fn diff_with(desired: &DesiredGraph, actual: &ActualState, options: &PlanOptions) -> Plan {
    let project = desired.project.as_str();
    let claims = claims::Claims::of(actual, project);
    let owned_by_key = &claims.owned;
    // VMs by name, once: a fleet among many VMs is not scanned per VM.
    let mut names: BTreeMap<&str, Vec<&ActualVm>> = BTreeMap::new();
    for vm in actual.vms.values() {
        if let Some(name) = vm.name.as_deref() {
            names.entry(name).or_default().push(vm);
        }
    }

    // Deletions first: what we own that the spec no longer asks for.
    // Images are only ever deleted by `destroy --include-images`: once out of the spec, nothing
    // says which files were its.
    // A template's later builds are the template's while it keeps builds (`owner_of`).
    let not_in_spec = |key: &ResourceKey| desired.owner_of(key).is_none();
    let mut changes = deletions::deletions(desired, actual, &claims, not_in_spec, |_| false);
    data_disks::parking_deletions(actual, project, &mut changes, not_in_spec);
    let parked = data_disks::parked_by_key(actual, project);
    let mut conflicts = claims.conflicts();
    let mut unchanged = 0;
    let mut planned: BTreeSet<ResourceKey> = changes.iter().map(|c| c.key.clone()).collect();
    // Templates with builds, by their key: which build is current, what is observed.
    let mut with_builds: BTreeMap<ResourceKey, builds::TemplateBuilds<'_>> = BTreeMap::new();
    for resource in desired.in_order() {
        let forced = options.replace.contains(resource.key());
        let change = match resource {
            Resource::Image(image) => images::diff_image(image, actual, forced),
            // Claimed by several VMs: not compared (its conflict is in the plan).
            Resource::Vm(desired_vm) if claims.is_contested(&desired_vm.key) => continue,
            Resource::Vm(desired_vm) => {
                let compared = vm::VmDiff {
                    vm: desired_vm,
                    owned: owned_by_key.get(&desired_vm.key).copied(),
                    actual,
                    names: &names,
                    project,
                    forced,
                    parked: parked
                        .get(&desired_vm.key)
                        .map(Vec::as_slice)
                        .unwrap_or_default(),
                };
                let template_builds = match &desired_vm.recipe {
                    Recipe::Clone(recipe) => with_builds.get(&recipe.template),
                    Recipe::Build(_) => None,
                };
                let result = if let Some(count) = desired_vm.builds {
                    let (builds, result) = builds::template_change(
                        desired_vm,
                        count,
                        &claims,
                        |vm, owned, forced| {
                            vm::VmDiff {
                                vm,
                                owned,
                                forced,
                                ..compared
                            }
                            .change()
                        },
                        actual,
                        forced,
                    );
                    with_builds.insert(desired_vm.key.clone(), builds);
                    result
                } else if let Some(builds) = template_builds {
                    builds::clone_change(&compared, builds)
                } else {
                    compared.change()
                };
                match result {
                    Ok(change) => change,
                    Err(conflict) => {
                        conflicts.push(*conflict);
                        None
                    }
                }
            }
        };
        match change {
            Some(mut change) => {
                // The spec's key: a template's later build depends on what the template does.
                change.depends_on = desired
                    .dependencies(resource.key())
                    .into_iter()
                    .map(|dep| match with_builds.get(&dep) {
                        // A clone of a template with builds waits for the current build.
                        Some(builds) => builds.current.key.clone(),
                        None => dep,
                    })
                    .filter(|dep| planned.contains(dep))
                    .collect();
                planned.insert(change.key.clone());
                changes.push(change);
            }
            None => unchanged += 1,
        }
    }

    // A replacement deletes first: it waits for the plan's deletions, which may be the linked
    // clones that read from a template being rebuilt.
    let deleted: Vec<ResourceKey> = changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| c.key.clone())
        .collect();
    for change in changes.iter_mut().filter(|c| c.action == Action::Replace) {
        for key in &deleted {
            if !change.depends_on.contains(key) {
                change.depends_on.push(key.clone());
            }
        }
    }
    builds::batch_rollouts(&mut changes, desired);
    let mut kept_builds = Vec::new();
    for builds in with_builds.values() {
        let (deleted, kept) = builds::old_builds(builds, &claims, &changes);
        changes.extend(deleted);
        kept_builds.extend(kept);
    }
    conflicts.extend(linked::linked_clone_conflicts(&changes, actual));
    let pending = pending::pending_reboots(desired, owned_by_key, &mut changes, options);
    let plan = Plan {
        format_version: PLAN_FORMAT_VERSION,
        project: project.to_string(),
        changes,
        unchanged,
        conflicts,
        targeting: None,
        pending,
        kept_builds,
    };
    scope::restrict(plan, desired, options)
}
