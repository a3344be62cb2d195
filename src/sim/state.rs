//! The simulated cluster's state: nodes, storages, volumes, VMs (flat config as Proxmox keeps
//! it, pending changes, lock, power), tasks, and its persistence to a JSON file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

/// A node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Node {
    pub name: String,
    pub online: bool,
}

/// A storage definition (cluster-wide, as in `storage.cfg`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Storage {
    pub id: String,
    /// `dir`, `lvmthin`, `nfs`, …
    pub kind: String,
    pub content: Vec<String>,
    pub shared: bool,
    pub total: u64,
}

impl Storage {
    pub fn file_based(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "dir" | "nfs" | "cifs" | "btrfs" | "cephfs"
        )
    }

    pub fn has_content(&self, content: &str) -> bool {
        self.content.iter().any(|c| c == content)
    }

    /// Linked clones need the storage to snapshot/clone base volumes.
    pub fn can_link(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "dir" | "nfs" | "cifs" | "btrfs" | "lvmthin" | "zfspool" | "rbd"
        )
    }
}

/// A volume.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Volume {
    /// Node holding it; empty for shared storages.
    pub node: String,
    pub storage: String,
    pub volid: String,
    pub content: String,
    pub format: String,
    /// File size in bytes.
    pub size: u64,
    /// Virtual size for disk images (what a VM disk imported from it gets).
    pub virtual_size: u64,
    pub vmid: Option<u32>,
    pub parent: Option<String>,
    pub notes: Option<String>,
    /// Known digests of the file, by algorithm.
    pub checksums: BTreeMap<String, String>,
    pub ctime: u64,
    /// What the volume holds, as a token: set when it is allocated, copied by a full clone,
    /// written by hand (`SimHandle::write_volume`), kept through a rename, so a test can tell
    /// the same volume from a new one with the same name.
    #[serde(default)]
    pub contents: String,
}

impl Volume {
    /// A file put on a storage by download-url or upload (`local:import/x.qcow2`); its format
    /// is its extension.
    pub fn file(
        node: String,
        volid: &str,
        content: &str,
        size: u64,
        virtual_size: u64,
        checksums: BTreeMap<String, String>,
    ) -> Volume {
        let (storage, name) = volid.split_once(':').unwrap_or((volid, volid));
        Volume {
            node,
            storage: storage.to_string(),
            volid: volid.to_string(),
            content: content.to_string(),
            format: name.rsplit('.').next().unwrap_or("raw").to_string(),
            size,
            virtual_size,
            vmid: None,
            parent: None,
            notes: None,
            checksums,
            contents: String::new(),
            ctime: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
        }
    }

    /// A VM disk image (content `images`) owned by `vmid`.
    pub fn vm_disk(
        node: String,
        storage: String,
        volid: String,
        format: String,
        size: u64,
        vmid: u32,
        parent: Option<String>,
    ) -> Volume {
        Volume {
            node,
            storage,
            volid,
            content: "images".into(),
            format,
            size,
            virtual_size: size,
            vmid: Some(vmid),
            parent,
            notes: None,
            checksums: BTreeMap::new(),
            contents: format!("blank-{}", hex::encode(rand::random::<[u8; 6]>())),
            ctime: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default(),
        }
    }
}

/// A VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Vm {
    pub vmid: u32,
    pub node: String,
    /// Committed config (without `digest`).
    pub config: BTreeMap<String, String>,
    /// Pending values (`None` = pending deletion).
    pub pending: BTreeMap<String, Option<String>>,
    pub running: bool,
}

impl Vm {
    pub fn lock(&self) -> Option<&str> {
        self.config.get("lock").map(String::as_str)
    }

    pub fn is_template(&self) -> bool {
        self.config.get("template").is_some_and(|t| t == "1")
    }

    /// Config with pending changes applied (what GET config shows by default).
    pub fn effective_config(&self) -> BTreeMap<String, String> {
        let mut config = self.config.clone();
        for (key, value) in &self.pending {
            match value {
                Some(value) => config.insert(key.clone(), value.clone()),
                None => config.remove(key),
            };
        }
        config
    }

