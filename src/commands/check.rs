//! `proxfleet check`: the preflight checks as a command, listing every check; and the same
//! checks as a gate before `plan` and `apply`, which stop on a failure before observing
//! anything (`--skip-checks` lets them go ahead anyway).

use std::path::{Path, PathBuf};

use super::{CommandError, Connection, Io, load_spec};
use crate::cli::{ApplyArgs, CheckArgs};
use crate::preflight::{self, Status};
use crate::saved::SavedPlan;

/// Run every check and print the report (or its JSON).
///
/// # Errors
/// Spec errors; [`CommandError::ChecksFailed`] when a check failed (after printing the report).
pub async fn run(args: &CheckArgs, conn: &Connection, io: &mut Io<'_>) -> Result<(), CommandError> {
    let loaded = load_spec(&args.spec.file, io)?;
    let report = checked(conn, &loaded.spec).await;
    let text = if args.json {
        crate::report::to_json(&crate::report::CheckDocument::of(&report))
    } else {
        preflight::text(&report)
    };
    let _ = io.out.write_all(text.as_bytes());
    match report.count(Status::Fail) {
        0 => Ok(()),
        failed => Err(CommandError::ChecksFailed { failed }),
    }
}

/// The checks before `plan` or `apply` of `spec_file`: warnings go to stderr, failures stop
/// the command with all of them listed.
///
/// # Errors
/// [`CommandError::Preflight`] when a check failed. A spec that cannot be read or is invalid
/// passes: the command itself reports that, with its warnings, once.
pub async fn gate(
    spec_file: &Path,
    skip: bool,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    if skip {
        let _ = writeln!(io.err, "warning: preflight checks skipped (--skip-checks)");
        return Ok(());
    }
    let Ok(text) = crate::spec::read_spec_text(spec_file) else {
        return Ok(());
    };
    let Ok(loaded) = crate::spec::load_str(&text, spec_file) else {
        return Ok(());
    };
    let report = checked(conn, &loaded.spec).await;
    // Warnings in one line each: they do not stop anything, and `check` explains them.
    for warned in report.checks.iter().filter(|c| c.status == Status::Warn) {
        let _ = writeln!(
            io.err,
            "warning: preflight: {}: {}",
            warned.subject, warned.message
        );
    }
    let failed = report.count(Status::Fail);
    if failed == 0 {
        tracing::info!("{}", preflight::summary(&report));
        return Ok(());
    }
    let problems = if failed == 1 {
        "a preflight check failed".to_string()
    } else {
        format!("{failed} preflight checks failed")
    };
    Err(CommandError::Preflight(format!(
        "{problems}, so nothing was observed or changed:\n{}hint: `{} check -f {}` shows every check; --skip-checks goes ahead without them",
        preflight::failures_text(&report, Status::Fail),
        conn.command_prefix(),
        spec_file.display()
    )))
}

/// The gate before `apply`: of the spec file, or of the spec a saved plan was made from.
///
/// # Errors
/// As [`gate`].
pub async fn gate_apply(
    args: &ApplyArgs,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    let spec_file = match &args.plan_file {
        Some(plan_file) => {
            let saved = std::fs::read_to_string(plan_file)
                .ok()
                .and_then(|text| SavedPlan::from_json(&text).ok());
            // An unreadable plan file is apply's to report.
            let Some(saved) = saved else {
                return Ok(());
            };
            PathBuf::from(saved.saved.spec.file.path)
        }
        None => args.spec.file.clone(),
    };
    gate(&spec_file, args.skip_checks, conn, io).await
}

/// The preflight report, with SSH reached on the nodes that get cloud-init snippets.
async fn checked(conn: &Connection, spec: &crate::spec::Spec) -> preflight::Report {
    let mut report = preflight::run(&conn.client, spec).await;
    let nodes = preflight::snippet_nodes(spec);
    if !nodes.is_empty() {
        let store = conn.snippet_store(&spec.ssh);
        let mut reached = Vec::new();
        for node in nodes {
            let result = store.reach(&node).await.map_err(|err| err.to_string());
            reached.push((node, result));
        }
        preflight::add_ssh_checks(&mut report, reached);
    }
    report
}
