//! Clones' data disks end to end on the simulator: allocated after cloning, added when missing,
//! grown (never shrunk), released when dropped; `keep: true` disks survive a replacement (the
//! same volume, told by its contents token, on the new VM at its slot), and a run killed
//! anywhere in that replacement never loses the volume and is finished by the next run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use proxfleet::commands::Connection;
use proxfleet::sim::{SimHandle, SimVm};

use super::common::{
    apply, apply_args, apply_with, plan, run_until, sim, write_requests, write_spec,
};

const BASE: &str = "images:
  deb:
    url: https://cloud.example.com/deb-12.qcow2
    checksum: sha256:1111111111111111111111111111111111111111111111111111111111111111
    storage: local
    node: pve1
templates:
  base:
    vmid: 9000
    node: pve1
    image: deb
    disk:
      storage: local-lvm
      size: 4G
    network:
      - bridge: vmbr0
    cloud_init:
      user: debian
";

/// One clone, `db-1` (vmid 201), with the given `data_disks` block (indented list items).
fn spec(dir: &Path, data_disks: &str) -> PathBuf {
    let text = format!(
        "{BASE}clones:\n  db-1:\n    vmid: 201\n    template: base\n    data_disks:\n{data_disks}"
    );
    write_spec(dir, "spec.yaml", &text)
}

const KEPT_AND_SCRATCH: &str = "      - slot: scsi1
        storage: local-lvm
        size: 2G
        keep: true
      - slot: scsi2
        size: 1G
        discard: true
";

fn vm(sim: &SimHandle, vmid: u32) -> SimVm {
    sim.vms()
        .into_iter()
        .find(|vm| vm.vmid == vmid)
        .unwrap_or_else(|| panic!("no VM {vmid}"))
}

fn volid_at(sim: &SimHandle, vmid: u32, slot: &str) -> String {
    let vm = vm(sim, vmid);
    let value = vm
        .config
        .get(slot)
        .unwrap_or_else(|| panic!("VM {vmid} has no {slot}: {:?}", vm.config));
    value.split(',').next().unwrap_or_default().to_string()
}

/// The plan says nothing is to be done.
async fn assert_converged(conn: &Connection, file: &Path) {
    let run = plan(conn, file).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert!(run.out.contains("No changes"), "{}", run.out);
}

#[tokio::test]
async fn a_new_clone_gets_its_data_disks_and_a_second_apply_plans_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = spec(dir.path(), KEPT_AND_SCRATCH);
    let (sim, conn) = sim().await;
    let first_plan = plan(&conn, &file).await;
    assert!(
        first_plan.out.contains("new data disk, 2G on local-lvm"),
        "{}",
        first_plan.out
    );
    let run = apply(&conn, &file).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    let db = vm(&sim, 201);
    assert!(
        db.config["scsi1"].starts_with("local-lvm:vm-201-disk-"),
        "{:?}",
        db.config
    );
    assert!(db.config["scsi1"].contains("size=2G"), "{:?}", db.config);
    assert!(db.config["scsi2"].contains("discard=on"), "{:?}", db.config);
    assert!(db.config["scsi2"].contains("size=1G"), "{:?}", db.config);
    assert_converged(&conn, &file).await;
}

