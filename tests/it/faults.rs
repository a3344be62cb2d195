//! The fault matrix: for each kind of mutating step of the quickstart × each kind of fault, the
//! fault is injected once; `apply` either rides it out (retries) or reports it, and a second
//! `apply` always converges: an empty plan, exactly the spec's VMs, no orphaned volumes. The
//! matrix is printed (`cargo test fault_matrix -- --nocapture`).

use std::time::Duration;

use proxfleet::sim::{Fault, FaultAction, SimConfig, SimHandle};

use super::common::{apply, example, plan};

const STEPS: &[(&str, Option<&str>, &str)] = &[
    ("download", Some("POST"), "/nodes/*/storage/*/download-url"),
    ("create", Some("POST"), "/nodes/*/qemu"),
    ("config", None, "/nodes/*/qemu/*/config"),
    ("resize", Some("PUT"), "/nodes/*/qemu/*/resize"),
    ("template", Some("POST"), "/nodes/*/qemu/*/template"),
    ("clone", Some("POST"), "/nodes/*/qemu/*/clone"),
    ("start", Some("POST"), "/nodes/*/qemu/*/status/start"),
];

const LOCK_TIMEOUT: &str = "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout";

fn faults() -> Vec<(&'static str, FaultAction)> {
    vec![
        (
            "HTTP 500",
            FaultAction::Error {
                status: 500,
                message: LOCK_TIMEOUT.into(),
            },
        ),
        ("drop before", FaultAction::Drop { after: false }),
        ("drop after", FaultAction::Drop { after: true }),
        ("task error", FaultAction::TaskError(LOCK_TIMEOUT.into())),
        ("slow", FaultAction::Latency(Duration::from_millis(300))),
        (
            "persistent",
            FaultAction::TaskError("unable to allocate: disk quota exceeded".into()),
        ),
    ]
}

