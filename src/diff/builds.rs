//! Template builds side by side (`builds: N` on a template): a changed recipe or image makes a
//! new build at the next free vmid of the template's range, beside the old one; an old build
//! is kept while clones made from it remain (their markers say which build, `from=`) and
//! deleted once the last one is gone. Clones follow by their policy: `keep` stays on its
//! build, `replace` is made again from the newest build in batches of `max_unavailable`, each
//! batch waiting for the one before it to be found healthy.
//!
//! A build's key is the template's own for the first build and `template.NAME#N` after it
//! (`ResourceKey::build`), so the rest of the differ, claims and deletions see each build as
//! one resource.

use std::collections::{BTreeMap, BTreeSet};

use crate::graph::{ClonePolicy, DesiredGraph, DesiredVm, Recipe, Resource};
use crate::ownership::{Marker, ResourceKey, ResourceKind};
use crate::plan::{
    Action, Change, Conflict, KeptBuild, NamedVm, Operation, PowerState, Problem, Reason,
    RolloutStep,
};
use crate::spec::{Health, OnTemplateChange};
use crate::state::{ActualState, ActualVm};

use super::claims::Claims;
use super::creation::creation_operations;
use super::vm::VmDiff;

/// The build new clones of a template come from.
#[derive(Debug, Clone)]
pub(super) struct CurrentBuild {
    pub(super) key: ResourceKey,
    pub(super) number: u32,
    pub(super) vmid: u32,
}

/// A template with builds as the plan sees it: what is observed and which build is current.
pub(super) struct TemplateBuilds<'a> {
    /// `template.NAME`.
    pub(super) template: ResourceKey,
    /// Its observed builds, by number.
    pub(super) observed: BTreeMap<u32, &'a ActualVm>,
    /// The build new clones come from (made by this plan when `change` creates it).
    pub(super) current: CurrentBuild,
}

/// The desired VM of a build: the template's recipe at the build's key and vmid.
fn build_vm(template: &DesiredVm, number: u32, vmid: u32) -> DesiredVm {
    let mut vm = template.clone();
    vm.key = template.key.build(number);
    vm.vmid = vmid;
    if let Recipe::Build(build) = &mut vm.recipe {
        for (name, value) in &mut build.create_params {
            if name == "description" {
                *value = with_marker(value, |marker| {
                    marker.key = vm.key.clone();
                    marker.vmid = Some(vmid);
                });
            }
        }
    }
    vm
}

/// A description whose marker line `edit` changed.
fn with_marker(description: &str, edit: impl FnOnce(&mut Marker)) -> String {
    let Some(mut marker) = Marker::find(description) else {
        return description.to_string();
    };
    let line = marker.to_line();
    edit(&mut marker);
    description.replacen(&line, &marker.to_line(), 1)
}

/// The desired VM of a clone of a template with builds: made from `current`, its marker
/// naming `from`.
fn clone_vm(clone: &DesiredVm, current: &CurrentBuild, from: Option<&ResourceKey>) -> DesiredVm {
    let mut vm = clone.clone();
    if let Recipe::Clone(recipe) = &mut vm.recipe {
        recipe.template = current.key.clone();
        recipe.template_vmid = current.vmid;
    }
    if let Some(description) = vm.settings.get_mut("description") {
        *description = with_marker(description, |marker| marker.from = from.cloned());
    }
    vm
}

/// The next vmid of the range after `after` (wrapping) that nothing in the cluster holds.
fn next_free(template: &DesiredVm, count: u32, after: u32, actual: &ActualState) -> Option<u32> {
    let first = template.vmid;
    let start = after.saturating_sub(first) + 1;
    (0..count)
        .map(|step| first + (start + step) % count)
        .find(|vmid| !actual.vms.contains_key(vmid) && !actual.containers.contains_key(vmid))
}

/// Which build of `builds` a clone was made from: its marker's `from`, else (made before
/// builds were recorded) the build whose base disks a linked clone reads, else the first.
pub(super) fn build_of_clone(clone: &ActualVm, builds: &TemplateBuilds<'_>) -> Option<u32> {
    if let Some(from) = clone.marker.as_ref().and_then(|m| m.from.as_ref()) {
        return from
            .template_build()
            .filter(|(template, _)| *template == builds.template)
            .map(|(_, number)| number);
    }
    let linked_to = builds
        .observed
        .iter()
        .find(|(_, build)| clone.reads_base_of(build.vmid));
    Some(linked_to.map_or(1, |(number, _)| *number))
}

