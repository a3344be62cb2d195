//! The executor: carries out a plan's changes against Proxmox, each as a short sequence of API
//! calls whose tasks are awaited, running independent changes concurrently under a bound and
//! never starting a change before the ones it depends on have succeeded. It prints nothing: it
//! reports events to a sink and returns a report.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use tokio::task::JoinSet;

use crate::graph::{DesiredGraph, DesiredImage, DesiredVm, Recipe, Resource};
use crate::ownership::{ResourceKey, ResourceKind};
use crate::plan::{Action, Change, Plan};
use crate::pve::propstr::{nic_mac, with_mac};
use crate::pve::{CloneRequest, DownloadRequest, PveClient, PveError, Upid, UploadRequest};
use crate::spec::ImageMode;
use crate::state::{ActualState, ActualVm};

/// How apply runs.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Changes running at once.
    pub parallelism: usize,
    /// Longest wait for one Proxmox task.
    pub task_timeout: Duration,
    /// Backoff for transient errors.
    pub backoff: ExponentialBuilder,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: 8,
            task_timeout: Duration::from_secs(30 * 60),
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(10))
                .with_max_times(5)
                .with_jitter(),
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
    /// The VM's address when known (static cloud-init IPv4).
    pub ip: Option<String>,
}

/// What `apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// One outcome per change, in plan order.
    pub outcomes: Vec<Outcome>,
}

impl ApplyReport {
    /// Whether any change failed or was skipped.
    pub fn failed(&self) -> bool {
        self.outcomes.iter().any(|o| o.result != StepResult::Ok)
    }
}

