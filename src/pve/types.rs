//! Plain result and request types of the client's calls. They carry no serde derives: the JSON
//! Proxmox sends is decoded into private wire structs beside each call in `client/` and never
//! leaves `pve/`.

use std::collections::BTreeMap;

/// `GET /version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    /// `x.y`.
    pub release: String,
    /// Full pve-manager version.
    pub version: String,
}

/// What kind of guest holds a vmid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuestKind {
    /// A QEMU virtual machine: what proxfleet manages.
    #[default]
    Qemu,
    /// An LXC container: proxfleet never manages one, but it holds its vmid and name.
    Lxc,
}

/// A guest from `/cluster/resources`: a QEMU VM, or a container that holds a vmid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSummary {
    /// VM (or container) id.
    pub vmid: u32,
    /// QEMU VM or LXC container.
    pub kind: GuestKind,
    /// Node.
    pub node: String,
    /// Name.
    pub name: Option<String>,
    /// Running.
    pub running: bool,
    /// Template.
    pub template: bool,
    /// Tags.
    pub tags: Vec<String>,
    /// Config lock.
    pub lock: Option<String>,
    /// Resource pool.
    pub pool: Option<String>,
}

/// A node from `/nodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    /// Name.
    pub name: String,
    /// Online.
    pub online: bool,
}

/// A storage from `/nodes/{node}/storage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSummary {
    /// Storage id.
    pub storage: String,
    /// Type (`dir`, `lvmthin`, …).
    pub kind: String,
    /// Content types.
    pub content: Vec<String>,
    /// Shared between nodes.
    pub shared: bool,
    /// Active.
    pub active: bool,
    /// Enabled.
    pub enabled: bool,
    /// Free bytes.
    pub avail: Option<u64>,
    /// Total bytes.
    pub total: Option<u64>,
}

/// A network interface from `/nodes/{node}/network`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInterface {
    /// Interface name (`vmbr0`).
    pub name: String,
    /// Type: `bridge`, `OVSBridge`, `eth`, `bond`, `vnet`, …
    pub kind: String,
    /// Up (Proxmox reports only interfaces that are).
    pub active: bool,
    /// Brought up at boot.
    pub autostart: bool,
    /// A Linux bridge with VLAN filtering (`bridge-vlan-aware yes`).
    pub vlan_aware: bool,
    /// Bridge ports (`bridge_ports` or `ovs_ports`), without `none`.
    pub ports: Vec<String>,
    /// VLANs a VLAN-aware bridge allows (`bridge_vids`, e.g. `2-4094`), when given.
    pub vids: Option<String>,
}

/// A PCI resource mapping from `/cluster/mapping/pci`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciMapping {
    /// Mapping id.
    pub id: String,
    /// Description.
    pub description: String,
    /// Its entries, one per node (or several).
    pub devices: Vec<PciMapEntry>,
}

/// One entry of a PCI mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciMapEntry {
    /// Node.
    pub node: String,
    /// PCI path(s), `;`-separated.
    pub path: String,
    /// Vendor and device id.
    pub device_id: Option<String>,
}

/// A volume from a storage's content list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Volume id.
    pub volid: String,
    /// Content type.
    pub content: Option<String>,
    /// Format.
    pub format: Option<String>,
    /// Size in bytes.
    pub size: Option<u64>,
    /// Notes.
    pub notes: Option<String>,
    /// Owner VM.
    pub vmid: Option<u32>,
    /// Base volume of a linked clone.
    pub parent: Option<String>,
}

/// A VM's configuration: every option as text, and the digest to send back on writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// SHA1 digest of the config file.
    pub digest: String,
    /// Options (pending values applied), `digest` excluded.
    pub values: BTreeMap<String, String>,
}

/// One entry of `/pending`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// Option.
    pub key: String,
    /// Current value.
    pub value: Option<String>,
    /// Pending value.
    pub pending: Option<String>,
    /// Pending removal.
    pub delete: bool,
}

/// Parameters of download-url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadRequest {
    /// Source URL.
    pub url: String,
    /// Target file name.
    pub filename: String,
    /// Content type (`import`, `iso`, `vztmpl`).
    pub content: String,
    /// (algorithm, hex digest).
    pub checksum: Option<(String, String)>,
    /// Verify the source's TLS certificate (Proxmox's default: yes).
    pub verify_certificates: Option<bool>,
}

/// A file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    /// Local file.
    pub file: std::path::PathBuf,
    /// Target file name.
    pub filename: String,
    /// Content type (`import`, `iso`, `vztmpl`).
    pub content: String,
    /// (algorithm, hex digest), verified by the node.
    pub checksum: Option<(String, String)>,
}

/// Parameters of a clone.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloneRequest {
    /// New vmid.
    pub newid: u32,
    /// Name.
    pub name: Option<String>,
    /// Full clone.
    pub full: Option<bool>,
    /// Target node.
    pub target: Option<String>,
    /// Target storage (full clones).
    pub storage: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Pool.
    pub pool: Option<String>,
}

/// `status/current`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmStatus {
    /// Running.
    pub running: bool,
    /// Lock.
    pub lock: Option<String>,
    /// Template.
    pub template: bool,
}

/// One network interface as the QEMU guest agent reports it (`network-get-interfaces`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestInterface {
    /// The guest's name for it (`eth0`, `ens18`, `lo`).
    pub name: String,
    /// MAC address, upper-case as Proxmox writes it in `netN`.
    pub mac: Option<String>,
    /// Its addresses, IPv4 and IPv6, without prefix lengths.
    pub addresses: Vec<std::net::IpAddr>,
}

/// A task's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskStatus {
    /// Still running.
    pub running: bool,
    /// Exit status once stopped.
    pub exitstatus: Option<String>,
}

/// A task that ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOutcome {
    /// Warnings it logged.
    pub warnings: u32,
}
