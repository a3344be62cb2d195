//! The words of a refusal: why a plan cannot be applied (its conflicts, with a hint each) and
//! why a saved plan is stale (what moved since it was made).

use crate::plan::{Action, AdoptBlocker, Conflict, Guest, Holder, NamedVm, Problem};
use crate::saved::{Drift, VmFingerprint, VmMove, VolumeFingerprint};

use super::operations::operation_lines;

fn named_vm(vm: &NamedVm) -> String {
    match &vm.name {
        Some(name) => format!("{} (`{name}`)", vm.vmid),
        None => vm.vmid.to_string(),
    }
}

/// What is in the way, as a conflict says it.
pub fn conflict_message(conflict: &Conflict) -> String {
    match &conflict.problem {
        Problem::VmidTaken {
            vmid,
            holder,
            node,
            owner: _,
            guest: Guest::Container,
        } => format!(
            "vmid {vmid} is taken by container {} on node {node}, which proxfleet did not create",
            named_vm(holder)
        ),
        Problem::VmidTaken {
            vmid,
            holder,
            node,
            owner,
            guest: Guest::Vm,
        } => {
            let owner = match owner {
                Holder::OtherProject { project } => {
                    format!("belongs to proxfleet project `{project}`")
                }
                Holder::OtherResource { key } => format!("is proxfleet's `{key}`"),
                Holder::Unmanaged => "is not managed by proxfleet".to_string(),
            };
            format!(
                "vmid {vmid} is taken by VM {} on node {node}, which {owner}",
                named_vm(holder)
            )
        }
        Problem::NameTaken {
            holder,
            node,
            guest,
        } => format!(
            "{} {} on node {node} already has the name `{}` and is not managed by this project",
            if guest.is_vm() { "VM" } else { "container" },
            holder.vmid,
            holder.name.as_deref().unwrap_or_default()
        ),
        Problem::NotAdoptable { vmid, blockers } => {
            let blockers: Vec<String> = blockers
                .iter()
                .map(|blocker| match blocker {
                    AdoptBlocker::NotATemplate => "it is not a template".to_string(),
                    AdoptBlocker::IsATemplate => {
                        "it is a template, the spec wants a clone".to_string()
                    }
                    AdoptBlocker::OptionDiffers {
                        option,
                        seen,
                        recipe,
                    } => format!(
                        "{option} is {}, the recipe says {recipe}",
                        seen.as_deref().unwrap_or("unset")
                    ),
                    AdoptBlocker::OtherNode { node, wanted } => {
                        format!("it is on node {node}, the spec says {wanted}")
                    }
                })
                .collect();
            format!(
                "VM {vmid} cannot be adopted as it is: {}",
                blockers.join("; ")
            )
        }
        Problem::SnippetsUnbuildable { error } => {
            format!("cannot build the cloud-init snippets: {error}")
        }
        Problem::SeedUnbuildable { error } => format!("cannot build the cloud-init seed: {error}"),
        Problem::LinkedClonesRead { deleted, clones } => {
            let verb = if *deleted { "deleted" } else { "rebuilt" };
            let clones: Vec<String> = clones.iter().map(named_vm).collect();
            format!(
                "it cannot be {verb}: linked clones still use its base disks: VM {}",
                clones.join(", VM ")
            )
        }
        Problem::ClaimedTwice { vms } => {
            let vms: Vec<String> = vms.iter().map(named_vm).collect();
            format!(
                "the markers of several VMs claim it: VM {}",
                vms.join(", VM ")
            )
        }
        Problem::BuildRangeFull { first, last } => format!(
            "a new build needs a free vmid in {first}..={last}, and every one is taken (by builds clones still use, or by other VMs)"
        ),
        Problem::DependencyLeftOut { dependency, action } => {
            let state = match action {
                Action::Replace => "is to be replaced",
                _ => "does not exist yet",
            };
            format!("it needs {dependency}, which {state} but is left out of this plan")
        }
        Problem::DataDiskShrinks {
            slot,
            observed,
            declared,
        } => format!(
            "data disk {slot} is {observed} but the spec says {declared}: disks never shrink"
        ),
        Problem::ParkedSlotTaken {
            slot,
            volid,
            parking,
        } => format!(
            "kept data disk {volid} waits on parking VM {parking} for slot {slot}, which another disk now holds on the clone"
        ),
    }
}

