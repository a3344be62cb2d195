//! Keeping a fleet current (issue 16): what the rollout relies on in the simulator, the guest
//! agent's `ping` that a replaced clone's health check sends.

use std::time::Duration;

use proxfleet::sim::SimConfig;

use super::sim::{Api, fast};

#[tokio::test(start_paused = true)]
async fn agent_ping_answers_once_the_guest_agent_runs() {
    let (sim, api) = Api::start(SimConfig {
        agent_boot_delay: Duration::from_millis(300),
        ..fast()
    })
    .await;
    sim.insert_vm("pve1", 100, &[("name", "plain")]).unwrap();
    sim.insert_vm("pve1", 101, &[("name", "web"), ("agent", "enabled=1")])
        .unwrap();
    let ping = |vmid: u32| format!("/nodes/pve1/qemu/{vmid}/agent/ping");
    let message =
        |body: &serde_json::Value| body["message"].as_str().unwrap_or_default().to_string();

    let (status, body) = api.call("POST", &ping(100), &[]).await;
    assert_eq!(
        (status, message(&body)),
        (500, "No QEMU guest agent configured\n".into())
    );
    let (status, body) = api.call("POST", &ping(101), &[]).await;
    assert_eq!(
        (status, message(&body)),
        (500, "VM 101 is not running\n".into())
    );
    assert_eq!(
        api.task("POST", "/nodes/pve1/qemu/101/status/start", &[])
            .await,
        "OK"
    );
    let (status, body) = api.call("POST", &ping(101), &[]).await;
    assert_eq!(
        (status, message(&body)),
        (500, "QEMU guest agent is not running\n".into())
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    let (status, body) = api.call("POST", &ping(101), &[]).await;
    assert_eq!(
        (status, body["data"].clone()),
        (200, serde_json::json!({"result": {}}))
    );
}

use super::common::{
    apply, apply_process, change_headers, plan, quickstart_text, run_process, sim as fresh_sim,
    write_requests, write_spec,
};

const OLD_SUM: &str = "a58d86525d75fd8e139a2302531ce5d2ab75ef0273cfe78f9d53aada4b23efd45f8433b4806fa4570cfe981c8fae26f5e5e855cbd66ba2198862f28125fd2d45";
const OLD_URL: &str = "bookworm/20250210-2019/debian-12-genericcloud-amd64-20250210-2019.qcow2";
const NEW_URL: &str = "bookworm/20250301-2040/debian-12-genericcloud-amd64-20250301-2040.qcow2";

/// The quickstart with builds kept side by side and three linked clones that follow the
/// template's new builds by `policy` (`keep` or `replace`).
fn fleet(policy: &str, new_image: bool) -> String {
    let mut text = quickstart_text()
        .replace(
            "    vmid: 9000\n    node: pve1\n",
            "    vmid: 9000\n    builds: 3\n    node: pve1\n",
        )
        .replace(
            "    template: debian-12-base\n",
            &format!(
                "    template: debian-12-base\n    full: false\n    on_template_change: {policy}\n    rollout:\n      max_unavailable: 1\n    wait_for_ip_timeout: 5s\n"
            ),
        );
    if new_image {
        text = text
            .replace(OLD_URL, NEW_URL)
            .replace(OLD_SUM, &format!("b{}", &OLD_SUM[1..]));
    }
    text
}

/// `fleet`, each clone with a data disk kept across its replacement.
fn fleet_with_disks(policy: &str, new_image: bool) -> String {
    fleet(policy, new_image).replace(
        "    wait_for_ip_timeout: 5s\n",
        "    wait_for_ip_timeout: 5s\n    data_disks:\n      - slot: scsi1\n        storage: local-lvm\n        size: 2G\n        keep: true\n",
    )
}

/// Each clone's data volume gets a contents token naming the clone.
fn mark_data_disks(sim: &proxfleet::sim::SimHandle) {
    for vm in sim.vms().into_iter().filter(|vm| !vm.template) {
        let volid = vm.config["scsi1"].split(',').next().unwrap().to_string();
        sim.write_volume(&volid, &format!("data of {}", vm.vmid))
            .unwrap();
    }
}

/// Where each clone's data token is: (token, volume exists, the VM and slot holding it).
fn data_tokens(sim: &proxfleet::sim::SimHandle) -> Vec<(String, Option<(u32, String)>)> {
    let vms = sim.vms();
    sim.volumes()
        .into_iter()
        .filter(|v| v.contents.starts_with("data of "))
        .map(|v| (v.contents.clone(), super::common::held_at(&vms, &v.volid)))
        .collect()
}

/// The clones' markers: which build each was made from.
fn made_from(sim: &proxfleet::sim::SimHandle) -> Vec<(u32, String)> {
    sim.vms()
        .into_iter()
        .filter(|vm| !vm.template)
        .map(|vm| {
            let from = vm
                .config
                .get("description")
                .and_then(|d| proxfleet::ownership::Marker::find(d))
                .and_then(|m| m.from)
                .map_or_else(|| "-".to_string(), |k| k.to_string());
            (vm.vmid, from)
        })
        .collect()
}

fn templates(sim: &proxfleet::sim::SimHandle) -> Vec<u32> {
    sim.vms()
        .into_iter()
        .filter(|vm| vm.template)
        .map(|vm| vm.vmid)
        .collect()
}

#[tokio::test]
async fn a_new_image_rolls_linked_clones_over_to_a_new_build_one_at_a_time() {
    let (sim, conn) = fresh_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let first = write_spec(dir.path(), "first.yaml", &fleet("replace", false));
    let run = apply(&conn, &first).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert_eq!(templates(&sim), vec![9000]);
    let on_first: Vec<(u32, String)> = [201, 202, 203]
        .into_iter()
        .map(|vmid| (vmid, "template.debian-12-base".to_string()))
        .collect();
    assert_eq!(made_from(&sim), on_first);

    let second = write_spec(dir.path(), "second.yaml", &fleet("replace", true));
    let planned = plan(&conn, &second).await;
    assert_eq!(
        change_headers(&planned.out),
        vec![
            "# image.debian-12 (on pve1) will be created",
            "# template.debian-12-base build 2 (vmid 9001 on pve1) will be created",
            "# clone.web-1 (vmid 201 on pve1) must be replaced",
            "# clone.web-2 (vmid 202 on pve1) must be replaced",
            "# clone.web-3 (vmid 203 on pve1) must be replaced",
            "# template.debian-12-base (vmid 9000 on pve1) will be destroyed",
        ],
        "{}",
        planned.out
    );
    assert!(
        planned.out.contains(
            "#   rollout of `clones of debian-12-base`: batch 3 of 3, after batch 2 is healthy"
        ),
        "{}",
        planned.out
    );
    assert!(
        planned
            .out
            .contains("guest agent answers and reports 192.0.2.12"),
        "{}",
        planned.out
    );

    sim.clear_requests();
    let run = apply(&conn, &second).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    // One clone at a time: a clone is deleted only after the one before it answered its
    // health check.
    let log: Vec<String> = sim
        .requests()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .filter(|r| r.starts_with("DELETE /api2/json/nodes/pve1/qemu/") || r.contains("/agent/"))
        .collect();
    let position = |needle: &str| {
        log.iter()
            .position(|r| r.contains(needle))
            .unwrap_or_else(|| panic!("{needle} not in {log:#?}"))
    };
    let last_check = |vmid: u32| {
        log.iter()
            .rposition(|r| r.contains(&format!("/qemu/{vmid}/agent/")))
            .unwrap_or_else(|| panic!("no health check of {vmid} in {log:#?}"))
    };
    assert!(last_check(201) < position("DELETE /api2/json/nodes/pve1/qemu/202"));
    assert!(last_check(202) < position("DELETE /api2/json/nodes/pve1/qemu/203"));
    assert!(last_check(203) < position("DELETE /api2/json/nodes/pve1/qemu/9000"));
    assert_eq!(templates(&sim), vec![9001], "build 1 is gone at the end");
    let on_second: Vec<(u32, String)> = [201, 202, 203]
        .into_iter()
        .map(|vmid| (vmid, "template.debian-12-base#2".to_string()))
        .collect();
    assert_eq!(made_from(&sim), on_second);
    let clone = sim.vms().into_iter().find(|vm| vm.vmid == 202).unwrap();
    assert!(
        clone.config["scsi0"].contains("base-9001-disk-"),
        "linked to build 2: {:?}",
        clone.config
    );
    let again = plan(&conn, &second).await;
    assert!(again.out.starts_with("No changes."), "{}", again.out);
}

#[tokio::test]
async fn with_keep_the_clones_stay_on_their_build_and_it_is_kept() {
    let (sim, conn) = fresh_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let first = write_spec(dir.path(), "first.yaml", &fleet("keep", false));
    assert!(apply(&conn, &first).await.result.is_ok());
    let second = write_spec(dir.path(), "second.yaml", &fleet("keep", true));
    let planned = plan(&conn, &second).await;
    assert_eq!(
        change_headers(&planned.out),
        vec![
            "# image.debian-12 (on pve1) will be created",
            "# template.debian-12-base build 2 (vmid 9001 on pve1) will be created",
        ],
        "{}",
        planned.out
    );
    assert!(
        planned.out.contains(
            "template.debian-12-base build 1 (vmid 9000) kept: 3 linked clones use it (web-1, web-2, web-3)"
        ),
        "{}",
        planned.out
    );
    sim.clear_requests();
    let run = apply(&conn, &second).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert!(
        !write_requests(&sim).iter().any(|r| r.contains("/qemu/20")),
        "no clone is touched: {:#?}",
        write_requests(&sim)
    );
    assert_eq!(templates(&sim), vec![9000, 9001]);
    let again = plan(&conn, &second).await;
    assert!(again.out.starts_with("No changes."), "{}", again.out);
    assert!(
        again.out.contains("build 1 (vmid 9000) kept"),
        "{}",
        again.out
    );
    // A new clone comes from the newest build.
    let more = fleet("keep", true).replace(
        "clones:\n",
        "clones:\n  web-4:\n    vmid: 204\n    template: debian-12-base\n    full: false\n",
    );
    let third = write_spec(dir.path(), "third.yaml", &more);
    let run = apply(&conn, &third).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    let web4 = sim.vms().into_iter().find(|vm| vm.vmid == 204).unwrap();
    assert!(
        web4.config["scsi0"].contains("base-9001-disk-"),
        "{:?}",
        web4.config
    );
}

#[tokio::test]
async fn a_failed_health_check_stops_the_rollout_and_the_next_apply_finishes_it() {
    use proxfleet::sim::{Fault, FaultAction};

    let (sim, conn) = fresh_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let first = write_spec(dir.path(), "first.yaml", &fleet("replace", false));
    assert!(apply(&conn, &first).await.result.is_ok());
    let second = write_spec(dir.path(), "second.yaml", &fleet("replace", true));
    // The second clone's new guest never answers.
    sim.add_fault(Fault::on(
        "POST",
        "/nodes/*/qemu/202/agent/ping",
        FaultAction::Error {
            status: 500,
            message: "QEMU guest agent is not running".into(),
        },
    ));
    let run = apply(&conn, &second).await;
    assert!(run.result.is_err(), "{}", run.out);
    let everything = format!("{}\n{}", run.out, run.err);
    assert!(
        everything.contains("VM 202 is not healthy after 5s: QEMU guest agent is not running"),
        "{everything}"
    );
    let moved = made_from(&sim);
    assert_eq!(
        moved,
        vec![
            (201, "template.debian-12-base#2".to_string()),
            (202, "template.debian-12-base#2".to_string()),
            (203, "template.debian-12-base".to_string()),
        ],
        "web-1 moved, web-2 was made again but is not healthy, web-3 waits"
    );
    assert_eq!(
        templates(&sim),
        vec![9000, 9001],
        "build 1 is kept for web-3"
    );

    sim.clear_faults();
    let resumed = plan(&conn, &second).await;
    assert_eq!(
        change_headers(&resumed.out),
        vec![
            "# clone.web-3 (vmid 203 on pve1) must be replaced",
            "# template.debian-12-base (vmid 9000 on pve1) will be destroyed",
        ],
        "{}",
        resumed.out
    );
    let run = apply(&conn, &second).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert_eq!(templates(&sim), vec![9001]);
    assert!(plan(&conn, &second).await.out.starts_with("No changes."));
}

/// The storage lock model on, tasks short (as `sim serve --task-scale 0.02`).
async fn scaled_sim() -> proxfleet::sim::SimHandle {
    proxfleet::sim::SimHandle::start(SimConfig {
        task_duration: None,
        task_scale: 0.02,
        ..SimConfig::default()
    })
    .await
    .expect("simulator")
}

/// Kill-anywhere over a rollout: an `apply` rolling three linked clones to a new build, killed
/// with SIGKILL at a random moment (between a clone's deletion and its replacement's start
/// among others); the first re-run exits 0 and leaves the fleet on the new build, one
/// template, nothing locked, no plan left. Seeded: `ROLLOUT_KILL_ROUNDS` (6) from 16.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_killed_anywhere_is_finished_by_the_next_apply() {
    use rand::{Rng, SeedableRng};

    let rounds: u64 = std::env::var("ROLLOUT_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut rng = rand::rngs::StdRng::seed_from_u64(16);
    let dir = tempfile::tempdir().unwrap();
    let first = write_spec(
        dir.path(),
        "first.yaml",
        &fleet_with_disks("replace", false),
    );
    let second = write_spec(
        dir.path(),
        "second.yaml",
        &fleet_with_disks("replace", true),
    );

    // A clean rollout: how long it takes.
    let clean = scaled_sim().await;
    let run = run_process(apply_process(&clean, &first, dir.path())).await;
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let started = std::time::Instant::now();
    let run = run_process(apply_process(&clean, &second, dir.path())).await;
    let whole = started.elapsed();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let mut problems = Vec::new();
    for round in 0..rounds {
        let sim = scaled_sim().await;
        let conn = proxfleet::commands::Connection::to_sim(&sim).unwrap();
        let run = run_process(apply_process(&sim, &first, dir.path())).await;
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        mark_data_disks(&sim);
        let kill_at =
            std::time::Duration::from_millis(rng.random_range(0..whole.as_millis() as u64));
        let mut killed = apply_process(&sim, &second, dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(kill_at).await;
        let _ = killed.kill();
        let _ = killed.wait();
        // No data volume is lost at the kill point, and each is held by some VM.
        let tokens = data_tokens(&sim);
        if tokens.len() != 3 || tokens.iter().any(|(_, held)| held.is_none()) {
            problems.push(format!(
                "round {round} (killed at {} ms): data volumes {tokens:?}",
                kill_at.as_millis()
            ));
        }
        let rerun = run_process(apply_process(&sim, &second, dir.path())).await;
        if !rerun.status.success() {
            problems.push(format!(
                "round {round} (killed at {} ms): the re-run exited {:?}:\n{}",
                kill_at.as_millis(),
                rerun.status.code(),
                String::from_utf8_lossy(&rerun.stderr)
            ));
            continue;
        }
        let after = plan(&conn, &second).await;
        if !after.out.starts_with("No changes.") {
            problems.push(format!("round {round}: a plan is left:\n{}", after.out));
        }
        let vms = sim.vms();
        let locked: Vec<u32> = vms
            .iter()
            .filter(|vm| vm.lock.is_some())
            .map(|vm| vm.vmid)
            .collect();
        let on_new = made_from(&sim)
            .iter()
            .all(|(_, from)| from == "template.debian-12-base#2");
        let mut tokens = data_tokens(&sim);
        tokens.sort();
        let home: Vec<(String, Option<(u32, String)>)> = [201, 202, 203]
            .into_iter()
            .map(|vmid| (format!("data of {vmid}"), Some((vmid, "scsi1".to_string()))))
            .collect();
        if tokens != home {
            problems.push(format!(
                "round {round}: data volumes after the re-run {tokens:?}"
            ));
        }
        if !locked.is_empty() || vms.len() != 4 || templates(&sim) != vec![9001] || !on_new {
            problems.push(format!(
                "round {round}: {} VMs, templates {:?}, locked {locked:?}, clones {:?}",
                vms.len(),
                templates(&sim),
                made_from(&sim)
            ));
        }
    }
    println!(
        "rollout kill-anywhere: {rounds} rounds, {} problems",
        problems.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

#[tokio::test]
async fn a_clone_a_killed_rollout_deleted_is_made_again_first_and_checked_like_the_others() {
    let (sim, conn) = fresh_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let first = write_spec(dir.path(), "first.yaml", &fleet("replace", false));
    assert!(apply(&conn, &first).await.result.is_ok());
    // A rollout killed between deleting web-2 and cloning it again.
    let deleted = super::common::destroy_with(
        &conn,
        &proxfleet::cli::DestroyArgs {
            targets: vec!["clone.web-2".into()],
            ..super::common::destroy_args(&first)
        },
    )
    .await;
    assert!(deleted.result.is_ok(), "{}", deleted.out);
    assert!(!sim.vms().iter().any(|vm| vm.vmid == 202));
    let second = write_spec(dir.path(), "second.yaml", &fleet("replace", true));
    let planned = plan(&conn, &second).await;
    let rollout_lines: Vec<&str> = planned
        .out
        .lines()
        .filter(|l| {
            l.starts_with("  # clone.") || l.contains("rollout of") || l.contains("health ")
        })
        .collect();
    assert_eq!(
        rollout_lines,
        vec![
            "  # clone.web-1 (vmid 201 on pve1) must be replaced",
            "  #   rollout of `clones of debian-12-base`: batch 2 of 3, after batch 1 is healthy",
            "      + health      = \"guest agent answers and reports 192.0.2.11 (within 5s)\"",
            "  # clone.web-2 (vmid 202 on pve1) will be created",
            "  #   rollout of `clones of debian-12-base`: batch 1 of 3",
            "      + health      = \"guest agent answers and reports 192.0.2.12 (within 5s)\"",
            "  # clone.web-3 (vmid 203 on pve1) must be replaced",
            "  #   rollout of `clones of debian-12-base`: batch 3 of 3, after batch 2 is healthy",
            "      + health      = \"guest agent answers and reports 192.0.2.13 (within 5s)\"",
        ],
        "{}",
        planned.out
    );
    let run = apply(&conn, &second).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert_eq!(templates(&sim), vec![9001]);
    assert!(plan(&conn, &second).await.out.starts_with("No changes."));
}

#[tokio::test]
async fn target_rolls_one_clone_and_a_saved_rollout_applies_exactly_or_not_at_all() {
    use super::common::{apply_args, apply_with, plan_args, plan_with};

    let (sim, conn) = fresh_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let first = write_spec(dir.path(), "first.yaml", &fleet("replace", false));
    assert!(apply(&conn, &first).await.result.is_ok());
    let second = write_spec(dir.path(), "second.yaml", &fleet("replace", true));

    // `--target clone.web-2`: its new build and it, nothing else.
    let select = proxfleet::cli::SelectArgs {
        targets: vec!["clone.web-2".into()],
        ..Default::default()
    };
    let targeted = plan_with(
        &conn,
        &proxfleet::cli::PlanArgs {
            select: select.clone(),
            ..plan_args(&second)
        },
    )
    .await;
    assert_eq!(
        change_headers(&targeted.out),
        vec![
            "# image.debian-12 (on pve1) will be created",
            "# template.debian-12-base build 2 (vmid 9001 on pve1) will be created",
            "# clone.web-2 (vmid 202 on pve1) must be replaced",
        ],
        "{}",
        targeted.out
    );
    let run = apply_with(
        &conn,
        &proxfleet::cli::ApplyArgs {
            select,
            ..apply_args(&second)
        },
    )
    .await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert_eq!(
        made_from(&sim),
        vec![
            (201, "template.debian-12-base".to_string()),
            (202, "template.debian-12-base#2".to_string()),
            (203, "template.debian-12-base".to_string()),
        ]
    );
    assert_eq!(
        templates(&sim),
        vec![9000, 9001],
        "build 1 stays for web-1 and web-3"
    );

    // A saved plan of the rest: refused once the cluster moved, applied exactly otherwise.
    let saved = dir.path().join("rollout.plan");
    let planned = plan_with(
        &conn,
        &proxfleet::cli::PlanArgs {
            out: Some(saved.clone()),
            ..plan_args(&second)
        },
    )
    .await;
    assert!(planned.result.is_ok(), "{}", planned.out);
    assert_eq!(
        change_headers(&planned.out),
        vec![
            "# clone.web-1 (vmid 201 on pve1) must be replaced",
            "# clone.web-3 (vmid 203 on pve1) must be replaced",
            "# template.debian-12-base (vmid 9000 on pve1) will be destroyed",
        ],
        "{}",
        planned.out
    );
    let from_file = |_: ()| proxfleet::cli::ApplyArgs {
        plan_file: Some(saved.clone()),
        auto_approve: false,
        ..apply_args(std::path::Path::new("proxfleet.yaml"))
    };
    // web-3 is edited by hand in between: the saved rollout is stale, nothing runs.
    sim.set_vm_config(203, "memory", Some("4096")).unwrap();
    sim.clear_requests();
    let stale = apply_with(&conn, &from_file(())).await;
    assert!(stale.result.is_err(), "{}", stale.out);
    assert!(
        write_requests(&sim).is_empty(),
        "{:?}",
        write_requests(&sim)
    );
    sim.set_vm_config(203, "memory", Some("2048")).unwrap();
    let applied = apply_with(&conn, &from_file(())).await;
    assert!(
        applied.result.is_ok(),
        "{:?}\n{}{}",
        applied.result,
        applied.out,
        applied.err
    );
    assert_eq!(templates(&sim), vec![9001]);
    assert!(plan(&conn, &second).await.out.starts_with("No changes."));
}

#[tokio::test]
async fn a_rollout_keeps_each_clone_s_data_disk_the_same_volume_on_its_replacement() {
    let (sim, conn) = fresh_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let first = write_spec(
        dir.path(),
        "first.yaml",
        &fleet_with_disks("replace", false),
    );
    let run = apply(&conn, &first).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    mark_data_disks(&sim);
    let second = write_spec(
        dir.path(),
        "second.yaml",
        &fleet_with_disks("replace", true),
    );
    let run = apply(&conn, &second).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    let mut tokens = data_tokens(&sim);
    tokens.sort();
    assert_eq!(
        tokens,
        vec![
            ("data of 201".to_string(), Some((201, "scsi1".to_string()))),
            ("data of 202".to_string(), Some((202, "scsi1".to_string()))),
            ("data of 203".to_string(), Some((203, "scsi1".to_string()))),
        ]
    );
    assert_eq!(templates(&sim), vec![9001]);
    assert_eq!(sim.vms().len(), 4, "no parking VM is left");
    assert!(plan(&conn, &second).await.out.starts_with("No changes."));
}

#[tokio::test]
async fn a_full_build_range_rebuilds_an_unused_newest_build_in_place_and_is_a_conflict_otherwise() {
    let (sim, conn) = fresh_sim().await;
    let dir = tempfile::tempdir().unwrap();
    let two = |text: String| text.replace("builds: 3", "builds: 2");
    let first = write_spec(dir.path(), "first.yaml", &two(fleet("keep", false)));
    assert!(apply(&conn, &first).await.result.is_ok());
    let second = write_spec(dir.path(), "second.yaml", &two(fleet("keep", true)));
    assert!(apply(&conn, &second).await.result.is_ok());
    assert_eq!(templates(&sim), vec![9000, 9001]);
    // A third image: no vmid is free, and no clone was made from build 2.
    let third_text = two(fleet("keep", true)).replace("sha512:b58d86525d75", "sha512:c58d86525d75");
    let third = write_spec(dir.path(), "third.yaml", &third_text);
    let planned = plan(&conn, &third).await;
    assert!(
        planned
            .out
            .contains("# template.debian-12-base build 2 (vmid 9001 on pve1) must be replaced"),
        "{}",
        planned.out
    );
    let run = apply(&conn, &third).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert!(plan(&conn, &third).await.out.starts_with("No changes."));
    // A clone made from build 2 keeps it: a fourth image has nowhere to go.
    let with_web4 = |text: String| {
        text.replace(
            "clones:\n",
            "clones:\n  web-4:\n    vmid: 204\n    template: debian-12-base\n    full: false\n",
        )
    };
    let fourth = write_spec(dir.path(), "fourth.yaml", &with_web4(third_text.clone()));
    assert!(apply(&conn, &fourth).await.result.is_ok());
    let fifth = write_spec(
        dir.path(),
        "fifth.yaml",
        &with_web4(third_text.replace("sha512:c58d86525d75", "sha512:d58d86525d75")),
    );
    let refused = plan(&conn, &fifth).await;
    let everything = format!("{}{}{:?}", refused.out, refused.err, refused.result);
    assert!(refused.result.is_err(), "{everything}");
    assert!(
        everything.contains("a new build needs a free vmid in 9000..=9001, and every one is taken"),
        "{everything}"
    );
}
