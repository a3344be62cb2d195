//! The report as text (grouped, ✓/✗ with reasons and what to do) and as JSON. Deterministic:
//! no endpoint, path or time in it, so it can be snapshotted.

use std::fmt::Write as _;

use super::{Check, Group, Report, Status};

fn symbol(status: Status) -> &'static str {
    match status {
        Status::Pass => "✓",
        Status::Warn => "!",
        Status::Fail => "✗",
        Status::Skip => "-",
    }
}

fn check_text(out: &mut String, check: &Check) {
    let _ = writeln!(
        out,
        "  {} {}: {}",
        symbol(check.status),
        check.subject,
        check.message
    );
    // Context and advice only where something is wrong; `--json` carries them always.
    if matches!(check.status, Status::Fail | Status::Warn) {
        for detail in &check.details {
            let _ = writeln!(out, "      {detail}");
        }
        for hint in &check.hints {
            let _ = writeln!(out, "      → {hint}");
        }
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The summary line: how many checks ran, failed, warned.
pub fn summary(report: &Report) -> String {
    let n_checks = report.checks.len() - report.count(Status::Skip);
    let failed = report.count(Status::Fail);
    let warned = report.count(Status::Warn);
    let warnings = if warned > 0 {
        format!(", {}", plural(warned, "warning", "warnings"))
    } else {
        String::new()
    };
    if failed > 0 {
        format!(
            "{failed} of {} failed{warnings}.",
            plural(n_checks, "check", "checks")
        )
    } else if n_checks == 1 {
        format!("The check passed{warnings}.")
    } else {
        format!("All {n_checks} checks passed{warnings}.")
    }
}

/// Every check, grouped, then the summary.
pub fn text(report: &Report) -> String {
    let mut out = String::new();
    for group in Group::ALL {
        let checks: Vec<&Check> = report.checks.iter().filter(|c| c.group == group).collect();
        if checks.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{}", group.title());
        for check in checks {
            check_text(&mut out, check);
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", summary(report));
    out
}

/// The failed and warned checks only, grouped (what stops `plan` and `apply`).
pub fn failures_text(report: &Report, status: Status) -> String {
    let mut out = String::new();
    for group in Group::ALL {
        let checks: Vec<&Check> = report
            .checks
            .iter()
            .filter(|c| c.group == group && c.status == status)
            .collect();
        if checks.is_empty() {
            continue;
        }
        let _ = writeln!(out, "{}", group.title());
        for check in checks {
            check_text(&mut out, check);
        }
    }
    out
}
