//! A VM's life: a template built (created from its image, its boot disk grown, converted), a
//! clone made (cloned, migrated when its storage is node-local, configured, its disk grown, its
//! seed attached, started), and a VM deleted (refused when protected, shut down, then stopped if
//! it does not comply, destroyed with its seed and snippets). A create or clone whose vmid is
//! taken by the VM an earlier attempt made carries on.

use std::ops::ControlFlow;
use std::time::Duration;

use backon::ExponentialBuilder;

use super::change::{ChangeRun, ObservedVm, StepError};
use super::poll::{PollLimits, Polled, poll_until};
use super::storage_gate::Allocation;
use crate::graph::{DesiredVm, Recipe};
use crate::pve::{CloneRequest, PveError};

impl ChangeRun {
    pub(super) async fn build_template(
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
            .filter(|(option, value)| {
                crate::qemu_config::is_disk_option(option) && value.contains(':')
            })
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
                Some(Allocation {
                    storage: &boot_storage,
                    volumes: disks,
                    progress_in_log: false,
                }),
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
        match converted {
            Err(err) if err.proxmox_says(PveError::is_already_template) => Ok(()),
            other => other,
        }
    }

    pub(super) async fn create_clone(
        &self,
        vm: &DesiredVm,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
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
                Some(Allocation {
                    storage: &target_storage,
                    volumes: recipe.volumes,
                    progress_in_log: false,
                }),
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
                Some(Allocation {
                    storage: &format!("{}@{target}", recipe.template_storage),
                    volumes: recipe.volumes,
                    progress_in_log: false,
                }),
                || async {
                    self.client
                        .migrate_vm(&recipe.template_node, vm.vmid, target)
                        .await
                        .map(Some)
                },
            )
            .await?;
        }
        self.configure_clone(vm, tasks).await?;
        self.converge_data_disks(vm, &vm.node, true, tasks).await?;
        self.attach_seed(vm, &vm.node, None, tasks).await?;
        if vm.running {
            let started = self
                .task("start", tasks, || async {
                    self.client.start_vm(&vm.node, vm.vmid).await.map(Some)
                })
                .await;
            match started {
                Err(err) if err.proxmox_says(PveError::is_already_running) => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Set the clone's options (all but what the clone request set) and grow its disk.
    async fn configure_clone(
        &self,
        vm: &DesiredVm,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
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
        if !err.proxmox_says(PveError::is_already_exists) {
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
        let found = self.marker_once_unlocked(vm).await;
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

    pub(super) async fn delete_vm(
        &self,
        observed: &ObservedVm,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let (node, vmid) = (observed.node.as_str(), observed.vmid);
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

    /// The ownership marker of the VM at `vm`'s vmid once it holds no create or clone lock:
    /// while an earlier attempt's task runs, the VM is only its lock. `None` when it cannot be
    /// read, carries no marker, or stays locked through every look.
    async fn marker_once_unlocked(&self, vm: &DesiredVm) -> Option<crate::ownership::Marker> {
        // 40 looks, 50 ms apart at first, doubling to 5 s.
        let looks = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(50))
            .with_max_delay(Duration::from_secs(5))
            .with_factor(2.0)
            .with_max_times(39);
        let polled: Polled<_, ()> = poll_until(looks, PollLimits::default(), || async {
            let Ok(config) = self.client.vm_config(&vm.node, vm.vmid).await else {
                return ControlFlow::Break(None);
            };
            let busy = config
                .values
                .get("lock")
                .is_some_and(|l| l == "create" || l == "clone");
            if busy {
                return ControlFlow::Continue(None);
            }
            ControlFlow::Break(
                config
                    .values
                    .get("description")
                    .and_then(|d| crate::ownership::Marker::find(d)),
            )
        })
        .await;
        match polled {
            Polled::Done(found) => found,
            Polled::GaveUp { .. } | Polled::Cancelled => None,
        }
    }

    /// Ask the guest to shut down, waiting up to `options.shutdown_timeout`; if it is still
    /// running then (no guest agent or ACPI, a hung guest), stop it. The shutdown is asked
    /// once: its time-out is an answer, not a transient error worth retrying.
    pub(super) async fn shut_down(
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
}
