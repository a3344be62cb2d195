//! One change of a plan carried out: `ChangeRun` holds what the change needs (the client, the
//! change, its desired resource, the VM as observed), picks the steps its action and recipe call
//! for, reports each step, and turns the result into an `Outcome` (after waiting, parked, for a
//! started clone's address). The steps themselves live beside it: `images`, `lifecycle`,
//! `update`, `cloud_init`, and the task runner in `task`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::schedule::Parked;
use super::{ApplyOptions, Event, EventSink, Outcome, StepResult};
use crate::graph::{DesiredVm, Recipe, Resource};
use crate::ownership::{ResourceKey, ResourceKind};
use crate::plan::{Action, Change, Operation};
use crate::pve::{PveClient, PveError, VmConfig, VmStatus};
use crate::state::ActualVm;

/// Why a change failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum StepError {
    #[error("{what}: {source}")]
    Pve { what: String, source: PveError },
    #[error("{0}")]
    Inconsistent(String),
    #[error("{0}")]
    Unhealthy(String),
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

impl StepError {
    /// Whether Proxmox refused the step with an answer `done_already` (one of `PveError`'s
    /// `is_already_*` predicates) recognises as the step having been done: by an attempt whose
    /// answer was lost, or by an earlier run. Such a step succeeded.
    pub(super) fn proxmox_says(&self, done_already: impl Fn(&PveError) -> bool) -> bool {
        matches!(self, StepError::Pve { source, .. } if done_already(source))
    }
}

/// Where the VM a change updates, deletes or replaces is, and its configuration, as the plan's
/// observation found it.
#[derive(Debug, Clone)]
pub(super) struct ObservedVm {
    pub(super) vmid: u32,
    pub(super) node: String,
    /// The configuration's digest when the plan was made: an update carries it, so Proxmox
    /// refuses the write if the VM was edited since (the plan is stale) rather than overwrite.
    pub(super) digest: String,
    /// The configuration then (for the MACs an update keeps).
    pub(super) config: BTreeMap<String, String>,
}

impl ObservedVm {
    /// The observed VM `change` acts on, if any (images have none).
    pub(super) fn of(
        change: &Change,
        owned_by_key: &BTreeMap<&ResourceKey, &ActualVm>,
    ) -> Option<ObservedVm> {
        if change.key.kind == ResourceKind::Image {
            return None;
        }
        owned_by_key.get(&change.key).map(|vm| ObservedVm {
            vmid: vm.vmid,
            node: vm.node.clone(),
            digest: vm.digest.clone(),
            config: vm.config.clone(),
        })
    }
}

/// One change being carried out, with everything it needs; owned by its task.
pub(super) struct ChangeRun {
    pub(super) client: PveClient,
    pub(super) change: Change,
    pub(super) resource: Option<Resource>,
    pub(super) observed: Option<ObservedVm>,
    pub(super) options: ApplyOptions,
    pub(super) events: EventSink,
    /// The walk's parked units: a clone waiting for its address joins them.
    pub(super) parked: Arc<Parked>,
    /// The parking VM this change made for the kept data disks of a replaced clone (see
    /// `data_disks.rs`).
    pub(super) parking: std::sync::Mutex<Option<crate::plan::ParkingVm>>,
    /// The spec's vmids, which a parking VM never takes.
    pub(super) desired_vmids: Arc<std::collections::BTreeSet<u32>>,
}

impl ChangeRun {
    /// Carry out the change, reporting its start, steps and end, and return its outcome (with
    /// the address of a clone it started, when it waits for one).
    pub(super) async fn run(self) -> Outcome {
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
                .observed
                .as_ref()
                .map_or(vm.node.as_str(), |observed| observed.node.as_str());
            let learned = self
                .parked
                .park(crate::address::wait_for_address(
                    &self.client,
                    node,
                    vm.vmid,
                    timeout,
                    &self.options.cancel,
                ))
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
            Action::Update => self.change.operations.iter().any(Operation::starts_the_vm),
            Action::Delete => false,
        };
        (matches!(vm.recipe, Recipe::Clone(_)) && started && vm.static_address().is_none())
            .then_some((vm, timeout))
    }

    /// The error that stops a change before `next` when the run was interrupted.
    pub(super) fn cancelled_before(&self, next: &str) -> Option<StepError> {
        self.options
            .cancel
            .is_cancelled()
            .then(|| StepError::Cancelled {
                next: next.to_string(),
            })
    }

    pub(super) fn step(&self, what: impl Into<String>) {
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
                    let volids = self.change.operations.iter().filter_map(|op| match op {
                        Operation::DeleteVolume { volid } => Some(volid),
                        _ => None,
                    });
                    for volid in volids {
                        self.delete_image(&self.change.node, &storage_of(volid), volid, tasks)
                            .await?;
                    }
                }
                _ => {
                    if let Some(observed) = &self.observed {
                        if action == Action::Replace {
                            self.park_kept_disks(observed, tasks).await?;
                        }
                        self.delete_vm(observed, tasks).await?;
                    }
                }
            }
        }
        if action == Action::Delete {
            // Parking VMs of a deleted clone go with it.
            return self
                .delete_parking_vms(&std::collections::BTreeMap::new(), tasks)
                .await;
        }
        match &self.resource {
            Some(Resource::Image(image)) => self.create_image(image, tasks).await,
            Some(Resource::Vm(vm)) => match (&vm.recipe, action) {
                // In place on a template: its pool, or an adoption's marker and tags.
                (Recipe::Build(_), Action::Update) => self.update_vm(vm, tasks).await,
                (Recipe::Build(_), _) => self.build_template(vm, tasks).await,
                (Recipe::Clone(_), Action::Update) => self.update_vm(vm, tasks).await,
                (Recipe::Clone(_), _) => {
                    self.create_clone(vm, tasks).await?;
                    self.check_health(vm).await
                }
            },
            None => Err(StepError::Inconsistent(format!(
                "{} is not in the spec; nothing to create",
                self.change.key
            ))),
        }
    }

    /// The VM's configuration as it is now.
    pub(super) async fn read_config(&self, node: &str, vmid: u32) -> Result<VmConfig, StepError> {
        self.client
            .vm_config(node, vmid)
            .await
            .map_err(|source| StepError::Pve {
                what: "read config".into(),
                source,
            })
    }

    /// Whether the VM runs now.
    pub(super) async fn read_status(&self, node: &str, vmid: u32) -> Result<VmStatus, StepError> {
        self.client
            .vm_status(node, vmid)
            .await
            .map_err(|source| StepError::Pve {
                what: "read status".into(),
                source,
            })
    }

    /// Create the pool when it does not exist yet.
    pub(super) async fn ensure_pool(&self, pool: &str) -> Result<(), StepError> {
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
}
