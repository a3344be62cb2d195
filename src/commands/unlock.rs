//! `proxfleet unlock`: remove a project's lease by hand, when the run that held it is gone and
//! waiting for its expiry will not do. Says whose lease it removes and asks first.

use super::{CommandError, Connection, Io, confirm, load_spec};
use crate::cli::UnlockArgs;
use crate::lease;

/// Show the project's lease and delete it (after `yes`, or at once with `--yes`).
///
/// # Errors
/// Spec errors, a declined confirmation, failed requests.
pub async fn run(
    args: &UnlockArgs,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    let project = load_spec(&args.spec.file, io)?.spec.project;
    let pool = lease::pool_id(&project);
    let holder = match lease::current(&conn.client, &project).await? {
        None => {
            let _ = writeln!(
                io.out,
                "Project `{project}` holds no lease ({pool}): nothing to unlock."
            );
            return Ok(());
        }
        Some(Ok(holder)) => {
            let state = if holder.expired_at(time::OffsetDateTime::now_utc()) {
                "expired"
            } else {
                "not expired"
            };
            format!("{holder}, {state}")
        }
        Some(Err((comment, why))) => {
            format!("a pool whose comment is not a lease ({why}): {comment:?}")
        }
    };
    let _ = writeln!(
        io.out,
        "Lease {pool} of project `{project}`: held by {holder}."
    );
    if !args.yes {
        confirm(
            io,
            &format!(
                "Do you really want to remove the lease {pool}?\n  If its run is still going, another run may then change project `{project}` at the same time."
            ),
        )?;
    }
    if lease::remove(&conn.client, &project).await? {
        let _ = writeln!(io.out, "Removed the lease {pool}.");
    } else {
        let _ = writeln!(io.out, "The lease {pool} was already gone.");
    }
    Ok(())
}
