//! The executor: carries out a plan's changes against Proxmox, each as a short sequence of API
//! calls whose tasks are awaited, running independent changes concurrently under a bound and
//! never starting a change before the ones it depends on have succeeded. When its cancellation
//! token fires it starts nothing new, lets every running Proxmox task end, and reports what was
//! cancelled. It prints nothing: it reports events to a sink and returns a report.
//!
//! The rooms: `schedule` walks the changes as a DAG (generic over its work), `change` carries
//! out one change, `task` sends requests that start Proxmox tasks (under the storage gate),
//! `images`, `lifecycle`, `update` and `cloud_init` hold the steps, `poll` the one backoff loop.

mod change;
mod cloud_init;
mod data_disks;
mod health;
mod images;
mod lifecycle;
pub(crate) mod poll;
mod schedule;
mod storage_gate;
mod task;
mod update;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use backon::ExponentialBuilder;
use tokio_util::sync::CancellationToken;

use crate::graph::DesiredGraph;
use crate::ownership::ResourceKey;
use crate::plan::{Action, Change, Plan};
use crate::pve::PveClient;
use crate::state::{ActualState, ActualVm};
use change::{ChangeRun, ObservedVm};
use schedule::{NotRun, Parked, Walk};
pub use storage_gate::StorageGate;

/// How apply runs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Changes running at once.
    pub parallelism: usize,
    /// Longest wait for one Proxmox task.
    pub task_timeout: Duration,
    /// How long a running VM to be deleted may take to shut down before it is stopped.
    pub shutdown_timeout: Duration,
    /// Backoff for transient errors.
    pub backoff: ExponentialBuilder,
    /// Fires on an interruption (Ctrl-C): no change starts and no Proxmox call is sent after
    /// it; tasks already running are awaited.
    pub cancel: CancellationToken,
    /// Where cloud-init snippets are written (`delivery: snippets`); `None` when the run has
    /// no SSH access, which fails only the changes that need it.
    pub snippets: Option<Arc<crate::snippets::SnippetStore>>,
    /// Volumes that requests (creates, clones, downloads) allocate at once on one storage, a
    /// shared storage counting once for the cluster: pve-storage allocates under a storage lock
    /// and gives up waiting for it after 10 s (`can't lock file … got timeout`), so a burst of
    /// parallel clones is throttled per storage instead of failing (see `storage_gate`).
    pub storage_parallelism: usize,
    /// How long one volume's allocation is assumed to hold its storage's lock at most. A
    /// throttled request's slots are freed when its task ends, or after this long for every
    /// volume the storage may have queued (its slots; longer after a lock time-out), whichever
    /// comes first (a full clone's copy runs long after its allocations are done). 2 s by
    /// default: an LVM-thin or ZFS allocation takes about 1.5 s on a busy node (the
    /// simulator's nominal hold).
    pub allocation_window: Duration,
    /// The per-storage slots, shared by every change of a run.
    pub storage_gate: StorageGate,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 8,
            task_timeout: Duration::from_secs(30 * 60),
            shutdown_timeout: Duration::from_secs(60),
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(5)
                .with_jitter(),
            cancel: CancellationToken::new(),
            storage_parallelism: 4,
            allocation_window: Duration::from_secs(2),
            storage_gate: StorageGate::default(),
            snippets: None,
        }
    }
}

/// Something that happened while applying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A change started.
    Started {
        /// Resource.
        key: ResourceKey,
        /// Action.
        action: Action,
    },
    /// A step inside a change finished (a Proxmox task, a config write).
    Step {
        /// Resource.
        key: ResourceKey,
        /// What was done.
        what: String,
    },
    /// A change ended.
    Finished {
        /// Resource.
        key: ResourceKey,
        /// Action.
        action: Action,
        /// How it ended.
        result: StepResult,
    },
}

/// How a change ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    /// Done.
    Ok,
    /// Failed, with the reason (and the task log's tail when a task failed).
    Failed(String),
    /// Not attempted because a change it depends on failed.
    Skipped(String),
    /// Not started, or stopped between two Proxmox calls, because the run was interrupted;
    /// says what it stopped before.
    Cancelled(String),
}

/// The outcome of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Resource.
    pub key: ResourceKey,
    /// Action.
    pub action: Action,
    /// Result.
    pub result: StepResult,
    /// Wall time.
    pub duration: Duration,
    /// Proxmox task ids, in order.
    pub tasks: Vec<String>,
    /// The VM's address when known: its static cloud-init address, or the one its guest agent
    /// reported (`wait_for_ip`).
    pub ip: Option<String>,
    /// What did not go as hoped without failing the change (no address from the guest agent).
    pub warnings: Vec<String>,
}

/// What `apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// One outcome per change, in plan order.
    pub outcomes: Vec<Outcome>,
}

impl ApplyReport {
    /// Whether any change did not succeed: failed, skipped or cancelled.
    pub fn failed(&self) -> bool {
        self.outcomes.iter().any(|o| o.result != StepResult::Ok)
    }

