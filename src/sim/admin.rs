//! Hand edits of a running simulator, as an operator at the Proxmox UI or shell would make
//! them (not through the API, and not recorded as requests): faults, locks, offline nodes,
//! VMs, containers, volumes, storages, bridges and PCI mappings.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{
    Fault, FaultSpec, SimBridge, SimContainer, SimError, SimHandle, SimPciMapping, SimStorage,
    state,
};

impl SimHandle {
    /// Inject a fault: a request rule, a held lock or an offline node.
    ///
    /// # Errors
    /// The VM or node does not exist.
    pub fn inject(&self, spec: FaultSpec) -> Result<(), SimError> {
        match spec {
            FaultSpec::Rule(rule) => {
                self.add_fault(rule);
                Ok(())
            }
            FaultSpec::Lock {
                vmid,
                lock,
                release_after,
            } => {
                self.set_lock(vmid, Some(&lock))?;
                if let Some(after) = release_after {
                    let shared = Arc::clone(&self.shared);
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        shared.mutate(|c| {
                            if let Some(vm) = c.vms.get_mut(&vmid)
                                && vm.lock() == Some(lock.as_str())
                            {
                                vm.config.remove("lock");
                            }
                        });
                    });
                }
                Ok(())
            }
            FaultSpec::Offline { node, back_after } => {
                self.set_node_online(&node, false)?;
                if let Some(after) = back_after {
                    let shared = Arc::clone(&self.shared);
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        shared.mutate(|c| {
                            if let Some(n) = c.nodes.iter_mut().find(|n| n.name == node) {
                                n.online = true;
                            }
                        });
                    });
                }
                Ok(())
            }
        }
    }

    /// Add a request rule.
    pub fn add_fault(&self, fault: Fault) {
        if let Ok(mut faults) = self.shared.faults.lock() {
            faults.add(fault);
        }
    }

    /// How many times request rules fired since the start.
    pub fn faults_fired(&self) -> usize {
        self.fired_faults().len()
    }

    /// Every time a request rule fired since the start, in order.
    pub fn fired_faults(&self) -> Vec<super::Fired> {
        self.shared
            .faults
            .lock()
            .map(|faults| faults.fired().to_vec())
            .unwrap_or_default()
    }

    /// Remove every request rule.
    pub fn clear_faults(&self) {
        if let Ok(mut faults) = self.shared.faults.lock() {
            faults.clear();
        }
    }

    /// Hold (or with `None` release) a lock on a VM, as a backup or migration would.
    ///
    /// # Errors
    /// No such VM.
    pub fn set_lock(&self, vmid: u32, lock: Option<&str>) -> Result<(), SimError> {
        self.set_vm_config(vmid, "lock", lock)
    }

    /// Take a node offline or bring it back.
    ///
    /// # Errors
    /// No such node.
    pub fn set_node_online(&self, node: &str, online: bool) -> Result<(), SimError> {
        self.shared.mutate(|c| {
            let n = c
                .nodes
                .iter_mut()
                .find(|n| n.name == node)
                .ok_or_else(|| SimError::Admin(format!("no node {node}")))?;
            n.online = online;
            Ok(())
        })
    }

    /// Put an LXC container on a node, as `pct create` would (not through the API, and not
    /// recorded as a request).
    ///
    /// # Errors
    /// The node does not exist or the vmid is taken by a VM or a container.
    pub fn insert_container(&self, container: SimContainer) -> Result<(), SimError> {
        self.shared.mutate(|cluster| {
            if cluster.node(&container.node).is_none() {
                return Err(SimError::Admin(format!("no node {}", container.node)));
            }
            cluster
                .check_vmid_unused(container.vmid)
                .map_err(SimError::Admin)?;
            cluster.containers.insert(
                container.vmid,
                state::Container {
                    vmid: container.vmid,
                    node: container.node,
                    config: container.config,
                    running: container.running,
                },
            );
            Ok(())
        })
    }

    /// Create a stopped VM directly, as someone using the Proxmox UI would (not through the
    /// API, and not recorded as a request).
    ///
    /// # Errors
    /// The node does not exist or the vmid is taken.
    pub fn insert_vm(
        &self,
        node: &str,
        vmid: u32,
        config: &[(&str, &str)],
    ) -> Result<(), SimError> {
        self.shared.mutate(|cluster| {
            if cluster.node(node).is_none() {
                return Err(SimError::Admin(format!("no node {node}")));
            }
            if cluster.vmid_used(vmid) {
                return Err(SimError::Admin(format!("VM {vmid} already exists")));
            }
            let config = config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            cluster.vms.insert(
                vmid,
                state::Vm {
                    vmid,
                    node: node.to_string(),
                    config,
                    pending: BTreeMap::new(),
                    running: false,
                },
            );
            Ok(())
        })
    }

    /// Edit a VM's config by hand (drift); `None` removes the option.
    ///
    /// # Errors
    /// No such VM.
    pub fn set_vm_config(&self, vmid: u32, key: &str, value: Option<&str>) -> Result<(), SimError> {
        self.shared.mutate(|cluster| {
            let vm = cluster
                .vms
                .get_mut(&vmid)
                .ok_or_else(|| SimError::Admin(format!("no VM {vmid}")))?;
            match value {
                Some(value) => vm.config.insert(key.to_string(), value.to_string()),
                None => vm.config.remove(key),
            };
            Ok(())
        })
    }

    /// Delete a VM by hand (its config only; its disks stay, as after a botched manual
    /// clean-up).
    ///
    /// # Errors
    /// No such VM.
    pub fn remove_vm(&self, vmid: u32) -> Result<(), SimError> {
        self.shared.mutate(|cluster| {
            if !cluster.vms.contains_key(&vmid) {
                return Err(SimError::Admin(format!("no VM {vmid}")));
            }
            cluster.remove_vm(vmid);
            Ok(())
        })
    }

    /// Delete a volume by hand.
    ///
    /// # Errors
    /// No such volume.
    pub fn remove_volume(&self, volid: &str) -> Result<(), SimError> {
        self.shared.mutate(|cluster| {
            let before = cluster.volumes.len();
            cluster.volumes.retain(|v| v.volid != volid);
            if cluster.volumes.len() == before {
                return Err(SimError::Admin(format!("no volume {volid}")));
            }
            Ok(())
        })
    }

    /// Write `contents` into a volume, as a guest writing to its disk would: the token a test
    /// later finds on the same volume, whatever it is called by then.
    ///
    /// # Errors
    /// No such volume.
    pub fn write_volume(&self, volid: &str, contents: &str) -> Result<(), SimError> {
        self.shared.mutate(|cluster| {
            let volume = cluster.volumes.iter_mut().find(|v| v.volid == volid);
            let volume = volume.ok_or_else(|| SimError::Admin(format!("no volume {volid}")))?;
            volume.contents = contents.to_string();
            Ok(())
        })
    }

    /// Move a VM to another node by hand (as a migration would).
    ///
    /// # Errors
    /// No such VM or node.
    pub fn move_vm(&self, vmid: u32, node: &str) -> Result<(), SimError> {
        self.shared.mutate(|cluster| {
            if cluster.node(node).is_none() {
                return Err(SimError::Admin(format!("no node {node}")));
            }
            let vm = cluster
                .vms
                .get_mut(&vmid)
                .ok_or_else(|| SimError::Admin(format!("no VM {vmid}")))?;
            vm.node = node.to_string();
            Ok(())
        })
    }

    /// Power a VM on or off by hand.
    ///
    /// # Errors
    /// No such VM.
    pub fn set_running(&self, vmid: u32, running: bool) -> Result<(), SimError> {
        self.shared.mutate(|cluster| {
            let vm = cluster
                .vms
                .get_mut(&vmid)
                .ok_or_else(|| SimError::Admin(format!("no VM {vmid}")))?;
            vm.running = running;
            Ok(())
        })
    }

    /// Add a PCI resource mapping, or replace the one with the same id.
    pub fn add_pci_mapping(&self, mapping: SimPciMapping) {
        self.shared.mutate(|cluster| {
            let map = mapping
                .devices
                .iter()
                .map(|d| format!("id={},node={},path={}", d.device_id, d.node, d.path))
                .collect();
            cluster.pci_mappings.retain(|m| m.id != mapping.id);
            cluster.pci_mappings.push(state::PciMapping {
                id: mapping.id,
                description: mapping.description,
                map,
            });
            cluster.pci_mappings.sort_by(|a, b| a.id.cmp(&b.id));
        });
    }

    /// Add a bridge to a node's network configuration, or replace the one with its name.
    ///
    /// # Errors
    /// No such node.
    pub fn add_bridge(&self, bridge: SimBridge) -> Result<(), SimError> {
        self.shared.mutate(|cluster| {
            if cluster.node(&bridge.node).is_none() {
                return Err(SimError::Admin(format!("no node {}", bridge.node)));
            }
            cluster
                .bridges
                .retain(|b| !(b.node == bridge.node && b.iface == bridge.name));
            cluster.bridges.push(state::Bridge {
                node: bridge.node,
                iface: bridge.name,
                kind: if bridge.ovs { "OVSBridge" } else { "bridge" }.into(),
                ports: bridge.ports,
                vlan_aware: bridge.vlan_aware,
                active: bridge.active,
                cidr: None,
            });
            Ok(())
        })
    }

    /// Add a storage, or replace the one with the same id (its volumes stay).
    pub fn add_storage(&self, storage: SimStorage) {
        self.shared.mutate(|cluster| {
            cluster.storages.retain(|s| s.id != storage.id);
            cluster.storages.push(state::Storage {
                id: storage.id,
                kind: storage.kind,
                content: storage.content,
                shared: storage.shared,
                total: storage.total,
            });
        });
    }

    /// Enable or disable a storage cluster-wide, as `pvesm set ID --disable 0|1` does.
    ///
    /// # Errors
    /// No such storage.
    pub fn set_storage_enabled(&self, storage: &str, enabled: bool) -> Result<(), SimError> {
        self.shared.mutate(|cluster| {
            if cluster.storage(storage).is_none() {
                return Err(SimError::Admin(format!("no storage {storage}")));
            }
            if enabled {
                cluster.disabled_storages.remove(storage);
            } else {
                cluster.disabled_storages.insert(storage.to_string());
            }
            Ok(())
        })
    }

    /// Make a storage active or inactive on one node (an NFS server that node cannot reach).
    ///
    /// # Errors
    /// No such node or storage.
    pub fn set_storage_active(
        &self,
        node: &str,
        storage: &str,
        active: bool,
    ) -> Result<(), SimError> {
        self.shared.mutate(|cluster| {
            if cluster.node(node).is_none() {
                return Err(SimError::Admin(format!("no node {node}")));
            }
            if cluster.storage(storage).is_none() {
                return Err(SimError::Admin(format!("no storage {storage}")));
            }
            let key = (node.to_string(), storage.to_string());
            if active {
                cluster.inactive_storages.remove(&key);
            } else {
                cluster.inactive_storages.insert(key);
            }
            Ok(())
        })
    }
}
