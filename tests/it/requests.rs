//! Request economy, counted by the simulator: a plan lists the cluster once and reads each
//! relevant config once; an apply reads nothing its observation already read, and an update
//! carries the digest observed for the plan, so an edit made since is refused, not overwritten.

use std::collections::BTreeMap;
use std::time::Duration;

use proxfleet::apply::{ApplyOptions, StepResult};
use proxfleet::graph::DesiredGraph;
use proxfleet::{diff, observe, spec};

use crate::common::*;

/// Requests by `METHOD path`, for a check that nothing was sent twice.
fn counted(sim: &proxfleet::sim::SimHandle) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for record in sim.requests() {
        *counts
            .entry(format!("{} {}", record.method, record.path))
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn a_no_op_plan_lists_once_and_reads_each_config_once() {
    let (sim, conn) = sim().await;
    let quickstart = example("quickstart.yaml");
    assert!(apply(&conn, &quickstart).await.result.is_ok());
    sim.clear_requests();

    let run = plan(&conn, &quickstart).await;
    assert!(run.out.starts_with("No changes."), "{}", run.out);
    let counts = counted(&sim);
    let expected: BTreeMap<String, usize> = [
        "GET /api2/json/cluster/resources",
        "GET /api2/json/nodes/pve1/qemu/9000/config",
        // Running VMs are read with their pending changes, stopped ones plainly.
        "GET /api2/json/nodes/pve1/qemu/201/pending",
        "GET /api2/json/nodes/pve1/qemu/202/pending",
        "GET /api2/json/nodes/pve1/qemu/203/pending",
        "GET /api2/json/nodes/pve1/storage/local/content",
    ]
    .into_iter()
    .map(|request| (request.to_string(), 1))
    .collect();
    assert_eq!(counts, expected);
}

#[tokio::test]
async fn an_update_reads_no_config_again_and_refuses_an_edit_made_since_the_plan() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let base = write_spec(dir.path(), "base.yaml", &quickstart_text());
    assert!(apply(&conn, &base).await.result.is_ok());
    let edited = quickstart_text().replace(
        "  web-2:\n    vmid: 202\n    template: debian-12-base\n",
        "  web-2:\n    vmid: 202\n    template: debian-12-base\n    memory: 4GiB\n",
    );
    let file = write_spec(dir.path(), "edited.yaml", &edited);
    let desired = DesiredGraph::build(&spec::load(&file).unwrap().spec);
    let apply_plan = async |conn: &proxfleet::commands::Connection| {
        let actual = observe::observe(&conn.client, &desired).await.unwrap();
        let plan = diff::diff(&desired, &actual);
        assert_eq!(plan.changes.len(), 1, "{plan:?}");
        (actual, plan)
    };
    let options = ApplyOptions {
        backoff: backon::ExponentialBuilder::default().with_min_delay(Duration::from_millis(1)),
        ..ApplyOptions::default()
    };

    // Someone edits web-2 between plan and apply: the stale plan is refused.
    let (actual, plan) = apply_plan(&conn).await;
    sim.set_vm_config(202, "memory", Some("3072")).unwrap();
    let report = proxfleet::apply::apply(
        &conn.client,
        &plan,
        &desired,
        &actual,
        &options,
        std::sync::Arc::new(|_| {}),
    )
    .await;
    match &report.outcomes[0].result {
        StepResult::Failed(message) => assert!(message.contains("checksum mismatch"), "{message}"),
        other => panic!("the stale update was not refused: {other:?}"),
    }
    let web2 = sim.vms().into_iter().find(|vm| vm.vmid == 202).unwrap();
    assert_eq!(web2.config.get("memory").map(String::as_str), Some("3072"));

    // Planned again, it applies, and the apply itself reads no config.
    let (actual, plan) = apply_plan(&conn).await;
    sim.clear_requests();
    let report = proxfleet::apply::apply(
        &conn.client,
        &plan,
        &desired,
        &actual,
        &options,
        std::sync::Arc::new(|_| {}),
    )
    .await;
    assert!(!report.failed(), "{report:?}");
    let config_reads = counted(&sim)
        .keys()
        .filter(|request| {
            request.starts_with("GET")
                && (request.ends_with("/config") || request.ends_with("/pending"))
        })
        .count();
    assert_eq!(config_reads, 0);
    let web2 = sim.vms().into_iter().find(|vm| vm.vmid == 202).unwrap();
    assert_eq!(web2.config.get("memory").map(String::as_str), Some("4096"));
}

#[tokio::test]
async fn the_preflight_checks_of_a_converged_fleet_cost_a_fixed_handful_of_requests() {
    let (sim, conn) = sim().await;
    let quickstart = example("quickstart.yaml");
    assert!(apply(&conn, &quickstart).await.result.is_ok());
    sim.clear_requests();
    let run = check(&conn, &quickstart, false).await;
    assert!(run.result.is_ok(), "{}", run.out);
    let counts = counted(&sim);
    // Version, the cluster listing (nodes, VMs and storages), one permissions dump, the
    // bridges of the one node: no request per VM (the plan's observation reads those).
    let expected: BTreeMap<String, usize> = [
        "GET /api2/json/version",
        "GET /api2/json/cluster/resources",
        "GET /api2/json/access/permissions",
        "GET /api2/json/nodes/pve1/network",
    ]
    .into_iter()
    .map(|request| (request.to_string(), 1))
    .collect();
    assert_eq!(counts, expected);
}