    /// SHA1 of the config file as written (committed values, then the pending section).
    pub fn digest(&self) -> String {
        let mut hasher = Sha1::new();
        for (key, value) in &self.config {
            hasher.update(format!("{key}: {value}\n").as_bytes());
        }
        if !self.pending.is_empty() {
            hasher.update(b"[PENDING]\n");
            for (key, value) in &self.pending {
                hasher.update(format!("{key}: {value:?}\n").as_bytes());
            }
        }
        hex::encode(hasher.finalize())
    }

    pub fn apply_pending(&mut self) {
        for (key, value) in std::mem::take(&mut self.pending) {
            match value {
                Some(value) => self.config.insert(key, value),
                None => self.config.remove(&key),
            };
        }
    }
}

/// An LXC container (`/etc/pve/nodes/NODE/lxc/VMID.conf`). The simulator holds containers so
/// that they occupy vmids and names beside VMs, as they do on a real cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Container {
    pub vmid: u32,
    pub node: String,
    /// Config (`hostname`, `memory`, `cores`, `rootfs`, `net0`, `tags`, `lock`, …).
    pub config: BTreeMap<String, String>,
    pub running: bool,
}

impl Container {
    pub fn lock(&self) -> Option<&str> {
        self.config.get("lock").map(String::as_str)
    }
}

/// A task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Task {
    pub upid: String,
    pub node: String,
    pub pid: u32,
    pub pstart: u32,
    pub starttime: u64,
    pub kind: String,
    pub id: String,
    pub user: String,
    pub running: bool,
    pub exitstatus: Option<String>,
    pub log: Vec<String>,
    /// When it ended (seconds since the epoch), as the task index records it.
    #[serde(default)]
    pub endtime: Option<u64>,
    /// Volumes it allocated under each storage lock it took (the lock model's count, by the
    /// lock's key: a shared storage's name, `storage@node` for a local one).
    #[serde(default)]
    pub allocated: BTreeMap<String, usize>,
}

/// A bridge of a node's network configuration beyond the stock one (or replacing it): every
/// node has `eno1` and a `vmbr0` over it, as the installer sets up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Bridge {
    pub node: String,
    pub iface: String,
    /// `bridge` (Linux bridge) or `OVSBridge`.
    pub kind: String,
    pub ports: Vec<String>,
    pub vlan_aware: bool,
    pub active: bool,
    pub cidr: Option<String>,
}

/// A cluster-wide PCI resource mapping (`/etc/pve/mapping/pci.cfg`): an id and one property
/// string per node entry (`id=10de:2204,node=pve1,path=0000:01:00.0`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PciMapping {
    pub id: String,
    pub description: String,
    pub map: Vec<String>,
}

/// The whole cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Cluster {
    pub nodes: Vec<Node>,
    pub storages: Vec<Storage>,
    pub volumes: Vec<Volume>,
    pub vms: BTreeMap<u32, Vm>,
    pub tasks: BTreeMap<String, Task>,
    pub next_pid: u32,
    /// Bridges added to (or replacing) the stock network configuration of the nodes.
    #[serde(default)]
    pub bridges: Vec<Bridge>,
    /// PCI resource mappings, sorted by id.
    #[serde(default)]
    pub pci_mappings: Vec<PciMapping>,
    /// Storages disabled cluster-wide (`pvesm set ID --disable 1`).
    #[serde(default)]
    pub disabled_storages: BTreeSet<String>,
    /// (node, storage) pairs where a storage is configured but not active (an unreachable NFS
    /// server, a missing volume group).
    #[serde(default)]
    pub inactive_storages: BTreeSet<(String, String)>,
    /// Resource pools: id → (comment, member vmids).
    #[serde(default)]
    pub pools: BTreeMap<String, Pool>,
    /// LXC containers by vmid.
    #[serde(default)]
    pub containers: BTreeMap<u32, Container>,
}

