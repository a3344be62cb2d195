//! The DAG walk, generic over the work it schedules: a unit starts once every unit it depends
//! on has succeeded, at most `parallelism` units work at once (a unit that only waits, parked,
//! holds no slot), the dependants of a unit that did not succeed never start, and once the
//! cancellation token fires nothing new starts while what runs is awaited. It knows nothing of
//! Proxmox or plans: the executor hands it indices, dependencies and a way to run one unit.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why a unit never ran; the caller turns it into the unit's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotRun {
    /// The unit at this index, one it depends on, did not succeed.
    DependencyFailed(usize),
    /// The cancellation token fired before the unit could start.
    Cancelled,
    /// Its dependencies can never settle (a cycle, or an index outside the walk).
    Unordered,
    /// It started but its task ended abnormally (a panic): a bug, reported rather than lost.
    Aborted,
}

/// Units that have stepped aside to wait (for a clone's address) and so hold no slot; the
/// walk hears when one parks, to start another unit in its place.
#[derive(Debug, Default)]
pub(crate) struct Parked {
    n_parked: AtomicUsize,
    parked: Notify,
}

impl Parked {
    /// Await `wait` as a parked unit: it counts against no slot while it waits.
    pub(crate) async fn park<F: Future>(&self, wait: F) -> F::Output {
        self.n_parked.fetch_add(1, Ordering::SeqCst);
        self.parked.notify_one();
        let output = wait.await;
        self.n_parked.fetch_sub(1, Ordering::SeqCst);
        output
    }

    fn count(&self) -> usize {
        self.n_parked.load(Ordering::SeqCst)
    }
}

/// The units to walk and how.
pub(crate) struct Walk<'a> {
    /// For each unit, the indices of the units it depends on.
    pub(crate) depends_on: &'a [Vec<usize>],
    /// Units working at once (at least one).
    pub(crate) parallelism: usize,
    /// Once fired, no unit starts.
    pub(crate) cancel: &'a CancellationToken,
    /// Units that wait without working; shared with the units that park.
    pub(crate) parked: &'a Arc<Parked>,
}

