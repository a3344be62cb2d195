//! `proxfleet apply` and `proxfleet destroy`: show the plan, ask, execute, report. `apply FILE`
//! applies a saved plan without asking, after proving it is not stale.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::progress::Progress;
use super::{CommandError, Connection, Io, confirm, load_spec, parse_spec};
use crate::apply::{ApplyOptions, ApplyReport, StepResult, apply};
use crate::cli::{ApplyArgs, DestroyArgs};
use crate::graph::DesiredGraph;
use crate::ownership::ResourceKind;
use crate::plan::{Plan, Reach};
use crate::report::{RunCommand, RunReport};
use crate::saved::{ClusterFingerprint, Drift, FileFingerprint, SavedPlan, sha256_hex};
use crate::state::ActualState;
use crate::target::{self, Request};
use crate::{diff, observe, render, saved};

/// Converge the cluster to the spec, or apply a saved plan, holding the project's lease.
///
/// # Errors
/// Spec errors, the lease held by another run, observation failures, unknown addresses,
/// conflicts, a declined confirmation, failed changes; for a saved plan, an unreadable file or
/// a stale plan.
pub async fn run_apply(
    args: &ApplyArgs,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    let project = super::lease::project_of_apply(args);
    let lease = super::lease::hold(conn, project, args.lease_seconds, io).await?;
    let result = apply_leased(args, conn, io).await;
    super::lease::release(lease, io).await;
    result
}

async fn apply_leased(
    args: &ApplyArgs,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    if let Some(file) = &args.plan_file {
        return apply_saved(file, args, conn, io).await;
    }
    let request = super::plan::request_of(&args.select, &args.replace);
    let planned = super::plan::make_plan(&args.spec.file, &request, conn, io).await?;
    let plan = &planned.plan;
    let reporting = Reporting::new(RunCommand::Apply, args.json, None);
    show_plan(io, plan, args.json, args.no_color);
    if !plan.conflicts.is_empty() {
        reporting.unexecuted(io, plan);
        return Err(CommandError::Conflicts(render::conflicts_text(plan)));
    }
    if plan.is_empty() {
        reporting.unexecuted(io, plan);
        return Ok(());
    }
    if !args.auto_approve {
        approve(io, "Do you want to perform these actions?", args.json)?;
    }
    execute(
        conn,
        plan,
        &planned.desired,
        &planned.actual,
        options_of(
            conn,
            &planned.loaded.spec.ssh,
            args.parallelism,
            args.shutdown_timeout,
            Some(args.storage_parallelism),
        ),
        &reporting,
        io,
    )
    .await
}

/// Apply a saved plan: re-read the spec and check its bytes, re-observe the cluster and compare
/// fingerprints, make the plan again and compare it; apply only if nothing moved.
async fn apply_saved(
    file: &Path,
    args: &ApplyArgs,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    let text = std::fs::read_to_string(file).map_err(|source| CommandError::Io {
        context: format!("cannot read the saved plan {}", file.display()),
        source,
    })?;
    let saved = SavedPlan::from_json(&text).map_err(|source| CommandError::SavedPlan {
        file: file.to_path_buf(),
        source,
    })?;
    let provenance = &saved.saved;
    let spec_path = PathBuf::from(&provenance.spec.file.path);
    let replan = format!(
        "{} plan -f {}{} --out {}",
        conn.command_prefix(),
        spec_path.display(),
        render::request_flags(&provenance.request),
        file.display()
    );
    let stale =
        |drift: &[Drift]| CommandError::StalePlan(render::stale_plan_text(file, drift, &replan));

    // The spec and the files it reads, byte for byte.
    let mut drift = Vec::new();
    let spec_text = match crate::spec::read_spec_text(&spec_path) {
        Ok(text) => {
            drift.extend(file_drift(&provenance.spec.file, text.as_bytes()));
            Some(text)
        }
        Err(err) => {
            let err = match err {
                crate::spec::SpecError::Read { source, .. } => source,
                other => std::io::Error::other(other.to_string()),
            };
            drift.push(unreadable(&provenance.spec.file, &err));
            None
        }
    };
    for reference in &provenance.spec.references {
        match std::fs::read(&reference.path) {
            Ok(bytes) => drift.extend(file_drift(reference, &bytes)),
            Err(err) => drift.push(unreadable(reference, &err)),
        }
    }
    let Some(spec_text) = spec_text.filter(|_| drift.is_empty()) else {
        return Err(stale(&drift));
    };

    // The cluster, fingerprint by fingerprint; then the plan it gives now.
    let loaded = parse_spec(&spec_text, &spec_path, io)?;
    let desired = DesiredGraph::build(&loaded.spec);
    let actual = observe::observe(&conn.client, &desired)
        .await
        .map_err(Box::new)?;
    drift.extend(saved::cluster_drift(
        &provenance.cluster,
        &ClusterFingerprint::of(&actual, &desired),
    ));
    match target::resolve(&provenance.request, &desired, &actual, Reach::Dependencies) {
        Ok(options) => {
            let fresh = diff::diff_with(&desired, &actual, &options);
            drift.extend(saved::plan_drift(&saved.plan, &fresh));
        }
        Err(unknown) => drift.push(Drift::UnknownAddresses(unknown)),
    }
    if !drift.is_empty() {
        return Err(stale(&drift));
    }

    let plan = &saved.plan;
    let reporting = Reporting::new(
        RunCommand::Apply,
        args.json,
        Some(file.display().to_string()),
    );
    if !plan.conflicts.is_empty() {
        reporting.unexecuted(io, plan);
        return Err(CommandError::Conflicts(render::conflicts_text(plan)));
    }
    if plan.is_empty() {
        show_plan(io, plan, args.json, args.no_color);
        reporting.unexecuted(io, plan);
        return Ok(());
    }
    let header = render::saved_plan_header(file, plan);
    let _ = human_stream(io, args.json).write_all(header.as_bytes());
    execute(
        conn,
        plan,
        &desired,
        &actual,
        options_of(
            conn,
            &loaded.spec.ssh,
            args.parallelism,
            args.shutdown_timeout,
            Some(args.storage_parallelism),
        ),
        &reporting,
        io,
    )
    .await
}

