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
//! start), except where they queue (full clones behind each other's allocations on one
//! storage). So a node remembers, for the last [`RECENT_RUNS`] tasks of each kind, how long
//! after registering each was seen ended and, if a look about as late as its first found it
//! still running, how long it had run then: a steady kind's run time lies between the longest
//! "still running" and the quickest "ended" (`Expected`). The next task of the kind is first
//! looked at within that bracket (`expected_first_look`): at its top when it is narrower than
//! a step (`look_step`: a fiftieth of the time, at least 10 ms), so a steady kind is seen in
//! one look within a step (and the round trips) of its end; in its middle while it is wider,
//! which narrows it whichever way the look goes; a task found running there goes on to the
//! quickest recent end, then a step at a time while it is about that old, then as above
//! (`next_look_after`). When the kind's run times overlap (they vary: tasks queued) the first
//! look is a step before the quickest, then as above: a task that queued is seen within a
//! tenth of its run time as any other. When no look of the last [`RUNNING_AT_KEPT_FOR`] tasks
//! found one running (each had ended by its first look) the first look is a probe, some steps
//! before the quickest: one step, doubled each time a probe finds the task ended, so a kind
//! that got quicker is learnt again. The node's own recent tasks count, else the
//! quickest on any node. Without this a wave of tasks started together costs some 35 rounds a
//! second per node whatever its size; with it, one or two. A task that ends much sooner than
//! the quickest recent one of its kind is seen at that first look.

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

/// How many run times of a kind a node remembers: the quickest of them is what the next task
/// of the kind is expected to take.
pub(crate) const RECENT_RUNS: usize = 8;

/// How far apart the looks at a task about to end (by what its kind takes) are: a fiftieth of
/// what it is expected to take, between 10 ms and 1 s.
fn look_step(expected: Duration) -> Duration {
    (expected / 50).clamp(TASK_POLL_MIN, TASK_POLL_MAX)
}

/// What the recent tasks of a kind say of the next one's run time (from registering it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Expected {
    /// The longest a recent one was still running at a look about as late as its first, if
    /// such a look found one running.
    pub(crate) running_at: Option<Duration>,
    /// The quickest a recent one was seen ended.
    pub(crate) ended_by: Duration,
    /// How many steps before `ended_by` a probe looks: doubled each time a probe finds the
    /// task ended (the kind got quicker), back to one when it finds it running.
    pub(crate) probe_steps: u32,
}

/// When a task is first looked at, and whether that look is a probe (one below what recent
/// tasks of its kind took, to learn whether the kind got quicker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FirstLook {
    pub(crate) after: Duration,
    pub(crate) probe: bool,
}

/// How long after registering a task is first looked at (see the module documentation), or
/// `TASK_POLL_MIN` for a kind not seen yet.
pub(crate) fn expected_first_look(expected: Option<Expected>) -> FirstLook {
    let Some(kind) = expected else {
        return FirstLook {
            after: TASK_POLL_MIN,
            probe: false,
        };
    };
    let step = look_step(kind.ended_by);
    let (after, probe) = match kind.running_at {
        Some(running_at) if running_at < kind.ended_by => {
            let width = kind.ended_by - running_at;
            if width <= step {
                (kind.ended_by, false)
            } else {
                (running_at + width / 2, false)
            }
        }
        // Run times overlap: they vary (tasks queued), so look from the quickest on.
        Some(_) => (kind.ended_by.saturating_sub(step), false),
        // Every recent one had ended by its first look: probe below them.
        None => (
            kind.ended_by.saturating_sub(step * kind.probe_steps.max(1)),
            true,
        ),
    };
    FirstLook {
        after: after.max(TASK_POLL_MIN),
        probe,
    }
}

/// When a task found still running after `waited` (first looked at after `first_look`) is
/// looked at next: not before its first look; where its kind's run times overlap, a tenth of
/// `waited` (`task_poll_delay`); else at the quickest recent end of its kind, then a step at a
/// time while it is about that old, then a tenth of `waited`. No delay here exceeds a tenth of
/// `waited` but a step.
pub(crate) fn next_look_after(
    waited: Duration,
    first_look: Duration,
    expected: Option<Expected>,
) -> Duration {
    let Some(kind) = expected else {
        return task_poll_delay(waited);
    };
    let step = look_step(kind.ended_by);
    if waited + step < first_look {
        // A round for other tasks: the first look stands.
        return TASK_POLL_MIN;
    }
    let tenth = task_poll_delay(waited);
    if kind.running_at.is_some_and(|ran| ran >= kind.ended_by) {
        // Run times overlap: a task not ended at its first look queued longer than the
        // quickest, by no telling how much.
        tenth
    } else if waited < kind.ended_by {
        (kind.ended_by - waited).min(tenth).max(TASK_POLL_MIN)
    } else if waited <= kind.ended_by.max(first_look) + step {
        step
    } else {
        tenth
    }
}