/// The plan for a template with builds: its change (an update of the current build, a new
/// build, or an unfinished build made again) and what the clones need to know.
pub(super) fn template_change<'a>(
    template: &DesiredVm,
    count: u32,
    claims: &Claims<'a>,
    compared: impl Fn(&DesiredVm, Option<&'a ActualVm>, bool) -> Result<Option<Change>, Box<Conflict>>,
    actual: &'a ActualState,
    forced: bool,
) -> (TemplateBuilds<'a>, Result<Option<Change>, Box<Conflict>>) {
    let observed: BTreeMap<u32, &ActualVm> = claims
        .owned
        .iter()
        .filter_map(|(key, vm)| {
            let (base, number) = key.template_build()?;
            (base == template.key).then_some((number, *vm))
        })
        .collect();
    let mut builds = TemplateBuilds {
        template: template.key.clone(),
        current: CurrentBuild {
            key: template.key.clone(),
            number: 1,
            vmid: template.vmid,
        },
        observed,
    };
    let Some((&newest, &newest_vm)) = builds.observed.iter().next_back() else {
        let result = compared(template, None, forced);
        return (builds, result);
    };
    builds.current = CurrentBuild {
        key: template.key.build(newest),
        number: newest,
        vmid: newest_vm.vmid,
    };
    let as_built = build_vm(template, newest, newest_vm.vmid);
    let change = match compared(&as_built, Some(newest_vm), forced) {
        Ok(Some(change))
            if change.action == Action::Replace && change.reasons != [Reason::BuildUnfinished] =>
        {
            change
        }
        other => return (builds, other),
    };
    // The build changed: a new one beside it.
    let number = newest + 1;
    let Some(vmid) = next_free(template, count, newest_vm.vmid, actual) else {
        // No room for another build: a newest build no clone was made from is made again in
        // its place.
        let used = claims.owned.iter().any(|(key, vm)| {
            key.kind == ResourceKind::Clone && build_of_clone(vm, &builds) == Some(newest)
        });
        if !used {
            return (builds, Ok(Some(change)));
        }
        let conflict = Conflict {
            key: template.key.clone(),
            problem: Problem::BuildRangeFull {
                first: template.vmid,
                last: template.vmid + count - 1,
            },
        };
        return (builds, Err(Box::new(conflict)));
    };
    let vm = build_vm(template, number, vmid);
    builds.current = CurrentBuild {
        key: vm.key.clone(),
        number,
        vmid,
    };
    let created = Change {
        key: vm.key.clone(),
        action: Action::Create,
        vmid: Some(vmid),
        node: vm.node.clone(),
        operations: creation_operations(&vm),
        reasons: change.reasons,
        depends_on: Vec::new(),
        rollout: None,
    };
    (builds, Ok(Some(created)))
}

/// The change of a clone of a template with builds: made from the current build; an existing
/// one on an older build is made again when its policy says `replace`, and otherwise compared
/// as it is (its marker's `from` kept).
pub(super) fn clone_change(
    diff: &VmDiff<'_>,
    builds: &TemplateBuilds<'_>,
) -> Result<Option<Change>, Box<Conflict>> {
    let clone = diff.vm;
    let current = &builds.current;
    let Some(observed) = diff.owned else {
        let vm = clone_vm(clone, current, Some(&current.key));
        return VmDiff { vm: &vm, ..*diff }.change();
    };
    let on = build_of_clone(observed, builds);
    let replace = clone
        .policy
        .as_ref()
        .is_some_and(|p| p.on_template_change == OnTemplateChange::Replace);
    if replace && on != Some(current.number) {
        let vm = clone_vm(clone, current, Some(&current.key));
        let mut change = VmDiff {
            vm: &vm,
            forced: true,
            ..*diff
        }
        .change()?;
        if let Some(change) = change.as_mut() {
            if !diff.forced {
                change.reasons.retain(|r| *r != Reason::ReplaceRequested);
            }
            change.reasons.push(Reason::TemplateBuildChanged {
                old: on,
                new: current.number,
            });
            add_health_check(change, &vm);
        }
        return Ok(change);
    }
    let from = observed.marker.as_ref().and_then(|m| m.from.as_ref());
    let vm = clone_vm(clone, current, from);
    let change = VmDiff { vm: &vm, ..*diff }.change()?;
    if change.as_ref().is_some_and(|c| c.action == Action::Replace) {
        // Made again for another reason: from the current build.
        let vm = clone_vm(clone, current, Some(&current.key));
        return VmDiff { vm: &vm, ..*diff }.change();
    }
    Ok(change)
}

