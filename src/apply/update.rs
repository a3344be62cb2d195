//! An update in place, as steps in a fixed order: the snippets `cicustom` will name written
//! first; the options set and deleted in one config write that keeps each interface's MAC and
//! carries the digest observed for the plan (written again once when the config moved only
//! toward the plan); the disk grown; the pool changed; the seed swapped; snippets no longer
//! named removed; a reboot (`--allow-reboot`); a start. Which steps run is read from the plan's
//! typed operations, once (`UpdateSteps`).

use std::collections::BTreeMap;

use super::change::{ChangeRun, StepError};
use crate::graph::DesiredVm;
use crate::plan::{ConfigWrite, Operation, PowerState};
use crate::pve::{PveError, VmConfig};
use crate::qemu_config::propstr::{nic_mac, with_mac};
use crate::qemu_config::{CICUSTOM, same_value};

/// What an update's operations ask of the executor, gathered in one pass over them.
#[derive(Debug, Default)]
struct UpdateSteps<'a> {
    /// Options set or removed in the one config write.
    writes: Vec<ConfigWrite<'a>>,
    /// Snippets to write first: a missing one, or a new `cicustom`.
    write_snippets: bool,
    /// `cicustom`'s change, whose old files are removed once nothing names them.
    cicustom: Option<ConfigWrite<'a>>,
    /// The disks to grow (the boot disk, data disks), and to what size.
    grow: Vec<(&'a str, &'a str)>,
    /// The pool to move to.
    pool: Option<&'a str>,
    /// A seed ISO to attach in place of the observed `ide2` (`Some(None)`: none observed).
    attach_seed: Option<Option<&'a str>>,
    /// A seed ISO that Proxmox's cloud-init drive replaces, to delete.
    replaced_seed: Option<&'a str>,
    /// Reboot after configuring.
    reboot: bool,
    /// Start after everything else.
    start: bool,
}

