//! A simulated Proxmox VE cluster, served over real HTTP by axum: nodes, storages with content
//! types, volumes, VMs with config, digest, lock, template flag and power state, and UPID tasks
//! that take time and end with an exit status. Requests are validated against the official API
//! schema; answers and errors use Proxmox's envelopes, status codes and wording.
//!
//! It speaks only Proxmox JSON and imports nothing from the rest of proxfleet, so it cannot
//! drift into agreeing with our client's mistakes.

mod access;
mod admin;
mod api;
mod faults;
mod handle;
mod propstr;
mod schema;
mod shared;
mod state;
mod tls;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub use access::AclEntry;
pub use faults::{Fault, FaultAction, FaultSpec, Fired};
pub use handle::SimHandle;
pub(crate) use shared::{Session, Shared};

/// The token the simulator accepts when none is configured. Not a secret: it opens only the
/// simulator, and it is documented so other tools can be pointed at it.
pub const DEFAULT_TOKEN: &str = "root@pam!proxfleet=00000000-0000-4000-8000-000000000000";

/// How the simulator is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes (`pve1`, `pve2`, …).
    pub nodes: usize,
    /// Accepted API tokens, `user@realm!id=secret`, optionally followed by `,privsep=1` for a
    /// privilege-separated token (its privileges are then its own ACLs intersected with its
    /// user's).
    pub tokens: Vec<String>,
    /// ACL entries; `root@pam` and its tokens need none.
    pub acls: Vec<AclEntry>,
    /// Custom roles, name → privileges (besides the built-in ones, `PVEVMAdmin` and the like).
    pub roles: BTreeMap<String, Vec<String>>,
    /// How long every task runs; `None` for each kind's nominal duration (a full clone takes
    /// longer than a start) times `task_scale`.
    pub task_duration: Option<Duration>,
    /// Factor applied to task durations.
    pub task_scale: f64,
    /// Faults injected from the start (more can be added through `SimHandle::add_fault`).
    pub faults: Vec<FaultSpec>,
    /// Seed of the random numbers behind fault rates, so a faulty run can be repeated.
    pub fault_seed: u64,
    /// Resource pools that exist from the start.
    pub pools: Vec<String>,
    /// How long allocating one volume holds its storage's lock (pve-storage takes a
    /// storage-wide lock around every allocation); `None` for a nominal 1.5 s × `task_scale`,
    /// or nothing when `task_duration` fixes every task's time.
    pub storage_lock_hold: Option<Duration>,
    /// How long a task waits for a storage lock before it fails with Proxmox's
    /// `can't lock file '/var/lock/pve-manager/pve-storage-ID' - got timeout` (local storage) or
    /// `cfs-lock 'storage-ID' error: got lock request timeout` (shared); `None` for pve-storage's
    /// 10 s × `task_scale`.
    pub storage_lock_timeout: Option<Duration>,
    /// Added latency per request.
    pub latency: Duration,
    /// Where the state is loaded from and saved to.
    pub state_file: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate (see `SimHandle::certificate_pem`).
    pub tls: bool,
    /// Users who may log in with a password (`POST /access/ticket`), as `user@realm:password`.
    pub users: Vec<String>,
    /// PCI resource mappings (Datacenter → Resource Mappings); a stock cluster has none.
    pub pci_mappings: Vec<SimPciMapping>,
    /// Bridges besides (or replacing) each node's stock `vmbr0`.
    pub bridges: Vec<SimBridge>,
    /// Storages besides (or replacing) the stock ones.
    pub storages: Vec<SimStorage>,
    /// The directory behind each node's `local:snippets/` (`/var/lib/vz/snippets` on a real
    /// node), keyed by node. Proxmox's API cannot write snippets, so they are put there by
    /// other means (SFTP in the tests); the simulator lists them as `snippets` content and looks
    /// for the files `cicustom` names when a VM starts. A node without one has no snippets.
    pub snippets_dirs: BTreeMap<String, PathBuf>,
    /// How long a guest takes, from its start, until its QEMU guest agent answers (until then
    /// the agent endpoints say `QEMU guest agent is not running`).
    pub agent_boot_delay: Duration,
    /// LXC containers that exist from the start (proxfleet never manages them; they hold
    /// their vmids and names).
    pub containers: Vec<SimContainer>,
    /// The Proxmox VE release answered, `major.minor` (`9.1` by default). Answers whose shape
    /// changed between releases follow it: before 8.1, `memory` was a plain integer option
    /// and a config shows it as a JSON number; since, it is a property string
    /// (`[current=]<integer>`) and shows as a string.
    pub release: String,
}

