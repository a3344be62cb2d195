//! Disks (`API2/Qemu.pm` `resize_vm`, `move_vm_disk`, `PVE::QemuServer::create_disks`): where a
//! new disk may go, allocating it (or importing it with `import-from`), growing it, and
//! reassigning it to another VM (`move_disk` with `target-vmid`).

use std::sync::Arc;

use serde_json::json;

use super::super::request::ApiCall;
use super::super::tasks::start_task;
use super::super::{ApiError, Params, Reply, data};
use super::{TaskOutcome, check_digest, is_disk_key, start_vm_task};
use crate::sim::propstr::{Props, parse_size, print_size};
use crate::sim::state::{Cluster, Volume};

/// qemu-server's `$check_drive_param` (API2/Qemu.pm), on create and config change: an
/// `import-from` only onto a new disk of size 0 (`<storage>:0`), with what an EFI disk or a TPM
/// state needs to be imported; an ISO image only as a CD-ROM. Each is a parameter exception.
pub(crate) fn check_drive_params(params: &Params) -> Result<(), ApiError> {
    for (key, value) in params.iter().filter(|(k, _)| is_disk_key(k)) {
        let props = Props::parse(value, "file");
        let file = props.first.clone().unwrap_or_default();
        let new_disk_size = new_disk_size(&file);
        if props.rest.contains_key("import-from") {
            if new_disk_size.is_none_or(|size| size != 0.0) {
                return Err(ApiError::param(
                    key,
                    "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>",
                ));
            }
            let required: &[&str] = match key.as_str() {
                "efidisk0" => &["efitype", "pre-enrolled-keys"],
                "tpmstate0" => &["version"],
                _ => &[],
            };
            if let Some(missing) = required.iter().find(|r| !props.rest.contains_key(**r)) {
                return Err(ApiError::param(
                    key,
                    format!("need to specify '{missing}' when using 'import-from'"),
                ));
            }
        }
        let is_iso = new_disk_size.is_none()
            && file
                .split_once(':')
                .is_some_and(|(_, volname)| volname.starts_with("iso/"));
        if is_iso && props.rest.get("media").map(String::as_str) != Some("cdrom") {
            return Err(ApiError::param(
                key,
                "explicit 'media=cdrom' is required for iso images",
            ));
        }
    }
    Ok(())
}

