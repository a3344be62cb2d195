//! A clone's own data disks (`data_disks`): allocated when missing, grown when the spec's size
//! grows (a smaller one is a conflict: disks never shrink), released (left on the VM, no
//! longer named by the marker) when the spec drops them. Disks with `keep: true` outlive a
//! replacement: parked on a parking VM before the old VM is deleted and reattached to the new
//! one. Parking VMs an interrupted run left (found by their marker, `ownership::Parking`) are
//! emptied onto their clone (made first when it is gone) and deleted; those of a clone the
//! spec (or `destroy`) deletes go with it, their volumes named in the plan.

use std::collections::BTreeMap;

use crate::graph::{DesiredVm, Recipe};
use crate::ownership::{Parking, ResourceKey, managed_disks};
use crate::plan::{Action, Change, Conflict, Operation, ParkingVm, Problem};
use crate::qemu_config::is_disk_option;
use crate::qemu_config::propstr::disk_size_bytes;
use crate::spec::{DataDisk, DiskSize};
use crate::state::{ActualState, ActualVm};

/// A parking VM of the project as observed, with the disks it holds.
#[derive(Debug, Clone)]
pub(super) struct Parked {
    pub(super) vm: ParkingVm,
    pub(super) disks: Vec<ParkedDisk>,
}

/// A disk on a parking VM.
#[derive(Debug, Clone)]
pub(super) struct ParkedDisk {
    /// The slot it had on its clone, and has on the parking VM.
    pub(super) slot: String,
    /// Its volume.
    pub(super) volid: String,
    /// The whole config value (with its size).
    pub(super) value: String,
}

/// The project's parking VMs by the clone they hold disks for.
pub(super) fn parked_by_key(
    actual: &ActualState,
    project: &str,
) -> BTreeMap<ResourceKey, Vec<Parked>> {
    let mut parked: BTreeMap<ResourceKey, Vec<Parked>> = BTreeMap::new();
    for vm in actual.vms.values() {
        let Some(parking) = vm
            .config
            .get("description")
            .and_then(|d| Parking::find(d))
            .filter(|p| p.project == project && p.vmid == vm.vmid)
        else {
            continue;
        };
        parked.entry(parking.parks_for).or_default().push(Parked {
            vm: ParkingVm {
                vmid: vm.vmid,
                node: vm.node.clone(),
            },
            disks: volumes(vm),
        });
    }
    parked
}

/// A VM's disks that hold a volume, CD drives and unused entries aside.
fn volumes(vm: &ActualVm) -> Vec<ParkedDisk> {
    vm.config
        .iter()
        .filter(|(option, _)| is_disk_option(option) && !option.starts_with("unused"))
        .filter(|(_, value)| !value.contains("media=cdrom"))
        .filter_map(|(option, value)| {
            let volid = value.split(',').next().unwrap_or_default();
            (volid.contains(':') && volid != "none").then(|| ParkedDisk {
                slot: option.clone(),
                volid: volid.to_string(),
                value: value.clone(),
            })
        })
        .collect()
}

fn data_disks(vm: &DesiredVm) -> &[DataDisk] {
    match &vm.recipe {
        Recipe::Clone(clone) => &clone.data_disks,
        Recipe::Build(_) => &[],
    }
}

/// Whether the observed disk value is smaller than the declared size (a grow), larger (a
/// conflict), or as declared.
fn compare_size(
    key: &ResourceKey,
    disk: &DataDisk,
    observed_value: &str,
) -> Result<Option<Operation>, Box<Conflict>> {
    let observed = disk_size_bytes(observed_value);
    match observed {
        Some(bytes) if bytes > disk.size.0 => Err(Box::new(Conflict {
            key: key.clone(),
            problem: Problem::DataDiskShrinks {
                slot: disk.slot.clone(),
                observed: DiskSize(bytes).to_proxmox(),
                declared: disk.size.to_proxmox(),
            },
        })),
        Some(bytes) if bytes == disk.size.0 => Ok(None),
        _ => Ok(Some(Operation::GrowDisk {
            slot: disk.slot.clone(),
            old: observed.map(|b| DiskSize(b).to_proxmox()),
            new: disk.size.to_proxmox(),
        })),
    }
}

fn add(disk: &DataDisk) -> Operation {
    Operation::AddDisk {
        slot: disk.slot.clone(),
        storage: disk.storage.clone(),
        size: disk.size.to_proxmox(),
        discard: disk.discard,
    }
}

