//! No-op plan: a converged fleet of N clones, planned again with 10 ms of latency on every
//! request. The state is built fast (tasks of 1 ms, no latency); the latency is then added as a
//! simulator fault on every path, so only the measured plans pay it.

use std::time::{Duration, Instant};

use proxfleet::cli::{PlanArgs, SelectArgs, SpecArgs};
use proxfleet::commands::progress::ProgressMode;
use proxfleet::commands::{self, Connection, Interrupt, Io};
use proxfleet::observe::CONFIG_CONCURRENCY;
use proxfleet::sim::{Fault, FaultAction};

use crate::common::{self, shown, verdict};

/// Added to every request while planning.
const LATENCY: Duration = Duration::from_millis(10);
/// Plans measured per fleet size (the median is shown).
const RUNS: usize = 5;

pub fn run(runtime: &tokio::runtime::Runtime, quick: bool) {
    let sizes: &[usize] = if quick { &[50, 200] } else { &[50, 200, 1000] };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut table = common::table(&[
        "N clones",
        "VMs read",
        "wall (median of 5)",
        "requests",
        "by endpoint",
        "repeated",
        "round-trip floor",
        "ratio",
        "measured round trip (ratio)",
        "≤ N+5 requests",
        "≤ 1.5× floor",
    ]);
    for &n_clones in sizes {
        let row = runtime.block_on(measure(dir.path(), n_clones));
        table.add_row(row);
    }
    println!(
        "\nNo-op plan of a converged fleet, {} ms latency per request, configs read {CONFIG_CONCURRENCY} at a time",
        LATENCY.as_millis()
    );
    println!(
        "floor = latency × (1 listing + ⌈VMs read / {CONFIG_CONCURRENCY}⌉); the storage listing may overlap the config reads"
    );
    println!(
        "measured round trip = median of 30 sequential GET /version with the same latency; its ratio uses it in the floor instead of 10 ms"
    );
    println!("{table}");
}

async fn measure(dir: &std::path::Path, n_clones: usize) -> Vec<String> {
    let sim = common::start_sim(Duration::from_millis(1)).await;
    let file = common::write_fleet_spec(dir, n_clones);
    let spec = common::load(&file);
    let setup = Connection::to_sim(&sim).expect("a client");
    common::converge(&setup, &spec, 16).await;

    sim.add_fault(Fault {
        action: FaultAction::Latency(LATENCY),
        method: None,
        path: None,
        rate: 1.0,
        times: None,
    });
    // `plan` as the library runs it: the preflight checks (`main`'s gate, `--skip-checks`)
    // are measured apart; see docs/PERFORMANCE.md.
    let args = PlanArgs {
        spec: SpecArgs { file: file.clone() },
        json: false,
        out: None,
        detailed_exitcode: false,
        select: SelectArgs::default(),
        replace: Vec::new(),
        no_color: false,
        skip_checks: true,
    };
    let mut samples = Vec::new();
    let mut records = Vec::new();
    for _ in 0..RUNS {
        sim.clear_requests();
        // A fresh client per plan, as a fresh process has: no pooled connections.
        let conn = Connection::to_sim(&sim).expect("a client");
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut input: &[u8] = b"";
        let mut io = Io {
            out: &mut out,
            err: &mut err,
            input: &mut input,
            color: false,
            progress: ProgressMode::Lines,
            verbose: 0,
            interrupt: Interrupt::default(),
        };
        let started = Instant::now();
        let result = commands::plan::run(&args, &conn, &mut io).await;
        samples.push(started.elapsed());
        assert!(result.is_ok(), "plan failed: {result:?}");
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("No changes."),
            "the fleet is not converged:\n{text}"
        );
        records = sim.requests();
    }
    // What one request really costs here: the simulator's 10 ms is a tokio sleep, which ends
    // on the next millisecond tick or later, and the request itself takes a little CPU.
    let conn = Connection::to_sim(&sim).expect("a client");
    let mut round_trips = Vec::new();
    for _ in 0..30 {
        let started = Instant::now();
        conn.client.version().await.expect("GET /version");
        round_trips.push(started.elapsed());
    }
    let round_trip = common::median(round_trips);
    sim.shutdown().await;

    let n_vms_read = n_clones + 1;
    let n_round_trips = 1 + n_vms_read.div_ceil(CONFIG_CONCURRENCY);
    let floor = LATENCY * n_round_trips as u32;
    let measured_floor = round_trip * n_round_trips as u32;
    let wall = common::median(samples);
    let ratio = wall.as_secs_f64() / floor.as_secs_f64();
    let by_endpoint = common::by_endpoint(&records)
        .into_iter()
        .map(|(endpoint, n)| format!("{n} {endpoint}"))
        .collect::<Vec<_>>()
        .join("\n");
    vec![
        n_clones.to_string(),
        n_vms_read.to_string(),
        shown(wall),
        records.len().to_string(),
        by_endpoint,
        common::repeated(&records).to_string(),
        shown(floor),
        format!("{ratio:.2}×"),
        format!(
            "{} ({:.2}×)",
            shown(round_trip),
            wall.as_secs_f64() / measured_floor.as_secs_f64()
        ),
        verdict(records.len() <= n_clones + 5).to_string(),
        verdict(ratio <= 1.5).to_string(),
    ]
}
