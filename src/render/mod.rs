//! Every rendering of plans, conflicts, apply events and apply results, for people (Terraform's
//! shape) and for programs (versioned JSON). Deterministic: the same input prints the same text.
//! It decides nothing.

mod operations;
mod refusals;

pub use operations::{ShownLine, operation_lines, reason_text};
pub use refusals::{conflict_hint, conflict_message, drift_text};

use std::fmt::Write as _;

use anstyle::{AnsiColor, Style};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::apply::{ApplyReport, Event, StepResult};
use crate::ownership::{ResourceKey, ResourceKind};
use crate::plan::{Action, Change, Plan, Reach, Targeting};
use crate::qemu_config::propstr::decode_sshkeys;
use crate::saved::Drift;
use crate::target::Request;

const ADD: Style = AnsiColor::Green.on_default();
const CHANGE: Style = AnsiColor::Yellow.on_default();
const DESTROY: Style = AnsiColor::Red.on_default();
const BOLD: Style = Style::new().bold();

/// Colour for a human plan, or none: with colour off the text is exactly the plain text.
#[derive(Debug, Clone, Copy)]
struct Paint {
    color: bool,
}

impl Paint {
    fn paint(self, style: Style, text: &str) -> String {
        if self.color {
            format!("{style}{text}{style:#}")
        } else {
            text.to_string()
        }
    }

