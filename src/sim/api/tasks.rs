//! Tasks (`API2/Tasks.pm` in pve-manager, `PVE::RESTEnvironment::fork_worker`): starting a
//! UPID task that runs for a while after queueing behind the storage locks its allocations
//! take, then records how it ended; its status and log.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::qemu::{disk_storage, is_disk_key};
use super::request::ApiCall;
use super::{ApiError, Reply, data};
use crate::sim::Shared;
use crate::sim::propstr::Props;
use crate::sim::state::{Cluster, Task};

/// The current time in seconds since the epoch, as UPIDs and tickets carry it (wall clock:
/// the simulator's waits run on tokio's clock instead).
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Start a task: record it as running, run `work` after the configured duration, then record
/// how it ended. Returns the UPID.
pub(crate) fn start_task<F>(
    call: &ApiCall,
    cluster: &mut Cluster,
    node: &str,
    kind: &str,
    id: &str,
    work: F,
) -> String
where
    F: Future<Output = Result<Vec<String>, String>> + Send + 'static,
{
    cluster.next_pid += 1;
    let pid = cluster.next_pid;
    let starttime = now();
    let pstart = (starttime % 0xFFFF_FFFF) as u32;
    let upid = format!(
        "UPID:{node}:{pid:08X}:{pstart:08X}:{starttime:08X}:{kind}:{id}:{}:",
        call.user
    );
    // Allocating volumes takes each storage's lock in turn (pve-storage `vdisk_alloc` under
    // `cluster_lock_storage`): a task queues behind allocations already reserved there, and
    // gives up when its wait would pass the lock time-out.
    let allocations = storage_allocations(call, cluster, node, kind);
    cluster.tasks.insert(
        upid.clone(),
        Task {
            upid: upid.clone(),
            node: node.to_string(),
            pid,
            pstart,
            starttime,
            kind: kind.to_string(),
            id: id.to_string(),
            user: call.user.clone(),
            running: true,
            exitstatus: None,
            log: Vec::new(),
            endtime: None,
            allocated: allocations.clone(),
        },
    );
    let shared = Arc::clone(&call.shared);
    let duration = shared
        .config
        .task_duration
        .unwrap_or_else(|| nominal_duration(kind, call))
        .mul_f64(shared.config.task_scale.max(0.0));
    let task_upid = upid.clone();
    // An injected failure: the task does nothing and fails; a VM it was creating (whose id was
    // claimed with a lock before the task forked) is removed again, as Proxmox cleans up.
    let injected = call.task_error.clone();
    let placeholder = match kind {
        "qmcreate" => Some(call.vmid()),
        "qmclone" => call.get("newid").and_then(|v| v.parse::<u32>().ok()),
        _ => None,
    };
    let lock = reserve_storage_locks(&shared, &allocations, node);
    // A download reports its progress in its log as it goes, as wget does under Proxmox.
    let progress_kind = kind == "download";
    let runner = async move {
        let (waited, lock_failure) = lock;
        tokio::time::sleep(waited).await;
        if progress_kind && lock_failure.is_none() {
            for percent in [25u32, 50, 75] {
                tokio::time::sleep(duration / 4).await;
                shared.mutate(|cluster| {
                    if let Some(task) = cluster.tasks.get_mut(&task_upid) {
                        task.log.push(format!("downloading: {percent}% done"));
                    }
                });
            }
            tokio::time::sleep(duration / 4).await;
        } else {
            tokio::time::sleep(duration).await;
        }
        let injected = injected.or(lock_failure);
        let result = match injected {
            None => work.await,
            Some(message) => {
                if let Some(vmid) = placeholder {
                    shared.mutate(|c| {
                        if c.vms.get(&vmid).is_some_and(|vm| vm.lock().is_some()) {
                            c.remove_vm(vmid);
                        }
                    });
                }
                Err(message)
            }
        };
        shared.mutate(|cluster| {
            if let Some(task) = cluster.tasks.get_mut(&task_upid) {
                task.running = false;
                task.endtime = Some(now());
                match result {
                    Ok(lines) => {
                        task.log.extend(lines);
                        task.log.push("TASK OK".into());
                        task.exitstatus = Some("OK".into());
                    }
                    Err(message) => {
                        task.log.push(format!("TASK ERROR: {message}"));
                        task.exitstatus = Some(message);
                    }
                }
            }
        });
    };
    if let Ok(mut tasks) = call.shared.running_tasks.lock() {
        // Reap finished runners so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(runner);
    }
    upid
}

