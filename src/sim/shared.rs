//! The state a running simulator shares between its server, its tasks and its handle: the
//! cluster (saved after every change when a state file is configured), access control,
//! faults, tickets, the request log, running tasks, storage locks and boot times.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::state::Cluster;
use super::{RequestRecord, SimConfig, access, faults};

/// A logged-in ticket.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub user: String,
    pub csrf: String,
    pub issued: u64,
}

/// The state every request handler, task and admin call shares.
pub(crate) struct Shared {
    /// Per storage lock (`local-lvm`, or `local-lvm@pve1` for node-local storages): when it is
    /// free again, as the queue of allocations reserved it.
    pub storage_locks: Mutex<BTreeMap<String, tokio::time::Instant>>,
    /// Tasks that failed waiting for a storage lock (for tests and `sim serve` logs).
    pub lock_timeouts: std::sync::atomic::AtomicUsize,
    pub cluster: Mutex<Cluster>,
    pub access: access::AccessControl,
    pub faults: Mutex<faults::Faults>,
    pub tickets: Mutex<BTreeMap<String, Session>>,
    pub config: SimConfig,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub running_tasks: Mutex<tokio::task::JoinSet<()>>,
    /// When each VM started through the API last booted (on the tokio clock, so a paused test
    /// clock moves it); a VM without an entry has been running for long.
    pub boots: Mutex<BTreeMap<u32, tokio::time::Instant>>,
}

impl Shared {
    /// Run `f` on the cluster under the lock, then save the state.
    pub fn mutate<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        let mut cluster = self
            .cluster
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let out = f(&mut cluster);
        if let Some(path) = &self.config.state_file
            && let Err(err) = cluster.save(path)
        {
            tracing::warn!(%err, path = %path.display(), "simulator state not saved");
        }
        out
    }

    /// Note that a VM booted (`true`) or powered off.
    pub fn note_power(&self, vmid: u32, running: bool) {
        let mut boots = self
            .boots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if running {
            boots.insert(vmid, tokio::time::Instant::now());
        } else {
            boots.remove(&vmid);
        }
    }

    /// How long ago a VM booted, when it was started through the API.
    pub fn booted_for(&self, vmid: u32) -> Option<Duration> {
        let boots = self
            .boots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        boots.get(&vmid).map(tokio::time::Instant::elapsed)
    }

    /// Read the cluster under the lock.
    pub fn read<T>(&self, f: impl FnOnce(&Cluster) -> T) -> T {
        let cluster = self
            .cluster
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&cluster)
    }
}
