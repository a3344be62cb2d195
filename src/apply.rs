//! The executor: carries out a plan's changes against Proxmox, each as a short sequence of API
//! calls whose tasks are awaited, running independent changes concurrently under a bound and
//! never starting a change before the ones it depends on have succeeded. When its cancellation
//! token fires it starts nothing new, lets every running Proxmox task end, and reports what was
//! cancelled. It prints nothing: it reports events to a sink and returns a report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::graph::{DesiredGraph, DesiredImage, DesiredVm, Recipe, Resource};
use crate::ownership::{ResourceKey, ResourceKind};
use crate::plan::{Action, Change, Plan};
use crate::pve::propstr::{nic_mac, with_mac};
use crate::pve::{
    CloneRequest, DownloadRequest, PveClient, PveError, Upid, UploadRequest, VmConfig, VmStatus,
};
use crate::spec::ImageMode;
use crate::state::{ActualState, ActualVm};

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
    /// Requests that allocate volumes on one storage sent at once (creates, clones, downloads):
    /// pve-storage allocates under a storage-wide lock and gives up waiting for it after 10 s
    /// (`can't lock file … got timeout`), so a burst of parallel clones is throttled per
    /// storage instead of failing.
    pub storage_parallelism: usize,
    /// How long one volume's allocation is assumed to hold its storage's lock at most. A
    /// throttled request's slot is freed when its task ends, or after this long per volume
    /// for every slot of the storage, whichever comes first (a full clone's copy runs long
    /// after its allocations are done).
    pub allocation_window: Duration,
    /// The per-storage slots, shared by every change of a run.
    pub storage_gate: StorageGate,
}

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
            allocation_window: Duration::from_millis(500),
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

/// Why a change failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("{what}: {source}")]
    Pve { what: String, source: PveError },
    #[error("{0}")]
    Inconsistent(String),
    #[error("{what}: {source}")]
    Snippet {
        what: String,
        source: Box<crate::snippets::SnippetError>,
    },
    #[error("interrupted before {next}")]
    Cancelled { next: String },
    #[error(
        "VM {vmid} is protected (protection=1), so proxfleet leaves it as it is; to delete it, lift the protection with `qm set {vmid} --protection 0` on node {node} (or untick Options → Protection), then run the command again"
    )]
    Protected { vmid: u32, node: String },
}

/// A step whose error says it was done already (by an attempt whose answer was lost) succeeded.
fn already_done(result: Result<(), StepError>, sign: &str) -> Result<(), Box<StepError>> {
    match result {
        Err(err) if err.to_string().contains(sign) => Ok(()),
        other => other.map_err(Box::new),
    }
}

/// The error of a change that needs snippets when the run has no way to write them.
fn no_snippet_store() -> StepError {
    StepError::Snippet {
        what: "cloud-init snippets".into(),
        source: Box::new(crate::snippets::SnippetError::NoStore),
    }
}

