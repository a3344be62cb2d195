//! LXC containers (`src/PVE/API2/LXC.pm` in pve-container), as far as a cluster that proxfleet
//! shares with them needs: creating one from a `vztmpl` volume, listing a node's containers and
//! destroying a stopped one. A container occupies its vmid like a VM (`/cluster/nextid`, VM
//! creates and clones are refused on it) and shows in `/cluster/resources` as `type: lxc`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::request::ApiCall;
use super::tasks::start_task;
use super::{ApiError, Reply, data};
use crate::sim::propstr::Props;
use crate::sim::state::{Cluster, Container};

/// Parameters of `POST /nodes/{node}/lxc` that steer the handler rather than land in the config.
const CONTROL: [&str; 14] = [
    "node",
    "vmid",
    "ostemplate",
    "storage",
    "pool",
    "start",
    "restore",
    "force",
    "unique",
    "bwlimit",
    "ignore-unpack-errors",
    "ha-managed",
    "password",
    "ssh-public-keys",
];

/// `GET /nodes/{node}/lxc`: `PVE::LXC::vmstatus` of the node's containers the caller may audit.
pub(crate) fn ct_list(call: &ApiCall) -> Reply {
    let node = call.node();
    data(call.shared.read(|c| {
        Value::Array(
            c.containers
                .values()
                .filter(|ct| ct.node == node)
                .filter(|ct| call.allowed(&format!("/vms/{}", ct.vmid), &["VM.Audit"], false))
                .map(|ct| {
                    let mut entry = guest_row(c, ct);
                    if let Some(map) = entry.as_object_mut() {
                        // `vmstatus` lists the container's own limits and the `type` of its
                        // guest, never a cluster-wide id or node.
                        for key in ["id", "node", "maxcpu", "pool"] {
                            map.remove(key);
                        }
                        map.insert("type".into(), json!("lxc"));
                        map.insert("cpus".into(), json!(cpus(ct)));
                    }
                    entry
                })
                .collect(),
        )
    }))
}

/// A container's row as `/cluster/resources` lists it (pve-cluster's `vmlist` joined with
/// the `pvestatd` figures in `PVE::API2::Cluster::resources`).
pub(crate) fn guest_row(c: &Cluster, ct: &Container) -> Value {
    const MIB: u64 = 1 << 20;
    let running = ct.running;
    let mut row = json!({
        "id": format!("lxc/{}", ct.vmid), "type": "lxc", "vmid": ct.vmid, "node": ct.node,
        "status": if running {"running"} else {"stopped"},
        "template": u8::from(ct.config.get("template").is_some_and(|t| t == "1")),
        "name": ct.config.get("hostname").cloned().unwrap_or_else(|| format!("CT{}", ct.vmid)),
        "maxmem": number(ct.config.get("memory"), 512) * MIB,
        "maxswap": number(ct.config.get("swap"), 512) * MIB,
        "maxcpu": cpus(ct),
        "maxdisk": ct.config.get("rootfs").map(|r| disk_size(r)).unwrap_or_default(),
        "mem": 0, "disk": 0, "cpu": 0, "uptime": 0,
        "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
    });
    for key in ["tags", "lock"] {
        if let Some(value) = ct.config.get(key) {
            row[key] = json!(value);
        }
    }
    if let Some(pool) = c.pool_of(ct.vmid) {
        row["pool"] = json!(pool);
    }
    row
}

/// `PVE::LXC::vmstatus`: the cores, else the host's CPU count (the simulator's nodes have 16).
fn cpus(ct: &Container) -> u64 {
    match number(ct.config.get("cores"), 0) {
        0 => 16,
        cores => cores,
    }
}

