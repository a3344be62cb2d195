//! A clone's data disks carried out: kept disks parked on a parking VM before a replacement
//! deletes the old VM (shut down first: Proxmox reassigns a disk in use only from a stopped
//! VM), reattached to the new VM at their slots, missing disks allocated (`POST …/config`
//! with `scsi1: local-lvm:20`, through the storage gate), data disks grown, parking VMs
//! deleted once empty (or with their clone, the volumes the plan named).
//!
//! Every step looks before it acts, so a step an earlier attempt (whose answer was lost) or an
//! interrupted run already did is not done twice: a disk is allocated only into an empty slot,
//! and reassigned only while the VM it comes from still holds it.

use std::collections::BTreeMap;

use super::change::{ChangeRun, ObservedVm, StepError};
use super::storage_gate::Allocation;
use crate::graph::DesiredVm;
use crate::ownership::{Marker, Parking};
use crate::plan::{Operation, ParkingVm};
use crate::pve::PveError;

/// How many free vmids a parking VM tries when another VM takes the one `/cluster/nextid`
/// offered between asking and creating.
const PARKING_VMID_TRIES: usize = 5;

impl ChangeRun {
    /// Before a replacement deletes `observed`: the kept disks the plan parks move to a new
    /// parking VM on its node (remembered for the reattach).
    pub(super) async fn park_kept_disks(
        &self,
        observed: &ObservedVm,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let slots: Vec<&str> = self
            .change
            .operations
            .iter()
            .filter_map(|op| match op {
                Operation::ParkDisk { slot, .. } => Some(slot.as_str()),
                _ => None,
            })
            .collect();
        if slots.is_empty() {
            return Ok(());
        }
        let (node, vmid) = (observed.node.as_str(), observed.vmid);
        if self.read_status(node, vmid).await?.running {
            self.shut_down(node, vmid, tasks).await?;
        }
        let parking = self.make_parking_vm(node, tasks).await?;
        if let Ok(mut made) = self.parking.lock() {
            *made = Some(parking.clone());
        }
        for slot in slots {
            self.reassign(
                &format!("park {slot} on parking VM {}", parking.vmid),
                (node, vmid, slot),
                parking.vmid,
                tasks,
            )
            .await?;
        }
        Ok(())
    }

    /// A stopped VM without disks, at a free vmid on `node`, tagged and marked as this clone's
    /// parking VM.
    async fn make_parking_vm(
        &self,
        node: &str,
        tasks: &mut Vec<String>,
    ) -> Result<ParkingVm, StepError> {
        let Some(crate::graph::Resource::Vm(vm)) = &self.resource else {
            return Err(StepError::Inconsistent(format!(
                "{} is not in the spec; no parking VM is made for it",
                self.change.key
            )));
        };
        let project = vm
            .settings
            .get("description")
            .and_then(|d| Marker::find(d))
            .map(|m| m.project)
            .ok_or_else(|| {
                StepError::Inconsistent(format!("{} has no ownership marker", vm.key))
            })?;
        let mut last = None;
        for _ in 0..PARKING_VMID_TRIES {
            let vmid = self.free_vmid().await?;
            let marker = Parking {
                project: project.clone(),
                parks_for: vm.key.clone(),
                vmid,
            };
            let params = vec![
                ("name".to_string(), format!("parking-{}", vm.name)),
                ("tags".to_string(), crate::ownership::TAG.to_string()),
                ("description".to_string(), marker.to_line()),
                ("memory".to_string(), "16".to_string()),
            ];
            let made = self
                .task(
                    &format!("create parking VM {vmid} for the kept disks"),
                    tasks,
                    || async { self.client.create_vm(node, vmid, &params).await.map(Some) },
                )
                .await;
            match made {
                Ok(()) => {
                    return Ok(ParkingVm {
                        vmid,
                        node: node.to_string(),
                    });
                }
                // Taken between asking and creating: by another change of this run, or
                // by someone else. Ask again.
                Err(err) if err.proxmox_says(PveError::is_already_exists) => last = Some(err),
                Err(err) => return Err(err),
            }
        }
        Err(last.unwrap_or_else(|| {
            StepError::Inconsistent("no free vmid for a parking VM".to_string())
        }))
    }