/// The outcome of a change that never ran (skipped or cancelled), reported as it is decided.
fn never_ran(change: &Change, result: StepResult, events: &EventSink) -> Outcome {
    events(Event::Finished {
        key: change.key.clone(),
        action: change.action,
        result: result.clone(),
    });
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
    let n_changes = plan.changes.len();
    let index: BTreeMap<&ResourceKey, usize> = plan
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| (&c.key, i))
        .collect();
    // Where each of the project's resources is now, found once rather than by a scan of the
    // cluster per change.
    let owned_by_key: BTreeMap<&ResourceKey, &ActualVm> = actual
        .owned_vms(&plan.project)
        .filter_map(|vm| vm.marker.as_ref().map(|m| (&m.key, vm)))
        .collect();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; n_changes];
    let mut started = vec![false; n_changes];
    let mut running: JoinSet<(usize, Outcome)> = JoinSet::new();
    let parallelism = options.parallelism.max(1);
    // Clones waiting for their address from the guest agent do no work: they do not count
    // against the bound, and the loop hears when one starts waiting.
    let waiting = Arc::new(AddressWaits::default());

    loop {
        if options.cancel.is_cancelled() {
            // Interrupted: whatever has not started never will.
            for change_idx in 0..n_changes {
                if started[change_idx] {
                    continue;
                }
                started[change_idx] = true;
                let change = &plan.changes[change_idx];
                let result = StepResult::Cancelled("not started: the run was interrupted".into());
                outcomes[change_idx] = Some(never_ran(change, result, &events));
            }
        }
        // Start every change whose dependencies are settled, up to the bound.
        for change_idx in 0..n_changes {
            if started[change_idx] || running.len().saturating_sub(waiting.count()) >= parallelism {
                continue;
            }
            let change = &plan.changes[change_idx];
            let deps: Vec<usize> = change
                .depends_on
                .iter()
                .filter_map(|k| index.get(k).copied())
                .collect();
            if deps.iter().any(|&d| outcomes[d].is_none()) {
                continue;
            }
            started[change_idx] = true;
            if let Some(failed) = deps.iter().find(|&&d| {
                outcomes[d]
                    .as_ref()
                    .is_some_and(|o| o.result != StepResult::Ok)
            }) {
                let because = format!("{} did not succeed", plan.changes[*failed].key);
                let result = StepResult::Skipped(because);
                outcomes[change_idx] = Some(never_ran(change, result, &events));
                continue;
            }
            let job = Job {
                client: client.clone(),
                change: change.clone(),
                resource: desired.get(&change.key).cloned(),
                current: current_of(change, &owned_by_key),
                options: options.clone(),
                events: events.clone(),
                waiting: Arc::clone(&waiting),
            };
            running.spawn(async move { (change_idx, job.run().await) });
        }
        if running.is_empty() {
            if started.iter().all(|s| *s) {
                break;
            }
            // Nothing runs and something has not started: its dependencies can never settle
            // (a dependency outside the plan). Mark it skipped rather than wait forever.
            for change_idx in 0..n_changes {
                if !started[change_idx] {
                    started[change_idx] = true;
                    let change = &plan.changes[change_idx];
                    outcomes[change_idx] = Some(Outcome {
                        key: change.key.clone(),
                        action: change.action,
                        result: StepResult::Skipped("its dependencies could not be ordered".into()),
                        duration: Duration::ZERO,
                        tasks: Vec::new(),
                        ip: None,
                        warnings: Vec::new(),
                    });
                }
            }
            break;
        }
        let joined = tokio::select! {
            joined = running.join_next() => joined,
            // A slot was freed by a clone that now only waits for its address.
            () = waiting.started.notified() => continue,
        };
        match joined {
            Some(Ok((change_idx, outcome))) => outcomes[change_idx] = Some(outcome),
            Some(Err(join_error)) => {
                // A panicking job is a bug; keep the others going and report it.
                tracing::error!(%join_error, "an apply job ended abnormally");
            }
            None => {}
        }
    }

    ApplyReport {
        outcomes: outcomes
            .into_iter()
            .zip(&plan.changes)
            .map(|(o, change)| {
                o.unwrap_or_else(|| Outcome {
                    key: change.key.clone(),
                    action: change.action,
                    result: StepResult::Failed("the job ended abnormally".into()),
                    duration: Duration::ZERO,
                    tasks: Vec::new(),
                    ip: None,
                    warnings: Vec::new(),
                })
            })
            .collect(),
    }
}

/// The jobs that wait for a clone's address (and so hold no parallelism slot).
#[derive(Default)]
struct AddressWaits {
    n_waiting: std::sync::atomic::AtomicUsize,
    started: tokio::sync::Notify,
}

