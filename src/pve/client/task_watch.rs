//! The shared task watcher: one per client, one poller per node that has tasks being waited
//! for. While tasks run, a node costs one `GET /nodes/{node}/tasks?source=all` per round
//! however many of its tasks are awaited; a waiter hears when its task is listed as ended
//! (with its exit status, the listing's `status`), that it has left the running tasks without
//! the listing showing how it ended (then reads the task's own status once), or that the
//! listing cannot answer (then polls its task on its own, as before).
//!
//! Each awaited task has its next look: a tenth of the time it has been waited for, between
//! `TASK_POLL_MIN` and `TASK_POLL_MAX` (`task_poll_delay`), so its end is seen within that
//! delay of it; a round comes when the earliest look is due and serves every task, and a task
//! registered while the poller sleeps longer wakes it. The poller ends when no task is awaited
//! on its node.
//!
//! Tasks of one kind take about as long as each other (a linked clone of one template, a
//! start): once one has been seen to end, the next of its kind is first looked at after nine
//! tenths of that time (`expected_first_look`; the node's own last one, else the quickest on
//! any node), then as above. Without this a wave
//! of tasks started together costs some 35 rounds a second per node whatever its size; with
//! it, two or three. A task that ends much sooner than the last of its kind is seen at that
//! first look.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use super::PveClient;
use crate::pve::Upid;

/// The shortest wait between two looks at a node's (or a task's) running tasks.
pub(crate) const TASK_POLL_MIN: Duration = Duration::from_millis(10);
/// The longest.
pub(crate) const TASK_POLL_MAX: Duration = Duration::from_secs(1);

/// How long to wait before looking at a task again once it has run for `waited`: a tenth of
/// that, between 10 ms and 1 s. So a task's end is noticed at most 10 ms or a tenth of its run
/// time later (never more than 1 s), and a task polled this way costs about 35 looks at 1 s
/// and 60 at 12 s. A backoff that multiplies its own delay instead (10 ms, × 1.5, up to 1 s)
/// costs fewer but can notice a task half its run time late (a 0.5 s task at 0.74 s).
pub(crate) fn task_poll_delay(waited: Duration) -> Duration {
    (waited / 10).clamp(TASK_POLL_MIN, TASK_POLL_MAX)
}

/// How long after registering a task is first looked at: nine tenths of the last run time of
/// its kind (on its node, else on any), or `TASK_POLL_MIN` for a kind not seen yet.
fn expected_first_look(last_run_time: Option<Duration>) -> Duration {
    last_run_time
        .map_or(TASK_POLL_MIN, |last| last.mul_f64(0.9))
        .max(TASK_POLL_MIN)
}

/// What a waiter hears from its node's poller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seen {
    /// The node's task list shows the task ended, with this exit status.
    Ended(String),
    /// The task is no longer among the node's running tasks, but the listing did not show
    /// how it ended (the limit cut the ended ones off): it has ended.
    Left,
    /// The listing failed (or could not list everything): look at the task on its own.
    Unanswered,
}

/// A task being waited for.
struct Awaited {
    upid: Upid,
    registered: Instant,
    /// When it needs a round next.
    next_look: Instant,
    /// Its start time (seconds since the epoch), from the UPID.
    starttime: u64,
    waiters: Vec<oneshot::Sender<Seen>>,
}

/// A node's awaited tasks, by UPID.
#[derive(Default)]
struct NodeWatch {
    awaited: BTreeMap<String, Awaited>,
    /// A poller runs for this node.
    polling: bool,
    /// How long the last task of each type took here, from registration to being seen gone.
    last_run_time: BTreeMap<String, Duration>,
    /// The listing answered with a permanent error (an older Proxmox without `source`, no
    /// right to list): every later wait on the node polls its task on its own.
    unanswerable: bool,
}

/// One client's watcher.
#[derive(Default)]
pub(crate) struct TaskWatch {
    nodes: Mutex<BTreeMap<String, NodeWatch>>,
    /// Wakes pollers when a younger task registers.
    woken: Notify,
    /// Every UPID this client was answered with: a task found in a node's list after an
    /// answer was lost is ours only if it is not one of these.
    pub(crate) known: Mutex<BTreeSet<String>>,
}