/// A resource pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Pool {
    pub comment: Option<String>,
    pub vms: std::collections::BTreeSet<u32>,
}

impl Cluster {
    /// Remove a VM's config and its pool membership.
    pub fn remove_vm(&mut self, vmid: u32) {
        self.vms.remove(&vmid);
        for pool in self.pools.values_mut() {
            pool.vms.remove(&vmid);
        }
    }

    /// Whether a VM or a container holds `vmid`.
    pub fn vmid_used(&self, vmid: u32) -> bool {
        self.vms.contains_key(&vmid) || self.containers.contains_key(&vmid)
    }

    /// pve-cluster `PVE::Cluster::check_vmid_unused` (`src/PVE/Cluster.pm`): the guest of any
    /// type that holds the vmid is named with its node, `VM` for QEMU and `CT` for LXC.
    pub fn check_vmid_unused(&self, vmid: u32) -> Result<(), String> {
        let holder = match (self.vms.get(&vmid), self.containers.get(&vmid)) {
            (Some(vm), _) => ("VM", vm.node.as_str()),
            (None, Some(ct)) => ("CT", ct.node.as_str()),
            (None, None) => return Ok(()),
        };
        Err(format!(
            "{} {vmid} already exists on node '{}'",
            holder.0, holder.1
        ))
    }

    /// The pool a VM belongs to.
    pub fn pool_of(&self, vmid: u32) -> Option<&str> {
        self.pools
            .iter()
            .find(|(_, pool)| pool.vms.contains(&vmid))
            .map(|(id, _)| id.as_str())
    }
}

const GIB: u64 = 1 << 30;

impl Cluster {
    /// A fresh cluster: `n_nodes` nodes, each with `local` (dir) and `local-lvm` (lvmthin),
    /// plus a shared NFS storage `shared` when there is more than one node.
    pub fn new(n_nodes: usize) -> Cluster {
        let nodes = (1..=n_nodes.max(1))
            .map(|i| Node {
                name: format!("pve{i}"),
                online: true,
            })
            .collect();
        let mut storages = vec![
            Storage {
                id: "local".into(),
                kind: "dir".into(),
                content: ["backup", "import", "iso", "snippets", "vztmpl"]
                    .map(String::from)
                    .to_vec(),
                shared: false,
                total: 100 * GIB,
            },
            Storage {
                id: "local-lvm".into(),
                kind: "lvmthin".into(),
                content: vec!["images".into(), "rootdir".into()],
                shared: false,
                total: 400 * GIB,
            },
        ];
        if n_nodes > 1 {
            storages.push(Storage {
                id: "shared".into(),
                kind: "nfs".into(),
                content: ["images", "import", "iso", "snippets"]
                    .map(String::from)
                    .to_vec(),
                shared: true,
                total: 2000 * GIB,
            });
        }
        Cluster {
            nodes,
            storages,
            volumes: Vec::new(),
            vms: BTreeMap::new(),
            tasks: BTreeMap::new(),
            next_pid: 0x1000,
            pools: BTreeMap::new(),
            bridges: Vec::new(),
            pci_mappings: Vec::new(),
            disabled_storages: BTreeSet::new(),
            inactive_storages: BTreeSet::new(),
            containers: BTreeMap::new(),
        }
    }

    /// The bridges of a node: the stock `vmbr0` over `eno1` (address 198.51.100.1N/24 on the
    /// N-th node), replaced or joined by the ones added.
    pub fn bridges_of(&self, node: &str) -> Vec<Bridge> {
        let index = self
            .nodes
            .iter()
            .position(|n| n.name == node)
            .unwrap_or_default();
        let mut bridges = vec![Bridge {
            node: node.to_string(),
            iface: "vmbr0".into(),
            kind: "bridge".into(),
            ports: vec!["eno1".into()],
            vlan_aware: false,
            active: true,
            cidr: Some(format!("198.51.100.{}/24", 11 + index)),
        }];
        for added in self.bridges.iter().filter(|b| b.node == node) {
            bridges.retain(|b| b.iface != added.iface);
            bridges.push(added.clone());
        }
        bridges.sort_by(|a, b| a.iface.cmp(&b.iface));
        bridges
    }

