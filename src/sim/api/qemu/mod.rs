//! QEMU VMs (`API2/Qemu.pm` in qemu-server): what the handlers share (finding a VM on its
//! node, the lock and digest checks, the opening of every task-starting handler, option
//! families), the VM list, status and destruction. Config and creation are in `config.rs`,
//! disks in `disks.rs`, power and migration in `power.rs`, clone and template in `clone.rs`,
//! the guest agent in `agent.rs`.

use std::future::Future;
use std::sync::Arc;

use serde_json::{Value, json};

use super::request::ApiCall;
use super::tasks::start_task;
use super::{ApiError, Reply, data};
use crate::sim::propstr::Props;
use crate::sim::state::{Cluster, Vm, Volume};

pub(crate) mod agent;
pub(crate) mod clone;
pub(crate) mod config;
pub(crate) mod disks;
pub(crate) mod power;

pub(crate) fn random_uuid() -> String {
    let bytes: [u8; 16] = rand::random();
    let h = hex::encode(bytes);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

pub(crate) fn random_mac() -> String {
    let bytes: [u8; 3] = rand::random();
    format!(
        "BC:24:11:{:02X}:{:02X}:{:02X}",
        bytes[0], bytes[1], bytes[2]
    )
}

pub(crate) fn missing_vm(node: &str, vmid: u32) -> ApiError {
    ApiError::fail(format!(
        "Configuration file 'nodes/{node}/qemu-server/{vmid}.conf' does not exist"
    ))
}

pub(crate) fn vm_on<'a>(cluster: &'a Cluster, node: &str, vmid: u32) -> Result<&'a Vm, ApiError> {
    cluster
        .vms
        .get(&vmid)
        .filter(|vm| vm.node == node)
        .ok_or_else(|| missing_vm(node, vmid))
}

pub(crate) fn check_unlocked(vm: &Vm) -> Result<(), ApiError> {
    match vm.lock() {
        Some(lock) => Err(ApiError::fail(format!("VM is locked ({lock})"))),
        None => Ok(()),
    }
}

pub(crate) fn check_digest(call: &ApiCall, vm: &Vm) -> Result<(), ApiError> {
    match call.get("digest") {
        Some(digest) if digest != vm.digest() => Err(ApiError::fail(
            "checksum mismatch (file change by other user?)",
        )),
        _ => Ok(()),
    }
}

/// What a task-starting handler's work ends with: its log lines, or the task's error.
pub(crate) type TaskOutcome = Result<Vec<String>, String>;

/// The opening every task-starting handler on an existing VM shares, as qemu-server's handlers
/// run under `PVE::QemuConfig->lock_config` (`API2/Qemu.pm`): under the cluster lock, the VM
/// must be on the node the path names and hold no lock (`check_lock`); then the handler's own
/// checks (`prepare`, which may change the cluster, such as claiming a clone's vmid, and
/// returns the task's work); then a UPID task of `kind` for the vmid.
pub(crate) fn start_vm_task<Work>(
    call: &ApiCall,
    kind: &str,
    prepare: impl FnOnce(&mut Cluster, &Vm) -> Result<Work, ApiError>,
) -> Reply
where
    Work: Future<Output = TaskOutcome> + Send + 'static,
{
    let node = call.node();
    let vmid = call.vmid();
    call.shared.mutate(|c| {
        let vm = vm_on(c, &node, vmid)?.clone();
        check_unlocked(&vm)?;
        let work = prepare(c, &vm)?;
        let upid = start_task(call, c, &node, kind, &vmid.to_string(), work);
        data(json!(upid))
    })
}

pub(crate) const DISK_PREFIXES: [&str; 4] = ["scsi", "virtio", "sata", "ide"];