impl SimConfig {
    /// Whether the release answers `memory` as a JSON number (before PVE 8.1).
    pub(crate) fn memory_is_number(&self) -> bool {
        let mut parts = self
            .release
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let major = parts.next().unwrap_or(0);
        let minor = parts.next().unwrap_or(0);
        (major, minor) < (8, 1)
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 1,
            tokens: vec![DEFAULT_TOKEN.to_string()],
            acls: Vec::new(),
            roles: BTreeMap::new(),
            task_duration: Some(Duration::from_millis(20)),
            task_scale: 1.0,
            faults: Vec::new(),
            fault_seed: 0,
            pools: Vec::new(),
            storage_lock_hold: None,
            storage_lock_timeout: None,
            latency: Duration::ZERO,
            state_file: None,
            tls: false,
            users: Vec::new(),
            pci_mappings: Vec::new(),
            bridges: Vec::new(),
            storages: Vec::new(),
            snippets_dirs: BTreeMap::new(),
            agent_boot_delay: Duration::from_millis(200),
            containers: Vec::new(),
            release: "9.1".to_string(),
        }
    }
}

/// A storage in `storage.cfg`, available on every node. The stock ones are `local` (dir),
/// `local-lvm` (LVM-thin) and, with several nodes, `shared` (NFS); one with the same id
/// replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimStorage {
    /// Storage id.
    pub id: String,
    /// Type: `dir`, `lvm` (thick), `lvmthin`, `zfspool`, `nfs`, `rbd`, …
    pub kind: String,
    /// Content types, e.g. `images`, `import`, `iso`.
    pub content: Vec<String>,
    /// Shared between the nodes.
    pub shared: bool,
    /// Size in bytes (per node for a local storage).
    pub total: u64,
}

/// A bridge in a node's network configuration. Every node has `vmbr0` over `eno1`, not
/// VLAN-aware, as the installer sets it up; one with the same name replaces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimBridge {
    /// Node.
    pub node: String,
    /// Interface name, e.g. `vmbr1`.
    pub name: String,
    /// An Open vSwitch bridge (`OVSBridge`) instead of a Linux bridge.
    pub ovs: bool,
    /// Ports (physical interfaces, bonds); none for a host-internal bridge.
    pub ports: Vec<String>,
    /// `bridge-vlan-aware yes` (Linux bridges; OVS bridges always pass VLAN tags).
    pub vlan_aware: bool,
    /// Up; `false` for one written to the configuration but not applied yet.
    pub active: bool,
}

impl SimBridge {
    /// An active Linux bridge without ports, not VLAN-aware.
    pub fn new(node: &str, name: &str) -> SimBridge {
        SimBridge {
            node: node.to_string(),
            name: name.to_string(),
            ovs: false,
            ports: Vec::new(),
            vlan_aware: false,
            active: true,
        }
    }
}

/// An LXC container, as `pct create` leaves it: a vmid on a node with its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimContainer {
    /// Node.
    pub node: String,
    /// Container id (a vmid, from the same range as VMs').
    pub vmid: u32,
    /// Config options (`hostname`, `memory`, `cores`, `rootfs`, `tags`, …).
    pub config: BTreeMap<String, String>,
    /// Running.
    pub running: bool,
}

