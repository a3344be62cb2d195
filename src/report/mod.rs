//! Every JSON document proxfleet prints for programs, as types: `plan --json` (`plan.rs`), the
//! final report of `apply --json` and `destroy --json` (`run.rs`), `check --json` and
//! `show --json` (here). Their JSON Schemas are derived from these same types (`schemas.rs`), so
//! a schema cannot drift from what is printed; they are committed under `docs/schemas/` and
//! described in `docs/JSON.md`. Pure: values in, text out; it decides nothing.

mod plan;
mod run;
mod schemas;

pub use plan::{ChangeDocument, Counts, MachineValues, OperationDocument, PlanDocument};
pub use run::{
    ChangeReport, ChangeResult, RUN_FORMAT_VERSION, RunCommand, RunReport, RunStatus, Totals,
    Warning,
};
pub use schemas::{Output, schema};

use schemars::JsonSchema;
use serde::Serialize;

use crate::inventory::{Owned, SHOW_FORMAT_VERSION};
use crate::preflight::{Check, Report, Status};

/// Version of `check --json`'s document; bumped on any incompatible change (an added field
/// does not bump it).
pub const CHECK_FORMAT_VERSION: u32 = 1;

/// `check --json`: whether every check passed, the counts, and every check.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CheckDocument {
    /// Version of this document's format.
    pub format_version: u32,
    /// No check failed (warnings allowed): `plan` and `apply` would go ahead.
    pub ok: bool,
    /// Checks that passed.
    pub passed: usize,
    /// Checks that passed with a warning.
    pub warnings: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Checks not made (nothing to check, or what they depend on failed).
    pub skipped: usize,
    /// Every check, grouped in report order.
    pub checks: Vec<Check>,
}

impl CheckDocument {
    /// The document of a preflight report.
    pub fn of(report: &Report) -> CheckDocument {
        CheckDocument {
            format_version: CHECK_FORMAT_VERSION,
            ok: report.ok(),
            passed: report.count(Status::Pass),
            warnings: report.count(Status::Warn),
            failed: report.count(Status::Fail),
            skipped: report.count(Status::Skip),
            checks: report.checks.clone(),
        }
    }
}

/// `show --json`: what the project owns in the cluster.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ShowDocument {
    /// Version of this document's format (shared with `inventory --format json`).
    pub format_version: u32,
    /// The spec's project.
    pub project: String,
    /// How many resources are listed.
    pub count: usize,
    /// The resources: images, then templates, then clones.
    pub resources: Vec<Owned>,
}

impl ShowDocument {
    /// The document of the rows `show` lists.
    pub fn of(project: &str, rows: &[Owned]) -> ShowDocument {
        ShowDocument {
            format_version: SHOW_FORMAT_VERSION,
            project: project.to_string(),
            count: rows.len(),
            resources: rows.to_vec(),
        }
    }
}

/// A document as printed: pretty JSON and a final newline.
pub fn to_json<T: Serialize>(document: &T) -> String {
    // Serialising these types cannot fail (string keys, no non-finite floats); the fallback
    // keeps the output JSON all the same.
    let mut text = serde_json::to_string_pretty(document)
        .unwrap_or_else(|err| format!("{{\"error\": {:?}}}", err.to_string()));
    text.push('\n');
    text
}
