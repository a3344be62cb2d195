//! The storage gate: per-storage slots for requests that allocate volumes
//! (`--storage-parallelism`), so a burst of clones does not outwait pve-storage's 10 s
//! allocation lock. A slot is a volume: a request takes as many as it allocates. A shared
//! storage has one set of slots for the whole cluster, a local storage one per node, because
//! that is how Proxmox locks them (pve-storage `src/PVE/Storage/Plugin.pm`,
//! `cluster_lock_storage`, called by `PVE::Storage::vdisk_alloc` with the storage's `shared`
//! flag: a local storage is locked by a flock on the node,
//! `/var/lock/pve-manager/pve-storage-<id>`; a shared one by pve-cluster's `cfs_lock_storage`,
//! the pmxcfs lock `storage-<id>`, one for every node). The slots learn: a lock time-out
//! halves the storage's slots (down to one), and they grow back by one after
//! [`GROW_AFTER`] clean allocations.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::pve::{PveClient, PveError};

/// Clean allocations on a storage after which one slot taken away by a lock time-out comes
/// back: slow enough that a storage which timed out is not overrun again at once.
pub(super) const GROW_AFTER: usize = 8;

/// Per-storage slots for requests that allocate volumes (see `ApplyOptions`).
#[derive(Debug, Clone, Default)]
pub struct StorageGate {
    slots: Arc<Mutex<BTreeMap<String, Arc<Slots>>>>,
    /// The shared storages each node lists, read once per node and run where the client's
    /// last cluster listing did not show them (`PveClient::listed_as_shared`).
    sharing: Arc<tokio::sync::Mutex<BTreeMap<String, Sharing>>>,
}

/// What a node's storage listing said about which storages are shared.
#[derive(Debug, Clone)]
enum Sharing {
    Listed(BTreeSet<String>),
    /// The listing could not be read: every storage counts as shared, the stricter reading
    /// (one set of slots for the cluster instead of one per node).
    Unknown,
}

/// One storage's slots.
#[derive(Debug)]
struct Slots {
    state: Mutex<SlotState>,
    freed: Notify,
}

#[derive(Debug)]
struct SlotState {
    /// Volumes that may be allocating at once now.
    limit: usize,
    /// What `limit` grows back to: `--storage-parallelism`.
    ceiling: usize,
    /// Volumes of the requests holding slots.
    in_use: usize,
    /// Clean allocations since the limit last changed.
    clean: usize,
}

impl StorageGate {
    /// Wait for slots for `allocation`: one per volume it allocates (all of them, if it
    /// allocates more than the storage has: then it runs alone). `ceiling` is
    /// `--storage-parallelism`.
    pub(super) async fn enter(
        &self,
        client: &PveClient,
        allocation: &Allocation<'_>,
        ceiling: usize,
    ) -> AllocationGuard {
        let key = self.slot_key(client, allocation.storage).await;
        self.enter_key(&key, allocation.volumes, ceiling).await
    }

    /// The slots' key of `storage@node`: the storage alone when it is shared.
    async fn slot_key(&self, client: &PveClient, storage_at_node: &str) -> String {
        let Some((storage, node)) = storage_at_node.split_once('@') else {
            return storage_at_node.to_string();
        };
        // The cluster listing the preflight read says it for the storages it showed.
        if let Some(shared) = client.listed_as_shared(node, storage) {
            return if shared {
                storage.to_string()
            } else {
                storage_at_node.to_string()
            };
        }
        let mut sharing = self.sharing.lock().await;
        if !sharing.contains_key(node) {
            let listed = match client.storages(node).await {
                Ok(storages) => Sharing::Listed(
                    storages
                        .into_iter()
                        .filter(|s| s.shared)
                        .map(|s| s.storage)
                        .collect(),
                ),
                Err(err) => {
                    tracing::debug!(node, %err, "storage listing unread; storages count as shared");
                    Sharing::Unknown
                }
            };
            sharing.insert(node.to_string(), listed);
        }
        let shared = match sharing.get(node) {
            Some(Sharing::Listed(shared)) => shared.contains(storage),
            Some(Sharing::Unknown) | None => true,
        };
        if shared {
            storage.to_string()
        } else {
            storage_at_node.to_string()
        }
    }

