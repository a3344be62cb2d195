//! `proxfleet plan`: observe the cluster and show what apply would change.

use super::{CommandError, Connection, Io, load_spec};
use crate::cli::PlanArgs;
use crate::graph::DesiredGraph;
use crate::plan::Plan;
use crate::{diff, observe, render};

/// Load, observe and diff: the plan for a spec on a connection.
///
/// # Errors
/// Spec errors and observation failures.
pub async fn make_plan(
    file: &std::path::Path,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(DesiredGraph, crate::state::ActualState, Plan), CommandError> {
    let loaded = load_spec(file, io)?;
    let desired = DesiredGraph::build(&loaded.spec);
    let actual = observe::observe(&conn.client, &desired)
        .await
        .map_err(Box::new)?;
    let plan = diff::diff(&desired, &actual);
    Ok((desired, actual, plan))
}

/// Print the plan.
///
/// # Errors
/// Spec errors, observation failures, and conflicts (after printing the plan).
pub async fn run(args: &PlanArgs, conn: &Connection, io: &mut Io<'_>) -> Result<(), CommandError> {
    let (_, _, plan) = make_plan(&args.spec.file, conn, io).await?;
    let text = if args.json {
        render::plan_json(&plan)
    } else {
        render::plan_text(&plan)
    };
    let _ = io.out.write_all(text.as_bytes());
    if plan.conflicts.is_empty() {
        Ok(())
    } else {
        Err(CommandError::Conflicts(render::conflicts_text(&plan)))
    }
}
