//! Reads are retried, writes are sent once: one transient failure (a 503, a connection dropped
//! after the answer was made) on the cluster listing, on every read endpoint an `apply` of the
//! quickstart uses and on every task-status poll is ridden out, and the run sends exactly the
//! writes a run without faults sends, each task-starting request once.

use proxfleet::sim::{Fault, FaultAction, SimHandle};

use super::common::{apply, example, plan, sim, write_requests};

/// Every read an `apply` of the quickstart makes, by path glob.
const READ_PATHS: &[&str] = &[
    "/version",
    "/access/permissions",
    "/cluster/resources",
    "/cluster/nextid",
    "/cluster/mapping/pci",
    "/nodes",
    "/nodes/*/network",
    "/nodes/*/storage",
    "/nodes/*/storage/*/content",
    "/storage/*",
    "/pools",
    "/nodes/*/qemu/*/config",
    "/nodes/*/qemu/*/pending",
    "/nodes/*/qemu/*/status/current",
    "/nodes/*/qemu/*/agent/network-get-interfaces",
    "/nodes/*/tasks/*/status",
    "/nodes/*/tasks/*/log",
];

fn unavailable() -> FaultAction {
    FaultAction::Error {
        status: 503,
        message: "service unavailable".into(),
    }
}

/// The writes of a run, sorted: which requests were sent, and how often each.
fn sorted_writes(sim: &SimHandle) -> Vec<String> {
    let mut writes = write_requests(sim);
    writes.sort();
    writes
}

/// Whether a recorded path (`/api2/json/…`) matches a glob of [`READ_PATHS`] (`*`: one segment).
fn glob_match(glob: &str, path: &str) -> bool {
    let path = path.strip_prefix("/api2/json").unwrap_or(path);
    let glob: Vec<&str> = glob.split('/').collect();
    let path: Vec<&str> = path.split('/').collect();
    glob.len() == path.len() && glob.iter().zip(&path).all(|(g, p)| *g == "*" || g == p)
}

#[tokio::test]
async fn a_plan_survives_one_503_on_the_cluster_listing() {
    let (sim, conn) = sim().await;
    sim.add_fault(Fault::on("GET", "/cluster/resources", unavailable()).times(1));
    let run = plan(&conn, &example("quickstart.yaml")).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    let listings: Vec<u16> = sim
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/cluster/resources"))
        .map(|r| r.status)
        .collect();
    assert_eq!(listings.first(), Some(&503), "{listings:?}");
    assert!(listings.contains(&200), "{listings:?}");
}

#[tokio::test]
async fn an_apply_rides_out_one_failure_on_every_read_and_sends_each_write_once() {
    let spec = example("quickstart.yaml");
    let (clean_sim, clean_conn) = sim().await;
    let clean = apply(&clean_conn, &spec).await;
    assert!(clean.result.is_ok(), "{}", clean.err);
    let clean_writes = sorted_writes(&clean_sim);
    let n_tasks = clean_sim
        .requests()
        .iter()
        .filter(|r| glob_match("/nodes/*/tasks/*/status", &r.path))
        .map(|r| r.path.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u32;

    for (fault_name, action) in [
        ("503", unavailable()),
        ("drop after", FaultAction::Drop { after: true }),
    ] {
        let (sim, conn) = sim().await;
        for path in READ_PATHS {
            sim.add_fault(Fault::on("GET", path, action.clone()).times(1));
        }
        // One more failure for each task's status poll than the first: the tasks run side
        // by side, so most of them see one.
        sim.add_fault(Fault::on("GET", "/nodes/*/tasks/*/status", action.clone()).times(n_tasks));
        let run = apply(&conn, &spec).await;
        assert!(run.result.is_ok(), "{fault_name}: {}\n{}", run.out, run.err);
        assert_eq!(run.code, 0, "{fault_name}");
        assert_eq!(
            sorted_writes(&sim),
            clean_writes,
            "{fault_name}: the writes differ from a run without faults"
        );
        if fault_name == "503" {
            // Every read endpoint the run used failed at least once, and was retried.
            for glob in READ_PATHS {
                let statuses: Vec<u16> = sim
                    .requests()
                    .iter()
                    .filter(|r| r.method == "GET" && glob_match(glob, &r.path))
                    .map(|r| r.status)
                    .collect();
                if !statuses.is_empty() {
                    assert!(statuses.contains(&503), "{glob}: {statuses:?}");
                    assert!(statuses.contains(&200), "{glob}: {statuses:?}");
                }
            }
        }
        let replan = plan(&conn, &spec).await;
        assert!(replan.result.is_ok(), "{}", replan.err);
    }
}

#[tokio::test]
async fn a_task_whose_status_polls_keep_failing_for_a_while_is_waited_for_not_restarted() {
    let spec = example("quickstart.yaml");
    let (clean_sim, clean_conn) = sim().await;
    assert!(apply(&clean_conn, &spec).await.result.is_ok());
    let clean_writes = sorted_writes(&clean_sim);

    // More failures in a row than one read's own retries: only the wait can ride them out.
    let (sim, conn) = sim().await;
    sim.add_fault(Fault::on("GET", "/nodes/*/tasks/*/status", unavailable()).times(6));
    sim.add_fault(
        Fault::on(
            "GET",
            "/nodes/*/tasks/*/status",
            FaultAction::Drop { after: true },
        )
        .times(2),
    );
    let run = apply(&conn, &spec).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert_eq!(sorted_writes(&sim), clean_writes);
    let n_downloads = write_requests(&sim)
        .iter()
        .filter(|w| w.ends_with("/download-url"))
        .count();
    assert_eq!(n_downloads, 1);
}
