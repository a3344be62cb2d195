//! Fleet-scale applies with Proxmox's storage locks modelled: `examples/cluster.yaml` on a
//! simulator set up as `proxfleet sim serve --nodes 3` is (default task scale), applied from
//! scratch again and again; and thirty full clones of a four-volume template on one local
//! storage at realistic task durations, where the storage gate must keep every wait for the
//! allocation lock under its time-out. On tokio's paused clock: the simulator's tasks and
//! locks run in its time, so minutes of cluster time take a moment.

use std::time::Duration;

use proxfleet::commands::{Connection, Io};
use proxfleet::sim::{SimConfig, SimHandle};

use super::common::{apply_args, apply_with, example, plan, quickstart_text, write_spec};

/// The simulator `proxfleet sim serve --nodes 3` starts: nominal task durations at the default
/// `--task-scale` (0.05), so the storage lock model is on.
fn sim_serve_nodes_3() -> SimConfig {
    SimConfig {
        nodes: 3,
        task_duration: None,
        task_scale: 0.05,
        ..SimConfig::default()
    }
}

/// What the binary does for `proxfleet apply --auto-approve`: the preflight gate, then apply.
pub(crate) async fn checked_apply(conn: &Connection, spec: &std::path::Path) -> (bool, String) {
    let args = apply_args(spec);
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut input: &[u8] = b"";
    let gate = {
        let mut io = Io {
            out: &mut out,
            color: false,
            err: &mut err,
            input: &mut input,
            progress: proxfleet::commands::progress::ProgressMode::Lines,
            verbose: 0,
            interrupt: proxfleet::commands::Interrupt::default(),
        };
        proxfleet::commands::check::gate(spec, false, conn, &mut io).await
    };
    if let Err(gate) = gate {
        return (
            false,
            format!("preflight: {gate}\n{}", String::from_utf8_lossy(&err)),
        );
    }
    let run = apply_with(conn, &args).await;
    (run.result.is_ok(), format!("{}\n{}", run.out, run.err))
}

