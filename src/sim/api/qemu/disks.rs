//! Disks (`API2/Qemu.pm` `resize_vm`, `PVE::QemuServer::create_disks`): where a new disk may
//! go, allocating it (or importing it with `import-from`), and growing it.

use std::sync::Arc;

use super::super::request::ApiCall;
use super::super::{ApiError, Params, Reply};
use super::{check_digest, is_disk_key, start_vm_task};
use crate::sim::propstr::{Props, parse_size, print_size};
use crate::sim::state::{Cluster, Volume};

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
