//! Apply: one image, one template and N clones (linked or full; on one node, or spread over
//! three with the template on shared storage) on an empty simulator whose tasks all take the
//! same time, with the simulator's storage-lock model on (each volume allocated holds its
//! storage's lock a while; a task queues behind the allocations before it), at parallelism 8,
//! 16 and 32. Measured: the wall time against the lower bound, and the requests per task.
//!
//! The lower bound is the larger of two floors:
//!
//! - the critical path, from the plan: each change's depth in its dependency graph (image 0,
//!   template 1, clones 2), each level taking ⌈changes in it / parallelism⌉ × its longest
//!   change, a change taking its tasks × the task time plus the lock time of the volumes its
//!   tasks allocated (the simulator's count: a full clone copies the template's disk and
//!   cloud-init drive, two volumes; a linked clone allocates its cloud-init drive);
//! - the busiest storage's allocation work divided by its parallelism: Proxmox allocates on a
//!   storage under one lock (pve-storage `cluster_lock_storage`, one allocation at a time), so
//!   the allocations under the lock that gets the most of them take at least their sum (the
//!   simulator's count of what its tasks allocated, `SimHandle::allocations_by_lock`: a linked
//!   clone's disk shares the template's base volume and is not counted).
//!
//! The executor's storage slots (`--storage-parallelism`, one per volume a request allocates)
//! are set so they never bind: the parallelism × the most volumes one clone allocates. The
//! bench measures waiting and scheduling, not the throttle.

use std::time::{Duration, Instant};

use proxfleet::apply::{ApplyOptions, ApplyReport, apply};
use proxfleet::commands::Connection;
use proxfleet::plan::Plan;
use proxfleet::sim::{SimConfig, SimHandle};

use crate::common::{self, Shape, shown, verdict};

/// How long allocating one volume holds its storage's lock in the simulator.
const LOCK_HOLD: Duration = Duration::from_millis(20);

/// The most volumes one clone allocates: a full clone of the bench's template copies its disk
/// and its cloud-init drive.
const MOST_VOLUMES_PER_CLONE: usize = 2;

struct Row {
    n_clones: usize,
    shape: Shape,
    parallelism: usize,
}

fn rows(quick: bool) -> Vec<Row> {
    let three = |full| Shape { n_nodes: 3, full };
    let one = |full| Shape { n_nodes: 1, full };
    let mut rows = Vec::new();
    let sizes: &[usize] = if quick { &[100] } else { &[100, 300] };
    for &n_clones in sizes {
        for parallelism in [8, 16, 32] {
            rows.push(Row {
                n_clones,
                shape: three(false),
                parallelism,
            });
        }
    }
    for parallelism in [8, 16, 32] {
        rows.push(Row {
            n_clones: 100,
            shape: three(true),
            parallelism,
        });
    }
    for full in [false, true] {
        rows.push(Row {
            n_clones: 100,
            shape: one(full),
            parallelism: 16,
        });
    }
    rows
}

pub fn run(runtime: &tokio::runtime::Runtime, quick: bool) {
    let task = if quick {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(500)
    };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut table = common::table(&[
        "N clones",
        "clones",
        "nodes",
        "parallelism",
        "tasks run",
        "wall",
        "lower bound",
        "ratio",
        "requests",
        "requests per task",
        "task listings per task",
        "lock time-outs",
        "note",
    ]);
    // `APPLY_ROWS=1,4` runs some rows only (counted from 1 in the order of the table).
    let only: Option<Vec<usize>> = std::env::var("APPLY_ROWS").ok().map(|list| {
        list.split(',')
            .filter_map(|n| n.trim().parse().ok())
            .collect()
    });
    let mut breakdowns = Vec::new();
    for (idx, row) in rows(quick).iter().enumerate() {
        if only.as_ref().is_some_and(|only| !only.contains(&(idx + 1))) {
            continue;
        }
        let (cells, breakdown) = runtime.block_on(measure(dir.path(), row, task));
        breakdowns.push(format!(
            "{} {}: {breakdown}",
            cells[0..4].join(" "),
            cells[8]
        ));
        table.add_row(cells);
    }
    println!(
        "\nApply on an empty simulator: 1 image, 1 template, N clones; every task takes {}, each volume allocated holds its storage's lock {} (lock model on), no latency",
        shown(task),
        shown(LOCK_HOLD)
    );
    println!(
        "lower bound = max(critical path, busiest storage's allocation work ÷ its parallelism of 1); targets: ≤ 4 requests per task, wall ≤ 1.10× the bound at parallelism 8 and 16"
    );
    println!("{table}");
    println!("requests by endpoint (N clones, clones, nodes, parallelism, requests):");
    for line in breakdowns {
        println!("  {line}");
    }
}

