//! A storage's content (`API2/Storage/Content.pm` in pve-manager): listing volumes (and the
//! snippet files on a node's `local`), a volume's attributes and notes, deleting a volume.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use serde_json::{Value, json};

use super::super::request::ApiCall;
use super::super::tasks::start_task;
use super::super::{ApiError, Reply, data};
use super::{STORAGE_READ, storage_of};
use crate::sim::Shared;
use crate::sim::state::Volume;

pub(crate) fn volume_json(v: &Volume) -> Value {
    let mut entry = json!({"volid": v.volid, "content": v.content, "format": v.format, "size": v.size, "ctime": v.ctime});
    if let Some(vmid) = v.vmid {
        entry["vmid"] = json!(vmid);
    }
    if let Some(parent) = &v.parent {
        entry["parent"] = json!(parent);
    }
    if let Some(notes) = &v.notes {
        entry["notes"] = json!(notes);
    }
    entry
}

pub(crate) fn storage_content(call: &ApiCall) -> Reply {
    let node = call.node();
    let storage = call.req("storage").to_string();
    call.shared.read(|c| {
        storage_of(c, &storage)?;
        let key = c.volume_node(&storage, &node);
        let vmid = call.get("vmid").and_then(|v| v.parse::<u32>().ok());
        let mut volumes: Vec<Value> = c
            .volumes
            .iter()
            .filter(|v| v.storage == storage && v.node == key)
            .filter(|v| call.get("content").is_none_or(|want| v.content == want))
            .filter(|v| vmid.is_none_or(|id| v.vmid == Some(id)))
            .map(volume_json)
            .collect();
        if call.get("content").is_none_or(|want| want == "snippets") && vmid.is_none() {
            volumes.extend(snippet_files(&call.shared, &node, &storage));
        }
        data(Value::Array(volumes))
    })
}

/// The snippets on a node's storage: the files in the directory registered for its `local`
/// (`SimConfig::snippets_dirs`), as pve-storage lists them (format `snippet`).
pub(crate) fn snippet_files(shared: &Shared, node: &str, storage: &str) -> Vec<Value> {
    let Some(dir) = shared
        .config
        .snippets_dirs
        .get(node)
        .filter(|_| storage == "local")
    else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<Value> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let meta = entry.metadata().ok()?;
            let ctime = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or_default();
            Some(json!({"volid": format!("{storage}:snippets/{name}"), "content": "snippets", "format": "snippet", "size": meta.len(), "ctime": ctime}))
        })
        .collect();
    files.sort_by(|a, b| a["volid"].as_str().cmp(&b["volid"].as_str()));
    files
}

/// The volume a `{volume}` path parameter names: a full volid, or a name on `{storage}`.
pub(crate) fn volume_param(call: &ApiCall) -> String {
    let volume = call.req("volume");
    if volume.contains(':') {
        volume.to_string()
    } else {
        format!("{}:{volume}", call.req("storage"))
    }
}

pub(crate) fn volume_info(call: &ApiCall) -> Reply {
    let node = call.node();
    let volid = volume_param(call);
    call.require_any(&format!("/storage/{}", call.req("storage")), STORAGE_READ)?;
    call.shared.read(|c| {
        let v = c.find_volume(&node, &volid).ok_or_else(|| ApiError::fail(format!("volume '{volid}' does not exist")))?;
        let mut info = json!({"path": format!("/var/lib/vz/{}", v.volid.split_once(':').map(|(_, n)| n).unwrap_or_default()), "size": v.size, "used": v.size, "format": v.format});
        if let Some(notes) = &v.notes {
            info["notes"] = json!(notes);
        }
        data(info)
    })
}

pub(crate) fn volume_update(call: &ApiCall) -> Reply {
    let node = call.node();
    let volid = volume_param(call);
    call.require_any(&format!("/storage/{}", call.req("storage")), STORAGE_READ)?;
    call.shared.mutate(|c| {
        let v = c
            .find_volume_mut(&node, &volid)
            .ok_or_else(|| ApiError::fail(format!("volume '{volid}' does not exist")))?;
        if let Some(notes) = call.get("notes") {
            // pve-storage keeps notes only for backup archives.
            if v.content != "backup" {
                return Err(ApiError::fail("only backups can have notes"));
            }
            v.notes = Some(notes.to_string()).filter(|n| !n.is_empty());
        }
        data(Value::Null)
    })
}

pub(crate) fn volume_delete(call: &ApiCall) -> Reply {
    let node = call.node();
    let volid = volume_param(call);
    call.require(
        &format!("/storage/{}", call.req("storage")),
        &["Datastore.Allocate"],
    )?;
    let shared = Arc::clone(&call.shared);
    call.shared.mutate(|c| {
        let v = c
            .find_volume(&node, &volid)
            .ok_or_else(|| ApiError::fail(format!("volume '{volid}' does not exist")))?;
        if let Some(owner) = v.vmid
            && c.vms.contains_key(&owner)
            && v.content == "images"
        {
            return Err(ApiError::fail(format!(
                "unable to delete '{volid}' - volume is used by VM {owner}"
            )));
        }
        let (task_node, task_volid) = (node.clone(), volid.clone());
        let upid = start_task(call, c, &node, "imgdel", "", async move {
            shared.mutate(|c| c.remove_volume(&task_node, &task_volid));
            Ok(vec![format!("removed volume '{task_volid}'")])
        });
        data(json!(upid))
    })
}
