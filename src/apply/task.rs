//! The task runner and the storage gate: a request that starts a Proxmox task is sent and its
//! task awaited, both retried on transient errors under the run's backoff; a request that
//! allocates volumes first takes one of its storage's slots (`--storage-parallelism`), so a
//! burst of clones does not outwait pve-storage's 10 s allocation lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use backon::Retryable;

use super::change::{ChangeRun, StepError};
use crate::pve::{PveError, Upid};

/// Per-storage slots for requests that allocate volumes (see `ApplyOptions`).
#[derive(Debug, Clone, Default)]
pub struct StorageGate {
    slots: Arc<std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Semaphore>>>>,
}

impl StorageGate {
    /// Wait for a slot on `storage`.
    async fn enter(&self, storage: &str, permits: usize) -> AllocationGuard {
        let semaphore = self
            .slots
            .lock()
            .map(|mut slots| {
                Arc::clone(
                    slots
                        .entry(storage.to_string())
                        .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(permits.max(1)))),
                )
            })
            .ok();
        let permit = match semaphore {
            Some(semaphore) => semaphore.acquire_owned().await.ok(),
            None => None,
        };
        AllocationGuard {
            permit: Arc::new(std::sync::Mutex::new(permit)),
        }
    }
}

/// A storage slot, freed when its task ends or, for a long task (a full clone copying its
/// disks), once its allocations are surely done, whichever comes first.
struct AllocationGuard {
    permit: Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>,
}

impl AllocationGuard {
    /// Free the slot `after` from now if the task has not ended by then.
    fn release_after(&self, after: Duration) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let permit = Arc::clone(&self.permit);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if let Ok(mut permit) = permit.lock() {
                permit.take();
            }
        });
    }
}

impl Drop for AllocationGuard {
    fn drop(&mut self) {
        if let Ok(mut permit) = self.permit.lock() {
            permit.take();
        }
    }
}

/// Where a request allocates: `storage@node` and how many volumes.
pub(super) struct Allocation<'a> {
    /// The storage's slot key, `storage@node`.
    pub(super) storage: &'a str,
    /// Volumes the request allocates there.
    pub(super) volumes: usize,
    /// Whether the task logs its progress (a download), passed on while it runs.
    pub(super) progress_in_log: bool,
}

impl ChangeRun {
    /// Send a request that starts a task and wait for the task, retrying both on transient
    /// errors (whether the HTTP answer or the task's exit status carried them).
    pub(super) async fn task<F, Fut>(
        &self,
        what: &str,
        tasks: &mut Vec<String>,
        request: F,
    ) -> Result<(), StepError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Upid>, PveError>>,
    {
        self.task_allocating(what, tasks, None, request).await
    }

    /// `task` for a request that allocates `volumes` on `storage`: each attempt waits for one
    /// of the storage's slots first (see `ApplyOptions::storage_parallelism`).
    pub(super) async fn task_allocating<F, Fut>(
        &self,
        what: &str,
        tasks: &mut Vec<String>,
        allocation: Option<Allocation<'_>>,
        request: F,
    ) -> Result<(), StepError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Upid>, PveError>>,
    {
        if let Some(cancelled) = self.cancelled_before(what) {
            return Err(cancelled);
        }
        let attempt = || async {
            // Proxmox allocates under a storage-wide lock, one allocation after another, and
            // waits 10 s for it: with at most `storage_parallelism` requests in flight per
            // storage, each slot held until its task ends (or for as long as the slots'
            // allocations take at most, for a long copy), no request waits that long.
            let guard = match &allocation {
                Some(allocation) => Some(
                    self.options
                        .storage_gate
                        .enter(allocation.storage, self.options.storage_parallelism)
                        .await,
                ),
                None => None,
            };
            let upid = request().await?;
            if let (Some(guard), Some(allocation)) = (&guard, &allocation) {
                let slots = self.options.storage_parallelism.max(1) as u32;
                let volumes = allocation.volumes.max(1) as u32;
                guard.release_after(self.options.allocation_window * volumes * slots);
            }
            match &upid {
                // A download reports its progress in its log: pass it on while waiting.
                Some(upid) if allocation.as_ref().is_some_and(|a| a.progress_in_log) => {
                    self.wait_for_download(what, upid).await?;
                }
                Some(upid) => {
                    self.client
                        .wait_task(upid, self.options.task_timeout)
                        .await?;
                }
                None => {}
            }
            Ok::<_, PveError>(upid)
        };
        let upid = attempt
            .retry(self.options.backoff)
            .when(PveError::is_transient)
            .notify(|err, delay| tracing::warn!(key = %self.change.key, %err, ?delay, "retrying {what}"))
            .await
            .map_err(|source| StepError::Pve { what: what.to_string(), source })?;
        if let Some(upid) = upid {
            tasks.push(upid.to_string());
        }
        self.step(what);
        Ok(())
    }

    /// Wait for the download task `upid`, passing on the progress lines of its log meanwhile.
    async fn wait_for_download(&self, what: &str, upid: &Upid) -> Result<(), PveError> {
        let watch = async {
            let mut seen = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Ok(lines) = self.client.task_log(upid).await {
                    for line in lines.iter().skip(seen).filter(|l| l.contains('%')) {
                        self.step(format!("{what}: {}", line.trim()));
                    }
                    seen = seen.max(lines.len());
                }
            }
        };
        tokio::select! {
            waited = self.client.wait_task(upid, self.options.task_timeout) => { waited?; }
            () = watch => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_gate_bounds_each_storage_on_its_own() {
        let gate = StorageGate::default();
        let first = gate.enter("local-lvm@pve1", 2).await;
        let _second = gate.enter("local-lvm@pve1", 2).await;
        // Another storage has slots of its own.
        let _elsewhere = gate.enter("local-lvm@pve2", 2).await;
        let third =
            tokio::time::timeout(Duration::from_secs(60), gate.enter("local-lvm@pve1", 2)).await;
        assert!(third.is_err(), "a third slot on a storage of two");
        drop(first);
        let third =
            tokio::time::timeout(Duration::from_secs(60), gate.enter("local-lvm@pve1", 2)).await;
        assert!(third.is_ok(), "a slot freed when its guard ends");
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_task_frees_its_slot_after_the_allocation_window() {
        let gate = StorageGate::default();
        let copying = gate.enter("nfs@pve1", 1).await;
        copying.release_after(Duration::from_secs(2));
        let started = tokio::time::Instant::now();
        let _next = gate.enter("nfs@pve1", 1).await;
        assert_eq!(started.elapsed().as_secs(), 2);
        drop(copying);
    }
}
