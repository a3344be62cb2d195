//! Spec errors: every problem found in a spec file, each with its place (line, column, field
//! path), what is wrong and what is allowed, rendered with a caret snippet like a compiler does.

use std::fmt;
use std::path::PathBuf;

/// One problem in a spec file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Dotted field path, e.g. `clones.web-1.vmid`.
    pub path: String,
    /// What is wrong, lower-case, no trailing period.
    pub message: String,
    /// What would be accepted, when that can be said.
    pub allowed: Option<String>,
    /// 1-based line; 0 when unknown.
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub column: u64,
    /// Length of the offending text in characters (at least 1 for the caret).
    pub len: u64,
}

/// Why a spec could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("cannot read spec file {}: {source}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read and has problems.
    #[error("{}", render(file, source_text, diagnostics))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Its text, for snippets.
        source_text: String,
        /// Every problem found, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

impl SpecError {
    /// The problems, when the file was readable.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            SpecError::Read { .. } => &[],
            SpecError::Invalid { diagnostics, .. } => diagnostics,
        }
    }
}

fn render(file: &std::path::Path, source_text: &str, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    // Split once: a hundred thousand problems must not each walk the file to their line.
    let lines: Vec<&str> = source_text.lines().collect();
    for (diag_idx, diag) in diagnostics.iter().enumerate() {
        if diag_idx > 0 {
            out.push('\n');
        }
        out.push_str(
            &DiagnosticDisplay {
                file,
                lines: &lines,
                diag,
            }
            .to_string(),
        );
    }
    let n_errors = diagnostics.len();
    out.push_str(&format!(
        "\n{} has {n_errors} error{}",
        file.display(),
        if n_errors == 1 { "" } else { "s" }
    ));
    out
}

struct DiagnosticDisplay<'a> {
    file: &'a std::path::Path,
    lines: &'a [&'a str],
    diag: &'a Diagnostic,
}

/// A line that holds (part of) a private key is never shown.
fn shows_a_secret(line: &str) -> bool {
    line.contains("PRIVATE KEY")
}

impl fmt::Display for DiagnosticDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let diag = self.diag;
        if diag.path.is_empty() {
            writeln!(f, "error: {}", diag.message)?;
        } else {
            writeln!(f, "error: {}: {}", diag.path, diag.message)?;
        }
        if diag.line == 0 {
            writeln!(f, "  --> {}", self.file.display())?;
        } else {
            writeln!(
                f,
                "  --> {}:{}:{}",
                self.file.display(),
                diag.line,
                diag.column
            )?;
            let line_text = usize::try_from(diag.line - 1)
                .ok()
                .and_then(|idx| self.lines.get(idx).copied())
                .filter(|text| !shows_a_secret(text));
            if let Some(line_text) = line_text {
                let gutter = diag.line.to_string().len();
                let pad = " ".repeat(gutter);
                writeln!(f, "{pad} |")?;
                writeln!(f, "{} | {}", diag.line, line_text.trim_end())?;
                let col = usize::try_from(diag.column.max(1) - 1).unwrap_or(0);
                let len = usize::try_from(diag.len.max(1)).unwrap_or(1);
                writeln!(f, "{pad} | {}{}", " ".repeat(col), "^".repeat(len))?;
            }
        }
        if let Some(allowed) = &diag.allowed {
            writeln!(f, "  = allowed: {allowed}")?;
        }
        Ok(())
    }
}
