//! `destroy` and Proxmox's safety nets: a protected VM is left standing with the command that
//! lifts the protection, and a running VM is shut down, then stopped if it will not go.

use proxfleet::cli::DestroyArgs;
use proxfleet::sim::{Fault, FaultAction};

use crate::common::*;

#[tokio::test]
async fn destroy_leaves_a_protected_vm_standing_and_says_how_to_lift_the_protection() {
    let (sim, conn) = sim().await;
    let spec = example("quickstart.yaml");
    assert!(apply(&conn, &spec).await.result.is_ok());
    sim.set_vm_config(202, "protection", Some("1")).unwrap();

    sim.clear_requests();
    let run = destroy(&conn, &spec).await;
    assert!(run.result.is_err(), "{}", run.out);
    assert_eq!(run.code, 1);
    assert!(
        run.out.contains(
            "error: clone.web-2 failed: VM 202 is protected (protection=1), so proxfleet leaves it as it is; \
             to delete it, lift the protection with `qm set 202 --protection 0` on node pve1"
        ),
        "{}",
        run.out
    );
    // The protected clone is untouched (still running, never shut down); the others are gone;
    // the template, which it was cloned from, waits for it.
    let vms = sim.vms();
    let vmids: Vec<u32> = vms.iter().map(|vm| vm.vmid).collect();
    assert_eq!(vmids, vec![202, 9000]);
    assert!(vms[0].running, "a protected VM is not even shut down");
    assert!(
        write_requests(&sim)
            .iter()
            .all(|r| !r.contains("/qemu/202")),
        "{:?}",
        write_requests(&sim)
    );
    assert!(
        run.out
            .contains("Destroy complete: 2 succeeded, 1 failed, 1 skipped."),
        "{}",
        run.out
    );

    // Lifted by hand, the next destroy finishes the job.
    sim.set_vm_config(202, "protection", None).unwrap();
    let again = destroy(&conn, &spec).await;
    assert!(again.result.is_ok(), "{:?}\n{}", again.result, again.out);
    assert!(sim.vms().is_empty(), "{:?}", sim.vms());
}

#[tokio::test]
async fn destroy_shuts_running_vms_down_and_stops_one_that_does_not_go() {
    let (sim, conn) = sim().await;
    let spec = example("quickstart.yaml");
    assert!(apply(&conn, &spec).await.result.is_ok());
    assert!(sim.vms().iter().filter(|vm| vm.running).count() == 3);

    // web-2's guest ignores the shutdown request: Proxmox gives up after the time-out.
    sim.add_fault(Fault::on(
        "POST",
        "/nodes/*/qemu/202/status/shutdown",
        FaultAction::TaskError("VM quit/powerdown failed - got timeout".into()),
    ));
    sim.clear_requests();
    let args = proxfleet::cli::DestroyArgs {
        shutdown_timeout: 5,
        ..destroy_args(&spec)
    };
    let run = destroy_with(&conn, &args).await;
    assert!(run.result.is_ok(), "{:?}\n{}", run.result, run.out);
    assert!(sim.vms().is_empty());

    let writes = write_requests(&sim);
    let power: Vec<&str> = writes
        .iter()
        .filter(|r| r.contains("/status/"))
        .map(String::as_str)
        .collect();
    for vmid in [201, 202, 203] {
        let shutdown = format!("POST /api2/json/nodes/pve1/qemu/{vmid}/status/shutdown");
        assert_eq!(
            power.iter().filter(|r| **r == shutdown).count(),
            1,
            "the shutdown is asked once: {power:?}"
        );
    }
    assert_eq!(
        power
            .iter()
            .filter(|r| r.ends_with("/status/stop"))
            .collect::<Vec<_>>(),
        vec![&"POST /api2/json/nodes/pve1/qemu/202/status/stop"],
        "only the VM that would not shut down is stopped"
    );
}

/// Two VMs whose markers claim one resource: a copy of web-1's marker, rewritten for another
/// vmid, on a VM made by hand. `plan` and `destroy` (whole or `--target clone.web-1`) both say
/// so, and neither VM is changed or deleted.
#[tokio::test]
async fn two_vms_claiming_one_key_are_a_conflict_for_plan_and_destroy_and_neither_is_touched() {
    use proxfleet::ownership::{Marker, ResourceKey, ResourceKind};

    let (sim, conn) = sim().await;
    let spec = example("quickstart.yaml");
    assert!(apply(&conn, &spec).await.result.is_ok());
    let marker = Marker {
        project: "default".into(),
        key: ResourceKey::new(ResourceKind::Clone, "web-1"),
        vmid: Some(250),
        build: None,
        from: None,
    };
    let description = marker.to_line();
    sim.insert_vm(
        "pve1",
        250,
        &[
            ("name", "web-1"),
            ("tags", "proxfleet"),
            ("description", &description),
            ("memory", "2048"),
        ],
    )
    .unwrap();
    let said = |run: &Run| {
        let error = run.result.as_ref().err().map(ToString::to_string);
        format!("{}\n{}\n{}", run.out, run.err, error.unwrap_or_default())
    };
    let claimed =
        "clone.web-1: the markers of several VMs claim it: VM 201 (`web-1`), VM 250 (`web-1`)";

    sim.clear_requests();
    let planned = plan(&conn, &spec).await;
    assert!(planned.result.is_err());
    let planned_text = said(&planned);
    assert!(planned_text.contains(claimed), "{planned_text}");

    let destroyed = destroy(&conn, &spec).await;
    assert!(destroyed.result.is_err());
    let destroyed_text = said(&destroyed);
    assert!(destroyed_text.contains(claimed), "{destroyed_text}");

    let targeted = destroy_with(
        &conn,
        &DestroyArgs {
            targets: vec!["clone.web-1".into()],
            ..destroy_args(&spec)
        },
    )
    .await;
    assert!(targeted.result.is_err());
    let targeted_text = said(&targeted);
    assert!(targeted_text.contains(claimed), "{targeted_text}");

    assert_eq!(
        write_requests(&sim),
        Vec::<String>::new(),
        "nothing written"
    );
    let vmids: Vec<u32> = sim.vms().iter().map(|vm| vm.vmid).collect();
    assert_eq!(vmids, vec![201, 202, 203, 250, 9000]);

    // Once the copy's marker is gone, the plan is empty again and the VM made by hand stays.
    sim.set_vm_config(250, "description", Some("made by hand"))
        .unwrap();
    let planned = plan(&conn, &spec).await;
    assert!(planned.out.starts_with("No changes."), "{}", planned.out);
}
