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
//! | `POST/PUT /nodes/{node}/qemu/{vmid}/config` | "checksum mismatch" (the digest moved), or a second disk import / allocation |
//! | `PUT /nodes/{node}/qemu/{vmid}/resize` | a relative size (`+N`) grows the disk twice |
//! | `POST /nodes/{node}/qemu/{vmid}/template` | "you can't convert a template to a template" |
//! | `POST /nodes/{node}/qemu/{vmid}/migrate` | "VM is locked (migrate)", or a migration back |
//! | `POST /nodes/{node}/qemu/{vmid}/status/start` | "VM {vmid} already running" |
//! | `POST /nodes/{node}/qemu/{vmid}/status/shutdown` or `stop` | a second task that waits on the VM lock, or "VM {vmid} not running" |
//! | `DELETE /nodes/{node}/qemu/{vmid}` | "Configuration file … does not exist" |
//! | `POST /pools`, `PUT /pools` | "pool … already exists", or members added twice |
//!
//! What the executor must do instead, when the answer to a write is lost: look before sending
//! it again. The node's task list (`GET /nodes/{node}/tasks`, by type and vmid) says whether a
//! task started; the VM's config says whether it exists and its `lock` whether a task still
//! works on it; the storage's content says whether a volume is there. Once a task is known
//! (its UPID came back), only the wait is repeated: [`PveClient::wait_task`] keeps polling the
//! same UPID through transient failures until the task's own time-out, and never sends the
//! request that started it again.
//!
//! [`PveError::is_transient`]: crate::pve::PveError::is_transient
//! [`PveClient::wait_task`]: super::PveClient::wait_task

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

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
