//! Cluster-wide endpoints (`API2/Cluster.pm` and friends in pve-manager): the version, the
//! resource list, the next free vmid and the PCI resource mappings.

use serde_json::{Value, json};

use super::request::ApiCall;
use super::{ApiError, Reply, data, lxc};
use crate::sim::state::{Cluster, Node, Vm};

/// `GET /version`.
pub(crate) fn version(call: &ApiCall) -> Reply {
    let release = &call.shared.config.release;
    data(json!({"release": release, "version": format!("{release}.9"), "repoid": "proxfleet-sim"}))
}

/// `GET /cluster/resources` (`resources` in pve-manager's `API2/Cluster.pm`): pools, guests
/// (QEMU and LXC, each row with the figures `pvestatd` broadcasts), nodes and storages, each
/// kind only where the caller may audit it.
pub(crate) fn cluster_resources(call: &ApiCall) -> Reply {
    let kind = call.get("type");
    data(call.shared.read(|c| {
        let mut out = Vec::new();
        // Pools first, by name, where the caller may audit them; only in the whole listing
        // (the `type` enum has no `pool`). A pool's figures sum its running members', and
        // the simulator's guests report no uptime, so a row is its name alone.
        if kind.is_none() {
            for pool in c.pools.keys() {
                if call.allowed(&format!("/pool/{pool}"), &["Pool.Audit"], true) {
                    out.push(json!({"id": format!("/pool/{pool}"), "pool": pool, "type": "pool"}));
                }
            }
        }
        if kind.is_none() || kind == Some("vm") {
            for vm in c.vms.values() {
                if call.allowed(&format!("/vms/{}", vm.vmid), &["VM.Audit"], false) {
                    out.push(qemu_row(c, vm));
                }
            }
            for ct in c.containers.values() {
                if call.allowed(&format!("/vms/{}", ct.vmid), &["VM.Audit"], false) {
                    out.push(lxc::guest_row(c, ct));
                }
            }
        }
        if kind.is_none() || kind == Some("node") {
            for node in &c.nodes {
                out.push(node_row(node, ("cgroup-mode", json!(2))));
            }
        }
        // Storages the caller may audit (`Datastore.Audit` alone, unlike the node's list), one
        // row per node that has them enabled (`storage_check_enabled`), with figures where
        // pvestatd reported some (`extract_storage_stats`: `unknown` and none when inactive).
        if kind.is_none() || kind == Some("storage") {
            for node in &c.nodes {
                for storage in &c.storages {
                    if !call.allowed(&format!("/storage/{}", storage.id), &["Datastore.Audit"], true) {
                        continue;
                    }
                    let (enabled, active) = c.storage_state(&node.name, &storage.id);
                    if !enabled {
                        continue;
                    }
                    let mut row = json!({
                        "id": format!("storage/{}/{}", node.name, storage.id), "type": "storage", "node": node.name,
                        "storage": storage.id, "plugintype": storage.kind, "content": storage.content.join(","),
                        "shared": u8::from(storage.shared), "status": "unknown",
                    });
                    if active {
                        row["status"] = json!("available");
                        row["maxdisk"] = json!(storage.total);
                        row["disk"] = json!(c.used_bytes(&node.name, &storage.id));
                    }
                    out.push(row);
                }
            }
        }
        Value::Array(out)
    }))
}

