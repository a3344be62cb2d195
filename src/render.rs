//! Every rendering of plans, conflicts, apply events and apply results, for people (Terraform's
//! shape) and for programs (versioned JSON). Deterministic: the same input prints the same text.
//! It decides nothing.

use std::fmt::Write as _;

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::apply::{ApplyReport, Event, StepResult};
use crate::plan::{Action, Change, FieldChange, Plan};
use crate::pve::propstr::decode_sshkeys;

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create => "+",
        Action::Update => "~",
        Action::Replace => "-/+",
        Action::Delete => "-",
    }
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Create => "will be created",
        Action::Update => "will be updated in place",
        Action::Replace => "must be replaced",
        Action::Delete => "will be destroyed",
    }
}

/// Values as shown in a plan: quoted, newlines escaped, SSH keys decoded.
fn shown(field: &str, value: &str) -> String {
    let readable = if field == "sshkeys" {
        decode_sshkeys(value).join("\n")
    } else {
        value.to_string()
    };
    format!("{readable:?}")
}

fn render_field(out: &mut String, field: &FieldChange, width: usize) {
    let name = &field.name;
    let _ = match (&field.old, &field.new) {
        (None, Some(new)) => writeln!(out, "      + {name:<width$} = {}", shown(name, new)),
        (Some(old), None) => writeln!(out, "      - {name:<width$} = {}", shown(name, old)),
        (Some(old), Some(new)) => writeln!(
            out,
            "      ~ {name:<width$} = {} → {}",
            shown(name, old),
            shown(name, new)
        ),
        (None, None) => Ok(()),
    };
}

fn render_change(out: &mut String, change: &Change) {
    let place = match change.vmid {
        Some(vmid) => format!(" (vmid {vmid} on {})", change.node),
        None => format!(" (on {})", change.node),
    };
    let _ = writeln!(out, "  # {}{place} {}", change.key, verb(change.action));
    for reason in &change.reasons {
        let _ = writeln!(out, "  #   because {reason}");
    }
    let _ = writeln!(out, "  {} {} {{", symbol(change.action), change.key);
    let width = change
        .fields
        .iter()
        .map(|f| f.name.len())
        .max()
        .unwrap_or(0);
    for field in &change.fields {
        render_field(out, field, width);
    }
    let _ = writeln!(out, "    }}");
}

/// A plan for people: each change with its fields, then the summary line.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.changes.is_empty() {
        out.push_str("No changes. The cluster matches the spec.\n");
        return out;
    }
    out.push_str("proxfleet will perform the following actions:\n\n");
    for change in &plan.changes {
        render_change(&mut out, change);
        out.push('\n');
    }
    let (add, change, destroy) = plan.counts();
    let _ = writeln!(
        out,
        "Plan: {add} to add, {change} to change, {destroy} to destroy."
    );
    out
}

/// A plan for programs.
pub fn plan_json(plan: &Plan) -> String {
    let mut text = serde_json::to_string_pretty(plan)
        .unwrap_or_else(|err| format!("{{\"error\": {:?}}}", err.to_string()));
    text.push('\n');
    text
}

/// Why a plan cannot be applied.
pub fn conflicts_text(plan: &Plan) -> String {
    let mut out = String::new();
    let n = plan.conflicts.len();
    let _ = writeln!(
        out,
        "error: the plan has {n} conflict{} and cannot be applied",
        if n == 1 { "" } else { "s" }
    );
    for conflict in &plan.conflicts {
        let _ = writeln!(out, "  ✗ {}: {}", conflict.key, conflict.message);
        let _ = writeln!(out, "    hint: {}", conflict.hint);
    }
    out
}

/// One line per event, for logs.
pub fn event_line(event: &Event) -> String {
    match event {
        Event::Started { key, action } => format!("{key}: {} started", action_word(*action)),
        Event::Step { key, what } => format!("{key}: {what} done"),
        Event::Finished {
            key,
            action,
            result,
        } => match result {
            StepResult::Ok => format!("{key}: {} complete", action_word(*action)),
            StepResult::Failed(reason) => {
                format!("{key}: {} FAILED: {reason}", action_word(*action))
            }
            StepResult::Skipped(reason) => {
                format!("{key}: {} skipped: {reason}", action_word(*action))
            }
        },
    }
}

fn action_word(action: Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Replace => "replace",
        Action::Delete => "destroy",
    }
}

/// The closing table of an apply or destroy (`verb`: `Apply`, `Destroy`): resource, action,
/// result, duration, last task, IP.
pub fn report_table(report: &ApplyReport, verb: &str) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header([
        "resource",
        "action",
        "result",
        "duration",
        "last task",
        "ip",
    ]);
    for outcome in &report.outcomes {
        let result = match &outcome.result {
            StepResult::Ok => "ok".to_string(),
            StepResult::Failed(_) => "FAILED".to_string(),
            StepResult::Skipped(_) => "skipped".to_string(),
        };
        table.add_row([
            outcome.key.to_string(),
            action_word(outcome.action).to_string(),
            result,
            format!("{:.1}s", outcome.duration.as_secs_f64()),
            outcome.tasks.last().cloned().unwrap_or_default(),
            outcome.ip.clone().unwrap_or_default(),
        ]);
    }
    let mut out = table.to_string();
    out.push('\n');
    let n_ok = report
        .outcomes
        .iter()
        .filter(|o| o.result == StepResult::Ok)
        .count();
    let n_failed = report
        .outcomes
        .iter()
        .filter(|o| matches!(o.result, StepResult::Failed(_)))
        .count();
    let n_skipped = report.outcomes.len() - n_ok - n_failed;
    let _ = writeln!(
        out,
        "{verb} complete: {n_ok} succeeded, {n_failed} failed, {n_skipped} skipped."
    );
    for outcome in &report.outcomes {
        if let StepResult::Failed(reason) = &outcome.result {
            let _ = writeln!(out, "\nerror: {} failed: {reason}", outcome.key);
        }
    }
    out
}

/// `validate --explain`: each effective setting of a clone and the layer that set it.
pub fn explanation_table(clone: &str, rows: &[crate::spec::Explained]) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["setting", "value", "from"]);
    for row in rows {
        table.add_row([row.field.as_str(), row.value.as_str(), row.source.as_str()]);
    }
    format!("clone.{clone}\n{table}\n")
}