fn file_drift(saved: &FileFingerprint, bytes: &[u8]) -> Option<Drift> {
    let now = sha256_hex(bytes);
    (now != saved.sha256).then(|| Drift::FileChanged {
        saved: saved.clone(),
        now,
    })
}

fn unreadable(saved: &FileFingerprint, err: &std::io::Error) -> Drift {
    Drift::FileUnreadable {
        path: saved.path.clone(),
        error: err.to_string(),
    }
}

/// Delete what the spec's project owns (or the selected part of it), holding the project's
/// lease.
///
/// # Errors
/// Spec errors, the lease held by another run, observation failures, unknown addresses, a
/// declined confirmation, failed changes.
pub async fn run_destroy(
    args: &DestroyArgs,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    let project = super::lease::project_of_spec(&args.spec.file);
    let lease = super::lease::hold(conn, project, args.lease_seconds, io).await?;
    let result = destroy_leased(args, conn, io).await;
    super::lease::release(lease, io).await;
    result
}

async fn destroy_leased(
    args: &DestroyArgs,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    let loaded = load_spec(&args.spec.file, io)?;
    let desired = DesiredGraph::build(&loaded.spec);
    // A clone an interrupted apply left its task making must be finished to be destroyed.
    let actual = super::observe_settled(&conn.client, &desired, io).await?;
    let request = Request {
        targets: args.targets.clone(),
        only: args.only.iter().map(|&k| k.into()).collect(),
        skip: args.skip.iter().map(|&k| k.into()).collect(),
        replace: Vec::new(),
        allow_reboot: false,
    };
    let options = target::resolve(&request, &desired, &actual, Reach::Dependants)?;
    // Images are cached for the next build: deleted only when asked for by name or kind.
    let images_asked = options.targeting.as_ref().is_some_and(|t| {
        t.only.contains(&ResourceKind::Image)
            || t.targets.iter().any(|k| k.kind == ResourceKind::Image)
    });
    let plan = diff::destroy_with(
        &desired,
        &actual,
        args.include_images || images_asked,
        &options,
    );
    let reporting = Reporting::new(RunCommand::Destroy, args.json, None);
    show_plan(io, &plan, args.json, args.no_color);
    // Refused as `plan` and `apply` refuse it: nothing is deleted while something is in doubt.
    if !plan.conflicts.is_empty() {
        reporting.unexecuted(io, &plan);
        return Err(CommandError::Conflicts(render::conflicts_text(&plan)));
    }
    if plan.is_empty() {
        reporting.unexecuted(io, &plan);
        return Ok(());
    }
    if !args.auto_approve {
        let what = if plan.targeting.is_some() {
            "the selected resources"
        } else {
            "all resources"
        };
        let question = format!(
            "Do you really want to destroy {what} of project `{}`?\n  proxfleet will destroy everything shown above. There is no undo.",
            plan.project
        );
        approve(io, &question, args.json)?;
    }
    execute(
        conn,
        &plan,
        &desired,
        &actual,
        options_of(
            conn,
            &loaded.spec.ssh,
            args.parallelism,
            args.shutdown_timeout,
            None,
        ),
        &reporting,
        io,
    )
    .await
}

