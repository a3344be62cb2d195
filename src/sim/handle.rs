//! A running simulator (`SimHandle`): starting it on a listener (plain HTTP or HTTPS with a
//! self-signed certificate) with its state loaded and its access control, faults, storages,
//! mappings and bridges set up; what tests and `sim serve` read back from it; shutting it down.
//! Hand edits of the cluster (as someone at the Proxmox UI would make) are in `admin.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::state::Cluster;
use super::{
    DEFAULT_TOKEN, FaultSpec, RequestRecord, Shared, SimConfig, SimError, SimVm, SimVolume, access,
    api, faults, tls,
};

/// A running simulator.
pub struct SimHandle {
    pub(super) shared: Arc<Shared>,
    addr: SocketAddr,
    certificate_pem: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<()>,
}

/// The server task and what stops it.
struct Server {
    task: tokio::task::JoinHandle<()>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    certificate_pem: Option<String>,
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
        let mut cluster = match &config.state_file {
            Some(path) if path.exists() => {
                Cluster::load(path).map_err(|source| SimError::LoadState {
                    path: path.clone(),
                    source,
                })?
            }
            _ => Cluster::new(config.nodes),
        };
        for pool in &config.pools {
            cluster.pools.entry(pool.clone()).or_default();
        }
        let addr = listener.local_addr().map_err(SimError::Listen)?;
        let access = access_control(&config)?;
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
        let server = serve(&shared, listener).await?;
        let handle = SimHandle {
            shared,
            addr,
            certificate_pem: server.certificate_pem,
            shutdown: Some(server.shutdown),
            server: server.task,
        };
        for spec in cluster_faults {
            handle.inject(spec)?;
        }
        let config = &handle.shared.config;
        let (mappings, bridges, storages) = (
            config.pci_mappings.clone(),
            config.bridges.clone(),
            config.storages.clone(),
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
        // A state file may already hold them from an earlier run.
        for container in handle.shared.config.containers.clone() {
            let vmid = container.vmid;
            if !handle.shared.read(|c| c.containers.contains_key(&vmid)) {
                handle.insert_container(container)?;
            }
        }
        Ok(handle)
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

    /// The volumes each task allocated under its storages' locks (the lock model's count), by
    /// UPID; tasks that allocated nothing are left out.
    pub fn allocations_by_task(&self) -> BTreeMap<String, usize> {
        self.shared.read(|cluster| {
            cluster
                .tasks
                .values()
                .map(|task| (task.upid.clone(), task.allocated.values().sum()))
                .filter(|(_, volumes)| *volumes > 0)
                .collect()
        })
    }

    /// The volumes allocated under each storage lock so far (the lock model's count), by the
    /// lock's key: a shared storage's name (one lock for the cluster), `storage@node` for a
    /// local storage.
    pub fn allocations_by_lock(&self) -> BTreeMap<String, usize> {
        self.shared.read(|cluster| {
            let mut out = BTreeMap::new();
            for (key, volumes) in cluster.tasks.values().flat_map(|task| &task.allocated) {
                *out.entry(key.clone()).or_default() += volumes;
            }
            out
        })
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
                    contents: v.contents.clone(),
                })
                .collect()
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

/// The configured tokens, roles and ACLs, checked: every privilege of a custom role exists,
/// every ACL names a known role.
fn access_control(config: &SimConfig) -> Result<access::AccessControl, SimError> {
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
    Ok(access::AccessControl {
        acls: config.acls.clone(),
        roles,
        tokens,
    })
}

/// Serve the API on `listener` until told to stop (HTTPS with a fresh self-signed certificate
/// when the configuration asks for TLS).
async fn serve(
    shared: &Arc<Shared>,
    listener: tokio::net::TcpListener,
) -> Result<Server, SimError> {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let router = api::router(Arc::clone(shared));
    if !shared.config.tls {
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        return Ok(Server {
            task,
            shutdown: tx,
            certificate_pem: None,
        });
    }
    let certificate = tls::self_signed()?;
    let rustls_config = tls::server_config(&certificate).await?;
    let std_listener = listener.into_std().map_err(SimError::Listen)?;
    let server = axum_server::from_tcp(std_listener)
        .map_err(SimError::Listen)?
        .acceptor(tls::acceptor(rustls_config));
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        let _ = rx.await;
        stopper.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let task = tokio::spawn(async move {
        let _ = server
            .handle(handle)
            .serve(router.into_make_service())
            .await;
    });
    Ok(Server {
        task,
        shutdown: tx,
        certificate_pem: Some(certificate.cert_pem),
    })
}
