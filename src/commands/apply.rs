//! `proxfleet apply` and `proxfleet destroy`: show the plan, ask, execute, report.

use std::sync::Arc;

use super::{CommandError, Connection, Io, confirm, load_spec};
use crate::apply::{ApplyOptions, Event, EventSink, apply};
use crate::cli::{ApplyArgs, DestroyArgs};
use crate::graph::DesiredGraph;
use crate::plan::Plan;
use crate::state::ActualState;
use crate::{diff, observe, render};

/// Converge the cluster to the spec.
///
/// # Errors
/// Spec errors, observation failures, conflicts, a declined confirmation, failed changes.
pub async fn run_apply(
    args: &ApplyArgs,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    let (desired, actual, plan) = super::plan::make_plan(&args.spec.file, conn, io).await?;
    let _ = io.out.write_all(render::plan_text(&plan).as_bytes());
    if !plan.conflicts.is_empty() {
        return Err(CommandError::Conflicts(render::conflicts_text(&plan)));
    }
    if plan.is_empty() {
        return Ok(());
    }
    if !args.auto_approve {
        confirm(io, "Do you want to perform these actions?")?;
    }
    execute(
        conn,
        &plan,
        &desired,
        &actual,
        usize::from(args.parallelism),
        "Apply",
        io,
    )
    .await
}

/// Delete what the spec's project owns.
///
/// # Errors
/// Spec errors, observation failures, a declined confirmation, failed changes.
pub async fn run_destroy(
    args: &DestroyArgs,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    let loaded = load_spec(&args.spec.file, io)?;
    let desired = DesiredGraph::build(&loaded.spec);
    let actual = observe::observe(&conn.client, &desired)
        .await
        .map_err(Box::new)?;
    let plan = diff::destroy(&desired, &actual, args.include_images);
    let _ = io.out.write_all(render::plan_text(&plan).as_bytes());
    if plan.is_empty() {
        return Ok(());
    }
    if !args.auto_approve {
        let question = format!(
            "Do you really want to destroy all resources of project `{}`?\n  proxfleet will destroy everything shown above. There is no undo.",
            plan.project
        );
        confirm(io, &question)?;
    }
    execute(
        conn,
        &plan,
        &desired,
        &actual,
        usize::from(args.parallelism),
        "Destroy",
        io,
    )
    .await
}

async fn execute(
    conn: &Connection,
    plan: &Plan,
    desired: &DesiredGraph,
    actual: &ActualState,
    parallelism: usize,
    verb: &str,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    // Progress goes to stderr, one line per event, as it happens (events come from several
    // tasks at once, so the sink writes to the process's stderr, not to `io`).
    let sink: EventSink = Arc::new(|event: Event| eprintln!("{}", render::event_line(&event)));
    let options = ApplyOptions {
        parallelism,
        ..ApplyOptions::default()
    };
    let report = apply(&conn.client, plan, desired, actual, &options, sink).await;
    let _ = writeln!(io.out);
    let _ = io
        .out
        .write_all(render::report_table(&report, verb).as_bytes());
    let failed = report
        .outcomes
        .iter()
        .filter(|o| o.result != crate::apply::StepResult::Ok)
        .count();
    if failed > 0 {
        return Err(CommandError::ChangesFailed { failed });
    }
    Ok(())
}