/// The start time a UPID carries (its fifth field, hexadecimal seconds).
fn starttime_of(upid: &Upid) -> u64 {
    upid.to_string()
        .split(':')
        .nth(4)
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .unwrap_or(0)
}

impl PveClient {
    /// Wait until `upid` is no longer among its node's running tasks, sharing the node's polling
    /// with every other task awaited there. Registering starts the node's poller if none runs.
    pub(crate) async fn task_left(&self, upid: &Upid) -> Seen {
        let watch = &self.inner.task_watch;
        let (sender, receiver) = oneshot::channel();
        let start_poller = {
            let Ok(mut nodes) = watch.nodes.lock() else {
                return Seen::Unanswered;
            };
            // What this node's last task of the kind took, else the shortest any other took.
            let last_run_time = nodes
                .get(upid.node())
                .and_then(|node| node.last_run_time.get(upid.task_type()))
                .or_else(|| {
                    nodes
                        .values()
                        .filter_map(|node| node.last_run_time.get(upid.task_type()))
                        .min()
                })
                .copied();
            let node = nodes.entry(upid.node().to_string()).or_default();
            if node.unanswerable {
                return Seen::Unanswered;
            }
            let now = Instant::now();
            let first_look = now + expected_first_look(last_run_time);
            node.awaited
                .entry(upid.to_string())
                .or_insert_with(|| Awaited {
                    upid: upid.clone(),
                    registered: now,
                    next_look: first_look,
                    starttime: starttime_of(upid),
                    waiters: Vec::new(),
                })
                .waiters
                .push(sender);
            !std::mem::replace(&mut node.polling, true)
        };
        if start_poller {
            let client = self.clone();
            let node = upid.node().to_string();
            tokio::spawn(async move { client.poll_node(&node).await });
        } else {
            watch.woken.notify_waiters();
        }
        receiver.await.unwrap_or(Seen::Unanswered)
    }

    /// The poller of `node`: a round when the youngest awaited task needs one, until no task
    /// is awaited there.
    async fn poll_node(&self, node: &str) {
        let watch = &self.inner.task_watch;
        loop {
            // When the next round is due; registering a task may bring it forward.
            loop {
                // Listening before looking, so a task registered in between still wakes us.
                let woken = watch.woken.notified();
                tokio::pin!(woken);
                woken.as_mut().enable();
                let Some(due) = self.next_round(node) else {
                    return;
                };
                if due <= Instant::now() {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(due) => break,
                    () = woken => {}
                }
            }
            let Some(query) = self.round_query(node) else {
                return;
            };
            let listed = self.active_tasks(node, &query).await;
            if !self.settle_round(node, &query.covered, listed) {
                return;
            }
        }
    }

    /// When `node`'s next round is due, or `None` (the poller stopping) when nothing is
    /// awaited there; tasks nobody waits for any more are forgotten first.
    fn next_round(&self, node: &str) -> Option<Instant> {
        let mut nodes = self.inner.task_watch.nodes.lock().ok()?;
        let watch = nodes.get_mut(node)?;
        watch.awaited.retain(|_, awaited| {
            awaited.waiters.retain(|w| !w.is_closed());
            !awaited.waiters.is_empty()
        });
        if watch.awaited.is_empty() {
            watch.polling = false;
            return None;
        }
        watch.awaited.values().map(|a| a.next_look).min()
    }

    /// The narrowest listing that covers every task awaited on `node`.
    fn round_query(&self, node: &str) -> Option<ActiveQuery> {
        let nodes = self.inner.task_watch.nodes.lock().ok()?;
        let watch = nodes.get(node)?;
        let awaited: Vec<&Awaited> = watch.awaited.values().collect();
        let first = awaited.first()?;
        let all_same = |field: fn(&Upid) -> &str| {
            let value = field(&first.upid);
            awaited
                .iter()
                .all(|a| field(&a.upid) == value)
                .then(|| value.to_string())
        };
        let vmid = all_same(Upid::id).filter(|id| id.parse::<u32>().is_ok_and(|n| n >= 100));
        Some(ActiveQuery {
            since: awaited.iter().map(|a| a.starttime).min().unwrap_or(0),
            typefilter: all_same(Upid::task_type),
            vmid,
            userfilter: all_same(|upid| upid.user().split('!').next().unwrap_or_default()),
            n_awaited: awaited.len(),
            covered: watch.awaited.keys().cloned().collect(),
        })
    }