impl Walk<'_> {
    /// Run every unit through `start` (which returns the unit's work), in dependency order
    /// under the bound, and return one output per unit, by index. `succeeded` says whether a
    /// unit's dependants may start; `not_run` makes the output of a unit that never ran, at the
    /// moment that is decided (so it may report it).
    pub(crate) async fn run<O, Start, Work>(
        &self,
        mut start: Start,
        succeeded: impl Fn(&O) -> bool,
        mut not_run: impl FnMut(usize, NotRun) -> O,
    ) -> Vec<O>
    where
        Start: FnMut(usize) -> Work,
        Work: Future<Output = O> + Send + 'static,
        O: Send + 'static,
    {
        let n_units = self.depends_on.len();
        let mut outputs: Vec<Option<O>> = (0..n_units).map(|_| None).collect();
        let mut started = vec![false; n_units];
        let mut running: JoinSet<(usize, O)> = JoinSet::new();
        let parallelism = self.parallelism.max(1);
        loop {
            if self.cancel.is_cancelled() {
                for unit_idx in 0..n_units {
                    if !started[unit_idx] {
                        started[unit_idx] = true;
                        outputs[unit_idx] = Some(not_run(unit_idx, NotRun::Cancelled));
                    }
                }
            }
            for unit_idx in 0..n_units {
                if started[unit_idx]
                    || running.len().saturating_sub(self.parked.count()) >= parallelism
                {
                    continue;
                }
                let deps = &self.depends_on[unit_idx];
                let settled = deps
                    .iter()
                    .all(|&dep| outputs.get(dep).is_some_and(Option::is_some));
                if !settled {
                    continue;
                }
                started[unit_idx] = true;
                let failed = deps
                    .iter()
                    .copied()
                    .find(|&dep| outputs[dep].as_ref().is_some_and(|o| !succeeded(o)));
                if let Some(failed) = failed {
                    outputs[unit_idx] = Some(not_run(unit_idx, NotRun::DependencyFailed(failed)));
                    continue;
                }
                let work = start(unit_idx);
                running.spawn(async move { (unit_idx, work.await) });
            }
            if running.is_empty() {
                // Nothing runs, so whatever has not started waits for something that never
                // settles: it is reported rather than waited for forever.
                for unit_idx in 0..n_units {
                    if !started[unit_idx] {
                        started[unit_idx] = true;
                        outputs[unit_idx] = Some(not_run(unit_idx, NotRun::Unordered));
                    }
                }
                break;
            }
            let joined = tokio::select! {
                joined = running.join_next() => joined,
                // A slot was freed by a unit that now only waits.
                () = self.parked.parked.notified() => continue,
            };
            match joined {
                Some(Ok((unit_idx, output))) => outputs[unit_idx] = Some(output),
                Some(Err(join_error)) => {
                    tracing::error!(%join_error, "an apply change ended abnormally");
                }
                None => {}
            }
        }
        outputs
            .into_iter()
            .enumerate()
            .map(|(unit_idx, output)| output.unwrap_or_else(|| not_run(unit_idx, NotRun::Aborted)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;

    /// What a unit did in a test walk.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ran {
        Ok,
        Failed,
        NotRun(NotRun),
    }

    /// A test walk: unit `i` sleeps `millis[i]` ms of paused time, fails when `fails[i]`, and
    /// records its start and end in `log`.
    struct Trial {
        depends_on: Vec<Vec<usize>>,
        millis: Vec<u64>,
        fails: Vec<bool>,
        parallelism: usize,
    }

    struct Record {
        results: Vec<Ran>,
        log: Vec<String>,
        max_working: usize,
    }

    impl Trial {
        fn new(depends_on: Vec<Vec<usize>>) -> Trial {
            let n_units = depends_on.len();
            Trial {
                depends_on,
                millis: vec![10; n_units],
                fails: vec![false; n_units],
                parallelism: 8,
            }
        }

        async fn run(&self, cancel: &CancellationToken, parked: &Arc<Parked>) -> Record {
            let log = Arc::new(Mutex::new(Vec::new()));
            let working = Arc::new(AtomicUsize::new(0));
            let max_working = Arc::new(AtomicUsize::new(0));
            let walk = Walk {
                depends_on: &self.depends_on,
                parallelism: self.parallelism,
                cancel,
                parked,
            };
            let results = walk
                .run(
                    |unit_idx| {
                        let (log, working, max_working) = (
                            Arc::clone(&log),
                            Arc::clone(&working),
                            Arc::clone(&max_working),
                        );
                        let millis = self.millis[unit_idx];
                        let fails = self.fails[unit_idx];
                        async move {
                            log.lock().unwrap().push(format!("start {unit_idx}"));
                            let now = working.fetch_add(1, Ordering::SeqCst) + 1;
                            max_working.fetch_max(now, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(millis)).await;
                            working.fetch_sub(1, Ordering::SeqCst);
                            log.lock().unwrap().push(format!("end {unit_idx}"));
                            if fails { Ran::Failed } else { Ran::Ok }
                        }
                    },
                    |ran| *ran == Ran::Ok,
                    |_, why| Ran::NotRun(why),
                )
                .await;
            let log = log.lock().unwrap().clone();
            Record {
                results,
                log,
                max_working: max_working.load(Ordering::SeqCst),
            }
        }
    }

    fn position(log: &[String], entry: &str) -> usize {
        log.iter()
            .position(|e| e == entry)
            .unwrap_or_else(|| panic!("{entry} not in {log:?}"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_unit_starts_only_after_its_dependencies_end() {
        // 0 → 1 → 3, 0 → 2 → 3, listed out of order on purpose.
        let trial = Trial::new(vec![vec![], vec![0], vec![0], vec![2, 1]]);
        let record = trial.run(&CancellationToken::new(), &Arc::default()).await;
        assert_eq!(record.results, vec![Ran::Ok; 4]);
        let log = &record.log;
        assert!(position(log, "end 0") < position(log, "start 1"), "{log:?}");
        assert!(position(log, "end 0") < position(log, "start 2"), "{log:?}");
        assert!(position(log, "end 1") < position(log, "start 3"), "{log:?}");
        assert!(position(log, "end 2") < position(log, "start 3"), "{log:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_units_work_at_once_than_the_bound() {
        let mut trial = Trial::new(vec![vec![]; 7]);
        trial.parallelism = 3;
        let record = trial.run(&CancellationToken::new(), &Arc::default()).await;
        assert_eq!(record.results, vec![Ran::Ok; 7]);
        assert_eq!(record.max_working, 3);
        // A bound of zero still runs one at a time rather than none.
        trial.parallelism = 0;
        let record = trial.run(&CancellationToken::new(), &Arc::default()).await;
        assert_eq!(record.results, vec![Ran::Ok; 7]);
        assert_eq!(record.max_working, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn dependants_of_a_failed_unit_never_start_and_the_others_go_on() {
        // 0 fails; 1 depends on it, 2 on 1; 3 is independent.
        let mut trial = Trial::new(vec![vec![], vec![0], vec![1], vec![]]);
        trial.fails[0] = true;
        let record = trial.run(&CancellationToken::new(), &Arc::default()).await;
        assert_eq!(
            record.results,
            vec![
                Ran::Failed,
                Ran::NotRun(NotRun::DependencyFailed(0)),
                Ran::NotRun(NotRun::DependencyFailed(1)),
                Ran::Ok,
            ]
        );
        assert!(!record.log.iter().any(|e| e == "start 1" || e == "start 2"));
    }

    #[tokio::test(start_paused = true)]
    async fn after_cancellation_nothing_starts_and_running_units_finish() {
        let mut trial = Trial::new(vec![vec![], vec![], vec![0], vec![1]]);
        trial.parallelism = 1;
        trial.millis[0] = 100;
        let cancel = CancellationToken::new();
        let fire = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            fire.cancel();
        });
        let record = trial.run(&cancel, &Arc::default()).await;
        assert_eq!(
            record.results,
            vec![
                Ran::Ok,
                Ran::NotRun(NotRun::Cancelled),
                Ran::NotRun(NotRun::Cancelled),
                Ran::NotRun(NotRun::Cancelled),
            ]
        );
        assert_eq!(record.log, vec!["start 0", "end 0"]);
    }

    #[tokio::test(start_paused = true)]
    async fn units_whose_dependencies_never_settle_are_reported_unordered() {
        // 1 and 2 wait for each other; 3 names a unit that is not in the walk.
        let trial = Trial::new(vec![vec![], vec![2], vec![1], vec![9]]);
        let record = trial.run(&CancellationToken::new(), &Arc::default()).await;
        assert_eq!(
            record.results,
            vec![
                Ran::Ok,
                Ran::NotRun(NotRun::Unordered),
                Ran::NotRun(NotRun::Unordered),
                Ran::NotRun(NotRun::Unordered),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_unit_frees_its_slot() {
        let parked = Arc::new(Parked::default());
        let depends_on = vec![vec![]; 3];
        let log = Arc::new(Mutex::new(Vec::new()));
        let walk = Walk {
            depends_on: &depends_on,
            parallelism: 1,
            cancel: &CancellationToken::new(),
            parked: &parked,
        };
        let results = walk
            .run(
                |unit_idx| {
                    let (log, parked) = (Arc::clone(&log), Arc::clone(&parked));
                    async move {
                        log.lock().unwrap().push(format!("start {unit_idx}"));
                        if unit_idx == 0 {
                            // Done working; waits a long time without holding the slot.
                            parked
                                .park(tokio::time::sleep(Duration::from_secs(60)))
                                .await;
                        } else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        log.lock().unwrap().push(format!("end {unit_idx}"));
                        Ran::Ok
                    }
                },
                |ran| *ran == Ran::Ok,
                |_, why| Ran::NotRun(why),
            )
            .await;
        assert_eq!(results, vec![Ran::Ok; 3]);
        let log = log.lock().unwrap().clone();
        // 1 and 2 ran, one at a time, while 0 waited.
        assert_eq!(
            log,
            vec!["start 0", "start 1", "end 1", "start 2", "end 2", "end 0"]
        );
    }
}