    /// An action's symbol: green `+`, yellow `~`, red `-`, and `-/+` in both for a replacement.
    fn symbol(self, action: Action) -> String {
        match action {
            Action::Create => self.paint(ADD, "+"),
            Action::Update => self.paint(CHANGE, "~"),
            Action::Replace => format!("{}/{}", self.paint(DESTROY, "-"), self.paint(ADD, "+")),
            Action::Delete => self.paint(DESTROY, "-"),
        }
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

fn render_line(out: &mut String, field: &ShownLine, width: usize, paint: Paint) {
    let name = &field.name;
    let _ = match (&field.old, &field.new) {
        (None, Some(new)) => writeln!(
            out,
            "      {} {name:<width$} = {}",
            paint.symbol(Action::Create),
            shown(name, new)
        ),
        (Some(old), None) => writeln!(
            out,
            "      {} {name:<width$} = {}",
            paint.symbol(Action::Delete),
            shown(name, old)
        ),
        (Some(old), Some(new)) if old.contains('\n') || new.contains('\n') => {
            // Long texts (descriptions, notes) change line by line: show which lines.
            let _ = writeln!(
                out,
                "      {} {name:<width$} = <<-EOT",
                paint.symbol(Action::Update)
            );
            let diff = similar::TextDiff::from_lines(old.as_str(), new.as_str());
            for change in diff.iter_all_changes() {
                let (sign, action) = match change.tag() {
                    similar::ChangeTag::Delete => ("-", Some(Action::Delete)),
                    similar::ChangeTag::Insert => ("+", Some(Action::Create)),
                    similar::ChangeTag::Equal => (" ", None),
                };
                let line = change.value().trim_end_matches('\n');
                let text = format!("{sign} {line}");
                let _ = match action {
                    Some(Action::Delete) => {
                        writeln!(out, "          {}", paint.paint(DESTROY, &text))
                    }
                    Some(_) => writeln!(out, "          {}", paint.paint(ADD, &text)),
                    None => writeln!(out, "          {text}"),
                };
            }
            writeln!(out, "        EOT")
        }
        (Some(old), Some(new)) => writeln!(
            out,
            "      {} {name:<width$} = {} → {}",
            paint.symbol(Action::Update),
            shown(name, old),
            shown(name, new)
        ),
        (None, None) => Ok(()),
    };
}

fn render_change(out: &mut String, change: &Change, paint: Paint) {
    let place = match change.vmid {
        Some(vmid) => format!(" (vmid {vmid} on {})", change.node),
        None => format!(" (on {})", change.node),
    };
    let header = format!(
        "# {}{place} {}",
        key_words(&change.key),
        verb(change.action)
    );
    let _ = writeln!(out, "  {}", paint.paint(BOLD, &header));
    for reason in &change.reasons {
        let _ = writeln!(out, "  #   because {}", reason_text(reason));
    }
    if let Some(step) = &change.rollout {
        let after = if step.batch > 1 {
            format!(", after batch {} is healthy", step.batch - 1)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  #   rollout of `{}`: batch {} of {}{after}",
            step.group, step.batch, step.batches
        );
    }
    let _ = writeln!(out, "  {} {} {{", paint.symbol(change.action), change.key);
    let lines: Vec<ShownLine> = change.operations.iter().flat_map(operation_lines).collect();
    let width = lines.iter().map(|l| l.name.len()).max().unwrap_or(0);
    for line in &lines {
        render_line(out, line, width, paint);
    }
    let _ = writeln!(out, "    }}");
}

/// A resource's key as a plan says it: a template's later build by its number.
fn key_words(key: &ResourceKey) -> String {
    match key.template_build() {
        Some((template, build)) if build > 1 => format!("{template} build {build}"),
        _ => key.to_string(),
    }
}

/// The older template builds a plan keeps, and the clones that keep them.
pub fn kept_builds_note(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.kept_builds.is_empty() {
        return out;
    }
    out.push_str("\nTemplate builds kept while clones made from them remain:\n");
    for kept in &plan.kept_builds {
        let template = kept.key.spec_key();
        let names: Vec<String> = kept
            .clones
            .iter()
            .map(|vm| vm.name.clone().unwrap_or_else(|| vm.vmid.to_string()))
            .collect();
        let count = kept.clones.len();
        let what = match (count, kept.linked) {
            (1, 1) => "1 linked clone uses it".to_string(),
            (1, _) => "1 clone uses it".to_string(),
            (n, 0) => format!("{n} clones use it"),
            (n, l) if l == n => format!("{n} linked clones use it"),
            (n, l) => format!("{n} clones use it ({l} linked)"),
        };
        let _ = writeln!(
            out,
            "  {template} build {} (vmid {}) kept: {what} ({})",
            kept.build,
            kept.vmid,
            names.join(", ")
        );
    }
    out
}

fn kinds(kinds: &[ResourceKind]) -> String {
    kinds
        .iter()
        .map(|kind| format!("{}s", kind.as_str()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The command-line flags of a targeting request, for messages (` --target clone.web-1`).
pub fn request_flags(request: &Request) -> String {
    let mut flags = String::new();
    for target in &request.targets {
        let _ = write!(flags, " --target {target}");
    }
    if !request.only.is_empty() {
        let _ = write!(flags, " --only {}", kinds(&request.only));
    }
    if !request.skip.is_empty() {
        let _ = write!(flags, " --skip {}", kinds(&request.skip));
    }
    for address in &request.replace {
        let _ = write!(flags, " --replace {address}");
    }
    flags
}

/// The note under a partial plan.
fn targeting_note(targeting: &Targeting) -> String {
    let mut flags = Vec::new();
    flags.extend(targeting.targets.iter().map(|t| format!("--target {t}")));
    if !targeting.only.is_empty() {
        flags.push(format!("--only {}", kinds(&targeting.only)));
    }
    if !targeting.skip.is_empty() {
        flags.push(format!("--skip {}", kinds(&targeting.skip)));
    }
    let reach = match (targeting.targets.is_empty(), targeting.reach) {
        (true, _) => "",
        (false, Reach::Dependencies) => " and what they depend on",
        (false, Reach::Dependants) => " and what depends on them",
    };
    format!(
        "Note: targeting is in effect ({}): this plan covers only the selected resources{reach}, \
         so it may not show every change the spec asks for.\n",
        flags.join(" ")
    )
}

/// A plan for people: each change with its fields, then the summary line (and a note when the
/// plan is partial). No colour: for logs, files and tests.
pub fn plan_text(plan: &Plan) -> String {
    plan_text_colored(plan, false)
}

/// A plan for people, in colour when `color` (green `+`, yellow `~`, red `-`, `-/+`).
pub fn plan_text_colored(plan: &Plan, color: bool) -> String {
    let paint = Paint { color };
    let mut out = String::new();
    if plan.changes.is_empty() {
        match &plan.targeting {
            None => out.push_str("No changes. The cluster matches the spec.\n"),
            Some(targeting) => {
                out.push_str("No changes. The selected resources match the spec.\n\n");
                out.push_str(&paint.paint(BOLD, &targeting_note(targeting)));
            }
        }
        out.push_str(&kept_builds_note(plan));
        out.push_str(&pending_note(plan));
        return out;
    }
    out.push_str("proxfleet will perform the following actions:\n\n");
    for change in &plan.changes {
        render_change(&mut out, change, paint);
        out.push('\n');
    }
    let (add, change, destroy) = plan.counts();
    let _ = writeln!(
        out,
        "Plan: {add} to add, {change} to change, {destroy} to destroy."
    );
    if let Some(targeting) = &plan.targeting {
        out.push('\n');
        out.push_str(&paint.paint(BOLD, &targeting_note(targeting)));
    }
    out.push_str(&kept_builds_note(plan));
    out.push_str(&pending_note(plan));
    out
}

/// Which running VMs have managed changes waiting for their next boot, and whether apply
/// reboots them.
pub fn pending_note(plan: &Plan) -> String {
    let waiting: Vec<&crate::plan::PendingReboot> =
        plan.pending.iter().filter(|p| !p.reboot).collect();
    let rebooted: Vec<&crate::plan::PendingReboot> =
        plan.pending.iter().filter(|p| p.reboot).collect();
    let mut out = String::new();
    if !waiting.is_empty() {
        out.push_str(
            "\nPending until the next boot (proxfleet reboots only with --allow-reboot):\n",
        );
        for p in &waiting {
            let _ = writeln!(
                out,
                "  {} (vmid {}): {}",
                p.key,
                p.vmid,
                p.options.join(", ")
            );
        }
    }
    if !rebooted.is_empty() {
        out.push_str("\nRebooted to apply changes that wait for the next boot (--allow-reboot):\n");
        for p in &rebooted {
            let _ = writeln!(
                out,
                "  {} (vmid {}): {}",
                p.key,
                p.vmid,
                p.options.join(", ")
            );
        }
    }
    out
}

/// What `plan --out` says after saving (`command`: how to invoke proxfleet, e.g.
/// `proxfleet --sim`).
pub fn saved_note(file: &std::path::Path, command: &str) -> String {
    format!(
        "\nSaved the plan to: {file}\n\nTo apply exactly this plan, run:\n    {command} apply {file}\n",
        file = file.display()
    )
}

/// What `apply FILE` says before it applies a saved plan (it is not shown again in full: it
/// was reviewed when it was made).
pub fn saved_plan_header(file: &std::path::Path, plan: &Plan) -> String {
    let (add, change, destroy) = plan.counts();
    let mut out = format!(
        "Applying the saved plan {}: {add} to add, {change} to change, {destroy} to destroy.\n",
        file.display()
    );
    if let Some(targeting) = &plan.targeting {
        out.push_str(&targeting_note(targeting));
    }
    out
}

/// Why a saved plan was refused, and what to do (`replan`: the command that makes it again).
pub fn stale_plan_text(file: &std::path::Path, drift: &[Drift], replan: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "the saved plan {} is stale: what it was computed from has changed, so it was not applied and nothing was changed",
        file.display()
    );
    for item in drift {
        let (subject, detail) = drift_text(item);
        let _ = writeln!(out, "  ✗ {subject}: {detail}");
    }
    let _ = write!(
        out,
        "  hint: run `{replan}` again, review the new plan, and apply that file"
    );
    out
}

/// A plan for programs: `report::PlanDocument`, the plan's data with its counts and machine
/// values.
pub fn plan_json(plan: &Plan) -> String {
    crate::report::to_json(&crate::report::PlanDocument::of(plan))
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
        let _ = writeln!(out, "  ✗ {}: {}", conflict.key, conflict_message(conflict));
        let _ = writeln!(out, "    hint: {}", conflict_hint(conflict));
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
            StepResult::Cancelled(reason) => {
                format!("{key}: {} cancelled: {reason}", action_word(*action))
            }
        },
    }
}

/// The message beside a running change's spinner: what it is doing and its last finished step.
pub fn progress_message(key: &ResourceKey, action: Action, last_step: Option<&str>) -> String {
    match last_step {
        None => format!("{key}: {} running", action_word(action)),
        Some(step) => format!("{key}: {} running (done: {step})", action_word(action)),
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
/// result, duration, how many Proxmox tasks it ran (with `task_ids`, under `-v`, their ids,
/// UPIDs, in order), and a clone's address; then the counts, why each failure failed, and,
/// after an interruption, what was cancelled. Without task ids it fits 100 columns.
pub fn report_table(report: &ApplyReport, verb: &str, task_ids: bool) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(["resource", "action", "result", "duration", "tasks", "ip"]);
    for outcome in &report.outcomes {
        let result = match &outcome.result {
            StepResult::Ok => "ok",
            StepResult::Failed(_) => "FAILED",
            StepResult::Skipped(_) => "skipped",
            StepResult::Cancelled(_) => "cancelled",
        };
        table.add_row([
            outcome.key.to_string(),
            action_word(outcome.action).to_string(),
            result.to_string(),
            format!("{:.1}s", outcome.duration.as_secs_f64()),
            if task_ids {
                outcome.tasks.join("\n")
            } else {
                outcome.tasks.len().to_string()
            },
            outcome.ip.clone().unwrap_or_default(),
        ]);
    }
    let mut out = table.to_string();
    out.push('\n');
    let count =
        |f: fn(&StepResult) -> bool| report.outcomes.iter().filter(|o| f(&o.result)).count();
    let n_ok = count(|r| *r == StepResult::Ok);
    let n_failed = count(|r| matches!(r, StepResult::Failed(_)));
    let n_skipped = count(|r| matches!(r, StepResult::Skipped(_)));
    let n_cancelled = count(|r| matches!(r, StepResult::Cancelled(_)));
    if n_cancelled == 0 {
        let _ = writeln!(
            out,
            "{verb} complete: {n_ok} succeeded, {n_failed} failed, {n_skipped} skipped."
        );
    } else {
        let _ = writeln!(
            out,
            "{verb} interrupted: {n_ok} succeeded, {n_failed} failed, {n_skipped} skipped, {n_cancelled} cancelled."
        );
    }
    for outcome in &report.outcomes {
        if let StepResult::Failed(reason) = &outcome.result {
            let _ = writeln!(out, "\nerror: {} failed: {reason}", outcome.key);
        }
    }
    for outcome in &report.outcomes {
        for warning in &outcome.warnings {
            let _ = writeln!(out, "\nwarning: {}: {warning}", outcome.key);
        }
    }
    if n_cancelled > 0 {
        let _ = writeln!(
            out,
            "\nInterrupted: after the interrupt no change started and no Proxmox call was sent;\n\
             every task already running was awaited. Not finished:"
        );
        for outcome in &report.outcomes {
            if let StepResult::Cancelled(reason) = &outcome.result {
                let _ = writeln!(out, "  - {}: {reason}", outcome.key);
            }
        }
        let _ = writeln!(
            out,
            "Run the same command again: it observes the cluster as this run left it and\n\
             finishes the work."
        );
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
