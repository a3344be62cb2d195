//! Kill-anywhere at fleet scale: a real `proxfleet apply` process applying
//! `examples/cluster.yaml` (a template and thirty linked clones over three nodes) to a simulator
//! set up as `proxfleet sim serve --nodes 3` is, killed with SIGKILL at a random moment; the
//! first re-run, with the preflight checks on, must exit 0 and leave exactly the spec's VMs
//! (none twice, none locked) and exactly the volumes a clean run leaves (no orphan, no leak).
//! Seeded: `CHAOS_ROUNDS` (8 by default) rounds from `CHAOS_SEED` (12 by default).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use proxfleet::commands::Connection;
use proxfleet::sim::{SimConfig, SimHandle};
use rand::{Rng, SeedableRng};

use super::common::{apply_process, example, plan, run_process, text};

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// `proxfleet sim serve --nodes 3` with `--task-scale 0.02`: the storage lock model on, tasks
/// short enough that a round takes a second or two.
async fn cluster_sim() -> SimHandle {
    SimHandle::start(SimConfig {
        nodes: 3,
        task_duration: None,
        task_scale: 0.02,
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

/// What is wrong with the cluster after a re-run: not converged, VMs twice or locked, volumes
/// other than a clean run's.
async fn end_state_problems(
    sim: &SimHandle,
    conn: &Connection,
    spec: &Path,
    clean_volumes: &[String],
) -> Vec<String> {
    let mut problems = Vec::new();
    let after = plan(conn, spec).await;
    if !after.out.starts_with("No changes.") {
        problems.push(format!(
            "a plan after the re-run is not empty:\n{}",
            after.out
        ));
    }
    let vms = sim.vms();
    let mut names: Vec<String> = vms.iter().filter_map(|vm| vm.name.clone()).collect();
    names.sort();
    let n_names = names.len();
    names.dedup();
    if vms.len() != 31 || names.len() != n_names {
        problems.push(format!("{} VMs, {} distinct names", vms.len(), names.len()));
    }
    for vm in vms.iter().filter(|vm| vm.lock.is_some()) {
        problems.push(format!("VM {} still locked {:?}", vm.vmid, vm.lock));
    }
    let mut volumes: Vec<String> = sim.volumes().into_iter().map(|v| v.volid).collect();
    volumes.sort();
    if volumes != clean_volumes {
        problems.push(format!(
            "volumes differ from a clean run's: {} against {}",
            volumes.len(),
            clean_volumes.len()
        ));
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_apply_killed_anywhere_is_finished_by_the_first_rerun_with_checks_on() {
    let spec = example("cluster.yaml");
    let home = tempfile::tempdir().expect("tempdir");
    let rounds = env_number("CHAOS_ROUNDS", 8);
    let mut rng = rand::rngs::StdRng::seed_from_u64(env_number("CHAOS_SEED", 12));

    // A clean run: how long a whole apply takes, and what it leaves.
    let clean = cluster_sim().await;
    let started = Instant::now();
    let run = run_process(apply_process(&clean, &spec, home.path())).await;
    let whole = started.elapsed();
    assert!(run.status.success(), "{}", text(&run.stderr));
    let mut clean_volumes: Vec<String> = clean.volumes().into_iter().map(|v| v.volid).collect();
    clean_volumes.sort();

    let mut problems = Vec::new();
    let mut failed_rounds = 0;
    let mut table = String::new();
    for round in 0..rounds {
        let sim = cluster_sim().await;
        let conn = Connection::to_sim(&sim).expect("client");
        let kill_at = Duration::from_millis(rng.random_range(0..whole.as_millis() as u64));
        let mut killed = apply_process(&sim, &spec, home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("proxfleet starts");
        tokio::time::sleep(kill_at).await;
        // `Child::kill` is SIGKILL on Unix: no handler runs, tasks in flight keep running.
        let _ = killed.kill();
        let _ = killed.wait();
        let writes_before = sim.requests().iter().filter(|r| r.method != "GET").count();

        let rerun = run_process(apply_process(&sim, &spec, home.path())).await;
        let mut found = Vec::new();
        if !rerun.status.success() {
            found.push(format!(
                "the first re-run exited {:?}:\n{}",
                rerun.status.code(),
                text(&rerun.stderr)
            ));
        } else {
            found.extend(end_state_problems(&sim, &conn, &spec, &clean_volumes).await);
        }
        table.push_str(&format!(
            "round {round:>2}: killed at {:>5} ms after {writes_before:>3} writes: {}\n",
            kill_at.as_millis(),
            if found.is_empty() { "ok" } else { "FAILED" }
        ));
        failed_rounds += usize::from(!found.is_empty());
        problems.extend(found.into_iter().map(|p| format!("round {round}: {p}")));
    }
    println!(
        "kill-anywhere, examples/cluster.yaml, a whole apply {} ms:\n{table}{}/{rounds} first re-runs exit 0 and converge",
        whole.as_millis(),
        rounds as usize - failed_rounds
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The preflight agrees with plan and apply about a killed run's work in progress: a VM at a
/// desired vmid that a task is still cloning (locked `clone`, no marker yet) is waited for,
/// not reported as held by a stranger; one that is not locked stays a stranger.
#[tokio::test]
async fn the_preflight_takes_a_vm_being_cloned_at_a_desired_vmid_for_work_in_progress() {
    let spec = example("quickstart.yaml");
    let (sim, conn) = super::common::sim().await;
    sim.insert_vm("pve1", 201, &[("lock", "clone"), ("memory", "2048")])
        .expect("a VM being cloned");
    let report = super::common::check(&conn, &spec, false).await;
    assert!(
        !report.out.contains("which proxfleet did not create"),
        "{}",
        report.out
    );
    assert!(
        report.out.contains("being made by a running task"),
        "{}",
        report.out
    );
    assert!(
        report.out.contains("201 (locked `clone`)"),
        "{}",
        report.out
    );

    sim.set_lock(201, None).expect("unlocked");
    let report = super::common::check(&conn, &spec, false).await;
    assert!(
        report
            .out
            .contains("held by VM 201 on pve1, which proxfleet did not create"),
        "{}",
        report.out
    );
}