/// Why a change failed.
#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("{what}: {source}")]
    Pve { what: String, source: PveError },
    #[error("{0}")]
    Inconsistent(String),
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

    loop {
        // Start every change whose dependencies are settled, up to the bound.
        for change_idx in 0..n_changes {
            if started[change_idx] || running.len() >= parallelism {
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
                events(Event::Finished {
                    key: change.key.clone(),
                    action: change.action,
                    result: result.clone(),
                });
                outcomes[change_idx] = Some(Outcome {
                    key: change.key.clone(),
                    action: change.action,
                    result,
                    duration: Duration::ZERO,
                    tasks: Vec::new(),
                    ip: None,
                });
                continue;
            }
            let job = Job {
                client: client.clone(),
                change: change.clone(),
                resource: desired.get(&change.key).cloned(),
                current: current_of(change, &owned_by_key),
                options: options.clone(),
                events: events.clone(),
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
                    });
                }
            }
            break;
        }
        match running.join_next().await {
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
                })
            })
            .collect(),
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
            Err(err) => StepResult::Failed(err.to_string()),
        };
        (self.events)(Event::Finished {
            key: self.change.key.clone(),
            action: self.change.action,
            result: result.clone(),
        });
        let ip = match &self.resource {
            Some(Resource::Vm(vm)) => vm
                .settings
                .get("ipconfig0")
                .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("ip=")))
                .filter(|ip| *ip != "dhcp")
                .map(|ip| ip.split('/').next().unwrap_or(ip).to_string()),
            _ => None,
        };
        Outcome {
            key: self.change.key.clone(),
            action: self.change.action,
            result,
            duration: started_at.elapsed(),
            tasks,
            ip,
        }
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
        let timeout = self.options.task_timeout;
        let attempt = || async {
            let upid = request().await?;
            if let Some(upid) = &upid {
                self.client.wait_task(upid, timeout).await?;
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
            let file = crate::fetch::fetch_verified(
                &image.url,
                &image.checksum_algorithm,
                &image.checksum_hex,
            )
            .await
            .map_err(|err| StepError::Inconsistent(err.to_string()))?;
            self.step(format!(
                "fetch {} and verify its {} checksum",
                image.url, image.checksum_algorithm
            ));
            let request = UploadRequest {
                file: file.path().to_path_buf(),
                filename: image.file_name.clone(),
                content: "import".into(),
                checksum: Some((image.checksum_algorithm.clone(), image.checksum_hex.clone())),
            };
            return self
                .task(&format!("upload {}", image.volid), tasks, || async {
                    self.client
                        .upload(&image.node, &image.storage, &request)
                        .await
                        .map(Some)
                })
                .await;
        }
        let request = DownloadRequest {
            url: image.url.clone(),
            filename: image.file_name.clone(),
            content: "import".into(),
            checksum: Some((image.checksum_algorithm.clone(), image.checksum_hex.clone())),
            verify_certificates: None,
        };
        self.task(&format!("download {}", image.volid), tasks, || async {
            self.client
                .download_url(&image.node, &image.storage, &request)
                .await
                .map(Some)
        })
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
        params.extend(
            vm.secrets
                .iter()
                .map(|(option, secret)| (option.clone(), secret.expose().to_string())),
        );
        self.task(
            &format!("create VM {} from {}", vm.vmid, build.image),
            tasks,
            || async {
                self.client
                    .create_vm(&vm.node, vm.vmid, &params)
                    .await
                    .map(Some)
            },
        )
        .await?;
        let (disk, size) = &build.resize;
        self.task(&format!("resize {disk} to {size}"), tasks, || {
            self.client.resize_disk(&vm.node, vm.vmid, disk, size, None)
        })
        .await?;
        self.task("convert to template", tasks, || async {
            self.client
                .convert_to_template(&vm.node, vm.vmid)
                .await
                .map(Some)
        })
        .await
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
            target: (vm.node != recipe.template_node).then(|| vm.node.clone()),
            storage: recipe.storage.clone(),
            description: vm.settings.get("description").cloned(),
            pool: None,
        };
        self.task(
            &format!(
                "clone {} (vmid {}) to {}",
                recipe.template, recipe.template_vmid, vm.vmid
            ),
            tasks,
            || async {
                self.client
                    .clone_vm(&recipe.template_node, recipe.template_vmid, &request)
                    .await
                    .map(Some)
            },
        )
        .await?;
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
        if vm.running {
            self.task("start", tasks, || async {
                self.client.start_vm(&vm.node, vm.vmid).await.map(Some)
            })
            .await?;
        }
        Ok(())
    }

    async fn update_vm(&self, vm: &DesiredVm, tasks: &mut Vec<String>) -> Result<(), StepError> {
        let mut set: Vec<(String, String)> = self
            .change
            .fields
            .iter()
            .filter(|f| f.name != "status" && !f.name.ends_with(" size"))
            .filter_map(|f| f.new.clone().map(|new| (f.name.clone(), new)))
            .collect();
        let node = self
            .current
            .as_ref()
            .map(|c| c.node.clone())
            .unwrap_or_else(|| vm.node.clone());
        if !set.is_empty() {
            // Keep each interface's MAC, which the spec leaves to Proxmox; carry the digest
            // observed when the plan was made, so an edit since then is refused, not
            // overwritten. Both come from the observation: nothing is read twice in one run.
            let (digest, observed) = match &self.current {
                Some(current) => (Some(current.digest.as_str()), Some(&current.config)),
                None => (None, None),
            };
            for (option, value) in set.iter_mut() {
                if option.starts_with("net")
                    && let Some(mac) = observed
                        .and_then(|config| config.get(option.as_str()))
                        .and_then(|current| nic_mac(current))
                {
                    *value = with_mac(value, &mac);
                }
            }
            let digest = digest.filter(|d| !d.is_empty());
            self.task("configure", tasks, || {
                self.client
                    .update_vm_config(&node, vm.vmid, &set, &[], digest)
            })
            .await?;
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
        let wants_start = self
            .change
            .fields
            .iter()
            .any(|f| f.name == "status" && f.new.as_deref() == Some("running"));
        if wants_start {
            self.task("start", tasks, || async {
                self.client.start_vm(&node, vm.vmid).await.map(Some)
            })
            .await?;
        }
        Ok(())
    }

    async fn delete_vm(&self, current: &Current, tasks: &mut Vec<String>) -> Result<(), StepError> {
        let status = self
            .client
            .vm_status(&current.node, current.vmid)
            .await
            .map_err(|source| StepError::Pve {
                what: "read status".into(),
                source,
            })?;
        if status.running {
            self.task("shut down", tasks, || async {
                self.client
                    .shutdown_vm(&current.node, current.vmid, Some(60), true)
                    .await
                    .map(Some)
            })
            .await?;
        }
        self.task(&format!("destroy VM {}", current.vmid), tasks, || async {
            self.client
                .delete_vm(&current.node, current.vmid, true)
                .await
                .map(Some)
        })
        .await
    }
}
