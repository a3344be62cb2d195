//! Templates and clones (`API2/Qemu.pm` `template`, `clone_vm`): converting a VM into a
//! template (its disks become base volumes), full and linked clones.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::pools::join_pool;
use super::super::request::ApiCall;
use super::super::{ApiError, Reply};
use super::config::canonical_net;
use super::{disk_storage, is_disk_key, is_net_key, random_uuid, start_vm_task};
use crate::sim::propstr::Props;
use crate::sim::state::{Cluster, Vm, Volume};

pub(crate) fn template(call: &ApiCall) -> Reply {
    let node = call.node();
    let vmid = call.vmid();
    let shared = Arc::clone(&call.shared);
    start_vm_task(call, "qmtemplate", |_, vm| {
        if vm.is_template() {
            return Err(ApiError::fail("you can't convert a template to a template"));
        }
        if vm.running {
            return Err(ApiError::fail(
                "you can't convert a VM to template if VM is running",
            ));
        }
        let task_node = node.clone();
        Ok(async move {
            shared.mutate(|c| {
                let Some(vm) = c.vms.get(&vmid) else {
                    return Err(format!("VM {vmid} does not exist"));
                };
                let mut renames = Vec::new();
                for (key, value) in &vm.config {
                    if !is_disk_key(key) || value.contains("media=cdrom") {
                        continue;
                    }
                    let mut props = Props::parse(value, "file");
                    let Some(volid) = props.first.clone() else {
                        continue;
                    };
                    let base =
                        volid.replace(&format!("vm-{vmid}-disk-"), &format!("base-{vmid}-disk-"));
                    if base != volid {
                        props.first = Some(base.clone());
                        renames.push((key.clone(), volid, base, props.print()));
                    }
                }
                let mut log = Vec::new();
                for (key, old, new, value) in renames {
                    if let Some(volume) = c.find_volume_mut(&task_node, &old) {
                        volume.volid = new.clone();
                    }
                    if let Some(vm) = c.vms.get_mut(&vmid) {
                        vm.config.insert(key, value);
                    }
                    log.push(format!("renamed {old} to {new}"));
                }
                if let Some(vm) = c.vms.get_mut(&vmid) {
                    vm.config.insert("template".into(), "1".into());
                }
                Ok(log)
            })
        })
    })
}

/// What a clone makes, settled before its task forks.
struct ClonePlan {
    /// The source's node.
    node: String,
    /// Where the clone goes.
    target: String,
    vmid: u32,
    newid: u32,
    full: bool,
    /// `storage` of a full clone.
    target_storage: Option<String>,
}

/// `POST …/clone`: a full or linked clone of a VM or template (qemu-server `clone_vm`).
pub(crate) fn clone_vm(call: &ApiCall) -> Reply {
    let newid: u32 = call
        .get("newid")
        .and_then(|v| v.parse().ok())
        .unwrap_or_default();
    let shared = Arc::clone(&call.shared);
    start_vm_task(call, "qmclone", |c, source| {
        let plan = check_clone(call, c, source, newid)?;
        // A container's vmid passes the early `-f $conffile` check (its config is not a QEMU
        // one); the task then writes the clone's temporary config and pmxcfs refuses the
        // rename onto a vmid another guest holds (`vmlist_different_vm_exists` in
        // pve-cluster's memdb.c), as `PVE::File::file_set_contents` reports it.
        if c.containers.contains_key(&newid) {
            let refused = format!(
                "close (rename) atomic file '/etc/pve/nodes/{}/qemu-server/{newid}.conf' failed: File exists",
                plan.node
            );
            return Ok(futures::future::Either::Left(async move { Err(refused) }));
        }
        join_pool(c, call.get("pool"), newid)?;
        c.vms.insert(
            newid,
            Vm {
                vmid: newid,
                node: plan.target.clone(),
                config: BTreeMap::from([("lock".to_string(), "clone".to_string())]),
                pending: BTreeMap::new(),
                running: false,
            },
        );
        let config = source.config.clone();
        let name = call.get("name").map(str::to_string).unwrap_or_else(|| {
            let source_name = config.get("name").cloned();
            format!(
                "Copy-of-VM-{}",
                source_name.unwrap_or_else(|| plan.vmid.to_string())
            )
        });
        let description = call.get("description").map(str::to_string);
        Ok(futures::future::Either::Right(async move {
            shared.mutate(|c| {
                let mut new_config = clone_config(c, &plan, &config)?;
                new_config.insert("name".into(), name);
                if let Some(description) = description {
                    new_config.insert("description".into(), description);
                }
                if let Some(vm) = c.vms.get_mut(&plan.newid) {
                    vm.config = new_config;
                }
                let kind = if plan.full { "full" } else { "linked" };
                Ok(vec![format!(
                    "create {kind} clone of drive(s) of VM {}",
                    plan.vmid
                )])
            })
        }))
    })
}