fn number(value: Option<&String>, default: u64) -> u64 {
    value.and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The `size=` of a disk's property string in bytes (`8G`, `512M`, plain bytes).
pub(crate) fn disk_size(value: &str) -> u64 {
    let props = Props::parse(value, "volume");
    let Some(size) = props.rest.get("size") else {
        return 0;
    };
    let (digits, unit) = size.split_at(
        size.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(size.len()),
    );
    let shift = match unit {
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => 0,
    };
    digits.parse::<u64>().unwrap_or_default() << shift
}

/// `POST /nodes/{node}/lxc` (`create_vm` in `API2/LXC.pm`), the checks in its order: the vmid
/// unused (`PVE::Cluster::check_vmid_unused`, a `die`), `VM.Allocate`, the template's content
/// type (`PVE::Storage::check_volume_access`), the rootfs storage able to hold container
/// directories (a parameter exception), then a `vzcreate` task that unpacks the template
/// (`PVE::LXC::Create::restore_archive`: `abs_filesystem_path` fails on a missing file).
pub(crate) fn create_ct(call: &ApiCall) -> Reply {
    let node = call.node();
    let vmid = call.vmid();
    call.shared
        .read(|c| c.check_vmid_unused(vmid))
        .map_err(ApiError::fail)?;
    match call.get("pool") {
        Some(pool) if call.allowed(&format!("/pool/{pool}"), &["VM.Allocate"], false) => {}
        _ => call.require(&format!("/vms/{vmid}"), &["VM.Allocate"])?,
    }
    let ostemplate = call.req("ostemplate").to_string();
    let default_storage = call.get("storage").unwrap_or("local").to_string();
    let rootfs = call.get("rootfs").map(|r| {
        // "allow to use simple numbers (add default storage in that case)"
        if r.parse::<f64>().is_ok() {
            format!("{default_storage}:{r}")
        } else {
            r.to_string()
        }
    });
    let has_mount_points = call.params.keys().any(|k| is_mp_key(k));
    if has_mount_points && rootfs.is_none() {
        return Err(ApiError::fail(
            "mount points configured, but 'rootfs' not set - aborting",
        ));
    }
    let shared = Arc::clone(&call.shared);
    call.shared.mutate(|c| {
        c.check_vmid_unused(vmid).map_err(ApiError::fail)?;
        check_template(c, &ostemplate)?;
        let rootfs_storage = rootfs
            .as_deref()
            .and_then(|r| Props::parse(r, "volume").first)
            .and_then(|v| v.split_once(':').map(|(s, _)| s.to_string()))
            .unwrap_or_else(|| default_storage.clone());
        check_rootdir_storage(call, c, &node, &rootfs_storage)?;
        if let Some(pool) = call.get("pool")
            && !c.pools.contains_key(pool)
        {
            return Err(ApiError::fail(format!("pool '{pool}' does not exist")));
        }
        let mut config: BTreeMap<String, String> = call
            .params
            .iter()
            .filter(|(k, _)| !CONTROL.contains(&k.as_str()) && k.as_str() != "rootfs")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        config.insert("lock".into(), "create".into());
        c.containers.insert(
            vmid,
            Container {
                vmid,
                node: node.clone(),
                config,
                running: false,
            },
        );
        if let Some(pool) = call.get("pool")
            && let Some(members) = c.pools.get_mut(pool)
        {
            members.vms.insert(vmid);
        }
        let volume_node = node.clone();
        let rootfs_size = rootfs
            .as_deref()
            .and_then(|r| Props::parse(r, "volume").first)
            .and_then(|v| v.split_once(':').map(|(_, size)| size.to_string()))
            .filter(|size| size.parse::<f64>().is_ok())
            .unwrap_or_else(|| "4".into());
        let work = async move {
            shared.mutate(|c| {
                if c.find_volume(&volume_node, &ostemplate).is_none() {
                    c.containers.remove(&vmid);
                    for pool in c.pools.values_mut() {
                        pool.vms.remove(&vmid);
                    }
                    return Err(format!(
                        "unable to create CT {vmid} - can't find file '{ostemplate}'"
                    ));
                }
                let disk = format!("{rootfs_storage}:vm-{vmid}-disk-0,size={rootfs_size}G");
                if let Some(ct) = c.containers.get_mut(&vmid) {
                    ct.config.remove("lock");
                    ct.config.insert("rootfs".into(), disk);
                }
                Ok(vec![format!("extracting archive '{ostemplate}'")])
            })
        };
        let upid = start_task(call, c, &node, "vzcreate", &vmid.to_string(), work);
        data(json!(upid))
    })
}

fn is_mp_key(key: &str) -> bool {
    key.strip_prefix("mp")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// pve-storage `check_volume_access` with content type `vztmpl`: the volume's type (the
/// directory of a file storage's volume name) must be the one asked for.
fn check_template(c: &Cluster, ostemplate: &str) -> Result<(), ApiError> {
    let Some((storage, name)) = ostemplate.split_once(':') else {
        return Err(ApiError::fail(
            "Only root can pass arbitrary filesystem paths.",
        ));
    };
    if c.storage(storage).is_none() {
        return Err(ApiError::fail(format!(
            "storage '{storage}' does not exist"
        )));
    }
    let kind = name.split_once('/').map_or("images", |(dir, _)| dir);
    if kind != "vztmpl" {
        return Err(ApiError::fail(format!(
            "unable to use volume {ostemplate} - content type needs to be 'vztmpl'"
        )));
    }
    Ok(())
}

/// `$check_and_activate_storage` of `create_vm`: the storage enabled on the node
/// (`storage_check_enabled`), holding `rootdir` content (a parameter exception), and
/// `Datastore.AllocateSpace` on it.
fn check_rootdir_storage(
    call: &ApiCall,
    c: &Cluster,
    node: &str,
    storage: &str,
) -> Result<(), ApiError> {
    let Some(definition) = c.storage(storage) else {
        return Err(ApiError::fail(format!(
            "storage '{storage}' does not exist"
        )));
    };
    if !c.storage_state(node, storage).0 {
        return Err(ApiError::fail(format!("storage '{storage}' is disabled")));
    }
    if !definition.has_content("rootdir") {
        return Err(ApiError::param(
            "storage",
            format!("storage '{storage}' does not support container directories"),
        ));
    }
    call.require(&format!("/storage/{storage}"), &["Datastore.AllocateSpace"])
}

/// `DELETE /nodes/{node}/lxc/{vmid}` (`destroy_vm` in `API2/LXC.pm`): the container must be on
/// the node, unlocked (`check_lock`) and stopped unless `force`; a `vzdestroy` task removes it
/// and its volumes.
pub(crate) fn destroy_ct(call: &ApiCall) -> Reply {
    let node = call.node();
    let vmid = call.vmid();
    let shared = Arc::clone(&call.shared);
    call.shared.mutate(|c| {
        let Some(ct) = c.containers.get(&vmid).filter(|ct| ct.node == node) else {
            return Err(ApiError::fail(format!(
                "Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist"
            )));
        };
        if let Some(lock) = ct.lock() {
            return Err(ApiError::fail(format!("CT is locked ({lock})")));
        }
        if ct.running && call.flag("force") != Some(true) {
            return Err(ApiError::fail(format!(
                "unable to destroy CT {vmid} - container is running"
            )));
        }
        let task_node = node.clone();
        let work = async move {
            shared.mutate(|c| {
                let volids: Vec<String> = c
                    .volumes
                    .iter()
                    .filter(|v| v.vmid == Some(vmid) && (v.node.is_empty() || v.node == task_node))
                    .map(|v| v.volid.clone())
                    .collect();
                for volid in &volids {
                    c.remove_volume(&task_node, volid);
                }
                c.containers.remove(&vmid);
                for pool in c.pools.values_mut() {
                    pool.vms.remove(&vmid);
                }
                Ok(vec![format!("destroyed CT {vmid}")])
            })
        };
        let upid = start_task(call, c, &node, "vzdestroy", &vmid.to_string(), work);
        data(json!(upid))
    })
}
