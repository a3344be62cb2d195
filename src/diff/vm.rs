//! One desired VM against what holds its place in the cluster, in steps: who occupies the
//! vmid (this resource, a VM to adopt, or a conflict), whether a new VM's name is taken, why it
//! must be replaced, and otherwise what to update in place (options, disk, pool, cloud-init
//! seed or snippets, power).

use std::collections::BTreeMap;

use crate::graph::{BuildRecipe, DesiredVm, Recipe};
use crate::ownership::description_to_write;
use crate::plan::{
    Action, Change, Conflict, Guest, HandEdit, Holder, NamedVm, Operation, PowerState, Problem,
    Reason,
};
use crate::qemu_config::propstr::{PropertyString, disk_size_bytes};
use crate::qemu_config::{is_disk_option, same_value};
use crate::seed::{SeedDelivery, SeedPlan};
use crate::spec::DiskSize;
use crate::state::{ActualState, ActualVm};

use super::creation::creation_operations;

/// What one VM is compared with: the observation and the resource's place in it.
pub(super) struct VmDiff<'a> {
    /// The VM the spec wants.
    pub vm: &'a DesiredVm,
    /// The VM this project owns under the same key, if any.
    pub owned: Option<&'a ActualVm>,
    /// The whole observation.
    pub actual: &'a ActualState,
    /// The cluster's VMs by name.
    pub names: &'a BTreeMap<&'a str, Vec<&'a ActualVm>>,
    /// The spec's project.
    pub project: &'a str,
    /// Replace it whatever it looks like (`--replace`).
    pub forced: bool,
    /// The parking VMs that hold data disks for it (see `data_disks`).
    pub parked: &'a [super::data_disks::Parked],
}

/// Who holds the desired vmid.
enum Occupant<'a> {
    /// Nobody, or this very resource.
    Free,
    /// An unmanaged VM the spec adopts.
    Adopted(&'a ActualVm),
}

