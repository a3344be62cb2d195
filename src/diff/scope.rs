//! A partial plan (`--target`, `--only`, `--skip`): the changes and conflicts in scope, and a
//! conflict for each kept change that needs a resource the scope leaves out and that does not
//! exist yet or is being rebuilt (it could not succeed: better said now than halfway through).

use std::collections::{BTreeMap, BTreeSet};

use crate::graph::{DesiredGraph, Resource};
use crate::ownership::ResourceKey;
use crate::plan::{Action, Change, Conflict, PendingReboot, Plan, Problem, Reason};

use super::PlanOptions;

/// Keep only the changes and conflicts in `options.scope`.
pub(super) fn restrict(full: Plan, desired: &DesiredGraph, options: &PlanOptions) -> Plan {
    let Some(scope) = &options.scope else {
        return Plan {
            targeting: options.targeting.clone(),
            ..full
        };
    };
    let pending: Vec<PendingReboot> = full
        .pending
        .iter()
        .filter(|p| scope.contains(&p.key))
        .cloned()
        .collect();
    let (kept, left_out): (Vec<Change>, Vec<Change>) = full
        .changes
        .into_iter()
        .partition(|change| in_scope(scope, &change.key));
    let left_out: BTreeMap<ResourceKey, Action> = left_out
        .into_iter()
        .map(|change| (change.key, change.action))
        .collect();
    // A superseded template build is deleted after its clones leave it: not when the scope
    // leaves one of them on it.
    let kept: Vec<Change> = kept
        .into_iter()
        .filter(|change| {
            let superseded = change
                .reasons
                .iter()
                .any(|r| matches!(r, Reason::BuildSuperseded { .. }));
            !superseded || !change.depends_on.iter().any(|d| left_out.contains_key(d))
        })
        .collect();
    let kept = renumber_batches(kept);
    let kept_keys: BTreeSet<ResourceKey> = kept.iter().map(|c| c.key.clone()).collect();
    let mut conflicts: Vec<Conflict> = full
        .conflicts
        .into_iter()
        .filter(|conflict| scope.contains(&conflict.key))
        .collect();
    let kept_builds = full
        .kept_builds
        .into_iter()
        .filter(|kept| in_scope(scope, &kept.key))
        .collect();
    let mut changes = Vec::with_capacity(kept.len());
    for mut change in kept {
        change.depends_on.retain(|dep| kept_keys.contains(dep));
        if change.action != Action::Delete {
            conflicts.extend(left_out_dependencies(desired, &change.key, &left_out));
        }
        changes.push(change);
    }
    let unchanged = desired
        .in_order()
        .map(Resource::key)
        .filter(|key| {
            scope.contains(*key) && !kept_keys.contains(*key) && !left_out.contains_key(*key)
        })
        .count();
    Plan {
        format_version: full.format_version,
        project: full.project,
        changes,
        unchanged,
        conflicts,
        targeting: options.targeting.clone(),
        pending,
        kept_builds,
    }
}

/// A rollout's batches as the partial plan has them: numbered from 1 without the batches
/// left out.
fn renumber_batches(mut changes: Vec<Change>) -> Vec<Change> {
    let mut batches: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for step in changes.iter().filter_map(|c| c.rollout.as_ref()) {
        batches
            .entry(step.group.clone())
            .or_default()
            .insert(step.batch);
    }
    for step in changes.iter_mut().filter_map(|c| c.rollout.as_mut()) {
        if let Some(numbers) = batches.get(&step.group) {
            step.batch = numbers.iter().take_while(|&&n| n < step.batch).count() + 1;
            step.batches = numbers.len();
        }
    }
    changes
}

/// Whether the scope holds a key: a template's later builds are in it with the template.
fn in_scope(scope: &BTreeSet<ResourceKey>, key: &ResourceKey) -> bool {
    scope.contains(key) || scope.contains(&key.spec_key())
}

/// The conflicts of a kept change whose dependencies are made or rebuilt outside the scope.
fn left_out_dependencies(
    desired: &DesiredGraph,
    key: &ResourceKey,
    left_out: &BTreeMap<ResourceKey, Action>,
) -> Vec<Conflict> {
    let mut conflicts = Vec::new();
    for dep in desired.dependencies(key) {
        let Some(&dep_action) = left_out.get(&dep) else {
            continue;
        };
        if matches!(dep_action, Action::Update | Action::Delete) {
            continue;
        }
        conflicts.push(Conflict {
            key: key.clone(),
            problem: Problem::DependencyLeftOut {
                dependency: dep,
                action: dep_action,
            },
        });
    }
    conflicts
}
