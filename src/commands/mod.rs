//! Commands: one file per verb, each gluing load → observe → diff → render/apply. Shared here:
//! the connection (a real cluster or the embedded simulator), the command error with its kind,
//! the confirmation prompt, and how a run is interrupted (Ctrl-C).

pub mod apply;
pub mod check;
pub mod docs;
pub mod lease;
pub mod plan;
pub mod profile;
pub mod progress;
pub mod schema;
pub mod show;
pub mod sim;
pub mod unlock;
pub mod validate;

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::cli::GlobalArgs;
use crate::graph::{DesiredGraph, Resource};
use crate::pve::{ApiToken, ClientConfig, PveClient, PveError};
use crate::sim::{SimConfig, SimHandle, SimPciMapping};
use crate::spec::{Loaded, SpecError};
use crate::state::{ActualState, ActualVm};

/// Where the embedded simulator keeps its state, relative to the working directory.
pub const SIM_STATE_FILE: &str = ".proxfleet/sim-state.json";

/// Where the embedded simulator keeps each node's `local:snippets/` (`<dir>/<node>/`), relative
/// to the working directory.
pub const SIM_SNIPPETS_DIR: &str = ".proxfleet/sim-snippets";

/// What kind of failure a command had; picks the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user's input or environment is wrong.
    User,
    /// Proxmox (or the network) failed.
    Remote,
    /// A bug or an unexpected local failure.
    Internal,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The spec is invalid.
    #[error("{0}")]
    Spec(#[from] SpecError),
    /// No cluster was named.
    #[error(
        "no Proxmox VE endpoint: set PROXMOX_VE_ENDPOINT and PROXMOX_VE_API_TOKEN (user@realm!tokenid=secret), \
         pass --endpoint, or try proxfleet on the embedded simulator with --sim"
    )]
    NoEndpoint,
    /// An endpoint but no token.
    #[error("no API token: set PROXMOX_VE_API_TOKEN to user@realm!tokenid=secret")]
    NoToken,
    /// The client could not be set up or a request failed.
    #[error("{context}: {source}")]
    Pve {
        /// What was being done.
        context: String,
        /// The client error.
        source: Box<PveError>,
    },
    /// Observing the cluster failed.
    #[error("{0}")]
    Observe(#[from] Box<crate::observe::ObserveError>),
    /// The plan has conflicts.
    #[error("{0}")]
    Conflicts(String),
    /// The user did not confirm.
    #[error("{0}")]
    NotConfirmed(String),
    /// The command line names something that does not exist.
    #[error("{0}")]
    Usage(String),
    /// `--target` or `--replace` name no resource.
    #[error("{0}")]
    UnknownAddresses(#[from] crate::target::UnknownAddresses),
    /// A saved plan cannot be read.
    #[error("cannot apply {}: {source}", file.display())]
    SavedPlan {
        /// The file.
        file: PathBuf,
        /// Why.
        source: crate::saved::SavedPlanError,
    },
    /// A saved plan no longer matches the spec or the cluster; the message says what changed.
    #[error("{0}")]
    StalePlan(String),
    /// Some changes failed; the report was printed.
    #[error("{failed} change(s) failed or were skipped")]
    ChangesFailed {
        /// How many.
        failed: usize,
    },
    /// The run was interrupted (Ctrl-C); the report was printed.
    #[error(
        "interrupted: {cancelled} change(s) cancelled, every task already running was awaited; run the same command again to finish"
    )]
    Interrupted {
        /// How many changes did not finish.
        cancelled: usize,
    },
    /// Local I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The simulator failed.
    #[error("simulator: {0}")]
    Sim(#[from] crate::sim::SimError),
    /// Preflight checks failed before `plan` or `apply`; the message lists every failure.
    #[error("{0}")]
    Preflight(String),
    /// Another run holds the project's lease, or it could not be taken.
    #[error("{0}")]
    Lease(#[from] crate::lease::LeaseError),
    /// `check` found problems; the report was printed.
    #[error("{failed} preflight check(s) failed")]
    ChecksFailed {
        /// How many.
        failed: usize,
    },
}

impl CommandError {
    /// The kind, for the exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CommandError::Spec(_)
            | CommandError::NoEndpoint
            | CommandError::NoToken
            | CommandError::Conflicts(_)
            | CommandError::NotConfirmed(_)
            | CommandError::Usage(_)
            | CommandError::UnknownAddresses(_)
            | CommandError::SavedPlan { .. }
            | CommandError::StalePlan(_)
            | CommandError::Interrupted { .. }
            | CommandError::Preflight(_)
            | CommandError::ChecksFailed { .. } => ErrorKind::User,
            CommandError::Pve { source, .. } => match source.as_ref() {
                PveError::InvalidToken { .. } | PveError::InvalidEndpoint { .. } => ErrorKind::User,
                _ => ErrorKind::Remote,
            },
            CommandError::Lease(crate::lease::LeaseError::Pve { .. }) => ErrorKind::Remote,
            CommandError::Lease(_) => ErrorKind::User,
            CommandError::Observe(_) | CommandError::ChangesFailed { .. } => ErrorKind::Remote,
            CommandError::Io { .. } | CommandError::Sim(_) => ErrorKind::Internal,
        }
    }

    /// The process exit code: 130 for an interruption (128 + SIGINT, as a shell reports a
    /// process that Ctrl-C ended), 1 for every other failure (0 is success;
    /// `--detailed-exitcode` uses 2 for "changes present").
    pub fn exit_code(&self) -> i32 {
        match self {
            CommandError::Interrupted { .. } => EXIT_INTERRUPTED,
            _ => 1,
        }
    }
}

