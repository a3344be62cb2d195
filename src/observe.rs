//! The observer: a read-only snapshot of the cluster for one desired graph. One cluster-wide VM
//! listing, then the configurations that matter (proxfleet-tagged VMs and any VM occupying a
//! desired vmid or name) fetched concurrently under a bound; alongside both, the content of the
//! storages that hold the spec's images. Every request is sent once. It never writes.

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::graph::{DesiredGraph, Resource};
use crate::ownership::{Marker, TAG};
use crate::pve::{PveClient, PveError};
use crate::state::{ActualState, ActualVm, ActualVolume};

/// How many configuration reads run at once.
pub const CONFIG_CONCURRENCY: usize = 16;

/// Why the cluster could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// Listing the cluster's VMs failed.
    #[error("cannot list the cluster's VMs: {source}")]
    ListVms {
        /// The client error.
        source: PveError,
    },
    /// Reading a VM's configuration failed.
    #[error("cannot read the configuration of VM {vmid} on node {node}: {source}")]
    ReadConfig {
        /// VM id.
        vmid: u32,
        /// Node.
        node: String,
        /// The client error.
        source: PveError,
    },
    /// Listing a storage's content failed.
    #[error("cannot list storage `{storage}` on node {node}: {source}")]
    ListStorage {
        /// Node.
        node: String,
        /// Storage.
        storage: String,
        /// The client error.
        source: PveError,
    },
}

impl ObserveError {
    /// The underlying client error.
    pub fn pve_error(&self) -> &PveError {
        match self {
            ObserveError::ListVms { source }
            | ObserveError::ReadConfig { source, .. }
            | ObserveError::ListStorage { source, .. } => source,
        }
    }
}

/// Observe what `desired` needs to be compared against.
///
/// # Errors
/// The first request that fails, with the object it was about.
pub async fn observe(
    client: &PveClient,
    desired: &DesiredGraph,
) -> Result<ActualState, ObserveError> {
    let mut desired_vmids = BTreeSet::new();
    let mut desired_names = BTreeSet::new();
    let mut image_storages = BTreeSet::new();
    for resource in desired.in_order() {
        match resource {
            Resource::Vm(vm) => {
                desired_vmids.insert(vm.vmid);
                desired_names.insert(&vm.name);
            }
            Resource::Image(image) => {
                image_storages.insert((image.node.clone(), image.storage.clone()));
            }
        }
    }

    // The storage listings need nothing from the VM listing: they run alongside it and the
    // config reads, so the only round trips in sequence are the listing and one config read.
    let vms = observe_vms(client, &desired_vmids, &desired_names);
    let contents = stream::iter(image_storages)
        .map(|(node, storage)| async move {
            client
                .storage_content(&node, &storage, Some("import"))
                .await
                .map(|content| (node.clone(), storage.clone(), content))
                .map_err(|source| ObserveError::ListStorage {
                    node,
                    storage,
                    source,
                })
        })
        .buffer_unordered(CONFIG_CONCURRENCY)
        .try_collect::<Vec<_>>();
    let (vms, contents) = futures::try_join!(vms, contents)?;

    let mut volumes = BTreeMap::new();
    for (node, storage, content) in contents {
        for vol in content {
            volumes.insert(
                (node.clone(), vol.volid.clone()),
                ActualVolume {
                    node: node.clone(),
                    storage: storage.clone(),
                    volid: vol.volid,
                    size: vol.size,
                },
            );
        }
    }

    Ok(ActualState { vms, volumes })
}

/// Every VM of the cluster from one listing, with the configurations of those that matter.
async fn observe_vms(
    client: &PveClient,
    desired_vmids: &BTreeSet<u32>,
    desired_names: &BTreeSet<&String>,
) -> Result<BTreeMap<u32, ActualVm>, ObserveError> {
    let summaries = client
        .cluster_vms()
        .await
        .map_err(|source| ObserveError::ListVms { source })?;

    let mut vms: BTreeMap<u32, ActualVm> = BTreeMap::new();
    let mut to_read = Vec::new();
    for summary in summaries {
        let relevant = summary.tags.iter().any(|t| t.eq_ignore_ascii_case(TAG))
            || desired_vmids.contains(&summary.vmid)
            || summary
                .name
                .as_ref()
                .is_some_and(|n| desired_names.contains(n));
        if relevant {
            to_read.push((summary.vmid, summary.node.clone()));
        }
        vms.insert(
            summary.vmid,
            ActualVm {
                vmid: summary.vmid,
                node: summary.node,
                name: summary.name,
                running: summary.running,
                template: summary.template,
                lock: summary.lock,
                config: BTreeMap::new(),
                digest: String::new(),
                pending: Vec::new(),
                marker: None,
            },
        );
    }

    let configs: Vec<(u32, crate::pve::VmConfig)> = stream::iter(to_read)
        .map(|(vmid, node)| async move {
            client
                .vm_config(&node, vmid)
                .await
                .map(|config| (vmid, config))
                .map_err(|source| ObserveError::ReadConfig { vmid, node, source })
        })
        .buffer_unordered(CONFIG_CONCURRENCY)
        .try_collect()
        .await?;
    for (vmid, config) in configs {
        let Some(vm) = vms.get_mut(&vmid) else {
            continue;
        };
        // A marker only counts on the VM it was written for: a hand-made clone of a proxfleet
        // template copies the description but not the vmid.
        vm.marker = config
            .values
            .get("description")
            .and_then(|d| Marker::find(d))
            .filter(|m| m.vmid == Some(vmid));
        if let Some(name) = config.values.get("name") {
            vm.name = Some(name.clone());
        }
        vm.config = config.values;
        vm.digest = config.digest;
    }
    Ok(vms)
}
