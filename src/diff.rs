//! The differ: pure functions from (desired graph, observed state) to a plan. No I/O, no
//! printing, no failure: whatever the cluster looks like, the result is a plan, possibly with
//! conflicts that forbid applying it.
//!
//! Only what the spec declares is compared. Values are compared semantically (property strings
//! parsed, tags as sets, SSH keys decoded), so Proxmox's re-printing is never a difference.

use std::collections::{BTreeMap, BTreeSet};

use crate::graph::{DesiredGraph, DesiredImage, DesiredVm, Recipe, Resource};
use crate::ownership::{ResourceKey, ResourceKind};
use crate::plan::{
    Action, Change, Conflict, FieldChange, PLAN_FORMAT_VERSION, PendingReboot, Plan, Targeting,
};
use crate::qemu_config;
use crate::qemu_config::propstr::{PropertyString, disk_size_bytes};
// Their old home, for the executor until it imports them from `qemu_config`.
pub use crate::qemu_config::{is_disk_option, same_value};
use crate::spec::DiskSize;
use crate::state::{ActualState, ActualVm};

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

/// Why a resource is replaced when the user asked for it.
pub const REPLACE_REQUESTED: &str = "replacement requested with --replace";

/// Compare the desired graph with the observed state.
pub fn diff(desired: &DesiredGraph, actual: &ActualState) -> Plan {
    diff_with(desired, actual, &PlanOptions::default())
}

