//! A node's task list as the simulator serves it (pve-manager `PVE/API2/Tasks.pm`,
//! `node_tasks`: sources, filters, paging, ordering, fields), and waiting for tasks through it:
//! one listing per node and round however many tasks are awaited, a task that ends while others
//! run seen within a round, its own status read once.

use std::time::Duration;

use proxfleet::commands::Connection;
use proxfleet::pve::Upid;
use proxfleet::sim::{Fault, FaultAction, SimConfig, SimHandle};
use serde_json::Value;

use super::sim::Api;

/// A listing's parameters.
type Query<'a> = &'a [(&'a str, &'a str)];

/// The UPIDs of a listing's entries, in its order.
fn upids(body: &Value) -> Vec<String> {
    body["data"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["upid"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// How many times pve1's task list was read so far.
fn pve1_task_listings(sim: &SimHandle) -> usize {
    sim.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api2/json/nodes/pve1/tasks")
        .count()
}

#[tokio::test]
async fn the_task_list_answers_with_proxmox_sources_filters_order_and_fields() {
    let (sim, api) = Api::start(SimConfig {
        task_duration: Some(Duration::from_millis(300)),
        ..SimConfig::default()
    })
    .await;
    let (_, body) = api
        .call("POST", "/nodes/pve1/qemu", &[("vmid", "100")])
        .await;
    let created = body["data"].as_str().unwrap().to_string();
    assert_eq!(api.wait(&created).await, "OK");
    sim.add_fault(
        Fault::on(
            "POST",
            "/nodes/pve1/qemu",
            FaultAction::TaskError("unable to create VM 101: boom".into()),
        )
        .times(1),
    );
    let (_, body) = api
        .call("POST", "/nodes/pve1/qemu", &[("vmid", "101")])
        .await;
    let failed = body["data"].as_str().unwrap().to_string();
    assert_eq!(api.wait(&failed).await, "unable to create VM 101: boom");
    let (_, body) = api
        .call("POST", "/nodes/pve1/qemu/100/status/start", &[])
        .await;
    let running = body["data"].as_str().unwrap().to_string();

    let list = |params: &'static [(&'static str, &'static str)]| {
        let api = &api;
        async move {
            let (status, body) = api.call("GET", "/nodes/pve1/tasks", params).await;
            assert_eq!(status, 200, "{params:?}: {body}");
            body
        }
    };
    // Active: the running task only, RUNNING, no end time.
    let active = list(&[("source", "active")]).await;
    assert_eq!(upids(&active), std::slice::from_ref(&running));
    let entry = &active["data"][0];
    assert_eq!(entry["status"], "RUNNING");
    assert!(entry.get("endtime").is_none(), "{entry}");
    for field in ["node", "pid", "pstart", "starttime", "type", "id", "user"] {
        assert!(entry.get(field).is_some(), "{field} missing: {entry}");
    }
    // A token's task names the user and the token apart.
    assert_eq!(entry["user"], "root@pam");
    assert_eq!(entry["tokenid"], "proxfleet");
    assert_eq!(entry["type"], "qmstart");
    assert_eq!(entry["id"], "100");
    // The archive (the default): ended tasks, the latest first, with exit status and end.
    let archive = list(&[]).await;
    assert_eq!(upids(&archive), [failed.clone(), created.clone()]);
    assert_eq!(
        archive["data"][0]["status"],
        "unable to create VM 101: boom"
    );
    assert_eq!(archive["data"][1]["status"], "OK");
    assert!(archive["data"][1]["endtime"].as_u64().is_some());
    // All: active first, then the archive.
    let all = list(&[("source", "all")]).await;
    assert_eq!(
        upids(&all),
        [running.clone(), failed.clone(), created.clone()]
    );
    assert_eq!(all["total"], 3);

    let cases: &[(Query, Vec<&String>)] = &[
        (
            &[("source", "all"), ("typefilter", "qmstart")],
            vec![&running],
        ),
        (&[("source", "all"), ("vmid", "101")], vec![&failed]),
        (
            &[("source", "all"), ("statusfilter", "error")],
            vec![&failed],
        ),
        // A running task has no status yet: it counts as `unknown`.
        (
            &[("source", "all"), ("statusfilter", "ok,unknown")],
            vec![&running, &created],
        ),
        // `errors` drops the OK ones (and wins over `statusfilter`).
        (
            &[("source", "all"), ("errors", "1"), ("statusfilter", "ok")],
            vec![&running, &failed],
        ),
        (&[("source", "all"), ("since", "4000000000")], vec![]),
        (&[("source", "all"), ("until", "1")], vec![]),
        (
            &[("source", "all"), ("userfilter", "ROOT@PAM")],
            vec![&running, &failed, &created],
        ),
        (&[("source", "all"), ("userfilter", "alice")], vec![]),
        (
            &[("source", "all"), ("start", "1"), ("limit", "1")],
            vec![&failed],
        ),
        (&[("source", "all"), ("limit", "0")], vec![]),
    ];
    for (params, expected) in cases {
        let (status, body) = api.call("GET", "/nodes/pve1/tasks", params).await;
        assert_eq!(status, 200, "{params:?}: {body}");
        let expected: Vec<String> = expected.iter().map(|u| (*u).clone()).collect();
        assert_eq!(upids(&body), expected, "{params:?}");
    }
    // The total counts what passed the filters, past the page.
    let (_, paged) = api
        .call(
            "GET",
            "/nodes/pve1/tasks",
            &[("source", "all"), ("limit", "1")],
        )
        .await;
    assert_eq!(paged["total"], 3);
    // Parameters are checked as Proxmox checks them.
    for bad in [
        [("source", "running")],
        [("statusfilter", "fine")],
        [("limit", "-1")],
    ] {
        let (status, body) = api.call("GET", "/nodes/pve1/tasks", &bad).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
    }
    assert_eq!(api.wait(&running).await, "OK");
    let active = list(&[("source", "active")]).await;
    assert!(upids(&active).is_empty(), "{active}");
}

#[tokio::test]
async fn a_task_ending_while_others_run_is_seen_within_one_round_and_read_once() {
    // Nominal durations scaled down: a start takes 15 ms, a create without disks 400 ms.
    let (sim, api) = Api::start(SimConfig {
        task_duration: None,
        task_scale: 0.1,
        ..SimConfig::default()
    })
    .await;
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu", &[("vmid", "100")])
            .await,
        "OK"
    );
    let conn = Connection::to_sim(&sim).unwrap();
    let client = &conn.client;
    sim.clear_requests();
    let long_a = client.create_vm("pve1", 101, &[]).await.unwrap();
    let long_b = client.create_vm("pve1", 102, &[]).await.unwrap();
    let short = client.start_vm("pve1", 100).await.unwrap();
    let timeout = Duration::from_secs(30);
    let listings = || pve1_task_listings(&sim);
    // The moment the short task has done its work (the VM runs), the listings made so far.
    let ended_after = async {
        loop {
            if sim.vms().iter().any(|vm| vm.vmid == 100 && vm.running) {
                return listings();
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let short_wait = async {
        client.wait_task(&short, timeout).await.unwrap();
        (sim.requests(), std::time::Instant::now())
    };
    let long_waits = async {
        let (a, b) = tokio::join!(
            client.wait_task(&long_a, timeout),
            client.wait_task(&long_b, timeout)
        );
        a.unwrap();
        b.unwrap();
        std::time::Instant::now()
    };
    let ((n_before_end, (seen, short_seen_at)), long_seen_at) =
        tokio::join!(async { tokio::join!(ended_after, short_wait) }, long_waits);
    let status_of = |upid: &Upid| {
        let encoded: String = url::form_urlencoded::byte_serialize(upid.to_string().as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        format!("/api2/json/nodes/pve1/tasks/{encoded}/status")
    };
    // Every listing before the short task's wait returned came before its end was known.
    let n_listings_before_seen = seen
        .iter()
        .filter(|r| r.path == "/api2/json/nodes/pve1/tasks")
        .count();
    // The round in flight when it ended (if any) and the next one.
    assert!(
        n_listings_before_seen <= n_before_end + 2,
        "seen {} rounds late",
        n_listings_before_seen - n_before_end
    );
    // The others were still running then: their waits ended later.
    assert!(short_seen_at < long_seen_at);
    // Each task's end and exit status came with a listing (`source=all` lists the ended
    // tasks with their status): no task's own status was read; the rest was one listing per
    // round for all three.
    let all = sim.requests();
    for upid in [&short, &long_a, &long_b] {
        let n_reads = all.iter().filter(|r| r.path == status_of(upid)).count();
        assert_eq!(n_reads, 0, "{upid}");
    }
    let n_listings = listings();
    // 400 ms of waiting, a tenth of the time waited between rounds (10 ms at first).
    assert!(n_listings <= 40, "{n_listings} listings");
    let polls: Vec<&str> = all
        .iter()
        .filter(|r| r.method == "GET")
        .map(|r| r.path.as_str())
        .filter(|p| !p.ends_with("/nodes/pve1/tasks"))
        .collect();
    assert!(polls.is_empty(), "{polls:?}");
}

#[tokio::test]
async fn tasks_of_a_steady_length_are_seen_in_about_one_listing_each_once_learnt() {
    // Creates of 300 ms, one after another: the first is looked at a tenth of its wait apart
    // (about 27 listings); once a few have been seen, each is first looked at where the kind
    // ends.
    let (sim, _api) = Api::start(SimConfig {
        task_duration: Some(Duration::from_millis(300)),
        ..SimConfig::default()
    })
    .await;
    let conn = Connection::to_sim(&sim).unwrap();
    let client = &conn.client;
    let listings = || pve1_task_listings(&sim);
    let mut per_task = Vec::new();
    for vmid in 100..116 {
        let before = listings();
        let upid = client.create_vm("pve1", vmid, &[]).await.unwrap();
        client
            .wait_task(&upid, Duration::from_secs(30))
            .await
            .unwrap();
        per_task.push(listings() - before);
    }
    assert!(per_task[0] >= 10, "the first: {per_task:?}");
    let learnt = &per_task[6..];
    let mean = learnt.iter().sum::<usize>() as f64 / learnt.len() as f64;
    assert!(
        mean <= 1.6,
        "{mean} listings a task once learnt: {per_task:?}"
    );
}

#[tokio::test]
async fn where_the_list_cannot_answer_each_task_is_looked_at_on_its_own() {
    let (sim, api) = Api::start(SimConfig {
        task_duration: Some(Duration::from_millis(100)),
        ..SimConfig::default()
    })
    .await;
    let _ = api;
    // An older Proxmox refuses the listing's parameters: a permanent answer.
    sim.add_fault(Fault::on(
        "GET",
        "/nodes/*/tasks",
        FaultAction::Error {
            status: 400,
            message: "Parameter verification failed.".into(),
        },
    ));
    let conn = Connection::to_sim(&sim).unwrap();
    let first = conn.client.create_vm("pve1", 100, &[]).await.unwrap();
    conn.client
        .wait_task(&first, Duration::from_secs(10))
        .await
        .unwrap();
    let second = conn.client.create_vm("pve1", 101, &[]).await.unwrap();
    conn.client
        .wait_task(&second, Duration::from_secs(10))
        .await
        .unwrap();
    let requests = sim.requests();
    let n_listings = requests
        .iter()
        .filter(|r| r.path.ends_with("/nodes/pve1/tasks"))
        .count();
    // Asked once; after the refusal the node's tasks are polled one by one.
    assert_eq!(n_listings, 1);
    let n_status = requests
        .iter()
        .filter(|r| r.path.ends_with("/status"))
        .count();
    assert!(n_status >= 2, "{n_status}");
}
