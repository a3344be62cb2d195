//! One run at a time per project: the lease an `apply` or `destroy` holds in the cluster
//! itself while it runs. The lease is a resource pool, `proxfleet-lease-<project>`, made with
//! `POST /pools`, which Proxmox runs under `lock_user_config` (a pmxcfs lock) and refuses for
//! an id that exists, so of two runs exactly one makes it (`ARCHITECTURE.md`, "The lease").
//! Its comment names the holder (`holder.rs`); a background task renews it every third of its
//! lifetime; it is deleted when the run ends. A lease whose expiry has passed, or on this host
//! whose process is gone, is taken over. Nothing here prints: the caller says what happened.

mod holder;

use std::time::Duration;

use time::OffsetDateTime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::pve::{PveClient, PveError, Upid};

pub use holder::{BadComment, Holder, POOL_PREFIX, UNKNOWN_HOST, pool_id, rfc3339, this_host};

/// How long a lease lasts without renewal unless told otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(120);

/// The runs of this process that hold a lease now (their run ids). A lease this process's pid
/// holds under a run id not listed here belongs to a run that ended without releasing it
/// (its future was dropped: the in-process counterpart of a killed process).
static LIVE_RUNS: std::sync::Mutex<std::collections::BTreeSet<String>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn set_live(run: &str, live: bool) {
    let mut runs = LIVE_RUNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if live {
        runs.insert(run.to_string());
    } else {
        runs.remove(run);
    }
}

/// Whether the run that holds `found` is known to be gone: on this host, its process no longer
/// exists, or it is this process and none of its runs by that id is alive.
fn run_gone(found: &Holder, claim: &Claim) -> bool {
    if claim.host == UNKNOWN_HOST || found.host != claim.host {
        return false;
    }
    if found.pid == std::process::id() {
        let runs = LIVE_RUNS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        return !runs.contains(&found.run);
    }
    found.process_gone_on(&claim.host)
}

/// How many times `acquire` tries again after finding the lease gone or taken over between
/// two of its requests.
const ATTEMPTS: usize = 4;

/// Why a lease could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another run holds it.
    #[error(
        "project `{project}` is locked by another run: lease {pool} held by {holder}; \
         wait for it to finish, or if it is gone, run `proxfleet unlock` for this spec"
    )]
    Held {
        /// The project.
        project: String,
        /// The lease pool.
        pool: String,
        /// Who holds it.
        holder: Box<Holder>,
    },
    /// A pool with the lease's id exists, but its comment is not a lease proxfleet wrote.
    #[error(
        "project `{project}` is locked: pool {pool} exists and its comment is not a proxfleet lease ({why}: {comment:?}); \
         `proxfleet unlock` removes it"
    )]
    Unreadable {
        /// The project.
        project: String,
        /// The lease pool.
        pool: String,
        /// Its comment.
        comment: String,
        /// Why it does not read.
        why: BadComment,
    },
    /// The lease kept changing hands while it was being taken.
    #[error(
        "project `{project}`: lease {pool} changed hands {ATTEMPTS} times while being taken; try again"
    )]
    Contended {
        /// The project.
        project: String,
        /// The lease pool.
        pool: String,
    },
    /// The token may not make the lease pool.
    #[error(
        "cannot take the lease {pool}: {source}; the token needs Pool.Allocate on /pool (`proxfleet check` lists what is missing)"
    )]
    Forbidden {
        /// The lease pool.
        pool: String,
        /// The refusal.
        source: Box<PveError>,
    },
    /// A request about the lease failed.
    #[error("lease {pool}: {source}")]
    Pve {
        /// The lease pool.
        pool: String,
        /// The client error.
        source: Box<PveError>,
    },
}

/// Why a lease was taken over from its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeOver {
    /// Its expiry had passed.
    Expired,
    /// It was held on this host by a process that no longer exists (or by a run of this
    /// process that ended without releasing it).
    ProcessGone,
}

/// What the run that takes a lease is: who, where, for how long.
#[derive(Debug, Clone)]
pub struct Claim {
    /// The API user or token (`user@realm!token`).
    pub holder: String,
    /// This host's name.
    pub host: String,
    /// This process.
    pub pid: u32,
    /// How long the lease lasts without renewal; renewed every third of it.
    pub lifetime: Duration,
}

