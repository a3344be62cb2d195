//! The task runner: a request that starts a Proxmox task is sent and its task awaited, both
//! retried on transient errors under the run's backoff; a request that allocates volumes first
//! takes a slot of its storage at the gate (`storage_gate.rs`).

use std::time::Duration;

use backon::Retryable;

use super::change::{ChangeRun, StepError};
use super::storage_gate::Allocation;
use crate::pve::{PveError, Upid};

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
                        .enter(&self.client, allocation, self.options.storage_parallelism)
                        .await,
                ),
                None => None,
            };
            let sent_and_awaited = async {
                let upid = request().await?;
                if let Some(guard) = &guard {
                    guard.sent(self.options.allocation_window);
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
            let result = sent_and_awaited.await;
            // A lock time-out teaches the storage's slots (fewer at once), before any retry.
            if let Some(guard) = &guard {
                guard.ended(&result);
            }
            result
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