/// The exit code of an interrupted run.
pub const EXIT_INTERRUPTED: i32 = 130;

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Success {
    /// Exit code 0.
    Done,
    /// Exit code 2: `plan --detailed-exitcode` found changes to make.
    ChangesPresent,
}

/// The process exit code of a command's result: 0 done, 1 failed, 2 changes present (only
/// `plan --detailed-exitcode` reports that).
pub fn exit_code(result: &Result<Success, CommandError>) -> i32 {
    match result {
        Ok(Success::Done) => 0,
        Ok(Success::ChangesPresent) => 2,
        Err(error) => error.exit_code(),
    }
}

/// Standard streams, injectable for tests.
pub struct Io<'a> {
    /// Data (plans, tables, JSON).
    pub out: &'a mut dyn Write,
    /// Whether `out` may carry colour (a terminal, and `NO_COLOR` not set): decided where the
    /// real stream is known; `--no-color` can still turn it off.
    pub color: bool,
    /// Progress and prompts.
    pub err: &'a mut dyn Write,
    /// Answers to prompts.
    pub input: &'a mut dyn BufRead,
    /// How apply and destroy show progress on the process's standard error.
    pub progress: progress::ProgressMode,
    /// `-v` given once or more: summaries carry the Proxmox task ids (UPIDs).
    pub verbose: u8,
    /// How a run is interrupted.
    pub interrupt: Interrupt,
}

/// How a running `apply` or `destroy` learns that it should stop: a cancellation token, fired
/// by Ctrl-C in the binary and by hand in tests. When it fires, no change starts, running
/// Proxmox tasks are awaited, the report is printed and the command exits 130.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    token: CancellationToken,
    ctrl_c: bool,
}

impl Interrupt {
    /// Interrupted by Ctrl-C. The signal is listened for only once changes start: before
    /// that, Ctrl-C ends the process as usual (nothing has been changed). A second Ctrl-C ends
    /// it at once; tasks already started go on in the cluster, and a rerun converges.
    pub fn ctrl_c() -> Interrupt {
        Interrupt {
            token: CancellationToken::new(),
            ctrl_c: true,
        }
    }