    /// Wait for `volumes` slots of the storage `key`.
    async fn enter_key(&self, key: &str, volumes: usize, ceiling: usize) -> AllocationGuard {
        let ceiling = ceiling.max(1);
        let slots = self.slots.lock().map_or_else(
            // A poisoned map (a panic elsewhere) throttles nothing rather than everything.
            |_| Arc::new(Slots::new(ceiling)),
            |mut slots| {
                Arc::clone(
                    slots
                        .entry(key.to_string())
                        .or_insert_with(|| Arc::new(Slots::new(ceiling))),
                )
            },
        );
        let weight = volumes.max(1);
        let taken = slots.take(weight).await;
        AllocationGuard {
            held: Arc::new(Mutex::new(Some(Held {
                slots: Arc::clone(&slots),
                weight: taken,
            }))),
            slots,
        }
    }

    /// The slots `key` has now, for tests.
    #[cfg(test)]
    fn limit(&self, key: &str) -> Option<usize> {
        let slots = self.slots.lock().ok()?;
        let state = slots.get(key)?.state.lock().ok()?;
        Some(state.limit)
    }
}

impl Slots {
    fn new(ceiling: usize) -> Slots {
        Slots {
            state: Mutex::new(SlotState {
                limit: ceiling,
                ceiling,
                in_use: 0,
                clean: 0,
            }),
            freed: Notify::new(),
        }
    }

    /// Take `weight` slots (capped to the limit), waiting until they are free. Returns how
    /// many were taken.
    async fn take(&self, weight: usize) -> usize {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a release between the look and the wait is seen.
            freed.as_mut().enable();
            if let Ok(mut state) = self.state.lock() {
                let taken = weight.min(state.limit);
                if state.in_use == 0 || state.in_use + taken <= state.limit {
                    state.in_use += taken;
                    return taken;
                }
            } else {
                return 0;
            }
            freed.await;
        }
    }

    fn give_back(&self, weight: usize) {
        if let Ok(mut state) = self.state.lock() {
            state.in_use = state.in_use.saturating_sub(weight);
        }
        self.freed.notify_waiters();
    }

    /// How long a request's slots are held at most while its task runs: long enough for every
    /// volume the storage may have queued for its lock to be allocated, stretched by as much
    /// as time-outs have cut the slots (they said allocations take longer than thought).
    fn hold_for(&self, window: Duration, weight: usize) -> Duration {
        let (limit, ceiling) = self
            .state
            .lock()
            .map(|state| (state.limit, state.ceiling))
            .unwrap_or((1, 1));
        let queued = ceiling.max(weight) as u32;
        let stretch = ceiling.div_ceil(limit.max(1)) as u32;
        window * queued * stretch
    }

    /// Learn from how an allocating request ended: a lock time-out halves the slots, clean
    /// allocations grow them back one at a time.
    fn learn(&self, lock_timed_out: bool) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if lock_timed_out {
            state.limit = (state.limit / 2).max(1);
            state.clean = 0;
            tracing::info!(
                slots = state.limit,
                "storage lock time-out: fewer allocations at once"
            );
        } else if state.limit < state.ceiling {
            state.clean += 1;
            if state.clean >= GROW_AFTER {
                state.limit += 1;
                state.clean = 0;
                drop(state);
                self.freed.notify_waiters();
            }
        }
    }
}

#[derive(Debug)]
struct Held {
    slots: Arc<Slots>,
    weight: usize,
}

/// A request's storage slots, freed when its task ends or, for a long task (a full clone
/// copying its disks), once its allocations are surely done, whichever comes first.
pub(super) struct AllocationGuard {
    held: Arc<Mutex<Option<Held>>>,
    slots: Arc<Slots>,
}

