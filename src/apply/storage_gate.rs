//! The storage gate: per-storage slots for requests that allocate volumes
//! (`--storage-parallelism`), so a burst of clones does not outwait pve-storage's 10 s
//! allocation lock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Per-storage slots for requests that allocate volumes (see `ApplyOptions`).
#[derive(Debug, Clone, Default)]
pub struct StorageGate {
    slots: Arc<std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Semaphore>>>>,
}

impl StorageGate {
    /// Wait for a slot on `storage`.
    pub(super) async fn enter(&self, storage: &str, permits: usize) -> AllocationGuard {
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
pub(super) struct AllocationGuard {
    permit: Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>,
}

impl AllocationGuard {
    /// Free the slot `after` from now if the task has not ended by then.
    pub(super) fn release_after(&self, after: Duration) {
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
