//! A clone's `data_disks`: slots Proxmox has (qemu-server `PVE/QemuServer/Drive.pm`:
//! `MAX_SCSI_DISKS` 31, `MAX_VIRTIO_DISKS` 16, `MAX_SATA_DISKS` 6, `MAX_IDE_DISKS` 4), none
//! taken by the template's boot disk, its extra disks or the cloud-init drive (`ide2`), none
//! twice; sizes in whole GiB as the allocation (`local-lvm:20`) takes them.

use super::Validator;
use super::scalars::{check_storage, parse_size};
use crate::spec::model::{DataDisk, DiskSize, Template};
use crate::spec::raw::RawDataDisk;

const SLOT_ALLOWED: &str =
    "a disk slot: `scsi0`…`scsi30`, `virtio0`…`virtio15`, `sata0`…`sata5`, `ide0`…`ide3`";

/// Whether `slot` is a disk option Proxmox has.
fn is_disk_slot(slot: &str) -> bool {
    let split = slot
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(slot.len());
    let (bus, number) = slot.split_at(split);
    let max = match bus {
        "scsi" => 30,
        "virtio" => 15,
        "sata" => 5,
        "ide" => 3,
        _ => return false,
    };
    !number.is_empty()
        && (number == "0" || !number.starts_with('0'))
        && number.parse::<u32>().is_ok_and(|n| n <= max)
}

/// The clone's data disks, checked against each other and its template (when it resolved);
/// `default_storage` is where a disk without `storage` goes; `own_cloud_init`: the clone's own
/// layers declare cloud-init (its drive, or a seed ISO, is `ide2`).
pub(super) fn check_data_disks(
    ctx: &mut Validator,
    disks: &[RawDataDisk],
    template: Option<&Template>,
    own_cloud_init: bool,
    default_storage: Option<&str>,
    path: &str,
) -> Vec<DataDisk> {
    let mut checked = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (disk_idx, disk) in disks.iter().enumerate() {
        let disk_path = format!("{path}.data_disks[{disk_idx}]");
        let slot = disk.slot.value.as_str();
        let mut ok = true;
        if !is_disk_slot(slot) {
            ctx.error_at(
                &disk.slot,
                &format!("{disk_path}.slot"),
                format!("`{slot}` is not a disk slot Proxmox has"),
                Some(SLOT_ALLOWED),
            );
            ok = false;
        } else if seen.contains(&slot) {
            ctx.error_at(
                &disk.slot,
                &format!("{disk_path}.slot"),
                format!("slot `{slot}` is given to two data disks"),
                Some("each data disk in a slot of its own"),
            );
            ok = false;
        } else if let Some(template) = template
            && let Some(holder) = taken_by_template(template, slot)
        {
            ctx.error_at(
                &disk.slot,
                &format!("{disk_path}.slot"),
                format!(
                    "slot `{slot}` is the {holder} of template `{}`, which the clone inherits",
                    template.name
                ),
                Some(&format!(
                    "a slot the template leaves free (taken: {})",
                    template_slots(template).join(", ")
                )),
            );
            ok = false;
        } else if own_cloud_init && slot == "ide2" {
            ctx.error_at(
                &disk.slot,
                &format!("{disk_path}.slot"),
                "slot `ide2` is the clone's cloud-init drive".to_string(),
                Some("another slot: `ide2` holds cloud-init"),
            );
            ok = false;
        }
        seen.push(slot);
        if let Some(storage) = &disk.storage {
            check_storage(ctx, storage, &format!("{disk_path}.storage"));
        }
        let size = match parse_size(&disk.size.value, 0) {
            Some(bytes) if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) => Some(bytes),
            _ => {
                ctx.error_at(
                    &disk.size,
                    &format!("{disk_path}.size"),
                    format!("`{}` is not a size in whole GiB", disk.size.value),
                    Some("a whole number of GiB with a unit, at least 1G: `20G`, `1T`"),
                );
                None
            }
        };
        let storage = disk
            .storage
            .as_ref()
            .map(|s| s.value.clone())
            .or_else(|| default_storage.map(str::to_string))
            .or_else(|| template.map(|t| t.disk.storage.clone()));
        if let (true, Some(bytes), Some(storage)) = (ok, size, storage) {
            checked.push(DataDisk {
                slot: slot.to_string(),
                storage,
                size: DiskSize(bytes),
                discard: disk.discard,
                keep: disk.keep,
            });
        }
    }
    checked
}

/// What of the template's (and so the clone's) holds `slot`, if anything.
fn taken_by_template(template: &Template, slot: &str) -> Option<&'static str> {
    if template.disk.slot() == slot {
        return Some("boot disk");
    }
    if template.extra_disks.iter().any(|d| d.slot == slot) {
        return Some("extra disk");
    }
    (template.cloud_init.is_some() && slot == "ide2").then_some("cloud-init drive")
}

/// Every disk slot the template gives its clones.
fn template_slots(template: &Template) -> Vec<String> {
    let mut slots = vec![template.disk.slot()];
    slots.extend(template.extra_disks.iter().map(|d| d.slot.clone()));
    if template.cloud_init.is_some() {
        slots.push("ide2".into());
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::is_disk_slot;

    #[test]
    fn slots_are_those_proxmox_has() {
        for slot in ["scsi0", "scsi30", "virtio15", "sata5", "ide3", "scsi1"] {
            assert!(is_disk_slot(slot), "{slot}");
        }
        for slot in [
            "scsi31", "virtio16", "sata6", "ide4", "scsi", "scsi01", "nvme0", "efidisk0",
        ] {
            assert!(!is_disk_slot(slot), "{slot}");
        }
    }
}