async fn fresh() -> (SimHandle, proxfleet::commands::Connection) {
    let sim = SimHandle::start(SimConfig {
        task_duration: Some(Duration::from_millis(2)),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let conn = proxfleet::commands::Connection::to_sim(&sim).expect("client");
    (sim, conn)
}

#[tokio::test]
async fn fault_matrix_every_step_and_fault_is_reported_or_ridden_out_and_a_rerun_converges() {
    let spec = example("quickstart.yaml");
    // The reference: what a clean apply leaves.
    let (clean_sim, clean_conn) = fresh().await;
    assert!(apply(&clean_conn, &spec).await.result.is_ok());
    let clean_volumes = clean_sim.volumes().len();
    let clean_vms = clean_sim.vms().len();

    let mut table = String::from(
        "step      | HTTP 500 | drop before | drop after | task error | slow     | persistent\n",
    );
    let mut problems = Vec::new();
    for (step, method, path) in STEPS {
        let mut row = format!("{step:<9} |");
        for (fault_name, action) in faults() {
            let (sim, conn) = fresh().await;
            // Transient faults strike once and must be ridden out; the persistent one strikes
            // every time and must be reported with its message.
            let persistent = fault_name == "persistent";
            sim.add_fault(Fault {
                action,
                method: method.map(str::to_string),
                path: Some((*path).to_string()),
                rate: 1.0,
                times: (!persistent).then_some(1),
            });
            let first = apply(&conn, &spec).await;
            let outcome = match &first.result {
                Ok(()) => "ok",
                Err(_) => "reported",
            };
            let text = format!("{}\n{}", first.out, first.err);
            if persistent {
                if first.result.is_ok() || !text.contains("disk quota exceeded") {
                    problems.push(format!(
                        "{step} × {fault_name}: not reported clearly:\n{text}"
                    ));
                }
            } else if first.result.is_err() {
                problems.push(format!("{step} × {fault_name}: not ridden out:\n{text}"));
            }
            sim.clear_faults();
            let second = apply(&conn, &spec).await;
            let after = plan(&conn, &spec).await;
            let converged = second.result.is_ok() && after.out.starts_with("No changes.");
            let vms = sim.vms().len();
            let volumes = sim.volumes().len();
            if !converged || vms != clean_vms || volumes != clean_volumes {
                problems.push(format!(
                    "{step} × {fault_name}: rerun converged={converged} vms={vms}/{clean_vms} volumes={volumes}/{clean_volumes}\n{}\n{}\n{}",
                    second.out, second.err, after.out
                ));
            }
            row.push_str(&format!(
                " {outcome:<width$} |",
                width = fault_name.len().max(8)
            ));
        }
        table.push_str(row.trim_end_matches('|'));
        table.push('\n');
    }
    println!("{table}");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// Twelve full clones of one template at once, on a simulator whose storage lock (held 10 ms per
/// volume allocated, 4 volumes a clone) times out after 150 ms: sent all at once, as tools
/// without a per-storage throttle do, most would wait too long and fail with Proxmox's
/// `can't lock file … got timeout`; proxfleet's per-storage slots keep every wait short.
/// On tokio's paused clock: the locks' queues are measured in the simulator's time, not the machine's.
#[tokio::test(start_paused = true)]
async fn parallel_clones_never_time_out_on_the_storage_lock() {
    use proxfleet::apply::{ApplyOptions, apply};
    use proxfleet::graph::DesiredGraph;

    let mut text = super::common::quickstart_text();
    text.truncate(text.find("clones:").expect("the clones"));
    text.push_str("clone_groups:\n  web:\n    count: 12\n    name: web-{n}\n    first_vmid: 301\n    template: debian-12-base\n    start: false\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = super::common::write_spec(dir.path(), "fleet.yaml", &text);
    let desired = DesiredGraph::build(&proxfleet::spec::load(&spec).expect("spec").spec);

    let run = async |storage_parallelism: usize| {
        let sim = SimHandle::start(SimConfig {
            task_duration: Some(Duration::from_millis(5)),
            storage_lock_hold: Some(Duration::from_millis(10)),
            storage_lock_timeout: Some(Duration::from_millis(150)),
            ..SimConfig::default()
        })
        .await
        .expect("simulator");
        let conn = proxfleet::commands::Connection::to_sim(&sim).expect("client");
        let options = ApplyOptions {
            parallelism: 16,
            storage_parallelism,
            allocation_window: Duration::from_millis(10),
            backoff: backon::ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(5))
                .with_max_times(20),
            ..ApplyOptions::default()
        };
        let actual = proxfleet::observe::observe(&conn.client, &desired)
            .await
            .expect("observe");
        let plan = proxfleet::diff::diff(&desired, &actual);
        let report = apply(
            &conn.client,
            &plan,
            &desired,
            &actual,
            &options,
            std::sync::Arc::new(|_| {}),
        )
        .await;
        (
            report.failed(),
            sim.storage_lock_timeouts(),
            sim.vms().len(),
        )
    };

    // Unthrottled (a slot is a volume: 64 slots let all twelve four-volume clones through at
    // once), the burst hits the lock's time-out (retries may still get through).
    let (_, timeouts, _) = run(64).await;
    assert!(timeouts > 0, "the simulator models the storage lock");
    // Throttled per storage: every clone made, not one lock time-out.
    let (failed, timeouts, vms) = run(4).await;
    assert!(!failed);
    assert_eq!(timeouts, 0);
    assert_eq!(vms, 13);
}

/// A GET's path as a fault glob: every node, VM, storage, task and pool name a `*`.
fn read_glob(path: &str) -> String {
    let path = path.strip_prefix("/api2/json").unwrap_or(path);
    let mut glob = Vec::new();
    let mut previous = "";
    for segment in path.split('/') {
        let named = matches!(previous, "nodes" | "qemu" | "storage" | "tasks" | "pools");
        glob.push(if named { "*" } else { segment });
        previous = segment;
    }
    glob.join("/")
}

/// The writes a run sent, sorted: a multiset to compare with a clean run's.
fn writes_sorted(sim: &SimHandle) -> Vec<String> {
    let mut writes = super::common::write_requests(sim);
    writes.sort();
    writes
}

/// Where a read fails: a fresh cluster, or the quickstart applied and then drifted (web-1's
/// memory edited, web-2 stopped), whose re-run reads configurations and pending changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Scratch,
    Drifted,
}

/// A simulator ready for `scenario`. `slow`: tasks at 2 % of their nominal durations, so the
/// download runs long enough for its log to be read while it runs.
async fn prepared(scenario: Scenario, slow: bool) -> (SimHandle, proxfleet::commands::Connection) {
    let (sim, conn) = if slow {
        let sim = SimHandle::start(SimConfig {
            task_duration: None,
            task_scale: 0.02,
            ..SimConfig::default()
        })
        .await
        .expect("simulator starts");
        let conn = proxfleet::commands::Connection::to_sim(&sim).expect("client");
        (sim, conn)
    } else {
        fresh().await
    };
    if scenario == Scenario::Drifted {
        assert!(
            apply(&conn, &example("quickstart.yaml"))
                .await
                .result
                .is_ok()
        );
        sim.set_vm_config(201, "memory", Some("4096"))
            .expect("edit");
        sim.set_running(202, false).expect("stop");
    }
    sim.clear_requests();
    (sim, conn)
}

/// The reads of a clean run of `scenario`, as globs, and the writes it sends.
async fn clean_run(scenario: Scenario, slow: bool) -> (Vec<String>, Vec<String>) {
    let (sim, conn) = prepared(scenario, slow).await;
    let (ok, text) = super::cluster::checked_apply(&conn, &example("quickstart.yaml")).await;
    assert!(ok, "{text}");
    let mut reads: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| read_glob(&r.path))
        .collect();
    reads.sort();
    reads.dedup();
    (reads, writes_sorted(&sim))
}

/// Every read `apply` makes (its preflight's, the observation's, configurations and pending
/// changes, the task listings, a download's task log, the executor's own reads), each
/// failing once with a 503 and, in another run, with a dropped connection: `apply` exits 0 and
/// sends exactly the writes a clean run sends, each as often (so no task-starting request
/// twice). Each cell checks that its fault struck.
#[tokio::test]
async fn one_failure_on_any_read_is_ridden_out_and_no_write_is_sent_twice() {
    let spec = example("quickstart.yaml");
    let mut cells: Vec<(Scenario, bool, String, Vec<String>)> = Vec::new();
    for (scenario, slow) in [
        (Scenario::Scratch, false),
        (Scenario::Drifted, false),
        (Scenario::Scratch, true),
    ] {
        let (reads, writes) = clean_run(scenario, slow).await;
        for read in reads {
            let seen = cells.iter().any(|(_, _, r, _)| *r == read);
            // The slow run is there for the task log alone.
            if !seen && (!slow || read.ends_with("/log")) {
                cells.push((scenario, slow, read, writes.clone()));
            }
        }
    }
    // A task's own status is not among them: the node's task list shows how tasks ended
    // (`tests/it/tasks.rs` covers the status read where it cannot).
    for needed in [
        "/nodes/*/tasks",
        "/nodes/*/tasks/*/log",
        "/cluster/resources",
        "/nodes/*/qemu/*/config",
        "/nodes/*/qemu/*/pending",
        "/nodes/*/storage/*/content",
        "/version",
    ] {
        assert!(
            cells.iter().any(|(_, _, r, _)| r == needed),
            "{needed} is read"
        );
    }

    let kinds = [
        (
            "HTTP 503",
            FaultAction::Error {
                status: 503,
                message: "service unavailable".into(),
            },
        ),
        ("dropped", FaultAction::Drop { after: false }),
    ];
    let mut table =
        String::from("read endpoint (scenario)                        | HTTP 503 | dropped\n");
    let mut problems = Vec::new();
    for (scenario, slow, read, clean_writes) in &cells {
        let mut row = format!("{:<47} |", format!("{read} ({scenario:?})"));
        for (kind, action) in &kinds {
            let (sim, conn) = prepared(*scenario, *slow).await;
            sim.add_fault(Fault::on("GET", read, action.clone()).times(1));
            let fired_before = sim.faults_fired();
            let (ok, text) = super::cluster::checked_apply(&conn, &spec).await;
            let struck = sim.faults_fired() > fired_before;
            let writes = writes_sorted(&sim);
            let cell = match (struck, ok, writes == *clean_writes) {
                (false, _, _) => "unstruck",
                (true, true, true) => "ok",
                (true, false, _) => "FAILED",
                (true, true, false) => "WRITES",
            };
            if cell != "ok" {
                problems.push(format!(
                    "{read} ({scenario:?}) × {kind}: {cell}\n{text}\nwrites: {writes:#?}\nclean: {clean_writes:#?}"
                ));
            }
            row.push_str(&format!(" {cell:<8} |"));
        }
        table.push_str(row.trim_end_matches('|'));
        table.push('\n');
    }
    println!("{table}");
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
