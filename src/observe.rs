//! The observer: a read-only snapshot of the cluster for one desired graph. One cluster-wide VM
//! listing, then the configurations that matter (proxfleet-tagged VMs and any VM occupying a
//! desired vmid or name) fetched concurrently under a bound; alongside both, the content of the
//! storages that hold the spec's images (and its clones' cloud-init snippets). Every request is
//! sent once. It never writes.

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::graph::{DesiredGraph, Resource};
use crate::ownership::{Marker, TAG};
use crate::pve::{GuestKind, PveClient, PveError};
use crate::state::{ActualContainer, ActualState, ActualVm, ActualVolume};

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
    let mut snippet_storages = BTreeSet::new();
    for resource in desired.in_order() {
        match resource {
            Resource::Vm(vm) => {
                desired_vmids.extend(vm.vmids());
                desired_names.insert(&vm.name);
                if let Some(plan) = vm.seed.as_deref().filter(|plan| plan.is_snippets()) {
                    snippet_storages.insert((vm.node.clone(), plan.storage.clone()));
                }
            }
            Resource::Image(image) => {
                image_storages.insert((image.node.clone(), image.storage.clone()));
            }
        }
    }

    // The storage listings need nothing from the VM listing: they run alongside it and the
    // config reads, so the only round trips in sequence are the listing and one config read.
    let vms = observe_vms(client, &desired_vmids, &desired_names);
    let listings = image_storages
        .into_iter()
        .map(|(node, storage)| (node, storage, "import"))
        .chain(
            snippet_storages
                .into_iter()
                .map(|(node, storage)| (node, storage, "snippets")),
        );
    let contents = stream::iter(listings)
        .map(|(node, storage, content)| async move {
            client
                .storage_content(&node, &storage, Some(content))
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
    let ((vms, containers), contents) = futures::try_join!(vms, contents)?;

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

    Ok(ActualState {
        vms,
        volumes,
        containers,
    })
}

/// Every VM of the cluster from one listing, with the configurations of those that matter,
/// and the containers beside them (their vmids and names only: no config of theirs matters).
async fn observe_vms(
    client: &PveClient,
    desired_vmids: &BTreeSet<u32>,
    desired_names: &BTreeSet<&String>,
) -> Result<(BTreeMap<u32, ActualVm>, BTreeMap<u32, ActualContainer>), ObserveError> {
    let (container_rows, summaries): (Vec<_>, Vec<_>) = client
        .cluster_vms()
        .await
        .map_err(|source| ObserveError::ListVms { source })?
        .into_iter()
        .partition(|summary| summary.kind == GuestKind::Lxc);
    let containers = container_rows
        .into_iter()
        .map(|ct| {
            let container = ActualContainer {
                vmid: ct.vmid,
                node: ct.node,
                name: ct.name,
            };
            (ct.vmid, container)
        })
        .collect();

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
            to_read.push((summary.vmid, summary.node.clone(), summary.running));
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
                pool: summary.pool,
                config: BTreeMap::new(),
                digest: String::new(),
                fingerprint: String::new(),
                pending: Vec::new(),
                marker: None,
            },
        );
    }

    // A running VM's config is read with its pending changes (one request either way): what
    // waits for the next boot is part of what the plan must show.
    type Read = Option<(crate::pve::VmConfig, Vec<String>)>;
    let configs: Vec<(u32, Read)> = stream::iter(to_read)
        .map(|(vmid, node, running)| async move {
            let read = if running {
                client
                    .vm_pending(&node, vmid)
                    .await
                    .map(|entries| config_from_pending(&entries))
            } else {
                client
                    .vm_config(&node, vmid)
                    .await
                    .map(|config| (config, Vec::new()))
            };
            match read {
                Ok((config, pending)) => Ok((vmid, Some((config, pending)))),
                // Deleted since the listing: it is not there any more.
                Err(source) if source.is_config_missing() => Ok((vmid, None)),
                Err(source) => Err(ObserveError::ReadConfig { vmid, node, source }),
            }
        })
        .buffer_unordered(CONFIG_CONCURRENCY)
        .try_collect()
        .await?;
    let configs: Vec<(u32, crate::pve::VmConfig, Vec<String>)> = configs
        .into_iter()
        .filter_map(|(vmid, read)| match read {
            Some((config, pending)) => Some((vmid, config, pending)),
            None => {
                vms.remove(&vmid);
                None
            }
        })
        .collect();
    for (vmid, config, pending) in configs {
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
        // One fingerprint of what was seen, whichever way it was read, for staleness checks
        // (writes re-read the real digest).
        vm.fingerprint = fingerprint(&config.values, &pending);
        vm.digest = config.digest;
        vm.config = config.values;
        vm.pending = pending;
    }
    Ok((vms, containers))
}

/// A SHA-1 over a VM's options (pending values applied) and the names of those pending: one
/// fingerprint of what was seen, whichever endpoint it was read from.
fn fingerprint(values: &BTreeMap<String, String>, pending: &[String]) -> String {
    use sha1::Digest as _;
    let mut hasher = sha1::Sha1::new();
    for (key, value) in values {
        hasher.update(key.as_bytes());
        hasher.update(b"=");
        hasher.update(value.as_bytes());
        hasher.update(b"\n");
    }
    let mut pending: Vec<&String> = pending.iter().collect();
    pending.sort();
    for key in pending {
        hasher.update(b"pending ");
        hasher.update(key.as_bytes());
        hasher.update(b"\n");
    }
    hex::encode(hasher.finalize())
}

/// A running VM's config as `GET …/config` would show it (pending values applied, pending
/// removals gone) and the options that wait for the next boot.
fn config_from_pending(
    entries: &[crate::pve::PendingEntry],
) -> (crate::pve::VmConfig, Vec<String>) {
    let mut values = BTreeMap::new();
    let mut pending = Vec::new();
    for entry in entries {
        if entry.key == "digest" {
            continue;
        }
        if entry.pending.is_some() || entry.delete {
            pending.push(entry.key.clone());
        }
        if entry.delete {
            continue;
        }
        if let Some(value) = entry.pending.clone().or_else(|| entry.value.clone()) {
            values.insert(entry.key.clone(), value);
        }
    }
    let digest = entries
        .iter()
        .find(|e| e.key == "digest")
        .and_then(|e| e.value.clone())
        .unwrap_or_default();
    (crate::pve::VmConfig { digest, values }, pending)
}