    /// The first free vmid (`/cluster/nextid`) that the spec does not want for one of its VMs
    /// (made later in this run, or by a later one).
    async fn free_vmid(&self) -> Result<u32, StepError> {
        let pve = |what: &str| {
            let what = what.to_string();
            move |source| StepError::Pve { what, source }
        };
        let mut vmid = self
            .client
            .next_id()
            .await
            .map_err(pve("ask for a free vmid"))?;
        for _ in 0..=self.desired_vmids.len() {
            if !self.desired_vmids.contains(&vmid) {
                return Ok(vmid);
            }
            vmid += 1;
            while !self
                .client
                .vmid_is_free(vmid)
                .await
                .map_err(pve("ask whether a vmid is free"))?
            {
                vmid += 1;
            }
        }
        Err(StepError::Inconsistent(
            "no free vmid outside the spec's for a parking VM".to_string(),
        ))
    }

    /// Move `slot` of VM `from` (on `node`) to the same slot of `target_vmid`, unless it has
    /// moved already (an earlier attempt whose answer was lost).
    async fn reassign(
        &self,
        what: &str,
        (node, from, slot): (&str, u32, &str),
        target_vmid: u32,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        self.task(what, tasks, || async {
            let source = self.client.vm_config(node, from).await?;
            if !source.values.contains_key(slot) {
                let target = self.client.vm_config(node, target_vmid).await?;
                if target.values.contains_key(slot) {
                    return Ok(None);
                }
                return Err(PveError::Decode {
                    what: format!("move {slot} from VM {from} to VM {target_vmid}"),
                    message: format!("neither VM {from} nor VM {target_vmid} has {slot}"),
                });
            }
            self.client
                .reassign_disk(node, from, slot, target_vmid, slot)
                .await
                .map(Some)
        })
        .await
    }

    /// The data disk steps of a VM made or changed in place, on `node` where it now is, in the
    /// plan's order: reattach (moving the parking VM to the node first when it is elsewhere),
    /// allocate, grow (on a new VM; an update grows with its other resizes), delete parking
    /// VMs.
    pub(super) async fn converge_data_disks(
        &self,
        vm: &DesiredVm,
        node: &str,
        grow: bool,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        // Parking VMs migrated to `node` here, by vmid.
        let mut migrated: BTreeMap<u32, String> = BTreeMap::new();
        let boot_slot = vm.disk_grow.as_ref().map(|(slot, _)| slot.as_str());
        for operation in &self.change.operations {
            match operation {
                Operation::ReattachDisk { slot, parking, .. } => {
                    let parking = self
                        .parking_vm(parking.as_ref())
                        .ok_or_else(|| self.no_parking_vm())?;
                    if parking.node != node && !migrated.contains_key(&parking.vmid) {
                        migrated.insert(parking.vmid, node.to_string());
                        self.task_allocating(
                            &format!("migrate parking VM {} to {node}", parking.vmid),
                            tasks,
                            None,
                            || async {
                                self.client
                                    .migrate_vm(&parking.node, parking.vmid, node)
                                    .await
                                    .map(Some)
                            },
                        )
                        .await?;
                    }
                    self.reassign(
                        &format!("reattach {slot} from parking VM {}", parking.vmid),
                        (node, parking.vmid, slot),
                        vm.vmid,
                        tasks,
                    )
                    .await?;
                }
                Operation::AddDisk {
                    slot,
                    storage,
                    size,
                    discard,
                } => {
                    let gib = size.trim_end_matches('G');
                    let mut value = format!("{storage}:{gib}");
                    if *discard {
                        value.push_str(",discard=on");
                    }
                    let set = vec![(slot.clone(), value)];
                    self.task_allocating(
                        &format!("add data disk {slot} ({size} on {storage})"),
                        tasks,
                        Some(Allocation {
                            storage: &format!("{storage}@{node}"),
                            volumes: 1,
                            progress_in_log: false,
                        }),
                        || async {
                            // Only into an empty slot: the same request again would allocate
                            // a second volume and leave the first one unused.
                            let config = self.client.vm_config(node, vm.vmid).await?;
                            if config.values.contains_key(slot) {
                                return Ok(None);
                            }
                            self.client
                                .update_vm_config(node, vm.vmid, &set, &[], None)
                                .await
                        },
                    )
                    .await?;
                }
                Operation::GrowDisk { slot, new, .. }
                    if grow && Some(slot.as_str()) != boot_slot =>
                {
                    self.task(&format!("resize {slot} to {new}"), tasks, || {
                        self.client.resize_disk(node, vm.vmid, slot, new, None)
                    })
                    .await?;
                }
                _ => {}
            }
        }
        self.delete_parking_vms(&migrated, tasks).await
    }

