//! A VM's configuration (`API2/Qemu.pm`: `create_vm`, `vm_config`, `vm_pending`,
//! `update_vm`): creating a VM, reading its config and pending changes, changing it (at once,
//! or pending until the next start for what a running VM cannot take), and the permissions
//! each option needs.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::super::pools::join_pool;
use super::super::request::{ApiCall, percent_decode};
use super::super::tasks::{now, start_task};
use super::super::{ApiError, Params, Reply, data};
use super::disks::{allocate_disk, check_disk_storages, check_drive_params};
use super::{
    CONTROL, check_digest, check_unlocked, is_disk_key, is_net_key, random_mac, random_uuid,
    start_vm_task, vm_on,
};
use crate::sim::access;
use crate::sim::propstr::{NIC_MODELS, Props};
use crate::sim::state::{Cluster, Vm};

/// pve-common's `validate_ssh_public_keys`, which qemu-server's `create_vm` and `update_vm`
/// run first on `sshkeys` (URL-decoded): every non-blank line a key `ssh-keygen -l` reads.
fn check_ssh_keys(call: &ApiCall) -> Result<(), ApiError> {
    let Some(encoded) = call.get("sshkeys") else {
        return Ok(());
    };
    let keys = percent_decode(encoded);
    let readable = keys
        .split('\n')
        .filter(|line| !line.trim().is_empty())
        .all(is_public_key);
    if readable {
        Ok(())
    } else {
        Err(ApiError::fail("SSH public key validation error"))
    }
}

/// A public key line as `ssh-keygen -l` reads it: `type base64 [comment]`, possibly after
/// authorized_keys options, with key data that decodes for its type.
fn is_public_key(line: &str) -> bool {
    let line = line.trim();
    line.char_indices()
        .filter(|(at, c)| {
            !c.is_whitespace() && (*at == 0 || line[..*at].ends_with(char::is_whitespace))
        })
        .any(|(at, _)| russh::keys::PublicKey::from_openssh(&line[at..]).is_ok())
}

/// Re-print a NIC as Proxmox stores it: `<model>=<MAC>,key=value…`, generating a MAC if needed.
pub(crate) fn canonical_net(value: &str, new_mac: bool) -> String {
    let mut model = None;
    let mut mac = None;
    let mut rest = BTreeMap::new();
    for item in value.split(',').filter(|i| !i.is_empty()) {
        match item.split_once('=') {
            Some(("model", m)) => model = Some(m.to_string()),
            Some(("macaddr", m)) => mac = Some(m.to_ascii_uppercase()),
            Some((k, m)) if NIC_MODELS.contains(&k) => {
                model = Some(k.to_string());
                mac = Some(m.to_ascii_uppercase());
            }
            Some((k, v)) => {
                rest.insert(k.to_string(), v.to_string());
            }
            None => model = Some(item.to_string()),
        }
    }
    let mac = if new_mac {
        random_mac()
    } else {
        mac.unwrap_or_else(random_mac)
    };
    let mut out = format!("{}={mac}", model.unwrap_or_else(|| "virtio".into()));
    for (k, v) in rest {
        out.push_str(&format!(",{k}={v}"));
    }
    out
}

/// Proxmox stores cloud-init passwords hashed (crypt); the simulator keeps a salted SHA-256.
pub(crate) fn hash_password(password: &str) -> String {
    use sha2::Digest as _;
    let salt: [u8; 8] = rand::random();
    format!(
        "$5${}${}",
        hex::encode(salt),
        hex::encode(sha2::Sha256::digest(
            [&salt[..], password.as_bytes()].concat()
        ))
    )
}

pub(crate) fn normalize_tags(value: &str) -> String {
    let mut tags: Vec<String> = value
        .split([';', ',', ' '])
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    tags.sort();
    tags.dedup();
    tags.join(";")
}