impl<'a> VmDiff<'a> {
    /// The change that reconciles the VM, `None` when it is as desired, or the conflict that
    /// stops the plan.
    pub fn change(&self) -> Result<Option<Change>, Box<Conflict>> {
        if let Occupant::Adopted(occupant) = self.occupant()? {
            return super::adopt::adopt(self.vm, occupant).map(Some);
        }
        let Some(current) = self.owned else {
            self.name_is_free()?;
            let mut operations = creation_operations(self.vm);
            super::data_disks::on_creation(self.vm, None, self.parked, &mut operations)?;
            return Ok(Some(self.new_change(Action::Create, operations)));
        };
        let reasons = self.replacement_reasons(current);
        if !reasons.is_empty() {
            let mut operations = creation_operations(self.vm);
            super::data_disks::on_creation(self.vm, Some(current), self.parked, &mut operations)?;
            if current.vmid != self.vm.vmid {
                operations.insert(
                    0,
                    Operation::Vmid {
                        old: current.vmid,
                        new: self.vm.vmid,
                    },
                );
            }
            let mut change = self.new_change(Action::Replace, operations);
            change.reasons = reasons;
            return Ok(Some(change));
        }
        let mut operations = self.updates(current)?;
        operations.extend(super::data_disks::updates(self.vm, current, self.parked)?);
        if operations.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.new_change(Action::Update, operations)))
    }

    fn new_change(&self, action: Action, operations: Vec<Operation>) -> Change {
        Change {
            key: self.vm.key.clone(),
            action,
            vmid: Some(self.vm.vmid),
            node: self.vm.node.clone(),
            operations,
            reasons: Vec::new(),
            depends_on: Vec::new(),
            rollout: None,
        }
    }

    /// Whatever occupies the desired vmid must be this very resource, or one the spec adopts.
    fn occupant(&self) -> Result<Occupant<'a>, Box<Conflict>> {
        let vm = self.vm;
        if let Some(container) = self.actual.containers.get(&vm.vmid) {
            return Err(Box::new(Conflict {
                key: vm.key.clone(),
                problem: Problem::VmidTaken {
                    vmid: vm.vmid,
                    holder: NamedVm {
                        vmid: container.vmid,
                        name: container.name.clone(),
                    },
                    node: container.node.clone(),
                    owner: Holder::Unmanaged,
                    guest: Guest::Container,
                },
            }));
        }
        let Some(occupant) = self.actual.vms.get(&vm.vmid) else {
            return Ok(Occupant::Free);
        };
        let ours = occupant
            .marker
            .as_ref()
            .is_some_and(|m| m.project == self.project && m.key == vm.key);
        if ours {
            return Ok(Occupant::Free);
        }
        if vm.adopt && self.owned.is_none() && occupant.marker.is_none() {
            return Ok(Occupant::Adopted(occupant));
        }
        let owner = match &occupant.marker {
            Some(m) if m.project != self.project => Holder::OtherProject {
                project: m.project.clone(),
            },
            Some(m) => Holder::OtherResource { key: m.key.clone() },
            None => Holder::Unmanaged,
        };
        Err(Box::new(Conflict {
            key: vm.key.clone(),
            problem: Problem::VmidTaken {
                vmid: vm.vmid,
                holder: NamedVm {
                    vmid: occupant.vmid,
                    name: occupant.name.clone(),
                },
                node: occupant.node.clone(),
                owner,
                guest: Guest::Vm,
            },
        }))
    }

    /// A new VM's name must not be another VM's outside this project.
    fn name_is_free(&self) -> Result<(), Box<Conflict>> {
        let vm = self.vm;
        let namesake = self
            .names
            .get(vm.name.as_str())
            .into_iter()
            .flatten()
            .find(|other| {
                other
                    .marker
                    .as_ref()
                    .is_none_or(|m| m.project != self.project)
            });
        if let Some(container) = self
            .actual
            .containers
            .values()
            .find(|ct| ct.name.as_deref() == Some(vm.name.as_str()))
        {
            return Err(Box::new(Conflict {
                key: vm.key.clone(),
                problem: Problem::NameTaken {
                    holder: NamedVm {
                        vmid: container.vmid,
                        name: Some(vm.name.clone()),
                    },
                    node: container.node.clone(),
                    guest: Guest::Container,
                },
            }));
        }
        match namesake {
            None => Ok(()),
            Some(other) => Err(Box::new(Conflict {
                key: vm.key.clone(),
                problem: Problem::NameTaken {
                    holder: NamedVm {
                        vmid: other.vmid,
                        name: Some(vm.name.clone()),
                    },
                    node: other.node.clone(),
                    guest: Guest::Vm,
                },
            })),
        }
    }

    /// Why the VM cannot be changed in place; empty when it can.
    fn replacement_reasons(&self, current: &ActualVm) -> Vec<Reason> {
        let vm = self.vm;
        let mut reasons = Vec::new();
        if current.vmid != vm.vmid {
            reasons.push(Reason::VmidChanged {
                old: current.vmid,
                new: vm.vmid,
            });
        }
        if current.node != vm.node {
            reasons.push(Reason::NodeChanged {
                old: current.node.clone(),
                new: vm.node.clone(),
            });
        }
        if let Recipe::Build(build) = &vm.recipe {
            if !current.template {
                reasons.push(Reason::BuildUnfinished);
            }
            let observed = current.marker.as_ref().and_then(|m| m.build.clone());
            if observed.as_deref() != Some(build.fingerprint.as_str()) {
                reasons.push(Reason::BuildChanged {
                    old: observed,
                    new: build.fingerprint.clone(),
                });
            }
            if current.template {
                reasons.extend(template_drift(build, current));
            }
        }
        if current.template && matches!(vm.recipe, Recipe::Clone(_)) {
            reasons.push(Reason::ConvertedToTemplate);
        }
        if self.forced {
            reasons.push(Reason::ReplaceRequested);
        }
        reasons
    }

    /// What to change in place: options, the disk's size, the pool, cloud-init delivery, power.
    fn updates(&self, current: &ActualVm) -> Result<Vec<Operation>, Box<Conflict>> {
        let vm = self.vm;
        let mut operations: Vec<Operation> = vm
            .settings
            .iter()
            .filter_map(|(option, want)| set_option(option, current.config.get(option), want))
            .collect();
        if let Some((slot, size)) = &vm.disk_grow {
            let observed = current
                .config
                .get(slot)
                .and_then(|value| disk_size_bytes(value));
            if observed.is_none_or(|bytes| bytes < size.0) {
                operations.push(Operation::GrowDisk {
                    slot: slot.clone(),
                    old: observed.map(|b| DiskSize(b).to_proxmox()),
                    new: size.to_proxmox(),
                });
            }
        }
        if let Some(pool) = &vm.pool
            && current.pool.as_ref() != Some(pool)
        {
            operations.push(Operation::Pool {
                old: current.pool.clone(),
                new: pool.clone(),
            });
        }
        if let Some(seed) = vm.seed.as_deref() {
            let seed_operations = if seed.is_snippets() {
                self.snippet_updates(seed, current)
            } else {
                self.seed_iso_updates(seed, current)
            };
            operations.extend(seed_operations?);
        }
        if vm.running && !current.running {
            operations.push(Operation::Power {
                old: Some(PowerState::Stopped),
                new: PowerState::Running,
            });
        }
        Ok(operations)
    }

    /// `delivery: snippets`: `cicustom` is among the settings; what is left is a user-data that
    /// cannot take the declared user, files `cicustom` names that the node lacks, and a seed
    /// ISO of an earlier `delivery: iso` to put Proxmox's drive back for.
    fn snippet_updates(
        &self,
        seed: &SeedPlan,
        current: &ActualVm,
    ) -> Result<Vec<Operation>, Box<Conflict>> {
        let vm = self.vm;
        if let Err(err) = seed.snippets() {
            return Err(Box::new(Conflict {
                key: vm.key.clone(),
                problem: Problem::SnippetsUnbuildable {
                    error: err.to_string(),
                },
            }));
        }
        let mut operations = Vec::new();
        // A file `cicustom` already names but the node lacks (removed by hand) is written again.
        let wanted = vm.settings.get("cicustom").map(String::as_str);
        let current_cicustom = current.config.get("cicustom").map(String::as_str);
        if let Some(wanted) = wanted.filter(|w| same_value("cicustom", current_cicustom, w)) {
            for volid in crate::seed::cicustom_volids(wanted) {
                if !self
                    .actual
                    .volumes
                    .contains_key(&(current.node.clone(), volid.clone()))
                {
                    operations.push(Operation::WriteSnippet { volid });
                }
            }
        }
        if let (Some(old), SeedDelivery::Snippets { cloudinit_drive }) =
            (current.config.get("ide2"), &seed.delivery)
            && crate::seed::is_seed_volid(old.split(',').next().unwrap_or_default())
        {
            operations.push(Operation::RestoreCloudInitDrive {
                old: old.clone(),
                new: cloudinit_drive.clone(),
            });
        }
        Ok(operations)
    }

    /// `delivery: iso`: snippets of an earlier `delivery: snippets` are no longer referenced,
    /// and the seed depends on the MAC Proxmox gave `net0`: compared against the ISO it makes.
    fn seed_iso_updates(
        &self,
        seed: &SeedPlan,
        current: &ActualVm,
    ) -> Result<Vec<Operation>, Box<Conflict>> {
        let mut operations = Vec::new();
        if let Some(old) = current.config.get("cicustom").filter(|value| {
            crate::seed::cicustom_volids(value)
                .iter()
                .any(|volid| crate::seed::proxfleet_snippet(volid).is_some())
        }) {
            operations.push(Operation::DeleteOption {
                name: "cicustom".into(),
                old: old.clone(),
            });
        }
        let iso = seed.build(&current.config).map_err(|err| {
            Box::new(Conflict {
                key: self.vm.key.clone(),
                problem: Problem::SeedUnbuildable {
                    error: err.to_string(),
                },
            })
        })?;
        let volid = seed.volid(&iso);
        let observed = current.config.get("ide2");
        if observed.and_then(|v| v.split(',').next()) != Some(volid.as_str()) {
            operations.push(Operation::AttachSeed {
                old: observed.cloned(),
                new: Some(format!("{volid},media=cdrom")),
                storage: seed.storage.clone(),
            });
        }
        Ok(operations)
    }
}