/// Whether a clone can be made as asked: a free new vmid, a linked clone only of a template and
/// without `storage` or `format`, a known target node reachable from every local disk, linkable
/// storages, and space on the target storage.
fn check_clone(
    call: &ApiCall,
    c: &Cluster,
    source: &Vm,
    newid: u32,
) -> Result<ClonePlan, ApiError> {
    let node = call.node();
    if c.vms.contains_key(&newid) {
        return Err(ApiError::fail(format!(
            "unable to create VM {newid}: config file already exists"
        )));
    }
    // qemu-server `clone_vm` (API2/Qemu.pm): `check_node_exists` on the target, then the
    // linked clone's refusals, all `die`s.
    let target = call.get("target").unwrap_or(&node).to_string();
    if c.node(&target).is_none() {
        return Err(ApiError::fail(format!("no such cluster node '{target}'")));
    }
    let template = source.is_template();
    let full = call.flag("full").unwrap_or(!template);
    if !full {
        for parameter in ["storage", "format"] {
            if call.get(parameter).is_some() {
                return Err(ApiError::fail(format!(
                    "parameter '{parameter}' not allowed for linked clones"
                )));
            }
        }
        if !template {
            return Err(ApiError::fail(
                "linked clones can only be created from templates",
            ));
        }
    }
    for (key, value) in source.config.iter().filter(|(k, _)| is_disk_key(k)) {
        let Some(storage) = disk_storage(value) else {
            continue;
        };
        let Some(def) = c.storage(&storage) else {
            continue;
        };
        let cdrom = value.contains("media=cdrom");
        if target != node && !def.shared && !cdrom {
            return Err(ApiError::fail(format!(
                "can't clone VM to node '{target}' (VM uses local storage '{storage}' for {key})"
            )));
        }
        if !full && !cdrom && key != "tpmstate0" && !def.can_link() {
            return Err(ApiError::fail(format!(
                "Linked clone feature is not supported for drive '{key}'"
            )));
        }
    }
    if let Some(storage) = call.get("storage") {
        if c.storage(storage).is_none() {
            return Err(ApiError::fail(format!(
                "storage '{storage}' does not exist"
            )));
        }
        call.require(&format!("/storage/{storage}"), &["Datastore.AllocateSpace"])?;
    }
    Ok(ClonePlan {
        node,
        target,
        vmid: source.vmid,
        newid,
        full,
        target_storage: call.get("storage").map(str::to_string),
    })
}

/// The clone's config, its disks copied or linked; on failure what was allocated is freed and
/// the claimed vmid released.
fn clone_config(
    c: &mut Cluster,
    plan: &ClonePlan,
    source_config: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut new_config = BTreeMap::new();
    let mut allocated = Vec::new();
    for (key, value) in source_config {
        if matches!(key.as_str(), "template" | "lock" | "meta") {
            continue;
        }
        let value = if is_net_key(key) {
            canonical_net(value, true)
        } else if key == "smbios1" {
            format!("uuid={}", random_uuid())
        } else if key == "vmgenid" {
            random_uuid()
        } else if is_disk_key(key) {
            match clone_disk(c, plan, key, value, &mut allocated) {
                Ok(value) => value,
                Err(message) => {
                    for volid in &allocated {
                        c.remove_volume(&plan.target, volid);
                    }
                    c.remove_vm(plan.newid);
                    return Err(message);
                }
            }
        } else {
            value.clone()
        };
        new_config.insert(key.clone(), value);
    }
    Ok(new_config)
}

/// Copy (full clone, TPM state, cloud-init drive) or link one disk of the source.
fn clone_disk(
    c: &mut Cluster,
    plan: &ClonePlan,
    key: &str,
    value: &str,
    allocated: &mut Vec<String>,
) -> Result<String, String> {
    let ClonePlan {
        node,
        target,
        vmid,
        newid,
        full,
        ..
    } = plan;
    let (vmid, newid, full) = (*vmid, *newid, *full);
    let target_storage = plan.target_storage.as_deref();
    let mut props = Props::parse(value, "file");
    let Some(volid) = props.first.clone() else {
        return Ok(value.to_string());
    };
    let Some(source) = c.find_volume(node, &volid).cloned() else {
        return Ok(value.to_string());
    };
    let cloudinit = volid.contains("-cloudinit");
    let storage = if full {
        target_storage.unwrap_or(&source.storage).to_string()
    } else {
        source.storage.clone()
    };
    let file_based = c.storage(&storage).is_some_and(|s| s.file_based());
    let (new_volid, format, parent) = if cloudinit {
        let id = if file_based {
            format!("{storage}:{newid}/vm-{newid}-cloudinit.qcow2")
        } else {
            format!("{storage}:vm-{newid}-cloudinit")
        };
        (id, source.format.clone(), None)
    } else if full || key == "tpmstate0" {
        let (id, format) = c.next_disk_volid(target, &storage, newid);
        (id, format, None)
    } else {
        let (plain, format) = c.next_disk_volid(target, &storage, newid);
        let base = volid.split_once(':').map(|(_, n)| n).unwrap_or_default();
        let name = plain.split_once(':').map(|(_, n)| n).unwrap_or_default();
        let linked = if file_based {
            format!(
                "{storage}:{vmid}/{}/{name}",
                base.rsplit('/').next().unwrap_or(base)
            )
        } else {
            format!("{storage}:{base}/{name}")
        };
        (linked, format, Some(volid.clone()))
    };
    let vol_node = c.volume_node(&storage, target);
    let mut volume = Volume::vm_disk(
        vol_node,
        storage,
        new_volid.clone(),
        format,
        source.size,
        newid,
        parent,
    );
    volume.virtual_size = source.virtual_size;
    if full {
        volume.contents = source.contents.clone();
    }
    c.volumes.push(volume);
    allocated.push(new_volid.clone());
    props.first = Some(new_volid);
    Ok(props.print())
}