    /// The parking VM an operation names, or the one this change made (`None`: it made none).
    fn parking_vm(&self, named: Option<&ParkingVm>) -> Option<ParkingVm> {
        match named {
            Some(parking) => Some(parking.clone()),
            None => self.parking.lock().ok().and_then(|made| made.clone()),
        }
    }

    fn no_parking_vm(&self) -> StepError {
        StepError::Inconsistent(format!(
            "{}: no parking VM was made for its kept disks",
            self.change.key
        ))
    }

    /// Delete the parking VMs the plan lists (on the node `migrated` says when this change
    /// moved them): empty ones (a disk still on one stops the change: a kept volume is never
    /// deleted by accident), or, for a clone that is deleted, with exactly the volumes the plan
    /// named.
    pub(super) async fn delete_parking_vms(
        &self,
        migrated: &BTreeMap<u32, String>,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        for operation in &self.change.operations {
            let Operation::DeleteParking { parking, volumes } = operation else {
                continue;
            };
            let mut parking = self
                .parking_vm(parking.as_ref())
                .ok_or_else(|| self.no_parking_vm())?;
            if let Some(node) = migrated.get(&parking.vmid) {
                parking.node = node.clone();
            }
            let (node, vmid) = (parking.node.as_str(), parking.vmid);
            // A reassign an interrupted run started may still be moving a disk onto it, which
            // no configuration read shows: not deleted under it.
            let moving = self
                .client
                .reassign_running(node, vmid)
                .await
                .map_err(|source| StepError::Pve {
                    what: format!("list the tasks on {node}"),
                    source,
                })?;
            if moving {
                return Err(StepError::Inconsistent(format!(
                    "a disk is being moved to or from parking VM {vmid}; it is deleted by a later run once the move has ended"
                )));
            }
            let config = match self.client.vm_config(node, vmid).await {
                Ok(config) => config,
                // Gone already: an earlier attempt deleted it.
                Err(PveError::Http {
                    status: 500,
                    message,
                    ..
                }) if message.contains("does not exist") => continue,
                Err(source) => {
                    return Err(StepError::Pve {
                        what: format!("read parking VM {vmid}"),
                        source,
                    });
                }
            };
            // A task still at work on it (a reassign an interrupted run started) may be
            // moving a disk onto it: not deleted under it.
            if let Some(lock) = config.values.get("lock") {
                return Err(StepError::Inconsistent(format!(
                    "parking VM {vmid} is locked ({lock}); it is deleted by a later run once free"
                )));
            }
            let held: Vec<&str> = config
                .values
                .iter()
                .filter(|(option, _)| crate::qemu_config::is_disk_option(option))
                .filter_map(|(_, value)| value.split(',').next())
                .filter(|volid| volid.contains(':'))
                .collect();
            if let Some(unnamed) = held.iter().find(|v| !volumes.iter().any(|n| n == *v)) {
                return Err(StepError::Inconsistent(format!(
                    "parking VM {vmid} still holds {unnamed}, which this plan does not delete; it is left as it is"
                )));
            }
            self.task(&format!("delete parking VM {vmid}"), tasks, || async {
                self.client.delete_vm(node, vmid, true).await.map(Some)
            })
            .await?;
        }
        Ok(())
    }
}
