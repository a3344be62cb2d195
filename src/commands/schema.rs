//! `proxfleet schema`: print the spec format's JSON Schema.

use super::{CommandError, Io};

/// Print the schema.
///
/// # Errors
/// None in practice; writing to stdout is best effort.
pub fn run(io: &mut Io<'_>) -> Result<(), CommandError> {
    let _ = io.out.write_all(crate::spec::json_schema().as_bytes());
    Ok(())
}