/// How many tasks of a kind a "still running" is remembered for: a steady kind that is seen
/// ended at its first look leaves none for longer, so its next task probes.
const RUNNING_AT_KEPT_FOR: u64 = 4 * RECENT_RUNS as u64;

/// The last tasks of one kind on a node (newest last): when each of the last `RECENT_RUNS`
/// was seen ended; and of the last `RECENT_RUNS` that a look about as late as their first
/// found still running, how long they had run then (each kept for `RUNNING_AT_KEPT_FOR` tasks).
#[derive(Debug, Default)]
struct RecentRuns {
    ended_by: std::collections::VecDeque<Duration>,
    /// (the task's number among the kind's, how long it had run).
    running_at: std::collections::VecDeque<(u64, Duration)>,
    /// Tasks of the kind seen ended so far.
    seen: u64,
    probe_steps: u32,
}

impl RecentRuns {
    fn push(&mut self, ended_by: Duration, running_at: Option<Duration>, probed: bool) {
        self.seen += 1;
        if self.ended_by.len() == RECENT_RUNS {
            self.ended_by.pop_front();
        }
        self.ended_by.push_back(ended_by);
        if let Some(running_at) = running_at {
            if self.running_at.len() == RECENT_RUNS {
                self.running_at.pop_front();
            }
            self.running_at.push_back((self.seen, running_at));
        }
        if probed {
            self.probe_steps = match running_at {
                Some(_) => 1,
                None => (self.probe_steps.max(1) * 2).min(64),
            };
        }
    }