    /// Whether the run was interrupted: some change was cancelled.
    pub fn interrupted(&self) -> bool {
        self.outcomes
            .iter()
            .any(|o| matches!(o.result, StepResult::Cancelled(_)))
    }
}

/// The outcome of a change that never started, reported (when `events` is given) as it is
/// decided.
fn outcome_of_unstarted_change(
    change: &Change,
    result: StepResult,
    events: Option<&EventSink>,
) -> Outcome {
    if let Some(events) = events {
        events(Event::Finished {
            key: change.key.clone(),
            action: change.action,
            result: result.clone(),
        });
    }
    Outcome {
        key: change.key.clone(),
        action: change.action,
        result,
        duration: Duration::ZERO,
        tasks: Vec::new(),
        ip: None,
        warnings: Vec::new(),
    }
}

/// A sink for events; called from several tasks at once.
pub type EventSink = Arc<dyn Fn(Event) + Send + Sync>;

/// Carry out `plan`.
///
/// # Guarantees
/// - A change starts only after every change in its `depends_on` succeeded; otherwise it is
///   reported as skipped and nothing is sent for it.
/// - At most `options.parallelism` changes run at once.
/// - Every asynchronous Proxmox call is awaited until its task ends; a task that ends in error
///   fails its change, with the task's log.
/// - Only resources named in the plan are touched; deletions only ever target VMs and volumes
///   the plan's observation found to carry this project's ownership marker.
/// - Once `options.cancel` fires, no change starts and no running change sends another
///   Proxmox call; a task already started is still awaited to its end, so nothing is left
///   half-sent. Changes that did not finish are reported as cancelled, and a later run
///   converges from wherever this one stopped.
///
/// # Assumptions
/// `plan` was computed by `diff` from `desired` and `actual`, and `actual` is recent: the
/// executor does not re-check ownership.
///
/// # Errors
/// None as a `Result`: every failure is an outcome in the report, so one failed clone does not
/// stop the others. Transient errors (connection, timeouts, lock contention) are retried with
/// exponential backoff first.
pub async fn apply(
    client: &PveClient,
    plan: &Plan,
    desired: &DesiredGraph,
    actual: &ActualState,
    options: &ApplyOptions,
    events: EventSink,
) -> ApplyReport {
    let index: BTreeMap<&ResourceKey, usize> = plan
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| (&c.key, i))
        .collect();
    // A dependency outside the plan is not waited for: it needs no change.
    let depends_on: Vec<Vec<usize>> = plan
        .changes
        .iter()
        .map(|change| {
            change
                .depends_on
                .iter()
                .filter_map(|k| index.get(k).copied())
                .collect()
        })
        .collect();
    // Where each of the project's resources is now, found once rather than by a scan of the
    // cluster per change.
    let owned_by_key: BTreeMap<&ResourceKey, &ActualVm> = actual
        .owned_vms(&plan.project)
        .filter_map(|vm| vm.marker.as_ref().map(|m| (&m.key, vm)))
        .collect();
    // Clones waiting for their address from the guest agent do no work: they do not count
    // against the bound.
    let parked = Arc::new(Parked::default());
    // The spec's vmids: a parking VM (`data_disks.rs`) takes none of them.
    let desired_vmids: Arc<std::collections::BTreeSet<u32>> = Arc::new(
        desired
            .in_order()
            .filter_map(|resource| match resource {
                crate::graph::Resource::Vm(vm) => Some(vm.vmid),
                crate::graph::Resource::Image(_) => None,
            })
            .collect(),
    );
    let walk = Walk {
        depends_on: &depends_on,
        parallelism: options.parallelism,
        cancel: &options.cancel,
        parked: &parked,
    };
    let start = |change_idx: usize| {
        let change = &plan.changes[change_idx];
        let run = ChangeRun {
            client: client.clone(),
            change: change.clone(),
            resource: crate::diff::resource_for_change(desired, change),
            observed: ObservedVm::of(change, &owned_by_key),
            options: options.clone(),
            events: events.clone(),
            parked: Arc::clone(&parked),
            parking: std::sync::Mutex::new(None),
            desired_vmids: Arc::clone(&desired_vmids),
        };
        run.run()
    };
    let not_run = |change_idx: usize, why: NotRun| {
        let change = &plan.changes[change_idx];
        match why {
            NotRun::DependencyFailed(failed) => {
                let because = format!("{} did not succeed", plan.changes[failed].key);
                outcome_of_unstarted_change(change, StepResult::Skipped(because), Some(&events))
            }
            NotRun::Cancelled => {
                let result = StepResult::Cancelled("not started: the run was interrupted".into());
                outcome_of_unstarted_change(change, result, Some(&events))
            }
            NotRun::Unordered => {
                let result = StepResult::Skipped("its dependencies could not be ordered".into());
                outcome_of_unstarted_change(change, result, None)
            }
            NotRun::Aborted => {
                let result = StepResult::Failed("the job ended abnormally".into());
                outcome_of_unstarted_change(change, result, None)
            }
        }
    };
    let outcomes = walk
        .run(start, |outcome| outcome.result == StepResult::Ok, not_run)
        .await;
    ApplyReport { outcomes }
}