/// How the executor runs, from the command line; snippets go where `ssh` says (or, on the
/// embedded simulator, into its directories). `storage_parallelism` is apply's flag (destroy
/// allocates nothing and keeps the default).
fn options_of(
    conn: &Connection,
    ssh: &crate::spec::SshSettings,
    parallelism: u16,
    shutdown_timeout: u32,
    storage_parallelism: Option<u16>,
) -> ApplyOptions {
    let defaults = ApplyOptions::default();
    ApplyOptions {
        parallelism: usize::from(parallelism),
        storage_parallelism: storage_parallelism.map_or(defaults.storage_parallelism, usize::from),
        shutdown_timeout: std::time::Duration::from_secs(u64::from(shutdown_timeout)),
        snippets: Some(conn.snippet_store(ssh)),
        ..defaults
    }
}

async fn execute(
    conn: &Connection,
    plan: &Plan,
    desired: &DesiredGraph,
    actual: &ActualState,
    options: ApplyOptions,
    reporting: &Reporting,
    io: &mut Io<'_>,
) -> Result<(), CommandError> {
    // Progress goes to the process's stderr as it happens (events come from several tasks at
    // once, so the sink cannot borrow `io`).
    let progress = Progress::new(io.progress, plan.changes.len());
    let say = Arc::clone(&progress);
    io.interrupt.arm(move |text| say.line(text));
    let options = ApplyOptions {
        cancel: io.interrupt.token(),
        ..options
    };
    let report = apply(
        &conn.client,
        plan,
        desired,
        actual,
        &options,
        progress.sink(),
    )
    .await;
    progress.finish();
    reporting.executed(io, plan, &report);
    let count =
        |f: fn(&StepResult) -> bool| report.outcomes.iter().filter(|o| f(&o.result)).count();
    let cancelled = count(|r| matches!(r, StepResult::Cancelled(_)));
    if cancelled > 0 {
        return Err(CommandError::Interrupted { cancelled });
    }
    let failed = count(|r| *r != StepResult::Ok);
    if failed > 0 {
        return Err(CommandError::ChangesFailed { failed });
    }
    Ok(())
}

/// How a run reports: the human table, or with `--json` one JSON report on standard output
/// (the plan and everything else for people then go to standard error).
struct Reporting {
    command: RunCommand,
    json: bool,
    saved_plan: Option<String>,
}

impl Reporting {
    fn new(command: RunCommand, json: bool, saved_plan: Option<String>) -> Reporting {
        Reporting {
            command,
            json,
            saved_plan,
        }
    }

    /// A plan that is not executed (nothing to do, or conflicts): the text plan said it all;
    /// with `--json`, a report without results.
    fn unexecuted(&self, io: &mut Io<'_>, plan: &Plan) {
        if self.json {
            let report = RunReport::unexecuted(self.command, plan, self.saved_plan.clone());
            let _ = io.out.write_all(crate::report::to_json(&report).as_bytes());
        }
    }

    /// The results of an executed plan.
    fn executed(&self, io: &mut Io<'_>, plan: &Plan, report: &ApplyReport) {
        if self.json {
            let run = RunReport::executed(self.command, plan, report, self.saved_plan.clone());
            let _ = io.out.write_all(crate::report::to_json(&run).as_bytes());
            return;
        }
        let verb = match self.command {
            RunCommand::Apply => "Apply",
            RunCommand::Destroy => "Destroy",
        };
        let _ = writeln!(io.out);
        let _ = io
            .out
            .write_all(render::report_table(report, verb, io.verbose > 0).as_bytes());
    }
}

/// Where text for people goes: standard output, or standard error under `--json` (standard
/// output then carries the report alone).
fn human_stream<'a>(io: &'a mut Io<'_>, json: bool) -> &'a mut dyn std::io::Write {
    if json { &mut *io.err } else { &mut *io.out }
}

/// The plan for people: in colour on a terminal's standard output, plain on standard error
/// under `--json`.
fn show_plan(io: &mut Io<'_>, plan: &Plan, json: bool, no_color: bool) {
    let color = io.color && !no_color && !json;
    let text = render::plan_text_colored(plan, color);
    let _ = human_stream(io, json).write_all(text.as_bytes());
}

/// Ask before changing anything. `--json` does not answer the question: it is asked on
/// standard error and read from standard input as always, so an unattended run still needs
/// `--auto-approve`.
fn approve(io: &mut Io<'_>, question: &str, json: bool) -> Result<(), CommandError> {
    confirm(io, question).map_err(|err| match err {
        CommandError::NotConfirmed(message) if json => CommandError::NotConfirmed(format!(
            "{message} (--json changes where the report goes, not who approves)"
        )),
        other => other,
    })
}
