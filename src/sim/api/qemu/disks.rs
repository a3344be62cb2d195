//! Disks (`API2/Qemu.pm` `resize_vm`, `PVE::QemuServer::create_disks`): where a new disk may
//! go, allocating it (or importing it with `import-from`), and growing it.

use std::sync::Arc;

use super::super::request::ApiCall;
use super::super::{ApiError, Params, Reply};
use super::{check_digest, is_disk_key, start_vm_task};
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
