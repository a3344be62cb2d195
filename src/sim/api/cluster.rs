//! Cluster-wide endpoints (`API2/Cluster.pm` and friends in pve-manager): the version, the
//! resource list, the next free vmid and the PCI resource mappings.

use serde_json::{Value, json};

use super::request::ApiCall;
use super::storage::STORAGE_READ;
use super::{ApiError, Reply, data};

/// `GET /version`.
pub(crate) fn version(_call: &ApiCall) -> Reply {
    data(json!({"release": "9.1", "version": "9.1.9", "repoid": "proxfleet-sim"}))
}

pub(crate) fn cluster_resources(call: &ApiCall) -> Reply {
    let kind = call.get("type");
    data(call.shared.read(|c| {
        let mut out = Vec::new();
        if kind.is_none() || kind == Some("vm") {
            for vm in c.vms.values() {
                if !call.allowed(&format!("/vms/{}", vm.vmid), &["VM.Audit"], false) {
                    continue;
                }
                let config = vm.effective_config();
                let mut entry = json!({
                    "id": format!("qemu/{}", vm.vmid), "type": "qemu", "vmid": vm.vmid, "node": vm.node,
                    "status": if vm.running {"running"} else {"stopped"},
                    "template": u8::from(vm.is_template()),
                    "maxmem": config.get("memory").and_then(|m| m.parse::<u64>().ok()).unwrap_or(512) << 20,
                    "maxcpu": config.get("cores").and_then(|m| m.parse::<u64>().ok()).unwrap_or(1),
                });
                if let Some(name) = config.get("name") {
                    entry["name"] = json!(name);
                }
                if let Some(tags) = config.get("tags") {
                    entry["tags"] = json!(tags);
                }
                if let Some(lock) = vm.lock() {
                    entry["lock"] = json!(lock);
                }
                if let Some(pool) = c.pool_of(vm.vmid) {
                    entry["pool"] = json!(pool);
                }
                out.push(entry);
            }
        }
        if kind.is_none() || kind == Some("node") {
            for node in &c.nodes {
                out.push(json!({"id": format!("node/{}", node.name), "type": "node", "node": node.name, "status": if node.online {"online"} else {"offline"}}));
            }
        }
        if kind.is_none() || kind == Some("storage") {
            for node in &c.nodes {
                for storage in &c.storages {
                    if !call.allowed(&format!("/storage/{}", storage.id), STORAGE_READ, true) {
                        continue;
                    }
                    out.push(json!({
                        "id": format!("storage/{}/{}", node.name, storage.id), "type": "storage", "node": node.name,
                        "storage": storage.id, "plugintype": storage.kind, "content": storage.content.join(","),
                        "shared": u8::from(storage.shared), "status": "available",
                        "maxdisk": storage.total, "disk": c.used_bytes(&node.name, &storage.id),
                    }));
                }
            }
        }
        Value::Array(out)
    }))
}

pub(crate) fn next_id(call: &ApiCall) -> Reply {
    call.shared.read(
        |c| match call.get("vmid").and_then(|v| v.parse::<u32>().ok()) {
            Some(vmid) if c.vms.contains_key(&vmid) => {
                Err(ApiError::param("vmid", format!("VM {vmid} already exists")))
            }
            Some(vmid) => data(json!(vmid)),
            None => data(json!(
                (100u32..).find(|id| !c.vms.contains_key(id)).unwrap_or(100)
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