impl AllocationGuard {
    /// The request was sent: free the slots once its allocations are surely done, if its task
    /// has not ended by then (`window` is one volume's allocation at most).
    pub(super) fn sent(&self, window: Duration) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let weight = self
            .held
            .lock()
            .ok()
            .and_then(|held| held.as_ref().map(|held| held.weight))
            .unwrap_or(1);
        let after = self.slots.hold_for(window, weight);
        let held = Arc::clone(&self.held);
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            free(&held);
        });
    }

    /// How the request and its task ended: a lock time-out teaches the storage's slots.
    pub(super) fn ended<T>(&self, result: &Result<T, PveError>) {
        match result {
            Ok(_) => self.slots.learn(false),
            Err(err) if err.is_lock_timeout() => self.slots.learn(true),
            // Another failure says nothing about the lock, and was no clean allocation.
            Err(_) => {}
        }
    }
}

fn free(held: &Mutex<Option<Held>>) {
    if let Some(held) = held.lock().ok().and_then(|mut held| held.take()) {
        held.slots.give_back(held.weight);
    }
}

impl Drop for AllocationGuard {
    fn drop(&mut self) {
        free(&self.held);
    }
}

/// Where a request allocates: `storage@node` and how many volumes.
pub(super) struct Allocation<'a> {
    /// The storage and the node the allocating task runs on, `storage@node`.
    pub(super) storage: &'a str,
    /// Volumes the request allocates there.
    pub(super) volumes: usize,
    /// Whether the task logs its progress (a download), passed on while it runs.
    pub(super) progress_in_log: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_timeout() -> Result<(), PveError> {
        Err(PveError::TaskFailed {
            upid: "UPID:pve1:1:1:1:qmclone:100:root@pam:".into(),
            exitstatus:
                "can't lock file '/var/lock/pve-manager/pve-storage-local-lvm' - got timeout".into(),
            log: Vec::new(),
        })
    }

    async fn blocked(gate: &StorageGate, key: &str, volumes: usize, ceiling: usize) -> bool {
        tokio::time::timeout(
            Duration::from_secs(60),
            gate.enter_key(key, volumes, ceiling),
        )
        .await
        .is_err()
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_bounds_each_storage_on_its_own() {
        let gate = StorageGate::default();
        let first = gate.enter_key("local-lvm@pve1", 1, 2).await;
        let _second = gate.enter_key("local-lvm@pve1", 1, 2).await;
        // Another storage has slots of its own.
        let _elsewhere = gate.enter_key("local-lvm@pve2", 1, 2).await;
        assert!(blocked(&gate, "local-lvm@pve1", 1, 2).await);
        drop(first);
        assert!(!blocked(&gate, "local-lvm@pve1", 1, 2).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slot_is_a_volume_and_a_request_larger_than_the_storage_runs_alone() {
        let gate = StorageGate::default();
        let two = gate.enter_key("local-lvm@pve1", 2, 4).await;
        let _another_two = gate.enter_key("local-lvm@pve1", 2, 4).await;
        assert!(
            blocked(&gate, "local-lvm@pve1", 1, 4).await,
            "four volumes allocating"
        );
        drop(two);
        let _one = gate.enter_key("local-lvm@pve1", 1, 4).await;
        assert!(
            blocked(&gate, "local-lvm@pve1", 2, 4).await,
            "three in use, two more"
        );

        let gate = StorageGate::default();
        let six = gate.enter_key("nfs", 6, 4).await;
        assert!(
            blocked(&gate, "nfs", 1, 4).await,
            "the six-volume request fills the storage"
        );
        drop(six);
        let _six_again = gate.enter_key("nfs", 6, 4).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_task_frees_its_slots_once_its_storage_s_allocations_are_surely_done() {
        let gate = StorageGate::default();
        let copying = gate.enter_key("nfs", 1, 2).await;
        let _other = gate.enter_key("nfs", 1, 2).await;
        // Two volumes may queue for the lock before this one's is done: two windows.
        copying.sent(Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        let _next = gate.enter_key("nfs", 1, 2).await;
        assert_eq!(started.elapsed().as_secs(), 2);
        drop(copying);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lock_time_out_halves_the_slots_and_clean_allocations_grow_them_back_slowly() {
        let gate = StorageGate::default();
        let key = "local-lvm@pve1";
        let guard = gate.enter_key(key, 1, 8).await;
        guard.ended(&lock_timeout());
        assert_eq!(gate.limit(key), Some(4));
        guard.ended(&lock_timeout());
        guard.ended(&lock_timeout());
        guard.ended(&lock_timeout());
        assert_eq!(gate.limit(key), Some(1), "halved down to one, not zero");
        drop(guard);

        // One slot: a second request waits while the first holds it.
        let first = gate.enter_key(key, 1, 8).await;
        assert!(blocked(&gate, key, 1, 8).await);
        // Other failures teach nothing; clean allocations bring a slot back after GROW_AFTER.
        first.ended::<()>(&Err(PveError::TaskFailed {
            upid: "UPID:pve1:1:1:1:qmclone:100:root@pam:".into(),
            exitstatus: "disk quota exceeded".into(),
            log: Vec::new(),
        }));
        for _ in 0..GROW_AFTER - 1 {
            first.ended(&Ok(()));
        }
        assert_eq!(gate.limit(key), Some(1));
        first.ended(&Ok(()));
        assert_eq!(gate.limit(key), Some(2));
        assert!(
            !blocked(&gate, key, 1, 8).await,
            "the slot that grew back is free"
        );
        for _ in 0..GROW_AFTER * 20 {
            first.ended(&Ok(()));
        }
        assert_eq!(gate.limit(key), Some(8), "never past --storage-parallelism");
    }

    #[tokio::test(start_paused = true)]
    async fn cut_slots_are_held_longer_after_the_request_is_sent() {
        let gate = StorageGate::default();
        let key = "local-lvm@pve1";
        let guard = gate.enter_key(key, 1, 4).await;
        guard.ended(&lock_timeout());
        // Two slots of four left: the window of four queued volumes, twice.
        guard.sent(Duration::from_secs(1));
        let started = tokio::time::Instant::now();
        let _next = gate.enter_key(key, 2, 4).await;
        assert_eq!(started.elapsed().as_secs(), 8);
        drop(guard);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_storage_has_one_set_of_slots_for_the_cluster() {
        let gate = StorageGate::default();
        {
            let mut sharing = gate.sharing.lock().await;
            for node in ["pve1", "pve2"] {
                sharing.insert(
                    node.to_string(),
                    Sharing::Listed(BTreeSet::from(["shared".to_string()])),
                );
            }
            sharing.insert("pve3".to_string(), Sharing::Unknown);
        }
        // Never asked: every node's sharing is known.
        let client = PveClient::new(crate::pve::ClientConfig {
            endpoint: "http://127.0.0.1:1".into(),
            token: crate::pve::ApiToken::parse("root@pam!t=s").expect("token"),
            insecure: false,
            ca_file: None,
            timeout: Duration::from_secs(1),
            read_retry: crate::pve::ReadRetry::never(),
        })
        .expect("client");
        assert_eq!(gate.slot_key(&client, "shared@pve1").await, "shared");
        assert_eq!(gate.slot_key(&client, "shared@pve2").await, "shared");
        assert_eq!(
            gate.slot_key(&client, "local-lvm@pve1").await,
            "local-lvm@pve1"
        );
        assert_eq!(
            gate.slot_key(&client, "local-lvm@pve2").await,
            "local-lvm@pve2"
        );
        // A node whose listing could not be read counts every storage as shared.
        assert_eq!(gate.slot_key(&client, "local-lvm@pve3").await, "local-lvm");
    }
}
