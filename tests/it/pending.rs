//! Changes Proxmox applies only at the next boot: shown as such, left pending unless
//! `--allow-reboot`, and then applied by a reboot.

use super::common::{
    apply, apply_args, apply_with, plan, plan_args, plan_with, quickstart_text, sim, write_spec,
};

fn memory_and_running(sim: &proxfleet::sim::SimHandle, vmid: u32) -> (String, bool) {
    let vm = sim
        .vms()
        .into_iter()
        .find(|vm| vm.vmid == vmid)
        .expect("the VM");
    (
        vm.config.get("memory").cloned().unwrap_or_default(),
        vm.running,
    )
}

#[tokio::test]
async fn changes_for_the_next_boot_stay_pending_until_a_reboot_is_allowed() {
    let (sim, conn) = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = write_spec(dir.path(), "fleet.yaml", &quickstart_text());
    assert!(apply(&conn, &base).await.result.is_ok());

    // web-1 gets 4 GiB: memory is not hot-pluggable, web-1 runs.
    let bigger = quickstart_text().replace(
        "  web-1:\n    vmid: 201\n",
        "  web-1:\n    vmid: 201\n    memory: 4GiB\n",
    );
    let spec = write_spec(dir.path(), "fleet.yaml", &bigger);
    let planned = plan(&conn, &spec).await;
    assert!(
        planned.out.contains("~ memory = \"2048\" → \"4096\""),
        "{}",
        planned.out
    );
    assert!(
        planned.out.contains(
            "Pending until the next boot (proxfleet reboots only with --allow-reboot):\n  clone.web-1 (vmid 201): memory"
        ),
        "{}",
        planned.out
    );

    // Applied without --allow-reboot: set, but pending; the plan says so and is otherwise empty.
    assert!(apply(&conn, &spec).await.result.is_ok());
    let after = plan(&conn, &spec).await;
    assert!(after.out.starts_with("No changes."), "{}", after.out);
    assert!(
        after.out.contains("clone.web-1 (vmid 201): memory"),
        "{}",
        after.out
    );
    assert_eq!(memory_and_running(&sim, 201), ("4096".into(), true));
    let applied_again = apply(&conn, &spec).await;
    assert!(applied_again.result.is_ok());

    // With --allow-reboot the plan reboots it, and then nothing is pending.
    let mut args = plan_args(&spec);
    args.select.allow_reboot = true;
    let planned = plan_with(&conn, &args).await;
    assert!(
        planned.out.contains("+ reboot = \"to apply memory\""),
        "{}",
        planned.out
    );
    assert!(planned.out.contains("Rebooted to apply"), "{}", planned.out);
    let mut args = apply_args(&spec);
    args.select.allow_reboot = true;
    let run = apply_with(&conn, &args).await;
    assert!(run.result.is_ok(), "{}\n{:?}", run.out, run.result);
    let settled = plan(&conn, &spec).await;
    assert_eq!(settled.out, "No changes. The cluster matches the spec.\n");
    assert_eq!(memory_and_running(&sim, 201), ("4096".into(), true));
}
