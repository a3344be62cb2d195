//! A simulated Proxmox VE cluster, served over real HTTP by axum: nodes, storages with content
//! types, volumes, VMs with config, digest, lock, template flag and power state, and UPID tasks
//! that take time and end with an exit status. Requests are validated against the official API
//! schema; answers and errors use Proxmox's envelopes, status codes and wording.
//!
//! It speaks only Proxmox JSON and imports nothing from the rest of proxfleet, so it cannot
//! drift into agreeing with our client's mistakes.

mod access;
mod api;
mod faults;
mod propstr;
mod schema;
mod state;
mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use access::AclEntry;
pub use faults::{Fault, FaultAction, FaultSpec};
use state::Cluster;

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
}

/// Shared state of a running simulator.
/// A logged-in ticket.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub user: String,
    pub csrf: String,
    pub issued: u64,
}

pub(crate) struct Shared {
    /// Per storage lock (`local-lvm`, or `local-lvm@pve1` for node-local storages): when it is
    /// free again, as the queue of allocations reserved it.
    pub storage_locks: Mutex<BTreeMap<String, tokio::time::Instant>>,
    /// Tasks that failed waiting for a storage lock (for tests and `sim serve` logs).
    pub lock_timeouts: std::sync::atomic::AtomicUsize,
    pub cluster: Mutex<Cluster>,
    pub access: access::AccessControl,
    pub faults: Mutex<faults::Faults>,
    pub tickets: Mutex<BTreeMap<String, Session>>,
    pub config: SimConfig,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub running_tasks: Mutex<tokio::task::JoinSet<()>>,
    /// When each VM started through the API last booted (on the tokio clock, so a paused test
    /// clock moves it); a VM without an entry has been running for long.
    pub boots: Mutex<BTreeMap<u32, tokio::time::Instant>>,
}

impl Shared {
    /// Run `f` on the cluster under the lock, then save the state.
    pub fn mutate<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        let mut cluster = self
            .cluster
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let out = f(&mut cluster);
        if let Some(path) = &self.config.state_file
            && let Err(err) = cluster.save(path)
        {
            tracing::warn!(%err, path = %path.display(), "simulator state not saved");
        }
        out
    }

    /// Note that a VM booted (`true`) or powered off.
    pub fn note_power(&self, vmid: u32, running: bool) {
        let mut boots = self
            .boots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if running {
            boots.insert(vmid, tokio::time::Instant::now());
        } else {
            boots.remove(&vmid);
        }
    }

    /// How long ago a VM booted, when it was started through the API.
    pub fn booted_for(&self, vmid: u32) -> Option<Duration> {
        let boots = self
            .boots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        boots.get(&vmid).map(tokio::time::Instant::elapsed)
    }

    /// Read the cluster under the lock.
    pub fn read<T>(&self, f: impl FnOnce(&Cluster) -> T) -> T {
        let cluster = self
            .cluster
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&cluster)
    }
}

/// A running simulator.
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    certificate_pem: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

