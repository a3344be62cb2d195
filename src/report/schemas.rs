//! The JSON Schema of each document, derived with schemars from the types that are printed
//! (`proxfleet schema --output plan|check|show|apply|destroy`; committed in `docs/schemas/`,
//! where a test keeps them equal to these). Generated for serialisation: a field printed only
//! when present is optional, every other one required.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema};

use super::{CheckDocument, PlanDocument, RunReport, ShowDocument};

/// A document proxfleet prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `plan --json`.
    Plan,
    /// `check --json`.
    Check,
    /// `show --json`.
    Show,
    /// `apply --json`.
    Apply,
    /// `destroy --json`.
    Destroy,
}

impl Output {
    /// Every document, in the order the docs list them.
    pub const ALL: [Output; 5] = [
        Output::Plan,
        Output::Check,
        Output::Show,
        Output::Apply,
        Output::Destroy,
    ];

    /// The name on the command line and in `docs/schemas/NAME.schema.json`.
    pub fn name(self) -> &'static str {
        match self {
            Output::Plan => "plan",
            Output::Check => "check",
            Output::Show => "show",
            Output::Apply => "apply",
            Output::Destroy => "destroy",
        }
    }
}

fn root_for<T: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>()
}

/// The schema of a document, as pretty JSON with a final newline.
pub fn schema(output: Output) -> String {
    let mut schema = match output {
        Output::Plan => root_for::<PlanDocument>(),
        Output::Check => root_for::<CheckDocument>(),
        Output::Show => root_for::<ShowDocument>(),
        // One report type for both commands; its `command` says which ran.
        Output::Apply | Output::Destroy => root_for::<RunReport>(),
    };
    schema.insert(
        "title".into(),
        format!("proxfleet {} --json", output.name()).into(),
    );
    super::to_json(&schema)
}
