//! Storage (`API2/Storage/Config.pm` and `API2/Storage/Status.pm` in pve-manager): the
//! storages of a node with their usage, a storage's configuration; its content in `content.rs`,
//! downloads and uploads in `transfer.rs`.

use serde_json::{Value, json};

use super::request::ApiCall;
use super::{ApiError, Reply, data};
use crate::sim::state::Cluster;

pub(crate) mod content;
pub(crate) mod transfer;

pub(crate) fn node_storages(call: &ApiCall) -> Reply {
    let node = call.node();
    data(call.shared.read(|c| {
        Value::Array(
            c.storages
                .iter()
                .filter(|s| call.allowed(&format!("/storage/{}", s.id), STORAGE_READ, true))
                .filter(|s| call.get("content").is_none_or(|want| s.has_content(want)))
                .filter(|s| call.get("storage").is_none_or(|want| s.id == want))
                .filter(|s| call.flag("enabled") != Some(true) || c.storage_state(&node, &s.id).0)
                .map(|s| {
                    let used = c.used_bytes(&node, &s.id);
                    let (enabled, active) = c.storage_state(&node, &s.id);
                    if !active {
                        // pvesm reports no usage for a storage it cannot activate.
                        return json!({
                            "storage": s.id, "type": s.kind, "content": s.content.join(","), "shared": u8::from(s.shared),
                            "active": 0, "enabled": u8::from(enabled),
                        });
                    }
                    json!({
                        "storage": s.id, "type": s.kind, "content": s.content.join(","), "shared": u8::from(s.shared),
                        "active": 1, "enabled": 1, "total": s.total, "used": used, "avail": s.total.saturating_sub(used),
                        "used_fraction": used as f64 / s.total as f64,
                    })
                })
                .collect(),
        )
    }))
}

/// Either privilege lets a caller see a storage and read its volumes.
pub(crate) const STORAGE_READ: &[&str] = &["Datastore.Audit", "Datastore.AllocateSpace"];

pub(crate) fn storage_of(c: &Cluster, storage: &str) -> Result<(), ApiError> {
    c.storage(storage)
        .map(|_| ())
        .ok_or_else(|| ApiError::fail(format!("storage '{storage}' does not exist")))
}

/// `GET /storage/{storage}`: the storage's section of `storage.cfg`.
pub(crate) fn storage_config(call: &ApiCall) -> Reply {
    let storage = call.req("storage").to_string();
    call.shared.read(|c| {
        let s = c
            .storage(&storage)
            .ok_or_else(|| ApiError::fail(format!("storage '{storage}' does not exist")))?;
        let mut config = json!({
            "storage": s.id, "type": s.kind, "content": s.content.join(","),
            "digest": hex::encode(<sha1::Sha1 as sha1::Digest>::digest(s.id.as_bytes())),
        });
        if s.shared {
            config["shared"] = json!(1);
        }
        match s.kind.as_str() {
            "dir" | "btrfs" if s.id == "local" => config["path"] = json!("/var/lib/vz"),
            "dir" | "btrfs" => config["path"] = json!(format!("/srv/{}", s.id)),
            "nfs" | "cifs" | "cephfs" => config["path"] = json!(format!("/mnt/pve/{}", s.id)),
            "lvmthin" => {
                config["vgname"] = json!("pve");
                config["thinpool"] = json!("data");
            }
            _ => {}
        }
        if c.disabled_storages.contains(&s.id) {
            config["disable"] = json!(1);
        }
        data(config)
    })
}
