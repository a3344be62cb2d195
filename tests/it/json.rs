//! The JSON documents for programs (`docs/JSON.md`): each command's `--json` output on the
//! quickstart validates against its published schema in `docs/schemas/`, which must equal what
//! the code derives; `apply --json` and `destroy --json` print one report on standard output
//! (also when nothing changes and when changes fail); progress lines carry the overall count.

use std::path::Path;

use proxfleet::cli::ApplyArgs;
use proxfleet::commands::Interrupt;
use proxfleet::report::{self, Output};
use proxfleet::sim::{Fault, FaultAction};
use serde_json::Value;

use tokio_util::sync::CancellationToken;

use super::common::{
    apply_args, apply_interruptible, apply_with, example, proxfleet, root, sim, text,
};

fn committed_schema(output: Output) -> Value {
    let path = root().join(format!("docs/schemas/{}.schema.json", output.name()));
    let text = std::fs::read_to_string(&path).expect("the committed schema");
    serde_json::from_str(&text).expect("the committed schema is JSON")
}

/// Assert that `document` is valid against the published schema of `output`.
fn assert_valid(output: Output, document: &Value) {
    let schema = committed_schema(output);
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|err| format!("{} at {}", err, err.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} --json does not match docs/schemas/{}.schema.json:\n{}",
        output.name(),
        output.name(),
        errors.join("\n")
    );
}

/// Run the binary; its standard output must be one JSON document and nothing else.
fn json_run(dir: &Path, args: &[&str]) -> (Value, String, Option<i32>) {
    let run = proxfleet(dir, args);
    let document = serde_json::from_slice(&run.stdout).unwrap_or_else(|err| {
        panic!(
            "{args:?}: standard output is not one JSON document ({err}):\n{}\nstderr:\n{}",
            text(&run.stdout),
            text(&run.stderr)
        )
    });
    (document, text(&run.stderr), run.status.code())
}

#[test]
fn committed_schemas_are_the_generated_ones() {
    for output in Output::ALL {
        let name = output.name();
        let committed =
            std::fs::read_to_string(root().join(format!("docs/schemas/{name}.schema.json")))
                .unwrap_or_default();
        assert!(
            committed == report::schema(output),
            "docs/schemas/{name}.schema.json is stale; regenerate every schema with\n  \
             for o in plan check show apply destroy; do cargo run -q -- schema --output $o > docs/schemas/$o.schema.json; done"
        );
    }
    // `schema` alone is still the spec's schema.
    let dir = tempfile::tempdir().expect("tempdir");
    let spec_schema = proxfleet(dir.path(), &["schema"]);
    assert_eq!(text(&spec_schema.stdout), proxfleet::spec::json_schema());
    let apply_schema = proxfleet(dir.path(), &["schema", "--output", "apply"]);
    assert_eq!(text(&apply_schema.stdout), report::schema(Output::Apply));
}