impl SimContainer {
    /// Parse `NODE:VMID:HOSTNAME` (`sim serve --container`).
    ///
    /// # Errors
    /// Not three fields, or a vmid that is not a number.
    pub fn parse(text: &str) -> Result<SimContainer, String> {
        let invalid = || format!("invalid container '{text}': expected NODE:VMID:HOSTNAME");
        let mut fields = text.splitn(3, ':');
        let (Some(node), Some(vmid), Some(hostname)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(invalid());
        };
        let vmid = vmid.parse().map_err(|_| invalid())?;
        Ok(SimContainer::new(node, vmid, hostname))
    }

    /// A stopped container with a host name, 512 MiB and an 8 GiB root disk on `local-lvm`.
    pub fn new(node: &str, vmid: u32, hostname: &str) -> SimContainer {
        let config = [
            ("hostname", hostname.to_string()),
            ("memory", "512".to_string()),
            ("swap", "512".to_string()),
            ("cores", "1".to_string()),
            ("ostype", "debian".to_string()),
            ("arch", "amd64".to_string()),
            ("rootfs", format!("local-lvm:vm-{vmid}-disk-0,size=8G")),
            (
                "net0",
                "name=eth0,bridge=vmbr0,hwaddr=BC:24:11:5A:00:01,ip=dhcp,type=veth".to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        SimContainer {
            node: node.to_string(),
            vmid,
            config,
            running: false,
        }
    }
}

/// A cluster-wide PCI resource mapping: an id and, per node, the device it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPciMapping {
    /// Mapping id, as `hostpciN: mapping=ID` names it.
    pub id: String,
    /// Description.
    pub description: String,
    /// One entry per node.
    pub devices: Vec<SimPciDevice>,
}

/// One node's entry of a PCI mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimPciDevice {
    /// Node.
    pub node: String,
    /// PCI path, e.g. `0000:01:00.0`.
    pub path: String,
    /// Vendor and device id, e.g. `10de:2204`.
    pub device_id: String,
}

impl SimPciMapping {
    /// A mapping with one entry per `(node, path)`, all for the same GPU model.
    pub fn new(id: &str, entries: &[(&str, &str)]) -> SimPciMapping {
        SimPciMapping {
            id: id.to_string(),
            description: String::new(),
            devices: entries
                .iter()
                .map(|(node, path)| SimPciDevice {
                    node: node.to_string(),
                    path: path.to_string(),
                    device_id: "10de:2204".to_string(),
                })
                .collect(),
        }
    }
}

/// Why the simulator could not start or an admin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listener could not be bound or read.
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    /// The state file could not be read.
    #[error("cannot load state from {path}: {source}")]
    LoadState {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS certificate or configuration could not be made.
    #[error("TLS: {0}")]
    Tls(String),
    /// An admin operation named something that does not exist or conflicts.
    #[error("{0}")]
    Admin(String),
}

/// One request the simulator served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Full path, e.g. `/api2/json/nodes/pve1/qemu/100/config`.
    pub path: String,
    /// Status answered.
    pub status: u16,
}

/// A VM as the simulator holds it (for tests and admin views).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimVm {
    /// VM id.
    pub vmid: u32,
    /// Node.
    pub node: String,
    /// Name.
    pub name: Option<String>,
    /// Template flag.
    pub template: bool,
    /// Running.
    pub running: bool,
    /// Lock.
    pub lock: Option<String>,
    /// Config with pending values applied.
    pub config: BTreeMap<String, String>,
}

/// A volume as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimVolume {
    /// Node (empty for shared storages).
    pub node: String,
    /// Storage.
    pub storage: String,
    /// Volume id.
    pub volid: String,
    /// Content type.
    pub content: String,
    /// Size in bytes.
    pub size: u64,
    /// Notes.
    pub notes: Option<String>,
    /// Base volume of a linked clone.
    pub parent: Option<String>,
    /// What it holds, as a token (new on allocation, copied by a full clone, kept through a
    /// rename or reassign).
    pub contents: String,
}