    fn expected(&self) -> Option<Expected> {
        Some(Expected {
            ended_by: self.ended_by.iter().copied().min()?,
            running_at: self
                .running_at
                .iter()
                .filter(|(seen, _)| seen + RUNNING_AT_KEPT_FOR > self.seen)
                .map(|(_, ran)| *ran)
                .max(),
            probe_steps: self.probe_steps.max(1),
        })
    }
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
    /// What its kind is expected to take, if any has been seen.
    expected: Option<Expected>,
    /// How long after registering it is first looked at, and whether that is a probe.
    first_look: FirstLook,
    /// The longest it had run when a look about as late as its first found it still running
    /// (an earlier round, for another task, says little of its kind's run time).
    running_at: Option<Duration>,
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
    /// How long the last tasks of each type took here, from registration to being seen gone.
    run_times: BTreeMap<String, RecentRuns>,
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
            // What the kind's recent tasks on this node say, else the quickest node's.
            let expected = nodes
                .get(upid.node())
                .and_then(|node| node.run_times.get(upid.task_type()))
                .and_then(RecentRuns::expected)
                .or_else(|| {
                    nodes
                        .values()
                        .filter_map(|node| node.run_times.get(upid.task_type()))
                        .filter_map(RecentRuns::expected)
                        .min_by_key(|expected| expected.ended_by)
                });
            let node = nodes.entry(upid.node().to_string()).or_default();
            if node.unanswerable {
                return Seen::Unanswered;
            }
            let now = Instant::now();
            let first_look = expected_first_look(expected);
            node.awaited
                .entry(upid.to_string())
                .or_insert_with(|| Awaited {
                    upid: upid.clone(),
                    registered: now,
                    expected,
                    first_look,
                    running_at: None,
                    next_look: now + first_look.after,
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
            let sent = Instant::now();
            let listed = self.active_tasks(node, &query).await;
            if !self.settle_round(node, &query.covered, sent, listed) {
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
        sent: Instant,
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
                    watch
                        .run_times
                        .entry(awaited.upid.task_type().to_string())
                        .or_default()
                        .push(
                            now.saturating_duration_since(awaited.registered),
                            awaited.running_at,
                            awaited.first_look.probe,
                        );
                }
                for waiter in awaited.waiters {
                    let _ = waiter.send(seen.clone());
                }
            }
        }
        for (upid, awaited) in &mut watch.awaited {
            // Listed as running when the request went out, at the latest.
            let ran = sent.saturating_duration_since(awaited.registered);
            let step = awaited
                .expected
                .map_or(TASK_POLL_MIN, |e| look_step(e.ended_by));
            if covered.contains(upid)
                && running.as_ref().is_some_and(|r| r.contains(upid))
                && ran + step >= awaited.first_look.after
            {
                awaited.running_at = Some(awaited.running_at.map_or(ran, |r| r.max(ran)));
            }
            let waited = now.saturating_duration_since(awaited.registered);
            awaited.next_look = awaited
                .next_look
                .max(now + next_look_after(waited, awaited.first_look.after, awaited.expected));
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

    /// Tasks of one kind run one after another for `run_times`, each watched alone (no round
    /// for other tasks), every look answered `rtt` after it is sent: how many looks each
    /// took and how late its end was seen.
    fn watch_one_by_one(run_times: &[Duration], rtt: Duration) -> Vec<(usize, Duration)> {
        let mut runs = RecentRuns::default();
        let mut out = Vec::new();
        for &run_time in run_times {
            let expected = runs.expected();
            let first = expected_first_look(expected);
            let step = expected.map_or(TASK_POLL_MIN, |e| look_step(e.ended_by));
            let (mut sent, mut looks, mut running_at) = (first.after, 0, None);
            loop {
                looks += 1;
                let now = sent + rtt;
                if sent >= run_time {
                    runs.push(now, running_at, first.probe);
                    out.push((looks, now - run_time));
                    break;
                }
                if sent + step >= first.after {
                    running_at = Some(sent);
                }
                sent = now + next_look_after(now, first.after, expected);
            }
        }
        out
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn mean_looks(watched: &[(usize, Duration)]) -> f64 {
        watched.iter().map(|w| w.0).sum::<usize>() as f64 / watched.len() as f64
    }

    #[test]
    fn a_kind_of_steady_length_is_seen_in_about_one_look_within_a_step() {
        for (run_time, rtt) in [(ms(500), ms(2)), (ms(1_500), ms(12)), (ms(12_000), ms(30))] {
            let watched = watch_one_by_one(&vec![run_time; 60], rtt);
            let learnt = &watched[12..];
            let step = look_step(run_time);
            for (looks, late) in learnt {
                assert!(
                    *late <= step + rtt * 3,
                    "{run_time:?}: {late:?} late, {looks} looks"
                );
            }
            let mean = mean_looks(learnt);
            assert!(mean <= 1.3, "{run_time:?}: {mean} looks a task");
        }
    }

    #[test]
    fn tasks_that_queue_are_seen_within_a_tenth_of_their_run_time() {
        // Full clones behind each other's allocations: 540 ms, then 40 ms more for each one
        // before them.
        let run_times: Vec<Duration> = (0..64).map(|k| ms(540 + (k % 8) * 40)).collect();
        let watched = watch_one_by_one(&run_times, ms(2));
        for (idx, (looks, late)) in watched.iter().enumerate().skip(8) {
            let allowed = task_poll_delay(run_times[idx]).max(look_step(ms(540))) + ms(4);
            assert!(*late <= allowed, "task {idx}: {late:?} late, {looks} looks");
        }
        // Alone, as the tenth-of-the-wait rule looks from the quickest on (on a busy node the
        // rounds serve several tasks at once).
        let mean = mean_looks(&watched[8..]);
        assert!(mean <= 6.0, "{mean} looks a task");
    }

    #[test]
    fn a_kind_that_gets_quicker_or_slower_is_learnt_again() {
        for (before, after) in [
            (ms(500), ms(300)),
            (ms(500), ms(800)),
            (ms(3_000), ms(1_000)),
        ] {
            let mut run_times = vec![before; 20];
            run_times.extend(vec![after; 80]);
            let watched = watch_one_by_one(&run_times, ms(2));
            // A slower task is never seen later than a tenth of its run time after it ends.
            if after > before {
                for (looks, late) in &watched[20..] {
                    let allowed = task_poll_delay(after) + ms(4);
                    assert!(
                        *late <= allowed,
                        "{before:?} → {after:?}: {late:?} late, {looks} looks"
                    );
                }
            }
            // Within some fifty tasks of the new length each is seen within a step again.
            for (looks, late) in &watched[70..] {
                assert!(
                    *late <= look_step(after) + ms(4),
                    "{before:?} → {after:?}: {late:?} late, {looks} looks"
                );
            }
            let mean = mean_looks(&watched[70..]);
            assert!(mean <= 1.3, "{before:?} → {after:?}: {mean} looks a task");
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
