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