/// Runs of `examples/cluster.yaml` from scratch (`CLUSTER_RUNS`, 10 by default).
fn cluster_runs() -> usize {
    std::env::var("CLUSTER_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(10)
}

#[tokio::test(start_paused = true)]
async fn the_cluster_example_applies_from_scratch_every_time_on_sim_serve_nodes_3() {
    let spec = example("cluster.yaml");
    let runs = cluster_runs();
    let mut failures = Vec::new();
    for run_idx in 0..runs {
        let sim = SimHandle::start(sim_serve_nodes_3())
            .await
            .expect("simulator");
        let conn = Connection::to_sim(&sim).expect("client");
        let (ok, text) = checked_apply(&conn, &spec).await;
        let lock_timeouts = sim.storage_lock_timeouts();
        if !ok {
            failures.push(format!("run {run_idx}: {text}"));
            continue;
        }
        let after = plan(&conn, &spec).await;
        if !after.out.starts_with("No changes.") {
            failures.push(format!("run {run_idx}: not converged:\n{}", after.out));
        }
        // 30 clones and their template.
        if sim.vms().len() != 31 {
            failures.push(format!("run {run_idx}: {} VMs", sim.vms().len()));
        }
        if lock_timeouts != 0 {
            failures.push(format!(
                "run {run_idx}: {lock_timeouts} storage lock time-outs reached a retry"
            ));
        }
    }
    println!(
        "examples/cluster.yaml: {}/{runs} runs exit 0",
        runs - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Thirty full clones of the quickstart's template (boot disk, EFI disk, TPM state and
/// cloud-init drive: four volumes) on `local-lvm` of one node, with every task at its nominal
/// duration (a full clone 12 s) and pve-storage's lock as the simulator models it (1.5 s per
/// volume allocated, 10 s time-out): the storage gate counts each clone as four volumes, so
/// no lock time-out ever comes back to be retried.
#[tokio::test(start_paused = true)]
async fn thirty_full_clones_of_a_four_volume_template_never_time_out_on_the_storage_lock() {
    let mut text = quickstart_text();
    text.truncate(text.find("clones:").expect("the clones"));
    text.push_str(concat!(
        "clone_groups:\n  web:\n    count: 30\n    name: web-{n}\n    first_vmid: 301\n",
        "    template: debian-12-base\n    full: true\n    start: false\n",
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write_spec(dir.path(), "fleet.yaml", &text);
    let sim = SimHandle::start(SimConfig {
        task_duration: None,
        task_scale: 1.0,
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let conn = Connection::to_sim(&sim).expect("client");
    let started = tokio::time::Instant::now();
    let run = apply_with(&conn, &apply_args(&spec)).await;
    let took = started.elapsed();
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert_eq!(sim.vms().len(), 31);
    assert_eq!(
        sim.storage_lock_timeouts(),
        0,
        "lock time-outs that reached a retry"
    );
    // The storage-aware floor: 30 clones × 4 volumes × 1.5 s under one lock.
    let floor = Duration::from_millis(30 * 4 * 1_500);
    println!(
        "30 full clones, 4 volumes each, one local storage: {:.0} s of cluster time (allocation floor {:.0} s)",
        took.as_secs_f64(),
        floor.as_secs_f64()
    );
    assert!(
        took >= floor,
        "faster than the lock allows: the model is off"
    );
}

/// The simulator locks allocations as pve-storage does: a shared storage has one lock for the
/// whole cluster (pmxcfs `storage-<id>`), a local one a lock per node. Three downloads sent at
/// once from three nodes, the lock held 100 ms per volume and waited for 150 ms at most: into
/// the shared storage they queue behind each other and the third times out with pmxcfs'
/// words; into each node's `local` none waits.
#[tokio::test(start_paused = true)]
async fn the_simulator_locks_a_shared_storage_for_the_cluster_and_a_local_one_per_node() {
    use super::sim::Api;

    let (_sim, api) = Api::start(SimConfig {
        nodes: 3,
        task_duration: Some(Duration::from_millis(10)),
        storage_lock_hold: Some(Duration::from_millis(100)),
        storage_lock_timeout: Some(Duration::from_millis(150)),
        ..SimConfig::default()
    })
    .await;
    let sha = "0000000000000000000000000000000000000000000000000000000000000001";
    let downloads = async |storage: &str| {
        let mut upids = Vec::new();
        for node in ["pve1", "pve2", "pve3"] {
            let filename = format!("{node}.qcow2");
            let (status, body) = api
                .call(
                    "POST",
                    &format!("/nodes/{node}/storage/{storage}/download-url"),
                    &[
                        ("content", "import"),
                        ("filename", &filename),
                        ("url", "https://example.com/image.qcow2"),
                        ("checksum", sha),
                        ("checksum-algorithm", "sha256"),
                    ],
                )
                .await;
            assert_eq!(status, 200, "{body}");
            upids.push(body["data"].as_str().expect("a UPID").to_string());
        }
        let mut exits = Vec::new();
        for upid in upids {
            exits.push(api.wait(&upid).await);
        }
        exits
    };
    assert_eq!(
        downloads("shared").await,
        vec![
            "OK".to_string(),
            "OK".to_string(),
            "cfs-lock 'storage-shared' error: got lock request timeout".to_string(),
        ]
    );
    assert_eq!(downloads("local").await, vec!["OK".to_string(); 3]);
}

/// The throttle learns: with the allocation window set far below what the storage lock really
/// holds (10 ms assumed, 20 ms per volume held), the first clones' slots are freed too early and
/// the lock times out; each time-out halves the storage's slots and holds them longer, so the
/// time-outs stop instead of recurring for every clone (19 time-outs when the slots do not
/// learn, 4 when they do), and every clone is made.
#[tokio::test(start_paused = true)]
async fn lock_time_outs_cut_the_storage_s_slots_until_they_stop() {
    use proxfleet::apply::{ApplyOptions, apply};
    use proxfleet::graph::DesiredGraph;

    let mut text = quickstart_text();
    text.truncate(text.find("clones:").expect("the clones"));
    text.push_str(concat!(
        "clone_groups:\n  web:\n    count: 24\n    name: web-{n}\n    first_vmid: 301\n",
        "    template: debian-12-base\n    full: true\n    start: false\n",
    ));
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = write_spec(dir.path(), "fleet.yaml", &text);
    let desired = DesiredGraph::build(&proxfleet::spec::load(&spec).expect("spec").spec);
    let sim = SimHandle::start(SimConfig {
        task_duration: Some(Duration::from_millis(120)),
        storage_lock_hold: Some(Duration::from_millis(20)),
        storage_lock_timeout: Some(Duration::from_millis(100)),
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let conn = Connection::to_sim(&sim).expect("client");
    let options = ApplyOptions {
        parallelism: 24,
        storage_parallelism: 4,
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
    let timeouts = sim.storage_lock_timeouts();
    println!("24 full clones, window a half of the real hold: {timeouts} lock time-outs");
    assert!(!report.failed());
    assert_eq!(sim.vms().len(), 25);
    assert!(
        timeouts > 0,
        "the window is too short: the lock times out at first"
    );
    assert!(
        timeouts <= 6,
        "{timeouts} time-outs: the slots did not learn"
    );
}