    /// Interrupted when `token` fires (tests).
    pub fn by(token: CancellationToken) -> Interrupt {
        Interrupt {
            token,
            ctrl_c: false,
        }
    }

    /// The token that stops the run.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Start listening for Ctrl-C, if this interrupt is Ctrl-C; `say` tells the user what
    /// happens.
    pub(crate) fn arm(&self, say: impl Fn(&str) + Send + 'static) {
        if !self.ctrl_c {
            return;
        }
        let token = self.token.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_err() {
                return;
            }
            say(
                "Interrupt received: no new change will start; waiting for the Proxmox tasks already running (press Ctrl-C again to stop at once).",
            );
            token.cancel();
            if tokio::signal::ctrl_c().await.is_ok() {
                say(
                    "Stopped at once: Proxmox tasks already started go on in the cluster; run the same command again to converge.",
                );
                // The user asked twice: leave now, as the default handler would have.
                std::process::exit(EXIT_INTERRUPTED);
            }
        });
    }
}

/// A connection to a cluster, possibly an embedded simulator that lives as long as it does.
pub struct Connection {
    /// The client.
    pub client: PveClient,
    sim: Option<SimHandle>,
    /// The embedded simulator's snippets directories (node → directory), written directly
    /// instead of over SFTP.
    sim_snippets: Option<std::collections::BTreeMap<String, PathBuf>>,
}

impl Connection {
    /// A connection to an already running simulator (tests).
    pub fn to_sim(sim: &SimHandle) -> Result<Connection, CommandError> {
        let client = client_for(&sim.endpoint(), &sim.token(), false, None)?;
        Ok(Connection {
            client,
            sim: None,
            sim_snippets: None,
        })
    }

    /// A connection through an existing client (tests, or a client set up by hand).
    pub fn with_client(client: PveClient) -> Connection {
        Connection {
            client,
            sim: None,
            sim_snippets: None,
        }
    }

    /// Where this connection's cloud-init snippets go: over SFTP as `ssh` says, or for the
    /// embedded simulator straight into its directories. Nothing connects until a snippet is
    /// written or removed.
    pub fn snippet_store(
        &self,
        ssh: &crate::spec::SshSettings,
    ) -> std::sync::Arc<crate::snippets::SnippetStore> {
        std::sync::Arc::new(match &self.sim_snippets {
            Some(dirs) => crate::snippets::SnippetStore::local(dirs.clone()),
            None => crate::snippets::SnippetStore::sftp(ssh.clone()),
        })
    }

    /// How to invoke proxfleet for this connection, for messages that suggest a command.
    pub fn command_prefix(&self) -> &'static str {
        if self.sim.is_some() {
            "proxfleet --sim"
        } else {
            "proxfleet"
        }
    }

    /// Close it: an embedded simulator saves its state and stops.
    pub async fn close(self) {
        if let Some(sim) = self.sim {
            sim.shutdown().await;
        }
    }
}

fn client_for(
    endpoint: &str,
    token: &str,
    insecure: bool,
    ca_file: Option<PathBuf>,
) -> Result<PveClient, CommandError> {
    let token: ApiToken = ApiToken::parse(token).map_err(|source| CommandError::Pve {
        context: "PROXMOX_VE_API_TOKEN".into(),
        source: Box::new(source),
    })?;
    PveClient::new(ClientConfig {
        endpoint: endpoint.to_string(),
        token,
        insecure,
        ca_file,
        timeout: Duration::from_secs(30),
        read_retry: crate::pve::ReadRetry::default(),
    })
    .map_err(|source| CommandError::Pve {
        context: format!("cannot use endpoint {endpoint}"),
        source: Box::new(source),
    })
}

