//! `proxfleet schema`: print the spec format's JSON Schema, or with `--output` the schema of a
//! command's `--json` output (derived in `report` from the types it prints).

use super::{CommandError, Io};
use crate::cli::{SchemaArgs, SchemaOutput};
use crate::report::{self, Output};

/// Print the schema.
///
/// # Errors
/// None in practice; writing to stdout is best effort.
pub fn run(args: &SchemaArgs, io: &mut Io<'_>) -> Result<(), CommandError> {
    let text = match args.output {
        None => crate::spec::json_schema(),
        Some(output) => report::schema(output_of(output)),
    };
    let _ = io.out.write_all(text.as_bytes());
    Ok(())
}

fn output_of(output: SchemaOutput) -> Output {
    match output {
        SchemaOutput::Plan => Output::Plan,
        SchemaOutput::Check => Output::Check,
        SchemaOutput::Show => Output::Show,
        SchemaOutput::Apply => Output::Apply,
        SchemaOutput::Destroy => Output::Destroy,
    }
}
