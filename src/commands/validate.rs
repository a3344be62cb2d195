//! `proxfleet validate`: check a spec statically, with no cluster.

use super::{CommandError, Io, load_spec};
use crate::cli::ValidateArgs;

/// Validate the spec and say what it declares.
///
/// # Errors
/// Every problem in the spec, at once.
pub fn run(args: &ValidateArgs, io: &mut Io<'_>) -> Result<(), CommandError> {
    let loaded = load_spec(&args.spec.file, io)?;
    if let Some(name) = &args.explain {
        let name = name.strip_prefix("clone.").unwrap_or(name);
        let Some(rows) = loaded.explanations.get(name) else {
            let known: Vec<&str> = loaded.explanations.keys().map(String::as_str).collect();
            return Err(CommandError::Usage(format!(
                "no clone `{name}` in {}; clones: {}",
                args.spec.file.display(),
                known.join(", ")
            )));
        };
        let _ = io
            .out
            .write_all(crate::render::explanation_table(name, rows).as_bytes());
        return Ok(());
    }
    let spec = &loaded.spec;
    let _ = writeln!(
        io.out,
        "{} is valid: {} image(s), {} template(s), {} clone(s) in project `{}`.",
        args.spec.file.display(),
        spec.images.len(),
        spec.templates.len(),
        spec.clones.len(),
        spec.project
    );
    Ok(())
}