/// What the user can do about a conflict.
pub fn conflict_hint(conflict: &Conflict) -> String {
    match &conflict.problem {
        Problem::VmidTaken { .. } => "choose another vmid in the spec, or remove that VM yourself; proxfleet never takes over a VM it did not create".to_string(),
        Problem::NameTaken { .. } => {
            "rename one of them: two VMs with one name make hostnames and DNS ambiguous".to_string()
        }
        Problem::NotAdoptable { .. } => "make the spec describe the VM as it is (adoption never rebuilds what it takes over), or remove `adopt` and the VM yourself".to_string(),
        Problem::SnippetsUnbuildable { .. } | Problem::SeedUnbuildable { .. } => {
            "fix the custom cloud-init files the spec names".to_string()
        }
        Problem::BuildRangeFull { .. } => "raise `builds` on the template (the range must stay free of other VMs), or move the clones that keep old builds alive with `on_template_change: replace`".to_string(),
        Problem::LinkedClonesRead { .. } => "remove those clones from the spec first (or make them full clones with `full: true` and rebuild them), then rebuild the template; Proxmox refuses to delete a template its linked clones read from".to_string(),
        Problem::ClaimedTwice { .. } => "keep the marker line (`managed-by: proxfleet …`) in the description of the VM that is the resource and remove it from the others; proxfleet changes and deletes none of them until one claim is left".to_string(),
        Problem::DependencyLeftOut { dependency, .. } => {
            format!("include {dependency} (see --only, --skip and --target), or apply it first")
        }
        Problem::DataDiskShrinks { observed, .. } => format!(
            "declare {observed} or more (Proxmox cannot shrink a disk); to start over with a smaller disk, move the data off and declare it in another slot"
        ),
        Problem::ParkedSlotTaken { slot, parking, .. } => format!(
            "free {slot} on the clone (detach the disk there), or move the volume off parking VM {parking} yourself; proxfleet never deletes a kept volume"
        ),
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

fn vm_subject(vm: &VmFingerprint) -> String {
    match (&vm.key, &vm.name) {
        (Some(key), _) => format!("{key} (vmid {})", vm.vmid),
        (None, Some(name)) => format!("VM {} (`{name}`)", vm.vmid),
        (None, None) => format!("VM {}", vm.vmid),
    }
}

fn vm_move_text(moved: &VmMove) -> String {
    match moved {
        VmMove::Node { from, to } => format!("moved from node {from} to {to}"),
        VmMove::Config { old, new } => format!(
            "its configuration changed (digest {} → {})",
            short(old),
            short(new)
        ),
        VmMove::Lock { old, new } => match (old, new) {
            (None, Some(lock)) => format!("is now locked ({lock})"),
            (Some(lock), None) => format!("is no longer locked ({lock})"),
            (Some(a), Some(b)) => format!("its lock changed from {a} to {b}"),
            (None, None) => String::new(),
        },
        VmMove::Power { running: true } => "was started".to_string(),
        VmMove::Power { running: false } => "was stopped".to_string(),
        VmMove::Ownership => "its ownership changed".to_string(),
    }
}

fn planned_words(action: Action) -> &'static str {
    match action {
        Action::Create => "created",
        Action::Update => "updated in place",
        Action::Replace => "replaced",
        Action::Delete => "destroyed",
    }
}

/// What moved, and how, as a stale plan's refusal lists it.
pub fn drift_text(drift: &Drift) -> (String, String) {
    let volume = |v: &VolumeFingerprint| format!("volume {} on {}", v.volid, v.node);
    match drift {
        Drift::FileChanged { saved, now } => (
            saved.path.clone(),
            format!(
                "changed since the plan was made (sha256 {} → {})",
                short(&saved.sha256),
                short(now)
            ),
        ),
        Drift::FileUnreadable { path, error } => (
            path.clone(),
            format!("cannot be read ({error}); run apply where plan ran"),
        ),
        Drift::UnknownAddresses(unknown) => (
            "--target/--replace".to_string(),
            unknown.to_string().replace('\n', "; "),
        ),
        Drift::VmGone(vm) => (vm_subject(vm), "no longer exists".to_string()),
        Drift::VmAppeared(vm) => (vm_subject(vm), format!("appeared on node {}", vm.node)),
        Drift::VmMoved(vm, moves) => {
            let moves: Vec<String> = moves.iter().map(vm_move_text).collect();
            (vm_subject(vm), moves.join("; "))
        }
        Drift::VolumeGone(v) => (volume(v), "no longer exists".to_string()),
        Drift::VolumeAppeared(v) => (volume(v), "appeared".to_string()),
        Drift::ChangeDropped { key, action } => (
            key.to_string(),
            format!(
                "the plan would no longer have it {}",
                planned_words(*action)
            ),
        ),
        Drift::ChangeAdded { key, action } => (
            key.to_string(),
            format!("would now be {}", planned_words(*action)),
        ),
        Drift::ActionChanged { key, old, new } => (
            key.to_string(),
            format!(
                "would now be {} instead of {}",
                planned_words(*new),
                planned_words(*old)
            ),
        ),
        Drift::OperationsDiffer { key, operations } => {
            let mut names: Vec<String> = operations
                .iter()
                .flat_map(operation_lines)
                .map(|line| line.name)
                .collect();
            names.sort_unstable();
            names.dedup();
            let detail = if names.is_empty() {
                "its planned change would now differ".to_string()
            } else {
                format!(
                    "its planned change would now differ in {}",
                    names.join(", ")
                )
            };
            (key.to_string(), detail)
        }
        Drift::NowConflicts(conflict) => (
            conflict.key.to_string(),
            format!("now conflicts: {}", conflict_message(conflict)),
        ),
        Drift::PlanDiffers => ("the plan".to_string(), "would now be different".to_string()),
    }
}