/// A QEMU guest's row. `maxdisk` is the size of its first disk, as `PVE::QemuServer::vmstatus`
/// takes the boot disk's; the usage figures are a stopped guest's or an idle one's.
fn qemu_row(c: &Cluster, vm: &Vm) -> Value {
    let config = vm.effective_config();
    let maxdisk = ["scsi0", "virtio0", "sata0", "ide0"]
        .iter()
        .find_map(|key| config.get(*key))
        .map(|disk| lxc::disk_size(disk))
        .unwrap_or_default();
    let mut entry = json!({
        "id": format!("qemu/{}", vm.vmid), "type": "qemu", "vmid": vm.vmid, "node": vm.node,
        "status": if vm.running {"running"} else {"stopped"},
        "template": u8::from(vm.is_template()),
        "maxmem": config.get("memory").and_then(|m| m.parse::<u64>().ok()).unwrap_or(512) << 20,
        "maxcpu": config.get("cores").and_then(|m| m.parse::<u64>().ok()).unwrap_or(1),
        "maxdisk": maxdisk,
        "mem": 0, "disk": 0, "cpu": 0, "uptime": 0,
        "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
    });
    for key in ["name", "tags", "lock"] {
        if let Some(value) = config.get(key) {
            entry[key] = json!(value);
        }
    }
    if let Some(pool) = c.pool_of(vm.vmid) {
        entry["pool"] = json!(pool);
    }
    entry
}

/// A node's row, in `/cluster/resources` and `/nodes` alike, with the one field each adds
/// (`cgroup-mode` there, `ssl_fingerprint` here); an offline node has no figures (pve-manager
/// leaves out what `pvestatd` did not report).
pub(super) fn node_row(node: &Node, own: (&str, Value)) -> Value {
    let mut entry = json!({
        "id": format!("node/{}", node.name), "type": "node", "node": node.name,
        "status": if node.online {"online"} else {"offline"}, "level": "",
    });
    if node.online {
        for (key, value) in [
            ("maxcpu", json!(16)),
            ("maxmem", json!(68_719_476_736u64)),
            ("maxdisk", json!(107_374_182_400u64)),
            ("mem", json!(4_294_967_296u64)),
            ("disk", json!(10_737_418_240u64)),
            ("cpu", json!(0.01)),
            ("uptime", json!(86_400)),
            own,
        ] {
            entry[key] = value;
        }
    }
    entry
}

/// `GET /cluster/nextid` (pve-manager `API2/Cluster.pm`): the asked vmid, or the first free one
/// from 100. Both are strings on the wire: the one asked comes from the request, and the one
/// found was used as a hash key (`$idlist->{$i}`), which makes Perl's JSON encoder write it
/// as a string. A vmid held by a container is taken as much as one held by a VM, and the
/// message says `VM` for both.
pub(crate) fn next_id(call: &ApiCall) -> Reply {
    call.shared.read(
        |c| match call.get("vmid").and_then(|v| v.parse::<u32>().ok()) {
            Some(vmid) if c.vmid_used(vmid) => {
                Err(ApiError::param("vmid", format!("VM {vmid} already exists")))
            }
            Some(vmid) => data(json!(vmid.to_string())),
            None => data(json!(
                (100u32..)
                    .find(|id| !c.vmid_used(*id))
                    .unwrap_or(100)
                    .to_string()
            )),
        },
    )
}

/// `GET /cluster/mapping/pci`: the mappings the caller may see (`Mapping.Audit`, `Mapping.Use`
/// or `Mapping.Modify` on `/mapping/pci/<id>`); with `check-node`, `checks` says when a mapping
/// has no entry for that node (pve-manager `API2::Cluster::Mapping::PCI`).
pub(crate) fn pci_mappings(call: &ApiCall) -> Reply {
    let check_node = call.get("check-node");
    data(call.shared.read(|c| {
        Value::Array(
            c.pci_mappings
                .iter()
                .filter(|m| {
                    call.allowed(
                        &format!("/mapping/pci/{}", m.id),
                        &["Mapping.Audit", "Mapping.Use", "Mapping.Modify"],
                        true,
                    )
                })
                .map(|m| {
                    let mut entry =
                        json!({"id": m.id, "description": m.description, "map": m.map});
                    if let Some(node) = check_node {
                        let has_entry = m.map.iter().any(|e| {
                            e.split(',')
                                .any(|kv| kv.strip_prefix("node=") == Some(node))
                        });
                        let checks: Vec<Value> = if has_entry {
                            Vec::new()
                        } else {
                            vec![json!({"severity": "warning", "message": format!("No mapping for node {node}.")})]
                        };
                        entry["checks"] = json!(checks);
                    }
                    entry
                })
                .collect(),
        )
    }))
}