/// The write that gives `option` the value `want` over `seen`, if it needs one: the
/// description by its own rule (the operator's Notes are kept, see
/// `ownership::description_to_write`), every other option when its value differs.
pub(super) fn set_option(option: &str, seen: Option<&String>, want: &str) -> Option<Operation> {
    let new = if option == "description" {
        description_to_write(seen.map(String::as_str), want)?
    } else if same_value(option, seen.map(String::as_str), want) {
        return None;
    } else {
        want.to_string()
    };
    Some(Operation::SetOption {
        name: option.to_string(),
        old: seen.cloned(),
        new,
    })
}

/// A template is its recipe: options edited by hand since the build are drift, and so is a
/// different wish for a setting Proxmox fixes when it creates a disk (named create-only).
fn template_drift(build: &BuildRecipe, current: &ActualVm) -> Vec<Reason> {
    let mut reasons = Vec::new();
    let edits: Vec<HandEdit> = build
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
        .map(|(option, want)| HandEdit {
            option: option.clone(),
            seen: current.config.get(option).cloned(),
            built: want.clone(),
        })
        .collect();
    if !edits.is_empty() {
        reasons.push(Reason::EditedOutside { edits });
    }
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
            // `pre-enrolled-keys` unset reads as 0.
            let normal = |v: Option<&str>| -> Option<String> {
                match (*prop, v) {
                    ("pre-enrolled-keys", None) => Some("0".to_string()),
                    (_, v) => v.map(str::to_string),
                }
            };
            let want = wanted.get(prop);
            if want.is_some() && normal(want) != normal(seen.get(prop)) {
                reasons.push(Reason::CreateOnly {
                    disk: disk.to_string(),
                    property: (*prop).to_string(),
                    old: normal(seen.get(prop)),
                    new: normal(want),
                });
            }
        }
    }
    reasons
}