async fn start_sim(n_nodes: usize, task: Duration) -> SimHandle {
    SimHandle::start(SimConfig {
        nodes: n_nodes,
        task_duration: Some(task),
        // Set explicitly, the lock model stays on with a fixed task duration.
        storage_lock_hold: Some(LOCK_HOLD),
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}

async fn measure(dir: &std::path::Path, row: &Row, task: Duration) -> (Vec<String>, String) {
    let sim = start_sim(row.shape.n_nodes, task).await;
    let conn = Connection::to_sim(&sim).expect("a client");
    let file = common::write_shaped_fleet_spec(dir, row.n_clones, row.shape);
    let spec = common::load(&file);
    let (desired, actual, plan) = common::plan_for(&conn, &spec).await;
    sim.clear_requests();
    let options = ApplyOptions {
        parallelism: row.parallelism,
        storage_parallelism: row.parallelism * MOST_VOLUMES_PER_CLONE,
        ..ApplyOptions::default()
    };
    let started = Instant::now();
    let report = apply(
        &conn.client,
        &plan,
        &desired,
        &actual,
        &options,
        common::silent(),
    )
    .await;
    let wall = started.elapsed();
    assert!(!report.failed(), "apply failed: {:?}", report.outcomes);
    let records = sim.requests();
    let lock_timeouts = sim.storage_lock_timeouts();
    let allocations = sim.allocations_by_lock();
    let by_task = sim.allocations_by_task();
    // The slots were set from this: a clone allocating more would have met the throttle.
    let most = by_task
        .iter()
        .filter(|(upid, _)| upid.contains(":qmclone:"))
        .map(|(_, volumes)| *volumes)
        .max()
        .unwrap_or(0);
    assert!(
        most <= MOST_VOLUMES_PER_CLONE,
        "a clone allocated {most} volumes, more than the bench's storage slots allow for"
    );
    sim.shutdown().await;

    let n_tasks: usize = report.outcomes.iter().map(|o| o.tasks.len()).sum();
    let listings = records
        .iter()
        .filter(|r| common::endpoint(r) == "GET /nodes/{node}/tasks")
        .count();
    let critical = critical_path(&plan, &report, task, row.parallelism, &by_task);
    let storage_floor = LOCK_HOLD * allocations.values().copied().max().unwrap_or(0) as u32;
    let bound = critical.max(storage_floor);
    let ratio = wall.as_secs_f64() / bound.as_secs_f64();
    let per_task = records.len() as f64 / n_tasks.max(1) as f64;
    let mut notes = vec![format!("≤ 4/task: {}", verdict(per_task <= 4.0))];
    if row.parallelism <= 16 {
        notes.push(format!("≤ 1.10×: {}", verdict(ratio <= 1.10)));
    }
    if storage_floor > critical {
        notes.push("storage-bound".into());
    }
    let breakdown = common::by_endpoint(&records)
        .into_iter()
        .map(|(endpoint, n)| format!("{n} {endpoint}"))
        .collect::<Vec<_>>()
        .join(", ");
    let cells = vec![
        row.n_clones.to_string(),
        if row.shape.full { "full" } else { "linked" }.to_string(),
        row.shape.n_nodes.to_string(),
        row.parallelism.to_string(),
        n_tasks.to_string(),
        shown(wall),
        shown(bound),
        format!("{ratio:.3}×"),
        records.len().to_string(),
        format!("{per_task:.2}"),
        format!("{:.2}", listings as f64 / n_tasks.max(1) as f64),
        lock_timeouts.to_string(),
        notes.join(", "),
    ];
    (cells, breakdown)
}

/// The shortest possible wall time of `plan` at `parallelism`, from its dependency levels, the
/// tasks each change ran and the lock time of the volumes they allocated (see the module
/// documentation).
fn critical_path(
    plan: &Plan,
    report: &ApplyReport,
    task: Duration,
    parallelism: usize,
    allocated_by_task: &std::collections::BTreeMap<String, usize>,
) -> Duration {
    let mut depth: Vec<usize> = Vec::with_capacity(plan.changes.len());
    for change in &plan.changes {
        // Plans list a change after everything it depends on.
        let level = change
            .depends_on
            .iter()
            .filter_map(|dep| plan.changes.iter().position(|c| &c.key == dep))
            .map(|idx| depth[idx] + 1)
            .max()
            .unwrap_or(0);
        depth.push(level);
    }
    // A change takes its tasks' time and the lock time of what they allocated.
    let change_time = |idx: usize| {
        let tasks = &report.outcomes[idx].tasks;
        let volumes: usize = tasks
            .iter()
            .filter_map(|upid| allocated_by_task.get(upid))
            .sum();
        task * tasks.len() as u32 + LOCK_HOLD * volumes as u32
    };
    let n_levels = depth.iter().copied().max().map_or(0, |d| d + 1);
    let mut total = Duration::ZERO;
    for level in 0..n_levels {
        let in_level: Vec<usize> = (0..plan.changes.len())
            .filter(|&idx| depth[idx] == level)
            .collect();
        let longest = in_level
            .iter()
            .map(|&idx| change_time(idx))
            .max()
            .unwrap_or_default();
        let waves = in_level.len().div_ceil(parallelism.max(1));
        total += longest * waves as u32;
    }
    total
}
