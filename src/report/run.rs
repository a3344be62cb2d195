//! The final report of `apply --json` and `destroy --json`: for each change of the plan, what
//! was to be done and how it ended (done, failed with the error, skipped, cancelled), the
//! Proxmox tasks it ran, how long it took and the clone's address; the warnings; the totals.
//! One document per run, printed once the run ends, also when there was nothing to do and
//! when the plan had conflicts.

use schemars::JsonSchema;
use serde::Serialize;

use super::plan::OperationDocument;
use crate::apply::{ApplyReport, Outcome, StepResult};
use crate::ownership::ResourceKey;
use crate::plan::{Action, Conflict, Plan};

/// Version of the run report's format; bumped on any incompatible change (an added field does
/// not bump it).
pub const RUN_FORMAT_VERSION: u32 = 1;

/// Which command ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunCommand {
    /// `apply`.
    Apply,
    /// `destroy`.
    Destroy,
}

/// How the run ended as a whole (the exit code says the same: 0 for `ok`, 130 for
/// `interrupted`, 1 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every change was done (or there was nothing to do).
    Ok,
    /// Some change failed or was skipped.
    Failed,
    /// The run was interrupted: some change was cancelled.
    Interrupted,
    /// The plan had conflicts: nothing was changed.
    Conflicts,
}

/// How one change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeResult {
    /// Done.
    Done,
    /// Failed; `error` says why.
    Failed,
    /// Not attempted because a change it depends on failed; `reason` says which.
    Skipped,
    /// Not started or not finished because the run was interrupted; `reason` says where it
    /// stopped.
    Cancelled,
}

/// The report of an `apply` or `destroy`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunReport {
    /// Version of this document's format.
    pub format_version: u32,
    /// The command.
    pub command: RunCommand,
    /// The spec's project.
    pub project: String,
    /// The saved plan applied (`apply FILE`), as given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_plan: Option<String>,
    /// How the run ended.
    pub status: RunStatus,
    /// Each change of the plan, in plan order, with its result (empty: nothing to do, or
    /// conflicts).
    pub changes: Vec<ChangeReport>,
    /// The plan's conflicts (then nothing was changed).
    pub conflicts: Vec<Conflict>,
    /// What did not go as hoped without failing a change (no address from a guest agent).
    pub warnings: Vec<Warning>,
    /// Counts of the changes by result and by action.
    pub totals: Totals,
}

/// One change and how it ended.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ChangeReport {
    /// The resource.
    pub key: ResourceKey,
    /// What was to happen to it.
    pub action: Action,
    /// VM id (VMs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    /// Node the change ran on.
    pub node: String,
    /// What was to be done, in order (as in `plan --json`).
    pub operations: Vec<OperationDocument>,
    /// How it ended.
    pub result: ChangeResult,
    /// Why it failed (`result: failed`), with the task log's tail when a task failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was skipped or cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The Proxmox tasks it ran (UPIDs), in order.
    pub upids: Vec<String>,
    /// Wall time in milliseconds.
    pub duration_ms: u64,
    /// The clone's address when known: its static address, or the guest agent's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// This change's warnings (also listed in the report's `warnings`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A warning about one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Warning {
    /// The resource.
    pub key: ResourceKey,
    /// What happened.
    pub message: String,
}

/// Counts of a run's changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Totals {
    /// Changes in the plan.
    pub changes: usize,
    /// Done.
    pub done: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Cancelled.
    pub cancelled: usize,
    /// Planned additions (a replacement counts here and in `destroy`).
    pub add: usize,
    /// Planned changes in place.
    pub change: usize,
    /// Planned deletions.
    pub destroy: usize,
}

impl RunReport {
    /// The report of a plan that was not executed: nothing to do, or conflicts.
    pub fn unexecuted(command: RunCommand, plan: &Plan, saved_plan: Option<String>) -> RunReport {
        RunReport::new(command, plan, &ApplyReport::default(), saved_plan)
    }

    /// The report of an executed plan.
    pub fn executed(
        command: RunCommand,
        plan: &Plan,
        report: &ApplyReport,
        saved_plan: Option<String>,
    ) -> RunReport {
        RunReport::new(command, plan, report, saved_plan)
    }

