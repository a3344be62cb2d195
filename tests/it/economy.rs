//! Request economy: a write is sent once even when its answer is lost (the node's task list
//! names the task it started, and that task is awaited instead of sending the write again),
//! and a run reads nothing twice (request counts by endpoint).

use std::collections::BTreeMap;

use proxfleet::sim::{Fault, FaultAction, SimHandle};

use super::common::{apply, example, plan, sim, write_requests};

/// Every task-starting write an `apply` of the quickstart sends, by method and path glob.
const TASK_WRITES: &[(&str, &str)] = &[
    ("POST", "/nodes/*/storage/*/download-url"),
    ("POST", "/nodes/*/qemu"),
    ("POST", "/nodes/*/qemu/*/config"),
    ("PUT", "/nodes/*/qemu/*/resize"),
    ("POST", "/nodes/*/qemu/*/template"),
    ("POST", "/nodes/*/qemu/*/clone"),
    ("POST", "/nodes/*/qemu/*/status/start"),
];

/// The writes of a run, sorted.
fn sorted_writes(sim: &SimHandle) -> Vec<String> {
    let mut writes = write_requests(sim);
    writes.sort();
    writes
}

/// Requests by `METHOD /path` with vmids, nodes, storages, volumes and UPIDs as placeholders.
fn by_endpoint(sim: &SimHandle) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in sim.requests() {
        let path = record
            .path
            .strip_prefix("/api2/json")
            .unwrap_or(&record.path);
        let mut previous = "";
        let mut shown = Vec::new();
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            shown.push(match previous {
                "nodes" => "{node}",
                "qemu" if segment.chars().all(|c| c.is_ascii_digit()) => "{vmid}",
                "storage" => "{storage}",
                "content" => "{volume}",
                "tasks" => "{upid}",
                _ => segment,
            });
            previous = segment;
        }
        *counts
            .entry(format!("{} /{}", record.method, shown.join("/")))
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn with_the_answer_to_each_task_starting_write_lost_once_each_is_sent_once() {
    let spec = example("quickstart.yaml");
    let (clean_sim, clean_conn) = sim().await;
    let clean = apply(&clean_conn, &spec).await;
    assert!(clean.result.is_ok(), "{}", clean.err);
    let clean_writes = sorted_writes(&clean_sim);
    for (method, _) in TASK_WRITES {
        assert!(
            clean_writes.iter().any(|w| w.starts_with(method)),
            "the quickstart sends no {method}"
        );
    }

    let (sim, conn) = sim().await;
    for (method, path) in TASK_WRITES {
        sim.add_fault(Fault::on(method, path, FaultAction::Drop { after: true }).times(1));
    }
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert_eq!(run.code, 0);
    assert_eq!(
        sorted_writes(&sim),
        clean_writes,
        "a write was sent again after its answer was lost"
    );
    // The lost answers were made up by looking at the node's task list.
    let lookups = sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/tasks") && r.status == 200)
        .count();
    assert!(lookups >= TASK_WRITES.len(), "{lookups} task list reads");
    let replan = plan(&conn, &spec).await;
    assert!(replan.out.starts_with("No changes."), "{}", replan.out);
}

/// A synchronous `PUT …/config` starts no task to look for: after its answer is lost the
/// VM's pending configuration tells whether it was written, and a written one is not sent again.
#[tokio::test]
async fn a_config_write_whose_answer_is_lost_after_it_was_done_is_not_sent_again() {
    let spec = example("quickstart.yaml");
    let (clean_sim, clean_conn) = sim().await;
    assert!(apply(&clean_conn, &spec).await.result.is_ok());
    let clean_writes = sorted_writes(&clean_sim);
    let puts = clean_writes
        .iter()
        .filter(|w| w.starts_with("PUT") && w.ends_with("/config"))
        .count();
    assert!(
        puts > 0,
        "the quickstart sends no PUT …/config: {clean_writes:?}"
    );

    let (sim, conn) = sim().await;
    sim.add_fault(
        Fault::on(
            "PUT",
            "/nodes/*/qemu/*/config",
            FaultAction::Drop { after: true },
        )
        .times(puts as u32),
    );
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert_eq!(
        sorted_writes(&sim),
        clean_writes,
        "a config write was sent again after its answer was lost"
    );
    let pending_reads = sim
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/pending"))
        .count();
    assert!(
        pending_reads >= puts,
        "{pending_reads} pending reads for {puts} lost answers"
    );
    let replan = plan(&conn, &spec).await;
    assert!(replan.out.starts_with("No changes."), "{}", replan.out);
}

#[tokio::test]
async fn a_write_whose_answer_is_lost_before_it_was_handled_is_sent_again() {
    let spec = example("quickstart.yaml");
    let (sim, conn) = sim().await;
    sim.add_fault(
        Fault::on(
            "POST",
            "/nodes/*/qemu/*/clone",
            FaultAction::Drop { after: false },
        )
        .times(1),
    );
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    // The first clone request did nothing: the task list shows no task, so it went again.
    let counts = by_endpoint(&sim);
    let n_clones = sim.vms().iter().filter(|vm| !vm.template).count();
    assert_eq!(
        counts["POST /nodes/{node}/qemu/{vmid}/clone"],
        n_clones + 1,
        "{counts:#?}"
    );
}

