//! What the checks need to know about the cluster, asked read-only: the version first (if the
//! API does not answer, nothing else is asked), then the cluster listing (nodes, VMs and
//! storages in one `GET /cluster/resources`), PCI mappings and the token's privileges on each
//! path at once, then bridges of the nodes that are online (and their storages, where the
//! listing does not show each the spec uses there, active: `GET /nodes/{node}/storage` then
//! says why), then the owners of VMs on desired vmids. Every failure is kept with what it was
//! about, so one unanswered request fails one check, not the run.

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt};
use indexmap::IndexSet;

use super::needs::Needs;
use crate::ownership::Marker;
use crate::pve::{
    ClusterListing, GuestKind, NetworkInterface, NodeSummary, PciMapping, PveClient, PveError,
    StorageSummary, VersionInfo, VmSummary,
};

/// How many requests of one kind run at once.
pub const CONCURRENCY: usize = 16;

/// What the cluster answered.
#[derive(Debug)]
pub struct Facts {
    /// The API token's id (`user@realm!tokenid`), for the hints.
    pub token_id: String,
    /// `GET /version`; when it failed nothing else was asked.
    pub version: Result<VersionInfo, PveError>,
    /// The nodes of `GET /cluster/resources`.
    pub nodes: Option<Result<Vec<NodeSummary>, PveError>>,
    /// The guests of `GET /cluster/resources`.
    pub vms: Option<Result<Vec<VmSummary>, PveError>>,
    /// `GET /cluster/mapping/pci`, when the spec maps PCI devices.
    pub pci_mappings: Option<Result<Vec<PciMapping>, PveError>>,
    /// The token's privileges per ACL path.
    pub privileges: BTreeMap<String, Result<BTreeSet<String>, PveError>>,
    /// Storages per online node the spec uses.
    pub storages: BTreeMap<String, Result<Vec<StorageSummary>, PveError>>,
    /// Bridges per online node the spec uses.
    pub bridges: BTreeMap<String, Result<Vec<NetworkInterface>, PveError>>,
    /// For VMs on desired vmids: their proxfleet marker (valid for that vmid), if any.
    pub owners: BTreeMap<u32, Result<Option<Marker>, PveError>>,
    /// For desired vmids the token may not see: whether the vmid is free.
    pub hidden: BTreeMap<u32, Result<bool, PveError>>,
    /// VMs on desired vmids that carry the `proxfleet` tag: not read here (the plan's
    /// observation proves ownership right after), so a converged fleet costs no reads.
    pub tagged: BTreeSet<u32>,
}

impl Facts {
    /// Facts about a cluster whose API did not answer.
    pub fn unreachable(token_id: &str, error: PveError) -> Facts {
        Facts {
            token_id: token_id.to_string(),
            version: Err(error),
            nodes: None,
            vms: None,
            pci_mappings: None,
            privileges: BTreeMap::new(),
            storages: BTreeMap::new(),
            bridges: BTreeMap::new(),
            owners: BTreeMap::new(),
            hidden: BTreeMap::new(),
            tagged: BTreeSet::new(),
        }
    }