/// A rollout's clone is checked healthy once started (unless `health: none`).
fn add_health_check(change: &mut Change, vm: &DesiredVm) {
    let Some(policy) = &vm.policy else { return };
    if policy.rollout.health != Health::Agent || !vm.running {
        return;
    }
    let check = Operation::CheckHealth {
        address: vm.static_address(),
        timeout_secs: policy.rollout.timeout.as_secs(),
    };
    let after_start = change.operations.iter().position(|op| {
        matches!(
            op,
            Operation::Power {
                new: PowerState::Running,
                ..
            }
        )
    });
    match after_start {
        Some(idx) => change.operations.insert(idx + 1, check),
        None => change.operations.push(check),
    }
}

/// Batches: each rollout group's replacements (in plan order) in batches of its
/// `max_unavailable`, each batch depending on the whole batch before it.
/// A clone of a group being rolled out that is made anew (a killed rollout deleted it before
/// its replacement was made) goes first, and is checked like the others.
pub(super) fn batch_rollouts(changes: &mut [Change], desired: &DesiredGraph) {
    let rolling: BTreeSet<&str> = changes
        .iter()
        .filter(|c| is_rolled(c))
        .filter_map(|c| policy_of(desired, &c.key).map(|(p, _)| p.group.as_str()))
        .collect();
    let remade: Vec<usize> = (0..changes.len())
        .filter(|&idx| {
            let change = &changes[idx];
            change.action == Action::Create
                && policy_of(desired, &change.key).is_some_and(|(policy, _)| {
                    policy.on_template_change == OnTemplateChange::Replace
                        && rolling.contains(policy.group.as_str())
                })
        })
        .collect();
    for &idx in &remade {
        if let Some((_, vm)) = policy_of(desired, &changes[idx].key) {
            add_health_check(&mut changes[idx], vm);
        }
    }
    let rolled: Vec<usize> = (0..changes.len())
        .filter(|&idx| is_rolled(&changes[idx]))
        .collect();
    let mut groups: BTreeMap<String, (usize, Vec<usize>)> = BTreeMap::new();
    for idx in remade.into_iter().chain(rolled) {
        let Some((policy, _)) = policy_of(desired, &changes[idx].key) else {
            continue;
        };
        // Clones declared alone each give their own: the smallest holds.
        let size = policy.rollout.max_unavailable.batch_size(policy.group_size);
        let entry = groups
            .entry(policy.group.clone())
            .or_insert((size, Vec::new()));
        entry.0 = entry.0.min(size);
        entry.1.push(idx);
    }
    for (group, (size, members)) in groups {
        let batches: Vec<&[usize]> = members.chunks(size).collect();
        let total = batches.len();
        let mut before: Vec<ResourceKey> = Vec::new();
        for (number, batch) in batches.iter().enumerate() {
            for &idx in *batch {
                let change = &mut changes[idx];
                for key in &before {
                    if !change.depends_on.contains(key) {
                        change.depends_on.push(key.clone());
                    }
                }
                change.rollout = Some(RolloutStep {
                    group: group.clone(),
                    batch: number + 1,
                    batches: total,
                });
            }
            before = batch.iter().map(|&idx| changes[idx].key.clone()).collect();
        }
    }
}

/// Whether a change makes a clone again from its template's new build.
fn is_rolled(change: &Change) -> bool {
    change
        .reasons
        .iter()
        .any(|r| matches!(r, Reason::TemplateBuildChanged { .. }))
}

/// A clone's policy, and the clone, as the spec has them.
fn policy_of<'d>(
    desired: &'d DesiredGraph,
    key: &ResourceKey,
) -> Option<(&'d ClonePolicy, &'d DesiredVm)> {
    match desired.get(key) {
        Some(Resource::Vm(vm)) => vm.policy.as_ref().map(|policy| (policy, vm)),
        _ => None,
    }
}