/// The storages a task allocates volumes on, with how many: a create's disks, a full clone's
/// copies (a linked clone allocates its cloud-init drive only), a download's or upload's file.
pub(crate) fn storage_allocations(
    call: &ApiCall,
    cluster: &Cluster,
    node: &str,
    kind: &str,
) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = BTreeMap::new();
    let mut count = |storage: &str| {
        let key = match cluster.storage(storage) {
            Some(def) if def.shared => storage.to_string(),
            _ => format!("{storage}@{node}"),
        };
        *out.entry(key).or_default() += 1;
    };
    match kind {
        "download" | "imgcopy" => {
            if let Some(storage) = call.get("storage") {
                count(storage);
            }
        }
        "qmcreate" => {
            for (key, value) in call.params.iter().filter(|(k, _)| is_disk_key(k)) {
                let _ = key;
                if let Some((storage, rest)) =
                    Props::parse(value, "file").first.as_deref().and_then(|f| {
                        f.split_once(':')
                            .map(|(s, r)| (s.to_string(), r.to_string()))
                    })
                    && (rest == "cloudinit" || rest.parse::<f64>().is_ok())
                {
                    count(&storage);
                }
            }
        }
        "qmclone" => {
            let full = call.flag("full").unwrap_or(false);
            if let Some(source) = cluster.vms.get(&call.vmid()) {
                for (key, value) in source.config.iter().filter(|(k, _)| is_disk_key(k)) {
                    let linked_copy = value.contains("cloudinit") || key.starts_with("tpmstate");
                    if !full && !linked_copy {
                        continue;
                    }
                    let storage = call
                        .get("storage")
                        .filter(|_| full)
                        .map(str::to_string)
                        .or_else(|| disk_storage(value));
                    if let Some(storage) = storage {
                        count(&storage);
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// Reserve the storages' locks for a task's allocations: how long it waits for them, and the
/// failure when a wait passes the time-out. A key without a node is a shared storage's one
/// lock for the whole cluster (pve-storage `src/PVE/Storage/Plugin.pm` `cluster_lock_storage`:
/// pve-cluster's `cfs_lock_storage`, the pmxcfs lock `storage-<id>`); `storage@node` is a
/// local storage's flock on that node (`/var/lock/pve-manager/pve-storage-<id>`).
pub(crate) fn reserve_storage_locks(
    shared: &Shared,
    allocations: &BTreeMap<String, usize>,
    node: &str,
) -> (std::time::Duration, Option<String>) {
    let config = &shared.config;
    let scale = config.task_scale.max(0.0);
    let hold = match (config.storage_lock_hold, config.task_duration) {
        (Some(hold), _) => hold,
        (None, Some(_)) => return (std::time::Duration::ZERO, None),
        (None, None) => std::time::Duration::from_millis(1_500).mul_f64(scale),
    };
    let timeout = config
        .storage_lock_timeout
        .unwrap_or_else(|| std::time::Duration::from_secs(10).mul_f64(scale));
    if hold.is_zero() || allocations.is_empty() {
        return (std::time::Duration::ZERO, None);
    }
    let Ok(mut locks) = shared.storage_locks.lock() else {
        return (std::time::Duration::ZERO, None);
    };
    let now = tokio::time::Instant::now();
    let mut waited = std::time::Duration::ZERO;
    for (key, volumes) in allocations {
        let free_at = locks.get(key).copied().unwrap_or(now).max(now);
        let wait = free_at - now;
        if wait > timeout {
            shared
                .lock_timeouts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let storage = key.split('@').next().unwrap_or(key);
            let message = if key.contains('@') {
                format!(
                    "can't lock file '/var/lock/pve-manager/pve-storage-{storage}' - got timeout"
                )
            } else {
                format!("cfs-lock 'storage-{storage}' error: got lock request timeout")
            };
            let _ = node;
            return (timeout, Some(message));
        }
        locks.insert(key.clone(), free_at + hold * (*volumes as u32));
        waited = waited.max(wait + hold * (*volumes as u32));
    }
    (waited, None)
}

/// How long a task of this kind takes on real hardware, roughly (scaled by `task_scale`).
pub(crate) fn nominal_duration(kind: &str, call: &ApiCall) -> std::time::Duration {
    let millis = match kind {
        "qmclone" if call.flag("full") == Some(false) => 1_500,
        "qmclone" => 12_000,
        "qmcreate" => 4_000,
        "download" => 30_000,
        "imgcopy" => 5_000,
        "qmtemplate" => 2_000,
        "qmstart" => 1_500,
        "qmshutdown" => 4_000,
        "qmdestroy" => 2_000,
        "resize" => 1_000,
        _ => 500,
    };
    std::time::Duration::from_millis(millis)
}

pub(crate) fn find_task<'a>(c: &'a Cluster, call: &ApiCall) -> Result<&'a Task, ApiError> {
    let upid = call.req("upid");
    // PVE::Tools::upid_decode
    let fields: Vec<&str> = upid.split(':').collect();
    if fields.len() < 9 || fields[0] != "UPID" {
        return Err(ApiError::fail(format!(
            "unable to parse worker upid '{upid}'"
        )));
    }
    let task = c
        .tasks
        .get(upid)
        .filter(|t| t.node == call.req("node"))
        .ok_or_else(|| ApiError::fail(format!("no such task '{upid}'")))?;
    // Other users' tasks need Sys.Audit on the node.
    if task.user != call.user {
        call.require(&format!("/nodes/{}", task.node), &["Sys.Audit"])?;
    }
    Ok(task)
}

pub(crate) fn task_status(call: &ApiCall) -> Reply {
    call.shared.read(|c| {
        let task = find_task(c, call)?;
        let mut status = json!({
            "upid": task.upid, "node": task.node, "pid": task.pid, "pstart": task.pstart, "starttime": task.starttime,
            "type": task.kind, "id": task.id, "user": task.user, "status": if task.running {"running"} else {"stopped"},
        });
        if let Some(exit) = &task.exitstatus {
            status["exitstatus"] = json!(exit);
        }
        data(status)
    })
}

pub(crate) fn task_log(call: &ApiCall) -> Reply {
    call.shared.read(|c| {
        let task = find_task(c, call)?;
        let start = call
            .get("start")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let limit = call
            .get("limit")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(50);
        let lines: Vec<Value> = task
            .log
            .iter()
            .enumerate()
            .skip(start)
            .take(limit)
            .map(|(i, t)| json!({"n": i + 1, "t": t}))
            .collect();
        Ok((Value::Array(lines), Some(task.log.len() as u64)))
    })
}

/// `GET /nodes/{node}/tasks` as pve-manager's `PVE/API2/Tasks.pm` (`node_tasks`) answers it.
///
/// `source=active` reads `/var/log/pve/tasks/active` (pve-common `PVE::INotify::
/// read_active_workers`), skipping the tasks already archived (`saved`): what remains is the
/// running tasks, in the order they were started, each with `status: RUNNING`. pvedaemon
/// archives a task as soon as it reaps the worker (`PVE::RESTEnvironment::active_workers`),
/// which the simulator does the moment a task ends, so a task leaves the active list as it
/// ends. `source=archive` (the default) reads the index backwards: the tasks that ended, the
/// most recently archived first, with `endtime` and `status` (the exit status); `all` is both,
/// active first. Every filter applies to both and `start`/`limit` page the filtered list; the
/// `total` is the number that passed the filters. Without `Sys.Audit` on the node a user sees
/// only their own tasks (an API token only its own; its user also the token's), and a token's
/// task shows `user` and `tokenid` apart.
pub(crate) fn node_tasks(call: &ApiCall) -> Reply {
    let filter = TaskFilter::from_call(call)?;
    let node = call.node();
    let auditor = call.allowed(&format!("/nodes/{node}"), &["Sys.Audit"], false);
    call.shared.read(|c| {
        let on_node = || c.tasks.values().filter(|t| t.node == node);
        let mut listed: Vec<&Task> = Vec::new();
        if matches!(filter.source.as_str(), "active" | "all") {
            let mut active: Vec<&Task> = on_node().filter(|t| t.running).collect();
            active.sort_by_key(|t| t.pid);
            listed.extend(active);
        }
        if filter.source != "active" {
            let mut archived: Vec<&Task> = on_node().filter(|t| !t.running).collect();
            archived.sort_by_key(|t| std::cmp::Reverse((t.endtime.unwrap_or(0), t.pid)));
            listed.extend(archived);
        }
        let mut count = 0_u64;
        let mut out = Vec::new();
        for task in listed {
            let entry = task_entry(task);
            let visible = auditor || sees_own_task(&entry, &call.user);
            if !visible || !filter.keeps(&entry) {
                continue;
            }
            count += 1;
            if count <= filter.start || out.len() as u64 >= filter.limit {
                continue;
            }
            out.push(entry);
        }
        Ok((Value::Array(out), Some(count)))
    })
}

/// A task as the listing shows it: the UPID's fields (`PVE::UPID::decode`), a token's task
/// split into `user` and `tokenid`, and `status` (`RUNNING` while it runs) and `endtime`.
fn task_entry(task: &Task) -> Value {
    let mut entry = json!({
        "upid": task.upid, "node": task.node, "pid": task.pid, "pstart": task.pstart,
        "starttime": task.starttime, "type": task.kind, "id": task.id, "user": task.user,
        "status": if task.running { "RUNNING" } else { task.exitstatus.as_deref().unwrap_or("unexpected status") },
    });
    if let Some((user, token)) = task.user.split_once('!') {
        entry["user"] = json!(user);
        entry["tokenid"] = json!(token);
    }
    if let (false, Some(endtime)) = (task.running, task.endtime) {
        entry["endtime"] = json!(endtime);
    }
    entry
}

/// `$check_task_user`: a token sees its own tasks, a user its own and its tokens'.
fn sees_own_task(entry: &Value, caller: &str) -> bool {
    let user = entry["user"].as_str().unwrap_or_default();
    match entry["tokenid"].as_str() {
        Some(token) => caller == format!("{user}!{token}") || caller == user,
        None => caller == user,
    }
}

/// The listing's filters, read from the request (`node_tasks`' `$filter_task`).
struct TaskFilter {
    source: String,
    start: u64,
    limit: u64,
    userfilter: Option<String>,
    typefilter: Option<String>,
    vmid: Option<String>,
    since: Option<u64>,
    until: Option<u64>,
    /// The status types kept (`ok`, `warning`, `error`, `unknown`).
    statuses: Vec<String>,
}

impl TaskFilter {
    fn from_call(call: &ApiCall) -> Result<TaskFilter, ApiError> {
        let number = |name: &str| call.get(name).and_then(|v| v.parse::<u64>().ok());
        let errors = call.flag("errors").unwrap_or(false);
        let mut statuses: Vec<String> = ["ok", "warning", "error", "unknown"]
            .map(String::from)
            .to_vec();
        match call.get("statusfilter") {
            // `errors` wins over `statusfilter`, as in the handler.
            Some(list) if !errors => {
                statuses.clear();
                // `pve-task-status-type-list`: `PVE::Tools::split_list`, each item checked by
                // pve-common's `verify_task_status_type`.
                for item in list
                    .split(|c: char| c == ',' || c == ';' || c.is_whitespace() || c == '\0')
                    .filter(|item| !item.is_empty())
                {
                    let lower = item.to_ascii_lowercase();
                    if !["ok", "warning", "error", "unknown"].contains(&lower.as_str()) {
                        return Err(ApiError::param(
                            "statusfilter",
                            format!("invalid format - invalid status '{item}'"),
                        ));
                    }
                    statuses.push(lower);
                }
            }
            _ if errors => statuses.retain(|s| s != "ok"),
            _ => {}
        }
        Ok(TaskFilter {
            source: call.get("source").unwrap_or("archive").to_string(),
            start: number("start").unwrap_or(0),
            limit: number("limit").unwrap_or(50),
            userfilter: call.get("userfilter").map(str::to_ascii_lowercase),
            typefilter: call.get("typefilter").map(str::to_string),
            vmid: call.get("vmid").map(str::to_string),
            since: number("since"),
            until: number("until"),
            statuses,
        })
    }

    /// Whether `entry` passes the filters (paging aside).
    fn keeps(&self, entry: &Value) -> bool {
        let text = |name: &str| entry[name].as_str().unwrap_or_default();
        let starttime = entry["starttime"].as_u64().unwrap_or(0);
        if let Some(userfilter) = &self.userfilter
            && !text("user")
                .to_ascii_lowercase()
                .contains(userfilter.as_str())
        {
            return false;
        }
        if self
            .typefilter
            .as_deref()
            .is_some_and(|t| t != text("type"))
            || self.vmid.as_deref().is_some_and(|v| v != text("id"))
            || self.since.is_some_and(|since| starttime < since)
            || self.until.is_some_and(|until| starttime > until)
        {
            return false;
        }
        // A running task has no status yet when the handler filters it: `unknown`.
        let status = match text("status") {
            "RUNNING" => "unknown",
            "OK" => "ok",
            "unexpected status" => "unknown",
            s if is_warnings(s) => "warning",
            _ => "error",
        };
        self.statuses.iter().any(|s| s == status)
    }
}

/// `WARNINGS: n`, as `PVE::UPID::normalize_status_type` matches it.
fn is_warnings(status: &str) -> bool {
    status
        .strip_prefix("WARNINGS: ")
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}