impl Claim {
    /// This process, with `client`'s token, for `lifetime`.
    pub fn this_process(client: &PveClient, lifetime: Duration) -> Claim {
        Claim {
            holder: client.token_id().to_string(),
            host: this_host(),
            pid: std::process::id(),
            lifetime,
        }
    }

    fn holder_at(&self, run: &str, since: OffsetDateTime, now: OffsetDateTime) -> Holder {
        Holder {
            holder: self.holder.clone(),
            host: self.host.clone(),
            pid: self.pid,
            run: run.to_string(),
            since,
            expires: now + self.lifetime,
        }
    }
}

/// A lease this run holds. Renewed in the background until `release`; dropping it without
/// releasing stops the renewal and leaves the lease to expire.
pub struct Lease {
    pool: String,
    holder: Holder,
    taken_over: Option<(Holder, TakeOver)>,
    stop: CancellationToken,
    renewal: Option<JoinHandle<()>>,
    client: PveClient,
}

/// What `release` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// The lease was deleted.
    Deleted,
    /// The lease was no longer this run's (taken over, or unlocked): left alone.
    NotOurs(Option<Holder>),
    /// Tasks the run stopped waiting for still run: the lease is left in place, expired, so
    /// that the next run takes it over and waits for them before it looks at the cluster.
    LeftForTasks(Vec<Upid>),
}

impl Lease {
    /// The lease pool's id.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// This run as the lease names it.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }

    /// The run this lease was taken over from, and why.
    pub fn taken_over(&self) -> Option<&(Holder, TakeOver)> {
        self.taken_over.as_ref()
    }

    /// Stop renewing and delete the lease, if it is still this run's; when tasks this run
    /// stopped waiting for still run, leave it expired instead (`Released::LeftForTasks`).
    ///
    /// # Errors
    /// A failed read or delete (the lease then expires on its own).
    pub async fn release(mut self) -> Result<Released, LeaseError> {
        self.stop.cancel();
        if let Some(renewal) = self.renewal.take() {
            let _ = renewal.await;
        }
        let pool = self.pool.clone();
        let pve = |source| LeaseError::Pve {
            pool: pool.clone(),
            source: Box::new(source),
        };
        let current = self.client.pool_comment(&pool).await.map_err(pve)?;
        let current = current.and_then(|text| Holder::decode(&text).ok());
        if current.as_ref().map(|h| &h.run) != Some(&self.holder.run) {
            return Ok(Released::NotOurs(current));
        }
        let running = self.still_running_given_up().await;
        if !running.is_empty() {
            let expired = Holder {
                expires: OffsetDateTime::now_utc(),
                ..self.holder.clone()
            };
            self.client
                .set_pool_comment(&pool, &expired.encode())
                .await
                .map_err(pve)?;
            return Ok(Released::LeftForTasks(running));
        }
        self.client.delete_pool(&pool).await.map_err(pve)?;
        Ok(Released::Deleted)
    }

    /// The tasks this run's waits gave up on that still run (or cannot be looked at): one
    /// status read each.
    async fn still_running_given_up(&self) -> Vec<Upid> {
        let mut running = Vec::new();
        for upid in self.client.tasks_given_up() {
            match self.client.task_status(&upid).await {
                Ok(status) if !status.running => {}
                _ => running.push(upid),
            }
        }
        running
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
        set_live(&self.holder.run, false);
    }
}