/// Check, before a task forks, that every storage a new disk names exists and holds images.
/// What qemu-server's `check_vm_modify_config_perm` and friends ask of a create or config
/// change: each option's privilege on the VM, space on every storage a disk is allocated on
/// (and read access to an `import-from` source), `SDN.Use` on each bridge, `Mapping.Use` on each
/// PCI mapping, and root for raw PCI devices.
pub(crate) fn check_config_permissions(
    call: &ApiCall,
    vmid: u32,
    deleted: &[String],
) -> Result<(), ApiError> {
    let vm_path = format!("/vms/{vmid}");
    let options = call
        .params
        .keys()
        .filter(|k| !CONTROL.contains(&k.as_str()))
        .chain(deleted.iter());
    for option in options {
        call.require(&vm_path, &[access::config_privilege(option)])?;
    }
    for (key, value) in call
        .params
        .iter()
        .filter(|(k, _)| !CONTROL.contains(&k.as_str()))
    {
        let props = Props::parse(value, if is_net_key(key) { "model" } else { "file" });
        if is_disk_key(key) {
            if let Some((storage, rest)) = props.first.as_deref().and_then(|f| f.split_once(':'))
                && (rest == "cloudinit" || rest.parse::<f64>().is_ok())
            {
                call.require(&format!("/storage/{storage}"), &["Datastore.AllocateSpace"])?;
            }
            if let Some((storage, _)) = props
                .rest
                .get("import-from")
                .and_then(|f| f.split_once(':'))
            {
                call.require_any(
                    &format!("/storage/{storage}"),
                    &["Datastore.Audit", "Datastore.AllocateSpace"],
                )?;
            }
        } else if is_net_key(key) {
            if let Some(bridge) = props.rest.get("bridge") {
                call.require(&format!("/sdn/zones/localnetwork/{bridge}"), &["SDN.Use"])?;
            }
        } else if key.starts_with("hostpci") && call.user != "root@pam" {
            // qemu-server `check_hostpci_perm` (API2/Qemu.pm): root passes unchecked; anyone
            // else needs a mapping, and a raw `host` wins over it.
            let props = Props::parse(value, "host");
            if props.first.is_some() {
                return Err(ApiError::fail(format!(
                    "only root can set '{key}' config for non-mapped devices"
                )));
            }
            let Some(mapping) = props.rest.get("mapping") else {
                return Err(ApiError::fail("either 'host' or 'mapping' must be set."));
            };
            call.require(&format!("/mapping/pci/{mapping}"), &["Mapping.Use"])?;
        }
    }
    Ok(())
}

pub(crate) fn create_vm(call: &ApiCall) -> Reply {
    let node = call.node();
    let vmid = call.vmid();
    let params = call.params.clone();
    let start = call.flag("start").unwrap_or(false);
    let shared = Arc::clone(&call.shared);
    check_ssh_keys(call)?;
    match call.get("pool") {
        Some(pool) if call.allowed(&format!("/pool/{pool}"), &["VM.Allocate"], false) => {}
        _ => call.require(&format!("/vms/{vmid}"), &["VM.Allocate"])?,
    }
    check_config_permissions(call, vmid, &[])?;
    check_drive_params(&call.params)?;
    call.shared.mutate(|c| {
        // `create_and_lock_config` (pve-guest-common) runs `check_vmid_unused`; API2/Qemu.pm
        // prefixes its `die`. A container's vmid is as taken as a VM's.
        c.check_vmid_unused(vmid)
            .map_err(|held| ApiError::fail(format!("unable to create VM {vmid} - {held}")))?;
        join_pool(c, call.get("pool"), vmid)?;
        check_disk_storages(c, &params)?;
        // The vmid is claimed before the task forks.
        c.vms.insert(
            vmid,
            Vm {
                vmid,
                node: node.clone(),
                config: BTreeMap::from([("lock".to_string(), "create".to_string())]),
                pending: BTreeMap::new(),
                running: false,
            },
        );
        let task_node = node.clone();
        let upid = start_task(call, c, &node, "qmcreate", &vmid.to_string(), async move {
            shared.mutate(|c| {
                let mut allocated = Vec::new();
                let result = build_config(c, &task_node, vmid, &params, &mut allocated);
                match result {
                    Ok(config) => {
                        if let Some(vm) = c.vms.get_mut(&vmid) {
                            vm.config = config;
                            vm.running = start;
                        }
                        Ok(vec![format!("VM {vmid} created")])
                    }
                    Err(message) => {
                        // A failed create removes what it allocated, and the config.
                        for volid in allocated {
                            c.remove_volume(&task_node, &volid);
                        }
                        c.remove_vm(vmid);
                        Err(message)
                    }
                }
            })
        });
        data(json!(upid))
    })
}

