//! Power and placement (`API2/Qemu.pm` `vm_start`, `vm_shutdown`, `vm_stop`, `migrate_vm`):
//! starting (with the snippets `cicustom` names checked), shutting down and stopping a VM, and
//! offline migration to another node.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::super::request::ApiCall;
use super::super::{ApiError, Reply};
use super::start_vm_task;
use crate::sim::state::Cluster;

/// `POST …/status/start`, `…/shutdown`, `…/stop`: a task of `kind` (`qmstart`, …).
pub(crate) fn power(call: &ApiCall, kind: &'static str) -> Reply {
    let vmid = call.vmid();
    let shared = Arc::clone(&call.shared);
    start_vm_task(call, kind, |_, _| {
        Ok(async move {
            let snippets_dirs = &shared.config.snippets_dirs;
            let powered = shared.mutate(|c| {
                // qemu-server reads the `cicustom` files when it builds the cloud-init drive.
                let missing = c.vms.get(&vmid).and_then(|vm| {
                    let cicustom = vm.effective_config().get("cicustom").cloned()?;
                    missing_snippet(c, snippets_dirs, &vm.node, &cicustom)
                });
                let Some(vm) = c.vms.get_mut(&vmid) else {
                    return Err(format!("VM {vmid} does not exist"));
                };
                match kind {
                    "qmstart" if vm.is_template() => {
                        Err("you can't start a vm if it's a template".to_string())
                    }
                    "qmstart" if vm.running => Err(format!("VM {vmid} already running")),
                    "qmstart" if missing.is_some() => Err(missing.unwrap_or_default()),
                    "qmstart" => {
                        vm.apply_pending();
                        vm.running = true;
                        Ok(vec![format!("started VM {vmid}")])
                    }
                    _ if !vm.running => Err(format!("VM {vmid} not running")),
                    _ => {
                        vm.running = false;
                        vm.apply_pending();
                        Ok(vec![format!("stopped VM {vmid}")])
                    }
                }
            });
            if powered.is_ok() {
                shared.note_power(vmid, kind == "qmstart");
            }
            powered
        })
    })
}

/// The first volume a `cicustom` value names that is not a snippet on the VM's node, with
/// qemu-server's complaint about it.
pub(crate) fn missing_snippet(
    c: &Cluster,
    dirs: &BTreeMap<String, std::path::PathBuf>,
    node: &str,
    cicustom: &str,
) -> Option<String> {
    for item in cicustom.split(',') {
        let Some((_, volid)) = item.split_once('=') else {
            continue;
        };
        let (storage, path) = volid.split_once(':').unwrap_or((volid, ""));
        if c.storage(storage).is_none() {
            return Some(format!("storage '{storage}' does not exist"));
        }
        let Some(name) = path.strip_prefix("snippets/") else {
            return Some(format!("{volid} is not in the snippets directory"));
        };
        let exists = storage == "local"
            && !name.contains('/')
            && dirs.get(node).is_some_and(|dir| dir.join(name).is_file());
        if !exists {
            return Some(format!("volume '{volid}' does not exist"));
        }
    }
    None
}

/// `POST …/migrate`: offline migration moves the VM and its local disks to the target node
/// (storages of the same id there); a running VM needs `online`, which the simulator refuses
/// to model; a linked clone's disks cannot leave their local base image.
pub(crate) fn migrate_vm(call: &ApiCall) -> Reply {
    let node = call.node();
    let vmid = call.vmid();
    let target = call.req("target").to_string();
    let shared = Arc::clone(&call.shared);
    start_vm_task(call, "qmigrate", |c, vm| {
        // qemu-server `migrate_vm` (API2/Qemu.pm): a parameter exception for the local node,
        // pve-cluster's `check_node_exists` dies for an unknown one.
        if target == node {
            return Err(ApiError::param("target", "target is local node."));
        }
        match c.node(&target) {
            None => {
                return Err(ApiError::fail(format!("no such cluster node '{target}'")));
            }
            Some(n) if !n.online => {
                return Err(ApiError::fail(format!(
                    "target node '{target}' is not online"
                )));
            }
            Some(_) => {}
        }
        if vm.running {
            if call.flag("online") == Some(true) {
                return Err(ApiError::fail(
                    "online migration is not simulated: shut the VM down first",
                ));
            }
            return Err(ApiError::fail("can't migrate running VM without --online"));
        }
        if let Some(vm) = c.vms.get_mut(&vmid) {
            vm.config.insert("lock".into(), "migrate".into());
        }
        let task_node = node.clone();
        Ok(async move {
            shared.mutate(|c| {
                let linked: Option<String> = c
                    .volumes
                    .iter()
                    .filter(|v| v.vmid == Some(vmid) && v.node == task_node)
                    .find(|v| v.parent.is_some())
                    .map(|v| v.volid.clone());
                let unlock = |c: &mut Cluster| {
                    if let Some(vm) = c.vms.get_mut(&vmid) {
                        vm.config.remove("lock");
                    }
                };
                if let Some(volid) = linked {
                    unlock(c);
                    return Err(format!(
                        "can't migrate local disk '{volid}': it is a linked clone of a base image on local storage"
                    ));
                }
                let mut log = vec![format!("starting migration of VM {vmid} to node '{target}'")];
                for volume in c
                    .volumes
                    .iter_mut()
                    .filter(|v| v.vmid == Some(vmid) && v.node == task_node)
                {
                    log.push(format!("copying local disk '{}' to node '{target}'", volume.volid));
                    volume.node = target.clone();
                }
                if let Some(vm) = c.vms.get_mut(&vmid) {
                    vm.node = target.clone();
                }
                unlock(c);
                log.push("migration finished successfully".into());
                Ok(log)
            })
        })
    })
}
