//! Fault figures: the quickstart applied from scratch on a simulator that injects one kind of
//! fault into a share of every request (5 % and 20 %), many times over. For each kind and
//! rate: how many applies exit 0 without a re-run, how many re-runs converge, and whether a
//! write was ever repeated (a write Proxmox handled more often than a clean run sends it:
//! a request answered with an error, dropped before it was handled, or whose task failed by
//! injection did nothing, so sending it again repeats nothing).
//!
//! ```text
//! cargo run --example fault_figures [RUNS]      # RUNS per kind and rate, 20 by default
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proxfleet::cli::{ApplyArgs, SelectArgs, SpecArgs};
use proxfleet::commands::progress::ProgressMode;
use proxfleet::commands::{self, Connection, Interrupt, Io};
use proxfleet::sim::{Fault, FaultAction, SimConfig, SimHandle};

const LOCK_TIMEOUT: &str = "can't lock file '/var/lock/qemu-server/lock-9000.conf' - got timeout";

fn kinds() -> Vec<(&'static str, FaultAction)> {
    vec![
        (
            "HTTP 503",
            FaultAction::Error {
                status: 503,
                message: "service unavailable".into(),
            },
        ),
        (
            "HTTP 500 lock time-out",
            FaultAction::Error {
                status: 500,
                message: LOCK_TIMEOUT.into(),
            },
        ),
        ("drop before", FaultAction::Drop { after: false }),
        ("drop after", FaultAction::Drop { after: true }),
        ("task error", FaultAction::TaskError(LOCK_TIMEOUT.into())),
        (
            "slow (100 ms)",
            FaultAction::Latency(Duration::from_millis(100)),
        ),
    ]
}

/// `proxfleet apply --auto-approve`, preflight first, as the binary runs it: exit 0 or not.
async fn apply(conn: &Connection, spec: &Path) -> bool {
    let args = ApplyArgs {
        plan_file: None,
        spec: SpecArgs {
            file: spec.to_path_buf(),
        },
        auto_approve: true,
        parallelism: 8,
        storage_parallelism: 4,
        shutdown_timeout: 60,
        select: SelectArgs::default(),
        replace: Vec::new(),
        no_color: true,
        json: false,
        lease_seconds: 120,
        skip_checks: false,
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut input: &[u8] = b"";
    let mut io = Io {
        out: &mut out,
        color: false,
        err: &mut err,
        input: &mut input,
        progress: ProgressMode::Lines,
        verbose: 0,
        interrupt: Interrupt::default(),
    };
    if commands::check::gate(spec, false, conn, &mut io)
        .await
        .is_err()
    {
        return false;
    }
    commands::apply::run_apply(&args, conn, &mut io)
        .await
        .is_ok()
}

async fn sim(seed: u64) -> (SimHandle, Connection) {
    let sim = SimHandle::start(SimConfig {
        task_duration: Some(Duration::from_millis(2)),
        fault_seed: seed,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let conn = Connection::to_sim(&sim).expect("client");
    (sim, conn)
}

/// Writes Proxmox handled, by method and path: answered 2xx, less those dropped before being
/// handled and those whose task failed by injection. Also the writes whose answer was lost.
fn handled_writes(sim: &SimHandle) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut handled: BTreeMap<String, usize> = BTreeMap::new();
    for request in sim.requests() {
        if request.method != "GET" && (200..300).contains(&request.status) {
            let path = request.path.trim_start_matches("/api2/json").to_string();
            *handled
                .entry(format!("{} {path}", request.method))
                .or_default() += 1;
        }
    }
    let mut lost_answers: BTreeMap<String, usize> = BTreeMap::new();
    for fired in sim.fired_faults() {
        if fired.method == "GET" {
            continue;
        }
        let key = format!("{} {}", fired.method, fired.path);
        match fired.action {
            "drop-before" | "task-error" => {
                if let Some(count) = handled.get_mut(&key) {
                    *count = count.saturating_sub(1);
                }
            }
            "drop-after" => *lost_answers.entry(key).or_default() += 1,
            _ => {}
        }
    }
    (handled, lost_answers)
}

#[tokio::main]
async fn main() {
    let runs: u64 = std::env::args()
        .nth(1)
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(20);
    let spec: PathBuf = [env!("CARGO_MANIFEST_DIR"), "examples", "quickstart.yaml"]
        .iter()
        .collect();
    let (clean_sim, clean_conn) = sim(0).await;
    assert!(apply(&clean_conn, &spec).await, "a clean apply succeeds");
    let (clean, _) = handled_writes(&clean_sim);

    println!(
        "quickstart from scratch, {runs} applies per kind and rate, faults on every request\n"
    );
    println!(
        "{:<24} | rate | exit 0 first time | re-run converges | repeated writes (after a lost answer)",
        "fault"
    );
    let mut repeats = Vec::new();
    for (kind, action) in kinds() {
        for rate in [0.05, 0.20] {
            let (mut first_ok, mut converged, mut repeated, mut after_lost) = (0, 0, 0, 0);
            for run in 0..runs {
                let (sim, conn) = sim(run + 1).await;
                sim.add_fault(Fault {
                    action: action.clone(),
                    method: None,
                    path: None,
                    rate,
                    times: None,
                });
                first_ok += usize::from(apply(&conn, &spec).await);
                let (handled, lost) = handled_writes(&sim);
                for (write, count) in &handled {
                    let extra = count.saturating_sub(clean.get(write).copied().unwrap_or(0));
                    if extra > 0 {
                        repeated += extra;
                        let cause = if lost.contains_key(write) {
                            after_lost += extra;
                            "after a lost answer"
                        } else {
                            "WITHOUT a lost answer"
                        };
                        repeats.push(format!("{kind} @ {rate}: {write} ×{extra} {cause}"));
                    }
                }
                sim.clear_faults();
                converged += usize::from(apply(&conn, &spec).await);
            }
            println!(
                "{kind:<24} | {:>3}% | {first_ok:>11}/{runs:<5} | {converged:>10}/{runs:<5} | {repeated} ({after_lost})",
                (rate * 100.0) as u32
            );
        }
    }
    println!("\nrepeated writes:");
    for repeat in &repeats {
        println!("  {repeat}");
    }
}