/// The size of a disk to allocate (`local-lvm:32`, `32`), as qemu-server's `$NEW_DISK_RE`
/// (`^(([^/:\s]+):)?(\d+(\.\d+)?)$`) reads it.
fn new_disk_size(file: &str) -> Option<f64> {
    let size = match file.rsplit_once(':') {
        Some((storage, size)) => {
            let storage_ok = !storage.is_empty()
                && !storage.contains(['/', ':'])
                && !storage.chars().any(char::is_whitespace);
            storage_ok.then_some(size)?
        }
        None => file,
    };
    let (whole, fraction) = size.split_once('.').unwrap_or((size, "0"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(whole) && digits(fraction) {
        size.parse().ok()
    } else {
        None
    }
}

pub(crate) fn check_disk_storages(cluster: &Cluster, params: &Params) -> Result<(), ApiError> {
    for (key, value) in params.iter().filter(|(k, _)| is_disk_key(k)) {
        let Some(file) = Props::parse(value, "file").first else {
            continue;
        };
        if matches!(file.as_str(), "none" | "cdrom") {
            continue;
        }
        let Some((storage, rest)) = file.split_once(':') else {
            return Err(ApiError::param(
                key,
                format!("unable to parse volume ID '{file}'"),
            ));
        };
        let Some(def) = cluster.storage(storage) else {
            return Err(ApiError::fail(format!(
                "storage '{storage}' does not exist"
            )));
        };
        let allocates = rest == "cloudinit" || rest.parse::<f64>().is_ok();
        if allocates && !def.has_content("images") {
            return Err(ApiError::fail(format!(
                "storage '{storage}' does not support vm images"
            )));
        }
    }
    Ok(())
}

/// Allocate what a disk option asks for and return the value Proxmox stores.
pub(crate) fn allocate_disk(
    cluster: &mut Cluster,
    node: &str,
    vmid: u32,
    key: &str,
    value: &str,
    allocated: &mut Vec<String>,
) -> Result<String, String> {
    let mut props = Props::parse(value, "file");
    let file = props.first.clone().unwrap_or_default();
    let Some((storage, rest)) = file.split_once(':') else {
        return Ok(value.to_string());
    };
    if rest.starts_with("iso/") && cluster.find_volume(node, &file).is_none() {
        return Err(format!("volume '{file}' does not exist"));
    }
    let storage = storage.to_string();
    let file_based = cluster.storage(&storage).is_some_and(|s| s.file_based());
    let vol_node = cluster.volume_node(&storage, node);
    if rest == "cloudinit" {
        let volid = if file_based {
            format!("{storage}:{vmid}/vm-{vmid}-cloudinit.qcow2")
        } else {
            format!("{storage}:vm-{vmid}-cloudinit")
        };
        let format = if file_based { "qcow2" } else { "raw" }.to_string();
        cluster.volumes.push(Volume::vm_disk(
            vol_node,
            storage.clone(),
            volid.clone(),
            format,
            4 << 20,
            vmid,
            None,
        ));
        allocated.push(volid.clone());
        props.first = Some(volid);
        props.rest.insert("media".into(), "cdrom".into());
        return Ok(props.print());
    }
    let Ok(gib) = rest.parse::<f64>() else {
        return Ok(value.to_string());
    };
    let size = if let Some(source) = props.rest.remove("import-from") {
        let volume = cluster
            .find_volume(node, &source)
            .ok_or_else(|| format!("volume '{source}' does not exist"))?;
        if !matches!(volume.content.as_str(), "import" | "images") {
            return Err(format!(
                "'{source}' is not a valid source to import from: content type '{}'",
                volume.content
            ));
        }
        volume.virtual_size
    } else if key == "efidisk0" || key == "tpmstate0" {
        4 << 20
    } else {
        (gib * (1u64 << 30) as f64) as u64
    };
    let (volid, format) = cluster.next_disk_volid(node, &storage, vmid);
    cluster.volumes.push(Volume::vm_disk(
        vol_node,
        storage,
        volid.clone(),
        format,
        size,
        vmid,
        None,
    ));
    allocated.push(volid.clone());
    props.first = Some(volid);
    props.rest.insert("size".into(), print_size(size));
    Ok(props.print())
}

pub(crate) fn resize(call: &ApiCall) -> Reply {
    let node = call.node();
    let vmid = call.vmid();
    let disk = call.req("disk").to_string();
    let size = call.req("size").to_string();
    let Some((relative, amount)) = parse_size(&size) else {
        return Err(ApiError::param(
            "size",
            "value does not match the regex pattern",
        ));
    };
    let shared = Arc::clone(&call.shared);
    start_vm_task(call, "resize", |_, vm| {
        check_digest(call, vm)?;
        let value = vm
            .effective_config()
            .get(&disk)
            .cloned()
            .ok_or_else(|| ApiError::fail(format!("disk '{disk}' does not exist")))?;
        if value.contains("media=cdrom") {
            return Err(ApiError::fail(format!(
                "you can't resize a cdrom or a cloud-init drive ({disk})"
            )));
        }
        let task_node = node.clone();
        Ok(async move {
            shared.mutate(|c| {
                let mut props = Props::parse(&value, "file");
                let volid = props.first.clone().unwrap_or_default();
                let current = c
                    .find_volume(&task_node, &volid)
                    .map(|v| v.size)
                    .ok_or_else(|| format!("volume '{volid}' does not exist"))?;
                let new_size = if relative { current + amount } else { amount };
                if new_size < current {
                    return Err("shrinking disks is not supported".to_string());
                }
                if let Some(volume) = c.find_volume_mut(&task_node, &volid) {
                    volume.size = new_size;
                    volume.virtual_size = new_size;
                }
                props.rest.insert("size".into(), print_size(new_size));
                if let Some(vm) = c.vms.get_mut(&vmid) {
                    vm.config.insert(disk.clone(), props.print());
                }
                Ok(vec![format!(
                    "resized {disk} from {} to {}",
                    print_size(current),
                    print_size(new_size)
                )])
            })
        })
    })
}

/// What a disk reassign moves, settled by `check_reassign`.
struct Reassign {
    /// The source disk's value in its config.
    value: String,
    /// The volume it names.
    volid: String,
}

/// The key of an unused-volume entry (`unused0`): a plain volume id, no drive options.
fn is_unused_key(key: &str) -> bool {
    key.strip_prefix("unused")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Storages whose plugin has the `rename` feature for a current (not base) volume
/// (pve-storage `Plugin.pm` and `LvmThinPlugin.pm` `volume_has_feature`).
fn can_rename(kind: &str) -> bool {
    matches!(
        kind,
        "dir" | "nfs" | "cifs" | "btrfs" | "lvm" | "lvmthin" | "zfspool" | "rbd"
    )
}

/// qemu-server's `$load_and_check_reassign_configs` (`API2/Qemu.pm` `move_vm_disk`), run once
/// before the task forks and again inside it, under the lock of both configs: both VMs exist
/// on one node, neither is locked or a template, the digests match, the source disk exists
/// and the target key is free, the volume is a managed one that its storage can rename, and a
/// running source gives up only an unused volume.
fn check_reassign(c: &Cluster, params: &ReassignParams) -> Result<Reassign, String> {
    let ReassignParams {
        vmid,
        target_vmid,
        disk,
        target_disk,
        ..
    } = params;
    let source = c
        .vms
        .get(vmid)
        .ok_or_else(|| format!("could not find VM {vmid}"))?;
    let target = c
        .vms
        .get(target_vmid)
        .ok_or_else(|| format!("could not find target VM {target_vmid}"))?;
    if source.node != target.node {
        return Err(format!(
            "Both VMs need to be on the same node ({} != {})",
            source.node, target.node
        ));
    }
    for vm in [source, target] {
        if let Some(lock) = vm.lock() {
            return Err(format!("VM is locked ({lock})"));
        }
    }
    if source.is_template() || target.is_template() {
        return Err("Can't move disks from or to template VMs".into());
    }
    // pve-common `PVE::Tools::assert_if_modified`, prefixed with the VM it checked.
    for (vm, digest) in [(source, &params.digest), (target, &params.target_digest)] {
        if digest.as_ref().is_some_and(|d| *d != vm.digest()) {
            return Err(format!(
                "VM {}: detected modified configuration - file changed by other user? Try again.",
                vm.vmid
            ));
        }
    }
    let Some(value) = source.config.get(disk.as_str()).cloned() else {
        return Err(format!("Disk '{disk}' for VM '{vmid}' does not exist"));
    };
    if target.config.contains_key(target_disk.as_str()) {
        return Err(format!(
            "Target disk key '{target_disk}' is already in use for VM '{target_vmid}'"
        ));
    }
    let props = Props::parse(&value, "file");
    let volid = props.first.clone().unwrap_or_default();
    if volid.is_empty() || volid == "none" {
        return Err(format!("disk '{disk}' has no associated volume"));
    }
    if props.rest.get("media").map(String::as_str) == Some("cdrom") || volid == "cdrom" {
        return Err("CD drive contents can't be moved to another VM".into());
    }
    let Some(volume) = c.find_volume(&source.node, &volid) else {
        return Err(format!("Volume '{volid}' not managed by PVE"));
    };
    let renamable = c
        .storage(&volume.storage)
        .is_some_and(|s| can_rename(&s.kind))
        && !volid.contains(&format!("base-{vmid}-disk-"));
    if !renamable {
        return Err("Storage does not support moving of this disk to another VM".into());
    }
    if source.running && !is_unused_key(disk) {
        return Err(
            "Cannot move disk to another VM while the source VM is running - detach first".into(),
        );
    }
    Ok(Reassign { value, volid })
}

/// The same error on `target-vmid` and `storage`, as `raise_param_exc` gets it.
fn both_params(msg: &str) -> std::collections::BTreeMap<String, String> {
    ["target-vmid", "storage"]
        .map(|key| (key.to_string(), msg.to_string()))
        .into_iter()
        .collect()
}

/// The parameters of a reassign, read once from the request.
#[derive(Clone)]
struct ReassignParams {
    vmid: u32,
    target_vmid: u32,
    disk: String,
    target_disk: String,
    digest: Option<String>,
    target_digest: Option<String>,
}

/// `POST …/move_disk` (qemu-server `API2/Qemu.pm` `move_vm_disk`). Only the reassign to
/// another VM (`target-vmid`) is simulated: moving to another storage is answered as not
/// implemented rather than faked.
pub(crate) fn move_disk(call: &ApiCall) -> Reply {
    let storage = call.get("storage");
    let target_vmid = call.get("target-vmid").and_then(|v| v.parse::<u32>().ok());
    let Some(target_vmid) = target_vmid else {
        if storage.is_some() {
            return Err(ApiError::new(
                axum::http::StatusCode::NOT_IMPLEMENTED,
                "moving a disk to another storage is not simulated",
            ));
        }
        let msg = "both 'storage' and 'target-vmid' missing, either needs to be set";
        return Err(ApiError::params(both_params(msg)));
    };
    if storage.is_some() {
        let msg = "either set 'storage' or 'target-vmid', but not both";
        return Err(ApiError::params(both_params(msg)));
    }
    let vmid = call.vmid();
    if call.user != "root@pam" {
        call.require(&format!("/vms/{target_vmid}"), &["VM.Config.Disk"])?;
    }
    if vmid == target_vmid {
        return Err(ApiError::param(
            "target-vmid",
            "must be different than source VMID to reassign disk",
        ));
    }
    let disk = call.req("disk").to_string();
    let params = ReassignParams {
        vmid,
        target_vmid,
        target_disk: call.get("target-disk").unwrap_or(&disk).to_string(),
        disk,
        digest: call.get("digest").map(str::to_string),
        target_digest: call.get("target-digest").map(str::to_string),
    };
    let node = call.node();
    let shared = Arc::clone(&call.shared);
    call.shared.mutate(|c| {
        let reassign = check_reassign(c, &params).map_err(ApiError::fail)?;
        let storage = reassign.volid.split(':').next().unwrap_or_default();
        call.require(&format!("/storage/{storage}"), &["Datastore.AllocateSpace"])?;
        let id = format!(
            "{vmid}-{}>{target_vmid}-{}",
            params.disk, params.target_disk
        );
        let work = async move { shared.mutate(|c| reassign_disk(c, &params)) };
        data(json!(start_task(call, c, &node, "qmmove", &id, work)))
    })
}

/// The reassign itself, in the task: the checks again under both config locks, the volume
/// renamed to the target's next free disk name (`PVE::Storage::rename_volume`, which keeps a
/// linked clone's base), the entry removed from the source (and its boot order) and written to
/// the target under `target-disk`.
fn reassign_disk(c: &mut Cluster, params: &ReassignParams) -> TaskOutcome {
    let Reassign { value, volid } = check_reassign(c, params)?;
    let ReassignParams {
        vmid,
        target_vmid,
        disk,
        target_disk,
        ..
    } = params;
    let node = c
        .vms
        .get(vmid)
        .map(|vm| vm.node.clone())
        .unwrap_or_default();
    let mut log = vec![format!(
        "reassign disk '{disk}' from VM '{vmid}' as '{target_disk}' to VM '{target_vmid}'"
    )];
    let (storage, volname) = volid.split_once(':').unwrap_or_default();
    let (plain, _) = c.next_disk_volid(&node, storage, *target_vmid);
    let new_name = plain
        .rsplit(['/', ':'])
        .next()
        .unwrap_or_default()
        .to_string();
    let file_based = c.storage(storage).is_some_and(|s| s.file_based());
    // A linked clone's volume keeps its base: `base-9000-disk-0/vm-101-disk-0` on LVM-thin,
    // `9000/base-9000-disk-0.qcow2/101/vm-101-disk-0.qcow2` on a directory.
    let base = volname.rsplit_once('/').map(|(dir, _)| dir).filter(|_| {
        c.find_volume(&node, &volid)
            .is_some_and(|v| v.parent.is_some())
    });
    let new_volid = match (base, file_based) {
        (Some(base), true) => {
            let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
            format!("{storage}:{base}/{target_vmid}/{new_name}")
        }
        (Some(base), false) => format!("{storage}:{base}/{new_name}"),
        (None, true) => format!("{storage}:{target_vmid}/{new_name}"),
        (None, false) => format!("{storage}:{new_name}"),
    };
    if c.find_volume(&node, &new_volid).is_some() {
        return Err(format!("target volume '{new_name}' already exists"));
    }
    if let Some(volume) = c.find_volume_mut(&node, &volid) {
        volume.volid = new_volid.clone();
        volume.vmid = Some(*target_vmid);
    }
    let mut props = Props::parse(&value, "file");
    props.first = Some(new_volid.clone());
    let target_value = if is_unused_key(target_disk) {
        new_volid
    } else {
        props.print()
    };
    if let Some(source) = c.vms.get_mut(vmid) {
        if let Some(boot) = source.config.get("boot").cloned() {
            let order = boot.strip_prefix("order=").unwrap_or_default();
            let devices: Vec<&str> = order.split(';').filter(|d| !d.is_empty()).collect();
            if devices.contains(&disk.as_str()) {
                log.push(format!("removing disk '{disk}' from boot order config"));
                let kept: Vec<&str> = devices.into_iter().filter(|d| d != disk).collect();
                source
                    .config
                    .insert("boot".into(), format!("order={}", kept.join(";")));
            }
        }
        source.config.remove(disk.as_str());
        log.push(format!("removing disk '{disk}' from VM '{vmid}' config"));
    }
    if let Some(target) = c.vms.get_mut(target_vmid) {
        target.config.insert(target_disk.clone(), target_value);
    }
    Ok(log)
}
