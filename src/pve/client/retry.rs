//! Which requests the client repeats on its own, and the budget it repeats them under. This is
//! the one place that says which Proxmox requests are safe to send twice and why.
//!
//! # Safe to repeat: every `GET`
//!
//! A `GET` changes nothing on the cluster, so sending it again after a transient failure
//! ([`PveError::is_transient`]: 502/503/504, 595/596/599 from pveproxy, a dropped connection, a
//! time-out, a lock contention message) can only cost time. The client retries each one under
//! [`ReadRetry`]: cluster resources, nodes and their networks, storages and their content,
//! configs, pending changes, status, permissions, version, next free id, PCI mappings, pools,
//! task status and log, and the guest agent's interfaces (itself a `GET` that only reads).
//! Parameter (400), authentication (401) and permission (403) errors, a 501, and a 500 whose
//! message is not contention ("VM 100 does not exist") are answers, not accidents: they are
//! returned at once.
//!
//! # Not safe to repeat: every write
//!
//! The client never re-sends a `POST`, `PUT` or `DELETE`: when its answer is lost the request
//! may have been carried out, and the second copy does harm or fails for the wrong reason.
//!
//! | request | repeated after it took effect |
//! |---|---|
//! | `POST /nodes/{node}/storage/{storage}/download-url` | a second download of the same file, racing the first for the volume name |
//! | `POST /nodes/{node}/storage/{storage}/upload` | a second upload; the first may still be writing the file |
//! | `POST /nodes/{node}/qemu` (create) | "unable to create VM {vmid}: config file already exists" while the first still runs |
//! | `POST /nodes/{node}/qemu/{vmid}/clone` | "config file already exists" for the target, or "VM is locked (clone)" on the source |
//! | `POST /nodes/{node}/qemu/{vmid}/config` (allocating: a `qmconfig` task) | "checksum mismatch" (the digest moved), or a second disk import / allocation |
//! | `PUT /nodes/{node}/qemu/{vmid}/config` (allocating nothing, answered when done) | with the observed digest: "checksum mismatch", which the executor resolves by reading the config once (its own write landed, or someone else's edit: refused); without one: the same values set again, no harm (qemu-server drops pending values equal to the current ones); and after a lost answer it is not sent again once `GET …/pending` shows every value set and every deleted option gone (`update_vm_config`) |
//! | `PUT /nodes/{node}/qemu/{vmid}/resize` | a relative size (`+N`) grows the disk twice |
//! | `POST /nodes/{node}/qemu/{vmid}/template` | "you can't convert a template to a template" |
//! | `POST /nodes/{node}/qemu/{vmid}/migrate` | "VM is locked (migrate)", or a migration back |
//! | `POST /nodes/{node}/qemu/{vmid}/move_disk` (reassign to another VM) | "Disk '…' for VM '…' does not exist": the volume moved already |
//! | `POST /nodes/{node}/qemu/{vmid}/status/start` | "VM {vmid} already running" |
//! | `POST /nodes/{node}/qemu/{vmid}/status/shutdown` or `stop` | a second task that waits on the VM lock, or "VM {vmid} not running" |
//! | `DELETE /nodes/{node}/qemu/{vmid}` | "Configuration file … does not exist" |
//! | `POST /pools`, `PUT /pools` | "pool … already exists", or members added twice |
//!
//! # When the answer to a task-starting write is lost
//!
//! A dropped connection or a time-out after the request went out leaves it unknown whether
//! the task started. The client looks before anything is sent again (`PveClient::
//! task_request`): the node's task list (`GET /nodes/{node}/tasks?source=all`, running and
//! archived, filtered by the task's type (`STARTED_TASKS`), its vmid or storage, our user and
//! a start time since just before the request) names the tasks that could be ours; a task our
//! token started that the client was not told of before is the one, and its UPID is adopted
//! as if the answer had come. Only when the list shows no such task is the error returned as
//! it was (transient: the executor's backoff sends the request again, which is then the first
//! copy that does anything); when the list cannot be read, or shows more than one unknown
//! candidate, the error is final ("not sending it again"), and the next run finds the work
//! done or in progress from the VM's config and lock.
//!
//! Once a task is known (its UPID came back), only the wait is repeated:
//! [`PveClient::wait_task`] keeps watching the same UPID through transient failures until the
//! task's own time-out, and never sends the request that started it again.
//!
//! [`PveError::is_transient`]: crate::pve::PveError::is_transient
//! [`PveClient::wait_task`]: super::PveClient::wait_task

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::Method;

/// Where a task's id (the UPID's sixth field) comes from in the request that starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskIdFrom {
    /// The path's `{vmid}` (for a clone: the source VM, as qemu-server's `clone_vm` forks
    /// `qmclone` with `$vmid`).
    PathVmid,
    /// The `vmid` parameter (create).
    ParamVmid,
    /// The path's `{storage}` (download-url).
    PathStorage,
    /// No id (`imgcopy`, `imgdel` fork without one).
    Nothing,
}