/// Connect as the global flags say: `--sim` starts the embedded simulator (state in
/// `.proxfleet/`), otherwise the endpoint and token from flags or environment.
pub async fn connect(global: &GlobalArgs) -> Result<Connection, CommandError> {
    if global.sim {
        let state_file = PathBuf::from(SIM_STATE_FILE);
        if let Some(dir) = state_file.parent() {
            std::fs::create_dir_all(dir).map_err(|source| CommandError::Io {
                context: format!("cannot create {}", dir.display()),
                source,
            })?;
        }
        // Each node's `local:snippets/` is a directory here, written directly.
        let nodes = SimConfig::default().nodes;
        let mut snippets_dirs = std::collections::BTreeMap::new();
        for node_idx in 1..=nodes {
            let node = format!("pve{node_idx}");
            let dir = Path::new(SIM_SNIPPETS_DIR).join(&node);
            std::fs::create_dir_all(&dir).map_err(|source| CommandError::Io {
                context: format!("cannot create {}", dir.display()),
                source,
            })?;
            snippets_dirs.insert(node, dir);
        }
        let config = SimConfig {
            nodes,
            state_file: Some(state_file),
            snippets_dirs: snippets_dirs.clone(),
            task_duration: Some(Duration::from_millis(30)),
            // A GPU mapped on pve1, so that the homelab example's GPU template passes its
            // preflight checks here (a stock cluster, and `sim serve`, have no mapping).
            pci_mappings: vec![SimPciMapping::new("gpu0", &[("pve1", "0000:01:00.0")])],
            ..SimConfig::default()
        };
        let sim = SimHandle::start(config).await?;
        let client = client_for(&sim.endpoint(), &sim.token(), false, None)?;
        return Ok(Connection {
            client,
            sim: Some(sim),
            sim_snippets: Some(snippets_dirs),
        });
    }
    // Each setting: the command line or the environment first, then the profile.
    let profile = profile::load(global.profile.as_deref())?.unwrap_or_default();
    let endpoint = global
        .endpoint
        .clone()
        .or(profile.endpoint)
        .ok_or(CommandError::NoEndpoint)?;
    let token = match std::env::var("PROXMOX_VE_API_TOKEN") {
        Ok(token) if !token.trim().is_empty() => crate::secret::Secret::new(token),
        _ => profile.token.ok_or(CommandError::NoToken)?,
    };
    let insecure = global.insecure.or(profile.insecure).unwrap_or(false);
    if insecure {
        tracing::warn!(
            "TLS certificate verification is off (--insecure): anyone on the path to {endpoint} can read the API token; prefer --ca-file"
        );
    }
    let ca_file = global.ca_file.clone().or(profile.ca_file);
    let client = client_for(&endpoint, token.expose(), insecure, ca_file)?;
    Ok(Connection {
        client,
        sim: None,
        sim_snippets: None,
    })
}