    fn new(
        command: RunCommand,
        plan: &Plan,
        report: &ApplyReport,
        saved_plan: Option<String>,
    ) -> RunReport {
        let (add, change, destroy) = plan.counts();
        let mut totals = Totals {
            changes: plan.changes.len(),
            add,
            change,
            destroy,
            ..Totals::default()
        };
        let mut changes = Vec::new();
        let mut warnings = Vec::new();
        for outcome in &report.outcomes {
            match &outcome.result {
                StepResult::Ok => totals.done += 1,
                StepResult::Failed(_) => totals.failed += 1,
                StepResult::Skipped(_) => totals.skipped += 1,
                StepResult::Cancelled(_) => totals.cancelled += 1,
            }
            warnings.extend(outcome.warnings.iter().map(|message| Warning {
                key: outcome.key.clone(),
                message: message.clone(),
            }));
            changes.push(change_report(plan, outcome));
        }
        let status = if !plan.conflicts.is_empty() {
            RunStatus::Conflicts
        } else if totals.cancelled > 0 {
            RunStatus::Interrupted
        } else if totals.failed + totals.skipped > 0 {
            RunStatus::Failed
        } else {
            RunStatus::Ok
        };
        RunReport {
            format_version: RUN_FORMAT_VERSION,
            command,
            project: plan.project.clone(),
            saved_plan,
            status,
            changes,
            conflicts: plan.conflicts.clone(),
            warnings,
            totals,
        }
    }
}

fn change_report(plan: &Plan, outcome: &Outcome) -> ChangeReport {
    let planned = plan.changes.iter().find(|c| c.key == outcome.key);
    let (result, error, reason) = match &outcome.result {
        StepResult::Ok => (ChangeResult::Done, None, None),
        StepResult::Failed(error) => (ChangeResult::Failed, Some(error.clone()), None),
        StepResult::Skipped(why) => (ChangeResult::Skipped, None, Some(why.clone())),
        StepResult::Cancelled(why) => (ChangeResult::Cancelled, None, Some(why.clone())),
    };
    ChangeReport {
        key: outcome.key.clone(),
        action: outcome.action,
        vmid: planned.and_then(|c| c.vmid),
        node: planned.map(|c| c.node.clone()).unwrap_or_default(),
        operations: planned
            .map(|c| c.operations.iter().map(OperationDocument::of).collect())
            .unwrap_or_default(),
        result,
        error,
        reason,
        upids: outcome.tasks.clone(),
        duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
        address: outcome.ip.clone(),
        warnings: outcome.warnings.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::plan::Change;

    fn change(name: &str) -> Change {
        Change {
            key: format!("clone.{name}").parse().expect("key"),
            action: Action::Create,
            vmid: Some(201),
            node: "pve1".into(),
            operations: Vec::new(),
            reasons: Vec::new(),
            depends_on: Vec::new(),
            rollout: None,
        }
    }

    fn outcome(name: &str, result: StepResult) -> Outcome {
        Outcome {
            key: format!("clone.{name}").parse().expect("key"),
            action: Action::Create,
            result,
            duration: Duration::from_millis(1500),
            tasks: vec!["UPID:pve1:1".into()],
            ip: Some("192.0.2.11".into()),
            warnings: vec!["no address".into()],
        }
    }

    #[test]
    fn results_totals_and_warnings_come_from_the_outcomes() {
        let plan = Plan {
            format_version: crate::plan::PLAN_FORMAT_VERSION,
            project: "demo".into(),
            changes: vec![change("a"), change("b")],
            unchanged: 0,
            conflicts: Vec::new(),
            targeting: None,
            pending: Vec::new(),
            kept_builds: Vec::new(),
        };
        let report = ApplyReport {
            outcomes: vec![
                outcome("a", StepResult::Ok),
                outcome("b", StepResult::Failed("boom".into())),
            ],
        };
        let run = RunReport::executed(RunCommand::Apply, &plan, &report, None);
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!(
            (run.totals.done, run.totals.failed, run.totals.add),
            (1, 1, 2)
        );
        assert_eq!(run.changes[1].result, ChangeResult::Failed);
        assert_eq!(run.changes[1].error.as_deref(), Some("boom"));
        assert_eq!(run.changes[0].duration_ms, 1500);
        assert_eq!(run.changes[0].vmid, Some(201));
        assert_eq!(run.warnings.len(), 2);
        let empty = RunReport::unexecuted(RunCommand::Destroy, &plan, None);
        assert_eq!(empty.status, RunStatus::Ok);
        assert!(empty.changes.is_empty());
    }
}