pub(crate) fn is_disk_key(key: &str) -> bool {
    key == "efidisk0"
        || key == "tpmstate0"
        || DISK_PREFIXES.iter().any(|p| {
            key.strip_prefix(p)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
}

pub(crate) fn is_net_key(key: &str) -> bool {
    key.strip_prefix("net")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Storage id of a disk's volume (`local-lvm` in `local-lvm:vm-1-disk-0,size=2G`).
pub(crate) fn disk_storage(value: &str) -> Option<String> {
    let file = Props::parse(value, "file").first?;
    file.split_once(':').map(|(s, _)| s.to_string())
}

/// Control parameters of create/update that are not config options.
pub(crate) const CONTROL: [&str; 16] = [
    "node",
    "vmid",
    "start",
    "pool",
    "storage",
    "unique",
    "archive",
    "force",
    "live-restore",
    "bwlimit",
    "import-working-storage",
    "ha-managed",
    "digest",
    "delete",
    "revert",
    "background_delay",
];

pub(crate) fn vm_list(call: &ApiCall) -> Reply {
    let node = call.node();
    data(call.shared.read(|c| {
        Value::Array(
            c.vms
                .values()
                .filter(|vm| vm.node == node)
                .filter(|vm| call.allowed(&format!("/vms/{}", vm.vmid), &["VM.Audit"], false))
                .map(|vm| {
                    let config = vm.effective_config();
                    let mut entry = json!({"vmid": vm.vmid, "status": if vm.running {"running"} else {"stopped"}, "template": u8::from(vm.is_template())});
                    for key in ["name", "tags", "lock"] {
                        if let Some(value) = config.get(key) {
                            entry[key] = json!(value);
                        }
                    }
                    entry
                })
                .collect(),
        )
    }))
}

pub(crate) fn vm_status(call: &ApiCall) -> Reply {
    let node = call.node();
    let vmid = call.vmid();
    call.shared.read(|c| {
        let vm = vm_on(c, &node, vmid)?;
        let config = vm.effective_config();
        // `PVE::QemuServer::vmstatus` with the `full` additions of `vm_status`: the figures of
        // an idle guest (go-proxmox's capture of a real PVE 9 answer has them all).
        let cores = config.get("cores").and_then(|c| c.parse::<u64>().ok()).unwrap_or(1);
        let sockets = config.get("sockets").and_then(|s| s.parse::<u64>().ok()).unwrap_or(1);
        let maxdisk = ["scsi0", "virtio0", "sata0", "ide0"]
            .iter()
            .find_map(|key| config.get(*key))
            .map(|disk| super::lxc::disk_size(disk))
            .unwrap_or_default();
        let mut status = json!({
            "vmid": vmid, "status": if vm.running {"running"} else {"stopped"}, "qmpstatus": if vm.running {"running"} else {"stopped"},
            "ha": {"managed": 0}, "template": u8::from(vm.is_template()),
            "maxmem": config.get("memory").and_then(|m| m.parse::<u64>().ok()).unwrap_or(512) << 20,
            "cpus": cores * sockets,
            "maxdisk": maxdisk,
            "mem": 0, "disk": 0, "cpu": 0, "uptime": 0,
            "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
        });
        if config.get("agent").is_some_and(|a| a.starts_with('1') || a.contains("enabled=1")) {
            status["agent"] = json!(1);
        }
        if let Some(name) = config.get("name") {
            status["name"] = json!(name);
        }
        if let Some(lock) = vm.lock() {
            status["lock"] = json!(lock);
        }
        data(status)
    })
}

pub(crate) fn destroy_vm(call: &ApiCall) -> Reply {
    let node = call.node();
    let vmid = call.vmid();
    let shared = Arc::clone(&call.shared);
    start_vm_task(call, "qmdestroy", |_, vm| {
        if vm.running {
            return Err(ApiError::fail(format!(
                "VM {vmid} is running - destroy failed"
            )));
        }
        if vm.config.get("protection").is_some_and(|p| p == "1") {
            return Err(ApiError::fail(format!(
                "can't remove VM {vmid} - protection mode enabled"
            )));
        }
        let task_node = node.clone();
        Ok(async move {
            shared.mutate(|c| {
                let owned: Vec<Volume> = c
                    .volumes
                    .iter()
                    .filter(|v| v.vmid == Some(vmid) && (v.node.is_empty() || v.node == task_node))
                    .cloned()
                    .collect();
                for base in &owned {
                    let in_use = c
                        .volumes
                        .iter()
                        .any(|v| v.parent.as_deref() == Some(base.volid.as_str()));
                    // qemu-server `destroy_vm` refuses for every storage type (pve-storage's
                    // `vdisk_free` notes that LVM-thin itself would allow it).
                    if in_use {
                        return Err(format!(
                            "base volume '{}' is still in use by linked cloned",
                            base.volid
                        ));
                    }
                }
                for volume in &owned {
                    c.remove_volume(&task_node, &volume.volid);
                }
                c.remove_vm(vmid);
                Ok(vec![format!(
                    "destroyed VM {vmid} and {} volume(s)",
                    owned.len()
                )])
            })
        })
    })
}
