//! The run's lease around `apply` and `destroy` (`crate::lease`): which project a command
//! line is about, taking the lease before anything is observed or written (the loser stops
//! here, naming the holder), saying when a dead run's lease was taken over, and releasing it
//! however the run ended.

use std::path::Path;
use std::time::Duration;

use super::{CommandError, Connection, Io};
use crate::cli::ApplyArgs;
use crate::lease::{self, Claim, Lease, Released, TakeOver};

/// The lease a run holds, if its project could be read (when it cannot, the command fails on
/// the spec before any write, so there is nothing to guard).
pub struct RunLease(Option<Lease>);

/// The project of a spec file, read quietly (the command reads it again and reports its
/// warnings and errors).
pub fn project_of_spec(file: &Path) -> Option<String> {
    let text = crate::spec::read_spec_text(file).ok()?;
    crate::spec::load_str(&text, file)
        .ok()
        .map(|loaded| loaded.spec.project)
}

/// The project `apply` is about: its saved plan's, or its spec's.
pub fn project_of_apply(args: &ApplyArgs) -> Option<String> {
    match &args.plan_file {
        Some(file) => {
            let text = std::fs::read_to_string(file).ok()?;
            crate::saved::SavedPlan::from_json(&text)
                .ok()
                .map(|saved| saved.plan.project)
        }
        None => project_of_spec(&args.spec.file),
    }
}

/// Take the project's lease for this process, for `lease_seconds` (renewed every third).
///
/// # Errors
/// The lease is held by another run (exit 1, naming it), or the requests failed.
pub async fn hold(
    conn: &Connection,
    project: Option<String>,
    lease_seconds: u32,
    io: &mut Io<'_>,
) -> Result<RunLease, CommandError> {
    let Some(project) = project else {
        return Ok(RunLease(None));
    };
    let claim = Claim::this_process(&conn.client, Duration::from_secs(u64::from(lease_seconds)));
    let lease = lease::acquire(&conn.client, &project, &claim).await?;
    conn.client
        .lease_taken(lease.pool(), lease.taken_over().is_some());
    if let Some((previous, why)) = lease.taken_over() {
        let why = match why {
            TakeOver::Expired => format!("it expired at {}", lease::rfc3339(previous.expires)),
            TakeOver::ProcessGone => format!(
                "the run that held it (pid {}) is gone from this host",
                previous.pid
            ),
        };
        let _ = writeln!(
            io.err,
            "note: took over the lease {} of project `{project}` from {previous}: {why}",
            lease.pool()
        );
        let previous = previous.clone();
        if let Err(err) = await_tasks_left(&conn.client, &previous, io).await {
            release(RunLease(Some(lease)), io).await;
            return Err(err);
        }
    }
    Ok(RunLease(Some(lease)))
}

/// How long the tasks a run left running are waited for before giving up.
const TASKS_LEFT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Wait for the tasks that the run whose lease was taken over started and left running
/// (killed, it could not wait for them; or it gave up waiting, and left its lease expired for
/// this: `lease::Released::LeftForTasks`): Proxmox runs a task to its end whoever asked for it,
/// so a VM that run was destroying is still listed, unlocked, until its `qmdestroy` ends.
/// Observed before that, it would be planned for as if it stayed. One listing a node,
/// narrowed to the run's token and to tasks started since it took the lease; a node that
/// cannot be listed is said and passed over (a step that meets its task then fails on the
/// VM's lock, and the next run plans again).
///
/// # Errors
/// The nodes cannot be listed; a task still runs after `TASKS_LEFT_TIMEOUT`.
async fn await_tasks_left(
    client: &crate::pve::PveClient,
    previous: &lease::Holder,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    let nodes = client.nodes().await.map_err(|source| CommandError::Pve {
        context: "list the nodes, for the tasks the previous run left".to_string(),
        source: Box::new(source),
    })?;
    // The node's clock may differ from the holder's: look a minute further back.
    let since = u64::try_from(previous.since.unix_timestamp() - 60).unwrap_or(0);
    let mut left = Vec::new();
    for node in nodes.iter().filter(|node| node.online) {
        match client
            .running_tasks_of(&node.name, &previous.holder, since)
            .await
        {
            Ok((running, complete)) => {
                if !complete {
                    let _ = writeln!(
                        io.err,
                        "warning: node {} lists more running tasks than were read; waiting for those listed",
                        node.name
                    );
                }
                left.extend(running);
            }
            Err(err) => {
                let _ = writeln!(
                    io.err,
                    "warning: cannot list the tasks the previous run may have left on node {} ({err}); going on",
                    node.name
                );
            }
        }
    }
    if left.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = left
        .iter()
        .map(|upid| match upid.id() {
            "" => format!("{} on {}", upid.task_type(), upid.node()),
            id => format!("{} {id} on {}", upid.task_type(), upid.node()),
        })
        .collect();
    let _ = writeln!(
        io.err,
        "waiting for {} task(s) the previous run left running: {}",
        left.len(),
        named.join(", ")
    );
    let deadline = tokio::time::Instant::now() + TASKS_LEFT_TIMEOUT;
    for upid in &left {
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.wait_task(upid, timeout).await {
            // However it ended, what it left is observed next.
            Ok(_) | Err(crate::pve::PveError::TaskFailed { .. }) => {}
            Err(source) => {
                return Err(CommandError::Pve {
                    context: format!(
                        "the previous run's task {upid} has not ended; stop it or wait for it, then run again"
                    ),
                    source: Box::new(source),
                });
            }
        }
    }
    Ok(())
}

/// Release the lease, whatever the run's result; a failure is a warning (the lease then
/// expires on its own).
pub async fn release(lease: RunLease, io: &mut Io<'_>) {
    let Some(lease) = lease.0 else {
        return;
    };
    let pool = lease.pool().to_string();
    match lease.release().await {
        Ok(Released::Deleted) => {}
        Ok(Released::LeftForTasks(tasks)) => {
            let tasks: Vec<String> = tasks.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                io.err,
                "note: {} task(s) this run stopped waiting for still run ({}); the lease {pool} is left, expired, so that the next run waits for them before it looks at the cluster",
                tasks.len(),
                tasks.join(", ")
            );
        }
        Ok(Released::NotOurs(holder)) => {
            let now = holder.map_or_else(|| "nobody".to_string(), |h| h.to_string());
            let _ = writeln!(
                io.err,
                "warning: the lease {pool} was no longer this run's (now: {now}); left as it is"
            );
        }
        Err(err) => {
            let _ = writeln!(
                io.err,
                "warning: cannot release the lease ({err}); it expires on its own"
            );
        }
    }
}
