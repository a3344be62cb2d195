//! `destroy` and Proxmox's safety nets: a protected VM is left standing with the command that
//! lifts the protection, and a running VM is shut down, then stopped if it will not go.

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
