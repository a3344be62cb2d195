//! Apply: one image, one template and N linked clones on an empty simulator whose tasks all take
//! the same time (1 s), at several parallelisms; wall time against the plan's critical path.
//!
//! The critical path is computed from the plan: each change's depth in its dependency graph
//! (image 0, template 1, clones 2), each change's duration = the tasks it ran × the task
//! duration, and each level taking ⌈changes in it / parallelism⌉ × its longest change. For this
//! plan (a chain, then N equal and independent clones) that is the shortest schedule there is:
//! image + template chain + ⌈N/parallelism⌉ × one clone.

use std::time::{Duration, Instant};

use proxfleet::apply::{ApplyOptions, ApplyReport, apply};
use proxfleet::commands::Connection;
use proxfleet::plan::Plan;

use crate::common::{self, shown, verdict};

struct Row {
    n_clones: usize,
    parallelism: usize,
    task: Duration,
    note: &'static str,
}

pub fn run(runtime: &tokio::runtime::Runtime, quick: bool) {
    let second = Duration::from_secs(1);
    let tenth = Duration::from_millis(100);
    let full = if quick { tenth } else { second };
    let mut rows = Vec::new();
    for parallelism in [1, 4, 8, 16] {
        rows.push(Row {
            n_clones: 20,
            parallelism,
            task: full,
            note: "",
        });
    }
    for parallelism in [1, 4, 8, 16] {
        // 100 clones one at a time would take 100 × 3 tasks × 1 s: five minutes of waiting
        // that says nothing the 20-clone row does not. That row runs 0.1 s tasks instead.
        let (task, note) = if parallelism == 1 && !quick {
            (tenth, "tasks 0.1 s (1 s would take 5 min)")
        } else {
            (full, "")
        };
        rows.push(Row {
            n_clones: 100,
            parallelism,
            task,
            note,
        });
    }

    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut table = common::table(&[
        "N clones",
        "parallelism",
        "task",
        "tasks run",
        "wall",
        "critical path",
        "ratio",
        "requests",
        "task polls per task",
        "note",
    ]);
    for row in &rows {
        let cells = runtime.block_on(measure(dir.path(), row));
        table.add_row(cells);
    }
    println!(
        "\nApply on an empty simulator: 1 image, 1 template, N linked clones; every task takes the time shown, no latency"
    );
    println!(
        "critical path = Σ over the plan's dependency levels of ⌈changes / parallelism⌉ × tasks per change × task time; target for 100 clones at parallelism 8: ≤ 1.15×"
    );
    println!("{table}");
}

async fn measure(dir: &std::path::Path, row: &Row) -> Vec<String> {
    let sim = common::start_sim(row.task).await;
    let conn = Connection::to_sim(&sim).expect("a client");
    let file = common::write_fleet_spec(dir, row.n_clones);
    let spec = common::load(&file);
    let (desired, actual, plan) = common::plan_for(&conn, &spec).await;
    sim.clear_requests();
    let options = ApplyOptions {
        parallelism: row.parallelism,
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
    sim.shutdown().await;

    let n_tasks: usize = report.outcomes.iter().map(|o| o.tasks.len()).sum();
    let polls = records
        .iter()
        .filter(|r| common::endpoint(r) == "GET /nodes/{node}/tasks/{upid}/status")
        .count();
    let critical = critical_path(&plan, &report, row.task, row.parallelism);
    let ratio = wall.as_secs_f64() / critical.as_secs_f64();
    let mut note = row.note.to_string();
    if row.n_clones == 100 && row.parallelism == 8 {
        note = format!("target ≤ 1.15×: {}", verdict(ratio <= 1.15));
    }
    vec![
        row.n_clones.to_string(),
        row.parallelism.to_string(),
        shown(row.task),
        n_tasks.to_string(),
        shown(wall),
        shown(critical),
        format!("{ratio:.3}×"),
        records.len().to_string(),
        format!("{:.1}", polls as f64 / n_tasks.max(1) as f64),
        note,
    ]
}

/// The shortest possible wall time of `plan` at `parallelism`, from its dependency levels and
/// the tasks each change ran (see the module documentation).
fn critical_path(
    plan: &Plan,
    report: &ApplyReport,
    task: Duration,
    parallelism: usize,
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
    let n_levels = depth.iter().copied().max().map_or(0, |d| d + 1);
    let mut total = Duration::ZERO;
    for level in 0..n_levels {
        let in_level: Vec<usize> = (0..plan.changes.len())
            .filter(|&idx| depth[idx] == level)
            .collect();
        let longest = in_level
            .iter()
            .map(|&idx| report.outcomes[idx].tasks.len())
            .max()
            .unwrap_or(0);
        let waves = in_level.len().div_ceil(parallelism.max(1));
        total += task * (waves * longest) as u32;
    }
    total
}
