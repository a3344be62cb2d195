//! `proxfleet plan`: observe the cluster and show what apply would change; with `--out`, save
//! the plan and what it was computed from, for `apply FILE`.

use std::path::Path;

use super::{CommandError, Connection, Io, Success, load_spec_text};
use crate::cli::{PlanArgs, SelectArgs};
use crate::graph::DesiredGraph;
use crate::plan::{Plan, Reach};
use crate::saved::{
    ClusterFingerprint, FileFingerprint, Provenance, SavedPlan, SpecFingerprint, sha256_hex,
};
use crate::spec::Loaded;
use crate::state::ActualState;
use crate::target::{self, Request};
use crate::{diff, render};

/// A plan and what it was made from.
pub struct Planned {
    /// The spec file's text, as read.
    pub spec_text: String,
    /// The spec.
    pub loaded: Loaded,
    /// Its desired graph.
    pub desired: DesiredGraph,
    /// The cluster as observed.
    pub actual: ActualState,
    /// The plan.
    pub plan: Plan,
}

/// The targeting request on a command line.
pub fn request_of(select: &SelectArgs, replace: &[String]) -> Request {
    Request {
        targets: select.targets.clone(),
        only: select.only.iter().map(|&k| k.into()).collect(),
        skip: select.skip.iter().map(|&k| k.into()).collect(),
        replace: replace.to_vec(),
        allow_reboot: select.allow_reboot,
    }
}

/// Load, observe, resolve the targeting request and diff: the plan for a spec on a connection.
///
/// # Errors
/// Spec errors, observation failures, addresses that name nothing.
pub async fn make_plan(
    file: &Path,
    request: &Request,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<Planned, CommandError> {
    let (spec_text, loaded) = load_spec_text(file, io)?;
    let desired = DesiredGraph::build(&loaded.spec);
    let actual = super::observe_settled(&conn.client, &desired, io).await?;
    let options = target::resolve(request, &desired, &actual, Reach::Dependencies)?;
    let plan = diff::diff_with(&desired, &actual, &options);
    Ok(Planned {
        spec_text,
        loaded,
        desired,
        actual,
        plan,
    })
}

/// Print the plan; with `--out`, save it.
///
/// # Errors
/// Spec errors, observation failures, unknown addresses, conflicts (after printing the plan;
/// nothing is saved then), and a plan file that cannot be written.
pub async fn run(
    args: &PlanArgs,
    conn: &Connection,
    io: &mut Io<'_>,
) -> Result<Success, CommandError> {
    let request = request_of(&args.select, &args.replace);
    let planned = make_plan(&args.spec.file, &request, conn, io).await?;
    let plan = &planned.plan;
    let text = if args.json {
        render::plan_json(plan)
    } else {
        render::plan_text_colored(plan, io.color && !args.no_color)
    };
    let _ = io.out.write_all(text.as_bytes());
    if !plan.conflicts.is_empty() {
        let mut message = render::conflicts_text(plan);
        if let Some(out) = &args.out {
            message.push_str(&format!("the plan was not saved to {}", out.display()));
        }
        return Err(CommandError::Conflicts(message));
    }
    if let Some(out) = &args.out {
        let saved = SavedPlan {
            plan: plan.clone(),
            saved: Provenance {
                proxfleet_version: env!("CARGO_PKG_VERSION").to_string(),
                spec: spec_fingerprint(&args.spec.file, &planned)?,
                request,
                cluster: ClusterFingerprint::of(&planned.actual, &planned.desired),
            },
        };
        std::fs::write(out, saved.to_json()).map_err(|source| CommandError::Io {
            context: format!("cannot write the plan to {}", out.display()),
            source,
        })?;
        let note = render::saved_note(out, conn.command_prefix());
        // With --json, standard output is the plan's JSON alone.
        let stream = if args.json {
            &mut *io.err
        } else {
            &mut *io.out
        };
        let _ = stream.write_all(note.as_bytes());
    }
    if args.detailed_exitcode && !plan.is_empty() {
        Ok(Success::ChangesPresent)
    } else {
        Ok(Success::Done)
    }
}

/// The spec's path and hash, and the hash of every file it read.
fn spec_fingerprint(file: &Path, planned: &Planned) -> Result<SpecFingerprint, CommandError> {
    let references = planned
        .loaded
        .files
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).map_err(|source| CommandError::Io {
                context: format!("cannot read {}", path.display()),
                source,
            })?;
            Ok(FileFingerprint {
                path: path.display().to_string(),
                sha256: sha256_hex(&bytes),
            })
        })
        .collect::<Result<Vec<_>, CommandError>>()?;
    Ok(SpecFingerprint {
        file: FileFingerprint {
            path: file.display().to_string(),
            sha256: sha256_hex(planned.spec_text.as_bytes()),
        },
        references,
    })
}