    /// Whether a storage is enabled and active on a node.
    pub fn storage_state(&self, node: &str, storage: &str) -> (bool, bool) {
        let enabled = !self.disabled_storages.contains(storage);
        let active = enabled
            && !self
                .inactive_storages
                .contains(&(node.to_string(), storage.to_string()));
        (enabled, active)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn storage(&self, id: &str) -> Option<&Storage> {
        self.storages.iter().find(|s| s.id == id)
    }

    /// The node key a volume on `storage` seen from `node` is stored under.
    pub fn volume_node(&self, storage: &str, node: &str) -> String {
        if self.storage(storage).is_some_and(|s| s.shared) {
            String::new()
        } else {
            node.to_string()
        }
    }

    pub fn find_volume(&self, node: &str, volid: &str) -> Option<&Volume> {
        let storage = volid.split(':').next().unwrap_or_default();
        let key = self.volume_node(storage, node);
        self.volumes
            .iter()
            .find(|v| v.volid == volid && v.node == key)
    }

    pub fn find_volume_mut(&mut self, node: &str, volid: &str) -> Option<&mut Volume> {
        let storage = volid.split(':').next().unwrap_or_default().to_string();
        let key = self.volume_node(&storage, node);
        self.volumes
            .iter_mut()
            .find(|v| v.volid == volid && v.node == key)
    }

    pub fn remove_volume(&mut self, node: &str, volid: &str) {
        let storage = volid.split(':').next().unwrap_or_default().to_string();
        let key = self.volume_node(&storage, node);
        self.volumes
            .retain(|v| !(v.volid == volid && v.node == key));
    }

    /// Name for the next disk of `vmid` on `storage` (`vm-100-disk-0`, or the qcow2 path on
    /// file storages).
    pub fn next_disk_volid(&self, node: &str, storage: &str, vmid: u32) -> (String, String) {
        let file_based = self.storage(storage).is_some_and(Storage::file_based);
        let key = self.volume_node(storage, node);
        let mut index = 0;
        loop {
            let name = format!("vm-{vmid}-disk-{index}");
            let taken = self.volumes.iter().any(|v| {
                v.node == key
                    && v.storage == storage
                    && (v.volid.contains(&format!("/{name}"))
                        || v.volid.contains(&format!(":{name}"))
                        || v.volid.contains(&format!("base-{vmid}-disk-{index}")))
            });
            if !taken {
                return if file_based {
                    (format!("{storage}:{vmid}/{name}.qcow2"), "qcow2".into())
                } else {
                    (format!("{storage}:{name}"), "raw".into())
                };
            }
            index += 1;
        }
    }

    pub fn used_bytes(&self, node: &str, storage: &str) -> u64 {
        let key = self.volume_node(storage, node);
        self.volumes
            .iter()
            .filter(|v| v.node == key && v.storage == storage)
            .map(|v| v.size)
            .sum()
    }

    /// Save as JSON, atomically (temp file, then rename).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    /// Load from JSON. Tasks that were running when the state was saved ended with the process
    /// that ran them: they are marked as ended abnormally, their locks stay (as on a node that
    /// lost power).
    pub fn load(path: &Path) -> std::io::Result<Cluster> {
        let text = std::fs::read_to_string(path)?;
        let mut cluster: Cluster = serde_json::from_str(&text).map_err(std::io::Error::other)?;
        for task in cluster.tasks.values_mut().filter(|t| t.running) {
            task.running = false;
            task.exitstatus = Some("unexpected status".into());
            task.log.push("TASK ERROR: unexpected status".into());
        }
        Ok(cluster)
    }
}