/// Old builds: deleted when no clone remains on them after the plan (after the clones that
/// leave them and after the current build is made), else kept and said so.
pub(super) fn old_builds(
    builds: &TemplateBuilds<'_>,
    claims: &Claims<'_>,
    changes: &[Change],
) -> (Vec<Change>, Vec<KeptBuild>) {
    let leaving: BTreeMap<&ResourceKey, Action> = changes
        .iter()
        .filter(|c| matches!(c.action, Action::Replace | Action::Delete))
        .map(|c| (&c.key, c.action))
        .collect();
    let planned: BTreeSet<&ResourceKey> = changes.iter().map(|c| &c.key).collect();
    let mut deleted = Vec::new();
    let mut kept = Vec::new();
    for (&number, build) in &builds.observed {
        if number == builds.current.number {
            continue;
        }
        let users: Vec<&ActualVm> = claims
            .owned
            .iter()
            .filter(|(key, _)| key.kind == ResourceKind::Clone)
            .map(|(_, vm)| *vm)
            .filter(|vm| build_of_clone(vm, builds) == Some(number))
            .collect();
        let (going, staying): (Vec<&ActualVm>, Vec<&ActualVm>) =
            users.into_iter().partition(|vm| {
                vm.marker
                    .as_ref()
                    .is_some_and(|m| leaving.contains_key(&m.key))
            });
        let key = builds.template.build(number);
        if staying.is_empty() {
            let mut depends_on: Vec<ResourceKey> = going
                .iter()
                .filter_map(|vm| vm.marker.as_ref().map(|m| m.key.clone()))
                .collect();
            if planned.contains(&builds.current.key) {
                depends_on.push(builds.current.key.clone());
            }
            deleted.push(Change {
                key,
                action: Action::Delete,
                vmid: Some(build.vmid),
                node: build.node.clone(),
                operations: Vec::new(),
                reasons: vec![Reason::BuildSuperseded {
                    build: number,
                    current: builds.current.number,
                }],
                depends_on,
                rollout: None,
            });
        } else {
            let linked = staying
                .iter()
                .filter(|vm| vm.reads_base_of(build.vmid))
                .count();
            kept.push(KeptBuild {
                key,
                build: number,
                vmid: build.vmid,
                clones: staying
                    .iter()
                    .map(|vm| NamedVm {
                        vmid: vm.vmid,
                        name: vm.name.clone(),
                    })
                    .collect(),
                linked,
            });
        }
    }
    (deleted, kept)
}

/// The resource a change carries out: the spec's, at the build, vmid and template build the
/// plan chose (a template's later build, a clone made from the newest build). `None` for what
/// the spec no longer has.
pub fn resource_for_change(desired: &DesiredGraph, change: &Change) -> Option<Resource> {
    let mut resource = desired.owner_of(&change.key)?.clone();
    let Resource::Vm(vm) = &mut resource else {
        return Some(resource);
    };
    let made_with_builds = match &vm.recipe {
        Recipe::Build(_) => vm.builds.is_some(),
        Recipe::Clone(recipe) => matches!(
            desired.get(&recipe.template),
            Some(Resource::Vm(template)) if template.builds.is_some()
        ),
    };
    if !made_with_builds {
        return Some(resource);
    }
    vm.key = change.key.clone();
    if let Some(vmid) = change.vmid {
        vm.vmid = vmid;
    }
    for operation in &change.operations {
        match operation {
            Operation::CloneFrom {
                template,
                template_vmid,
                ..
            } => {
                if let Recipe::Clone(recipe) = &mut vm.recipe {
                    recipe.template = template.clone();
                    recipe.template_vmid = *template_vmid;
                }
            }
            Operation::SetOption { name, new, .. } if name == "description" => {
                match &mut vm.recipe {
                    Recipe::Build(build) => {
                        for (option, value) in &mut build.create_params {
                            if option == "description" {
                                *value = new.clone();
                            }
                        }
                    }
                    Recipe::Clone(_) => {
                        vm.settings.insert(name.clone(), new.clone());
                    }
                }
            }
            _ => {}
        }
    }
    Some(resource)
}
