//! A simulated Proxmox VE cluster, served over real HTTP by axum: nodes, storages with content
//! types, volumes, VMs with config, digest, lock, template flag and power state, and UPID tasks
//! that take time and end with an exit status. Requests are validated against the official API
//! schema; answers and errors use Proxmox's envelopes, status codes and wording.
//!
//! It speaks only Proxmox JSON and imports nothing from the rest of proxfleet, so it cannot
//! drift into agreeing with our client's mistakes.

mod api;
mod propstr;
mod schema;
mod state;
mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use state::Cluster;

/// The token the simulator accepts when none is configured. Not a secret: it opens only the
/// simulator, and it is documented so other tools can be pointed at it.
pub const DEFAULT_TOKEN: &str = "root@pam!proxfleet=00000000-0000-4000-8000-000000000000";

/// How the simulator is set up.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of nodes (`pve1`, `pve2`, …).
    pub nodes: usize,
    /// Accepted API tokens, `user@realm!id=secret`.
    pub tokens: Vec<String>,
    /// How long every task runs.
    pub task_duration: Duration,
    /// Added latency per request.
    pub latency: Duration,
    /// Where the state is loaded from and saved to.
    pub state_file: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate (see `SimHandle::certificate_pem`).
    pub tls: bool,
    /// Users who may log in with a password (`POST /access/ticket`), as `user@realm:password`.
    pub users: Vec<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            nodes: 1,
            tokens: vec![DEFAULT_TOKEN.to_string()],
            task_duration: Duration::from_millis(20),
            latency: Duration::ZERO,
            state_file: None,
            tls: false,
            users: Vec::new(),
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
    pub cluster: Mutex<Cluster>,
    pub tickets: Mutex<BTreeMap<String, Session>>,
    pub config: SimConfig,
    pub requests: Mutex<Vec<RequestRecord>>,
    pub running_tasks: Mutex<tokio::task::JoinSet<()>>,
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
        let addr = listener.local_addr().map_err(SimError::Listen)?;
        let shared = Arc::new(Shared {
            cluster: Mutex::new(cluster),
            tickets: Mutex::default(),
            config,
            requests: Mutex::default(),
            running_tasks: Mutex::default(),
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
        Ok(SimHandle {
            shared,
            addr,
            certificate_pem,
            shutdown: Some(tx),
            server,
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
            .config
            .tokens
            .first()
            .cloned()
            .unwrap_or_else(|| DEFAULT_TOKEN.to_string())
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
