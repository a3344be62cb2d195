//! Resource pools (`API2/Pool.pm` in pve-manager): list, create, add and remove members or
//! rewrite the comment, delete an empty pool, and joining a pool when a VM is created or
//! cloned. Every change runs inside `mutate`, as Proxmox's run inside `lock_user_config`, so
//! of two concurrent creates of one id exactly one succeeds.

use serde_json::{Value, json};

use super::request::ApiCall;
use super::{ApiError, Reply, data};
use crate::sim::state::{self, Cluster};

/// Put a new VM into a pool (create and clone take `pool`); the pool must exist.
pub(crate) fn join_pool(c: &mut Cluster, pool: Option<&str>, vmid: u32) -> Result<(), ApiError> {
    let Some(pool) = pool else {
        return Ok(());
    };
    let members = c
        .pools
        .get_mut(pool)
        .ok_or_else(|| ApiError::fail(format!("pool '{pool}' does not exist")))?;
    members.vms.insert(vmid);
    Ok(())
}

/// `GET /pools`: the pools the caller may audit (or one, with `poolid`, with its members).
pub(crate) fn pools_list(call: &ApiCall) -> Reply {
    call.shared.read(|c| {
        let wanted = call.get("poolid");
        if let Some(id) = wanted
            && !c.pools.contains_key(id)
        {
            return Err(ApiError::fail(format!("pool '{id}' does not exist")));
        }
        let list: Vec<Value> = c
            .pools
            .iter()
            .filter(|(id, _)| wanted.is_none_or(|w| w == id.as_str()))
            // With `poolid`, `index` calls `$rpcenv->check(…, 1)` and ignores its answer: the
            // pool is listed whatever the caller holds; without, only the audited ones.
            .filter(|(id, _)| {
                wanted.is_some() || call.allowed(&format!("/pool/{id}"), &["Pool.Audit"], false)
            })
            .map(|(id, pool)| {
                let mut entry = json!({"poolid": id});
                if let Some(comment) = &pool.comment {
                    entry["comment"] = json!(comment);
                }
                if wanted.is_some() {
                    entry["members"] = Value::Array(
                        pool.vms
                            .iter()
                            .filter_map(|vmid| c.vms.get(vmid))
                            .map(|vm| json!({"id": format!("qemu/{}", vm.vmid), "type": "qemu", "vmid": vm.vmid, "node": vm.node}))
                            .collect(),
                    );
                }
                entry
            })
            .collect();
        data(Value::Array(list))
    })
}

/// `POST /pools`, as pve-manager's `API2/Pool.pm` `create_pool` under `lock_user_config`
/// (whose failures read `create pool failed: …`): a new id, a nested pool's parent existing,
/// each pool's own name starting with a letter.
pub(crate) fn pool_create(call: &ApiCall) -> Reply {
    let id = call.req("poolid").to_string();
    let failed = |why: String| ApiError::fail(format!("create pool failed: {why}"));
    call.shared.mutate(|c| {
        if c.pools.contains_key(&id) {
            return Err(failed(format!("pool '{id}' already exists")));
        }
        let leaf = match id.rsplit_once('/') {
            Some((parent, leaf)) => {
                if !c.pools.contains_key(parent) {
                    return Err(failed(format!(
                        "parent '{parent}' of pool '{id}' does not exist"
                    )));
                }
                leaf
            }
            None => id.as_str(),
        };
        if !leaf.starts_with(|ch: char| ch.is_ascii_alphabetic()) {
            return Err(failed("pool name must start with a letter".into()));
        }
        c.pools.insert(
            id,
            state::Pool {
                comment: call.get("comment").map(str::to_string),
                vms: Default::default(),
            },
        );
        data(Value::Null)
    })
}

/// `PUT /pools` (and the older `PUT /pools/{poolid}`): add VMs (moving them from another pool
/// only with `allow-move`), or remove them with `delete`; set the comment when one is given.
/// Failures inside the lock read `update pools failed: …`, as `update_pool` words them.
pub(crate) fn pool_update(call: &ApiCall) -> Reply {
    let id = call.req("poolid").to_string();
    let vmids: Vec<u32> = call
        .get("vms")
        .map(|v| {
            v.split([',', ';', ' '])
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for vmid in &vmids {
        call.require(&format!("/vms/{vmid}"), &["VM.Allocate"])?;
    }
    call.shared.mutate(|c| {
        if !c.pools.contains_key(&id) {
            return Err(ApiError::fail(format!(
                "update pools failed: pool '{id}' does not exist"
            )));
        }
        let delete = call.flag("delete").unwrap_or(false);
        for vmid in &vmids {
            if !c.vms.contains_key(vmid) {
                return Err(ApiError::fail(format!("no such VMID '{vmid}'")));
            }
            let current = c.pool_of(*vmid).map(str::to_string);
            if delete {
                if let Some(pool) = c.pools.get_mut(&id) {
                    pool.vms.remove(vmid);
                }
                continue;
            }
            match current {
                Some(other) if other == id => {}
                Some(other) if !call.flag("allow-move").unwrap_or(false) => {
                    return Err(ApiError::fail(format!(
                        "VM {vmid} belongs already to pool '{other}'"
                    )));
                }
                Some(other) => {
                    if let Some(pool) = c.pools.get_mut(&other) {
                        pool.vms.remove(vmid);
                    }
                    if let Some(pool) = c.pools.get_mut(&id) {
                        pool.vms.insert(*vmid);
                    }
                }
                None => {
                    if let Some(pool) = c.pools.get_mut(&id) {
                        pool.vms.insert(*vmid);
                    }
                }
            }
        }
        if let Some(comment) = call.get("comment")
            && let Some(pool) = c.pools.get_mut(&id)
        {
            pool.comment = Some(comment.to_string());
        }
        data(Value::Null)
    })
}

/// `DELETE /pools?poolid=` (and the older `DELETE /pools/{poolid}`), as `delete_pool` under
/// `lock_user_config`: only an empty pool goes; a sub-pool, or a VM that still exists, keeps
/// it (VMs destroyed since are ignored).
pub(crate) fn pool_delete(call: &ApiCall) -> Reply {
    let id = call.req("poolid").to_string();
    let failed = |why: String| ApiError::fail(format!("delete pool failed: {why}"));
    call.shared.mutate(|c| {
        let Some(pool) = c.pools.get(&id) else {
            return Err(failed(format!("pool '{id}' does not exist")));
        };
        let child_prefix = format!("{id}/");
        if let Some(child) = c.pools.keys().find(|other| {
            other
                .strip_prefix(&child_prefix)
                .is_some_and(|rest| !rest.contains('/'))
        }) {
            return Err(failed(format!(
                "pool '{id}' is not empty (contains pool '{child}')"
            )));
        }
        if let Some(vmid) = pool.vms.iter().find(|vmid| c.vms.contains_key(vmid)) {
            return Err(failed(format!(
                "pool '{id}' is not empty (contains VM {vmid})"
            )));
        }
        c.pools.remove(&id);
        data(Value::Null)
    })
}