/// Compare the desired graph with the observed state, limited and forced as `options` say.
pub fn diff_with(desired: &DesiredGraph, actual: &ActualState, options: &PlanOptions) -> Plan {
    let project = desired.project.as_str();
    let owned_by_key: BTreeMap<&ResourceKey, &ActualVm> = actual
        .owned_vms(project)
        .filter_map(|vm| vm.marker.as_ref().map(|m| (&m.key, vm)))
        .collect();

    let mut changes = Vec::new();
    let mut conflicts = Vec::new();
    let mut unchanged = 0;
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
    let not_in_spec = |key: &ResourceKey| desired.get(key).is_none();
    changes.extend(deletions(desired, actual, not_in_spec, |_| false));

    let mut planned: BTreeSet<ResourceKey> = changes.iter().map(|c| c.key.clone()).collect();
    for resource in desired.in_order() {
        let forced = options.replace.contains(resource.key());
        let change = match resource {
            Resource::Image(image) => diff_image(image, actual, forced),
            Resource::Vm(vm) => diff_vm(
                vm,
                owned_by_key.get(&vm.key).copied(),
                actual,
                &names,
                project,
                forced,
                &mut conflicts,
            ),
        };
        match change {
            Some(mut change) => {
                change.depends_on = desired
                    .dependencies(&change.key)
                    .into_iter()
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
    linked_clone_conflicts(&changes, actual, &mut conflicts);
    let pending = pending_reboots(desired, &owned_by_key, &mut changes, options);
    let plan = Plan {
        format_version: PLAN_FORMAT_VERSION,
        project: project.to_string(),
        changes,
        unchanged,
        conflicts,
        targeting: None,
        pending,
    };
    restrict(plan, desired, options)
}

/// Take over an unmanaged VM (`adopt: true`): the marker and tag are written and the declared
/// settings applied in place. An adoption never replaces: what would need a rebuild (a VM
/// that is not the template the spec says, a template whose options differ from its recipe) is
/// a conflict.
fn adopt(vm: &DesiredVm, occupant: &ActualVm, conflicts: &mut Vec<Conflict>) -> Option<Change> {
    let mut blockers = Vec::new();
    let mut fields = Vec::new();
    match &vm.recipe {
        Recipe::Build(build) => {
            if !occupant.template {
                blockers.push("it is not a template".to_string());
            }
            for (option, want) in &build.create_params {
                if is_disk_option(option) {
                    continue;
                }
                let seen = occupant.config.get(option.as_str());
                let same = same_value(option, seen.map(String::as_str), want);
                match option.as_str() {
                    // What adoption writes.
                    "description" | "tags" if !same => fields.push(FieldChange {
                        name: option.clone(),
                        old: seen.cloned(),
                        new: Some(want.clone()),
                    }),
                    "description" | "tags" | "name" => {}
                    _ if !same => blockers.push(format!(
                        "{option} is {}, the recipe says {want}",
                        seen.map_or("unset", String::as_str)
                    )),
                    _ => {}
                }
            }
        }
        Recipe::Clone(_) => {
            if occupant.template {
                blockers.push("it is a template, the spec wants a clone".to_string());
            }
            fields.extend(
                vm.settings
                    .iter()
                    .filter(|(option, want)| {
                        !same_value(
                            option,
                            occupant.config.get(option.as_str()).map(String::as_str),
                            want,
                        )
                    })
                    .map(|(option, want)| FieldChange {
                        name: option.clone(),
                        old: occupant.config.get(option).cloned(),
                        new: Some(want.clone()),
                    }),
            );
            if vm.running && !occupant.running {
                fields.push(FieldChange {
                    name: "status".into(),
                    old: Some("stopped".into()),
                    new: Some("running".into()),
                });
            }
        }
    }
    if occupant.node != vm.node {
        blockers.push(format!(
            "it is on node {}, the spec says {}",
            occupant.node, vm.node
        ));
    }
    if !blockers.is_empty() {
        conflicts.push(Conflict {
            key: vm.key.clone(),
            message: format!(
                "VM {} cannot be adopted as it is: {}",
                occupant.vmid,
                blockers.join("; ")
            ),
            hint: "make the spec describe the VM as it is (adoption never rebuilds what it takes over), or remove `adopt` and the VM yourself".into(),
        });
        return None;
    }
    if let Some(pool) = &vm.pool
        && occupant.pool.as_ref() != Some(pool)
    {
        fields.push(FieldChange {
            name: "pool".into(),
            old: occupant.pool.clone(),
            new: Some(pool.clone()),
        });
    }
    fields.insert(
        0,
        FieldChange {
            name: "adopt".into(),
            old: None,
            new: Some(format!(
                "VM {}{} becomes managed by proxfleet",
                occupant.vmid,
                occupant
                    .name
                    .as_deref()
                    .map(|n| format!(" (`{n}`)"))
                    .unwrap_or_default()
            )),
        },
    );
    Some(Change {
        key: vm.key.clone(),
        action: Action::Update,
        vmid: Some(vm.vmid),
        node: occupant.node.clone(),
        fields,
        reasons: vec!["adopted: `adopt: true` in the spec".into()],
        depends_on: Vec::new(),
    })
}

/// A template whose base disks linked clones still use cannot be deleted: Proxmox refuses
/// (`base volume … is still in use by linked cloned`). Say so before anything runs, unless the
/// plan deletes those clones too (deletions run first, clones before templates).
fn linked_clone_conflicts(changes: &[Change], actual: &ActualState, conflicts: &mut Vec<Conflict>) {
    // Deletions run before everything else; a replaced clone is rebuilt only after its
    // template, too late.
    let going: BTreeSet<&ResourceKey> = changes
        .iter()
        .filter(|c| c.action == Action::Delete)
        .map(|c| &c.key)
        .collect();
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
        let base = format!("base-{}-disk-", template.vmid);
        let users: Vec<String> = actual
            .vms
            .values()
            .filter(|vm| vm.vmid != template.vmid)
            .filter(|vm| {
                vm.config
                    .values()
                    .any(|value| value.contains(&base) && value.contains('/'))
            })
            .filter(|vm| vm.marker.as_ref().is_none_or(|m| !going.contains(&m.key)))
            .map(|vm| match &vm.name {
                Some(name) => format!("{} (`{name}`)", vm.vmid),
                None => vm.vmid.to_string(),
            })
            .collect();
        if users.is_empty() {
            continue;
        }
        let verb = if change.action == Action::Delete {
            "deleted"
        } else {
            "rebuilt"
        };
        conflicts.push(Conflict {
            key: change.key.clone(),
            message: format!(
                "it cannot be {verb}: linked clones still use its base disks: VM {}",
                users.join(", VM ")
            ),
            hint: "remove those clones from the spec first (or make them full clones with `full: true` and rebuild them), then rebuild the template; Proxmox refuses to delete a template its linked clones read from".into(),
        });
    }
}

/// Whether a plan field takes effect on a running VM at once: Proxmox's options as
/// `qemu_config` knows them, and the plan's own fields, none of which waits for a boot.
fn applies_at_once(field: &str) -> bool {
    qemu_config::applies_at_once(field)
        || matches!(field, "snippet" | "pool" | "status")
        || field.ends_with(" size")
}

/// Running VMs whose managed options wait for the next boot: those this plan changes and those
/// pending from before. With `allow_reboot`, each gets a `reboot` field in its change (a change
/// is made for a VM that has none), which apply carries out after configuring it.
fn pending_reboots(
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
                    .fields
                    .iter()
                    .filter(|f| !applies_at_once(&f.name))
                    .map(|f| f.name.clone())
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
            let field = FieldChange {
                name: "reboot".into(),
                old: None,
                new: Some(format!("to apply {}", waiting.join(", "))),
            };
            match change {
                Some(idx) => changes[idx].fields.push(field),
                None => changes.push(Change {
                    key: vm.key.clone(),
                    action: Action::Update,
                    vmid: Some(vm.vmid),
                    node: current.node.clone(),
                    fields: vec![field],
                    reasons: vec!["changes pending from before wait for a reboot".into()],
                    depends_on: Vec::new(),
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
    let changes = deletions(desired, actual, |_| true, |_| include_images);
    let mut conflicts = Vec::new();
    linked_clone_conflicts(&changes, actual, &mut conflicts);
    let plan = Plan {
        format_version: PLAN_FORMAT_VERSION,
        project: desired.project.clone(),
        changes,
        unchanged: 0,
        conflicts,
        targeting: None,
        pending: Vec::new(),
    };
    restrict(plan, desired, options)
}

/// Keep only the changes and conflicts in `options.scope`. A kept change that needs a
/// resource the scope leaves out, and that does not exist yet or is being rebuilt, could not
/// succeed: that is a conflict, not a surprise halfway through apply.
fn restrict(full: Plan, desired: &DesiredGraph, options: &PlanOptions) -> Plan {
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
        .partition(|change| scope.contains(&change.key));
    let left_out: BTreeMap<ResourceKey, Action> = left_out
        .into_iter()
        .map(|change| (change.key, change.action))
        .collect();
    let kept_keys: BTreeSet<ResourceKey> = kept.iter().map(|c| c.key.clone()).collect();
    let mut conflicts: Vec<Conflict> = full
        .conflicts
        .into_iter()
        .filter(|conflict| scope.contains(&conflict.key))
        .collect();
    let mut changes = Vec::with_capacity(kept.len());
    for mut change in kept {
        change.depends_on.retain(|dep| kept_keys.contains(dep));
        if change.action != Action::Delete {
            for dep in desired.dependencies(&change.key) {
                let Some(&dep_action) = left_out.get(&dep) else {
                    continue;
                };
                let state = match dep_action {
                    Action::Create => "does not exist yet",
                    Action::Replace => "is to be replaced",
                    Action::Update | Action::Delete => continue,
                };
                conflicts.push(Conflict {
                    key: change.key.clone(),
                    message: format!("it needs {dep}, which {state} but is left out of this plan"),
                    hint: format!(
                        "include {dep} (see --only, --skip and --target), or apply it first"
                    ),
                });
            }
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
    }
}

/// Delete changes for owned VMs selected by `wanted` and owned images selected by
/// `image_wanted`: clones, then templates, then images,
/// each later kind depending on every deletion of the kinds before it.
fn deletions(
    desired: &DesiredGraph,
    actual: &ActualState,
    wanted: impl Fn(&ResourceKey) -> bool,
    image_wanted: impl Fn(&ResourceKey) -> bool,
) -> Vec<Change> {
    let project = desired.project.as_str();
    let mut out: Vec<Change> = Vec::new();
    for kind in [ResourceKind::Clone, ResourceKind::Template] {
        let before: Vec<ResourceKey> = out.iter().map(|c| c.key.clone()).collect();
        for vm in actual.owned_vms(project) {
            let Some(marker) = &vm.marker else { continue };
            if marker.key.kind != kind || !wanted(&marker.key) {
                continue;
            }
            let mut fields = Vec::new();
            if vm.running {
                fields.push(FieldChange {
                    name: "status".into(),
                    old: Some("running".into()),
                    new: Some("stopped".into()),
                });
            }
            out.push(Change {
                key: marker.key.clone(),
                action: Action::Delete,
                vmid: Some(vm.vmid),
                node: vm.node.clone(),
                fields,
                reasons: Vec::new(),
                depends_on: before.clone(),
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
        let fields: Vec<FieldChange> = image_copies(image, actual)
            .into_iter()
            .map(|volid| FieldChange {
                name: "volume".into(),
                old: Some(volid),
                new: None,
            })
            .collect();
        if fields.is_empty() {
            continue;
        }
        out.push(Change {
            key: image.key.clone(),
            action: Action::Delete,
            vmid: None,
            node: image.node.clone(),
            fields,
            reasons: Vec::new(),
            depends_on: before.clone(),
        });
    }
    out
}

/// The volumes on the image's node that are this image: the current file and earlier copies
/// (same name, another content tag). Only these are ever deleted: proxfleet names image files
/// by their content, and no other file has such a name.
fn image_copies(image: &DesiredImage, actual: &ActualState) -> Vec<String> {
    actual
        .volumes
        .values()
        .filter(|vol| {
            vol.node == image.node
                && (vol.volid == image.volid || image.image.is_stale_copy(&vol.volid))
        })
        .map(|vol| vol.volid.clone())
        .collect()
}

fn diff_image(image: &DesiredImage, actual: &ActualState, forced: bool) -> Option<Change> {
    if !forced
        && actual
            .volumes
            .contains_key(&(image.node.clone(), image.volid.clone()))
    {
        // The name is content-addressed: the file is this image, as Proxmox verified it.
        return None;
    }
    let set = |name: &str, value: &str| FieldChange {
        name: name.into(),
        old: None,
        new: Some(value.to_string()),
    };
    let stale: Vec<String> = image_copies(image, actual);
    let mut fields: Vec<FieldChange> = stale
        .iter()
        .map(|volid| FieldChange {
            name: "volume".into(),
            old: Some(volid.clone()),
            new: None,
        })
        .collect();
    fields.push(set("volume", &image.volid));
    fields.push(set("url", &image.url));
    fields.push(set(
        "checksum",
        &format!("{}:{}", image.checksum_algorithm, image.checksum_hex),
    ));
    // With `--replace`, the current file is among the copies to delete and fetch again.
    let mut reasons = Vec::new();
    if stale.iter().any(|volid| *volid != image.volid) {
        reasons
            .push("the image checksum changed: a new file replaces the earlier copy".to_string());
    }
    if forced && !stale.is_empty() {
        reasons.push(REPLACE_REQUESTED.to_string());
    }
    let action = if stale.is_empty() {
        Action::Create
    } else {
        Action::Replace
    };
    Some(Change {
        key: image.key.clone(),
        action,
        vmid: None,
        node: image.node.clone(),
        fields,
        reasons,
        depends_on: Vec::new(),
    })
}

#[allow(clippy::too_many_arguments)]
fn diff_vm(
    vm: &DesiredVm,
    owned: Option<&ActualVm>,
    actual: &ActualState,
    names: &BTreeMap<&str, Vec<&ActualVm>>,
    project: &str,
    forced: bool,
    conflicts: &mut Vec<Conflict>,
) -> Option<Change> {
    // Whatever occupies the desired vmid must be this very resource, or one the spec adopts.
    let mut adopting = None;
    if let Some(occupant) = actual.vms.get(&vm.vmid) {
        let ours = occupant
            .marker
            .as_ref()
            .is_some_and(|m| m.project == project && m.key == vm.key);
        if !ours && vm.adopt && owned.is_none() && occupant.marker.is_none() {
            adopting = Some(occupant);
        } else if !ours {
            let who = occupant
                .name
                .as_deref()
                .map(|n| format!(" (`{n}`)"))
                .unwrap_or_default();
            let owner = match &occupant.marker {
                Some(m) if m.project != project => {
                    format!("belongs to proxfleet project `{}`", m.project)
                }
                Some(m) => format!("is proxfleet's `{}`", m.key),
                None => "is not managed by proxfleet".to_string(),
            };
            conflicts.push(Conflict {
                key: vm.key.clone(),
                message: format!("vmid {} is taken by VM {}{who} on node {}, which {owner}", vm.vmid, occupant.vmid, occupant.node),
                hint: "choose another vmid in the spec, or remove that VM yourself; proxfleet never takes over a VM it did not create".into(),
            });
            return None;
        }
    }
    if let Some(occupant) = adopting {
        return adopt(vm, occupant, conflicts);
    }
    if owned.is_none() {
        let namesake = names
            .get(vm.name.as_str())
            .into_iter()
            .flatten()
            .find(|other| other.marker.as_ref().is_none_or(|m| m.project != project));
        if let Some(other) = namesake {
            conflicts.push(Conflict {
                key: vm.key.clone(),
                message: format!(
                    "VM {} on node {} already has the name `{}` and is not managed by this project",
                    other.vmid, other.node, vm.name
                ),
                hint: "rename one of them: two VMs with one name make hostnames and DNS ambiguous"
                    .into(),
            });
            return None;
        }
    }

    let Some(current) = owned else {
        return Some(Change {
            key: vm.key.clone(),
            action: Action::Create,
            vmid: Some(vm.vmid),
            node: vm.node.clone(),
            fields: creation_fields(vm),
            reasons: Vec::new(),
            depends_on: Vec::new(),
        });
    };

    let mut reasons = Vec::new();
    if current.vmid != vm.vmid {
        reasons.push(format!("vmid changes from {} to {}", current.vmid, vm.vmid));
    }
    if current.node != vm.node {
        reasons.push(format!("node changes from {} to {}", current.node, vm.node));
    }
    if let Recipe::Build(build) = &vm.recipe {
        if !current.template {
            reasons.push("the build did not finish: the VM is not a template yet".into());
        }
        let observed = current.marker.as_ref().and_then(|m| m.build.clone());
        if observed.as_deref() != Some(build.fingerprint.as_str()) {
            reasons.push(format!(
                "build settings changed (fingerprint {} → {})",
                observed.as_deref().unwrap_or("none"),
                build.fingerprint
            ));
        }
    }
    if let Recipe::Build(build) = &vm.recipe
        && current.template
    {
        // A template is its recipe: options edited by hand since the build are drift.
        let edited: Vec<String> = build
            .create_params
            .iter()
            .filter(|(option, _)| !is_disk_option(option) && option != "description")
            .filter(|(option, want)| {
                !same_value(
                    option,
                    current.config.get(option.as_str()).map(String::as_str),
                    want,
                )
            })
            .map(|(option, want)| match current.config.get(option) {
                // Keys are long and encoded: name the change, not the values.
                Some(_) if option == "sshkeys" => "the SSH keys differ from the build's".into(),
                Some(seen) => format!("{option} is {seen}, the build set {want}"),
                None => format!("{option} is unset, the build set {want}"),
            })
            .collect();
        if !edited.is_empty() {
            reasons.push(format!("changed outside proxfleet: {}", edited.join("; ")));
        }
        // Settings Proxmox fixes when it creates a disk: a different wish is a rebuild, and the
        // plan names them as create-only.
        for (disk, props) in [
            ("efidisk0", &["efitype", "pre-enrolled-keys"][..]),
            ("tpmstate0", &["version"][..]),
        ] {
            let wanted = build
                .create_params
                .iter()
                .find(|(option, _)| option == disk)
                .map(|(_, value)| PropertyString::parse(value));
            let seen = current
                .config
                .get(disk)
                .map(|value| PropertyString::parse(value));
            let (Some(wanted), Some(seen)) = (wanted, seen) else {
                continue;
            };
            for prop in props {
                let want = wanted.get(prop);
                let have = seen.get(prop);
                // `pre-enrolled-keys` unset reads as 0.
                let normal = |v: Option<&str>| -> Option<String> {
                    match (*prop, v) {
                        ("pre-enrolled-keys", None) => Some("0".to_string()),
                        (_, v) => v.map(str::to_string),
                    }
                };
                if want.is_some() && normal(want) != normal(have) {
                    reasons.push(format!(
                        "{disk} {prop} is create-only: {} → {}",
                        normal(have).unwrap_or_else(|| "unset".into()),
                        normal(want).unwrap_or_else(|| "unset".into())
                    ));
                }
            }
        }
    }
    if current.template && matches!(vm.recipe, Recipe::Clone(_)) {
        reasons.push("the VM was converted to a template".into());
    }
    if forced {
        reasons.push(REPLACE_REQUESTED.into());
    }
    if !reasons.is_empty() {
        let mut fields = creation_fields(vm);
        if current.vmid != vm.vmid {
            fields.insert(
                0,
                FieldChange {
                    name: "vmid".into(),
                    old: Some(current.vmid.to_string()),
                    new: Some(vm.vmid.to_string()),
                },
            );
        }
        return Some(Change {
            key: vm.key.clone(),
            action: Action::Replace,
            vmid: Some(vm.vmid),
            node: vm.node.clone(),
            fields,
            reasons,
            depends_on: Vec::new(),
        });
    }

    let mut fields: Vec<FieldChange> = vm
        .settings
        .iter()
        .filter(|(option, want)| {
            !same_value(
                option,
                current.config.get(option.as_str()).map(String::as_str),
                want,
            )
        })
        .map(|(option, want)| FieldChange {
            name: option.clone(),
            old: current.config.get(option).cloned(),
            new: Some(want.clone()),
        })
        .collect();
    if let Some((slot, size)) = &vm.disk_grow {
        let observed = current
            .config
            .get(slot)
            .and_then(|value| disk_size_bytes(value));
        if observed.is_none_or(|bytes| bytes < size.0) {
            fields.push(FieldChange {
                name: format!("{slot} size"),
                old: observed.map(|b| DiskSize(b).to_proxmox()),
                new: Some(size.to_proxmox()),
            });
        }
    }
    if let Some(pool) = &vm.pool
        && current.pool.as_ref() != Some(pool)
    {
        fields.push(FieldChange {
            name: "pool".into(),
            old: current.pool.clone(),
            new: Some(pool.clone()),
        });
    }
    if let Some(plan) = vm.seed.as_deref().filter(|plan| plan.is_snippets()) {
        // `cicustom` is among the settings; what is left is a user-data that cannot take the
        // declared user, and a seed ISO of an earlier `delivery: iso` to put the drive back for.
        if let Err(err) = plan.snippets() {
            conflicts.push(Conflict {
                key: vm.key.clone(),
                message: format!("cannot build the cloud-init snippets: {err}"),
                hint: "fix the custom cloud-init files the spec names".into(),
            });
            return None;
        }
        // A file `cicustom` already names but the node lacks (removed by hand) is written again.
        let wanted = vm.settings.get("cicustom").map(String::as_str);
        let current_cicustom = current.config.get("cicustom").map(String::as_str);
        if let Some(wanted) = wanted.filter(|w| same_value("cicustom", current_cicustom, w)) {
            for volid in crate::seed::cicustom_volids(wanted) {
                if !actual
                    .volumes
                    .contains_key(&(current.node.clone(), volid.clone()))
                {
                    fields.push(FieldChange {
                        name: "snippet".into(),
                        old: None,
                        new: Some(volid),
                    });
                }
            }
        }
        let observed = current.config.get("ide2");
        if let (Some(old), crate::seed::SeedDelivery::Snippets { cloudinit_drive }) =
            (observed, &plan.delivery)
            && crate::seed::is_seed_volid(old.split(',').next().unwrap_or_default())
        {
            fields.push(FieldChange {
                name: "ide2".into(),
                old: Some(old.clone()),
                new: Some(cloudinit_drive.clone()),
            });
        }
    } else if let Some(plan) = &vm.seed {
        // Snippets of an earlier `delivery: snippets` are no longer referenced.
        if let Some(old) = current.config.get("cicustom").filter(|value| {
            crate::seed::cicustom_volids(value)
                .iter()
                .any(|volid| crate::seed::proxfleet_snippet(volid).is_some())
        }) {
            fields.push(FieldChange {
                name: "cicustom".into(),
                old: Some(old.clone()),
                new: None,
            });
        }
        // The seed depends on the MAC Proxmox gave `net0`: compare against the ISO it makes.
        match plan.build(&current.config) {
            Ok(iso) => {
                let volid = plan.volid(&iso);
                let observed = current.config.get("ide2");
                if observed.and_then(|v| v.split(',').next()) != Some(volid.as_str()) {
                    fields.push(FieldChange {
                        name: "ide2".into(),
                        old: observed.cloned(),
                        new: Some(format!("{volid},media=cdrom")),
                    });
                }
            }
            Err(err) => {
                conflicts.push(Conflict {
                    key: vm.key.clone(),
                    message: format!("cannot build the cloud-init seed: {err}"),
                    hint: "fix the custom cloud-init files the spec names".into(),
                });
                return None;
            }
        }
    }
    if vm.running && !current.running {
        fields.push(FieldChange {
            name: "status".into(),
            old: Some("stopped".into()),
            new: Some("running".into()),
        });
    }
    if fields.is_empty() {
        return None;
    }
    Some(Change {
        key: vm.key.clone(),
        action: Action::Update,
        vmid: Some(vm.vmid),
        node: vm.node.clone(),
        fields,
        reasons: Vec::new(),
        depends_on: Vec::new(),
    })
}

/// The fields a plan shows for a VM that will be created.
fn creation_fields(vm: &DesiredVm) -> Vec<FieldChange> {
    let set = |name: &str, value: &str| FieldChange {
        name: name.to_string(),
        old: None,
        new: Some(value.to_string()),
    };
    let mut fields = Vec::new();
    match &vm.recipe {
        Recipe::Build(build) => {
            fields.extend(build.create_params.iter().map(|(k, v)| set(k, v)));
            fields.push(set(&format!("{} size", build.resize.0), &build.resize.1));
            fields.push(set("template", "1"));
        }
        Recipe::Clone(clone) => {
            fields.push(set(
                "clone of",
                &format!("{} (vmid {})", clone.template, clone.template_vmid),
            ));
            fields.push(set("full", if clone.full { "1" } else { "0" }));
            if let Some(target) = &clone.migrate_to {
                fields.push(set(
                    "migrate",
                    &format!(
                        "made on {} beside the template (its disks are on node-local `{}`), then migrated to {target}",
                        clone.template_node, clone.template_storage
                    ),
                ));
            }
            fields.extend(vm.settings.iter().map(|(k, v)| set(k, v)));
            if let Some((slot, size)) = &vm.disk_grow {
                fields.push(set(&format!("{slot} size"), &size.to_proxmox()));
            }
            if let Some(plan) = vm.seed.as_deref().filter(|plan| !plan.is_snippets()) {
                fields.push(set(
                    "ide2",
                    &format!(
                        "cloud-init seed ISO on {} (named by its content once the clone's MAC is known)",
                        plan.storage
                    ),
                ));
            }
            if vm.running {
                fields.push(set("status", "running"));
            }
        }
    }
    if let Some(pool) = &vm.pool {
        fields.push(set("pool", pool));
    }
    fields.extend(
        vm.secrets
            .iter()
            .map(|(option, _)| set(option, "(sensitive)")),
    );
    fields
}