impl SimHandle {
    /// Start on an ephemeral loopback port.
    ///
    /// # Errors
    /// The port cannot be bound or the state file cannot be read.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(SimError::Listen)?;
        Self::start_on(config, listener).await
    }

    /// Start on a listener.
    ///
    /// # Errors
    /// The state file cannot be read.
    pub async fn start_on(
        config: SimConfig,
        listener: tokio::net::TcpListener,
    ) -> Result<SimHandle, SimError> {
        let cluster = match &config.state_file {
            Some(path) if path.exists() => {
                Cluster::load(path).map_err(|source| SimError::LoadState {
                    path: path.clone(),
                    source,
                })?
            }
            _ => Cluster::new(config.nodes),
        };
        let mut cluster = cluster;
        for pool in &config.pools {
            cluster.pools.entry(pool.clone()).or_default();
        }
        let addr = listener.local_addr().map_err(SimError::Listen)?;
        let tokens = config
            .tokens
            .iter()
            .map(|t| access::Token::parse(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SimError::Admin)?;
        let mut roles = BTreeMap::new();
        for (name, privs) in &config.roles {
            if let Some(unknown) = privs
                .iter()
                .find(|p| !access::ALL_PRIVILEGES.contains(&p.as_str()))
            {
                return Err(SimError::Admin(format!(
                    "role {name}: unknown privilege '{unknown}'"
                )));
            }
            roles.insert(name.clone(), privs.iter().cloned().collect());
        }
        for entry in &config.acls {
            if access::builtin_role(&entry.role).is_none() && !roles.contains_key(&entry.role) {
                return Err(SimError::Admin(format!(
                    "ACL on {}: unknown role '{}'",
                    entry.path, entry.role
                )));
            }
        }
        let access = access::AccessControl {
            acls: config.acls.clone(),
            roles,
            tokens,
        };
        let mut faults = faults::Faults::new(config.fault_seed);
        let mut cluster_faults = Vec::new();
        for spec in &config.faults {
            match spec {
                FaultSpec::Rule(rule) => faults.add(rule.clone()),
                other => cluster_faults.push(other.clone()),
            }
        }
        let shared = Arc::new(Shared {
            storage_locks: Mutex::default(),
            lock_timeouts: std::sync::atomic::AtomicUsize::new(0),
            cluster: Mutex::new(cluster),
            access,
            faults: Mutex::new(faults),
            tickets: Mutex::default(),
            config,
            requests: Mutex::default(),
            running_tasks: Mutex::default(),
            boots: Mutex::default(),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = api::router(Arc::clone(&shared));
        let mut certificate_pem = None;
        let server = if shared.config.tls {
            let certificate = tls::self_signed()?;
            let rustls_config = tls::server_config(&certificate).await?;
            certificate_pem = Some(certificate.cert_pem);
            let std_listener = listener.into_std().map_err(SimError::Listen)?;
            let server = axum_server::from_tcp_rustls(std_listener, rustls_config)
                .map_err(SimError::Listen)?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                let _ = rx.await;
                stopper.graceful_shutdown(Some(Duration::from_secs(5)));
            });
            tokio::spawn(async move {
                let _ = server
                    .handle(handle)
                    .serve(router.into_make_service())
                    .await;
            })
        } else {
            tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await;
            })
        };
        let handle = SimHandle {
            shared,
            addr,
            certificate_pem,
            shutdown: Some(tx),
            server,
        };
        for spec in cluster_faults {
            handle.inject(spec)?;
        }
        let (mappings, bridges, storages) = (
            handle.shared.config.pci_mappings.clone(),
            handle.shared.config.bridges.clone(),
            handle.shared.config.storages.clone(),
        );
        for storage in storages {
            handle.add_storage(storage);
        }
        for mapping in mappings {
            handle.add_pci_mapping(mapping);
        }
        for bridge in bridges {
            handle.add_bridge(bridge)?;
        }
        Ok(handle)
    }

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

    /// `http://127.0.0.1:PORT`, or `https://…` with TLS.
    pub fn endpoint(&self) -> String {
        let scheme = if self.certificate_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The self-signed certificate (PEM) a TLS simulator serves; clients trust it as their CA.
    pub fn certificate_pem(&self) -> Option<&str> {
        self.certificate_pem.as_deref()
    }

    /// The first accepted token, `user@realm!id=secret`.
    pub fn token(&self) -> String {
        self.shared
            .access
            .tokens
            .first()
            .map(|t| format!("{}={}", t.id, t.secret))
            .unwrap_or_else(|| DEFAULT_TOKEN.to_string())
    }

    /// How many tasks failed waiting for a storage lock.
    pub fn storage_lock_timeouts(&self) -> usize {
        self.shared
            .lock_timeouts
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every request served so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Forget the requests served so far.
    pub fn clear_requests(&self) {
        if let Ok(mut requests) = self.shared.requests.lock() {
            requests.clear();
        }
    }

    /// All VMs, by vmid.
    pub fn vms(&self) -> Vec<SimVm> {
        self.shared.read(|cluster| {
            cluster
                .vms
                .values()
                .map(|vm| {
                    let config = vm.effective_config();
                    SimVm {
                        vmid: vm.vmid,
                        node: vm.node.clone(),
                        name: config.get("name").cloned(),
                        template: vm.is_template(),
                        running: vm.running,
                        lock: vm.lock().map(str::to_string),
                        config,
                    }
                })
                .collect()
        })
    }

    /// All volumes.
    pub fn volumes(&self) -> Vec<SimVolume> {
        self.shared.read(|cluster| {
            cluster
                .volumes
                .iter()
                .map(|v| SimVolume {
                    node: v.node.clone(),
                    storage: v.storage.clone(),
                    volid: v.volid.clone(),
                    content: v.content.clone(),
                    size: v.size,
                    notes: v.notes.clone(),
                    parent: v.parent.clone(),
                })
                .collect()
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
            if cluster.vms.contains_key(&vmid) {
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

    /// Stop serving, let running tasks finish, and save the state.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.server).await;
        let mut tasks = match self.shared.running_tasks.lock() {
            Ok(mut tasks) => std::mem::take(&mut *tasks),
            Err(_) => tokio::task::JoinSet::new(),
        };
        while tasks.join_next().await.is_some() {}
        self.shared.mutate(|_| ());
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