impl<'a> UpdateSteps<'a> {
    fn of(operations: &'a [Operation]) -> UpdateSteps<'a> {
        let mut steps = UpdateSteps::default();
        for operation in operations {
            if let Some(write) = operation.config_write() {
                if write.name == CICUSTOM {
                    steps.write_snippets |= write.new.is_some();
                    steps.cicustom = Some(write);
                }
                steps.writes.push(write);
            }
            match operation {
                Operation::WriteSnippet { .. } => steps.write_snippets = true,
                Operation::GrowDisk { slot, new, .. } => steps.grow.push((slot, new)),
                Operation::Pool { new, .. } => steps.pool = Some(new),
                Operation::AttachSeed { old, .. } => steps.attach_seed = Some(old.as_deref()),
                Operation::RestoreCloudInitDrive { old, .. } => steps.replaced_seed = Some(old),
                Operation::Reboot { .. } => steps.reboot = true,
                Operation::Power {
                    new: PowerState::Running,
                    ..
                } => steps.start = true,
                // Written above, or not part of an update (made when a VM is created,
                // adopted by writing the options it lists, deleted with the VM).
                Operation::SetOption { .. }
                | Operation::DeleteOption { .. }
                | Operation::SetSecret { .. }
                | Operation::Power { .. }
                | Operation::Adopt { .. }
                | Operation::Vmid { .. }
                | Operation::FetchImage { .. }
                | Operation::DeleteVolume { .. }
                | Operation::CloneFrom { .. }
                | Operation::Migrate { .. }
                | Operation::ConvertToTemplate
                | Operation::CheckHealth { .. } => {}
                // Carried out by `data_disks.rs`.
                Operation::AddDisk { .. }
                | Operation::ReleaseDisk { .. }
                | Operation::ParkDisk { .. }
                | Operation::ReattachDisk { .. }
                | Operation::DeleteParking { .. } => {}
            }
        }
        steps
    }
}

impl ChangeRun {
    pub(super) async fn update_vm(
        &self,
        vm: &DesiredVm,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let node = self
            .observed
            .as_ref()
            .map(|observed| observed.node.clone())
            .unwrap_or_else(|| vm.node.clone());
        let steps = UpdateSteps::of(&self.change.operations);
        if steps.write_snippets {
            self.write_snippets(vm, &node).await?;
        }
        self.configure(vm, &node, &steps.writes, tasks).await?;
        self.converge_data_disks(vm, &node, false, tasks).await?;
        for (slot, size) in steps.grow {
            self.task(&format!("resize {slot} to {size}"), tasks, || {
                self.client.resize_disk(&node, vm.vmid, slot, size, None)
            })
            .await?;
        }
        if let Some(pool) = steps.pool {
            self.move_to_pool(pool, vm.vmid).await?;
        }
        if let Some(previous) = steps.attach_seed {
            self.attach_seed(vm, &node, previous, tasks).await?;
        }
        // Proxmox's drive is back in place of an earlier seed ISO: the ISO goes.
        if let Some(old) = steps.replaced_seed.and_then(|v| v.split(',').next())
            && crate::seed::is_seed_volid(old)
        {
            self.remove_seed(&node, old, tasks).await?;
        }
        if let Some(ConfigWrite {
            old: Some(old),
            new,
            ..
        }) = steps.cicustom
        {
            let keep = new.map(crate::seed::cicustom_volids).unwrap_or_default();
            self.remove_snippets(&node, old, &keep).await?;
        }
        if steps.reboot {
            // `--allow-reboot`: what waits for the next boot takes effect now. A clean shutdown
            // first; stopped if the guest does not comply within the shutdown time-out.
            self.shut_down(&node, vm.vmid, tasks).await?;
            self.task("start after reboot", tasks, || async {
                self.client.start_vm(&node, vm.vmid).await.map(Some)
            })
            .await?;
        }
        if steps.start {
            let started = self
                .task("start", tasks, || async {
                    self.client.start_vm(&node, vm.vmid).await.map(Some)
                })
                .await;
            // An earlier run's start may land between observing and starting.
            match started {
                Err(err) if err.proxmox_says(PveError::is_already_running) => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Write the options this update sets and deletes, in one config write.
    async fn configure(
        &self,
        vm: &DesiredVm,
        node: &str,
        writes: &[ConfigWrite<'_>],
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let set: Vec<(String, String)> = writes
            .iter()
            .filter_map(|w| w.new.map(|new| (w.name.to_string(), new.to_string())))
            .collect();
        let delete: Vec<String> = writes
            .iter()
            .filter(|w| w.new.is_none())
            .map(|w| w.name.to_string())
            .collect();
        if writes.is_empty() {
            return Ok(());
        }
        // Keep each interface's MAC, which the spec leaves to Proxmox, and carry the digest
        // observed when the plan was made, so an edit since then is not overwritten. Both come
        // from the observation when it had the digest (nothing is read twice in a run).
        let mut config = match &self.observed {
            Some(observed) if !observed.digest.is_empty() => VmConfig {
                digest: observed.digest.clone(),
                values: observed.config.clone(),
            },
            _ => self.read_config(node, vm.vmid).await?,
        };
        let mut retried = false;
        loop {
            let values = keeping_macs(&set, &config);
            let digest = config.digest.clone();
            let configured = self
                .task("configure", tasks, || {
                    self.client
                        .update_vm_config(node, vm.vmid, &values, &delete, Some(&digest))
                })
                .await;
            match configured {
                // The config changed since it was read. When every option this change writes
                // still has its planned old value or already its new one (an interrupted run's
                // write landing late), the plan still holds: write again over the new digest.
                // Anything else is someone else's edit.
                Err(StepError::Pve { source, .. }) if source.is_digest_mismatch() && !retried => {
                    let now = self.read_config(node, vm.vmid).await?;
                    if !moved_only_toward_plan(writes, &now.values) {
                        return Err(StepError::Pve {
                            what: "configure".into(),
                            source,
                        });
                    }
                    config = now;
                    retried = true;
                }
                other => return other,
            }
        }
    }

    /// Move the VM to `pool`, creating the pool first when it does not exist.
    async fn move_to_pool(&self, pool: &str, vmid: u32) -> Result<(), StepError> {
        self.ensure_pool(pool).await?;
        self.client
            .set_pool(pool, vmid)
            .await
            .map_err(|source| StepError::Pve {
                what: format!("move to pool {pool}"),
                source,
            })?;
        self.step(format!("move to pool {pool}"));
        Ok(())
    }
}

/// `set` with each network interface's value given the MAC `config` has for it.
fn keeping_macs(set: &[(String, String)], config: &VmConfig) -> Vec<(String, String)> {
    let mut values = set.to_vec();
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
    values
}

/// Whether every option in `writes` has, in `config`, the value the plan saw or the value it
/// wants. The same list the config write sends: what is not a config option (a pool, a disk
/// size, the power state) is not looked for in the config.
fn moved_only_toward_plan(writes: &[ConfigWrite<'_>], config: &BTreeMap<String, String>) -> bool {
    writes.iter().all(|write| {
        let now = config.get(write.name).map(String::as_str);
        let as_planned = now == write.old;
        let as_wanted = write
            .new
            .is_some_and(|new| same_value(write.name, now, new));
        as_planned || as_wanted
    })
}