impl AddressWaits {
    fn count(&self) -> usize {
        self.n_waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wait for the address of `vmid` as one of them.
    async fn wait(
        &self,
        client: &PveClient,
        node: &str,
        vmid: u32,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<std::net::IpAddr, String> {
        self.n_waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.started.notify_one();
        let address = crate::address::wait_for_address(client, node, vmid, timeout, cancel).await;
        self.n_waiting
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        address
    }
}

/// Where the resource a change updates, deletes or replaces currently is, and its configuration
/// as observed.
#[derive(Debug, Clone)]
struct Current {
    vmid: u32,
    node: String,
    /// The configuration's digest when the plan was made: an update carries it, so Proxmox
    /// refuses the write if the VM was edited since (the plan is stale) rather than overwrite.
    digest: String,
    /// The configuration then (for the MACs an update keeps).
    config: BTreeMap<String, String>,
}

fn current_of(
    change: &Change,
    owned_by_key: &BTreeMap<&ResourceKey, &ActualVm>,
) -> Option<Current> {
    if change.key.kind == ResourceKind::Image {
        return None;
    }
    owned_by_key.get(&change.key).map(|vm| Current {
        vmid: vm.vmid,
        node: vm.node.clone(),
        digest: vm.digest.clone(),
        config: vm.config.clone(),
    })
}

struct Job {
    client: PveClient,
    change: Change,
    resource: Option<Resource>,
    current: Option<Current>,
    options: ApplyOptions,
    events: EventSink,
    waiting: Arc<AddressWaits>,
}

impl Job {
    async fn run(self) -> Outcome {
        let started_at = Instant::now();
        (self.events)(Event::Started {
            key: self.change.key.clone(),
            action: self.change.action,
        });
        let mut tasks = Vec::new();
        let result = match self.execute(&mut tasks).await {
            Ok(()) => StepResult::Ok,
            Err(err @ StepError::Cancelled { .. }) => StepResult::Cancelled(err.to_string()),
            Err(err) => StepResult::Failed(err.to_string()),
        };
        let mut ip = match &self.resource {
            Some(Resource::Vm(vm)) if matches!(vm.recipe, Recipe::Clone(_)) => vm.static_address(),
            _ => None,
        };
        let mut warnings = Vec::new();
        if result == StepResult::Ok
            && ip.is_none()
            && let Some((vm, timeout)) = self.address_wait()
        {
            let node = self
                .current
                .as_ref()
                .map_or(vm.node.as_str(), |c| c.node.as_str());
            let learned = self
                .waiting
                .wait(&self.client, node, vm.vmid, timeout, &self.options.cancel)
                .await;
            match learned {
                Ok(address) => {
                    self.step(format!("read address {address} from the guest agent"));
                    ip = Some(address.to_string());
                }
                Err(why) => {
                    tracing::debug!(key = %self.change.key, "{why}");
                    warnings.push(why);
                }
            }
        }
        (self.events)(Event::Finished {
            key: self.change.key.clone(),
            action: self.change.action,
            result: result.clone(),
        });
        Outcome {
            key: self.change.key.clone(),
            action: self.change.action,
            result,
            duration: started_at.elapsed(),
            tasks,
            ip,
            warnings,
        }
    }

    /// The clone whose address to wait for, and for how long: one with `wait_for_ip` that this
    /// change started (made and started, or started, or rebooted), without a static address.
    fn address_wait(&self) -> Option<(&DesiredVm, Duration)> {
        let Some(Resource::Vm(vm)) = &self.resource else {
            return None;
        };
        let timeout = vm.wait_for_ip?;
        let started = match self.change.action {
            Action::Create | Action::Replace => vm.running,
            Action::Update => self.change.fields.iter().any(|f| {
                (f.name == "status" && f.new.as_deref() == Some("running")) || f.name == "reboot"
            }),
            Action::Delete => false,
        };
        (matches!(vm.recipe, Recipe::Clone(_)) && started && vm.static_address().is_none())
            .then_some((vm, timeout))
    }

    /// The error that stops a change before `next` when the run was interrupted.
    fn cancelled_before(&self, next: &str) -> Option<StepError> {
        self.options
            .cancel
            .is_cancelled()
            .then(|| StepError::Cancelled {
                next: next.to_string(),
            })
    }

    fn step(&self, what: impl Into<String>) {
        (self.events)(Event::Step {
            key: self.change.key.clone(),
            what: what.into(),
        });
    }

    async fn execute(&self, tasks: &mut Vec<String>) -> Result<(), StepError> {
        let action = self.change.action;
        if matches!(action, Action::Delete | Action::Replace) {
            match self.change.key.kind {
                ResourceKind::Image => {
                    // The plan names every file to remove (the current one or earlier copies).
                    let storage_of =
                        |volid: &str| volid.split(':').next().unwrap_or_default().to_string();
                    for volid in self
                        .change
                        .fields
                        .iter()
                        .filter(|f| f.name == "volume")
                        .filter_map(|f| f.old.clone())
                    {
                        self.delete_image(&self.change.node, &storage_of(&volid), &volid, tasks)
                            .await?;
                    }
                }
                _ => {
                    if let Some(current) = &self.current {
                        self.delete_vm(current, tasks).await?;
                    }
                }
            }
        }
        if action == Action::Delete {
            return Ok(());
        }
        match &self.resource {
            Some(Resource::Image(image)) => self.create_image(image, tasks).await,
            Some(Resource::Vm(vm)) => match (&vm.recipe, action) {
                // In place on a template: its pool, or an adoption's marker and tags.
                (Recipe::Build(_), Action::Update) => self.update_vm(vm, tasks).await,
                (Recipe::Build(_), _) => self.build_template(vm, tasks).await,
                (Recipe::Clone(_), Action::Update) => self.update_vm(vm, tasks).await,
                (Recipe::Clone(_), _) => self.create_clone(vm, tasks).await,
            },
            None => Err(StepError::Inconsistent(format!(
                "{} is not in the spec; nothing to create",
                self.change.key
            ))),
        }
    }

    /// Send a request that starts a task and wait for the task, retrying both on transient
    /// errors (whether the HTTP answer or the task's exit status carried them).
    async fn task<F, Fut>(
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
    async fn task_allocating<F, Fut>(
        &self,
        what: &str,
        tasks: &mut Vec<String>,
        allocation: Option<(&str, usize)>,
        request: F,
    ) -> Result<(), StepError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<Upid>, PveError>>,
    {
        if let Some(cancelled) = self.cancelled_before(what) {
            return Err(cancelled);
        }
        let timeout = self.options.task_timeout;
        let attempt = || async {
            // Proxmox allocates under a storage-wide lock, one allocation after another, and
            // waits 10 s for it: with at most `storage_parallelism` requests in flight per
            // storage, each slot held until its task ends (or for as long as the slots'
            // allocations take at most, for a long copy), no request waits that long.
            let guard = match allocation {
                Some((storage, _)) => Some(
                    self.options
                        .storage_gate
                        .enter(storage, self.options.storage_parallelism)
                        .await,
                ),
                None => None,
            };
            let upid = request().await?;
            if let (Some(guard), Some((_, volumes))) = (&guard, allocation) {
                let slots = self.options.storage_parallelism.max(1) as u32;
                guard.release_after(self.options.allocation_window * volumes.max(1) as u32 * slots);
            }
            if let Some(upid) = &upid {
                if self.change.key.kind == ResourceKind::Image && what.starts_with("download") {
                    // A download reports its progress in its log: pass it on while waiting.
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
                        waited = self.client.wait_task(upid, timeout) => { waited?; }
                        () = watch => {}
                    }
                } else {
                    self.client.wait_task(upid, timeout).await?;
                }
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

    async fn create_image(
        &self,
        image: &DesiredImage,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        if image.image.mode == ImageMode::Upload {
            if let Some(cancelled) = self.cancelled_before(&format!("fetch {}", image.url)) {
                return Err(cancelled);
            }
            let compression = image.image.compression;
            // Progress at each quarter (or each 256 MiB when the size is not announced).
            let reported = std::sync::atomic::AtomicU64::new(0);
            let progress = |received: u64, total: Option<u64>| {
                let (mark, text) = match total {
                    Some(total) if total > 0 => {
                        let quarter = received * 4 / total;
                        let mib = total as f64 / f64::from(1 << 20);
                        (quarter, format!("{}% of {mib:.1} MiB", quarter * 25))
                    }
                    _ => (received >> 28, format!("{} MiB", received >> 20)),
                };
                let before = reported.fetch_max(mark, std::sync::atomic::Ordering::Relaxed);
                if mark > before {
                    self.step(format!("fetching {}: {text}", image.url));
                }
            };
            let fetched = crate::fetch::fetch_image(
                &image.url,
                &image.checksum_algorithm,
                &image.checksum_hex,
                compression,
                &image.image.file_name,
                &progress,
            )
            .await
            .map_err(|err| StepError::Inconsistent(err.to_string()))?;
            self.step(format!(
                "fetch {} and verify its {} checksum{}",
                image.url,
                image.checksum_algorithm,
                compression.map_or(String::new(), |c| format!(
                    ", decompress it ({})",
                    c.as_str()
                ))
            ));
            let request = UploadRequest {
                file: fetched.file.path().to_path_buf(),
                filename: image.file_name.clone(),
                content: "import".into(),
                checksum: Some(fetched.checksum.clone()),
            };
            let storage = format!("{}@{}", image.storage, image.node);
            return self
                .task_allocating(
                    &format!("upload {}", image.volid),
                    tasks,
                    Some((&storage, 1)),
                    || async {
                        self.client
                            .upload(&image.node, &image.storage, &request)
                            .await
                            .map(Some)
                    },
                )
                .await;
        }
        let request = DownloadRequest {
            url: image.url.clone(),
            filename: image.file_name.clone(),
            content: "import".into(),
            checksum: Some((image.checksum_algorithm.clone(), image.checksum_hex.clone())),
            verify_certificates: None,
        };
        let storage = format!("{}@{}", image.storage, image.node);
        self.task_allocating(
            &format!("download {}", image.volid),
            tasks,
            Some((&storage, 1)),
            || async {
                self.client
                    .download_url(&image.node, &image.storage, &request)
                    .await
                    .map(Some)
            },
        )
        .await?;
        Ok(())
    }

    async fn delete_image(
        &self,
        node: &str,
        storage: &str,
        volid: &str,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        self.task(&format!("delete {volid}"), tasks, || {
            self.client.delete_volume(node, storage, volid)
        })
        .await
    }

    async fn build_template(
        &self,
        vm: &DesiredVm,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let Recipe::Build(build) = &vm.recipe else {
            return Err(StepError::Inconsistent(format!(
                "{} has no build recipe",
                vm.key
            )));
        };
        let mut params = build.create_params.clone();
        if let Some(pool) = &vm.pool {
            self.ensure_pool(pool).await?;
            params.push(("pool".into(), pool.clone()));
        }
        params.extend(
            vm.secrets
                .iter()
                .map(|(option, secret)| (option.clone(), secret.expose().to_string())),
        );
        // The disks the create allocates, on the boot disk's storage (the others are mostly
        // there too: EFI and TPM state, the cloud-init drive).
        let disks = params
            .iter()
            .filter(|(option, value)| crate::diff::is_disk_option(option) && value.contains(':'))
            .count();
        let boot_storage = params
            .iter()
            .find(|(option, _)| *option == build.resize.0)
            .and_then(|(_, value)| value.split(':').next())
            .map(|storage| format!("{storage}@{}", vm.node))
            .unwrap_or_else(|| vm.node.clone());
        let created = self
            .task_allocating(
                &format!("create VM {} from {}", vm.vmid, build.image),
                tasks,
                Some((&boot_storage, disks)),
                || async {
                    self.client
                        .create_vm(&vm.node, vm.vmid, &params)
                        .await
                        .map(Some)
                },
            )
            .await;
        self.unless_made_earlier(created, vm).await?;
        let (disk, size) = &build.resize;
        self.task(&format!("resize {disk} to {size}"), tasks, || {
            self.client.resize_disk(&vm.node, vm.vmid, disk, size, None)
        })
        .await?;
        let converted = self
            .task("convert to template", tasks, || async {
                self.client
                    .convert_to_template(&vm.node, vm.vmid)
                    .await
                    .map(Some)
            })
            .await;
        // An earlier attempt whose answer was lost may have converted it already.
        already_done(converted, "you can't convert a template to a template").map_err(|e| *e)
    }

    async fn create_clone(&self, vm: &DesiredVm, tasks: &mut Vec<String>) -> Result<(), StepError> {
        let Recipe::Clone(recipe) = &vm.recipe else {
            return Err(StepError::Inconsistent(format!(
                "{} has no clone recipe",
                vm.key
            )));
        };
        let request = CloneRequest {
            newid: vm.vmid,
            name: Some(vm.name.clone()),
            full: Some(recipe.full),
            // From node-local storage the clone is made beside the template, then migrated.
            target: (vm.node != recipe.template_node && recipe.migrate_to.is_none())
                .then(|| vm.node.clone()),
            storage: recipe.storage.clone(),
            description: vm.settings.get("description").cloned(),
            pool: vm.pool.clone(),
        };
        if let Some(pool) = &vm.pool {
            self.ensure_pool(pool).await?;
        }
        // The files `cicustom` names are in place before it does (and a node that cannot be
        // reached over SSH stops the change before anything is made).
        self.write_snippets(vm, &vm.node).await?;
        let allocated_on = if recipe.migrate_to.is_some() {
            &recipe.template_node
        } else {
            &vm.node
        };
        let target_storage = format!(
            "{}@{}",
            recipe
                .storage
                .as_deref()
                .unwrap_or(&recipe.template_storage),
            allocated_on
        );
        let cloned = self
            .task_allocating(
                &format!(
                    "clone {} (vmid {}) to {}",
                    recipe.template, recipe.template_vmid, vm.vmid
                ),
                tasks,
                Some((&target_storage, recipe.volumes)),
                || async {
                    self.client
                        .clone_vm(&recipe.template_node, recipe.template_vmid, &request)
                        .await
                        .map(Some)
                },
            )
            .await;
        self.unless_made_earlier(cloned, vm).await?;
        if let Some(target) = &recipe.migrate_to {
            self.task_allocating(
                &format!("migrate VM {} to {target}", vm.vmid),
                tasks,
                Some((
                    &format!("{}@{target}", recipe.template_storage),
                    recipe.volumes,
                )),
                || async {
                    self.client
                        .migrate_vm(&recipe.template_node, vm.vmid, target)
                        .await
                        .map(Some)
                },
            )
            .await?;
        }
        let mut set: Vec<(String, String)> = vm
            .settings
            .iter()
            .filter(|(option, _)| !matches!(option.as_str(), "name" | "description"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        set.extend(
            vm.secrets
                .iter()
                .map(|(option, secret)| (option.clone(), secret.expose().to_string())),
        );
        if !set.is_empty() {
            self.task("configure", tasks, || {
                self.client
                    .update_vm_config(&vm.node, vm.vmid, &set, &[], None)
            })
            .await?;
        }
        if let Some((slot, size)) = &vm.disk_grow {
            let size = size.to_proxmox();
            self.task(&format!("resize {slot} to {size}"), tasks, || {
                self.client
                    .resize_disk(&vm.node, vm.vmid, slot, &size, None)
            })
            .await?;
        }
        self.attach_seed(vm, &vm.node, None, tasks).await?;
        if vm.running {
            let started = self
                .task("start", tasks, || async {
                    self.client.start_vm(&vm.node, vm.vmid).await.map(Some)
                })
                .await;
            already_done(started, "already running").map_err(|e| *e)?;
        }
        Ok(())
    }

    /// A create or clone that failed because the vmid is taken succeeded after all when the VM
    /// there carries this resource's marker: an earlier attempt (of this run, whose answer was
    /// lost, or of an interrupted run) made it. Anything else in the way stays an error.
    async fn unless_made_earlier(
        &self,
        result: Result<(), StepError>,
        vm: &DesiredVm,
    ) -> Result<(), StepError> {
        let Err(err) = result else {
            return Ok(());
        };
        if !err.to_string().contains("already exists") {
            return Err(err);
        }
        let described = vm
            .settings
            .get("description")
            .cloned()
            .or_else(|| match &vm.recipe {
                Recipe::Build(build) => build
                    .create_params
                    .iter()
                    .find(|(k, _)| k == "description")
                    .map(|(_, v)| v.clone()),
                Recipe::Clone(_) => None,
            });
        let wanted = described
            .as_deref()
            .and_then(crate::ownership::Marker::find);
        // While the earlier attempt's task runs, the VM holds only its lock; wait for it.
        let mut found = None;
        let mut delay = Duration::from_millis(50);
        for _ in 0..40 {
            let Ok(config) = self.client.vm_config(&vm.node, vm.vmid).await else {
                break;
            };
            let busy = config
                .values
                .get("lock")
                .is_some_and(|l| l == "create" || l == "clone");
            if !busy {
                found = config
                    .values
                    .get("description")
                    .and_then(|d| crate::ownership::Marker::find(d));
                break;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        if wanted.is_some() && found == wanted {
            self.step(format!(
                "VM {} was already made by an earlier attempt; carrying on",
                vm.vmid
            ));
            Ok(())
        } else {
            Err(err)
        }
    }

    async fn update_vm(&self, vm: &DesiredVm, tasks: &mut Vec<String>) -> Result<(), StepError> {
        let set: Vec<(String, String)> = self
            .change
            .fields
            .iter()
            .filter(|f| f.name != "status" && !f.name.ends_with(" size"))
            .filter(|f| !(f.name == "ide2" && vm.seed.as_ref().is_some_and(|s| !s.is_snippets())))
            .filter(|f| !matches!(f.name.as_str(), "pool" | "reboot" | "adopt" | "snippet"))
            .filter_map(|f| f.new.clone().map(|new| (f.name.clone(), new)))
            .collect();
        // Options to remove: `cicustom` of an earlier `delivery: snippets`.
        let delete: Vec<String> = self
            .change
            .fields
            .iter()
            .filter(|f| f.name == "cicustom" && f.new.is_none())
            .map(|f| f.name.clone())
            .collect();
        let node = self
            .current
            .as_ref()
            .map(|c| c.node.clone())
            .unwrap_or_else(|| vm.node.clone());
        let cicustom = self.change.fields.iter().find(|f| f.name == "cicustom");
        let missing = self.change.fields.iter().any(|f| f.name == "snippet");
        if missing || cicustom.is_some_and(|f| f.new.is_some()) {
            self.write_snippets(vm, &node).await?;
        }
        if !set.is_empty() || !delete.is_empty() {
            // Keep each interface's MAC, which the spec leaves to Proxmox, and carry the digest
            // observed when the plan was made, so an edit since then is not overwritten. Both
            // come from the observation when it had the digest (nothing is read twice in a
            // run).
            let mut config = match &self.current {
                Some(current) if !current.digest.is_empty() => crate::pve::VmConfig {
                    digest: current.digest.clone(),
                    values: current.config.clone(),
                },
                _ => self.read_config(&node, vm.vmid).await?,
            };
            let mut retried = false;
            loop {
                let mut values = set.clone();
                for (option, value) in values.iter_mut() {
                    if option.starts_with("net")
                        && let Some(mac) = config
                            .values
                            .get(option.as_str())
                            .and_then(|current| nic_mac(current))
                    {
                        *value = with_mac(value, &mac);
                    }
                }
                let digest = config.digest.clone();
                let configured = self
                    .task("configure", tasks, || {
                        self.client.update_vm_config(
                            &node,
                            vm.vmid,
                            &values,
                            &delete,
                            Some(&digest),
                        )
                    })
                    .await;
                match configured {
                    // The config changed since it was read. When every option this change
                    // sets still has its planned old value or already its new one (an
                    // interrupted run's write landing late), the plan still holds: write
                    // again over the new digest. Anything else is someone else's edit.
                    Err(StepError::Pve { source, .. })
                        if source.is_digest_mismatch() && !retried =>
                    {
                        let now = self.read_config(&node, vm.vmid).await?;
                        if !self.moved_only_toward_plan(&now.values) {
                            return Err(StepError::Pve {
                                what: "configure".into(),
                                source,
                            });
                        }
                        config = now;
                        retried = true;
                    }
                    other => {
                        other?;
                        break;
                    }
                }
            }
        }
        if let Some((slot, size)) = &vm.disk_grow
            && self
                .change
                .fields
                .iter()
                .any(|f| f.name == format!("{slot} size"))
        {
            let size = size.to_proxmox();
            self.task(&format!("resize {slot} to {size}"), tasks, || {
                self.client.resize_disk(&node, vm.vmid, slot, &size, None)
            })
            .await?;
        }
        if let Some(pool) = &vm.pool
            && self.change.fields.iter().any(|f| f.name == "pool")
        {
            self.ensure_pool(pool).await?;
            self.client
                .set_pool(pool, vm.vmid)
                .await
                .map_err(|source| StepError::Pve {
                    what: format!("move to pool {pool}"),
                    source,
                })?;
            self.step(format!("move to pool {pool}"));
        }
        if let Some(field) = self.change.fields.iter().find(|f| f.name == "ide2")
            && let Some(plan) = &vm.seed
        {
            if plan.is_snippets() {
                // Proxmox's drive is back in place of an earlier seed ISO: the ISO goes.
                if let Some(old) = field.old.as_deref().and_then(|v| v.split(',').next())
                    && crate::seed::is_seed_volid(old)
                {
                    self.remove_seed(&node, old, tasks).await?;
                }
            } else {
                self.attach_seed(vm, &node, field.old.as_deref(), tasks)
                    .await?;
            }
        }
        if let Some(old) = cicustom.and_then(|f| f.old.as_deref()) {
            let keep = cicustom
                .and_then(|f| f.new.as_deref())
                .map(crate::seed::cicustom_volids)
                .unwrap_or_default();
            self.remove_snippets(&node, old, &keep).await?;
        }
        if self.change.fields.iter().any(|f| f.name == "reboot") {
            // `--allow-reboot`: what waits for the next boot takes effect now. A clean shutdown
            // first; stopped if the guest does not comply within the shutdown time-out.
            self.shut_down(&node, vm.vmid, tasks).await?;
            self.task("start after reboot", tasks, || async {
                self.client.start_vm(&node, vm.vmid).await.map(Some)
            })
            .await?;
        }
        let wants_start = self
            .change
            .fields
            .iter()
            .any(|f| f.name == "status" && f.new.as_deref() == Some("running"));
        if wants_start {
            let started = self
                .task("start", tasks, || async {
                    self.client.start_vm(&node, vm.vmid).await.map(Some)
                })
                .await;
            // An earlier run's start may land between observing and starting.
            already_done(started, "already running").map_err(|e| *e)?;
        }
        Ok(())
    }

    async fn read_config(&self, node: &str, vmid: u32) -> Result<VmConfig, StepError> {
        self.client
            .vm_config(node, vmid)
            .await
            .map_err(|source| StepError::Pve {
                what: "read config".into(),
                source,
            })
    }

    /// Whether every option this update sets has, in `config`, the value the plan saw or
    /// the value it wants.
    fn moved_only_toward_plan(&self, config: &BTreeMap<String, String>) -> bool {
        self.change
            .fields
            .iter()
            .filter(|f| f.name != "status" && f.name != "snippet" && !f.name.ends_with(" size"))
            .all(|f| {
                let now = config.get(&f.name).map(String::as_str);
                let as_planned = now == f.old.as_deref();
                let as_wanted = f
                    .new
                    .as_deref()
                    .is_some_and(|new| crate::diff::same_value(&f.name, now, new));
                as_planned || as_wanted
            })
    }

    async fn delete_vm(&self, current: &Current, tasks: &mut Vec<String>) -> Result<(), StepError> {
        let (node, vmid) = (current.node.as_str(), current.vmid);
        // Protection is the owner's explicit "do not delete": never lifted, and the VM is
        // left as it is (not even shut down).
        let config = self.read_config(node, vmid).await?;
        if config.values.get("protection").is_some_and(|p| p == "1") {
            return Err(StepError::Protected {
                vmid,
                node: node.to_string(),
            });
        }
        if self.read_status(node, vmid).await?.running {
            self.shut_down(node, vmid, tasks).await?;
        }
        let seed = config
            .values
            .get("ide2")
            .and_then(|ide2| ide2.split(',').next())
            .filter(|volid| crate::seed::is_seed_volid(volid))
            .map(str::to_string);
        self.task(&format!("destroy VM {vmid}"), tasks, || async {
            self.client.delete_vm(node, vmid, true).await.map(Some)
        })
        .await?;
        // The VM's own seed ISO and snippets go with it (both carry the host name: no other VM
        // uses them).
        if let Some(volid) = seed {
            self.remove_seed(node, &volid, tasks).await?;
        }
        if let Some(cicustom) = config.values.get("cicustom") {
            self.remove_snippets(node, cicustom, &[]).await?;
        }
        Ok(())
    }

    async fn read_status(&self, node: &str, vmid: u32) -> Result<VmStatus, StepError> {
        self.client
            .vm_status(node, vmid)
            .await
            .map_err(|source| StepError::Pve {
                what: "read status".into(),
                source,
            })
    }

    /// Ask the guest to shut down, waiting up to `options.shutdown_timeout`; if it is still
    /// running then (no guest agent or ACPI, a hung guest), stop it. The shutdown is asked
    /// once: its time-out is an answer, not a transient error worth retrying.
    async fn shut_down(
        &self,
        node: &str,
        vmid: u32,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        if let Some(cancelled) = self.cancelled_before("shut down") {
            return Err(cancelled);
        }
        let seconds = u32::try_from(self.options.shutdown_timeout.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        let shutdown = async {
            let upid = self
                .client
                .shutdown_vm(node, vmid, Some(seconds), false)
                .await?;
            tasks.push(upid.to_string());
            // Proxmox ends the task itself when the time-out passes; a little slack for that.
            let wait = self.options.shutdown_timeout + Duration::from_secs(30);
            self.client.wait_task(&upid, wait).await
        }
        .await;
        match shutdown {
            Ok(_) => self.step(format!("shut down (within {seconds}s)")),
            Err(err) => {
                tracing::warn!(key = %self.change.key, %err, "shutdown did not finish; stopping");
                self.step(format!(
                    "shut down did not finish within {seconds}s ({err})"
                ));
            }
        }
        if self.read_status(node, vmid).await?.running {
            self.task("stop", tasks, || async {
                self.client.stop_vm(node, vmid).await.map(Some)
            })
            .await?;
        }
        Ok(())
    }

    /// Build the clone's cloud-init seed ISO against its MAC as it is now, upload it unless the
    /// storage holds it already (its name is its content), attach it as `ide2` in place of
    /// Proxmox's cloud-init drive, and delete the seed it replaces (`previous`, a seed of this
    /// VM's alone: seeds carry the host name).
    async fn attach_seed(
        &self,
        vm: &DesiredVm,
        node: &str,
        previous: Option<&str>,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let Some(plan) = vm.seed.as_deref().filter(|plan| !plan.is_snippets()) else {
            return Ok(()); // snippets keep Proxmox's drive
        };
        let pve = |what: &str| {
            let what = what.to_string();
            move |source| StepError::Pve { what, source }
        };
        let config = self
            .client
            .vm_config(node, vm.vmid)
            .await
            .map_err(pve("read config"))?;
        let iso = plan
            .build(&config.values)
            .map_err(|err| StepError::Inconsistent(format!("cloud-init seed: {err}")))?;
        let volid = plan.volid(&iso);
        let present = self
            .client
            .storage_content(node, &plan.storage, Some("iso"))
            .await
            .map_err(pve("list seed ISOs"))?
            .iter()
            .any(|v| v.volid == volid);
        if !present {
            let file = tempfile::NamedTempFile::new()
                .and_then(|mut file| {
                    std::io::Write::write_all(&mut file, &iso.bytes)?;
                    Ok(file)
                })
                .map_err(|err| StepError::Inconsistent(format!("cloud-init seed: {err}")))?;
            let request = UploadRequest {
                file: file.path().to_path_buf(),
                filename: iso.file_name.clone(),
                content: "iso".into(),
                checksum: Some((
                    "sha256".into(),
                    hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&iso.bytes)),
                )),
            };
            self.task(
                &format!("upload cloud-init seed {volid}"),
                tasks,
                || async {
                    self.client
                        .upload(node, &plan.storage, &request)
                        .await
                        .map(Some)
                },
            )
            .await?;
        }
        let value = format!("{volid},media=cdrom");
        let attached = config
            .values
            .get("ide2")
            .is_some_and(|current| current.split(',').next() == Some(volid.as_str()));
        if !attached {
            let set = vec![("ide2".to_string(), value)];
            self.task("attach cloud-init seed as ide2", tasks, || {
                self.client
                    .update_vm_config(node, vm.vmid, &set, &[], Some(&config.digest))
            })
            .await?;
        }
        if let Some(old) = previous.and_then(|v| v.split(',').next())
            && old != volid
            && crate::seed::is_seed_volid(old)
        {
            self.remove_seed(node, old, tasks).await?;
        }
        Ok(())
    }

    /// The snippet store; its absence is `no_snippet_store`.
    fn snippet_store(&self) -> Option<&crate::snippets::SnippetStore> {
        self.options.snippets.as_deref()
    }

    /// Write the clone's snippets (`delivery: snippets`) to its node, each unless a file with
    /// its name (its content) is there already.
    async fn write_snippets(&self, vm: &DesiredVm, node: &str) -> Result<(), StepError> {
        let Some(plan) = vm.seed.as_deref().filter(|plan| plan.is_snippets()) else {
            return Ok(());
        };
        let snippets = plan
            .snippets()
            .map_err(|err| StepError::Inconsistent(format!("cloud-init snippets: {err}")))?;
        let store = self.snippet_store().ok_or_else(no_snippet_store)?;
        for snippet in &snippets {
            let volid = plan.snippet_volid(snippet);
            let what = format!("write snippet {volid} on {node}");
            if let Some(cancelled) = self.cancelled_before(&what) {
                return Err(cancelled);
            }
            let written = store
                .put(
                    &self.client,
                    node,
                    &plan.storage,
                    &snippet.file_name,
                    snippet.content.as_bytes(),
                )
                .await
                .map_err(|source| StepError::Snippet {
                    what: what.clone(),
                    source: Box::new(source),
                })?;
            if written {
                self.step(what);
            }
        }
        Ok(())
    }

    /// Remove the snippets proxfleet wrote that `cicustom` names, except those in `keep`. A
    /// snippet's name carries its clone's name, so no other VM references it.
    async fn remove_snippets(
        &self,
        node: &str,
        cicustom: &str,
        keep: &[String],
    ) -> Result<(), StepError> {
        for volid in crate::seed::cicustom_volids(cicustom) {
            let Some((storage, name)) = crate::seed::proxfleet_snippet(&volid) else {
                continue;
            };
            if keep.contains(&volid) {
                continue;
            }
            let what = format!("delete snippet {volid} on {node}");
            let removed = self
                .snippet_store()
                .ok_or_else(no_snippet_store)?
                .remove(&self.client, node, storage, name)
                .await
                .map_err(|source| StepError::Snippet {
                    what: what.clone(),
                    source: Box::new(source),
                })?;
            if removed {
                self.step(what);
            }
        }
        Ok(())
    }

    /// Create the pool when it does not exist yet.
    async fn ensure_pool(&self, pool: &str) -> Result<(), StepError> {
        let created = self
            .client
            .ensure_pool(pool)
            .await
            .map_err(|source| StepError::Pve {
                what: format!("create pool {pool}"),
                source,
            })?;
        if created {
            self.step(format!("create pool {pool}"));
        }
        Ok(())
    }

    /// Delete a seed ISO proxfleet made.
    async fn remove_seed(
        &self,
        node: &str,
        volid: &str,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let Some((storage, _)) = volid.split_once(':') else {
            return Ok(());
        };
        self.task(&format!("delete cloud-init seed {volid}"), tasks, || {
            self.client.delete_volume(node, storage, volid)
        })
        .await
    }
}