#[test]
fn the_quickstart_outputs_validate_against_their_schemas() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = example("quickstart.yaml").display().to_string();
    let sim = |rest: &[&str]| {
        let mut args = vec!["--sim"];
        args.extend_from_slice(rest);
        args.extend_from_slice(&["-f", &spec]);
        json_run(dir.path(), &args)
    };

    let (checked, _, code) = sim(&["check", "--json"]);
    assert_eq!(code, Some(0));
    assert_valid(Output::Check, &checked);
    assert_eq!(checked["ok"], true);

    let (planned, _, code) = sim(&["plan", "--json"]);
    assert_eq!(code, Some(0));
    assert_valid(Output::Plan, &planned);
    assert_eq!(planned["counts"]["add"], 5);
    // Machine values beside Proxmox's: the clone's vmid as a number, its key decoded, its
    // memory in bytes.
    let clone = &planned["changes"][2];
    assert_eq!(clone["vmid"], 201);
    let operations = clone["operations"].as_array().expect("operations");
    let sshkeys = operations
        .iter()
        .find(|op| op["name"] == "sshkeys")
        .expect("sshkeys");
    assert!(sshkeys["new"].as_str().is_some_and(|v| v.contains("%20")));
    assert!(
        sshkeys["new_keys"][0]
            .as_str()
            .is_some_and(|k| k.starts_with("ssh-ed25519 AAAA") && k.ends_with(" ops@example.com"))
    );
    let memory = operations
        .iter()
        .find(|op| op["name"] == "memory")
        .expect("memory");
    assert_eq!(memory["new_bytes"], 2048u64 << 20);

    let (applied, progress, code) = sim(&["apply", "--auto-approve", "--json"]);
    assert_eq!(code, Some(0), "{progress}");
    assert_valid(Output::Apply, &applied);
    assert_eq!(applied["command"], "apply");
    assert_eq!(applied["status"], "ok");
    assert_eq!(applied["totals"]["done"], 5);
    let changes = applied["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 5);
    for (idx, clone) in changes[2..].iter().enumerate() {
        assert_eq!(clone["result"], "done");
        assert_eq!(clone["address"], format!("192.0.2.{}", 11 + idx));
        assert!(clone["upids"].as_array().is_some_and(|u| {
            u.iter()
                .all(|id| id.as_str().is_some_and(|id| id.starts_with("UPID:")))
                && !u.is_empty()
        }));
        assert!(clone["duration_ms"].is_u64());
    }
    // The plan and the progress went to standard error, each finished change with the count.
    assert!(progress.contains("Plan: 5 to add"), "{progress}");
    let counts: Vec<&str> = progress
        .lines()
        .filter(|line| line.contains(" complete ("))
        .filter_map(|line| line.rsplit_once(" complete (").map(|(_, count)| count))
        .collect();
    assert_eq!(
        counts,
        [
            "1/5 done, 0 failed)",
            "2/5 done, 0 failed)",
            "3/5 done, 0 failed)",
            "4/5 done, 0 failed)",
            "5/5 done, 0 failed)"
        ],
        "{progress}"
    );

    // Nothing to do: an empty report, not the human line.
    let (again, _, code) = sim(&["apply", "--auto-approve", "--json"]);
    assert_eq!(code, Some(0));
    assert_valid(Output::Apply, &again);
    assert_eq!(again["changes"], serde_json::json!([]));
    assert_eq!(again["totals"]["changes"], 0);

    let (shown, _, code) = sim(&["show", "--json"]);
    assert_eq!(code, Some(0));
    assert_valid(Output::Show, &shown);
    assert_eq!(shown["count"], 5);

    // Without --auto-approve and with nothing to read, destroy refuses, JSON or not.
    let refused = proxfleet(dir.path(), &["--sim", "destroy", "-f", &spec, "--json"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty(), "{}", text(&refused.stdout));
    let refusal = text(&refused.stderr);
    assert!(
        refusal.contains("pass --auto-approve") && refusal.contains("--json"),
        "{refusal}"
    );

    let (destroyed, _, code) = sim(&["destroy", "--auto-approve", "--json"]);
    assert_eq!(code, Some(0));
    assert_valid(Output::Destroy, &destroyed);
    assert_eq!(destroyed["command"], "destroy");
    assert_eq!(destroyed["totals"]["destroy"], 4);
    assert_eq!(destroyed["totals"]["done"], 4);
}

#[tokio::test]
async fn a_failed_apply_reports_each_failure_and_exits_1() {
    let (sim, conn) = sim().await;
    sim.add_fault(Fault::on(
        "POST",
        "/nodes/*/qemu/*/clone",
        FaultAction::TaskError("unable to allocate: disk quota exceeded".into()),
    ));
    let args = ApplyArgs {
        json: true,
        ..apply_args(&example("quickstart.yaml"))
    };
    let run = apply_with(&conn, &args).await;
    assert_eq!(run.code, 1);
    let report: Value = serde_json::from_str(&run.out).expect("one JSON report on stdout");
    assert_valid(Output::Apply, &report);
    assert_eq!(report["status"], "failed");
    assert_eq!(report["totals"]["done"], 2);
    assert_eq!(report["totals"]["failed"], 3);
    for clone in &report["changes"].as_array().expect("changes")[2..] {
        assert_eq!(clone["result"], "failed");
        assert!(
            clone["error"]
                .as_str()
                .is_some_and(|e| e.contains("disk quota exceeded")),
            "{clone}"
        );
    }
}

#[tokio::test]
async fn an_interrupted_apply_reports_what_was_cancelled_and_exits_130() {
    let (_sim, conn) = sim().await;
    // Interrupted before the first change could start: every change is cancelled.
    let token = CancellationToken::new();
    token.cancel();
    let args = ApplyArgs {
        json: true,
        ..apply_args(&example("quickstart.yaml"))
    };
    let run = apply_interruptible(&conn, &args, &Interrupt::by(token)).await;
    assert_eq!(run.code, 130);
    let report: Value = serde_json::from_str(&run.out).expect("one JSON report on stdout");
    assert_valid(Output::Apply, &report);
    assert_eq!(report["status"], "interrupted");
    assert_eq!(report["totals"]["cancelled"], 5);
    for change in report["changes"].as_array().expect("changes") {
        assert_eq!(change["result"], "cancelled");
        assert!(change["reason"].as_str().is_some_and(|r| !r.is_empty()));
        assert_eq!(change["upids"], serde_json::json!([]));
    }
}

#[tokio::test]
async fn a_plan_with_conflicts_is_reported_and_nothing_is_changed() {
    let (sim, conn) = sim().await;
    // Someone else's VM holds web-1's vmid.
    sim.insert_vm("pve1", 201, &[("name", "hand-made")])
        .expect("a VM made by hand");
    let args = ApplyArgs {
        json: true,
        ..apply_args(&example("quickstart.yaml"))
    };
    let run = apply_with(&conn, &args).await;
    assert_eq!(run.code, 1);
    let report: Value = serde_json::from_str(&run.out).expect("one JSON report on stdout");
    assert_valid(Output::Apply, &report);
    assert_eq!(report["status"], "conflicts");
    assert_eq!(report["changes"], serde_json::json!([]));
    assert_eq!(report["conflicts"][0]["key"], "clone.web-1");
    assert_eq!(report["conflicts"][0]["problem"], "vmid_taken");
    assert_eq!(report["totals"]["done"], 0);
    // The plan for people went to standard error.
    assert!(run.err.contains("proxfleet will perform"), "{}", run.err);
}

#[test]
fn a_saved_plan_applied_with_json_names_its_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = example("quickstart.yaml").display().to_string();
    let saved = proxfleet(
        dir.path(),
        &["--sim", "plan", "-f", &spec, "--out", "fleet.plan"],
    );
    assert!(saved.status.success(), "{}", text(&saved.stderr));
    let (report, progress, code) =
        json_run(dir.path(), &["--sim", "apply", "fleet.plan", "--json"]);
    assert_eq!(code, Some(0), "{progress}");
    assert_valid(Output::Apply, &report);
    assert_eq!(report["saved_plan"], "fleet.plan");
    assert_eq!(report["totals"]["done"], 5);
    assert!(
        progress.contains("Applying the saved plan fleet.plan"),
        "{progress}"
    );
}