/// Longest wait for VMs that tasks are still making before the cluster is compared anyway.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Observe the cluster once no VM at a vmid the spec wants is still being made by a running
/// task (`lock: create` or `clone`): a run that was interrupted or killed leaves its tasks
/// running, and until they end such a VM has no configuration, so it would look like a
/// stranger in the way. Waits (saying so) up to `SETTLE_TIMEOUT`, then compares as it is.
///
/// # Errors
/// Observation failures.
pub async fn observe_settled(
    client: &PveClient,
    desired: &DesiredGraph,
    io: &mut Io<'_>,
) -> Result<ActualState, CommandError> {
    let wanted: BTreeSet<u32> = desired
        .in_order()
        .flat_map(|resource| match resource {
            Resource::Vm(vm) => vm.vmids(),
            Resource::Image(_) => 0..0,
        })
        .collect();
    use crate::apply::poll::{PollLimits, Polled, poll_until};
    use std::cell::RefCell;
    use std::ops::ControlFlow;

    let backoff = backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(20))
        .with_max_delay(Duration::from_secs(2))
        .with_factor(2.0)
        .without_max_times();
    let limits = PollLimits {
        deadline: Some(tokio::time::Instant::now() + SETTLE_TIMEOUT),
        cancel: None,
    };
    // Shared with every probe: what was said, and where to say it.
    let told = RefCell::new(BTreeSet::new());
    let err = RefCell::new(&mut *io.err);
    let polled = poll_until(backoff, limits, || {
        let (told, err, wanted) = (&told, &err, &wanted);
        async move {
            let actual = match crate::observe::observe(client, desired).await {
                Ok(actual) => actual,
                Err(error) => return ControlFlow::Break(Err(error)),
            };
            let busy: Vec<&ActualVm> = actual
                .vms
                .values()
                .filter(|vm| vm.being_made() && wanted.contains(&vm.vmid))
                .collect();
            if busy.is_empty() {
                return ControlFlow::Break(Ok(actual));
            }
            for vm in busy {
                if told.borrow_mut().insert(vm.vmid) {
                    let _ = writeln!(
                        err.borrow_mut(),
                        "waiting for VM {} on {}: a task is still making it (lock: {}), perhaps for an interrupted run",
                        vm.vmid,
                        vm.node,
                        vm.lock.as_deref().unwrap_or_default()
                    );
                }
            }
            ControlFlow::Continue(Some(actual))
        }
    })
    .await;
    match polled {
        Polled::Done(observed) => observed.map_err(|e| CommandError::Observe(Box::new(e))),
        // Waited long enough: compare the cluster as it was last seen.
        Polled::GaveUp { last: Some(actual) } => Ok(actual),
        Polled::GaveUp { last: None } | Polled::Cancelled => {
            crate::observe::observe(client, desired)
                .await
                .map_err(|e| CommandError::Observe(Box::new(e)))
        }
    }
}

/// Load a spec, printing its warnings.
pub fn load_spec(file: &Path, io: &mut Io<'_>) -> Result<Loaded, CommandError> {
    Ok(load_spec_text(file, io)?.1)
}

/// Load a spec, printing its warnings; also return the text it was loaded from, so a saved
/// plan hashes exactly the bytes it was computed from.
pub fn load_spec_text(file: &Path, io: &mut Io<'_>) -> Result<(String, Loaded), CommandError> {
    let text = crate::spec::read_spec_text(file)?;
    let loaded = parse_spec(&text, file, io)?;
    Ok((text, loaded))
}

/// Validate spec text read from `file`, printing its warnings.
pub fn parse_spec(text: &str, file: &Path, io: &mut Io<'_>) -> Result<Loaded, CommandError> {
    let loaded = crate::spec::load_str(text, file)?;
    for warning in &loaded.warnings {
        let _ = writeln!(io.err, "warning: {}: {}", warning.path, warning.message);
    }
    Ok(loaded)
}

/// Ask for `yes`, as Terraform does; anything else (or no input) declines.
pub fn confirm(io: &mut Io<'_>, question: &str) -> Result<(), CommandError> {
    let _ = write!(
        io.err,
        "{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    );
    let _ = io.err.flush();
    let mut answer = String::new();
    let n_read = io
        .input
        .read_line(&mut answer)
        .map_err(|source| CommandError::Io {
            context: "cannot read the answer".into(),
            source,
        })?;
    let _ = writeln!(io.err);
    if n_read == 0 {
        return Err(CommandError::NotConfirmed(
            "no answer on standard input; pass --auto-approve to run without confirmation".into(),
        ));
    }
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(CommandError::NotConfirmed(
            "cancelled: nothing was changed".into(),
        ))
    }
}

/// Print request counts by endpoint (with `-v`).
pub fn report_requests(client: &PveClient, io: &mut Io<'_>) {
    let counts = client.request_counts();
    let total: u64 = counts.values().sum();
    let _ = writeln!(
        io.err,
        "requests: {total} ({} writes)",
        client.write_count()
    );
    for (endpoint, n) in counts {
        let _ = writeln!(io.err, "  {n:>5}  {endpoint}");
    }
}