#[tokio::test]
async fn a_missing_disk_is_added_a_larger_one_grown_a_dropped_one_released_never_shrunk() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, conn) = sim().await;
    let file = spec(dir.path(), "      - slot: scsi1\n        size: 2G\n");
    assert!(apply(&conn, &file).await.result.is_ok());
    let first = volid_at(&sim, 201, "scsi1");

    // Grown, and a new one added beside it.
    let file = spec(
        dir.path(),
        "      - slot: scsi1\n        size: 3G\n      - slot: virtio3\n        size: 1G\n",
    );
    let shown = plan(&conn, &file).await;
    assert!(shown.out.contains("scsi1 size"), "{}", shown.out);
    assert!(
        shown.out.contains("new data disk, 1G on local-lvm"),
        "{}",
        shown.out
    );
    let run = apply(&conn, &file).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    let db = vm(&sim, 201);
    assert!(db.config["scsi1"].contains("size=3G"), "{:?}", db.config);
    assert_eq!(volid_at(&sim, 201, "scsi1"), first);
    assert!(db.config.contains_key("virtio3"), "{:?}", db.config);
    assert_converged(&conn, &file).await;

    // Removed by hand: added again.
    sim.set_vm_config(201, "virtio3", None).unwrap();
    let run = apply(&conn, &file).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert!(vm(&sim, 201).config.contains_key("virtio3"));
    assert_converged(&conn, &file).await;

    // Smaller: a conflict, nothing shrinks.
    let smaller = spec(
        dir.path(),
        "      - slot: scsi1\n        size: 2G\n      - slot: virtio3\n        size: 1G\n",
    );
    let refused = plan(&conn, &smaller).await;
    let why = refused
        .result
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        why.contains("data disk scsi1 is 3G but the spec says 2G: disks never shrink"),
        "{why}"
    );

    // Dropped from the spec: left on the VM, said once.
    let dropped = spec(dir.path(), "      - slot: scsi1\n        size: 3G\n");
    let shown = plan(&conn, &dropped).await;
    assert!(shown.out.contains("no longer managed"), "{}", shown.out);
    let run = apply(&conn, &dropped).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert!(vm(&sim, 201).config.contains_key("virtio3"));
    assert_converged(&conn, &dropped).await;
}

#[tokio::test]
async fn a_kept_disk_is_the_same_volume_on_the_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let file = spec(dir.path(), KEPT_AND_SCRATCH);
    let (sim, conn) = sim().await;
    assert!(apply(&conn, &file).await.result.is_ok());
    let kept = volid_at(&sim, 201, "scsi1");
    let scratch = volid_at(&sim, 201, "scsi2");
    sim.write_volume(&kept, "database files").unwrap();
    sim.write_volume(&scratch, "scratch").unwrap();

    let mut args = apply_args(&file);
    args.replace = vec!["clone.db-1".into()];
    let run = apply_with(&conn, &args).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert!(
        run.out.contains("scsi1 kept") || run.err.contains("park scsi1"),
        "{}\n{}",
        run.out,
        run.err
    );

    let volumes = sim.volumes();
    let data = volumes
        .iter()
        .find(|v| v.contents == "database files")
        .expect("the kept volume still exists");
    assert_eq!(volid_at(&sim, 201, "scsi1"), data.volid);
    assert!(
        data.volid.starts_with("local-lvm:vm-201-disk-"),
        "{}",
        data.volid
    );
    // The scratch disk was not kept: a new, empty one.
    assert!(
        volumes.iter().all(|v| v.contents != "scratch"),
        "{volumes:?}"
    );
    assert!(vm(&sim, 201).config.contains_key("scsi2"));
    // No parking VM is left.
    assert_eq!(
        sim.vms().iter().map(|vm| vm.vmid).collect::<Vec<_>>(),
        vec![201, 9000]
    );
    assert_converged(&conn, &file).await;
}

#[test]
fn kept_data_disks_need_the_disk_reassign_of_pve_7_2() {
    use proxfleet::graph::DesiredGraph;
    use proxfleet::preflight::{Facts, Group, Needs, Status, evaluate};
    use proxfleet::pve::{PveError, VersionInfo};

    let dir = tempfile::tempdir().unwrap();
    let gate = |data_disks: &str, release: &str| {
        let file = spec(dir.path(), data_disks);
        let loaded = proxfleet::spec::load(&file).unwrap();
        let needs = Needs::of(&loaded.spec, &DesiredGraph::build(&loaded.spec));
        let mut facts = Facts::unreachable(
            "ops@pve!ci",
            PveError::Timeout {
                method: "GET".into(),
                path: "/version".into(),
            },
        );
        facts.version = Ok(VersionInfo {
            release: release.into(),
            version: format!("{release}.1"),
        });
        evaluate(&needs, &facts)
            .checks
            .into_iter()
            .filter(|c| c.group == Group::Api && c.subject == "PVE ≥ 7.2")
            .map(|c| (c.status, c.message))
            .collect::<Vec<_>>()
    };
    let old = gate(KEPT_AND_SCRATCH, "7.1");
    assert_eq!(old.len(), 1, "{old:?}");
    assert_eq!(old[0].0, Status::Fail);
    assert!(
        old[0].1.contains("moving kept data disks") && old[0].1.contains("the cluster runs 7.1"),
        "{old:?}"
    );
    assert_eq!(gate(KEPT_AND_SCRATCH, "8.4")[0].0, Status::Pass);
    // Without `keep` nothing is reassigned: no gate.
    assert!(gate("      - slot: scsi1\n        size: 2G\n", "7.1").is_empty());
}