/// The task each task-starting write forks (`fork_worker`'s type in qemu-server's
/// `API2/Qemu.pm`, pve-storage's `API2/Storage/Status.pm` and `Content.pm`), and where its id
/// comes from: what the node's task list is searched by when the answer to the write is lost.
pub(crate) const STARTED_TASKS: &[(&str, &str, &str, TaskIdFrom)] = &[
    (
        "POST",
        "/nodes/{node}/storage/{storage}/download-url",
        "download",
        TaskIdFrom::PathStorage,
    ),
    (
        "POST",
        "/nodes/{node}/storage/{storage}/upload",
        "imgcopy",
        TaskIdFrom::Nothing,
    ),
    (
        "DELETE",
        "/nodes/{node}/storage/{storage}/content/{volume}",
        "imgdel",
        TaskIdFrom::Nothing,
    ),
    (
        "POST",
        "/nodes/{node}/qemu",
        "qmcreate",
        TaskIdFrom::ParamVmid,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/clone",
        "qmclone",
        TaskIdFrom::PathVmid,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/config",
        "qmconfig",
        TaskIdFrom::PathVmid,
    ),
    (
        "PUT",
        "/nodes/{node}/qemu/{vmid}/resize",
        "resize",
        TaskIdFrom::PathVmid,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/template",
        "qmtemplate",
        TaskIdFrom::PathVmid,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/migrate",
        "qmigrate",
        TaskIdFrom::PathVmid,
    ),
    // A disk reassign (qemu-server `API2/Qemu.pm` `move_vm_disk`) runs as `qmmove` on the
    // source's vmid.
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/move_disk",
        "qmmove",
        TaskIdFrom::PathVmid,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/status/start",
        "qmstart",
        TaskIdFrom::PathVmid,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/status/shutdown",
        "qmshutdown",
        TaskIdFrom::PathVmid,
    ),
    (
        "POST",
        "/nodes/{node}/qemu/{vmid}/status/stop",
        "qmstop",
        TaskIdFrom::PathVmid,
    ),
    (
        "DELETE",
        "/nodes/{node}/qemu/{vmid}",
        "qmdestroy",
        TaskIdFrom::PathVmid,
    ),
];

/// The task a write to `template` starts, if it starts one: its type and the id it will carry,
/// read from `path` (the template filled in) and `params`.
pub(crate) fn started_task(
    method: &Method,
    template: &str,
    path: &str,
    params: &[(String, String)],
) -> Option<(&'static str, Option<String>)> {
    let (_, _, task_type, id_from) = STARTED_TASKS
        .iter()
        .find(|(m, t, _, _)| *m == method.as_str() && *t == template)?;
    let segment = |name: &str| {
        let index = template.split('/').position(|s| s == name)?;
        let raw = path.split('/').nth(index)?;
        Some(
            url::form_urlencoded::parse(format!("x={raw}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| raw.to_string()),
        )
    };
    let id = match id_from {
        TaskIdFrom::PathVmid => segment("{vmid}"),
        TaskIdFrom::PathStorage => segment("{storage}"),
        TaskIdFrom::ParamVmid => params
            .iter()
            .find(|(name, _)| name == "vmid")
            .map(|(_, v)| v.clone()),
        TaskIdFrom::Nothing => None,
    };
    Some((task_type, id))
}

/// How the client retries a read (`GET`) that failed transiently: at most `max_retries` more
/// attempts, waiting an exponentially growing, jittered delay between `min_delay` and
/// `max_delay`. Writes are never retried by the client whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRetry {
    /// Attempts after the first; 0 sends each read once.
    pub max_retries: usize,
    /// The first delay (0 for tests that should not wait).
    pub min_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
}

impl Default for ReadRetry {
    /// Four attempts over about 1.5 s (0.2 s, 0.4 s, 0.8 s, each up to twice that with
    /// jitter): long enough for pveproxy to get over a restart or a busy worker, short enough
    /// that a cluster that is really down is reported within a few seconds.
    fn default() -> Self {
        ReadRetry {
            max_retries: 3,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(2),
        }
    }
}

impl ReadRetry {
    /// Each read sent once.
    pub fn never() -> Self {
        ReadRetry {
            max_retries: 0,
            min_delay: Duration::ZERO,
            max_delay: Duration::ZERO,
        }
    }

    /// The delays before each retry, jittered so that many readers failing at once do not
    /// come back at once.
    pub(crate) fn delays(&self) -> impl Iterator<Item = Duration> + use<> {
        ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay.max(self.min_delay))
            .with_max_times(self.max_retries)
            .with_jitter()
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_starting_writes_name_their_task() {
        let clone = started_task(
            &Method::POST,
            "/nodes/{node}/qemu/{vmid}/clone",
            "/nodes/pve1/qemu/9000/clone",
            &[("newid".into(), "101".into())],
        );
        assert_eq!(clone, Some(("qmclone", Some("9000".into()))));
        let create = started_task(
            &Method::POST,
            "/nodes/{node}/qemu",
            "/nodes/pve1/qemu",
            &[("vmid".into(), "100".into())],
        );
        assert_eq!(create, Some(("qmcreate", Some("100".into()))));
        let download = started_task(
            &Method::POST,
            "/nodes/{node}/storage/{storage}/download-url",
            "/nodes/pve1/storage/local/download-url",
            &[],
        );
        assert_eq!(download, Some(("download", Some("local".into()))));
        // A synchronous write starts no task.
        let put = started_task(
            &Method::PUT,
            "/nodes/{node}/qemu/{vmid}/config",
            "/nodes/pve1/qemu/100/config",
            &[],
        );
        assert_eq!(put, None);
    }

    #[test]
    fn the_budget_is_bounded_and_can_be_zero() {
        let default = ReadRetry::default();
        let delays: Vec<Duration> = default.delays().collect();
        assert_eq!(delays.len(), 3);
        assert!(delays.iter().all(|d| *d >= default.min_delay));
        assert!(delays.iter().sum::<Duration>() <= Duration::from_secs(6));
        assert_eq!(ReadRetry::never().delays().count(), 0);
        let instant = ReadRetry {
            max_retries: 5,
            ..ReadRetry::never()
        };
        let delays: Vec<Duration> = instant.delays().collect();
        assert_eq!(delays, vec![Duration::ZERO; 5]);
    }
}