    /// The nodes that exist and are online.
    pub fn online_nodes(&self) -> BTreeSet<String> {
        match &self.nodes {
            Some(Ok(nodes)) => nodes
                .iter()
                .filter(|n| n.online)
                .map(|n| n.name.clone())
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    /// The token's privileges on a path, when they could be read.
    pub fn privileges_on(&self, path: &str) -> Option<&BTreeSet<String>> {
        self.privileges.get(path).and_then(|r| r.as_ref().ok())
    }
}

/// Ask the cluster what the checks of `needs` depend on.
pub async fn gather(client: &PveClient, needs: &Needs) -> Facts {
    // The cluster listing read here is the observation's too (`pve::client::shared_reads`).
    let _shared = client.preflight_reads();
    let version = match client.version().await {
        Ok(version) => version,
        Err(error) => return Facts::unreachable(client.token_id(), error),
    };
    let mappings = async {
        if needs.pci_mappings.is_empty() {
            None
        } else {
            Some(client.pci_mappings().await)
        }
    };
    let (listing, pci_mappings, privileges) = tokio::join!(
        client.cluster_listing(),
        mappings,
        ask_privileges(client, needs.privilege_paths())
    );
    let (nodes, vms, listed_storages) = match listing {
        Ok(ClusterListing {
            vms,
            nodes,
            storages,
        }) => (Ok(nodes), Ok(vms), storages),
        // The nodes are asked on their own then, so that their checks still run.
        Err(err) => (client.nodes().await, Err(err), BTreeMap::new()),
    };
    let mut facts = Facts {
        token_id: client.token_id().to_string(),
        version: Ok(version),
        nodes: Some(nodes),
        vms: Some(vms),
        pci_mappings,
        privileges,
        storages: BTreeMap::new(),
        bridges: BTreeMap::new(),
        owners: BTreeMap::new(),
        hidden: BTreeMap::new(),
        tagged: BTreeSet::new(),
    };
    let tagged = tagged_vmids(needs, &facts);
    let ((storages, bridges), (owners, hidden)) = tokio::join!(
        ask_nodes(client, needs, &facts, listed_storages),
        ask_vmid_owners(client, needs, &facts, &tagged)
    );
    facts.storages = storages;
    facts.bridges = bridges;
    facts.owners = owners;
    facts.hidden = hidden;
    facts.tagged = tagged;
    facts
}

/// The token's privileges on each of `paths`.
async fn ask_privileges(
    client: &PveClient,
    paths: IndexSet<String>,
) -> BTreeMap<String, Result<BTreeSet<String>, PveError>> {
    // One dump of the caller's permissions answers for every path (what propagates from the
    // nearest path with entries), instead of a request per path.
    match client.permissions_dump().await {
        Ok(dump) => paths
            .into_iter()
            .map(|path| {
                let privileges = effective_privileges(&dump, &path);
                (path, Ok(privileges))
            })
            .collect::<BTreeMap<_, _>>(),
        Err(_) => {
            // Fall back to asking path by path (and keep each failure with its path).
            stream::iter(paths)
                .map(|path| async move {
                    let privileges = client.privileges_on(&path).await;
                    (path, privileges)
                })
                .buffer_unordered(CONCURRENCY)
                .collect::<BTreeMap<_, _>>()
                .await
        }
    }
}

/// Storages and bridges per online node the spec uses. A node's storages are the cluster
/// listing's when it shows every storage the spec uses there, active; else (a storage missing,
/// disabled, inactive, or visible only with `Datastore.AllocateSpace`) the node's own list is
/// read, which says which.
async fn ask_nodes(
    client: &PveClient,
    needs: &Needs,
    facts: &Facts,
    mut listed: BTreeMap<String, Vec<StorageSummary>>,
) -> (NodeStorages, NodeBridges) {
    let online = facts.online_nodes();
    let storage_nodes: BTreeSet<&String> = needs
        .storages
        .keys()
        .map(|(node, _)| node)
        .chain(needs.disks.iter().map(|d| &d.node))
        .filter(|node| online.contains(*node))
        .collect();
    let bridge_nodes: BTreeSet<&String> = needs
        .bridges
        .keys()
        .map(|(node, _)| node)
        .filter(|node| online.contains(*node))
        .collect();
    let used_on = |node: &str| -> BTreeSet<&str> {
        needs
            .storages
            .keys()
            .filter(|(n, _)| n == node)
            .map(|(_, storage)| storage.as_str())
            .chain(
                needs
                    .disks
                    .iter()
                    .filter(|d| d.node == node)
                    .map(|d| d.storage.as_str()),
            )
            .collect()
    };
    let mut known: NodeStorages = BTreeMap::new();
    let mut unknown: Vec<&String> = Vec::new();
    for node in storage_nodes {
        let rows = listed.remove(node.as_str()).unwrap_or_default();
        let shown = used_on(node).into_iter().all(|storage| {
            rows.iter()
                .any(|row| row.storage == storage && row.enabled && row.active)
        });
        if shown {
            known.insert(node.clone(), Ok(rows));
        } else {
            unknown.push(node);
        }
    }
    let storages = async {
        let read = stream::iter(unknown)
            .map(|node| async move { (node.clone(), client.storages(node).await) })
            .buffer_unordered(CONCURRENCY)
            .collect::<BTreeMap<_, _>>()
            .await;
        known.extend(read);
        known
    };
    let bridges = stream::iter(bridge_nodes)
        .map(|node| async move {
            let bridges = client.networks(node, Some("any_bridge")).await;
            (node.clone(), bridges)
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<BTreeMap<_, _>>();
    tokio::join!(storages, bridges)
}

/// The VMs of the cluster's list, by vmid.
fn listed_vms(facts: &Facts) -> BTreeMap<u32, &VmSummary> {
    match &facts.vms {
        Some(Ok(vms)) => vms.iter().map(|vm| (vm.vmid, vm)).collect(),
        _ => BTreeMap::new(),
    }
}

/// Desired vmids held by VMs with the `proxfleet` tag.
fn tagged_vmids(needs: &Needs, facts: &Facts) -> BTreeSet<u32> {
    let listed = listed_vms(facts);
    let is_tagged = |vm: &VmSummary| {
        vm.tags
            .iter()
            .any(|t| t.eq_ignore_ascii_case(crate::ownership::TAG))
    };
    needs
        .vmids
        .keys()
        .filter(|vmid| {
            listed
                .get(vmid)
                .is_some_and(|vm| vm.kind == GuestKind::Qemu && is_tagged(vm))
        })
        .copied()
        .collect()
}

/// For desired vmids held by untagged VMs, their marker; for desired vmids the token cannot
/// see, whether they are free.
async fn ask_vmid_owners(
    client: &PveClient,
    needs: &Needs,
    facts: &Facts,
    tagged: &BTreeSet<u32>,
) -> (VmidOwners, HiddenVmids) {
    // VMs on desired vmids: read the configuration of each to find its marker. Desired vmids
    // not listed may still be taken by a VM the token cannot see (no VM.Audit): ask those.
    let listed = listed_vms(facts);
    let occupied: Vec<(u32, String)> = needs
        .vmids
        .keys()
        .filter(|vmid| !tagged.contains(vmid))
        // A container's config is no VM config to read a marker from: it is never ours.
        .filter_map(|vmid| listed.get(vmid).filter(|vm| vm.kind == GuestKind::Qemu))
        .map(|vm| (vm.vmid, vm.node.clone()))
        .collect();
    let unseen: Vec<u32> = needs
        .vmids
        .keys()
        .copied()
        .filter(|vmid| !listed.contains_key(vmid))
        .filter(|vmid| {
            facts
                .privileges_on(&format!("/vms/{vmid}"))
                .is_some_and(|privileges| !privileges.contains("VM.Audit"))
        })
        .collect();
    let owners = stream::iter(occupied)
        .map(|(vmid, node)| async move {
            let marker = client.vm_config(&node, vmid).await.map(|config| {
                config
                    .values
                    .get("description")
                    .and_then(|d| Marker::find(d))
                    .filter(|m| m.vmid == Some(vmid))
            });
            (vmid, marker)
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<BTreeMap<_, _>>();
    let hidden = stream::iter(unseen)
        .map(|vmid| async move { (vmid, client.vmid_is_free(vmid).await) })
        .buffer_unordered(CONCURRENCY)
        .collect::<BTreeMap<_, _>>();
    tokio::join!(owners, hidden)
}

type NodeStorages = BTreeMap<String, Result<Vec<StorageSummary>, PveError>>;
type NodeBridges = BTreeMap<String, Result<Vec<NetworkInterface>, PveError>>;
type VmidOwners = BTreeMap<u32, Result<Option<Marker>, PveError>>;
type HiddenVmids = BTreeMap<u32, Result<bool, PveError>>;

/// The privileges on `path` from a permissions dump: those of the path itself when it has
/// entries, else those that propagate from its nearest ancestor that has.
pub fn effective_privileges(
    dump: &BTreeMap<String, BTreeMap<String, bool>>,
    path: &str,
) -> BTreeSet<String> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    for depth in (0..=parts.len()).rev() {
        let candidate = format!("/{}", parts[..depth].join("/"));
        if let Some(privileges) = dump.get(&candidate) {
            let exact = depth == parts.len();
            return privileges
                .iter()
                .filter(|(_, propagates)| exact || **propagates)
                .map(|(name, _)| name.clone())
                .collect();
        }
    }
    BTreeSet::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privileges_propagate_from_the_nearest_path_with_entries() {
        let dump: BTreeMap<String, BTreeMap<String, bool>> = [
            ("/", vec![("Sys.Audit", true)]),
            ("/vms", vec![("VM.Allocate", true), ("VM.Audit", false)]),
            ("/vms/100", vec![("VM.Audit", true)]),
        ]
        .into_iter()
        .map(|(path, privs)| {
            (
                path.to_string(),
                privs.into_iter().map(|(p, f)| (p.to_string(), f)).collect(),
            )
        })
        .collect();
        let names =
            |path: &str| -> Vec<String> { effective_privileges(&dump, path).into_iter().collect() };
        assert_eq!(names("/vms/100"), vec!["VM.Audit"]);
        assert_eq!(names("/vms/101"), vec!["VM.Allocate"]);
        assert_eq!(names("/vms"), vec!["VM.Allocate", "VM.Audit"]);
        assert_eq!(names("/storage/local"), vec!["Sys.Audit"]);
    }
}
