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
    }
    Ok(RunLease(Some(lease)))
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
