//! Cluster-wide reads: the version, the guests of `/cluster/resources` (QEMU VMs, and the LXC
//! containers that hold vmids and names beside them), free vmids
//! (`/cluster/nextid`) and PCI resource mappings, each with the wire struct of its answer.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::nodes::NodeWire;
use super::{PveClient, de};
use crate::pve::PveError;
use crate::pve::types::{
    GuestKind, NodeSummary, PciMapEntry, PciMapping, StorageSummary, VersionInfo, VmSummary,
};

/// `GET /version`.
#[derive(Debug, Deserialize)]
struct VersionWire {
    #[serde(default, deserialize_with = "de::optional_text")]
    release: Option<String>,
    #[serde(default, deserialize_with = "de::optional_text")]
    version: Option<String>,
}

/// What every row of `/cluster/resources` has: its type and id.
#[derive(Debug, Deserialize)]
struct ResourceHead {
    #[serde(rename = "type", deserialize_with = "de::text")]
    kind: String,
    #[serde(default, deserialize_with = "de::optional_text")]
    id: Option<String>,
}

/// A `qemu` or `lxc` row of `/cluster/resources`. Only `vmid` and `node` are always there:
/// `name`, `tags`, `lock` and `pool` are left out when unset (and `lock` may be `""`), a
/// guest whose node has not reported yet has no `status` or `template`.
#[derive(Debug, Deserialize)]
struct GuestResourceWire {
    #[serde(deserialize_with = "de::vmid")]
    vmid: u32,
    #[serde(deserialize_with = "de::text")]
    node: String,
    #[serde(default, deserialize_with = "de::optional_text")]
    name: Option<String>,
    #[serde(default, deserialize_with = "de::optional_text")]
    status: Option<String>,
    #[serde(default, deserialize_with = "de::flag")]
    template: bool,
    #[serde(default, deserialize_with = "de::optional_text")]
    tags: Option<String>,
    #[serde(default, deserialize_with = "de::non_empty_text")]
    lock: Option<String>,
    #[serde(default, deserialize_with = "de::non_empty_text")]
    pool: Option<String>,
}