pub(crate) fn build_config(
    c: &mut Cluster,
    node: &str,
    vmid: u32,
    params: &Params,
    allocated: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut config = BTreeMap::new();
    let mut disk_keys: Vec<&String> = params.keys().filter(|k| is_disk_key(k)).collect();
    // EFI disk first, TPM state last, as Proxmox numbers them.
    disk_keys.sort_by_key(|k| match k.as_str() {
        "efidisk0" => 0,
        "tpmstate0" => 2,
        _ => 1,
    });
    for key in disk_keys {
        let value = allocate_disk(c, node, vmid, key, &params[key], allocated)?;
        config.insert(key.clone(), value);
    }
    for (key, value) in params {
        if CONTROL.contains(&key.as_str()) || is_disk_key(key) {
            continue;
        }
        let value = if is_net_key(key) {
            canonical_net(value, false)
        } else if key == "cipassword" {
            hash_password(value)
        } else {
            value.clone()
        };
        config.insert(key.clone(), value);
    }
    config
        .entry("smbios1".into())
        .or_insert_with(|| format!("uuid={}", random_uuid()));
    config.entry("vmgenid".into()).or_insert_with(random_uuid);
    config.insert(
        "meta".into(),
        format!("creation-qemu=9.2.0,ctime={}", now()),
    );
    Ok(config)
}

pub(crate) fn vm_config(call: &ApiCall) -> Reply {
    let node = call.node();
    let vmid = call.vmid();
    call.shared.read(|c| {
        let vm = vm_on(c, &node, vmid)?;
        let config = if call.flag("current") == Some(true) {
            vm.config.clone()
        } else {
            vm.effective_config()
        };
        let mut out = serde_json::Map::new();
        for (key, value) in config {
            // Proxmox never shows the stored password hash.
            let value = if key == "cipassword" {
                "**********".to_string()
            } else {
                value
            };
            let number = matches!(
                key.as_str(),
                // `memory` is a property string since PVE 8.1 (`[current=]<integer>`), so it
                // stays a string, as check_type leaves strings.
                "cores"
                    | "sockets"
                    | "onboot"
                    | "template"
                    | "protection"
                    | "ciupgrade"
                    | "balloon"
            )
            .then(|| value.parse::<i64>().ok())
            .flatten()
            .or_else(|| memory_number(call, &key, &value));
            out.insert(key, number.map_or_else(|| json!(value), |n| json!(n)));
        }
        out.insert("digest".into(), json!(vm.digest()));
        data(Value::Object(out))
    })
}

/// `memory` as a JSON number on releases before 8.1 (`SimConfig::release`).
fn memory_number(call: &ApiCall, key: &str, value: &str) -> Option<i64> {
    (key == "memory" && call.shared.config.memory_is_number())
        .then(|| value.parse().ok())
        .flatten()
}

pub(crate) fn vm_pending(call: &ApiCall) -> Reply {
    let node = call.node();
    let vmid = call.vmid();
    call.shared.read(|c| {
        let vm = vm_on(c, &node, vmid)?;
        let mut keys: Vec<&String> = vm.config.keys().chain(vm.pending.keys()).collect();
        keys.sort();
        keys.dedup();
        data(Value::Array(
            keys.into_iter()
                .map(|key| {
                    let mut entry = json!({"key": key});
                    if let Some(value) = vm.config.get(key) {
                        entry["value"] = json!(value);
                    }
                    match vm.pending.get(key) {
                        Some(Some(pending)) => entry["pending"] = json!(pending),
                        Some(None) => entry["delete"] = json!(1),
                        None => {}
                    }
                    entry
                })
                // `config_with_pending_array` walks the loaded config, which carries its
                // digest (qm's `format_pending` skips that key when printing).
                .chain(std::iter::once(
                    json!({"key": "digest", "value": vm.digest()}),
                ))
                .collect(),
        ))
    })
}