/// A simulator whose tasks take `task_ms` (so a killed run leaves some running), and a
/// connection to it.
async fn sim_with_tasks(task_ms: u64) -> (SimHandle, Connection) {
    let sim = SimHandle::start(proxfleet::sim::SimConfig {
        task_duration: Some(std::time::Duration::from_millis(task_ms)),
        ..proxfleet::sim::SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let conn = Connection::to_sim(&sim).expect("client for the simulator");
    (sim, conn)
}

/// Where the volume holding `contents` is, if anywhere: (volid, the VM and slot that hold it).
fn holder_of(sim: &SimHandle, contents: &str) -> Option<(String, Option<(u32, String)>)> {
    let volume = sim.volumes().into_iter().find(|v| v.contents == contents)?;
    let held = super::common::held_at(&sim.vms(), &volume.volid);
    Some((volume.volid, held))
}

/// Wait until no task runs on the simulator's node (`GET /nodes/pve1/tasks?source=active`).
async fn tasks_ended(sim: &SimHandle) {
    let http = reqwest::Client::new();
    let url = format!("{}/api2/json/nodes/pve1/tasks", sim.endpoint());
    for _ in 0..2000 {
        let answer: serde_json::Value = http
            .get(&url)
            .query(&[("source", "active")])
            .header("Authorization", format!("PVEAPIToken={}", sim.token()))
            .send()
            .await
            .expect("the simulator answers")
            .json()
            .await
            .expect("JSON");
        if answer["data"].as_array().is_some_and(Vec::is_empty) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("the killed run's tasks did not end");
}

/// The VMs, their locks and disks, in one line.
fn state(sim: &SimHandle) -> String {
    sim.vms()
        .iter()
        .map(|vm| {
            let disks: Vec<String> = vm
                .config
                .iter()
                .filter(|(k, _)| k.starts_with("scsi") && *k != "scsihw")
                .map(|(k, v)| format!("{k}={}", v.split(',').next().unwrap_or_default()))
                .collect();
            format!("{} {:?} [{}]", vm.vmid, vm.lock, disks.join(" "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `apply --replace clone.db-1` killed after each of its requests, and after each of its
/// writes: at every point the kept volume (its contents token) still exists, held by some VM,
/// and the next plain `apply` finishes the job: the volume on VM 201 at `scsi1`, no parking VM
/// left, nothing more to plan.
#[tokio::test]
async fn a_replacement_killed_anywhere_never_loses_the_kept_disk_and_the_next_run_finishes_it() {
    const TASK_MS: u64 = 15;
    const TOKEN: &str = "database files";
    let dir = tempfile::tempdir().unwrap();
    let file = spec(dir.path(), KEPT_AND_SCRATCH);
    let mut replace = apply_args(&file);
    replace.replace = vec!["clone.db-1".into()];
    let fleet = async |sim: &SimHandle, conn: &Connection| {
        assert!(apply(conn, &file).await.result.is_ok());
        sim.write_volume(&volid_at(sim, 201, "scsi1"), TOKEN)
            .unwrap();
        sim.requests().len()
    };

    let (clean_sim, clean_conn) = sim_with_tasks(TASK_MS).await;
    let before = fleet(&clean_sim, &clean_conn).await;
    let writes_before = write_requests(&clean_sim).len();
    assert!(apply_with(&clean_conn, &replace).await.result.is_ok());
    let n_requests = clean_sim.requests().len() - before;
    let n_writes = write_requests(&clean_sim).len() - writes_before;
    assert!(n_writes >= 8, "the replacement writes {n_writes} times");

    let points: Vec<(&str, usize)> = (1..=n_requests)
        .map(|k| ("request", k))
        .chain((1..=n_writes).map(|w| ("write", w)))
        .collect();
    let started = std::time::Instant::now();
    let mut problems = Vec::new();
    let mut last_writes = BTreeSet::new();
    for &(unit, k) in &points {
        let (sim, conn) = sim_with_tasks(TASK_MS).await;
        let base_requests = fleet(&sim, &conn).await;
        let base_writes = write_requests(&sim).len();
        let count = || match unit {
            "write" => write_requests(&sim).len() - base_writes,
            _ => sim.requests().len() - base_requests,
        };
        let _ = run_until(apply_with(&conn, &replace), || count() >= k).await;
        if let Some(last) = write_requests(&sim).last() {
            last_writes.insert(last.clone());
        }
        // SIGKILL ends the run, not the tasks it started in the cluster: the next run is
        // started once they have ended (see `tasks_ended`).
        tasks_ended(&sim).await;
        let at = format!("killed after {unit} {k} ({})", state(&sim));
        match holder_of(&sim, TOKEN) {
            None => problems.push(format!("{at}: the kept volume is gone")),
            Some((volid, None)) => {
                problems.push(format!("{at}: {volid} is held by no VM"));
            }
            Some(_) => {}
        }
        let rerun = apply(&conn, &file).await;
        if rerun.result.is_err() {
            problems.push(format!(
                "{at}: the rerun failed: {:?}\n{}\n{}",
                rerun.result, rerun.out, rerun.err
            ));
            continue;
        }
        match holder_of(&sim, TOKEN) {
            Some((_, Some((201, slot)))) if slot == "scsi1" => {}
            other => problems.push(format!("{at}: after the rerun the volume is at {other:?}")),
        }
        let vmids: Vec<u32> = sim.vms().iter().map(|vm| vm.vmid).collect();
        if vmids != [201, 9000] {
            problems.push(format!("{at}: VMs {vmids:?} after the rerun"));
        }
        let after = plan(&conn, &file).await;
        if !after.out.starts_with("No changes.") {
            problems.push(format!(
                "{at}: the plan after the rerun is not empty:\n{}",
                after.out
            ));
        }
    }
    println!(
        "killed at {} points ({n_requests} requests, {n_writes} writes) in {:.1}s",
        points.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let steps = last_writes
        .iter()
        .map(|w| format!("{w}\n"))
        .collect::<String>();
    // The parking VM is 100, the first free vmid.
    for step in [
        "POST /api2/json/nodes/pve1/qemu/201/status/shutdown",
        "POST /api2/json/nodes/pve1/qemu\n",
        "POST /api2/json/nodes/pve1/qemu/201/move_disk",
        "DELETE /api2/json/nodes/pve1/qemu/201",
        "POST /api2/json/nodes/pve1/qemu/9000/clone",
        "POST /api2/json/nodes/pve1/qemu/100/move_disk",
        "POST /api2/json/nodes/pve1/qemu/201/config",
        "DELETE /api2/json/nodes/pve1/qemu/100",
    ] {
        assert!(steps.contains(step), "no kill right after {step}:\n{steps}");
    }
}

/// A run killed with the kept disk on its parking VM (the old clone deleted, the new one not
/// made yet), then `destroy`: the parking VM is proxfleet's and goes with the clone, its
/// volume named in the plan.
#[tokio::test]
async fn destroy_deletes_a_parking_vm_with_the_volume_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let file = spec(dir.path(), KEPT_AND_SCRATCH);
    let (sim, conn) = sim_with_tasks(15).await;
    assert!(apply(&conn, &file).await.result.is_ok());
    sim.write_volume(&volid_at(&sim, 201, "scsi1"), "database files")
        .unwrap();
    let mut replace = apply_args(&file);
    replace.replace = vec!["clone.db-1".into()];
    let deleted = || {
        write_requests(&sim)
            .iter()
            .any(|w| w == "DELETE /api2/json/nodes/pve1/qemu/201")
    };
    let ended = run_until(apply_with(&conn, &replace), deleted).await;
    assert!(ended.is_none(), "the replacement ended before its delete");
    tasks_ended(&sim).await;
    let vmids: Vec<u32> = sim.vms().iter().map(|vm| vm.vmid).collect();
    assert_eq!(vmids, vec![100, 9000], "{}", state(&sim));
    assert_eq!(
        holder_of(&sim, "database files").and_then(|(_, held)| held),
        Some((100, "scsi1".to_string()))
    );

    let planned = super::common::destroy_with(&conn, &{
        let mut args = super::common::destroy_args(&file);
        args.auto_approve = false;
        args
    })
    .await;
    assert!(
        planned.out.contains("deleted with local-lvm:vm-100-disk-0"),
        "{}\n{}",
        planned.out,
        planned.err
    );
    let run = super::common::destroy(&conn, &file).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert!(sim.vms().is_empty(), "{}", state(&sim));
    assert!(holder_of(&sim, "database files").is_none());
}

/// A group's data disks reach each of its clones; an `overrides` entry replaces the list.
#[tokio::test]
async fn a_group_gives_its_clones_data_disks_and_an_override_replaces_them() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{BASE}clone_groups:
  db:
    count: 2
    first_vmid: 301
    template: base
    data_disks:
      - slot: scsi1
        size: 2G
    overrides:
      db-2:
        data_disks:
          - slot: virtio1
            size: 3G
            keep: true
"
    );
    let file = write_spec(dir.path(), "group.yaml", &text);
    let loaded = proxfleet::spec::load(&file).unwrap();
    let explained = |clone: &str| {
        loaded.explanations[clone]
            .iter()
            .find(|e| e.field == "data_disks")
            .map(|e| (e.value.clone(), e.source.clone()))
    };
    assert_eq!(
        explained("db-1"),
        Some(("scsi1 2G on local-lvm".into(), "clone_groups.db".into()))
    );
    assert_eq!(
        explained("db-2"),
        Some((
            "virtio1 3G on local-lvm (keep)".into(),
            "clone_groups.db.overrides.db-2".into()
        ))
    );
    let (sim, conn) = sim().await;
    let run = apply(&conn, &file).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    let first = vm(&sim, 301);
    let second = vm(&sim, 302);
    assert!(
        first.config["scsi1"].contains("size=2G"),
        "{:?}",
        first.config
    );
    assert!(!second.config.contains_key("scsi1"), "{:?}", second.config);
    assert!(
        second.config["virtio1"].contains("size=3G"),
        "{:?}",
        second.config
    );
    assert!(
        second.config["description"].ends_with("disks=virtio1"),
        "{:?}",
        second.config
    );
    assert_converged(&conn, &file).await;
}

/// A replacement that moves the clone to another node: the parking VM stays where the old
/// clone was, and is migrated (offline, with its disk) to the new clone's node before the
/// reattach, since Proxmox reassigns only between VMs on one node.
#[tokio::test]
async fn a_kept_disk_follows_its_clone_to_another_node() {
    let dir = tempfile::tempdir().unwrap();
    let sim = SimHandle::start(proxfleet::sim::SimConfig {
        nodes: 2,
        task_duration: Some(std::time::Duration::from_millis(5)),
        ..proxfleet::sim::SimConfig::default()
    })
    .await
    .unwrap();
    let conn = Connection::to_sim(&sim).unwrap();
    let file = spec(dir.path(), KEPT_AND_SCRATCH);
    assert!(apply(&conn, &file).await.result.is_ok());
    sim.write_volume(&volid_at(&sim, 201, "scsi1"), "database files")
        .unwrap();

    let moved = write_spec(
        dir.path(),
        "spec.yaml",
        &std::fs::read_to_string(&file).unwrap().replace(
            "    template: base\n",
            "    template: base\n    node: pve2\n",
        ),
    );
    let run = apply(&conn, &moved).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert!(
        write_requests(&sim).contains(&"POST /api2/json/nodes/pve1/qemu/100/migrate".to_string()),
        "{:?}",
        write_requests(&sim)
    );
    let db = vm(&sim, 201);
    assert_eq!(db.node, "pve2");
    assert_eq!(
        holder_of(&sim, "database files").and_then(|(_, held)| held),
        Some((201, "scsi1".to_string())),
        "{}",
        state(&sim)
    );
    assert_eq!(
        sim.vms().iter().map(|vm| vm.vmid).collect::<Vec<_>>(),
        vec![201, 9000]
    );
    assert_converged(&conn, &moved).await;
}

/// The next run started at once, while the killed run's reassign onto the parking VM still
/// runs: it does not delete the parking VM under the move (a reassign shows in no
/// configuration, only in the node's task list), the volume stays held, and the run after
/// it converges.
#[tokio::test]
async fn a_rerun_during_the_park_does_not_delete_the_parking_vm_under_the_move() {
    let dir = tempfile::tempdir().unwrap();
    let file = spec(dir.path(), KEPT_AND_SCRATCH);
    let (sim, conn) = sim_with_tasks(300).await;
    assert!(apply(&conn, &file).await.result.is_ok());
    sim.write_volume(&volid_at(&sim, 201, "scsi1"), "database files")
        .unwrap();
    let mut replace = apply_args(&file);
    replace.replace = vec!["clone.db-1".into()];
    let parked = || {
        write_requests(&sim)
            .iter()
            .any(|w| w == "POST /api2/json/nodes/pve1/qemu/201/move_disk")
    };
    let ended = run_until(apply_with(&conn, &replace), parked).await;
    assert!(ended.is_none(), "the replacement ended before its park");
    // At once: the move runs for another 300 ms.
    let rerun = apply(&conn, &file).await;
    assert!(
        holder_of(&sim, "database files").is_some_and(|(_, held)| held.is_some()),
        "{}\n{}",
        rerun.err,
        state(&sim)
    );
    tasks_ended(&sim).await;
    let last = apply(&conn, &file).await;
    assert!(last.result.is_ok(), "{}\n{}", last.out, last.err);
    assert_eq!(
        holder_of(&sim, "database files").and_then(|(_, held)| held),
        Some((201, "scsi1".to_string())),
        "{}",
        state(&sim)
    );
    assert_converged(&conn, &file).await;
}

/// The first free vmid is one the spec wants for a clone this same run makes: the parking VM
/// takes the next one instead.
#[tokio::test]
async fn a_parking_vm_takes_no_vmid_the_spec_wants() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, conn) = sim().await;
    assert!(
        apply(&conn, &spec(dir.path(), KEPT_AND_SCRATCH))
            .await
            .result
            .is_ok()
    );
    let text = format!(
        "{}  app:\n    vmid: 100\n    template: base\n",
        std::fs::read_to_string(dir.path().join("spec.yaml")).unwrap()
    );
    let file = write_spec(dir.path(), "spec.yaml", &text);
    let mut replace = apply_args(&file);
    replace.replace = vec!["clone.db-1".into()];
    let run = apply_with(&conn, &replace).await;
    assert!(run.result.is_ok(), "{}\n{}", run.out, run.err);
    assert!(
        write_requests(&sim).contains(&"DELETE /api2/json/nodes/pve1/qemu/101".to_string()),
        "{:?}",
        write_requests(&sim)
    );
    assert_eq!(
        sim.vms().iter().map(|vm| vm.vmid).collect::<Vec<_>>(),
        vec![100, 201, 9000]
    );
    assert_converged(&conn, &file).await;
}