impl GuestResourceWire {
    fn into_summary(self, kind: GuestKind) -> VmSummary {
        let wire = self;
        VmSummary {
            vmid: wire.vmid,
            kind,
            node: wire.node,
            name: wire.name,
            running: wire.status.as_deref() == Some("running"),
            template: wire.template,
            tags: wire
                .tags
                .map(|tags| {
                    tags.split([';', ',', ' '])
                        .filter(|tag| !tag.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            lock: wire.lock,
            pool: wire.pool,
        }
    }
}

/// `/cluster/nextid`: a vmid, sent as a string by Proxmox (`"100"`) and as a number by some.
/// A storage's row of `/cluster/resources` (pve-manager `PVE/API2Tools.pm`,
/// `extract_storage_stats`): its `storage.cfg` entry, and its size and usage from what
/// `pvestatd` last reported (`status: available`; `unknown` and no figures when it reported
/// none, as for a storage it could not activate).
#[derive(Debug, Deserialize)]
struct StorageResourceWire {
    #[serde(deserialize_with = "de::text")]
    storage: String,
    #[serde(deserialize_with = "de::text")]
    node: String,
    #[serde(default, deserialize_with = "de::optional_text")]
    plugintype: Option<String>,
    #[serde(default, deserialize_with = "de::optional_text")]
    content: Option<String>,
    #[serde(default, deserialize_with = "de::flag")]
    shared: bool,
    #[serde(default, deserialize_with = "de::optional_text")]
    status: Option<String>,
    #[serde(default, deserialize_with = "de::optional_number")]
    maxdisk: Option<u64>,
    #[serde(default, deserialize_with = "de::optional_number")]
    disk: Option<u64>,
}

impl From<StorageResourceWire> for StorageSummary {
    fn from(wire: StorageResourceWire) -> StorageSummary {
        let active = wire.status.as_deref() == Some("available");
        StorageSummary {
            storage: wire.storage,
            kind: wire.plugintype.unwrap_or_default(),
            content: wire
                .content
                .map(|content| content.split(',').map(str::to_string).collect())
                .unwrap_or_default(),
            shared: wire.shared,
            active,
            // Only storages enabled on the node are listed (`storage_check_enabled`).
            enabled: true,
            avail: wire
                .maxdisk
                .zip(wire.disk)
                .filter(|_| active)
                .map(|(total, used)| total.saturating_sub(used)),
            total: wire.maxdisk.filter(|_| active),
        }
    }
}

/// The whole of `GET /cluster/resources`: guests, nodes, and the storages each node has
/// enabled that the caller may audit (`Datastore.Audit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterListing {
    /// QEMU VMs and LXC containers, as `cluster_vms` reads them.
    pub vms: Vec<VmSummary>,
    /// Every node of the cluster, as `/nodes` lists them (pve-manager lists each node
    /// whatever the caller's privileges, with `PVE::API2Tools::extract_node_stats` as
    /// `/nodes` does).
    pub nodes: Vec<NodeSummary>,
    /// Storages by node.
    pub storages: BTreeMap<String, Vec<StorageSummary>>,
}

fn cluster_listing(data: &Value, what: &str) -> Result<ClusterListing, PveError> {
    let heads: Vec<ResourceHead> = de::decode(data, what)?;
    let mut guests = Vec::new();
    let mut nodes = Vec::new();
    let mut storages: BTreeMap<String, Vec<StorageSummary>> = BTreeMap::new();
    for (row_idx, head) in heads.iter().enumerate() {
        let row_id = head.id.as_deref().unwrap_or("(no id)");
        let row = &data[row_idx];
        let row_what = || format!("{what} (row {row_idx}, {row_id})");
        match head.kind.as_str() {
            "qemu" | "lxc" => guests.push(row.clone()),
            "node" => {
                let wire: NodeWire = de::decode(row, &row_what())?;
                nodes.push(NodeSummary::from(wire));
            }
            "storage" => {
                let wire: StorageResourceWire = de::decode(row, &row_what())?;
                storages
                    .entry(wire.node.clone())
                    .or_default()
                    .push(StorageSummary::from(wire));
            }
            // Pools, SDN zones, networks: nothing proxfleet reads here.
            _ => {}
        }
    }
    Ok(ClusterListing {
        vms: vm_summaries(&Value::Array(guests), what)?,
        nodes,
        storages,
    })
}

#[derive(Debug, Deserialize)]
struct NextIdWire(#[serde(deserialize_with = "de::vmid")] u32);

/// A mapping of `/cluster/mapping/pci`.
#[derive(Debug, Deserialize)]
struct PciMappingWire {
    #[serde(deserialize_with = "de::text")]
    id: String,
    #[serde(default, deserialize_with = "de::optional_text")]
    description: Option<String>,
    /// One property string per entry: `node=pve1,path=0000:01:00.0,id=10de:1eb8,…`.
    #[serde(default)]
    map: Vec<String>,
}

/// The guests of a `/cluster/resources` answer: QEMU VMs, and LXC containers, which proxfleet
/// never manages but which hold vmids and names all the same (Proxmox refuses a VM on a
/// container's vmid). Any other type is not what was asked for and is skipped with a warning
/// that names it; a malformed guest row is an error.
fn vm_summaries(data: &Value, what: &str) -> Result<Vec<VmSummary>, PveError> {
    let heads: Vec<ResourceHead> = de::decode(data, what)?;
    let mut vms = Vec::new();
    for (row_idx, head) in heads.iter().enumerate() {
        let row_id = head.id.as_deref().unwrap_or("(no id)");
        let kind = match head.kind.as_str() {
            "qemu" => GuestKind::Qemu,
            "lxc" => GuestKind::Lxc,
            kind => {
                tracing::warn!(
                    row = row_id,
                    kind,
                    "{what} listed a resource that is not a guest; skipped"
                );
                continue;
            }
        };
        let row = &data[row_idx];
        let wire: GuestResourceWire =
            de::decode(row, &format!("{what} (row {row_idx}, {row_id})"))?;
        vms.push(wire.into_summary(kind));
    }
    Ok(vms)
}

/// One entry of a PCI mapping: the property string's keys proxfleet reads.
fn pci_map_entry(entry: &str) -> Option<PciMapEntry> {
    let field = |key: &str| {
        entry.split(',').find_map(|pair| {
            pair.split_once('=')
                .filter(|(name, _)| *name == key)
                .map(|(_, value)| value.to_string())
        })
    };
    Some(PciMapEntry {
        node: field("node")?,
        path: field("path").unwrap_or_default(),
        device_id: field("id"),
    })
}

fn pci_mappings(data: &Value, what: &str) -> Result<Vec<PciMapping>, PveError> {
    let wires: Vec<PciMappingWire> = de::decode(data, what)?;
    wires
        .into_iter()
        .map(|wire| {
            let devices = wire
                .map
                .iter()
                .enumerate()
                .map(|(entry_idx, entry)| {
                    pci_map_entry(entry).ok_or_else(|| PveError::Decode {
                        what: what.to_string(),
                        message: format!(
                            "entry {entry_idx} of mapping `{}` names no node: `{entry}`",
                            wire.id
                        ),
                    })
                })
                .collect::<Result<_, _>>()?;
            Ok(PciMapping {
                id: wire.id,
                description: wire.description.unwrap_or_default(),
                devices,
            })
        })
        .collect()
}

impl PveClient {
    /// `GET /version`.
    pub async fn version(&self) -> Result<VersionInfo, PveError> {
        let data = self.get("/version", "/version", &[]).await?;
        let wire: VersionWire = de::decode(&data, "GET /version")?;
        Ok(VersionInfo {
            release: wire.release.unwrap_or_default(),
            version: wire.version.unwrap_or_default(),
        })
    }

    /// `GET /cluster/resources?type=vm`: QEMU VMs and LXC containers.
    ///
    /// # Errors
    /// HTTP errors; a guest's row without a vmid or node, or with a value of the wrong shape.
    pub async fn cluster_vms(&self) -> Result<Vec<VmSummary>, PveError> {
        let data = self
            .get(
                "/cluster/resources",
                "/cluster/resources",
                &[("type".into(), "vm".into())],
            )
            .await?;
        vm_summaries(&data, "GET /cluster/resources")
    }

    /// `GET /cluster/resources`, every type: guests, nodes and storages in one request (the
    /// preflight's; the observation's `cluster_vms` that follows takes its guests, see
    /// `shared_reads`).
    ///
    /// # Errors
    /// HTTP errors; a guest's row without a vmid or node, a node's without its name, a
    /// storage's without its id or node, or a value of the wrong shape.
    pub async fn cluster_listing(&self) -> Result<ClusterListing, PveError> {
        let data = self
            .get("/cluster/resources", "/cluster/resources", &[])
            .await?;
        let listing = cluster_listing(&data, "GET /cluster/resources")?;
        self.remember_storages(&listing);
        Ok(listing)
    }

    /// `GET /cluster/mapping/pci`: the PCI resource mappings the caller may see.
    ///
    /// # Errors
    /// HTTP errors; a mapping without an id, or an entry that names no node.
    pub async fn pci_mappings(&self) -> Result<Vec<PciMapping>, PveError> {
        let data = self
            .get("/cluster/mapping/pci", "/cluster/mapping/pci", &[])
            .await?;
        pci_mappings(&data, "GET /cluster/mapping/pci")
    }

    /// `GET /cluster/nextid?vmid=N`: whether a vmid is free cluster-wide, including VMs the
    /// caller cannot see.
    pub async fn vmid_is_free(&self, vmid: u32) -> Result<bool, PveError> {
        match self
            .get(
                "/cluster/nextid",
                "/cluster/nextid",
                &[("vmid".into(), vmid.to_string())],
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(PveError::Http {
                status: 400,
                errors,
                ..
            }) if errors.contains_key("vmid") => Ok(false),
            Err(other) => Err(other),
        }
    }

    /// `GET /cluster/nextid`.
    pub async fn next_id(&self) -> Result<u32, PveError> {
        let data = self.get("/cluster/nextid", "/cluster/nextid", &[]).await?;
        let NextIdWire(vmid) = de::decode(&data, "GET /cluster/nextid")?;
        Ok(vmid)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const WHAT: &str = "GET /cluster/resources";

    #[test]
    fn the_whole_listing_gives_guests_nodes_and_storages() {
        let data = json!([
            {"id": "qemu/100", "type": "qemu", "vmid": 100, "node": "pve1", "status": "running"},
            {"id": "lxc/101", "type": "lxc", "vmid": "101", "node": "pve2"},
            {"id": "node/pve1", "type": "node", "node": "pve1", "status": "online"},
            {"id": "node/pve2", "type": "node", "node": "pve2", "status": "offline"},
            {"id": "storage/pve1/local", "type": "storage", "node": "pve1", "storage": "local",
             "plugintype": "dir", "content": "iso,import", "shared": 0, "status": "available",
             "maxdisk": "1000", "disk": 400},
            {"id": "storage/pve1/nfs", "type": "storage", "node": "pve1", "storage": "nfs",
             "plugintype": "nfs", "content": "images", "shared": 1, "status": "unknown"},
            {"id": "pool/lab", "type": "pool", "pool": "lab"},
            {"id": "sdn/pve1/localnetwork", "type": "sdn", "sdn": "localnetwork", "node": "pve1"},
        ]);
        let listing = cluster_listing(&data, WHAT).unwrap();
        let vmids: Vec<_> = listing.vms.iter().map(|vm| (vm.vmid, vm.kind)).collect();
        assert_eq!(vmids, [(100, GuestKind::Qemu), (101, GuestKind::Lxc)]);
        let nodes: Vec<_> = listing
            .nodes
            .iter()
            .map(|n| (n.name.as_str(), n.online))
            .collect();
        assert_eq!(nodes, [("pve1", true), ("pve2", false)]);
        let pve1 = &listing.storages["pve1"];
        assert_eq!(
            (
                pve1[0].kind.as_str(),
                pve1[0].active,
                pve1[0].avail,
                pve1[0].total
            ),
            ("dir", true, Some(600), Some(1000))
        );
        assert_eq!(pve1[0].content, ["iso", "import"]);
        assert!(pve1[1].shared && !pve1[1].active && pve1[1].avail.is_none());
        let err = cluster_listing(&json!([{"id": "node/x", "type": "node"}]), WHAT).unwrap_err();
        assert!(err.to_string().contains("node/x"), "{err}");
    }

    #[test]
    fn qemu_rows_with_numbers_or_strings() {
        let as_numbers = json!([{
            "id": "qemu/100", "type": "qemu", "vmid": 100, "node": "pve1", "name": "web",
            "status": "running", "template": 0, "maxmem": 2147483648u64, "maxcpu": 2,
            "tags": "proxfleet;web", "lock": "", "pool": "lab",
        }]);
        let as_strings = json!([{
            "id": "qemu/100", "type": "qemu", "vmid": "100", "node": "pve1", "name": "web",
            "status": "running", "template": "0", "maxmem": "2147483648", "maxcpu": "2",
            "tags": "proxfleet;web", "lock": "", "pool": "lab",
        }]);
        let expected = vec![VmSummary {
            vmid: 100,
            kind: GuestKind::Qemu,
            node: "pve1".into(),
            name: Some("web".into()),
            running: true,
            template: false,
            tags: vec!["proxfleet".into(), "web".into()],
            lock: None,
            pool: Some("lab".into()),
        }];
        assert_eq!(vm_summaries(&as_numbers, WHAT).unwrap(), expected);
        assert_eq!(vm_summaries(&as_strings, WHAT).unwrap(), expected);
        let template = json!([{"type": "qemu", "vmid": 9000, "node": "pve1", "template": 1,
            "status": "stopped", "lock": "clone", "tags": "a,b c"}]);
        let template = &vm_summaries(&template, WHAT).unwrap()[0];
        assert!(template.template && !template.running);
        assert_eq!(template.lock.as_deref(), Some("clone"));
        assert_eq!(template.tags, ["a", "b", "c"]);
    }

    #[test]
    fn containers_are_guests_and_other_resources_are_skipped() {
        let data = json!([
            {"id": "lxc/200", "type": "lxc", "vmid": 200, "node": "pve1", "status": "running",
             "name": "ct-dns", "maxswap": 536870912, "template": 0, "tags": "infra"},
            {"id": "qemu/101", "type": "qemu", "vmid": 101, "node": "pve2", "template": 1},
            {"id": "storage/pve1/local", "type": "storage", "storage": "local", "shared": 0},
            {"id": "node/pve1", "type": "node", "node": "pve1", "status": "online"},
            {"id": "sdn/pve1/localnetwork", "type": "sdn", "sdn": "localnetwork"},
            {"id": "pool/lab", "type": "pool", "pool": "lab"},
        ]);
        let (vms, log) = de::logged(|| vm_summaries(&data, WHAT));
        let vms = vms.unwrap();
        let kinds: Vec<(u32, GuestKind)> = vms.iter().map(|vm| (vm.vmid, vm.kind)).collect();
        assert_eq!(kinds, [(200, GuestKind::Lxc), (101, GuestKind::Qemu)]);
        assert_eq!(vms[0].name.as_deref(), Some("ct-dns"));
        assert!(vms[0].running && !vms[0].template);
        assert_eq!(vms[0].tags, ["infra"]);
        let warnings: Vec<&str> = log.lines().filter(|line| line.contains("WARN")).collect();
        assert_eq!(warnings.len(), 4, "{log}");
        for (warning, row) in warnings.iter().zip([
            "storage/pve1/local",
            "node/pve1",
            "sdn/pve1/localnetwork",
            "pool/lab",
        ]) {
            assert!(warning.contains(row) && warning.contains(WHAT), "{warning}");
        }
        assert!(!log.contains("lxc/200"), "{log}");
    }

    #[test]
    fn a_qemu_row_with_only_its_required_fields() {
        // A VM whose node has not reported yet lists neither `status`, `name`, `template` nor
        // the figures; `lock` may come as `""`.
        let data = json!([{"id": "qemu/7", "type": "qemu", "vmid": 7, "node": "pve2", "lock": ""}]);
        let vm = &vm_summaries(&data, WHAT).unwrap()[0];
        assert_eq!(
            (vm.vmid, vm.kind, vm.node.as_str()),
            (7, GuestKind::Qemu, "pve2")
        );
        assert!(vm.name.is_none() && vm.lock.is_none() && vm.pool.is_none());
        assert!(!vm.running && !vm.template && vm.tags.is_empty());
    }

    #[test]
    fn a_container_row_without_its_optional_fields() {
        // A container whose node has not reported yet: no status, name, template or tags.
        let data = json!([{"id": "lxc/300", "type": "lxc", "vmid": "300", "node": "pve3"}]);
        let ct = &vm_summaries(&data, WHAT).unwrap()[0];
        assert_eq!((ct.vmid, ct.kind), (300, GuestKind::Lxc));
        assert!(ct.name.is_none() && !ct.running && !ct.template && ct.tags.is_empty());
        let malformed = json!([{"id": "lxc/301", "type": "lxc", "node": "pve3"}]);
        let err = vm_summaries(&malformed, WHAT).unwrap_err().to_string();
        assert!(
            err.contains("(row 0, lxc/301): missing field `vmid`"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_qemu_row_is_an_error_that_names_it() {
        for (row, needle) in [
            (
                json!({"id": "qemu/7", "type": "qemu", "node": "pve1"}),
                "(row 1, qemu/7): missing field `vmid`",
            ),
            (
                json!({"id": "qemu/7", "type": "qemu", "vmid": "seven", "node": "pve1"}),
                "(row 1, qemu/7): at `vmid`",
            ),
            (
                json!({"id": "qemu/7", "type": "qemu", "vmid": 7}),
                "missing field `node`",
            ),
            (
                json!({"id": "qemu/7", "type": "qemu", "vmid": 7, "node": "pve1", "template": "x"}),
                "at `template`",
            ),
            (
                json!({"id": "qemu/7", "vmid": 7}),
                "at `[1]`: missing field `type`",
            ),
        ] {
            let data = json!([{"type": "qemu", "vmid": 1, "node": "pve1"}, row]);
            let err = vm_summaries(&data, WHAT).unwrap_err().to_string();
            assert!(err.contains(WHAT) && err.contains(needle), "{err}");
        }
        let err = vm_summaries(&json!({"data": []}), WHAT).unwrap_err();
        assert!(err.to_string().contains("expected a sequence"), "{err}");
    }

    #[test]
    fn next_id_is_a_string_or_a_number() {
        for data in [json!("104"), json!(104)] {
            let NextIdWire(vmid) = de::decode(&data, "GET /cluster/nextid").unwrap();
            assert_eq!(vmid, 104);
        }
        let bad = de::decode::<NextIdWire>(&json!("next"), "GET /cluster/nextid");
        assert!(bad.is_err());
    }

    #[test]
    fn version_fields_are_optional() {
        let wire: VersionWire = de::decode(
            &json!({"release": "9.0", "version": "9.0.3", "repoid": "x"}),
            "v",
        )
        .unwrap();
        assert_eq!(wire.release.as_deref(), Some("9.0"));
        let numeric: VersionWire = de::decode(&json!({"release": 8.4}), "v").unwrap();
        assert_eq!(numeric.release.as_deref(), Some("8.4"));
    }

    #[test]
    fn pci_mappings_and_their_entries() {
        let data = json!([{
            "id": "gpu", "description": "a GPU", "mdev": 0,
            "map": ["node=pve1,path=0000:01:00.0,id=10de:1eb8,iommugroup=3",
                    "node=pve2,path=0000:02:00.0;0000:03:00.0"],
        }, {"id": "spare"}]);
        let mappings = pci_mappings(&data, "GET /cluster/mapping/pci").unwrap();
        assert_eq!(mappings[0].devices.len(), 2);
        assert_eq!(
            mappings[0].devices[0].device_id.as_deref(),
            Some("10de:1eb8")
        );
        assert_eq!(mappings[0].devices[1].path, "0000:02:00.0;0000:03:00.0");
        assert_eq!(mappings[1].description, "");
        assert!(mappings[1].devices.is_empty());
        let no_node = json!([{"id": "gpu", "map": ["path=0000:01:00.0"]}]);
        let err = pci_mappings(&no_node, "GET /cluster/mapping/pci").unwrap_err();
        assert!(
            err.to_string()
                .contains("entry 0 of mapping `gpu` names no node"),
            "{err}"
        );
        let no_id = json!([{"map": []}]);
        assert!(pci_mappings(&no_id, "GET /cluster/mapping/pci").is_err());
    }
}