/// Options a running VM takes at once; the rest wait for the next start.
pub(crate) fn hotpluggable(key: &str) -> bool {
    matches!(
        key,
        "name"
            | "description"
            | "tags"
            | "onboot"
            | "protection"
            | "ciuser"
            | "cipassword"
            | "sshkeys"
            | "nameserver"
            | "searchdomain"
            | "ciupgrade"
            | "cicustom"
            | "citype"
            | "startup"
    ) || key.starts_with("ipconfig")
        || is_net_key(key)
        || (is_disk_key(key) && key != "efidisk0" && key != "tpmstate0")
}

pub(crate) fn update_config(call: &ApiCall, asynchronous: bool) -> Reply {
    let node = call.node();
    let vmid = call.vmid();
    let set: Vec<(String, String)> = call
        .params
        .iter()
        .filter(|(k, _)| !CONTROL.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete: Vec<String> = call
        .get("delete")
        .map(|d| {
            d.split([',', ';', ' '])
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    check_ssh_keys(call)?;
    if set.is_empty() && delete.is_empty() && call.get("revert").is_none() {
        return Err(ApiError::fail("no options specified"));
    }
    check_config_permissions(call, vmid, &delete)?;
    check_drive_params(&call.params)?;
    let shared = Arc::clone(&call.shared);
    let task_node = node.clone();
    let apply = move |c: &mut Cluster| -> Result<(), String> {
        let mut allocated = Vec::new();
        let mut changes = Vec::new();
        for (key, value) in &set {
            let value = if is_disk_key(key) {
                allocate_disk(c, &task_node, vmid, key, value, &mut allocated)?
            } else if is_net_key(key) {
                canonical_net(value, false)
            } else if key == "tags" {
                normalize_tags(value)
            } else if key == "cipassword" {
                hash_password(value)
            } else {
                value.clone()
            };
            changes.push((key.clone(), Some(value)));
        }
        changes.extend(delete.iter().map(|key| (key.clone(), None)));
        let Some(vm) = c.vms.get_mut(&vmid) else {
            return Err(format!("VM {vmid} does not exist"));
        };
        let mut freed = Vec::new();
        for (key, value) in changes {
            if vm.running && !hotpluggable(&key) {
                // What equals the current config is no change: qemu-server's `update_vm`
                // ends with `cleanup_pending` (pve-guest-common `src/PVE/AbstractConfig.pm`),
                // which drops a pending value equal to the current one and a pending
                // deletion of an option the config does not have.
                if vm.config.get(&key) == value.as_ref() {
                    vm.pending.remove(&key);
                } else {
                    vm.pending.insert(key, value);
                }
            } else {
                vm.pending.remove(&key);
                let old = match value {
                    Some(value) => vm.config.insert(key.clone(), value),
                    None => vm.config.remove(&key),
                };
                // A replaced or removed cloud-init drive is freed, as qemu-server does.
                if let Some(old) = old
                    && is_disk_key(&key)
                    && vm.config.get(&key) != Some(&old)
                    && let Some(volid) = Props::parse(&old, "file").first
                    && volid.ends_with("-cloudinit") | volid.contains("-cloudinit.")
                {
                    freed.push(volid);
                }
            }
        }
        for volid in freed {
            c.remove_volume(&task_node, &volid);
        }
        Ok(())
    };
    if asynchronous {
        return start_vm_task(call, "qmconfig", |_, vm| {
            check_digest(call, vm)?;
            Ok(async move {
                shared
                    .mutate(apply)
                    .map(|()| vec!["update VM config".to_string()])
            })
        });
    }
    call.shared.mutate(|c| {
        let vm = vm_on(c, &node, vmid)?;
        check_unlocked(vm)?;
        check_digest(call, vm)?;
        // The synchronous API does the task's work in the request: what would fail the task
        // fails the request, with the same message.
        if let Some(message) = &call.task_error {
            return Err(ApiError::fail(message.clone()));
        }
        apply(c).map_err(ApiError::fail)?;
        data(Value::Null)
    })
}
