//! An update in place, as steps in a fixed order: the snippets `cicustom` will name written
//! first; the options set and deleted in one config write that keeps each interface's MAC and
//! carries the digest observed for the plan (written again once when the config moved only
//! toward the plan); the disk grown; the pool changed; the seed swapped; snippets no longer
//! named removed; a reboot (`--allow-reboot`); a start.

use std::collections::BTreeMap;

use super::change::{ChangeRun, StepError};
use crate::graph::DesiredVm;
use crate::plan::FieldChange;
use crate::pve::propstr::{nic_mac, with_mac};
use crate::pve::{PveError, VmConfig};

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
        let cicustom = self.field("cicustom");
        let missing = self.field("snippet").is_some();
        if missing || cicustom.is_some_and(|f| f.new.is_some()) {
            self.write_snippets(vm, &node).await?;
        }
        self.configure(vm, &node, tasks).await?;
        if let Some((slot, size)) = &vm.disk_grow
            && self.field(&format!("{slot} size")).is_some()
        {
            let size = size.to_proxmox();
            self.task(&format!("resize {slot} to {size}"), tasks, || {
                self.client.resize_disk(&node, vm.vmid, slot, &size, None)
            })
            .await?;
        }
        if let Some(pool) = &vm.pool
            && self.field("pool").is_some()
        {
            self.move_to_pool(pool, vm.vmid).await?;
        }
        if let Some(ide2) = self.field("ide2") {
            self.swap_seed(vm, &node, ide2, tasks).await?;
        }
        if let Some(old) = cicustom.and_then(|f| f.old.as_deref()) {
            let keep = cicustom
                .and_then(|f| f.new.as_deref())
                .map(crate::seed::cicustom_volids)
                .unwrap_or_default();
            self.remove_snippets(&node, old, &keep).await?;
        }
        if self.field("reboot").is_some() {
            // `--allow-reboot`: what waits for the next boot takes effect now. A clean shutdown
            // first; stopped if the guest does not comply within the shutdown time-out.
            self.shut_down(&node, vm.vmid, tasks).await?;
            self.task("start after reboot", tasks, || async {
                self.client.start_vm(&node, vm.vmid).await.map(Some)
            })
            .await?;
        }
        let wants_start = self
            .field("status")
            .is_some_and(|f| f.new.as_deref() == Some("running"));
        if wants_start {
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

    /// The change's field named `name`.
    fn field(&self, name: &str) -> Option<&FieldChange> {
        self.change.fields.iter().find(|f| f.name == name)
    }

    /// Write the options this update sets and deletes, in one config write.
    async fn configure(
        &self,
        vm: &DesiredVm,
        node: &str,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
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
        if set.is_empty() && delete.is_empty() {
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
                // The config changed since it was read. When every option this change sets
                // still has its planned old value or already its new one (an interrupted run's
                // write landing late), the plan still holds: write again over the new digest.
                // Anything else is someone else's edit.
                Err(StepError::Pve { source, .. }) if source.is_digest_mismatch() && !retried => {
                    let now = self.read_config(node, vm.vmid).await?;
                    if !self.moved_only_toward_plan(&now.values) {
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

    /// `ide2` changes: with snippets, Proxmox's drive is back in place of an earlier seed ISO,
    /// which goes; with a seed ISO, the new seed is attached in place of the old.
    async fn swap_seed(
        &self,
        vm: &DesiredVm,
        node: &str,
        ide2: &FieldChange,
        tasks: &mut Vec<String>,
    ) -> Result<(), StepError> {
        let Some(plan) = &vm.seed else {
            return Ok(());
        };
        if plan.is_snippets() {
            if let Some(old) = ide2.old.as_deref().and_then(|v| v.split(',').next())
                && crate::seed::is_seed_volid(old)
            {
                self.remove_seed(node, old, tasks).await?;
            }
            Ok(())
        } else {
            self.attach_seed(vm, node, ide2.old.as_deref(), tasks).await
        }
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