/// Take `project`'s lease for the run `claim` describes, or say who holds it.
///
/// # Errors
/// `Held` (another live run holds it), `Unreadable` (a pool of that id that is not a lease),
/// `Contended`, and failed requests.
pub async fn acquire(
    client: &PveClient,
    project: &str,
    claim: &Claim,
) -> Result<Lease, LeaseError> {
    let pool = pool_id(project);
    let pve = |source| LeaseError::Pve {
        pool: pool.clone(),
        source: Box::new(source),
    };
    let run = format!("{:08x}", rand::random::<u32>());
    let since = OffsetDateTime::now_utc();
    let mut taken_over = None;
    for _ in 0..ATTEMPTS {
        let mine = claim.holder_at(&run, since, OffsetDateTime::now_utc());
        let made = match client.create_pool(&pool, &mine.encode()).await {
            Ok(made) => made,
            // The request went out once and its answer was lost: the pool says whether it
            // was made, and by whom.
            Err(err) if err.is_transient() => {
                let now = client.pool_comment(&pool).await.map_err(pve)?;
                match now.map(|text| Holder::decode(&text)) {
                    Some(Ok(found)) if found.run == run => true,
                    Some(_) => false,
                    None => continue,
                }
            }
            Err(err @ PveError::Http { status: 403, .. }) => {
                return Err(LeaseError::Forbidden {
                    pool,
                    source: Box::new(err),
                });
            }
            Err(err) => return Err(pve(err)),
        };
        if made {
            return Ok(start(client, pool, mine, taken_over, claim.lifetime));
        }
        let Some(text) = client.pool_comment(&pool).await.map_err(pve)? else {
            // Released between the two requests: try to make it again.
            continue;
        };
        let found = Holder::decode(&text).map_err(|why| LeaseError::Unreadable {
            project: project.to_string(),
            pool: pool.clone(),
            comment: text.clone(),
            why,
        })?;
        let why = if found.expired_at(OffsetDateTime::now_utc()) {
            TakeOver::Expired
        } else if run_gone(&found, claim) {
            TakeOver::ProcessGone
        } else {
            return Err(LeaseError::Held {
                project: project.to_string(),
                pool,
                holder: Box::new(found),
            });
        };
        // Read once more just before deleting, so that a lease another taker made in the
        // meantime is not deleted for the stale one it replaced; then race on the create.
        if client.pool_comment(&pool).await.map_err(pve)?.as_deref() == Some(text.as_str()) {
            client.delete_pool(&pool).await.map_err(pve)?;
            taken_over = Some((found, why));
        }
    }
    Err(LeaseError::Contended {
        project: project.to_string(),
        pool,
    })
}

/// Start renewing a lease just made.
fn start(
    client: &PveClient,
    pool: String,
    holder: Holder,
    taken_over: Option<(Holder, TakeOver)>,
    lifetime: Duration,
) -> Lease {
    set_live(&holder.run, true);
    let stop = CancellationToken::new();
    let renewal = tokio::spawn(renew(
        client.clone(),
        pool.clone(),
        holder.clone(),
        lifetime,
        stop.clone(),
    ));
    Lease {
        pool,
        holder,
        taken_over,
        stop,
        renewal: Some(renewal),
        client: client.clone(),
    }
}

/// Every third of the lifetime, move the expiry on, as long as the lease is still this run's;
/// a failed renewal is tried again at the next tick (two more before the lease runs out).
async fn renew(
    client: PveClient,
    pool: String,
    holder: Holder,
    lifetime: Duration,
    stop: CancellationToken,
) {
    let period = lifetime / 3;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(period) => {}
        }
        match client.pool_comment(&pool).await {
            Ok(Some(text)) if Holder::decode(&text).is_ok_and(|h| h.run == holder.run) => {}
            Ok(found) => {
                tracing::warn!(
                    pool,
                    found = found.as_deref().unwrap_or("no lease"),
                    "the run's lease was taken away (unlocked or taken over): another run may now change this project"
                );
                return;
            }
            Err(err) => {
                tracing::warn!(pool, %err, "cannot read the run's lease to renew it");
                continue;
            }
        }
        let renewed = Holder {
            expires: OffsetDateTime::now_utc() + lifetime,
            ..holder.clone()
        };
        if let Err(err) = client.set_pool_comment(&pool, &renewed.encode()).await {
            tracing::warn!(pool, %err, "cannot renew the run's lease");
        }
    }
}

/// Who holds `project`'s lease: `None` when nobody does; the comment, or why it does not read.
///
/// # Errors
/// A failed read.
pub async fn current(
    client: &PveClient,
    project: &str,
) -> Result<Option<Result<Holder, (String, BadComment)>>, LeaseError> {
    let pool = pool_id(project);
    let text = client
        .pool_comment(&pool)
        .await
        .map_err(|source| LeaseError::Pve {
            pool: pool.clone(),
            source: Box::new(source),
        })?;
    Ok(text.map(|text| Holder::decode(&text).map_err(|why| (text, why))))
}

/// Delete `project`'s lease whoever holds it (`proxfleet unlock`). Returns whether there was
/// one.
///
/// # Errors
/// A failed delete.
pub async fn remove(client: &PveClient, project: &str) -> Result<bool, LeaseError> {
    let pool = pool_id(project);
    client
        .delete_pool(&pool)
        .await
        .map_err(|source| LeaseError::Pve {
            pool,
            source: Box::new(source),
        })
}