/// The data disk operations of a VM this change makes (created, or made again by a
/// replacement of `replaced`): kept disks parked and reattached, parked ones from before
/// reattached, the rest allocated; spliced into `operations` before the seed, pool and start.
pub(super) fn on_creation(
    vm: &DesiredVm,
    replaced: Option<&ActualVm>,
    parked: &[Parked],
    operations: &mut Vec<Operation>,
) -> Result<(), Box<Conflict>> {
    let disks = data_disks(vm);
    if disks.is_empty() && parked.is_empty() {
        return Ok(());
    }
    let mut parking_now = Vec::new();
    let mut attach = Vec::new();
    let mut taken: Vec<&str> = Vec::new();
    for p in parked {
        for disk in &p.disks {
            attach.push(Operation::ReattachDisk {
                slot: disk.slot.clone(),
                volid: disk.volid.clone(),
                parking: Some(p.vm.clone()),
            });
            taken.push(&disk.slot);
        }
    }
    for disk in disks {
        let observed = replaced
            .filter(|_| disk.keep)
            .and_then(|old| old.config.get(&disk.slot).map(|value| (old, value)));
        if taken.contains(&disk.slot.as_str()) {
            // Parked by an interrupted run: that volume is the disk; whatever the old VM has
            // in the slot now is not kept.
            if let Some(value) = parked_value(parked, &disk.slot)
                && let Some(grow) = compare_size(&vm.key, disk, &value)?
            {
                attach.push(grow);
            }
        } else if let Some((_, value)) = observed
            && let Some(volid) = value.split(',').next().filter(|v| v.contains(':'))
        {
            parking_now.push(Operation::ParkDisk {
                slot: disk.slot.clone(),
                volid: volid.to_string(),
            });
            attach.push(Operation::ReattachDisk {
                slot: disk.slot.clone(),
                volid: volid.to_string(),
                parking: None,
            });
            if let Some(grow) = compare_size(&vm.key, disk, value)? {
                attach.push(grow);
            }
        } else {
            attach.push(add(disk));
        }
    }
    if !parking_now.is_empty() {
        attach.push(Operation::DeleteParking {
            parking: None,
            volumes: Vec::new(),
        });
    }
    attach.extend(parked.iter().map(|p| Operation::DeleteParking {
        parking: Some(p.vm.clone()),
        volumes: Vec::new(),
    }));
    // Parked before anything else happens to the old VM; attached once the new one is made
    // and configured, before its seed, pool and start.
    let first_after = operations
        .iter()
        .position(|op| {
            matches!(
                op,
                Operation::AttachSeed { .. }
                    | Operation::Power { .. }
                    | Operation::Pool { .. }
                    | Operation::SetSecret { .. }
            )
        })
        .unwrap_or(operations.len());
    operations.splice(first_after..first_after, attach);
    let first = usize::from(matches!(operations.first(), Some(Operation::Vmid { .. })));
    operations.splice(first..first, parking_now);
    Ok(())
}

/// The config value of the disk parked for `slot` (with its size).
fn parked_value(parked: &[Parked], slot: &str) -> Option<String> {
    parked
        .iter()
        .flat_map(|p| p.disks.iter())
        .find(|d| d.slot == slot)
        .map(|d| d.value.clone())
}

/// The data disk operations of a VM changed in place: missing disks added (or reattached from
/// a parking VM), grown ones grown, dropped ones released, empty parking VMs deleted.
pub(super) fn updates(
    vm: &DesiredVm,
    current: &ActualVm,
    parked: &[Parked],
) -> Result<Vec<Operation>, Box<Conflict>> {
    let disks = data_disks(vm);
    let mut operations = Vec::new();
    let mut parked_slots: Vec<&str> = Vec::new();
    for p in parked {
        for parked_disk in &p.disks {
            if current.config.contains_key(&parked_disk.slot) {
                return Err(Box::new(Conflict {
                    key: vm.key.clone(),
                    problem: Problem::ParkedSlotTaken {
                        slot: parked_disk.slot.clone(),
                        volid: parked_disk.volid.clone(),
                        parking: p.vm.vmid,
                    },
                }));
            }
            operations.push(Operation::ReattachDisk {
                slot: parked_disk.slot.clone(),
                volid: parked_disk.volid.clone(),
                parking: Some(p.vm.clone()),
            });
            parked_slots.push(&parked_disk.slot);
        }
    }
    for disk in disks {
        if let Some(value) = current.config.get(&disk.slot) {
            if let Some(grow) = compare_size(&vm.key, disk, value)? {
                operations.push(grow);
            }
        } else if parked_slots.contains(&disk.slot.as_str()) {
            if let Some(value) = parked_value(parked, &disk.slot)
                && let Some(grow) = compare_size(&vm.key, disk, &value)?
            {
                operations.push(grow);
            }
        } else {
            operations.push(add(disk));
        }
    }
    let declared: Vec<&str> = disks.iter().map(|d| d.slot.as_str()).collect();
    if let Some(description) = current.config.get("description") {
        for slot in managed_disks(description) {
            if declared.contains(&slot.as_str()) {
                continue;
            }
            if let Some(value) = current.config.get(&slot) {
                operations.push(Operation::ReleaseDisk {
                    slot: slot.clone(),
                    volid: value.split(',').next().unwrap_or_default().to_string(),
                });
            }
        }
    }
    operations.extend(parked.iter().map(|p| Operation::DeleteParking {
        parking: Some(p.vm.clone()),
        volumes: Vec::new(),
    }));
    Ok(operations)
}

/// Parking VMs of clones that are deleted (`wanted`: not in the spec, or everything for
/// `destroy`): deleted with the clone's change, their volumes named, or in a change of their
/// own when the clone is gone already.
pub(super) fn parking_deletions(
    actual: &ActualState,
    project: &str,
    changes: &mut Vec<Change>,
    wanted: impl Fn(&ResourceKey) -> bool,
) {
    for (key, parked) in parked_by_key(actual, project) {
        if !wanted(&key) {
            continue;
        }
        let operations = parked.iter().map(|p| Operation::DeleteParking {
            parking: Some(p.vm.clone()),
            volumes: p.disks.iter().map(|d| d.volid.clone()).collect(),
        });
        match changes
            .iter_mut()
            .find(|c| c.key == key && c.action == Action::Delete)
        {
            Some(change) => change.operations.extend(operations),
            None => {
                let Some(first) = parked.first().map(|p| &p.vm) else {
                    continue;
                };
                changes.push(Change {
                    key,
                    action: Action::Delete,
                    vmid: Some(first.vmid),
                    node: first.node.clone(),
                    operations: operations.collect(),
                    reasons: Vec::new(),
                    depends_on: Vec::new(),
                    rollout: None,
                })
            }
        }
    }
}