/// Requests of a no-op `plan` and a converged `apply`, preflight included, on a converged
/// quickstart: each path read at most once (the preflight's whole cluster listing is the
/// observation's, and gives the nodes and storages too), so N + 5 requests for N VMs: the N
/// configs (or pending changes of running VMs), the cluster listing, the image storage's
/// content, and the preflight's version, permissions and the node's bridges.
#[tokio::test]
async fn a_no_op_plan_and_a_converged_apply_read_each_endpoint_once() {
    let spec = example("quickstart.yaml");
    let (sim, conn) = sim().await;
    assert!(apply(&conn, &spec).await.result.is_ok());
    let n_vms = sim.vms().len();
    for verb in ["plan", "apply"] {
        sim.clear_requests();
        let checked = super::common::check(&conn, &spec, false).await;
        assert!(checked.result.is_ok(), "{}", checked.err);
        let run = match verb {
            "plan" => plan(&conn, &spec).await,
            _ => apply(&conn, &spec).await,
        };
        assert!(run.result.is_ok(), "{verb}: {}", run.err);
        // The run's lease (apply only: create, read back, delete) is counted apart: it is
        // the price of one run at a time, not a read of the cluster.
        let (lease, requests): (Vec<_>, Vec<_>) = sim
            .requests()
            .into_iter()
            .partition(|record| record.path.contains("/pools"));
        let lease: Vec<String> = lease.iter().map(|record| record.method.clone()).collect();
        let expected_lease: &[&str] = match verb {
            "plan" => &[],
            _ => &["POST", "GET", "DELETE"],
        };
        assert_eq!(lease, expected_lease, "{verb}: the lease's requests");
        let mut paths: BTreeMap<String, usize> = BTreeMap::new();
        for record in &requests {
            assert_eq!(record.method, "GET", "{verb} wrote: {}", record.path);
            *paths.entry(record.path.clone()).or_default() += 1;
        }
        let repeated: Vec<_> = paths.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            repeated.is_empty(),
            "{verb} read these more than once: {repeated:?}\n{:#?}",
            by_endpoint(&sim)
        );
        assert!(
            requests.len() <= n_vms + 5,
            "{verb}: {} requests for {n_vms} VMs: {:#?} {:#?}",
            requests.len(),
            by_endpoint(&sim),
            requests
                .iter()
                .map(|r| format!("{} {}", r.method, r.path))
                .collect::<Vec<_>>()
        );
    }
}

/// `examples/cluster.yaml` (an image, a template on shared storage, 30 linked clones over three
/// nodes) applied with tasks of 200 ms and the storage-lock model on: 4 to 5 requests a task,
/// everything the run sends counted (its observation, the clones' synchronous config writes).
/// At this size learning how long each kind of task takes is a good part of the listings; the
/// bench (`cargo bench --bench fleet -- apply`) holds the ≤ 4 target at 100 and 300 clones.
/// Each task polled on its own cost some 32.
#[tokio::test]
async fn a_fleet_apply_costs_about_four_requests_per_task() {
    let sim = SimHandle::start(proxfleet::sim::SimConfig {
        nodes: 3,
        task_duration: Some(std::time::Duration::from_millis(200)),
        storage_lock_hold: Some(std::time::Duration::from_millis(5)),
        ..proxfleet::sim::SimConfig::default()
    })
    .await
    .unwrap();
    let conn = proxfleet::commands::Connection::to_sim(&sim).unwrap();
    let run = apply(&conn, &example("cluster.yaml")).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    let requests = sim.requests();
    // Every write but the synchronous config writes and the run's lease starts a task.
    let n_tasks = requests
        .iter()
        .filter(|r| r.method != "GET" && !r.path.contains("/pools"))
        .filter(|r| !(r.method == "PUT" && r.path.ends_with("/config")))
        .count();
    assert!(n_tasks >= 60, "{n_tasks} tasks");
    let per_task = requests.len() as f64 / n_tasks as f64;
    // A task's own status is read only when the node's listing did not show how it ended:
    // at most once, and rarely.
    let mut reads: BTreeMap<&str, usize> = BTreeMap::new();
    for r in requests
        .iter()
        .filter(|r| r.path.ends_with("/status") && r.path.contains("UPID"))
    {
        *reads.entry(r.path.as_str()).or_default() += 1;
    }
    let repeated: Vec<_> = reads.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "{repeated:#?}");
    assert!(
        reads.len() * 10 <= n_tasks,
        "{} task statuses read",
        reads.len()
    );
    println!(
        "{} requests for {n_tasks} tasks: {per_task:.2} per task\n{:#?}",
        requests.len(),
        by_endpoint(&sim)
    );
    // Rounds follow real time, so the count varies a little with the machine's load: the bound
    // leaves room for that (4.0–4.6 here), far below a poll per task and round.
    assert!(per_task <= 6.0, "{per_task:.2} requests per task");
}

/// An apply that builds, after its preflight: the preflight's cluster listing gave the nodes
/// and storages, so neither `/nodes` nor a node's storage list is read (the storage gate
/// learns which storages are shared from that listing too).
#[tokio::test]
async fn an_apply_after_its_preflight_reads_no_node_or_storage_list() {
    let spec = example("quickstart.yaml");
    let (sim, conn) = sim().await;
    let checked = super::common::check(&conn, &spec, false).await;
    assert!(checked.result.is_ok(), "{}", checked.err);
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    let counts = by_endpoint(&sim);
    assert!(
        counts["POST /nodes/{node}/qemu/{vmid}/clone"] > 0,
        "{counts:#?}"
    );
    for unread in ["GET /nodes", "GET /nodes/{node}/storage"] {
        assert_eq!(counts.get(unread), None, "{unread}: {counts:#?}");
    }
}
