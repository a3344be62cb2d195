//! `proxfleet completions SHELL` and `proxfleet man`: the shell completion scripts
//! (clap_complete) and the man pages (clap_mangen), both generated from the clap definitions, so
//! they cannot drift from the program.

use super::{CommandError, Io};
use crate::cli::{CompletionsArgs, ManArgs};

/// Print the completion script for a shell.
///
/// # Errors
/// None in practice; writing to stdout is best effort.
pub fn completions(args: &CompletionsArgs, io: &mut Io<'_>) -> Result<(), CommandError> {
    let mut command = crate::cli::command();
    clap_complete::generate(args.shell, &mut command, "proxfleet", &mut io.out);
    Ok(())
}

/// Print `proxfleet.1`, or with `--dir` write it and one page per subcommand there
/// (`proxfleet-plan.1`, …), naming each file written.
///
/// # Errors
/// The page cannot be rendered, or the directory or a page cannot be written.
pub fn man(args: &ManArgs, io: &mut Io<'_>) -> Result<(), CommandError> {
    let command = crate::cli::command();
    let Some(dir) = &args.dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut page)
            .map_err(|source| CommandError::Io {
                context: "cannot render the man page".into(),
                source,
            })?;
        let _ = io.out.write_all(&page);
        return Ok(());
    };
    std::fs::create_dir_all(dir).map_err(|source| CommandError::Io {
        context: format!("cannot create {}", dir.display()),
        source,
    })?;
    clap_mangen::generate_to(command, dir).map_err(|source| CommandError::Io {
        context: format!("cannot write the man pages into {}", dir.display()),
        source,
    })?;
    let _ = writeln!(io.out, "man pages written to {}", dir.display());
    Ok(())
}