    /// Tell the waiters of `node` what the round found; false when the poller should stop.
    fn settle_round(
        &self,
        node: &str,
        covered: &BTreeSet<String>,
        listed: Result<ListedTasks, crate::pve::PveError>,
    ) -> bool {
        let Ok(mut nodes) = self.inner.task_watch.nodes.lock() else {
            return false;
        };
        let Some(watch) = nodes.get_mut(node) else {
            return false;
        };
        let now = Instant::now();
        let (running, mut ended) = match listed {
            // A listing whose limit may have cut running tasks off cannot say a task is gone.
            Ok(listed) if !listed.running_complete => (None, listed.ended),
            Ok(listed) => (Some(listed.running), listed.ended),
            Err(err) => {
                tracing::debug!(node, %err, "the node's task list did not answer; polling tasks one by one");
                if !err.is_transient() {
                    watch.unanswerable = true;
                }
                (None, BTreeMap::new())
            }
        };
        // A task registered while the round was out was not asked about (the query may have
        // been narrowed to the others' type or vmid): the next round answers for it.
        let gone: Vec<String> = watch
            .awaited
            .keys()
            .filter(|upid| covered.contains(*upid))
            .filter(|upid| {
                ended.contains_key(*upid)
                    || running
                        .as_ref()
                        .is_none_or(|running| !running.contains(*upid))
            })
            .cloned()
            .collect();
        for upid in gone {
            let seen = match (ended.remove(&upid), &running) {
                (Some(exitstatus), _) => Seen::Ended(exitstatus),
                (None, Some(_)) => Seen::Left,
                (None, None) => Seen::Unanswered,
            };
            if let Some(awaited) = watch.awaited.remove(&upid) {
                if seen != Seen::Unanswered {
                    watch.last_run_time.insert(
                        awaited.upid.task_type().to_string(),
                        now.saturating_duration_since(awaited.registered),
                    );
                }
                for waiter in awaited.waiters {
                    let _ = waiter.send(seen.clone());
                }
            }
        }
        for awaited in watch.awaited.values_mut() {
            let waited = now.saturating_duration_since(awaited.registered);
            awaited.next_look = awaited.next_look.max(now + task_poll_delay(waited));
        }
        if watch.awaited.is_empty() {
            watch.polling = false;
            return false;
        }
        true
    }
}

/// What a round asks the node's task list for: everything awaited there started at or after
/// `since`; `typefilter`, `vmid` and `userfilter` when every awaited task shares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ActiveQuery {
    pub(crate) since: u64,
    pub(crate) typefilter: Option<String>,
    pub(crate) vmid: Option<String>,
    pub(crate) userfilter: Option<String>,
    /// How many tasks are awaited (the listing's limit leaves room above it).
    pub(crate) n_awaited: usize,
    /// The UPIDs the round answers for.
    pub(crate) covered: BTreeSet<String>,
}

/// What a node's task list showed: the UPIDs of its running tasks (all of them unless
/// `running_complete` is false) and the exit status of each ended task it listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListedTasks {
    pub(crate) running: BTreeSet<String>,
    pub(crate) ended: BTreeMap<String, String>,
    pub(crate) running_complete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_are_noticed_soon_after_they_end() {
        for millis in [
            1, 5, 10, 50, 100, 300, 500, 1_000, 1_500, 4_000, 12_000, 120_000,
        ] {
            let run_time = Duration::from_millis(millis);
            let mut waited = Duration::ZERO;
            let mut n_polls = 0;
            while waited < run_time {
                waited += task_poll_delay(waited);
                n_polls += 1;
            }
            let late = waited - run_time;
            let allowed = (run_time / 10).clamp(TASK_POLL_MIN, TASK_POLL_MAX);
            assert!(late <= allowed, "{run_time:?} noticed {late:?} late");
            // Logarithmic up to 10 s, then one a second.
            let budget = 64 + run_time.as_secs().saturating_sub(10);
            assert!(n_polls <= budget, "{run_time:?} took {n_polls} polls");
        }
    }

    #[test]
    fn a_upid_carries_its_start_time() {
        let upid: Upid = "UPID:pve1:00001234:00ABCDEF:6553F100:qmclone:9000:root@pam!ci:"
            .parse()
            .unwrap();
        assert_eq!(starttime_of(&upid), 0x6553_F100);
    }
}
