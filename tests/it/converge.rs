//! Convergence under interruption: Ctrl-C (a cancellation token) stops a run cleanly; a run
//! killed after any request (the process gone, its tasks still running in the cluster) is
//! finished by the next `apply`, with exactly the spec's VMs and volumes and nothing twice.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proxfleet::apply::{ApplyOptions, Event, StepResult};
use proxfleet::commands::{Connection, EXIT_INTERRUPTED, Interrupt};
use proxfleet::graph::DesiredGraph;
use proxfleet::ownership::ResourceKind;
use proxfleet::sim::{SimConfig, SimHandle};
use tokio_util::sync::CancellationToken;

use crate::common::*;

/// A fresh simulator whose tasks take `task_ms`, and a connection to it.
async fn sim_with_tasks(task_ms: u64) -> (SimHandle, Connection) {
    let sim = SimHandle::start(SimConfig {
        task_duration: Some(Duration::from_millis(task_ms)),
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let conn = Connection::to_sim(&sim).expect("client for the simulator");
    (sim, conn)
}

/// What a converged quickstart cluster must look like: a second apply succeeds, a fresh plan
/// is empty, exactly the spec's four VMs (no duplicates, none locked) and as many volumes as a
/// clean run leaves. Returns the problems found.
async fn converged_problems(
    sim: &SimHandle,
    conn: &Connection,
    clean_volumes: usize,
) -> Vec<String> {
    let spec = example("quickstart.yaml");
    let mut problems = Vec::new();
    let rerun = apply(conn, &spec).await;
    if rerun.result.is_err() {
        problems.push(format!(
            "rerun failed: {:?}\n{}\n{}",
            rerun.result, rerun.out, rerun.err
        ));
    }
    let after = plan(conn, &spec).await;
    if !after.out.starts_with("No changes.") {
        problems.push(format!(
            "plan after the rerun is not empty:\n{}{:?}",
            after.out, after.result
        ));
    }
    let vms = sim.vms();
    let names: Vec<String> = vms.iter().filter_map(|vm| vm.name.clone()).collect();
    let unique: BTreeSet<&String> = names.iter().collect();
    let vmids: Vec<u32> = vms.iter().map(|vm| vm.vmid).collect();
    if vmids != [201, 202, 203, 9000] || unique.len() != names.len() || names.len() != 4 {
        problems.push(format!("VMs {vmids:?} named {names:?}"));
    }
    if let Some(locked) = vms.iter().find(|vm| vm.lock.is_some()) {
        problems.push(format!("VM {} is left locked", locked.vmid));
    }
    let volumes = sim.volumes();
    if volumes.len() != clean_volumes {
        let listed: Vec<&str> = volumes.iter().map(|v| v.volid.as_str()).collect();
        problems.push(format!(
            "{} volumes, a clean run leaves {clean_volumes}: {listed:?}",
            volumes.len()
        ));
    }
    problems
}

#[tokio::test]
async fn a_cancelled_apply_starts_nothing_new_and_reports_the_rest_as_cancelled() {
    let (sim, conn) = sim().await;
    let spec = example("quickstart.yaml");
    let text = std::fs::read_to_string(&spec).unwrap();
    let loaded = proxfleet::spec::load_str(&text, &spec).expect("the quickstart is valid");
    let desired = DesiredGraph::build(&loaded.spec);
    let actual = proxfleet::observe::observe(&conn.client, &desired)
        .await
        .unwrap();
    let plan = proxfleet::diff::diff(&desired, &actual);

    // Interrupt as soon as the template is built, through the event sink.
    let cancel = CancellationToken::new();
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = {
        let cancel = cancel.clone();
        let events = Arc::clone(&events);
        Arc::new(move |event: Event| {
            if let Event::Finished { key, .. } = &event
                && key.kind == ResourceKind::Template
            {
                cancel.cancel();
            }
            events.lock().unwrap().push(event);
        })
    };
    let options = ApplyOptions {
        cancel,
        ..ApplyOptions::default()
    };
    let report =
        proxfleet::apply::apply(&conn.client, &plan, &desired, &actual, &options, sink).await;

    let results: Vec<(String, &StepResult)> = report
        .outcomes
        .iter()
        .map(|o| (o.key.to_string(), &o.result))
        .collect();
    let not_started = StepResult::Cancelled("not started: the run was interrupted".into());
    assert_eq!(
        results,
        vec![
            ("image.debian-12".to_string(), &StepResult::Ok),
            ("template.debian-12-base".to_string(), &StepResult::Ok),
            ("clone.web-1".to_string(), &not_started),
            ("clone.web-2".to_string(), &not_started),
            ("clone.web-3".to_string(), &not_started),
        ]
    );
    assert!(report.interrupted());
    assert!(
        !sim.requests().iter().any(|r| r.path.ends_with("/clone")),
        "no clone was requested after the interruption"
    );
    let cancelled_events = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Finished {
                    result: StepResult::Cancelled(_),
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        cancelled_events, 3,
        "each cancelled change is reported as an event"
    );
    let table = proxfleet::render::report_table(&report, "Apply");
    assert!(
        table.contains("Apply interrupted: 2 succeeded, 0 failed, 0 skipped, 3 cancelled."),
        "{table}"
    );

    // The rerun builds only the clones.
    let again = plan_json(&conn, &spec).await;
    let value: serde_json::Value = serde_json::from_str(&again.out).unwrap();
    let keys: Vec<&str> = value["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["clone.web-1", "clone.web-2", "clone.web-3"]);
    let clean_volumes = {
        let (clean_sim, clean_conn) = sim_with_tasks(2).await;
        assert!(apply(&clean_conn, &spec).await.result.is_ok());
        clean_sim.volumes().len()
    };
    let problems = converged_problems(&sim, &conn, clean_volumes).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn ctrl_c_during_the_clones_waits_for_their_tasks_prints_the_report_and_exits_130() {
    // Tasks long enough that the interruption lands while the clone tasks run.
    let (sim, conn) = sim_with_tasks(60).await;
    let spec = example("quickstart.yaml");
    let token = CancellationToken::new();
    let interrupt = Interrupt::by(token.clone());
    let args = apply_args(&spec);
    let watcher = async {
        while !sim
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/clone"))
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        token.cancel();
    };
    let (run, ()) = tokio::join!(apply_interruptible(&conn, &args, &interrupt), watcher);

    assert_eq!(run.code, EXIT_INTERRUPTED, "{}\n{:?}", run.out, run.result);
    assert!(
        run.out
            .contains("Apply interrupted: 2 succeeded, 0 failed, 0 skipped, 3 cancelled."),
        "{}",
        run.out
    );
    assert!(run.out.contains("The run was interrupted"), "{}", run.out);
    assert!(
        run.out
            .contains("clone.web-1: interrupted before configure")
            || run.out.contains("clone.web-1: not started"),
        "{}",
        run.out
    );
    assert!(
        run.result
            .as_ref()
            .is_err_and(|e| e.to_string().contains("run the same command again")),
        "{:?}",
        run.result
    );
    // Every clone task that had started was awaited: nothing is left locked, and nothing was
    // configured or started after the interruption.
    assert!(
        sim.vms().iter().all(|vm| vm.lock.is_none()),
        "{:?}",
        sim.vms()
    );
    let configured = write_requests(&sim)
        .into_iter()
        .filter(|r| r.ends_with("/config") || r.ends_with("/status/start"))
        .count();
    assert_eq!(configured, 0, "{:?}", write_requests(&sim));

    // A rerun configures and starts the clones, and then there is nothing left to do.
    let rerun = plan(&conn, &spec).await;
    assert!(
        change_headers(&rerun.out)
            .iter()
            .all(|h| h.starts_with("# clone.") && h.ends_with("will be updated in place")),
        "{}",
        rerun.out
    );
    let clean_volumes = {
        let (clean_sim, clean_conn) = sim_with_tasks(2).await;
        assert!(apply(&clean_conn, &spec).await.result.is_ok());
        clean_sim.volumes().len()
    };
    let problems = converged_problems(&sim, &conn, clean_volumes).await;
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
/// A request path with numbers and node names generalised, for the coverage table.
fn request_kind(method: &str, path: &str) -> String {
    let path = path.strip_prefix("/api2/json").unwrap_or(path);
    let generic: Vec<String> = path
        .split('/')
        .map(|segment| {
            if segment.chars().all(|c| c.is_ascii_digit()) && !segment.is_empty() {
                "N".to_string()
            } else if segment.starts_with("UPID") {
                "UPID".to_string()
            } else {
                segment.to_string()
            }
        })
        .collect();
    format!("{method} {}", generic.join("/"))
}

#[tokio::test]
async fn apply_killed_after_any_request_is_finished_by_the_next_apply() {
    let spec = example("quickstart.yaml");
    // Tasks that outlive the killed run long enough for the rerun to meet them running.
    const TASK_MS: u64 = 15;

    let (clean_sim, clean_conn) = sim_with_tasks(TASK_MS).await;
    assert!(apply(&clean_conn, &spec).await.result.is_ok());
    let clean_volumes = clean_sim.volumes().len();
    let n_requests = clean_sim.requests().len();
    let n_writes = write_requests(&clean_sim).len();
    assert!(
        n_requests >= 20,
        "the quickstart takes {n_requests} requests"
    );

    // Kill after the k-th request of any kind, and after the w-th write: timing moves the
    // writes among the task polls from run to run, so the second list makes sure that every
    // write is once the last thing the killed run did.
    let points: Vec<(&str, usize)> = (1..=n_requests)
        .map(|k| ("request", k))
        .chain((1..=n_writes).map(|w| ("write", w)))
        .collect();
    let started = Instant::now();
    let mut problems = Vec::new();
    let mut killed_after = BTreeSet::new();
    let mut table = String::new();
    for &(unit, k) in &points {
        let (sim, conn) = sim_with_tasks(TASK_MS).await;
        let count = || match unit {
            "write" => write_requests(&sim).len(),
            _ => sim.requests().len(),
        };
        // SIGKILL: the run is dropped at once, its jobs with it; whatever it started in the
        // cluster goes on.
        let reached = async {
            while count() < k {
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            biased;
            () = reached => {}
            _ = apply(&conn, &spec) => {}
        }
        let served = sim.requests();
        let last = served
            .last()
            .map(|r| request_kind(&r.method, &r.path))
            .unwrap_or_default();
        let busy: Vec<String> = sim
            .vms()
            .iter()
            .filter_map(|vm| vm.lock.as_ref().map(|l| format!("{} {l}", vm.vmid)))
            .collect();
        table.push_str(&format!(
            "{unit:>7} {k:>3} {:>3} {last:<48} {}\n",
            served.len(),
            busy.join(" ")
        ));
        killed_after.insert(last.clone());
        for problem in converged_problems(&sim, &conn, clean_volumes).await {
            problems.push(format!("killed after {unit} {k} ({last}): {problem}"));
        }
    }
    println!(
        "killed at {} points in {:.1}s:\n{table}",
        points.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    for step in [
        "POST /nodes/pve1/storage/local/download-url",
        "POST /nodes/pve1/qemu",
        "PUT /nodes/pve1/qemu/N/resize",
        "POST /nodes/pve1/qemu/N/template",
        "POST /nodes/pve1/qemu/N/clone",
        "POST /nodes/pve1/qemu/N/config",
        "POST /nodes/pve1/qemu/N/status/start",
    ] {
        assert!(
            killed_after.contains(step),
            "no kill right after {step}: {killed_after:?}"
        );
    }
}
